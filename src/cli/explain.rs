//! `keyflow explain JOB`: the operator graph of a bundled job.

use std::sync::Arc;

use keyflow::dataflow::prelude::*;
use keyflow::jobs::activity::{activity, ActivityConfig, ActivityGeneratorConfig, ActivitySource};
use keyflow::jobs::anomaly::{anomaly, AnomalyConfig};
use keyflow::jobs::baseline::Baseline;
use keyflow::jobs::behaviour::{behaviour, BehaviourConfig, UserGeneratorConfig, UserSource};
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
        "behaviour" => {
            let graph = keyflow::dataflow::explain::explain(|flow| {
                let source = UserSource::generator(UserGeneratorConfig::default())?;
                let events = flow.source("user-events", source, &SourceConfig::default())?;
                behaviour(events, &BehaviourConfig::default())?;
                Ok(())
            })?;
            format!("{BEHAVIOUR_CASCADE}{graph}")
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

/// How the behaviour job's operators map onto the paper's cascade.
const BEHAVIOUR_CASCADE: &str = "\
cascade (mapper -> reducer -> rereducer):
  KeyedProcess(behaviour-users)  per-user state machine with event-time timers
  PreAggregate(behaviour-tally)  mapper: flows and events tallied per interval on each worker
  Window(behaviour-tally)        reducer: tallies summed per interval, keyed by what they count
  Series(behaviour-series)       rereducer: populations, flows and alerts on worker 0
";
