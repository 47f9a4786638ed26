//! The phase DAG drawn as inline SVG: one column per depth (the longest chain of
//! dependencies before a phase), one box per phase coloured by its state, one arrow per
//! dependency. Generated here so the page needs nothing at run time.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use goalpost_shared::plan::Plan;
use goalpost_state::PhaseRow;

use super::pages::esc;

const NODE_W: u32 = 160;
const NODE_H: u32 = 44;
const COL: u32 = 220;
const ROW: u32 = 64;
const PAD: u32 = 12;

/// The SVG of `plan`'s phases with the states of `phases`; each box links to
/// `#phase-<id>` on the page.
pub fn svg(plan: &Plan, phases: &[PhaseRow]) -> String {
    let ids: Vec<&str> = plan.phases.iter().map(|p| p.id.value.as_str()).collect();
    let deps: BTreeMap<&str, Vec<&str>> = plan
        .phases
        .iter()
        .map(|p| {
            let ds = p
                .depends_on
                .iter()
                .map(|d| d.value.as_str())
                .filter(|d| ids.contains(d))
                .collect();
            (p.id.value.as_str(), ds)
        })
        .collect();
    // The longest chain by relaxation: the plan was validated acyclic, so one pass per
    // phase reaches the fixed point.
    let mut depth: BTreeMap<&str, u32> = BTreeMap::new();
    for _ in 0..=ids.len() {
        for id in &ids {
            let d = deps[id]
                .iter()
                .map(|dep| depth.get(dep).map_or(1, |x| x + 1))
                .max()
                .unwrap_or(0);
            depth.insert(id, d);
        }
    }
    let mut rows: BTreeMap<u32, u32> = BTreeMap::new();
    let mut place: BTreeMap<&str, (u32, u32)> = BTreeMap::new();
    for id in &ids {
        let col = depth[id];
        let row = rows.entry(col).or_default();
        place.insert(id, (PAD + col * COL, PAD + *row * ROW));
        *row += 1;
    }
    let width = place.values().map(|p| p.0).max().unwrap_or(0) + NODE_W + PAD;
    let height = place.values().map(|p| p.1).max().unwrap_or(0) + NODE_H + PAD;
    let mut out = format!(
        "<svg id=\"dag\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" \
         viewBox=\"0 0 {width} {height}\" role=\"img\" aria-label=\"phase DAG\">\
         <defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" markerWidth=\"8\" \
         markerHeight=\"8\" orient=\"auto-start-reverse\"><path d=\"M 0 0 L 10 5 L 0 10 z\" \
         fill=\"#666\"/></marker></defs>"
    );
    for id in &ids {
        let (x2, y2) = place[id];
        for dep in &deps[id] {
            let (x1, y1) = place[dep];
            let _ = write!(
                out,
                "<line class=\"edge\" x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#666\" \
                 marker-end=\"url(#arrow)\"/>",
                x1 + NODE_W,
                y1 + NODE_H / 2,
                x2,
                y2 + NODE_H / 2
            );
        }
    }
    for id in &ids {
        let (x, y) = place[id];
        let state = phases
            .iter()
            .find(|p| p.phase_id == *id)
            .map_or("pending", |p| p.state.as_str());
        let _ = write!(
            out,
            "<a href=\"#phase-{id}\"><g class=\"node {state}\" data-phase=\"{id}\" \
             data-state=\"{state}\"><rect x=\"{x}\" y=\"{y}\" width=\"{NODE_W}\" \
             height=\"{NODE_H}\" rx=\"6\"/><text x=\"{}\" y=\"{}\" text-anchor=\"middle\" \
             class=\"id\">{id}</text><text x=\"{}\" y=\"{}\" text-anchor=\"middle\" \
             class=\"state\">{state}</text></g></a>",
            x + NODE_W / 2,
            y + 18,
            x + NODE_W / 2,
            y + 35,
            id = esc(id),
        );
    }
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use goalpost_state::PhaseStatus;

    const GOAL: &str = "# Goal: g\n\n## Outcome\nDone.\n\n## Verification surface\n- `true`\n\n## Phases\n\n### a: A\n\n### b: B\nDepends on: a\n\n### c: C\nDepends on: a\n\n### d: D\nDepends on: b, c\n";

    #[test]
    fn each_phase_is_a_box_in_the_column_of_its_depth_with_an_arrow_per_dependency() {
        let plan = goalpost_shared::goal::parse(std::path::Path::new("goal.md"), GOAL).unwrap();
        let phases = vec![PhaseRow {
            phase_id: "a".into(),
            state: PhaseStatus::Merged,
            base: None,
            merged_commit: None,
            winner: Some(1),
            why: None,
        }];
        let svg = svg(&plan, &phases);
        assert_eq!(svg.matches("<line class=\"edge\"").count(), 4, "{svg}");
        assert!(
            svg.contains("data-phase=\"a\" data-state=\"merged\""),
            "{svg}"
        );
        assert!(
            svg.contains("data-phase=\"d\" data-state=\"pending\""),
            "{svg}"
        );
        // a in column 0, b and c in column 1 one above the other, d in column 2.
        for (id, x, y) in [
            ("a", 12, 12),
            ("b", 232, 12),
            ("c", 232, 76),
            ("d", 452, 12),
        ] {
            let at = svg.find(&format!("data-phase=\"{id}\"")).unwrap();
            let rect = &svg[at..];
            assert!(
                rect.contains(&format!("<rect x=\"{x}\" y=\"{y}\"")),
                "{id} not at {x},{y}: {svg}"
            );
        }
    }
}
