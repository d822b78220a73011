//! `--serve`: the dashboard in headless Chromium, `/metrics` as strict
//! Prometheus text, the JSON endpoints and the job graph, SIGTERM while
//! serving, the same answer and event counts at 1x1, 1x4 and 2x2, and
//! `explain --format`.

mod dashboard_support;

use std::path::Path;
use std::time::Duration;

use dashboard_support::{
    artifacts, headless, html_text, latest_trending, prometheus, rising_input, write_jsonl, Served,
    KEYFLOW, MINUTE,
};

/// 2016-08-01 10:00 UTC.
const START: u64 = 1_470_045_600_000;

/// `run trending` over `input` with every trending article listed, writing
/// `--out` to `out`, on `workers` workers.
fn trending_args(input: &Path, out: &Path, workers: usize) -> Vec<String> {
    [
        "run",
        "trending",
        "--input",
        input.to_str().unwrap(),
        "--top",
        "0",
        "--quiet",
        "--out",
        out.to_str().unwrap(),
        "--workers",
        &workers.to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// A served trending run over the rising input (with `bad` malformed
/// lines), waited on until its input has ended; also returns the number of
/// good events.
fn served_trending(dir: &Path, bad: usize) -> (Served, usize) {
    let input = dir.join("views.jsonl");
    let events = rising_input(START);
    write_jsonl(&input, &events, bad);
    let mut served = Served::start(dir, &trending_args(&input, &dir.join("out.jsonl"), 2));
    served.wait_until_finished();
    (served, events.len())
}

#[test]
fn the_page_in_headless_chromium_shows_the_latest_trending_minute() {
    let dir = tempfile::tempdir().unwrap();
    let (mut served, _) = served_trending(dir.path(), 0);
    let expected = latest_trending(&dir.path().join("out.jsonl"));
    let top = expected["top"].as_array().unwrap();
    assert!(
        top.len() >= 3,
        "the input has three rising articles: {expected}"
    );
    let url = format!("http://{}/", served.addr);

    let dom = headless(dir.path(), &["--dump-dom".into()], &url);
    // Every listed article of that minute, with a link to its wiki.
    for entry in top {
        let title = entry["title"].as_str().unwrap();
        assert!(
            dom.contains(&format!(">{}</a>", html_text(title))),
            "{title:?} is not on the page:\n{dom}"
        );
    }
    assert!(
        dom.contains("https://en.wikipedia.org/wiki/Rising_Star"),
        "{dom}"
    );
    assert!(
        dom.contains("https://de.wikipedia.org/wiki/K%C3%A4se_%26_Brot"),
        "{dom}"
    );
    // Labelled with its minute, which the input's empty end does not hide.
    let t = expected["t"].as_u64().unwrap();
    assert!(
        dom.contains(&format!("data-t=\"{t}\"")),
        "minute {t} is not named:\n{dom}"
    );
    assert!(dom.contains("class=\"latest\""), "{dom}");
    // Health and the graph are there too.
    assert!(dom.contains("watermark lag"), "{dom}");
    assert!(dom.contains("class=\"jobgraph\""), "{dom}");
    assert!(dom.contains("trending-rise"), "{dom}");

    // The rows are there in rank order.
    let positions: Vec<usize> = top
        .iter()
        .map(|e| dom.find(&html_text(e["title"].as_str().unwrap())).unwrap())
        .collect();
    assert!(
        positions.windows(2).all(|p| p[0] < p[1]),
        "rows out of rank order"
    );

    let shot = dir.path().join("dashboard.png");
    let arg = format!("--screenshot={}", shot.display());
    headless(dir.path(), &[arg, "--window-size=1280,1600".into()], &url);
    let png = std::fs::read(&shot).expect("chromium wrote no screenshot");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    std::fs::copy(&shot, artifacts().join("dashboard.png")).unwrap();

    assert!(
        served.running(),
        "the server must stay up after the input ended"
    );
    let (status, took) = served.terminate(Duration::from_secs(10));
    assert_eq!(status.code(), Some(143), "{}", served.stderr());
    assert!(took < Duration::from_secs(10));
}

#[test]
fn metrics_are_strict_prometheus_text_and_count_every_event() {
    let dir = tempfile::tempdir().unwrap();
    let (served, events) = served_trending(dir.path(), 2);
    let (status, content_type, body) = served.get("/metrics");
    assert_eq!(status, 200);
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    let exp = prometheus::parse(&body).unwrap_or_else(|e| panic!("{e}\n{body}"));
    for (name, kind) in [
        ("keyflow_events_total", "counter"),
        ("keyflow_late_events_total", "counter"),
        ("keyflow_bad_records_total", "counter"),
        ("keyflow_watermark_lag_seconds", "gauge"),
    ] {
        assert_eq!(
            exp.types.get(name).map(String::as_str),
            Some(kind),
            "{body}"
        );
    }
    let sum = |name: &str| -> f64 { exp.family(name).iter().map(|s| s.value).sum() };
    assert_eq!(sum("keyflow_events_total"), events as f64, "{body}");
    assert_eq!(
        exp.step("keyflow_events_total", "pageviews"),
        Some(events as f64)
    );
    assert_eq!(
        exp.step("keyflow_bad_records_total", "pageviews"),
        Some(2.0)
    );
    assert_eq!(sum("keyflow_late_events_total"), 0.0, "{body}");
    // Event time is 2016; the wall clock is later.
    let lag = exp
        .step("keyflow_watermark_lag_seconds", "pageviews")
        .unwrap();
    assert!(lag > 86_400.0, "{body}");
    // Every family labels its samples by step.
    for sample in exp.family("keyflow_late_events_total") {
        assert!(sample.labels.contains_key("step"), "{sample:?}");
    }
}

#[test]
fn json_endpoints_and_the_graph_list_the_job_with_counts() {
    let dir = tempfile::tempdir().unwrap();
    let (served, events) = served_trending(dir.path(), 0);

    let health: serde_json::Value = serde_json::from_str(&served.get_ok("/api/health")).unwrap();
    assert_eq!(health["events"], events as u64);
    assert_eq!(health["finished"], true);
    assert_eq!(health["job"], "trending");

    // The latest minute with trending articles as --out has it, then the
    // latest evaluated minute.
    let (status, content_type, body) = served.get("/api/trending");
    assert_eq!(status, 200);
    assert_eq!(content_type, "application/x-ndjson");
    let lines: Vec<serde_json::Value> = body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0], latest_trending(&dir.path().join("out.jsonl")));
    let last_out = std::fs::read_to_string(dir.path().join("out.jsonl")).unwrap();
    let last_out: serde_json::Value =
        serde_json::from_str(last_out.lines().last().unwrap()).unwrap();
    assert_eq!(lines.last().unwrap(), &last_out);
    assert!(last_out["t"].as_u64() > lines[0]["t"].as_u64());
    // A trending job has no anomaly output.
    assert_eq!(served.get("/api/anomaly").0, 404);

    let graph: serde_json::Value = serde_json::from_str(&served.get_ok("/api/graph")).unwrap();
    assert_eq!(graph["ready"], true);
    let nodes = graph["nodes"].as_array().unwrap();
    let node = |id: &str| {
        nodes
            .iter()
            .find(|n| n["id"] == id)
            .unwrap_or_else(|| panic!("no step {id} in {graph}"))
    };
    let source = node("pageviews");
    assert_eq!(source["kind"], "Source");
    assert_eq!(source["counts"]["records_out"], events as u64);
    let rise = node("trending-rise");
    assert_eq!(rise["kind"], "Rise");
    assert_eq!(rise["counts"]["records_in"], events as u64);
    assert!(rise["counts"]["records_out"].as_u64().unwrap() > 0);
    let minutes = (last_out["t"].as_u64().unwrap() - START) / MINUTE;
    assert!(
        node("trending-top")["counts"]["records_out"]
            .as_u64()
            .unwrap()
            >= minutes - 1
    );
    for id in ["out", "dashboard-trending"] {
        assert_eq!(node(id)["kind"], "Sink");
        assert!(node(id)["counts"]["records_in"].as_u64().unwrap() > 0);
    }
    // No operator is left unnamed as timely's FlatMap.
    assert!(!nodes.iter().any(|n| n["kind"] == "FlatMap"), "{graph}");
    // The edges join the steps from the source to the sinks.
    let edges: Vec<(String, String)> = graph["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["from"].as_str().unwrap().into(),
                e["to"].as_str().unwrap().into(),
            )
        })
        .collect();
    let reaches = |from: &str, to: &str| {
        let mut seen = vec![from.to_string()];
        let mut i = 0;
        while i < seen.len() {
            for (a, b) in &edges {
                if *a == seen[i] && !seen.contains(b) {
                    seen.push(b.clone());
                }
            }
            i += 1;
        }
        seen.iter().any(|s| s == to)
    };
    assert!(reaches("pageviews", "trending-rise"), "{edges:?}");
    assert!(reaches("trending-rise", "trending-top"), "{edges:?}");
    assert!(reaches("trending-top", "dashboard-trending"), "{edges:?}");

    // The page's script gets the same parts the page was rendered with.
    let view: serde_json::Value = serde_json::from_str(&served.get_ok("/api/view")).unwrap();
    for part in ["status", "health", "trending", "graph", "lists"] {
        assert!(view[part].is_string(), "no {part} in {view}");
    }
    // Lists the script already has are not sent again.
    let key: String = view["lists"]
        .as_str()
        .unwrap()
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let again: serde_json::Value =
        serde_json::from_str(&served.get_ok(&format!("/api/view?lists={key}"))).unwrap();
    assert!(again.get("trending").is_none(), "{again}");
    assert_eq!(again["lists"], view["lists"]);
    assert!(again["health"].is_string());
    assert_eq!(served.get("/no-such-page").0, 404);
}

#[test]
fn sigterm_stops_a_run_that_is_still_reading() {
    let dir = tempfile::tempdir().unwrap();
    // The generator's default run takes far longer than this test.
    let args: Vec<String> = [
        "run",
        "trending",
        "--quiet",
        "--rate",
        "50000",
        "--duration",
        "24h",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut served = Served::start(dir.path(), &args);
    let (status, _, _) = served.get("/api/health");
    assert_eq!(status, 200);
    let (status, took) = served.terminate(Duration::from_secs(10));
    assert_eq!(status.code(), Some(143), "{}", served.stderr());
    assert!(took < Duration::from_secs(10));
}

/// `/metrics`' event count, polled for up to 10 s until it reaches `want`
/// (the other processes of a cluster report theirs with their heartbeats).
fn events_counted(served: &Served, want: usize) -> f64 {
    let start = std::time::Instant::now();
    loop {
        let body = served.get_ok("/metrics");
        let exp = prometheus::parse(&body).unwrap_or_else(|e| panic!("{e}\n{body}"));
        let got: f64 = exp
            .family("keyflow_events_total")
            .iter()
            .map(|s| s.value)
            .sum();
        if got == want as f64 || start.elapsed() > Duration::from_secs(10) {
            return got;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_page_and_the_metrics_are_the_same_at_1x1_1x4_and_2x2() {
    let dir = tempfile::tempdir().unwrap();
    // Four files, so that every process of a cluster reads some of them.
    let input = dir.path().join("views");
    std::fs::create_dir_all(&input).unwrap();
    let events = rising_input(START);
    for part in 0..4 {
        let mine: Vec<_> = events.iter().skip(part).step_by(4).cloned().collect();
        write_jsonl(&input.join(format!("part-{part}.jsonl")), &mine, 0);
    }
    let mut answers = Vec::new();
    for (name, workers, processes) in [("1x1", 1, 1), ("1x4", 4, 1), ("2x2", 2, 2)] {
        let run = dir.path().join(name);
        std::fs::create_dir_all(&run).unwrap();
        let args = trending_args(&input, &run.join("out.jsonl"), workers);
        let mut served = if processes == 1 {
            Served::start(&run, &args)
        } else {
            // `keyflow cluster` passes the job's flags to every process;
            // process 0 serves.
            let mut cluster: Vec<String> = ["cluster", "--processes", "2", "-w", "2", "--"]
                .iter()
                .map(|s| s.to_string())
                .collect();
            cluster.extend(
                args.iter()
                    .filter(|a| *a != "--workers" && *a != "2")
                    .cloned(),
            );
            Served::start_with(&run, &cluster, &["--serve", "127.0.0.1:0"])
        };
        served.wait_until_finished();
        answers.push((name, served.get_ok("/api/trending")));
        // Process 0 counts the events every process read.
        assert_eq!(
            events_counted(&served, events.len()),
            events.len() as f64,
            "{name}: /metrics counts every event"
        );
        let health: serde_json::Value =
            serde_json::from_str(&served.get_ok("/api/health")).unwrap();
        assert_eq!(health["events"], events.len(), "{name}: {health}");
        let (status, took) = served.terminate(Duration::from_secs(10));
        assert!(took < Duration::from_secs(10), "{name}: {status}");
    }
    for (name, answer) in &answers[1..] {
        assert_eq!(answer, &answers[0].1, "{name} differs from 1x1");
    }
}

#[test]
fn a_bad_or_taken_address_fails_before_any_work() {
    let run = |serve: &str| {
        std::process::Command::new(KEYFLOW)
            .args([
                "run",
                "trending",
                "--quiet",
                "--duration",
                "1m",
                "--serve",
                serve,
            ])
            .output()
            .unwrap()
    };
    let out = run("nowhere");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--serve nowhere"), "{err}");
    assert!(!err.contains("done:"), "{err}");

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = run(&addr);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("--serve {addr}: cannot listen")),
        "{err}"
    );
}

#[test]
fn explain_prints_the_graph_as_text_dot_and_mermaid() {
    let explain = |format: &str| {
        let out = std::process::Command::new(KEYFLOW)
            .args(["explain", "pageviews", "--format", format])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let text = explain("text");
    assert!(text.contains("trending-rise"), "{text}");
    assert!(text.contains("SplitLate -> ArticleViews"), "{text}");
    let dot = explain("dot");
    assert!(dot.starts_with("digraph \"pageviews\" {"), "{dot}");
    assert!(
        dot.contains("\"trending-rise\" -> \"trending-top\";"),
        "{dot}"
    );
    assert!(dot.trim_end().ends_with('}'));
    let mermaid = explain("mermaid");
    assert!(mermaid.starts_with("flowchart TD\n"), "{mermaid}");
    assert!(mermaid.contains("(\"anomaly-top<br/>TopK\")"), "{mermaid}");
    assert!(mermaid.contains(" --> "), "{mermaid}");
    // The same nodes in every format.
    let steps = text.lines().skip_while(|l| *l != "steps:").skip(1);
    let nodes = steps.take_while(|l| *l != "channels:").count();
    assert_eq!(dot.matches(" [label=").count(), nodes);
    assert_eq!(
        mermaid.lines().filter(|l| !l.contains("-->")).count() - 1,
        nodes
    );
}

#[test]
fn behaviour_and_activity_serve_their_health_graph_and_metrics() {
    for (job, flags) in [
        ("behaviour", ["--users", "1000", "--duration", "10m"]),
        ("activity", ["--rate", "200", "--duration", "10m"]),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut args: Vec<String> = ["run", job, "--quiet", "--workers", "2"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        args.extend(flags.iter().map(|s| s.to_string()));
        let mut served = Served::start(dir.path(), &args);
        served.wait_until_finished();
        let health: serde_json::Value =
            serde_json::from_str(&served.get_ok("/api/health")).unwrap();
        assert_eq!(health["job"], job, "{health}");
        assert_eq!(health["finished"], true, "{health}");
        let events = health["events"].as_u64().unwrap();
        assert!(events > 1000, "{health}");
        let body = served.get_ok("/metrics");
        let exp = prometheus::parse(&body).unwrap_or_else(|e| panic!("{e}\n{body}"));
        let sum: f64 = exp
            .family("keyflow_events_total")
            .iter()
            .map(|s| s.value)
            .sum();
        assert_eq!(sum, events as f64, "{job}: {body}");
        let graph: serde_json::Value = serde_json::from_str(&served.get_ok("/api/graph")).unwrap();
        assert!(graph["nodes"].as_array().unwrap().len() > 2, "{graph}");
        assert!(served.get_ok("/").contains("<html"), "{job}");
        let (status, _) = served.terminate(Duration::from_secs(10));
        assert_eq!(status.code(), Some(143), "{}", served.stderr());
    }
}
