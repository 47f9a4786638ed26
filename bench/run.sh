#!/usr/bin/env bash
# goalpost's performance suite: every figure measured against its baseline in this one run,
# on repositories the benchmarks generate.
#
#   bench/run.sh                  build (release), measure, print the table and NAME=value lines
#   bench/run.sh --quick          the same with smaller sizes: a smoke run of a minute or two
#   bench/run.sh --save-baseline  also record the figures in bench/baseline
#
# The figures (each bench target prints NAME=value lines; the last occurrence counts):
#   P1  time to a ready worktree on a 20,000-file repository, goalpost first use and pooled,
#       against `git worktree add`                         (orchestrator/benches/worktree.rs)
#   P2  orchestration overhead per phase of a 100-phase chain, against a shell loop
#   P3  makespan of 64 independent 1 s phases at max_parallel 16, against the ideal 4 s
#   P5  peak RSS of the goalpost process during P3, against a 64 MB budget
#                                                           (orchestrator/benches/run.rs)
#   P4  re-audit of an already verified tree, against its first audit
#                                                           (orchestrator/benches/audit.rs)
#   parse  parse + validate a 500-phase goal file, against the recorded figure
#                                                           (shared/benches/parse.rs)
# The exit status is 0 when every figure was measured, whether or not it met its target;
# the table marks each one `ok` or `MISSED` (the README's Performance section says why).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
baseline_file=bench/baseline
save=false
quick=false
for arg in "$@"; do
    case "$arg" in
        --save-baseline) save=true ;;
        --quick) quick=true ;;
        *) echo "bench/run.sh: unknown argument $arg (--quick, --save-baseline)" >&2; exit 2 ;;
    esac
done
bench_args=()
$quick && bench_args=(-- --quick)
$quick && export GOALPOST_BENCH_ITERS=10

echo "building the release binaries..." >&2
cargo build --release -q -p goalpost-orchestrator -p goalpost-worker -p goalpost-auditor \
    -p goalpost-shared

declare -A value
measure() {
    local out
    echo "running $*..." >&2
    # shellcheck disable=SC2068 # the arguments are meant to split
    out=$(cargo bench -q $@ 2>&1) || { printf '%s\n' "$out" >&2; exit 1; }
    printf '%s\n' "$out" >&2
    while IFS='=' read -r name v; do
        value[$name]=$v
    done < <(printf '%s\n' "$out" | grep -E '^[a-z0-9_]+=[-0-9.]+$')
}
measure -p goalpost-orchestrator --bench worktree "${bench_args[@]}"
measure -p goalpost-orchestrator --bench audit "${bench_args[@]}"
measure -p goalpost-orchestrator --bench run "${bench_args[@]}"
measure -p goalpost-shared --bench parse
measure -p goalpost-shared --bench sandbox

recorded() {
    [[ -f "$baseline_file" ]] && awk -v n="$1" '$1 == n { print $2 }' "$baseline_file" | tail -n 1
}
value[p5_budget_mb]=64
value[parse_recorded_ms]=$(recorded parse_ms || true)
value[parse_recorded_ms]=${value[parse_recorded_ms]:-${value[parse_ms]}}

# figure | goalpost's value | baseline | unit | ratio target (goalpost / baseline)
rows=(
    "P1 first use|p1_first_s|p1_add_s|s|<= 1.0"
    "P1 pooled|p1_pooled_s|p1_add_s|s|<= 0.2"
    "P2 per phase|p2_goalpost_s|p2_shell_s|s|<= 0.5"
    "P3 makespan|p3_makespan_s|p3_ideal_s|s|<= 1.1"
    "P4 re-audit|p4_reaudit_s|p4_first_s|s|<= 0.05"
    # A first audit with canary and census (the base's census from the store) against
    # the same audit with both switched off.
    "P4 integrity|p4i_first_s|p4i_plain_s|s|<= 1.3"
    "P5 peak RSS|p5_peak_rss_mb|p5_budget_mb|MB|<= 1.0"
    "parse 500|parse_ms|parse_recorded_ms|ms|abs < 50"
    # The sandbox's start cost per turn: the ms a confined `true` adds to an unconfined
    # one (the baseline column), median; the bench prints the confined/unconfined ratio.
    "sandbox turn|sandbox_added_ms|sandbox_unconfined_ms|ms|abs < 10"
)
printf '\n%-13s | %10s | %10s | %4s | %7s | %s\n' figure goalpost baseline unit ratio target
printf '%s\n' "--------------+------------+------------+------+---------+----------------"
met=0
for row in "${rows[@]}"; do
    IFS='|' read -r label name base unit target <<<"$row"
    v=${value[$name]:-}
    b=${value[$base]:-}
    if [[ -z "$v" || -z "$b" ]]; then
        echo "bench/run.sh: no figure for $label ($name / $base)" >&2
        exit 1
    fi
    ratio=$(awk -v v="$v" -v b="$b" 'BEGIN { if (b > 0) printf "%.3f", v / b; else print "-" }')
    read -r op limit <<<"$target"
    if [[ "$op" == abs ]]; then
        read -r _ op limit <<<"$target"
        subject=$v
    else
        subject=$ratio
    fi
    ok=$(awk -v v="$subject" -v op="$op" -v l="$limit" 'BEGIN {
        if (op == "<") r = v < l; else if (op == "<=") r = v <= l;
        else if (op == ">") r = v > l; else r = v >= l; print r ? "ok" : "MISSED" }')
    [[ "$ok" == ok ]] && met=$((met + 1))
    shown_target=$target
    [[ "$target" == abs* ]] && shown_target="${target#abs } $unit"
    printf '%-13s | %10s | %10s | %4s | %7s | %s (%s)\n' \
        "$label" "$v" "$b" "$unit" "$ratio" "$shown_target" "$ok"
done
echo "$met of ${#rows[@]} targets met$($quick && echo ' (quick sizes: not the figures of record)')"
echo
names=(p1_add_s p1_first_s p1_pooled_s p2_goalpost_s p2_shell_s p3_makespan_s p3_ideal_s
    p4_first_s p4_reaudit_s p4i_plain_s p4i_first_s p5_peak_rss_mb parse_ms)
for name in "${names[@]}"; do
    echo "$name=${value[$name]}"
done

if $save; then
    {
        echo "# figure value: from bench/run.sh$($quick && echo ' --quick') on $(date -u +%Y-%m-%d)"
        for name in "${names[@]}"; do
            echo "$name ${value[$name]}"
        done
    } >"$baseline_file"
    echo "baseline saved to $baseline_file" >&2
fi
