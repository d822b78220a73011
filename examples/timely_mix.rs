//! A custom keyflow job that mixes raw timely operators into a keyflow
//! chain: a hand-written timely operator drops bot traffic, keyflow counts
//! what is left per page and minute, and timely's `inspect_core` reports
//! each batch of results and each frontier change as they pass.
//!
//! `keyflow::timely` is the timely keyflow itself uses, so its operators
//! apply to `Events::inner()` (or inside `Events::apply`) with no version to
//! match by hand; `keyflow::differential_dataflow` is there too.
//!
//! ```text
//! cargo run --example timely_mix                     # a built-in sample
//! cargo run --example timely_mix -- visits.jsonl      # {"page":"/","agent":"Mozilla/5.0","ts":1700000000000}
//! cargo run --example timely_mix -- --workers 2
//! ```

use std::path::PathBuf;

use clap::Parser;
use keyflow::dataflow::args::ClusterArgs;
use keyflow::dataflow::time::format_utc;
use keyflow::prelude::*;
use keyflow::timely::dataflow::channels::pact::Pipeline;
use keyflow::timely::dataflow::operators::core::Inspect;
use keyflow::timely::dataflow::operators::generic::Operator;

/// Page views per minute, without bots.
#[derive(Debug, Parser)]
struct Args {
    /// JSON-lines files of visits; without any, a built-in sample.
    files: Vec<PathBuf>,
    #[command(flatten)]
    cluster: ClusterArgs,
}

/// One visit in a JSON-lines file.
#[derive(Debug, Clone, serde::Deserialize)]
struct Visit {
    page: String,
    agent: String,
    ts: u64,
}

/// `(time, (page, user agent))`: three minutes of visits, one in four by a
/// crawler.
fn sample(partition: usize) -> impl Iterator<Item = (u64, (String, String))> {
    let t0 = 1_700_000_040_000;
    (0..90u64).map(move |i| {
        let page = ["/", "/docs", "/blog"][((i + partition as u64) % 3) as usize];
        let agent = if i % 4 == 0 {
            "crawler-bot/2.1"
        } else {
            "Mozilla/5.0"
        };
        (t0 + i * 2 * SECOND, (page.to_string(), agent.to_string()))
    })
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let config = args.cluster.run_config()?;
    let files = args.files;
    run(&config, move |flow| {
        let visits = if files.is_empty() {
            let visits = IterSource::new("visits", 2, sample);
            flow.source("visits", visits, &SourceConfig::default())?
        } else {
            let visits = JsonLinesSource::new("visits", files.clone(), |v: &Visit| Some(v.ts));
            flow.source("visits", visits, &SourceConfig::default())?
                .map(|v| (v.page, v.agent))
        };
        let humans = visits
            // A raw timely operator, on the stream of (event time, record)
            // pairs: records keep their event time and travel at the same
            // timely time, so keyflow's windows stay exact.
            .apply(|stream| {
                stream.unary(Pipeline, "DropBots", |_capability, _info| {
                    move |input, output| {
                        input.for_each(|time, data| {
                            let mut session = output.session(&time);
                            for (ts, (page, agent)) in data.drain(..) {
                                if !agent.contains("bot") {
                                    session.give((ts, page));
                                }
                            }
                        });
                    }
                })
            });
        let counts = humans
            .key_by(|page| (page, ()))
            .window(WindowSpec::tumbling(MINUTE)?)
            .count("views-per-minute")
            .results;
        // Back to timely for a moment: `inspect_core` sees whole batches
        // with their timely time, and every change of the frontier.
        let worker = flow.index();
        counts
            .apply(|stream| {
                stream.inspect_core(move |event| match event {
                    Ok((stamp, batch)) => {
                        let time = stamp.least().copied().unwrap_or_default();
                        eprintln!("worker {worker}: {} results at {time}", batch.len());
                    }
                    Err(frontier) => eprintln!("worker {worker}: frontier {frontier:?}"),
                })
            })
            .sink("stdout", || {
                Ok(StdoutSink(|_, r: &WindowResult<String, u64>| {
                    format!("{}  {:<6} {}", format_utc(r.start), r.key, r.value)
                }))
            })
    })?;
    Ok(())
}
