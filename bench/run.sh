#!/usr/bin/env bash
# goalpost's performance figures, measured and compared with bench/baseline.
#
#   bench/run.sh                  measure, print the table and the figures as NAME=value
#   bench/run.sh --save-baseline  also record the figures as the new baseline
#
# Each figure comes from a bench target that prints `NAME=value` on its last line.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
baseline_file=bench/baseline
save=false
[[ "${1:-}" == "--save-baseline" ]] && save=true

# figure name | cargo bench arguments | target (comparison and value, in the figure's unit)
figures=(
    "parse_ms|-p goalpost-shared --bench parse|< 50"
)

declare -A value
for entry in "${figures[@]}"; do
    IFS='|' read -r name args _ <<<"$entry"
    # shellcheck disable=SC2086 # the arguments are meant to split
    out=$(cargo bench -q $args 2>&1) || { printf '%s\n' "$out" >&2; exit 1; }
    printf '%s\n' "$out" >&2
    v=$(printf '%s\n' "$out" | sed -n "s/^${name}=//p" | tail -n 1)
    if [[ -z "$v" ]]; then
        echo "bench/run.sh: the bench for $name printed no ${name}= line" >&2
        exit 1
    fi
    value[$name]=$v
done

baseline_of() {
    [[ -f "$baseline_file" ]] && awk -v n="$1" '$1 == n { print $2 }' "$baseline_file" | tail -n 1
}

printf '\n%-12s | %10s | %10s | %7s | %s\n' figure value baseline ratio target
printf '%s\n' "-------------+------------+------------+---------+--------"
status=0
for entry in "${figures[@]}"; do
    IFS='|' read -r name _ target <<<"$entry"
    v=${value[$name]}
    b=$(baseline_of "$name" || true)
    ratio=$(awk -v v="$v" -v b="$b" 'BEGIN { if (b > 0) printf "%.3f", v / b; else print "-" }')
    read -r op limit <<<"$target"
    ok=$(awk -v v="$v" -v op="$op" -v l="$limit" 'BEGIN {
        if (op == "<") r = v < l; else if (op == "<=") r = v <= l;
        else if (op == ">") r = v > l; else r = v >= l; print r ? "ok" : "MISSED" }')
    [[ "$ok" == ok ]] || status=1
    printf '%-12s | %10s | %10s | %7s | %s (%s)\n' "$name" "$v" "${b:--}" "$ratio" "$target" "$ok"
done
echo
for entry in "${figures[@]}"; do
    IFS='|' read -r name _ _ <<<"$entry"
    echo "$name=${value[$name]}"
done

if $save; then
    for entry in "${figures[@]}"; do
        IFS='|' read -r name _ _ <<<"$entry"
        echo "$name ${value[$name]}"
    done >"$baseline_file"
    echo "baseline saved to $baseline_file" >&2
fi
exit "$status"
