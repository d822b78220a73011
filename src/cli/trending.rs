//! `keyflow run trending`.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use keyflow::dataflow::prelude::*;
use keyflow::dataflow::run::run_with_context;
use keyflow::dataflow::time::{format_utc, parse_duration_ms, DAY};
use keyflow::jobs::pageviews::{PageView, PageviewSource};
use keyflow::jobs::trending::{
    trending, HourlyDumpSink, RiseRuleArg, TrendingConfig, TrendingMinute,
};

use super::checkpoint_args::{output_id, report_finished, CheckpointArgs, Plan};
use super::progress::Progress;
use super::run_args::{late_policy, ClusterArgs, SourceArgs};
use super::sources::pageview_source;
use super::validate::RunPaths;
use crate::serve::{Dashboard, ServeArgs};

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
    /// Length of each counting window: at most 7 days, and at most 10000
    /// slides, so that the state of one article and the minutes evaluated
    /// after the input ends stay bounded.
    #[arg(long, default_value = "10m")]
    pub window: String,
    /// Step between evaluated minutes (the window slide): at least 1s, and
    /// the window must be a multiple of it.
    #[arg(long, default_value = "1m")]
    pub slide: String,
    /// Late events: `drop` (counted), `side-output` (to --late-out, which it
    /// needs), or `allowed-lateness <DURATION>` (results re-emitted as
    /// updates; at most 7 days).
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
    /// Results in Redis.
    #[command(flatten)]
    pub redis: super::redis_out::RedisArgs,
    /// Checkpoints.
    #[command(flatten)]
    pub checkpoint: CheckpointArgs,
    /// Workers and processes.
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// The dashboard.
    #[command(flatten)]
    pub serve: ServeArgs,
}

impl TrendingArgs {
    /// The job configuration, checked.
    pub fn config(&self) -> anyhow::Result<TrendingConfig> {
        let rule = match (self.strict, self.allow_flat) {
            (true, _) => RiseRuleArg::Strict,
            (_, true) => RiseRuleArg::AllowFlat,
            _ => RiseRuleArg::NonDecreasing,
        };
        let window = parse_duration_ms("--window", &self.window)?;
        let slide = parse_duration_ms("--slide", &self.slide)?;
        check_window(&self.window, window, &self.slide, slide)?;
        let config = TrendingConfig {
            window,
            slide,
            rule,
            min_views: self.min_views,
            top: self.top,
            lateness: late_policy(
                &self.late,
                self.late_out.as_ref(),
                "window state would be kept that long after each window ends",
            )?,
            hourly: self.hourly_out.is_some(),
            ..TrendingConfig::default()
        };
        config.validate()?;
        Ok(config)
    }

    /// The paths this run reads and writes.
    pub fn paths(&self) -> RunPaths<'_> {
        RunPaths::new()
            .inputs(self.source.files())
            .output("--out", super::kafka_io::file_out(&self.out))
            .output("--late-out", self.late_out.as_ref())
            .output("--ready-file", self.cluster.ready_file.as_ref())
            .output_dir("--hourly-out", self.hourly_out.as_ref())
            .output_dir("--checkpoint-dir", self.checkpoint.checkpoint_dir.as_ref())
    }
}

/// The longest window: its six windows span six weeks, for which every
/// article's views are kept.
const MAX_WINDOW: u64 = 7 * DAY;
const MAX_WINDOW_TEXT: &str = "7days";
/// The most slides per window. A key keeps at most one pane weight (8 bytes)
/// per slide of the six windows' span, and after the input ends one result is
/// evaluated per slide of that span, so this bounds both to 60,000.
const MAX_SLIDES_PER_WINDOW: u64 = 10_000;
/// The shortest slide: one result per slide of event time is emitted, so a
/// shorter one would turn an hour of input into millions of results.
const MIN_SLIDE: u64 = 1_000;

/// Refuses windows and slides whose state or output would not fit in memory,
/// naming them as typed.
fn check_window(
    window_text: &str,
    window: u64,
    slide_text: &str,
    slide: u64,
) -> anyhow::Result<()> {
    if window > MAX_WINDOW {
        anyhow::bail!(
            "--window {window_text} is longer than {MAX_WINDOW_TEXT}: the job keeps every \
             article's views for six windows, which would not fit in memory"
        );
    }
    if slide > 0 && slide < MIN_SLIDE {
        anyhow::bail!(
            "--slide {slide_text} is shorter than 1s: the job emits one result per slide of \
             event time"
        );
    }
    if slide > 0 && window / slide > MAX_SLIDES_PER_WINDOW {
        anyhow::bail!(
            "--window {window_text} is {} slides of --slide {slide_text}; at most \
             {MAX_SLIDES_PER_WINDOW} are allowed, since an article keeps one count per slide \
             of six windows: use a longer --slide",
            window / slide
        );
    }
    Ok(())
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

/// A late event as a JSON line.
fn late_line(ts: u64, view: &PageView) -> serde_json::Value {
    serde_json::json!({
        "project": view.article.project(),
        "title": view.article.title(),
        "ts": ts,
        "views": view.views,
    })
}

/// Runs the job; returns the process exit code.
pub fn run(args: &TrendingArgs) -> anyhow::Result<i32> {
    let config = args.config()?;
    args.paths().check()?;
    let mut run_config = args.cluster.run_config()?;
    let source_config = args.source.source_config()?;
    let semantic = format!(
        "{config:?} {:?} out={} late-out={} hourly-out={}",
        args.source,
        output_id(&args.out),
        output_id(&args.late_out),
        output_id(&args.hourly_out)
    );
    match args.checkpoint.plan(
        "trending",
        &semantic,
        args.source.files(),
        run_config.process,
    )? {
        Plan::Off => {}
        Plan::Finished(dir) => {
            report_finished(&dir);
            return Ok(0);
        }
        Plan::Run(checkpoint) => run_config.checkpoint = Some(checkpoint),
    }
    let connect_timeout = args.cluster.connect_timeout;
    let (make_source, acker) = pageview_source(&args.source, connect_timeout)?;
    let redis = args.redis.config()?;
    let mut kafka = super::kafka_io::kafka_out(&args.out)?;
    if let (Some(k), Some(c)) = (kafka.as_mut(), run_config.checkpoint.as_ref()) {
        k.exactly_once(&c.dir, "trending")?;
    }
    let processes = run_config.processes;
    let ctx = Arc::new(Context::new(run_config));
    super::validate::refuse_all_bad_outputs(&ctx, processes);
    let dashboard = Dashboard::start(&args.serve, "trending", &ctx)?;
    let progress = Progress::start(&ctx, args.quiet);
    let quiet = args.quiet;
    let args = args.clone();
    let keep = match config.lateness {
        Lateness::Allowed(d) => d,
        _ => 0,
    };
    let dash = dashboard.clone();
    let ran = run_with_context(Arc::clone(&ctx), move |flow| {
        let source: PageviewSource = make_source()?;
        let (config, source_config, args) = (config.clone(), source_config.clone(), args.clone());
        let events = flow.source("pageviews", source, &source_config)?;
        let out = trending(events, &config)?;
        dash.trending(&out.minutes)?;
        if !args.quiet {
            // Minutes where nothing trends stay out of the table (they are
            // in --out); the table is for people.
            let shown = out.minutes.clone().filter(|m| m.trending > 0 || m.update);
            shown.sink("table", || Ok(StdoutSink(|_, m: &TrendingMinute| table(m))))?;
        }
        if let Some(path) = super::kafka_io::file_out(&args.out) {
            out.minutes
                .clone()
                .sink("out", || JsonLinesSink::create(path))?;
        }
        #[cfg(feature = "kafka")]
        if let Some(k) = &kafka {
            out.minutes.clone().sink("out", || {
                k.sink(connect_timeout, super::kafka_io::trending_record)
            })?;
        }
        #[cfg(not(feature = "kafka"))]
        let _ = &kafka;
        if let Some(dir) = &args.hourly_out {
            out.hourly
                .clone()
                .sink("hourly", || HourlyDumpSink::create(dir, keep))?;
        }
        if let Some(path) = &args.late_out {
            out.late.clone().sink("late", || {
                Ok(MapSink::new(JsonLinesSink::create(path)?, late_line))
            })?;
        }
        if let Some(config) = &redis {
            out.minutes
                .clone()
                .sink("redis", || super::redis_out::trending_sink(config.clone()))?;
        }
        Ok(())
    });
    drop(progress);
    super::validate::finish_run(ran, &ctx, quiet)?;
    acker.acknowledge()?;
    super::validate::some_input_was_good(&ctx, processes)?;
    dashboard.serve_on();
    Ok(0)
}
