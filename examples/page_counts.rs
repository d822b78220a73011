//! A custom keyflow job: page views per page in 1-minute windows sliding
//! every 30 seconds, from JSON-lines files or a small built-in sample.
//!
//! ```text
//! cargo run --example page_counts                      # built-in sample
//! cargo run --example page_counts -- clicks.jsonl      # {"page":"/a","ts":1700000000000}
//! cargo run --example page_counts -- clicks.jsonl --workers 4
//! ```
//!
//! As a two-process cluster on one machine (each file is read by one
//! worker somewhere in the cluster; results are printed once, by process 0):
//!
//! ```text
//! printf '127.0.0.1:2101\n127.0.0.1:2102\n' > hosts
//! cargo run --example page_counts -- a.jsonl b.jsonl --processes 2 --process 1 --hostfile hosts &
//! cargo run --example page_counts -- a.jsonl b.jsonl --processes 2 --process 0 --hostfile hosts
//! ```

use std::path::PathBuf;

use clap::Parser;
use keyflow::dataflow::args::ClusterArgs;
use keyflow::dataflow::time::format_utc;
use keyflow::prelude::*;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
struct Click {
    page: String,
    ts: u64,
}

/// Page views per page in sliding 1-minute windows.
#[derive(Debug, Parser)]
struct Args {
    /// JSON-lines files of clicks; without any, a built-in sample.
    files: Vec<PathBuf>,
    #[command(flatten)]
    cluster: ClusterArgs,
}

fn sample() -> Vec<(u64, Click)> {
    let t0 = 1_700_000_000_000;
    ["/", "/docs", "/", "/blog", "/", "/docs"]
        .iter()
        .enumerate()
        .map(|(i, page)| {
            let ts = t0 + i as u64 * 20 * SECOND;
            let page = page.to_string();
            (ts, Click { page, ts })
        })
        .collect()
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let config = args.cluster.run_config()?;
    let files = args.files;
    run(&config, move |flow| {
        let clicks = if files.is_empty() {
            let input = IterSource::new("sample", 1, |_| sample().into_iter());
            flow.source("clicks", input, &SourceConfig::default())?
        } else {
            // Parsing runs beside the worker where a core is spare.
            let input = JsonLinesSource::new("clicks", files.clone(), |c: &Click| Some(c.ts))
                .read_ahead(ReadAheadWhen::SpareCore);
            flow.source("clicks", input, &SourceConfig::default())?
        };
        clicks
            .key_by(|click| (click.page, ()))
            .window(WindowSpec::sliding(MINUTE, 30 * SECOND)?)
            .count("page-counts")
            .results
            .sink("stdout", || {
                Ok(StdoutSink(|_, r: &WindowResult<String, u64>| {
                    let (start, end) = (format_utc(r.start), format_utc(r.end));
                    format!("{start} .. {end}  {:<8} {}", r.key, r.value)
                }))
            })
    })?;
    Ok(())
}
