//! `keyflow run behaviour`.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use keyflow::dataflow::prelude::*;
use keyflow::dataflow::run::run_with_context;
use keyflow::dataflow::time::format_utc;
use keyflow::jobs::behaviour::{
    behaviour, BehaviourConfig, Report, UserGeneratorConfig, UserSource, UserState,
};

use super::checkpoint_args::{output_id, report_finished, CheckpointArgs, Plan};
use super::progress::Progress;
use super::run_args::{
    late_policy, parse_typed_duration, ClusterArgs, EventTimeArgs, TypedDuration,
};
use super::validate::RunPaths;
use crate::serve::{Dashboard, ServeArgs};

/// Where user events come from.
#[derive(Debug, Clone, Args)]
pub struct UserInputArgs {
    /// JSON-lines files of events such as
    /// `{"user":"u17","ts":1700000000000,"from":"/","op":"view","to":"/p/3"}`
    /// (gzip or plain), or directories standing for their files. Without
    /// any, the built-in generator runs.
    #[arg(long = "input", num_args = 1.., value_name = "FILE")]
    pub inputs: Vec<PathBuf>,
    /// Generator: simulated users, 1000 to 1000000 (not with --input)
    /// [default: 10000]
    #[arg(long, value_name = "N")]
    pub users: Option<u32>,
    /// Generator: random seed (not with --input) [default: 42]
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
    /// Generator: most events per second of wall-clock time (not with
    /// --input) [default: as fast as possible]
    #[arg(long, value_name = "N")]
    pub rate: Option<u64>,
    /// Generator: event-time span of the generated stream (not with
    /// --input) [default: 1h]
    #[arg(long, value_parser = parse_typed_duration, value_name = "DURATION")]
    pub duration: Option<TypedDuration>,
}

impl UserInputArgs {
    /// The generator's settings, defaults filled in.
    pub fn generator(&self, landing: &str) -> UserGeneratorConfig {
        let defaults = UserGeneratorConfig::default();
        UserGeneratorConfig {
            users: self.users.unwrap_or(defaults.users),
            seed: self.seed.unwrap_or(defaults.seed),
            rate: self.rate,
            duration_ms: self
                .duration
                .as_ref()
                .map_or(defaults.duration_ms, |d| d.value.as_millis() as u64),
            landing: landing.to_string(),
            ..defaults
        }
    }

    /// Refuses generator flags with files, and missing files.
    pub fn check(&self) -> anyhow::Result<()> {
        if self.inputs.is_empty() {
            return Ok(());
        }
        let generator_flags = [
            ("--users", self.users.map(|n| n.to_string())),
            ("--seed", self.seed.map(|n| n.to_string())),
            ("--rate", self.rate.map(|n| n.to_string())),
            ("--duration", self.duration.as_ref().map(|d| d.text.clone())),
        ];
        if let Some((flag, value)) = generator_flags
            .iter()
            .find_map(|(flag, value)| value.as_ref().map(|v| (flag, v)))
        {
            anyhow::bail!(
                "{flag} {value} is a generator flag and does nothing with --input: the files \
                 are read instead of generating events"
            );
        }
        for path in &self.inputs {
            if !path.exists() {
                anyhow::bail!("input {} does not exist", path.display());
            }
        }
        Ok(())
    }
}

/// Every interval, the users per state (landed, browsing, bounced, buying)
/// and the flows between states, with alerts when a population grows fast.
#[derive(Debug, Clone, Args)]
pub struct BehaviourArgs {
    /// The landing page: a view of it lands a new, gone or bounced user.
    #[arg(long, default_value = "/")]
    pub landing: String,
    /// A landed user with no event for this long has bounced.
    #[arg(long, default_value = "30s", value_parser = parse_typed_duration, value_name = "DURATION")]
    pub bounce_timeout: TypedDuration,
    /// A user with no event for this long is gone.
    #[arg(long, default_value = "30m", value_parser = parse_typed_duration, value_name = "DURATION")]
    pub session_timeout: TypedDuration,
    /// Distance between reported boundaries (aligned to the Unix epoch).
    #[arg(long, default_value = "10s", value_parser = parse_typed_duration, value_name = "DURATION")]
    pub resolution: TypedDuration,
    /// Alert when a population grows by more than this percentage over
    /// --alert-window (`100%`, `100` and `12.5%` are accepted).
    #[arg(long, default_value = "100%", value_name = "PERCENT")]
    pub alert_rise: String,
    /// The span an alert compares over: a multiple of --resolution.
    #[arg(long, default_value = "1h", value_parser = parse_typed_duration, value_name = "DURATION")]
    pub alert_window: TypedDuration,
    /// The least population one window earlier that can raise an alert.
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub alert_min: u64,
    /// Late events: `drop` (counted), `side-output` (to --late-out, which it
    /// needs), or `allowed-lateness <DURATION>` (users' states are updated
    /// that much behind event time, so events up to that late count in
    /// their place; at most 7 days).
    #[arg(long, num_args = 1..=2, value_name = "POLICY")]
    pub late: Vec<String>,
    /// With `--late side-output`: JSON-lines file for the late events.
    #[arg(long)]
    pub late_out: Option<PathBuf>,
    /// JSON-lines output, one line per boundary: populations and flows.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// JSON-lines output, one line per alert.
    #[arg(long)]
    pub alerts_out: Option<PathBuf>,
    /// JSON-lines output, one line per boundary: the job's own coverage,
    /// delay, late and dropped counts (these vary from run to run).
    #[arg(long)]
    pub stats_out: Option<PathBuf>,
    /// Do not print the per-boundary lines and the progress line.
    #[arg(long)]
    pub quiet: bool,
    /// The dashboard: job health, the graph and `/metrics`.
    #[command(flatten)]
    pub serve: ServeArgs,
    /// Where events come from.
    #[command(flatten)]
    pub input: UserInputArgs,
    /// How event time is judged.
    #[command(flatten)]
    pub time: EventTimeArgs,
    /// Checkpoints.
    #[command(flatten)]
    pub checkpoint: CheckpointArgs,
    /// Workers and processes.
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

/// A duration flag that must be at least 1 ms, as milliseconds.
fn positive_ms(flag: &str, d: &TypedDuration) -> anyhow::Result<u64> {
    let ms = d.value.as_millis() as u64;
    if ms == 0 {
        anyhow::bail!("{flag} {}: must be at least 1ms", d.text);
    }
    Ok(ms)
}

impl BehaviourArgs {
    /// The job configuration, checked; errors name the flag as typed.
    pub fn config(&self) -> anyhow::Result<BehaviourConfig> {
        let resolution = positive_ms("--resolution", &self.resolution)?;
        let alert_window = positive_ms("--alert-window", &self.alert_window)?;
        if !alert_window.is_multiple_of(resolution) {
            anyhow::bail!(
                "--alert-window {} is not a multiple of --resolution {}: alerts compare \
                 populations at boundaries",
                self.alert_window.text,
                self.resolution.text
            );
        }
        if self.landing.is_empty() {
            anyhow::bail!("--landing is empty: give the landing page, such as /");
        }
        let alert_rise = self
            .alert_rise
            .parse()
            .map_err(|e| anyhow::anyhow!("--alert-rise: {e}"))?;
        let config = BehaviourConfig {
            landing: self.landing.clone(),
            bounce_timeout: positive_ms("--bounce-timeout", &self.bounce_timeout)?,
            session_timeout: positive_ms("--session-timeout", &self.session_timeout)?,
            resolution,
            alert_rise,
            alert_window,
            alert_min: self.alert_min,
            lateness: late_policy(
                &self.late,
                self.late_out.as_ref(),
                "the users' states would be updated that far behind event time",
            )?,
        };
        config.validate()?;
        Ok(config)
    }

    /// The paths this run reads and writes.
    pub fn paths(&self) -> RunPaths<'_> {
        RunPaths::new()
            .inputs(&self.input.inputs)
            .output("--out", self.out.as_ref())
            .output("--alerts-out", self.alerts_out.as_ref())
            .output("--stats-out", self.stats_out.as_ref())
            .output("--late-out", self.late_out.as_ref())
            .output("--ready-file", self.cluster.ready_file.as_ref())
            .output_dir("--checkpoint-dir", self.checkpoint.checkpoint_dir.as_ref())
    }
}

/// The readable line of one boundary.
pub fn report_text(r: &Report) -> String {
    let mut text = format!("{} UTC ", format_utc(r.t));
    for (state, n) in UserState::COUNTED.iter().zip(r.populations) {
        text.push_str(&format!(" {} {n:>6}", state.name()));
    }
    let changes: u64 = r.flows.iter().map(|f| f.2).sum();
    text.push_str(&format!("  ({changes} changes)"));
    for a in &r.alerts {
        text.push_str(&format!(
            "  ALERT {} {} -> {}",
            a.state.name(),
            a.was,
            a.now
        ));
    }
    text
}

/// The job's quality from the gauges the series publishes (empty before
/// the first report, and in processes other than the first).
fn quality_text(ctx: &Context) -> String {
    let gauges: std::collections::BTreeMap<String, i64> =
        ctx.metrics.gauges().into_iter().collect();
    let get = |name: &str| gauges.get(&format!("behaviour-series_{name}")).copied();
    match (get("coverage_ppm"), get("delay_ms")) {
        (Some(ppm), Some(delay)) if get("received").unwrap_or(0) > 0 => format!(
            "coverage {:.2}%, delay {:.1}s, late {}, dropped {}",
            ppm as f64 / 10_000.0,
            delay as f64 / 1000.0,
            get("late").unwrap_or(0),
            get("dropped").unwrap_or(0)
        ),
        _ => String::new(),
    }
}

/// Runs the job; returns the process exit code.
pub fn run(args: &BehaviourArgs) -> anyhow::Result<i32> {
    let config = args.config()?;
    args.input.check()?;
    let source_config = args.time.source_config()?;
    args.paths().check()?;
    let mut run_config = args.cluster.run_config()?;
    let generator = args.input.generator(&config.landing);
    if args.input.inputs.is_empty() {
        generator.validate()?;
    }
    let semantic = format!(
        "{config:?} {:?} {:?} out={} alerts-out={} stats-out={} late-out={}",
        args.input,
        args.time,
        output_id(&args.out),
        output_id(&args.alerts_out),
        output_id(&args.stats_out),
        output_id(&args.late_out)
    );
    match args.checkpoint.plan(
        "behaviour",
        &semantic,
        &args.input.inputs,
        run_config.process,
    )? {
        Plan::Off => {}
        Plan::Finished(dir) => {
            report_finished(&dir);
            return Ok(0);
        }
        Plan::Run(checkpoint) => run_config.checkpoint = Some(checkpoint),
    }
    let processes = run_config.processes;
    let ctx = Arc::new(Context::new(run_config));
    super::validate::refuse_all_bad_outputs(&ctx, processes);
    let dashboard = Dashboard::start(&args.serve, "behaviour", &ctx)?;
    let progress = Progress::start_with(&ctx, args.quiet, quality_text);
    let quiet = args.quiet;
    let args = args.clone();
    let ran = run_with_context(Arc::clone(&ctx), move |flow| {
        let source = if args.input.inputs.is_empty() {
            UserSource::generator(generator.clone())?
        } else {
            UserSource::files(&args.input.inputs)?
        };
        let events = flow.source("user-events", source, &source_config)?;
        let out = behaviour(events, &config)?;
        if !args.quiet {
            out.reports
                .clone()
                .sink("table", || Ok(StdoutSink(|_, r: &Report| report_text(r))))?;
        }
        if let Some(path) = &args.out {
            out.reports
                .clone()
                .map(|r| r.line())
                .sink("out", || JsonLinesSink::create(path))?;
        }
        if let Some(path) = &args.alerts_out {
            out.reports
                .clone()
                .flat_map(|r| r.alert_lines())
                .sink("alerts", || JsonLinesSink::create(path))?;
        }
        if let Some(path) = &args.stats_out {
            out.reports
                .clone()
                .map(|r| r.quality_line())
                .sink("stats", || JsonLinesSink::create(path))?;
        }
        if let Some(path) = &args.late_out {
            out.late.sink("late", || JsonLinesSink::create(path))?;
        }
        Ok(())
    });
    drop(progress);
    super::validate::finish_run(ran, &ctx, quiet)?;
    let quality = quality_text(&ctx);
    if !quality.is_empty() {
        say!("quality: {quality}");
    }
    super::validate::some_input_was_good(&ctx, processes)?;
    dashboard.serve_on();
    Ok(0)
}
