//! Properties of the phase DAG over random graphs, and the DOT view rendered by Graphviz.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeSet, HashSet};
use std::io::Write;
use std::process::{Command, Stdio};

use goalpost_shared::contract::{Contract, Spanned};
use goalpost_shared::dag::{PhaseDag, find_cycle};
use goalpost_shared::plan::{Phase, Plan, Selection, Settings};
use petgraph::graph::DiGraph;
use proptest::prelude::*;

/// A plan whose phase `i` is called `p{i}` and depends on `deps[i]`.
fn plan(deps: &[Vec<usize>]) -> Plan {
    Plan {
        path: "goal.md".into(),
        title: None,
        settings: Settings::default(),
        contract: Contract::default(),
        phases: deps
            .iter()
            .enumerate()
            .map(|(i, ds)| Phase {
                id: Spanned::new(format!("p{i}"), 1, 1),
                title: format!("Phase \"{i}\" \\ {{x}}"),
                depends_on: ds
                    .iter()
                    .map(|d| Spanned::new(format!("p{d}"), 1, 1))
                    .collect(),
                attempts: Spanned::new(1, 0, 0),
                attempt_agents: Vec::new(),
                select: Spanned::new(Selection::First, 0, 0),
                contract: Contract::default(),
            })
            .collect(),
        implicit_phase: false,
    }
}

fn index(id: &str) -> usize {
    id[1..].parse().unwrap()
}

/// Any directed graph on up to 10 nodes, self-loops and repeated edges included.
fn any_graph() -> impl Strategy<Value = (usize, Vec<(usize, usize)>)> {
    (0usize..10)
        .prop_flat_map(|n| {
            let edge = (0..n.max(1), 0..n.max(1));
            (
                Just(n),
                prop::collection::vec(edge, 0..(if n == 0 { 1 } else { 20 })),
            )
        })
        .prop_map(|(n, edges)| {
            let edges = if n == 0 { Vec::new() } else { edges };
            (n, edges)
        })
}

/// An acyclic graph on up to 12 nodes whose plan order is not its topological order:
/// edges go up a random ranking of the nodes. Returns each node's dependencies.
fn any_dag() -> impl Strategy<Value = Vec<Vec<usize>>> {
    (1usize..12)
        .prop_flat_map(|n| {
            (
                Just((0..n).collect::<Vec<_>>()).prop_shuffle(),
                prop::collection::vec((0..n, 0..n), 0..30),
            )
        })
        .prop_map(|(rank, pairs)| {
            let n = rank.len();
            let mut deps = vec![Vec::new(); n];
            for (a, b) in pairs {
                // Edge from the lower-ranked node to the higher-ranked one.
                if rank[a] < rank[b] {
                    deps[b].push(a);
                } else if rank[b] < rank[a] {
                    deps[a].push(b);
                }
            }
            deps
        })
}

proptest! {
    #[test]
    fn cycle_found_iff_no_toposort((n, edges) in any_graph()) {
        let mut g = DiGraph::<(), ()>::new();
        let nodes: Vec<_> = (0..n).map(|_| g.add_node(())).collect();
        for &(a, b) in &edges {
            g.add_edge(nodes[a], nodes[b], ());
        }
        let cycle = find_cycle(n, &edges);
        prop_assert_eq!(cycle.is_some(), petgraph::algo::toposort(&g, None).is_err());
        if let Some(cycle) = cycle {
            prop_assert!(!cycle.is_empty());
            let set: HashSet<(usize, usize)> = edges.iter().copied().collect();
            for w in 0..cycle.len() {
                let (a, b) = (cycle[w], cycle[(w + 1) % cycle.len()]);
                prop_assert!(set.contains(&(a, b)), "{a} -> {b} is not an edge of {edges:?}");
            }
            let distinct: HashSet<usize> = cycle.iter().copied().collect();
            prop_assert_eq!(distinct.len(), cycle.len());
            // Deterministic: the same edge set in another order gives the same cycle.
            let mut reversed = edges.clone();
            reversed.reverse();
            prop_assert_eq!(find_cycle(n, &reversed), Some(cycle));
        }
    }

    #[test]
    fn order_respects_every_edge(deps in any_dag()) {
        let dag = PhaseDag::new(&plan(&deps));
        let order: Vec<usize> = dag.topo_order().into_iter().map(index).collect();
        prop_assert_eq!(order.len(), deps.len());
        let mut pos = vec![usize::MAX; deps.len()];
        for (at, &i) in order.iter().enumerate() {
            pos[i] = at;
        }
        for (i, ds) in deps.iter().enumerate() {
            for &d in ds {
                prop_assert!(pos[d] < pos[i], "p{d} must come before p{i} in {order:?}");
            }
        }
        // Levels flatten to a valid order too, and their count is the longest chain.
        let mut longest = vec![1usize; deps.len()];
        for &i in &order {
            for &d in &deps[i] {
                longest[i] = longest[i].max(longest[d] + 1);
            }
        }
        prop_assert_eq!(dag.critical_path_len(), longest.iter().copied().max().unwrap_or(0));
        for (level, ids) in dag.levels().iter().enumerate() {
            for id in ids {
                prop_assert_eq!(longest[index(id)], level + 1);
            }
        }
    }

    #[test]
    fn ready_is_exactly_the_unblocked(
        deps in any_dag(),
        done_mask in prop::collection::vec(any::<bool>(), 12),
        started_mask in prop::collection::vec(any::<bool>(), 12),
    ) {
        let dag = PhaseDag::new(&plan(&deps));
        let pick = |mask: &[bool]| -> BTreeSet<String> {
            (0..deps.len()).filter(|&i| mask[i]).map(|i| format!("p{i}")).collect()
        };
        let done = pick(&done_mask);
        let started = pick(&started_mask);
        let ready: Vec<usize> = dag.ready(&done, &started).into_iter().map(index).collect();
        let expected: Vec<usize> = (0..deps.len())
            .filter(|&i| !done_mask[i] && !started_mask[i])
            .filter(|&i| deps[i].iter().all(|&d| done_mask[d]))
            .collect();
        prop_assert_eq!(ready, expected);
    }

    #[test]
    fn dependencies_mirror_dependents(deps in any_dag()) {
        let dag = PhaseDag::new(&plan(&deps));
        for (i, ds) in deps.iter().enumerate() {
            let id = format!("p{i}");
            let want: BTreeSet<usize> = ds.iter().copied().collect();
            let got: Vec<usize> = dag.dependencies(&id).into_iter().map(index).collect();
            prop_assert_eq!(got, want.into_iter().collect::<Vec<_>>());
            for dep in dag.dependents(&id) {
                prop_assert!(deps[index(dep)].contains(&i));
            }
        }
    }
}

#[test]
fn dot_renders_with_graphviz() {
    let on_path = Command::new("dot")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !on_path {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("graphviz `dot` is not on PATH; CI must install it (apt-get install graphviz)");
        }
        eprintln!("\n*** SKIPPED dot_renders_with_graphviz: graphviz `dot` is not on PATH ***\n");
        return;
    }
    let dag = PhaseDag::new(&plan(&[vec![], vec![0], vec![0, 1], vec![], vec![3, 2]]));
    let mut child = Command::new("dot")
        .arg("-Tsvg")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(dag.to_dot().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "dot failed: {stderr}\n{}",
        dag.to_dot()
    );
    assert!(stderr.trim().is_empty(), "dot warned: {stderr}");
    let svg = String::from_utf8_lossy(&out.stdout);
    assert!(svg.contains("<svg"), "{svg}");
    assert!(svg.contains("p4: Phase &quot;4&quot; \\ {x}"), "{svg}");
}
