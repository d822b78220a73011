//! `keyflow explain JOB`: the operator graph of a bundled job.

use std::sync::Arc;

use keyflow::dataflow::prelude::*;
use keyflow::jobs::anomaly::{anomaly, AnomalyConfig};
use keyflow::jobs::baseline::Baseline;
use keyflow::jobs::pageviews::{GeneratorConfig, PageviewSource};
use keyflow::jobs::trending::{trending, TrendingConfig};

/// The graph of `job`, built over the generator with default settings (and
/// an empty baseline for the anomaly job).
pub fn explain(job: &str) -> anyhow::Result<String> {
    let graph = match job {
        "trending" => keyflow::dataflow::explain::explain(|worker, ctx| {
            let source = PageviewSource::generator(GeneratorConfig::default())?;
            worker.dataflow(|scope| {
                let events = source_stream(scope, ctx, source)?;
                trending(events, ctx, &TrendingConfig::default())?;
                Ok(())
            })
        })?,
        "anomaly" | "pageviews" => {
            let both = job == "pageviews";
            keyflow::dataflow::explain::explain(move |worker, ctx| {
                let source = PageviewSource::generator(GeneratorConfig::default())?;
                let config = AnomalyConfig::new(Arc::new(Baseline::empty()));
                worker.dataflow(|scope| {
                    let events = source_stream(scope, ctx, source)?;
                    if both {
                        trending(events.clone(), ctx, &TrendingConfig::default())?;
                    }
                    anomaly(events, ctx, &config)?;
                    Ok(())
                })
            })?
        }
        other => anyhow::bail!("unknown job `{other}`; `keyflow jobs` lists them"),
    };
    Ok(format!("dataflow of job `{job}`\n{graph}"))
}

fn source_stream<'scope>(
    scope: timely::dataflow::Scope<'scope, EventTime>,
    ctx: &std::sync::Arc<Context>,
    source: PageviewSource,
) -> Result<EventStream<'scope, keyflow::jobs::pageviews::PageView>> {
    keyflow::dataflow::source::source(scope, ctx, source, &SourceConfig::default())
}
