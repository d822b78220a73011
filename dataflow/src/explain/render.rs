//! [`JobGraph`] as text, Graphviz DOT and Mermaid.

use super::graph::JobGraph;

/// Quotes `text` as a DOT string.
fn dot_string(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '\n' => out.push_str("\\n"),
            _ => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Escapes `text` for a quoted Mermaid label (Mermaid reads `#quot;` for
/// `"`).
fn mermaid_escape(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '"' => "#quot;".to_string(),
            '<' => "#lt;".to_string(),
            '>' => "#gt;".to_string(),
            _ => c.to_string(),
        })
        .collect()
}

impl JobGraph {
    /// One line per node (id, kind, operators), then one per channel.
    ///
    /// # Examples
    /// ```
    /// use keyflow_dataflow::explain::{GraphEdge, GraphNode, JobGraph};
    /// let graph = JobGraph {
    ///     nodes: vec![
    ///         GraphNode { id: "in".into(), kind: "Source".into(), step: true, operators: vec!["Source(in)".into()] },
    ///         GraphNode { id: "Map".into(), kind: "Map".into(), step: false, operators: vec!["Map".into()] },
    ///     ],
    ///     edges: vec![GraphEdge { from: "in".into(), to: "Map".into() }],
    /// };
    /// let text = graph.text();
    /// assert_eq!(text.lines().nth(1), Some("  in   Source  Source(in)"));
    /// assert!(text.contains("in -> Map"));
    /// ```
    pub fn text(&self) -> String {
        let id_width = self.nodes.iter().map(|n| n.id.len()).max().unwrap_or(0);
        let kind_width = self.nodes.iter().map(|n| n.kind.len()).max().unwrap_or(0);
        let mut out = String::from("steps:\n");
        for node in &self.nodes {
            out.push_str(&format!(
                "  {:<id_width$}  {:<kind_width$}  {}\n",
                node.id,
                node.kind,
                node.operators.join(" + ")
            ));
        }
        out.push_str("channels:\n");
        for edge in &self.edges {
            out.push_str(&format!("  {} -> {}\n", edge.from, edge.to));
        }
        out
    }

    /// A Graphviz `digraph` named `name`: steps as boxes, operators of no
    /// step as ellipses.
    ///
    /// # Examples
    /// ```
    /// use keyflow_dataflow::explain::{GraphEdge, GraphNode, JobGraph};
    /// let graph = JobGraph {
    ///     nodes: vec![GraphNode { id: "in".into(), kind: "Source".into(), step: true, operators: vec![] }],
    ///     edges: vec![GraphEdge { from: "in".into(), to: "in".into() }],
    /// };
    /// let dot = graph.dot("job");
    /// assert!(dot.starts_with("digraph \"job\" {"));
    /// assert!(dot.contains("\"in\" -> \"in\";"));
    /// ```
    pub fn dot(&self, name: &str) -> String {
        let mut out = format!("digraph {} {{\n", dot_string(name));
        out.push_str("  rankdir=TB;\n  node [fontname=\"Helvetica\", fontsize=11];\n");
        for node in &self.nodes {
            let (label, shape) = if node.step {
                (format!("{}\n{}", node.id, node.kind), "box, style=rounded")
            } else {
                (node.kind.clone(), "ellipse")
            };
            out.push_str(&format!(
                "  {} [label={}, shape={shape}];\n",
                dot_string(&node.id),
                dot_string(&label)
            ));
        }
        for edge in &self.edges {
            out.push_str(&format!(
                "  {} -> {};\n",
                dot_string(&edge.from),
                dot_string(&edge.to)
            ));
        }
        out.push_str("}\n");
        out
    }

    /// A Mermaid `flowchart`: steps as rounded boxes, operators of no step
    /// as stadiums. Node ids are `n0`, `n1`, .. in node order, since Mermaid
    /// ids cannot hold every character a step id may.
    ///
    /// # Examples
    /// ```
    /// use keyflow_dataflow::explain::{GraphEdge, GraphNode, JobGraph};
    /// let graph = JobGraph {
    ///     nodes: vec![
    ///         GraphNode { id: "in".into(), kind: "Source".into(), step: true, operators: vec![] },
    ///         GraphNode { id: "Map".into(), kind: "Map".into(), step: false, operators: vec![] },
    ///     ],
    ///     edges: vec![GraphEdge { from: "in".into(), to: "Map".into() }],
    /// };
    /// let chart = graph.mermaid();
    /// assert!(chart.starts_with("flowchart TD\n"));
    /// assert!(chart.contains("n0(\"in<br/>Source\")"), "{chart}");
    /// assert!(chart.contains("n0 --> n1"));
    /// ```
    pub fn mermaid(&self) -> String {
        let mut out = String::from("flowchart TD\n");
        for (i, node) in self.nodes.iter().enumerate() {
            let kind = mermaid_escape(&node.kind);
            if node.step {
                let id = mermaid_escape(&node.id);
                out.push_str(&format!("  n{i}(\"{id}<br/>{kind}\")\n"));
            } else {
                out.push_str(&format!("  n{i}([\"{kind}\"])\n"));
            }
        }
        let index = |id: &str| self.nodes.iter().position(|n| n.id == id);
        for edge in &self.edges {
            if let (Some(from), Some(to)) = (index(&edge.from), index(&edge.to)) {
                out.push_str(&format!("  n{from} --> n{to}\n"));
            }
        }
        out
    }
}
