//! The job graph: steps and the channels between them, built from the
//! operators and channels that timely logs while a dataflow is built.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use timely::logging::TimelyEvent;

/// One node of a [`JobGraph`]: every operator of one step, or one operator
/// that belongs to no step (a `Map`, a `Filter`, an exchange).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GraphNode {
    /// Unique in the graph: the step id, or for an operator of no step its
    /// name with a number when the name occurs more than once (`Map#2`).
    pub id: String,
    /// What the node does: the shortest operator kind of a step (`Source`,
    /// `Window`, `Rise`, `Sink`), or the operator's name.
    pub kind: String,
    /// Whether `id` is a step id, whose counters
    /// [`crate::metrics::Metrics::steps`] reports.
    pub step: bool,
    /// The names of the node's timely operators, in build order.
    pub operators: Vec<String>,
}

/// A channel between two nodes, by their ids.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct GraphEdge {
    /// The sending node.
    pub from: String,
    /// The receiving node.
    pub to: String,
}

/// A dataflow as steps and channels, in build order: what `keyflow explain`
/// prints and the dashboard draws.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobGraph {
    /// The nodes, in the order their first operator was built.
    pub nodes: Vec<GraphNode>,
    /// The channels, without repeats and without channels inside a step.
    pub edges: Vec<GraphEdge>,
}

/// Splits an operator name of the form `Kind(step-id)` whose id is one of
/// `steps`.
fn step_of<'a>(name: &'a str, steps: &BTreeSet<&str>) -> Option<(&'a str, &'a str)> {
    let (kind, rest) = name.split_once('(')?;
    let id = rest.strip_suffix(')')?;
    (!kind.is_empty() && steps.contains(id)).then_some((kind, id))
}

impl JobGraph {
    /// Builds the graph from timely's `Operates` and `Channels` events and
    /// the dataflow's step ids ([`crate::Dataflow::step_ids`]). Operators
    /// named `Kind(id)` for a step id belong to that step (every keyflow
    /// step names its operators so); the operators of one step become one
    /// node. Operators inside nested scopes are shown as their scope;
    /// operators of no step with no channel are left out.
    ///
    /// # Examples
    /// ```
    /// use keyflow_dataflow::explain::explain_graph;
    /// use keyflow_dataflow::prelude::*;
    ///
    /// let graph = explain_graph(|flow| {
    ///     let input = IterSource::new("numbers", 1, |_| (0..3u64).map(|i| (i, i)));
    ///     let _ = flow
    ///         .source("numbers", input, &SourceConfig::default())?
    ///         .key_by(|i| (i % 2, i))
    ///         .window(WindowSpec::tumbling(SECOND)?)
    ///         .count("counts");
    ///     Ok(())
    /// })
    /// .unwrap();
    /// let ids: Vec<&str> = graph.nodes.iter().map(|n| n.id.as_str()).collect();
    /// assert_eq!(ids, ["numbers", "KeyBy", "counts"]);
    /// assert_eq!(graph.nodes[2].kind, "Window");
    /// assert_eq!(graph.edges.len(), 2);
    /// ```
    pub fn from_events(events: &[TimelyEvent], steps: &[String]) -> JobGraph {
        let steps: BTreeSet<&str> = steps.iter().map(String::as_str).collect();
        // Top-level operators (address [dataflow, index]) by address.
        let mut operators: BTreeMap<Vec<usize>, String> = BTreeMap::new();
        for event in events {
            if let TimelyEvent::Operates(op) = event {
                if op.addr.len() == 2 {
                    operators.insert(op.addr.clone(), op.name.clone());
                }
            }
        }
        // Non-step names seen more than once get numbers.
        let mut uses: BTreeMap<&str, usize> = BTreeMap::new();
        for name in operators.values() {
            if step_of(name, &steps).is_none() {
                *uses.entry(name.as_str()).or_default() += 1;
            }
        }
        let mut numbered: BTreeMap<&str, usize> = BTreeMap::new();
        let mut node_of: BTreeMap<Vec<usize>, usize> = BTreeMap::new();
        let mut nodes: Vec<GraphNode> = Vec::new();
        let mut by_id: BTreeMap<String, usize> = BTreeMap::new();
        for (addr, name) in &operators {
            let (id, kind, step) = match step_of(name, &steps) {
                Some((kind, id)) => (id.to_string(), kind.to_string(), true),
                None => {
                    let n = numbered.entry(name.as_str()).or_default();
                    *n += 1;
                    let id = if uses[name.as_str()] > 1 {
                        format!("{name}#{n}")
                    } else {
                        name.clone()
                    };
                    (id, name.clone(), false)
                }
            };
            // A step id spelled like another operator's name: keep both.
            let mut id = id;
            while let Some(&i) = by_id.get(&id) {
                if nodes[i].step == step {
                    break;
                }
                id.push_str("#op");
            }
            let index = match by_id.get(&id) {
                Some(&i) => i,
                None => {
                    nodes.push(GraphNode {
                        id: id.clone(),
                        kind: kind.clone(),
                        step,
                        operators: Vec::new(),
                    });
                    by_id.insert(id, nodes.len() - 1);
                    nodes.len() - 1
                }
            };
            let node = &mut nodes[index];
            node.operators.push(name.clone());
            if kind.len() < node.kind.len() {
                node.kind = kind;
            }
            node_of.insert(addr.clone(), index);
        }
        let mut edges = BTreeSet::new();
        let mut ordered = Vec::new();
        for event in events {
            let TimelyEvent::Channels(ch) = event else {
                continue;
            };
            // Index 0 of a scope is the scope's own boundary.
            if ch.scope_addr.len() != 1 || ch.source.0 == 0 || ch.target.0 == 0 {
                continue;
            }
            let at = |index: usize| {
                let mut addr = ch.scope_addr.to_vec();
                addr.push(index);
                node_of.get(&addr).copied()
            };
            if let (Some(from), Some(to)) = (at(ch.source.0), at(ch.target.0)) {
                if from != to && edges.insert((from, to)) {
                    ordered.push((from, to));
                }
            }
        }
        let edges = ordered
            .iter()
            .map(|&(from, to)| GraphEdge {
                from: nodes[from].id.clone(),
                to: nodes[to].id.clone(),
            })
            .collect();
        // An operator of no step with no channel (an empty stream that
        // nothing reads) says nothing about the job.
        let linked: BTreeSet<usize> = ordered.iter().flat_map(|&(a, b)| [a, b]).collect();
        let nodes = nodes
            .into_iter()
            .enumerate()
            .filter(|(i, n)| n.step || linked.contains(i))
            .map(|(_, n)| n)
            .collect();
        JobGraph { nodes, edges }
    }

    /// The node with id `id`.
    pub fn node(&self, id: &str) -> Option<&GraphNode> {
        self.nodes.iter().find(|n| n.id == id)
    }
}
