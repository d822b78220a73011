//! A custom keyflow job: user sessions from a CSV click log. A session is a
//! burst of one user's clicks with no gap longer than `--gap` (30 minutes by
//! default); for each one the job prints its span, its clicks and the pages
//! it saw.
//!
//! ```text
//! cargo run --example sessions                               # examples/data/clicks.csv
//! cargo run --example sessions -- clicks.csv --gap 10m       # user,ts,page with a header
//! cargo run --example sessions -- clicks.csv --workers 4
//! ```

use std::collections::BTreeSet;
use std::path::PathBuf;

use clap::Parser;
use keyflow::dataflow::args::{parse_duration, ClusterArgs};
use keyflow::dataflow::time::format_utc;
use keyflow::prelude::*;
use serde::Deserialize;

/// One row of the click log. `ts` (epoch milliseconds or RFC 3339) is the
/// event time; the source reads it from the column of that name.
#[derive(Debug, Clone, Deserialize)]
struct Click {
    user: String,
    page: String,
}

/// What a session keeps while it is open: its clicks and the pages seen.
/// Partial sessions from different workers merge, so the aggregate is
/// computed before the keyed exchange.
#[derive(Clone)]
struct Visit;

impl Aggregator<String> for Visit {
    type Acc = (u64, BTreeSet<String>);
    type Output = (u64, Vec<String>);

    fn init(&self) -> Self::Acc {
        (0, BTreeSet::new())
    }

    fn add(&self, acc: &mut Self::Acc, page: String) {
        acc.0 += 1;
        acc.1.insert(page);
    }

    fn merge(&self, acc: &mut Self::Acc, other: &Self::Acc) {
        acc.0 += other.0;
        acc.1.extend(other.1.iter().cloned());
    }

    fn finish(&self, acc: &Self::Acc) -> Self::Output {
        (acc.0, acc.1.iter().cloned().collect())
    }
}

/// User sessions from a CSV click log.
#[derive(Debug, Parser)]
struct Args {
    /// CSV files with a `user,ts,page` header; without any, the sample in
    /// examples/data/clicks.csv.
    files: Vec<PathBuf>,
    /// Inactivity that closes a session.
    #[arg(long, default_value = "30m", value_parser = parse_duration)]
    gap: std::time::Duration,
    #[command(flatten)]
    cluster: ClusterArgs,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let config = args.cluster.run_config()?;
    let mut files = args.files;
    if files.is_empty() {
        files.push(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/data/clicks.csv").into());
    }
    let gap = WindowSpec::session(args.gap.as_millis() as u64)?;
    run(&config, move |flow| {
        let clicks = CsvSource::<Click>::new("clicks", files.clone(), "ts");
        flow.source("clicks", clicks, &SourceConfig::default())?
            .key_by(|click| (click.user, click.page))
            .window(gap)
            .aggregate("sessions", Visit)
            .results
            .sink("stdout", || {
                Ok(StdoutSink(
                    |_, s: &WindowResult<String, (u64, Vec<String>)>| {
                        let (clicks, pages) = &s.value;
                        let span = format!("{} .. {}", format_utc(s.start), format_utc(s.end));
                        format!(
                            "{:<5} {span}  {clicks:>2} clicks  {}",
                            s.key,
                            pages.join(" ")
                        )
                    },
                ))
            })
    })?;
    Ok(())
}
