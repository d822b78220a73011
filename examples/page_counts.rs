//! A custom keyflow job: page views per page in 1-minute windows sliding
//! every 30 seconds, from a JSON-lines file or a small built-in sample.
//!
//! ```text
//! cargo run --example page_counts                 # built-in sample
//! cargo run --example page_counts -- clicks.jsonl # {"page":"/a","ts":1700000000000}
//! cargo run --example page_counts -- clicks.jsonl --workers 4
//! ```

use std::path::PathBuf;

use keyflow::dataflow::prelude::*;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
struct Click {
    page: String,
    ts: u64,
}

fn sample() -> Vec<(u64, Click)> {
    let t0 = 1_700_000_000_000;
    ["/", "/docs", "/", "/blog", "/", "/docs"]
        .iter()
        .enumerate()
        .map(|(i, page)| {
            let ts = t0 + i as u64 * 20_000;
            (
                ts,
                Click {
                    page: page.to_string(),
                    ts,
                },
            )
        })
        .collect()
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let workers = match args.iter().position(|a| a == "--workers") {
        Some(i) => args.get(i + 1).map(|w| w.parse()).transpose()?.unwrap_or(1),
        None => 1,
    };
    let file: Option<PathBuf> = args
        .first()
        .filter(|a| !a.starts_with("--"))
        .map(PathBuf::from);

    run(&RunConfig::threads(workers), move |worker, ctx| {
        let file = file.clone();
        worker.dataflow(|scope| {
            let clicks = match file {
                Some(path) => {
                    let input = JsonLinesSource::new("clicks", vec![path], |c: &Click| Some(c.ts));
                    source(scope, ctx, input, &SourceConfig::default())?
                }
                None => {
                    let input = IterSource::new("sample", 1, |_| sample().into_iter());
                    source(scope, ctx, input, &SourceConfig::default())?
                }
            };
            let counts = clicks
                .key_by("by-page", |click| (click.page, ()))
                .window(WindowSpec::sliding(60_000, 30_000))
                .count(ctx, "page-counts")?;
            sink(counts.results, ctx, "stdout", || {
                Ok(StdoutSink(|_, r: &WindowResult<String, u64>| {
                    format!(
                        "{} .. {}  {:<8} {}",
                        keyflow::dataflow::time::format_utc(r.start),
                        keyflow::dataflow::time::format_utc(r.end),
                        r.key,
                        r.value
                    )
                }))
            })
        })
    })?;
    Ok(())
}
