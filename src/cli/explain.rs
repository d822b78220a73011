//! `keyflow explain JOB`: the operator graph of a bundled job.

use std::sync::Arc;

use keyflow::dataflow::prelude::*;
use keyflow::jobs::activity::{activity, ActivityConfig, ActivityGeneratorConfig, ActivitySource};
use keyflow::jobs::anomaly::{anomaly, AnomalyConfig};
use keyflow::jobs::baseline::Baseline;
use keyflow::jobs::pageviews::{GeneratorConfig, PageviewSource};
use keyflow::jobs::trending::{trending, TrendingConfig};

/// The graph of `job`, built over its generator with default settings (and
/// an empty baseline for the anomaly job).
pub fn explain(job: &str) -> anyhow::Result<String> {
    let graph = match job {
        "trending" => keyflow::dataflow::explain::explain(|flow| {
            let source = PageviewSource::generator(GeneratorConfig::default())?;
            let events = flow.source("pageviews", source, &SourceConfig::default())?;
            trending(events, &TrendingConfig::default())?;
            Ok(())
        })?,
        "anomaly" | "pageviews" => {
            let both = job == "pageviews";
            keyflow::dataflow::explain::explain(move |flow| {
                let source = PageviewSource::generator(GeneratorConfig::default())?;
                let config = AnomalyConfig::new(Arc::new(Baseline::empty()));
                let events = flow.source("pageviews", source, &SourceConfig::default())?;
                if both {
                    trending(events.clone(), &TrendingConfig::default())?;
                }
                anomaly(events, &config)?;
                Ok(())
            })?
        }
        "activity" => keyflow::dataflow::explain::explain(|flow| {
            let source = ActivitySource::generator(ActivityGeneratorConfig::default())?;
            let events = flow.source("activity", source, &SourceConfig::default())?;
            activity(events, &ActivityConfig::default())?;
            Ok(())
        })?,
        other => anyhow::bail!("unknown job `{other}`; `keyflow jobs` lists them"),
    };
    Ok(format!("dataflow of job `{job}`\n{graph}"))
}
