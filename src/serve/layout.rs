//! A small layered layout of the job graph, drawn as inline SVG: nodes in
//! layers by their longest path from a source, ordered within layers to
//! cut crossings, edges that skip layers routed through the layers between.

use std::collections::BTreeMap;
use std::fmt::Write;

use keyflow::dataflow::explain::JobGraph;
use keyflow::dataflow::metrics::StepSnapshot;

use super::render::{escape, thousands};

const STEP_W: f64 = 200.0;
const STEP_H: f64 = 66.0;
const OP_W: f64 = 150.0;
const OP_H: f64 = 30.0;
const BEND_W: f64 = 16.0;
const GAP_X: f64 = 26.0;
const LAYER_GAP: f64 = 44.0;
const MARGIN: f64 = 16.0;

/// One box or bend point of the layout.
#[derive(Debug, Clone)]
struct Slot {
    /// The graph node, or `None` for a bend of an edge that skips layers.
    node: Option<usize>,
    layer: usize,
    x: f64,
    y: f64,
    w: f64,
    h: f64,
}

/// The positions of a graph's nodes and the routes of its edges; computed
/// once per graph, drawn with fresh counts each time.
#[derive(Debug, Clone, Default)]
pub struct Layout {
    slots: Vec<Slot>,
    /// Each edge as the slots it passes, first and last being nodes.
    routes: Vec<Vec<usize>>,
    width: f64,
    height: f64,
}

/// Longest-path layers; a cycle (not made by keyflow's operators) is cut
/// by capping the layer at the node count.
fn layers(n: usize, edges: &[(usize, usize)]) -> Vec<usize> {
    let mut layer = vec![0; n];
    for _ in 0..n {
        let mut changed = false;
        for &(a, b) in edges {
            if layer[b] < layer[a] + 1 && layer[a] + 1 < n {
                layer[b] = layer[a] + 1;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    layer
}

impl Layout {
    /// Lays `graph` out.
    pub fn new(graph: &JobGraph) -> Layout {
        let index: BTreeMap<&str, usize> = graph
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.id.as_str(), i))
            .collect();
        let edges: Vec<(usize, usize)> = graph
            .edges
            .iter()
            .filter_map(|e| Some((*index.get(e.from.as_str())?, *index.get(e.to.as_str())?)))
            .collect();
        let layer = layers(graph.nodes.len(), &edges);
        let mut slots: Vec<Slot> = graph
            .nodes
            .iter()
            .enumerate()
            .map(|(i, node)| {
                let (w, h) = if node.step {
                    (STEP_W, STEP_H)
                } else {
                    (OP_W, OP_H)
                };
                Slot {
                    node: Some(i),
                    layer: layer[i],
                    x: 0.0,
                    y: 0.0,
                    w,
                    h,
                }
            })
            .collect();
        // Edges that go down more than one layer get a bend per layer
        // between; an edge going up (a cycle) is drawn straight.
        let mut routes = Vec::new();
        for &(a, b) in &edges {
            let mut route = vec![a];
            for l in layer[a] + 1..layer[b] {
                slots.push(Slot {
                    node: None,
                    layer: l,
                    x: 0.0,
                    y: 0.0,
                    w: BEND_W,
                    h: OP_H,
                });
                route.push(slots.len() - 1);
            }
            route.push(b);
            routes.push(route);
        }
        let depth = layer.iter().max().map_or(0, |m| m + 1);
        let mut rows: Vec<Vec<usize>> = vec![Vec::new(); depth];
        for (i, slot) in slots.iter().enumerate() {
            rows[slot.layer].push(i);
        }
        order_rows(&mut rows, &routes, slots.len());
        let mut layout = Layout {
            slots,
            routes,
            width: 0.0,
            height: 0.0,
        };
        layout.place(&rows);
        layout
    }

    /// Sets coordinates: rows from the top, each centred.
    fn place(&mut self, rows: &[Vec<usize>]) {
        let widths: Vec<f64> = rows
            .iter()
            .map(|row| {
                row.iter().map(|&i| self.slots[i].w).sum::<f64>()
                    + GAP_X * row.len().saturating_sub(1) as f64
            })
            .collect();
        let width = widths.iter().copied().fold(0.0, f64::max) + 2.0 * MARGIN;
        let mut y = MARGIN;
        for (row, row_width) in rows.iter().zip(&widths) {
            let height = row.iter().map(|&i| self.slots[i].h).fold(0.0, f64::max);
            let mut x = (width - row_width) / 2.0;
            for &i in row {
                let slot = &mut self.slots[i];
                slot.x = x;
                slot.y = y + (height - slot.h) / 2.0;
                x += slot.w + GAP_X;
            }
            y += height + LAYER_GAP;
        }
        self.width = width.max(2.0 * MARGIN);
        self.height = (y - LAYER_GAP + MARGIN).max(2.0 * MARGIN);
    }

    /// Draws the layout of `graph` with each step's counts from `counts`
    /// (by step id).
    pub fn svg(&self, graph: &JobGraph, counts: &BTreeMap<String, StepSnapshot>) -> String {
        let mut out = String::new();
        let _ = write!(
            out,
            r#"<svg class="jobgraph" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w:.0} {h:.0}" width="{w:.0}" height="{h:.0}" role="img" aria-label="job graph">"#,
            w = self.width,
            h = self.height
        );
        out.push_str(
            r#"<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" class="arrowhead"/></marker></defs>"#,
        );
        for route in &self.routes {
            out.push_str(&self.edge_path(route));
        }
        for slot in &self.slots {
            if let Some(i) = slot.node {
                out.push_str(&node_svg(slot, &graph.nodes[i], counts));
            }
        }
        out.push_str("</svg>");
        out
    }

    /// A smooth path through the route's slots, from the bottom of the
    /// first to the top of the last.
    fn edge_path(&self, route: &[usize]) -> String {
        let first = &self.slots[route[0]];
        let last = &self.slots[route[route.len() - 1]];
        let mut points = vec![(first.x + first.w / 2.0, first.y + first.h)];
        for &i in &route[1..route.len() - 1] {
            let s = &self.slots[i];
            points.push((s.x + s.w / 2.0, s.y));
            points.push((s.x + s.w / 2.0, s.y + s.h));
        }
        points.push((last.x + last.w / 2.0, last.y));
        let mut d = format!("M{:.1},{:.1}", points[0].0, points[0].1);
        for pair in points.windows(2) {
            let ((x0, y0), (x1, y1)) = (pair[0], pair[1]);
            let mid = (y0 + y1) / 2.0;
            let _ = write!(d, " C{x0:.1},{mid:.1} {x1:.1},{mid:.1} {x1:.1},{y1:.1}");
        }
        format!(r#"<path class="edge" d="{d}" marker-end="url(#arrow)"/>"#)
    }
}

/// Orders each row by the mean position of its neighbours in the row above,
/// then below, a few times over (the barycentre heuristic).
fn order_rows(rows: &mut [Vec<usize>], routes: &[Vec<usize>], slots: usize) {
    let mut up: Vec<Vec<usize>> = vec![Vec::new(); slots];
    let mut down: Vec<Vec<usize>> = vec![Vec::new(); slots];
    for route in routes {
        for pair in route.windows(2) {
            down[pair[0]].push(pair[1]);
            up[pair[1]].push(pair[0]);
        }
    }
    let mut position = vec![0.0; slots];
    let number = |rows: &[Vec<usize>], position: &mut Vec<f64>| {
        for row in rows {
            for (p, &i) in row.iter().enumerate() {
                position[i] = p as f64;
            }
        }
    };
    number(rows, &mut position);
    for sweep in 0..6 {
        let downward = sweep % 2 == 0;
        let order: Vec<usize> = if downward {
            (1..rows.len()).collect()
        } else {
            (0..rows.len().saturating_sub(1)).rev().collect()
        };
        for r in order {
            let neighbours = if downward { &up } else { &down };
            let key = |i: usize| {
                let n = &neighbours[i];
                if n.is_empty() {
                    position[i]
                } else {
                    n.iter().map(|&j| position[j]).sum::<f64>() / n.len() as f64
                }
            };
            let mut keyed: Vec<(f64, usize)> = rows[r].iter().map(|&i| (key(i), i)).collect();
            // Stable, so ties keep build order.
            keyed.sort_by(|a, b| a.0.total_cmp(&b.0));
            rows[r] = keyed.into_iter().map(|(_, i)| i).collect();
            for (p, &i) in rows[r].iter().enumerate() {
                position[i] = p as f64;
            }
        }
    }
}

/// One node: a step with its counts, or a small operator of no step.
fn node_svg(
    slot: &Slot,
    node: &keyflow::dataflow::explain::GraphNode,
    counts: &BTreeMap<String, StepSnapshot>,
) -> String {
    let (x, y, w, h) = (slot.x, slot.y, slot.w, slot.h);
    let cx = x + w / 2.0;
    let title = escape(&node.operators.join(" + "));
    if !node.step {
        return format!(
            r#"<g class="node op" data-id="{id}"><title>{title}</title><rect x="{x:.1}" y="{y:.1}" width="{w:.0}" height="{h:.0}" rx="15"/><text x="{cx:.1}" y="{ty:.1}" class="kind">{kind}</text></g>"#,
            id = escape(&node.id),
            kind = escape(&clip(&node.kind, 22)),
            ty = y + h / 2.0 + 4.0,
        );
    }
    let c = counts.get(&node.id).copied().unwrap_or_default();
    let warn = if c.late + c.bad + c.dropped > 0 {
        " warn"
    } else {
        ""
    };
    format!(
        concat!(
            r#"<g class="node step{warn}" data-id="{id}"><title>{title}</title>"#,
            r#"<rect x="{x:.1}" y="{y:.1}" width="{w:.0}" height="{h:.0}" rx="8"/>"#,
            r#"<text x="{cx:.1}" y="{y1:.1}" class="id">{id_text}</text>"#,
            r#"<text x="{cx:.1}" y="{y2:.1}" class="kind">{kind}</text>"#,
            r#"<text x="{cx:.1}" y="{y3:.1}" class="counts">in {rin} · out {rout}</text>"#,
            r#"<text x="{cx:.1}" y="{y4:.1}" class="counts bad">late {late} · bad {bad}</text></g>"#
        ),
        warn = warn,
        id = escape(&node.id),
        title = title,
        x = x,
        y = y,
        w = w,
        h = h,
        cx = cx,
        id_text = escape(&clip(&node.id, 26)),
        kind = escape(&node.kind),
        rin = thousands(c.records_in),
        rout = thousands(c.records_out),
        late = thousands(c.late),
        bad = thousands(c.bad),
        y1 = y + 16.0,
        y2 = y + 30.0,
        y3 = y + 45.0,
        y4 = y + 59.0,
    )
}

/// `text`, cut to `max` characters with an ellipsis.
fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max - 1).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use keyflow::dataflow::explain::{GraphEdge, GraphNode};

    fn graph(edges: &[(&str, &str)]) -> JobGraph {
        let mut ids: Vec<&str> = Vec::new();
        for (a, b) in edges {
            for id in [a, b] {
                if !ids.contains(id) {
                    ids.push(id);
                }
            }
        }
        JobGraph {
            nodes: ids
                .iter()
                .map(|id| GraphNode {
                    id: id.to_string(),
                    kind: "Step".into(),
                    step: true,
                    operators: vec![],
                })
                .collect(),
            edges: edges
                .iter()
                .map(|(a, b)| GraphEdge {
                    from: a.to_string(),
                    to: b.to_string(),
                })
                .collect(),
        }
    }

    #[test]
    fn nodes_go_below_what_feeds_them() {
        let g = graph(&[("a", "b"), ("b", "c"), ("a", "c")]);
        let layout = Layout::new(&g);
        let y = |i: usize| layout.slots[i].y;
        assert!(y(0) < y(1) && y(1) < y(2));
        // a -> c skips b's layer: one bend.
        assert_eq!(layout.slots.len(), 4);
        assert_eq!(layout.routes[2].len(), 3);
    }

    #[test]
    fn boxes_in_a_row_do_not_overlap() {
        let g = graph(&[("s", "a"), ("s", "b"), ("s", "c"), ("a", "d"), ("c", "d")]);
        let layout = Layout::new(&g);
        let mut row: Vec<&Slot> = layout.slots.iter().filter(|s| s.layer == 1).collect();
        row.sort_by(|a, b| a.x.total_cmp(&b.x));
        for pair in row.windows(2) {
            assert!(pair[0].x + pair[0].w <= pair[1].x);
        }
        let svg = layout.svg(&g, &BTreeMap::new());
        assert_eq!(svg.matches("<g class=\"node").count(), 5);
        assert_eq!(svg.matches("class=\"edge\"").count(), 5);
    }

    #[test]
    fn a_cycle_does_not_hang() {
        let g = graph(&[("a", "b"), ("b", "a")]);
        let layout = Layout::new(&g);
        assert!(layout.width > 0.0 && layout.height > 0.0);
    }
}
