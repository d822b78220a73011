//! `keyflow run activity`.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use keyflow::dataflow::checkpoint::{self, CheckpointConfig, Status};
use keyflow::dataflow::prelude::*;
use keyflow::dataflow::run::run_with_context;
use keyflow::dataflow::time::{format_utc, parse_duration_ms, DAY};
use keyflow::jobs::activity::{
    activity, Activity, ActivityConfig, ActivityGeneratorConfig, ActivitySource, ActivityWindow,
    HourlyParquetSink,
};

use super::checkpoint_args::{output_id, report_finished, CheckpointArgs, Plan};
use super::progress::Progress;
use super::run_args::{
    late_policy, parse_typed_duration, refuse_generator_flags, ClusterArgs, EventTimeArgs,
    TypedDuration,
};
use super::validate::RunPaths;
use crate::serve::{Dashboard, ServeArgs};

/// Per tumbling window: the most visited pages, browser and device shares,
/// and the conversion rate; per user and window: activity features, as
/// hour-partitioned Parquet files.
#[derive(Debug, Clone, Args)]
pub struct ActivityArgs {
    /// Length of the tumbling windows: at least 1s, at most 7 days.
    #[arg(long, default_value = "1m")]
    pub window: String,
    /// How many pages to list per window; 0 lists every page.
    #[arg(long, default_value_t = 10)]
    pub top: usize,
    /// Late events: `drop` (counted), `side-output` (to --late-out, which it
    /// needs), or `allowed-lateness <DURATION>` (windows re-reported as
    /// updates; at most 7 days).
    #[arg(long, num_args = 1..=2, value_name = "POLICY")]
    pub late: Vec<String>,
    /// With `--late side-output`: JSON-lines file for the late events.
    #[arg(long)]
    pub late_out: Option<PathBuf>,
    /// JSON-lines output, one line per window with events.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Directory (new or empty) for the per-user features:
    /// `DIR/date=YYYY-MM-DD/hour=HH/part-0.parquet`, each written once its
    /// hour is complete.
    #[arg(long, value_name = "DIR")]
    pub parquet_out: Option<PathBuf>,
    /// Do not print the per-window lines and the progress line.
    #[arg(long)]
    pub quiet: bool,
    /// The dashboard: job health, the graph and `/metrics`.
    #[command(flatten)]
    pub serve: ServeArgs,
    /// Where events come from.
    #[command(flatten)]
    pub source: ActivitySourceArgs,
    /// Checkpoints.
    #[command(flatten)]
    pub checkpoint: CheckpointArgs,
    /// Workers and processes.
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

/// The generator's defaults, shown in `--help`.
const DEFAULT_DURATION: &str = "10m";

/// Where activity events come from.
#[derive(Debug, Clone, Args)]
pub struct ActivitySourceArgs {
    /// Input files of JSON lines (gzip or plain, told apart by their first
    /// bytes), or directories standing for their files. Without any, the
    /// built-in generator runs. No file may be given twice.
    #[arg(long = "input", num_args = 1.., value_name = "FILE")]
    pub inputs: Vec<PathBuf>,
    /// Generator: number of distinct users (not with --input) [default: 10000]
    #[arg(long, value_name = "N")]
    pub users: Option<u32>,
    /// Generator: number of distinct pages (not with --input) [default: 1000]
    #[arg(long, value_name = "N")]
    pub pages: Option<u32>,
    /// Generator: random seed (not with --input) [default: 42]
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
    /// Generator: events per second of event time (not with --input)
    /// [default: 1000]
    #[arg(long, value_name = "N")]
    pub rate: Option<u64>,
    /// Generator: event-time span of the generated stream (not with --input)
    /// [default: 10m]
    #[arg(long, value_parser = parse_typed_duration, value_name = "DURATION")]
    pub duration: Option<TypedDuration>,
    /// Generator: pace events at real time instead of as fast as possible
    /// (not with --input).
    #[arg(long)]
    pub realtime: bool,
    /// Event time and malformed input.
    #[command(flatten)]
    pub time: EventTimeArgs,
}

impl ActivitySourceArgs {
    /// The generator's configuration, defaults filled in.
    pub fn generator(&self) -> anyhow::Result<ActivityGeneratorConfig> {
        let defaults = ActivityGeneratorConfig::default();
        let duration = match &self.duration {
            Some(d) => d.value.as_millis() as u64,
            None => parse_duration_ms("--duration", DEFAULT_DURATION)?,
        };
        Ok(ActivityGeneratorConfig {
            users: self.users.unwrap_or(defaults.users),
            pages: self.pages.unwrap_or(defaults.pages),
            seed: self.seed.unwrap_or(defaults.seed),
            rate: self.rate.unwrap_or(defaults.rate),
            duration_ms: duration,
            realtime: self.realtime,
            ..defaults
        })
    }

    /// Checks the flags (no generator flag with `--input`, files exist,
    /// generator values valid) and returns a function that builds the
    /// source on each worker.
    pub fn source(
        &self,
    ) -> anyhow::Result<
        impl Fn() -> keyflow::dataflow::Result<ActivitySource> + Send + Sync + 'static,
    > {
        self.time.check()?;
        let source = if self.inputs.is_empty() {
            ActivitySource::generator(self.generator()?)?
        } else {
            refuse_generator_flags(&[
                ("--users", self.users.map(|n| n.to_string())),
                ("--pages", self.pages.map(|n| n.to_string())),
                ("--seed", self.seed.map(|n| n.to_string())),
                ("--rate", self.rate.map(|n| n.to_string())),
                ("--duration", self.duration.as_ref().map(|d| d.text.clone())),
                ("--realtime", self.realtime.then(String::new)),
            ])?;
            ActivitySource::from_files(&self.inputs)?
        };
        // The source is cheap to clone: workers get their own copy.
        let shared = std::sync::Mutex::new(source);
        Ok(move || Ok(shared.lock().unwrap_or_else(|p| p.into_inner()).clone()))
    }
}

/// The longest window: one window's state is kept until it ends.
const MAX_WINDOW: u64 = 7 * DAY;
/// The shortest window: one line per window of event time is written.
const MIN_WINDOW: u64 = 1_000;

impl ActivityArgs {
    /// The job configuration, checked.
    pub fn config(&self) -> anyhow::Result<ActivityConfig> {
        let window = parse_duration_ms("--window", &self.window)?;
        if !(MIN_WINDOW..=MAX_WINDOW).contains(&window) {
            anyhow::bail!(
                "--window {} is outside 1s..7days: the job writes a line per window, and keeps \
                 a window's pages, sessions and users until it ends",
                self.window
            );
        }
        let config = ActivityConfig {
            window,
            top: self.top,
            lateness: late_policy(
                &self.late,
                self.late_out.as_ref(),
                "window state would be kept that long after each window ends",
            )?,
            features: self.parquet_out.is_some(),
        };
        config.validate()?;
        Ok(config)
    }

    /// The paths this run reads and writes.
    pub fn paths(&self) -> RunPaths<'_> {
        RunPaths::new()
            .inputs(&self.source.inputs)
            .output("--out", self.out.as_ref())
            .output("--late-out", self.late_out.as_ref())
            .output("--ready-file", self.cluster.ready_file.as_ref())
            .output_dir("--parquet-out", self.parquet_out.as_ref())
            .output_dir("--checkpoint-dir", self.checkpoint.checkpoint_dir.as_ref())
    }
}

/// The readable line of one window.
pub fn summary_line(w: &ActivityWindow) -> String {
    let top = match w.top_pages.first() {
        Some(p) => format!("; top page {} ({})", p.page, p.events),
        None => String::new(),
    };
    let update = if w.update { " (update)" } else { "" };
    format!(
        "{} UTC  {} events, {} sessions, {:.1}% bought{top}{update}",
        format_utc(w.start),
        w.events,
        w.conversion.sessions,
        w.conversion.rate.0 * 100.0
    )
}

/// Fails when another output lies inside the Parquet directory, or when
/// the run may not write into it (see [`super::lake_claim::claim`]).
fn check_parquet_out(
    args: &ActivityArgs,
    ckpt: Option<&CheckpointConfig>,
    resuming: bool,
) -> anyhow::Result<()> {
    if let Some(dir) = &args.parquet_out {
        let lake = std::path::absolute(dir)?;
        let others = [
            ("--out", &args.out),
            ("--late-out", &args.late_out),
            ("--checkpoint-dir", &args.checkpoint.checkpoint_dir),
        ];
        for (flag, path) in others {
            let Some(path) = path else { continue };
            if std::path::absolute(path)?.starts_with(&lake) {
                anyhow::bail!(
                    "{flag} {} is inside --parquet-out {}: the Parquet directory holds only \
                     the Parquet files; write it elsewhere",
                    path.display(),
                    dir.display()
                );
            }
        }
        super::lake_claim::claim(dir, ckpt, resuming)?;
    }
    Ok(())
}

/// Runs the job; returns the process exit code.
pub fn run(args: &ActivityArgs) -> anyhow::Result<i32> {
    let config = args.config()?;
    args.paths().check()?;
    let mut run_config = args.cluster.run_config()?;
    let source_config = args.source.time.source_config()?;
    let make_source = args.source.source()?;
    // `--quiet` only hides the table, so it may change between restarts.
    let semantic = format!(
        "{config:?} {:?} out={} late-out={} parquet-out={}",
        args.source,
        output_id(&args.out),
        output_id(&args.late_out),
        output_id(&args.parquet_out)
    );
    // The files a directory stands for, so that one added to it since the
    // checkpoint is noticed.
    let files = if args.source.inputs.is_empty() {
        Vec::new()
    } else {
        keyflow::jobs::pageviews::input_files(&args.source.inputs)?
    };
    let mut resuming = false;
    match args
        .checkpoint
        .plan("activity", &semantic, &files, run_config.process)?
    {
        Plan::Off => {}
        Plan::Finished(dir) => {
            report_finished(&dir);
            return Ok(0);
        }
        Plan::Run(checkpoint) => {
            resuming = matches!(
                checkpoint::status_as(
                    &checkpoint.dir,
                    &checkpoint.fingerprint,
                    run_config.process
                )?,
                Status::Resume(_)
            );
            run_config.checkpoint = Some(checkpoint);
        }
    }
    check_parquet_out(args, run_config.checkpoint.as_ref(), resuming)?;
    let processes = run_config.processes;
    let ctx = Arc::new(Context::new(run_config));
    super::validate::refuse_all_bad_outputs(&ctx, processes);
    let dashboard = Dashboard::start(&args.serve, "activity", &ctx)?;
    let progress = Progress::start(&ctx, args.quiet);
    let quiet = args.quiet;
    let args = args.clone();
    let keep = match config.lateness {
        Lateness::Allowed(d) => d,
        _ => 0,
    };
    let ran = run_with_context(Arc::clone(&ctx), move |flow| {
        let events = flow.source("activity", make_source()?, &source_config)?;
        let out = activity(events, &config)?;
        if !args.quiet {
            out.windows.clone().sink("table", || {
                Ok(StdoutSink(|_, w: &ActivityWindow| summary_line(w)))
            })?;
        }
        if let Some(path) = &args.out {
            out.windows
                .clone()
                .sink("out", || JsonLinesSink::create(path))?;
        }
        if let Some(dir) = &args.parquet_out {
            let window = config.window;
            out.features.clone().sink("parquet", || {
                if resuming {
                    HourlyParquetSink::resume(dir, window, keep)
                } else {
                    HourlyParquetSink::create(dir, window, keep)
                }
            })?;
        }
        if let Some(path) = &args.late_out {
            out.late.clone().sink("late", || {
                let lines = JsonLinesSink::create(path)?;
                Ok(MapSink::new(lines, |ts, e: &Activity| e.to_json(ts)))
            })?;
        }
        Ok(())
    });
    drop(progress);
    super::validate::finish_run(ran, &ctx, quiet)?;
    super::validate::some_input_was_good(&ctx, processes)?;
    dashboard.serve_on();
    Ok(0)
}
