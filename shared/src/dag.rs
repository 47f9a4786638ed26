//! The phase DAG: which phase waits for which, the order phases run in, and the views of
//! that graph people read (`plan --text`, `--dot`, `--json`).
//!
//! Every order this module returns is deterministic: among phases that could go next, the
//! one written first in the goal file goes first.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap};
use std::fmt::Write as _;

use petgraph::Direction;
use petgraph::graph::{DiGraph, NodeIndex};
use serde_json::json;

use crate::plan::Plan;

/// Finds one cycle in the directed graph with nodes `0..n` and `edges` (from = dependency,
/// to = dependent), or `None` if the graph is acyclic.
///
/// The cycle is returned in edge order, starting at its smallest node, with the first node
/// not repeated at the end: `[a, b, c]` means `a → b → c → a`. A self-loop is `[a]`.
/// Edges naming a node `>= n` are ignored. The answer depends only on `n` and the set of
/// edges, not on their order.
pub fn find_cycle(n: usize, edges: &[(usize, usize)]) -> Option<Vec<usize>> {
    let mut succ: Vec<Vec<usize>> = vec![Vec::new(); n];
    for &(from, to) in edges {
        if from < n && to < n {
            succ[from].push(to);
        }
    }
    for s in &mut succ {
        s.sort_unstable();
        s.dedup();
    }

    #[derive(Clone, Copy, PartialEq)]
    enum Color {
        White,
        Grey,
        Black,
    }
    let mut color = vec![Color::White; n];
    // Iterative depth-first search: (node, index of the next successor to look at).
    let mut stack: Vec<(usize, usize)> = Vec::new();
    for root in 0..n {
        if color[root] != Color::White {
            continue;
        }
        color[root] = Color::Grey;
        stack.push((root, 0));
        while let Some(top) = stack.last_mut() {
            let node = top.0;
            if let Some(&to) = succ[node].get(top.1) {
                top.1 += 1;
                match color[to] {
                    Color::White => {
                        color[to] = Color::Grey;
                        stack.push((to, 0));
                    }
                    Color::Grey => {
                        // `to` is on the stack: the path from it to `node` closes a cycle.
                        let start = stack.iter().position(|&(v, _)| v == to).unwrap_or(0);
                        let mut cycle: Vec<usize> =
                            stack[start..].iter().map(|&(v, _)| v).collect();
                        let min_at = cycle
                            .iter()
                            .enumerate()
                            .min_by_key(|&(_, v)| *v)
                            .map_or(0, |(i, _)| i);
                        cycle.rotate_left(min_at);
                        return Some(cycle);
                    }
                    Color::Black => {}
                }
            } else {
                color[node] = Color::Black;
                stack.pop();
            }
        }
    }
    None
}

/// The dependency graph of a plan's phases. Node weights are indices into `plan.phases`;
/// an edge runs from a dependency to its dependent.
#[derive(Debug, Clone)]
pub struct PhaseDag {
    graph: DiGraph<usize, ()>,
    ids: Vec<String>,
    titles: Vec<String>,
    by_id: HashMap<String, NodeIndex>,
}

impl PhaseDag {
    /// Builds the graph of a validated plan. Dependencies on unknown phases are ignored
    /// (validation reports them); a repeated dependency counts once.
    pub fn new(plan: &Plan) -> PhaseDag {
        let mut graph = DiGraph::with_capacity(plan.phases.len(), plan.phases.len());
        let mut by_id = HashMap::with_capacity(plan.phases.len());
        for (i, phase) in plan.phases.iter().enumerate() {
            let node = graph.add_node(i);
            // A duplicate id is a validation error; the first phase keeps the name.
            by_id.entry(phase.id.value.clone()).or_insert(node);
        }
        for (i, phase) in plan.phases.iter().enumerate() {
            for dep in &phase.depends_on {
                if let Some(&from) = by_id.get(&dep.value) {
                    graph.update_edge(from, NodeIndex::new(i), ());
                }
            }
        }
        PhaseDag {
            graph,
            ids: plan.phases.iter().map(|p| p.id.value.clone()).collect(),
            titles: plan.phases.iter().map(|p| p.title.clone()).collect(),
            by_id,
        }
    }

    /// Number of phases.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// True when the plan has no phases.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The phase ids in plan order.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.ids.iter().map(String::as_str)
    }

    /// A topological order: every phase after all its dependencies, and among phases whose
    /// dependencies are placed, the one written first in the plan goes first. Phases on a
    /// cycle (which validation rejects) are left out.
    pub fn topo_order(&self) -> Vec<&str> {
        self.topo_indices()
            .into_iter()
            .map(|i| self.ids[i].as_str())
            .collect()
    }

    /// The phases that may start now: not done, not started, and every dependency done;
    /// in plan order.
    pub fn ready(&self, done: &BTreeSet<String>, started: &BTreeSet<String>) -> Vec<&str> {
        self.ids
            .iter()
            .enumerate()
            .filter(|(_, id)| !done.contains(*id) && !started.contains(*id))
            .filter(|(i, _)| {
                self.deps_of(*i)
                    .into_iter()
                    .all(|d| done.contains(&self.ids[d]))
            })
            .map(|(_, id)| id.as_str())
            .collect()
    }

    /// The number of phases on the longest dependency chain (0 for an empty plan).
    pub fn critical_path_len(&self) -> usize {
        self.levels().len()
    }

    /// The direct dependencies of phase `id`, in plan order (empty for an unknown id).
    pub fn dependencies(&self, id: &str) -> Vec<&str> {
        self.neighbours(id, Direction::Incoming)
    }

    /// The phases that depend directly on phase `id`, in plan order (empty for an unknown id).
    pub fn dependents(&self, id: &str) -> Vec<&str> {
        self.neighbours(id, Direction::Outgoing)
    }

    /// The phases grouped by depth: level 0 has no dependencies, level k depends on at
    /// least one phase of level k-1 and none deeper. Each level is in plan order.
    pub fn levels(&self) -> Vec<Vec<&str>> {
        let mut depth = vec![0usize; self.len()];
        let order = self.topo_indices();
        for &i in &order {
            depth[i] = self
                .deps_of(i)
                .into_iter()
                .map(|d| depth[d] + 1)
                .max()
                .unwrap_or(0);
        }
        let mut levels: Vec<Vec<usize>> = Vec::new();
        for &i in &order {
            if levels.len() <= depth[i] {
                levels.resize_with(depth[i] + 1, Vec::new);
            }
            levels[depth[i]].push(i);
        }
        levels
            .into_iter()
            .map(|mut level| {
                level.sort_unstable();
                level.into_iter().map(|i| self.ids[i].as_str()).collect()
            })
            .collect()
    }

    /// One line per phase in topological order: the id, then `<-` and its dependencies.
    ///
    /// ```text
    /// lexer
    /// schema
    /// parser <- lexer, schema
    /// ```
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for i in self.topo_indices() {
            out.push_str(&self.ids[i]);
            let deps = self.deps_of(i);
            if !deps.is_empty() {
                out.push_str(" <- ");
                let names: Vec<&str> = deps.iter().map(|&d| self.ids[d].as_str()).collect();
                out.push_str(&names.join(", "));
            }
            out.push('\n');
        }
        out
    }

    /// The graph in Graphviz DOT, left to right, each node labelled "id: title".
    pub fn to_dot(&self) -> String {
        let mut out = String::from("digraph plan {\n  rankdir=LR;\n  node [shape=box];\n");
        for (i, id) in self.ids.iter().enumerate() {
            let label = if self.titles[i].is_empty() {
                id.clone()
            } else {
                format!("{id}: {}", self.titles[i])
            };
            // Writing to a String cannot fail.
            let _ = writeln!(out, "  {} [label={}];", dot_quote(id), dot_quote(&label));
        }
        for edge in self.graph.raw_edges() {
            let _ = writeln!(
                out,
                "  {} -> {};",
                dot_quote(&self.ids[edge.source().index()]),
                dot_quote(&self.ids[edge.target().index()])
            );
        }
        out.push_str("}\n");
        out
    }

    /// The graph as JSON:
    /// `{"phases": [{"id", "title", "depends_on": [..]}], "order": [..],
    /// "critical_path": n, "levels": [[..], ..]}`.
    pub fn to_json(&self) -> serde_json::Value {
        let phases: Vec<serde_json::Value> = (0..self.len())
            .map(|i| {
                let deps: Vec<&str> = self
                    .deps_of(i)
                    .into_iter()
                    .map(|d| self.ids[d].as_str())
                    .collect();
                json!({ "id": self.ids[i], "title": self.titles[i], "depends_on": deps })
            })
            .collect();
        json!({
            "phases": phases,
            "order": self.topo_order(),
            "critical_path": self.critical_path_len(),
            "levels": self.levels(),
        })
    }

    /// Kahn's algorithm with a min-heap on plan index.
    fn topo_indices(&self) -> Vec<usize> {
        let n = self.len();
        let mut indegree: Vec<usize> = (0..n).map(|i| self.deps_of(i).len()).collect();
        let mut heap: BinaryHeap<Reverse<usize>> =
            (0..n).filter(|&i| indegree[i] == 0).map(Reverse).collect();
        let mut order = Vec::with_capacity(n);
        while let Some(Reverse(i)) = heap.pop() {
            order.push(i);
            for next in self
                .graph
                .neighbors_directed(NodeIndex::new(i), Direction::Outgoing)
            {
                let j = next.index();
                indegree[j] -= 1;
                if indegree[j] == 0 {
                    heap.push(Reverse(j));
                }
            }
        }
        order
    }

    /// Direct dependencies of node `i`, sorted by plan index.
    fn deps_of(&self, i: usize) -> Vec<usize> {
        self.adjacent(NodeIndex::new(i), Direction::Incoming)
    }

    fn adjacent(&self, node: NodeIndex, dir: Direction) -> Vec<usize> {
        let mut v: Vec<usize> = self
            .graph
            .neighbors_directed(node, dir)
            .map(|n| n.index())
            .collect();
        v.sort_unstable();
        v
    }

    fn neighbours(&self, id: &str, dir: Direction) -> Vec<&str> {
        match self.by_id.get(id) {
            Some(&node) => self
                .adjacent(node, dir)
                .into_iter()
                .map(|i| self.ids[i].as_str())
                .collect(),
            None => Vec::new(),
        }
    }
}

/// A DOT double-quoted string. Backslashes are doubled so Graphviz's label escapes
/// (`\n`, `\l`, `\N`) cannot be smuggled in through a title; line breaks become `\n`.
fn dot_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => {}
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::{Contract, Spanned};
    use crate::plan::{Phase, Selection, Settings};

    /// A plan from `(id, title, deps)` triples.
    fn plan(phases: &[(&str, &str, &[&str])]) -> Plan {
        Plan {
            path: "goal.md".into(),
            title: None,
            settings: Settings::default(),
            contract: Contract::default(),
            phases: phases
                .iter()
                .map(|(id, title, deps)| Phase {
                    id: Spanned::new(id.to_string(), 1, 1),
                    title: title.to_string(),
                    depends_on: deps
                        .iter()
                        .map(|d| Spanned::new(d.to_string(), 1, 1))
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

    fn set(ids: &[&str]) -> BTreeSet<String> {
        ids.iter().map(|s| s.to_string()).collect()
    }

    fn compiler() -> Plan {
        plan(&[
            ("parser", "Parser", &["lexer", "schema"]),
            ("lexer", "Lexer", &[]),
            ("schema", "Schema", &[]),
            ("codegen", "Code generation", &["parser"]),
            ("docs", "Docs", &["schema"]),
        ])
    }

    #[test]
    fn find_cycle_acyclic_is_none() {
        assert_eq!(find_cycle(0, &[]), None);
        assert_eq!(find_cycle(3, &[(0, 1), (1, 2), (0, 2)]), None);
    }

    #[test]
    fn find_cycle_self_loop() {
        assert_eq!(find_cycle(3, &[(0, 1), (2, 2)]), Some(vec![2]));
    }

    #[test]
    fn find_cycle_starts_at_smallest_and_follows_edges() {
        assert_eq!(
            find_cycle(4, &[(3, 1), (1, 2), (2, 3), (0, 1)]),
            Some(vec![1, 2, 3])
        );
    }

    #[test]
    fn find_cycle_ignores_edge_order_and_out_of_range() {
        let a = find_cycle(5, &[(0, 1), (1, 0), (2, 3), (3, 2), (4, 9)]);
        let b = find_cycle(5, &[(3, 2), (2, 3), (1, 0), (0, 1), (9, 4)]);
        assert_eq!(a, b);
        assert_eq!(a, Some(vec![0, 1]));
    }

    #[test]
    fn topo_order_prefers_plan_order() {
        let dag = PhaseDag::new(&compiler());
        assert_eq!(
            dag.topo_order(),
            ["lexer", "schema", "parser", "codegen", "docs"]
        );
    }

    #[test]
    fn ready_needs_all_deps_done() {
        let dag = PhaseDag::new(&compiler());
        let none = set(&[]);
        assert_eq!(dag.ready(&none, &none), ["lexer", "schema"]);
        assert_eq!(
            dag.ready(&set(&["lexer"]), &set(&["schema"])),
            Vec::<&str>::new()
        );
        assert_eq!(
            dag.ready(&set(&["lexer", "schema"]), &none),
            ["parser", "docs"]
        );
        assert_eq!(
            dag.ready(&set(&["lexer", "schema"]), &set(&["docs"])),
            ["parser"]
        );
    }

    #[test]
    fn critical_path_and_levels() {
        let dag = PhaseDag::new(&compiler());
        assert_eq!(dag.critical_path_len(), 3);
        assert_eq!(
            dag.levels(),
            vec![
                vec!["lexer", "schema"],
                vec!["parser", "docs"],
                vec!["codegen"]
            ]
        );
        assert_eq!(PhaseDag::new(&plan(&[])).critical_path_len(), 0);
        assert_eq!(
            PhaseDag::new(&plan(&[("a", "", &[])])).critical_path_len(),
            1
        );
    }

    #[test]
    fn neighbours_in_plan_order() {
        let dag = PhaseDag::new(&compiler());
        assert_eq!(dag.dependencies("parser"), ["lexer", "schema"]);
        assert_eq!(dag.dependents("schema"), ["parser", "docs"]);
        assert!(dag.dependencies("nope").is_empty());
    }

    #[test]
    fn unknown_and_repeated_deps_are_ignored() {
        let dag = PhaseDag::new(&plan(&[("a", "", &[]), ("b", "", &["a", "a", "ghost"])]));
        assert_eq!(dag.dependencies("b"), ["a"]);
        assert_eq!(dag.topo_order(), ["a", "b"]);
    }

    #[test]
    fn text_lists_deps() {
        let dag = PhaseDag::new(&compiler());
        assert_eq!(
            dag.to_text(),
            "lexer\nschema\nparser <- lexer, schema\ncodegen <- parser\ndocs <- schema\n"
        );
    }

    #[test]
    fn dot_quotes_and_escapes() {
        let dag = PhaseDag::new(&plan(&[
            ("a", "Say \"hi\" \\ bye", &[]),
            ("b-2", "", &["a"]),
        ]));
        assert_eq!(
            dag.to_dot(),
            "digraph plan {\n  rankdir=LR;\n  node [shape=box];\n  \"a\" [label=\"a: Say \\\"hi\\\" \\\\ bye\"];\n  \"b-2\" [label=\"b-2\"];\n  \"a\" -> \"b-2\";\n}\n"
        );
    }

    #[test]
    fn json_shape() {
        let dag = PhaseDag::new(&compiler());
        let v = dag.to_json();
        assert_eq!(v["order"][2], "parser");
        assert_eq!(v["critical_path"], 3);
        assert_eq!(v["phases"][0]["depends_on"], json!(["lexer", "schema"]));
        assert_eq!(v["phases"][3]["title"], "Code generation");
        assert_eq!(v["levels"][2], json!(["codegen"]));
    }
}
