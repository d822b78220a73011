//! `keyflow explain JOB`: the graph of a bundled job, as the dashboard of
//! `--serve` draws it, in text, Graphviz DOT or Mermaid.

use std::sync::Arc;

use keyflow::dataflow::prelude::*;
use keyflow::jobs::activity::{activity, ActivityConfig, ActivityGeneratorConfig, ActivitySource};
use keyflow::jobs::anomaly::{anomaly, AnomalyConfig};
use keyflow::jobs::baseline::Baseline;
use keyflow::jobs::behaviour::{behaviour, BehaviourConfig, UserGeneratorConfig, UserSource};
use keyflow::jobs::pageviews::{GeneratorConfig, PageviewSource};
use keyflow::jobs::trending::{trending, TrendingConfig};

use clap::ValueEnum;
use keyflow::dataflow::explain::{explain_graph, JobGraph};

/// How `keyflow explain` prints a graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GraphFormat {
    /// Steps, then channels, one a line.
    Text,
    /// A Graphviz digraph (`dot -Tsvg`).
    Dot,
    /// A Mermaid flowchart.
    Mermaid,
}

/// The graph of `job` in `format`.
pub fn explain(job: &str, format: GraphFormat) -> anyhow::Result<String> {
    let graph = graph(job)?;
    Ok(match format {
        GraphFormat::Text if job == "behaviour" => {
            format!(
                "{BEHAVIOUR_CASCADE}dataflow of job `{job}`\n{}",
                graph.text()
            )
        }
        GraphFormat::Text => format!("dataflow of job `{job}`\n{}", graph.text()),
        GraphFormat::Dot => graph.dot(job),
        GraphFormat::Mermaid => graph.mermaid(),
    })
}

/// The graph of `job`, built over the generator with default settings (and
/// an empty baseline for the anomaly job), without its output sinks.
pub fn graph(job: &str) -> anyhow::Result<JobGraph> {
    let graph = match job {
        "trending" => explain_graph(|flow| {
            let source = PageviewSource::generator(GeneratorConfig::default())?;
            let events = flow.source("pageviews", source, &SourceConfig::default())?;
            trending(events, &TrendingConfig::default())?;
            Ok(())
        })?,
        "anomaly" | "pageviews" => {
            let both = job == "pageviews";
            explain_graph(move |flow| {
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
        "behaviour" => explain_graph(|flow| {
            let source = UserSource::generator(UserGeneratorConfig::default())?;
            let events = flow.source("user-events", source, &SourceConfig::default())?;
            behaviour(events, &BehaviourConfig::default())?;
            Ok(())
        })?,
        "activity" => explain_graph(|flow| {
            let source = ActivitySource::generator(ActivityGeneratorConfig::default())?;
            let events = flow.source("activity", source, &SourceConfig::default())?;
            activity(events, &ActivityConfig::default())?;
            Ok(())
        })?,
        other => anyhow::bail!("unknown job `{other}`; `keyflow jobs` lists them"),
    };
    Ok(graph)
}

/// How the behaviour job's operators map onto the paper's cascade.
const BEHAVIOUR_CASCADE: &str = "\
cascade (mapper -> reducer -> rereducer):
  KeyedProcess(behaviour-users)  per-user state machine with event-time timers
  PreAggregate(behaviour-tally)  mapper: flows and events tallied per interval on each worker
  Window(behaviour-tally)        reducer: tallies summed per interval, keyed by what they count
  Series(behaviour-series)       rereducer: populations, flows and alerts on worker 0
";
