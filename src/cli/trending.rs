//! `keyflow run trending`.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use keyflow::dataflow::prelude::*;
use keyflow::dataflow::run::run_with_context;
use keyflow::dataflow::time::{format_utc, parse_duration_ms};
use keyflow::jobs::pageviews::{PageView, PageviewSource};
use keyflow::jobs::trending::{
    trending, HourlyDumpSink, RiseRuleArg, TrendingConfig, TrendingMinute,
};
use timely::dataflow::operators::vec::Filter;

use super::checkpoint_args::{output_id, report_finished, CheckpointArgs, Plan};
use super::progress::Progress;
use super::run_args::{parse_late, ClusterArgs, SourceArgs};
use super::sources::pageview_source;

/// Every minute, the articles whose views did not fall across the six
/// 10-minute windows of the last hour.
#[derive(Debug, Clone, Args)]
pub struct TrendingArgs {
    /// How many articles to list per minute; 0 lists every trending article.
    #[arg(long, default_value_t = 10)]
    pub top: usize,
    /// Views the oldest of the six windows needs at least.
    #[arg(long, default_value_t = 1)]
    pub min_views: u64,
    /// Require strictly increasing counts.
    #[arg(long, conflicts_with = "allow_flat")]
    pub strict: bool,
    /// The original rule: non-decreasing counts, flat series pass.
    #[arg(long)]
    pub allow_flat: bool,
    /// Length of each counting window.
    #[arg(long, default_value = "10m")]
    pub window: String,
    /// Step between evaluated minutes (the window slide).
    #[arg(long, default_value = "1m")]
    pub slide: String,
    /// Late events: `drop` (counted), `side-output` (to --late-out), or
    /// `allowed-lateness <DURATION>` (results re-emitted as updates).
    #[arg(long, num_args = 1..=2, value_name = "POLICY")]
    pub late: Vec<String>,
    /// With `--late side-output`: JSON-lines file for the late events.
    #[arg(long)]
    pub late_out: Option<PathBuf>,
    /// JSON-lines output, one line per evaluated minute.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Directory for hourly per-article totals in the dump format.
    #[arg(long)]
    pub hourly_out: Option<PathBuf>,
    /// Do not print the per-minute table and progress line.
    #[arg(long)]
    pub quiet: bool,
    /// Where events come from.
    #[command(flatten)]
    pub source: SourceArgs,
    /// Checkpoints.
    #[command(flatten)]
    pub checkpoint: CheckpointArgs,
    /// Workers and processes.
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

impl TrendingArgs {
    /// The job configuration, checked.
    pub fn config(&self) -> anyhow::Result<TrendingConfig> {
        let rule = match (self.strict, self.allow_flat) {
            (true, _) => RiseRuleArg::Strict,
            (_, true) => RiseRuleArg::AllowFlat,
            _ => RiseRuleArg::NonDecreasing,
        };
        let config = TrendingConfig {
            window: parse_duration_ms("--window", &self.window)?,
            slide: parse_duration_ms("--slide", &self.slide)?,
            rule,
            min_views: self.min_views,
            top: self.top,
            lateness: parse_late(&self.late)?,
            hourly: self.hourly_out.is_some(),
            ..TrendingConfig::default()
        };
        config.validate()?;
        if self.late_out.is_some() && config.lateness != Lateness::SideOutput {
            anyhow::bail!("--late-out needs `--late side-output`");
        }
        Ok(config)
    }
}

/// The readable table of one minute.
pub fn table(minute: &TrendingMinute) -> String {
    let mut table = comfy_table::Table::new();
    table.load_preset(comfy_table::presets::UTF8_BORDERS_ONLY);
    table.set_header(vec![
        "rank", "project", "title", "c1", "c2", "c3", "c4", "c5", "c6",
    ]);
    for e in &minute.top {
        let mut row = vec![e.rank.to_string(), e.project.clone(), e.title.clone()];
        row.extend(e.counts.iter().map(u64::to_string));
        table.add_row(row);
    }
    let update = if minute.update { " (update)" } else { "" };
    let mut text = format!(
        "{} UTC  {} trending{update}\n",
        format_utc(minute.t),
        minute.trending
    );
    if !minute.top.is_empty() {
        text.push_str(&table.to_string());
    }
    text
}

fn late_line(ts: u64, view: &PageView) -> serde_json::Value {
    serde_json::json!({
        "project": view.article.project(),
        "title": view.article.title(),
        "ts": ts,
        "views": view.views,
    })
}

/// Late events as JSON lines.
struct LateSink(JsonLinesSink);

impl Sink<PageView> for LateSink {
    fn write(&mut self, time: EventTime, records: &[(EventTime, PageView)]) -> Result<()> {
        let lines: Vec<(EventTime, serde_json::Value)> = records
            .iter()
            .map(|(ts, v)| (*ts, late_line(*ts, v)))
            .collect();
        self.0.write(time, &lines)
    }
    fn close(&mut self) -> Result<()> {
        <JsonLinesSink as Sink<serde_json::Value>>::close(&mut self.0)
    }
    fn commit(&mut self) -> Result<Vec<u8>> {
        <JsonLinesSink as Sink<serde_json::Value>>::commit(&mut self.0)
    }
    fn restore(&mut self, point: &[u8]) -> Result<()> {
        <JsonLinesSink as Sink<serde_json::Value>>::restore(&mut self.0, point)
    }
}

/// Runs the job; returns the process exit code.
pub fn run(args: &TrendingArgs) -> anyhow::Result<i32> {
    let config = args.config()?;
    let mut run_config = args.cluster.run_config()?;
    let source_config = args.source.source_config();
    source_config.validate()?;
    let semantic = format!(
        "{config:?} {:?} out={} late-out={} hourly-out={}",
        args.source,
        output_id(&args.out),
        output_id(&args.late_out),
        output_id(&args.hourly_out)
    );
    match args
        .checkpoint
        .plan("trending", &semantic, &args.source.inputs)?
    {
        Plan::Off => {}
        Plan::Finished(dir) => {
            report_finished(&dir);
            return Ok(0);
        }
        Plan::Run(checkpoint) => {
            if matches!(config.lateness, Lateness::Allowed(_)) {
                anyhow::bail!(
                    "--checkpoint-dir does not support `--late allowed-lateness` yet; \
                     use drop or side-output"
                );
            }
            run_config.checkpoint = Some(checkpoint);
        }
    }
    let make_source = pageview_source(&args.source)?;
    let ctx = Arc::new(Context::new(run_config));
    let progress = Progress::start(&ctx, args.quiet);
    let quiet = args.quiet;
    let args = args.clone();
    let keep = match config.lateness {
        Lateness::Allowed(d) => d,
        _ => 0,
    };
    run_with_context(Arc::clone(&ctx), move |worker, ctx| {
        let source: PageviewSource = make_source()?;
        let (config, source_config, args) = (config.clone(), source_config.clone(), args.clone());
        worker.dataflow(|scope| {
            let events = keyflow::dataflow::source::source(scope, ctx, source, &source_config)?;
            let out = trending(events, ctx, &config)?;
            if !args.quiet {
                // Minutes where nothing trends stay out of the table (they are
                // in --out); the table is for people.
                let shown = out
                    .minutes
                    .clone()
                    .filter(|(_, m)| m.trending > 0 || m.update);
                sink(shown, ctx, "table", || {
                    Ok(StdoutSink(|_, m: &TrendingMinute| table(m)))
                })?;
            }
            if let Some(path) = &args.out {
                sink(out.minutes.clone(), ctx, "out", || {
                    JsonLinesSink::create(path)
                })?;
            }
            if let Some(dir) = &args.hourly_out {
                sink(out.hourly.clone(), ctx, "hourly", || {
                    HourlyDumpSink::create(dir, keep)
                })?;
            }
            if let Some(path) = &args.late_out {
                sink(out.late.clone(), ctx, "late", || {
                    Ok(LateSink(JsonLinesSink::create(path)?))
                })?;
            }
            Ok(())
        })
    })?;
    drop(progress);
    super::progress::summary(&ctx, quiet);
    Ok(0)
}
