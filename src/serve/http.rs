//! The HTTP server: axum on a current-thread tokio runtime of its own
//! thread, so that it takes nothing from the timely workers.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use axum::extract::State;
use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use keyflow::dataflow::explain::JobGraph;
use keyflow::dataflow::metrics::StepSnapshot;
use serde::Serialize;

use super::layout::Layout;
use super::render;
use super::state::Shared;

/// The server's state: the job's, and the graph's layout once the graph is
/// known (it does not change while the job runs).
struct App {
    shared: Arc<Shared>,
    layout: OnceLock<Layout>,
}

impl App {
    fn graph(&self) -> Option<&JobGraph> {
        self.shared.ctx.graph()
    }

    fn counts(&self) -> BTreeMap<String, StepSnapshot> {
        self.shared
            .ctx
            .metrics
            .cluster()
            .steps
            .into_iter()
            .collect()
    }

    /// The graph as SVG with the counts now.
    fn graph_svg(&self) -> String {
        match self.graph() {
            Some(graph) => {
                let layout = self.layout.get_or_init(|| Layout::new(graph));
                layout.svg(graph, &self.counts())
            }
            None => r#"<p class="when">The job's graph is being built.</p>"#.into(),
        }
    }
}

type AppRef = Arc<App>;

fn typed(content_type: &'static str, body: String) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

fn json<T: Serialize>(value: &T) -> Response {
    match serde_json::to_string(value) {
        Ok(body) => typed("application/json", body),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// JSON lines, one value a line.
fn json_lines<T: Serialize>(values: &[T]) -> Response {
    let mut body = String::new();
    for value in values {
        match serde_json::to_string(value) {
            Ok(line) => {
                body.push_str(&line);
                body.push('\n');
            }
            Err(e) => {
                return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response();
            }
        }
    }
    typed("application/x-ndjson", body)
}

async fn index(State(app): State<AppRef>) -> Response {
    typed(
        "text/html; charset=utf-8",
        render::page(&app.shared, &app.graph_svg()),
    )
}

/// The changing parts of the page; `?lists=KEY` (the `lists` of the last
/// answer) leaves out lists that still show the same.
async fn view(State(app): State<AppRef>, uri: Uri) -> Response {
    let known = uri.query().and_then(|q| {
        q.split('&')
            .find_map(|pair| pair.strip_prefix("lists="))
            .map(percent_decode)
    });
    json(&render::view(
        &app.shared,
        &app.graph_svg(),
        known.as_deref(),
    ))
}

/// Decodes `%XX` escapes (and `+` as a space) of a query value.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(a), Some(b)) => {
                    out.push((a * 16 + b) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The latest minute that had trending articles, then the latest evaluated
/// minute when it is a later one: the lines `--out` has for them.
async fn trending(State(app): State<AppRef>) -> Response {
    let Some(t) = app.shared.trending() else {
        return not_here("this job has no trending output");
    };
    let mut lines = Vec::new();
    if let Some(shown) = &t.shown {
        lines.push(shown);
    }
    if let Some(latest) = &t.latest {
        if t.shown.as_ref().is_none_or(|s| s.t < latest.t) {
            lines.push(latest);
        }
    }
    json_lines(&lines)
}

/// The latest scored hours, oldest first.
async fn anomaly(State(app): State<AppRef>) -> Response {
    match app.shared.anomaly() {
        Some(hours) => json_lines(&hours),
        None => not_here("this job has no anomaly output"),
    }
}

async fn health(State(app): State<AppRef>) -> Response {
    json(&app.shared.health())
}

/// One node of `/api/graph`: the graph's node with its step's counts.
#[derive(Serialize)]
struct GraphNodeOut<'a> {
    #[serde(flatten)]
    node: &'a keyflow::dataflow::explain::GraphNode,
    #[serde(skip_serializing_if = "Option::is_none")]
    counts: Option<StepSnapshot>,
}

#[derive(Serialize)]
struct GraphOut<'a> {
    job: &'a str,
    /// Whether the dataflow is built (before, the graph is empty).
    ready: bool,
    nodes: Vec<GraphNodeOut<'a>>,
    edges: &'a [keyflow::dataflow::explain::GraphEdge],
}

async fn graph(State(app): State<AppRef>) -> Response {
    let counts = app.counts();
    let graph = app.graph();
    let nodes = graph
        .map(|g| {
            g.nodes
                .iter()
                .map(|node| GraphNodeOut {
                    node,
                    counts: node
                        .step
                        .then(|| counts.get(&node.id).copied().unwrap_or_default()),
                })
                .collect()
        })
        .unwrap_or_default();
    json(&GraphOut {
        job: &app.shared.job,
        ready: graph.is_some(),
        nodes,
        edges: graph.map_or(&[], |g| g.edges.as_slice()),
    })
}

async fn metrics(State(app): State<AppRef>) -> Response {
    typed(
        "text/plain; version=0.0.4; charset=utf-8",
        app.shared.ctx.metrics.prometheus(),
    )
}

fn not_here(what: &str) -> Response {
    (StatusCode::NOT_FOUND, format!("{what}\n")).into_response()
}

async fn fallback() -> Response {
    not_here("not found: the dashboard serves /, /api/trending, /api/anomaly, /api/health, /api/graph and /metrics")
}

/// Serves the dashboard on `listener` from a thread of its own, until the
/// process ends.
pub fn spawn(listener: std::net::TcpListener, shared: Arc<Shared>) -> std::io::Result<()> {
    listener.set_nonblocking(true)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    let app = Arc::new(App {
        shared,
        layout: OnceLock::new(),
    });
    let router = Router::new()
        .route("/", get(index))
        .route("/api/view", get(view))
        .route("/api/trending", get(trending))
        .route("/api/anomaly", get(anomaly))
        .route("/api/health", get(health))
        .route("/api/graph", get(graph))
        .route("/metrics", get(metrics))
        .fallback(fallback)
        .with_state(app);
    std::thread::Builder::new()
        .name("keyflow-serve".into())
        .spawn(move || {
            runtime.block_on(async move {
                let listener = match tokio::net::TcpListener::from_std(listener) {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::error!("the dashboard cannot listen: {e}");
                        return;
                    }
                };
                if let Err(e) = axum::serve(listener, router).await {
                    tracing::error!("the dashboard stopped: {e}");
                }
            })
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::percent_decode;

    #[test]
    fn query_values_are_decoded() {
        assert_eq!(percent_decode("a%2Fb%3Bc+d"), "a/b;c d");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
    }
}
