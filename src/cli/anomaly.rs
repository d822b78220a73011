//! `keyflow baseline`, `keyflow run anomaly` and `keyflow run pageviews`.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use keyflow::dataflow::prelude::*;
use keyflow::dataflow::run::run_with_context;
use keyflow::jobs::anomaly::{anomaly, check_fold_days, AnomalyConfig, AnomalyHour, Metric};
use keyflow::jobs::baseline::{run_baseline, Baseline, BaselineConfig};
use keyflow::jobs::pageviews::{
    hour_from_file_name, input_files, DumpTime, InputFormat, PageviewSource,
};
use keyflow::jobs::trending::{trending, TrendingMinute};

use super::progress::Progress;
use super::run_args::{ClusterArgs, DumpTimeArg, InputFormat as FormatArg, SourceArgs};
use super::sources::pageview_source;
use super::trending::{table as trending_table, TrendingArgs};
use crate::serve::{Dashboard, ServeArgs};

/// Flags of `keyflow baseline`.
#[derive(Debug, Clone, Args)]
pub struct BaselineArgs {
    /// Historical hourly files (or directories of them).
    #[arg(long = "input", num_args = 1.., required = true, value_name = "FILE")]
    pub inputs: Vec<PathBuf>,
    /// Format of the input files.
    #[arg(long, value_enum, default_value_t = FormatArg::Dump)]
    pub input_format: FormatArg,
    /// For dump files: whether the hour stamp is the hour's start or end.
    #[arg(long, value_enum, default_value_t = DumpTimeArg::Start)]
    pub dump_time: DumpTimeArg,
    /// Malformed lines: drop (count and skip) or fail.
    #[arg(long, default_value = "drop", value_parser = parse_bad_input)]
    pub bad_input: BadInputPolicy,
    /// The baseline file to write.
    #[arg(long)]
    pub out: PathBuf,
    /// Workers and processes.
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

fn parse_bad_input(text: &str) -> Result<BadInputPolicy, String> {
    text.parse()
        .map_err(|e: keyflow::dataflow::Error| e.to_string())
}

fn format(arg: FormatArg) -> InputFormat {
    match arg {
        FormatArg::Jsonl => InputFormat::Jsonl,
        // Refused before this is reached (see `baseline`).
        FormatArg::Dump | FormatArg::RedisStream | FormatArg::Kafka => InputFormat::Dump,
    }
}

fn dump_time(arg: DumpTimeArg) -> DumpTime {
    match arg {
        DumpTimeArg::Start => DumpTime::Start,
        DumpTimeArg::End => DumpTime::End,
    }
}

/// `keyflow baseline`.
pub fn baseline(args: &BaselineArgs) -> anyhow::Result<i32> {
    if matches!(args.input_format, FormatArg::RedisStream | FormatArg::Kafka) {
        anyhow::bail!(
            "keyflow baseline reads files: --input-format redis-stream and kafka are for `keyflow run`"
        );
    }
    let run = args.cluster.run_config()?;
    super::validate::baseline(args)?;
    let config = BaselineConfig {
        dump_time: dump_time(args.dump_time),
        bad_input: args.bad_input,
        ..BaselineConfig::new(
            args.inputs.clone(),
            format(args.input_format),
            args.out.clone(),
        )
    };
    let summary = run_baseline(&run, &config)?;
    if summary.written {
        say!(
            "baseline: {} articles over {} day(s) ({} .. {}), {} lines, {} bad, written to {}",
            summary.keys,
            summary.days,
            summary.first_day.as_deref().unwrap_or("-"),
            summary.last_day.as_deref().unwrap_or("-"),
            summary.records,
            summary.bad,
            args.out.display()
        );
    }
    if summary.records == 0 && summary.bad > 0 && run.processes == 1 {
        anyhow::bail!(
            "all {} lines read were malformed and skipped (--bad-input drop), so the baseline \
             holds nothing; the warnings above name the first few",
            summary.bad
        );
    }
    Ok(0)
}

/// Anomaly scoring flags, shared by `run anomaly` and `run pageviews`.
#[derive(Debug, Clone, Args)]
pub struct ScoringArgs {
    /// The baseline file written by `keyflow baseline`.
    #[arg(long, required = true)]
    pub baseline: PathBuf,
    /// The distance: canberra or bray-curtis.
    #[arg(long, default_value = "canberra", value_parser = parse_metric)]
    pub metric: Metric,
    /// Skip articles with sum(c + a) below this.
    #[arg(long, default_value_t = 100.0)]
    pub min_volume: f64,
    /// Where to write the baseline updated at each day's end.
    #[arg(long)]
    pub baseline_out: Option<PathBuf>,
    /// Fold in a day that is not after the baseline's last day, as one more
    /// day. Without it such a day is an error: the baseline keeps no
    /// per-day values, so a day it already averages would count twice.
    #[arg(long)]
    pub refold_days: bool,
}

fn parse_metric(text: &str) -> Result<Metric, String> {
    text.parse()
        .map_err(|e: keyflow::operators::Error| e.to_string())
}

impl ScoringArgs {
    fn config(&self, top: usize, source: &SourceArgs) -> anyhow::Result<AnomalyConfig> {
        let baseline = Baseline::read(&self.baseline)?;
        if !source.inputs.is_empty() && source.format() == FormatArg::Dump {
            // Dump file names give the input's hours, so a day that must not
            // be folded is refused before any output is written. Without
            // names, the job checks at the day's end.
            let files = input_files(&source.inputs)?;
            let time = dump_time(source.dump_time.unwrap_or(DumpTimeArg::Start));
            let hours: Option<Vec<_>> = files
                .iter()
                .map(|f| hour_from_file_name(f).and_then(|stamp| time.hour_start(stamp)))
                .collect();
            if let Some(hours) = hours {
                check_fold_days(&baseline, hours, self.refold_days)
                    .map_err(|e| anyhow::anyhow!("{e} (baseline {})", self.baseline.display()))?;
            }
        }
        let config = AnomalyConfig {
            metric: self.metric,
            top,
            min_volume: self.min_volume,
            baseline_out: self.baseline_out.clone(),
            refold_days: self.refold_days,
            ..AnomalyConfig::new(Arc::new(baseline))
        };
        config.validate()?;
        Ok(config)
    }
}

/// Flags of `keyflow run anomaly`.
#[derive(Debug, Clone, Args)]
pub struct AnomalyArgs {
    /// Articles listed per hour; 0 lists every scored article.
    #[arg(long, default_value_t = 5)]
    pub top: usize,
    /// Scoring.
    #[command(flatten)]
    pub scoring: ScoringArgs,
    /// JSON-lines output, one line per scored hour.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Do not print the per-hour table and progress line.
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
    pub checkpoint: super::checkpoint_args::CheckpointArgs,
    /// Workers and processes.
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// The dashboard.
    #[command(flatten)]
    pub serve: ServeArgs,
}

/// The checkpoint plan of an anomaly-scoring run: the baseline is an input
/// like the others, and every flag but the cluster and `--quiet` counts.
fn checkpoint_plan(
    job: &str,
    checkpoint: &super::checkpoint_args::CheckpointArgs,
    semantic: String,
    source: &SourceArgs,
    baseline: &std::path::Path,
    process: usize,
) -> anyhow::Result<Option<super::checkpoint_args::Plan>> {
    let mut inputs = source.files().to_vec();
    inputs.push(baseline.to_path_buf());
    let plan = checkpoint.plan(job, &semantic, &inputs, process)?;
    if let super::checkpoint_args::Plan::Finished(dir) = &plan {
        super::checkpoint_args::report_finished(dir);
        return Ok(None);
    }
    Ok(Some(plan))
}

/// The readable table of one scored hour.
pub fn anomaly_table(hour: &AnomalyHour) -> String {
    let mut table = comfy_table::Table::new();
    table.load_preset(comfy_table::presets::UTF8_BORDERS_ONLY);
    table.set_header(vec!["rank", "project", "title", "score"]);
    for e in &hour.top {
        table.add_row(vec![
            e.rank.to_string(),
            e.project.clone(),
            e.title.clone(),
            format!("{:.6}", e.score),
        ]);
    }
    format!("{} {:02}:00 UTC  anomalies\n{table}", hour.day, hour.hour)
}

/// `keyflow run anomaly`.
pub fn run_anomaly(args: &AnomalyArgs) -> anyhow::Result<i32> {
    super::validate::anomaly(args)?;
    let config = args.scoring.config(args.top, &args.source)?;
    let mut run_config = args.cluster.run_config()?;
    let semantic = format!(
        "{:?} top={} {:?} out={}",
        args.scoring,
        args.top,
        args.source,
        super::checkpoint_args::output_id(&args.out)
    );
    match checkpoint_plan(
        "anomaly",
        &args.checkpoint,
        semantic,
        &args.source,
        &args.scoring.baseline,
        run_config.process,
    )? {
        None => return Ok(0),
        Some(super::checkpoint_args::Plan::Run(c)) => run_config.checkpoint = Some(c),
        Some(_) => {}
    }
    let source_config = args.source.source_config()?;
    let connect_timeout = args.cluster.connect_timeout;
    let (make_source, acker) = pageview_source(&args.source, connect_timeout)?;
    let redis = args.redis.config()?;
    let mut kafka = super::kafka_io::kafka_out(&args.out)?;
    if let (Some(k), Some(c)) = (kafka.as_mut(), run_config.checkpoint.as_ref()) {
        k.exactly_once(&c.dir, "anomaly")?;
    }
    let processes = run_config.processes;
    let ctx = Arc::new(Context::new(run_config));
    super::validate::refuse_all_bad_outputs(&ctx, processes);
    let dashboard = Dashboard::start(&args.serve, "anomaly", &ctx)?;
    let progress = Progress::start(&ctx, args.quiet);
    let (quiet, out) = (args.quiet, super::kafka_io::file_out(&args.out).cloned());
    let dash = dashboard.clone();
    let ran = run_with_context(Arc::clone(&ctx), move |flow| {
        let src: PageviewSource = make_source()?;
        let (config, source_config, out) = (config.clone(), source_config.clone(), out.clone());
        let events = flow.source("pageviews", src, &source_config)?;
        let hours = anomaly(events, &config)?;
        dash.anomaly(&hours)?;
        if !quiet {
            hours.clone().sink("table", || {
                Ok(StdoutSink(|_, h: &AnomalyHour| anomaly_table(h)))
            })?;
        }
        if let Some(config) = &redis {
            hours
                .clone()
                .sink("redis", || super::redis_out::anomaly_sink(config.clone()))?;
        }
        #[cfg(feature = "kafka")]
        if let Some(k) = &kafka {
            hours.clone().sink("out", || {
                k.sink(connect_timeout, super::kafka_io::anomaly_record)
            })?;
        }
        #[cfg(not(feature = "kafka"))]
        let _ = &kafka;
        if let Some(path) = &out {
            hours.sink("out", || JsonLinesSink::create(path))?;
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

/// Flags of `keyflow run pageviews`.
#[derive(Debug, Clone, Args)]
pub struct PageviewsArgs {
    /// Trending: JSON lines, one per evaluated minute.
    #[arg(long)]
    pub trending_out: Option<PathBuf>,
    /// Anomalies: JSON lines, one per scored hour.
    #[arg(long)]
    pub anomaly_out: Option<PathBuf>,
    /// Anomalies listed per hour; 0 lists every scored article.
    #[arg(long, default_value_t = 5)]
    pub anomaly_top: usize,
    /// Scoring.
    #[command(flatten)]
    pub scoring: ScoringArgs,
    /// Trending flags (its --out is ignored in favour of --trending-out).
    #[command(flatten)]
    pub trending: TrendingArgs,
}

/// `keyflow run pageviews`: trending and anomalies over one source, in one
/// dataflow.
pub fn run_pageviews(args: &PageviewsArgs) -> anyhow::Result<i32> {
    super::validate::pageviews(args)?;
    let mut trending_config = args.trending.config()?;
    trending_config.hourly = args.trending.hourly_out.is_some();
    let anomaly_config = args
        .scoring
        .config(args.anomaly_top, &args.trending.source)?;
    let mut run_config = args.trending.cluster.run_config()?;
    let t = &args.trending;
    let semantic = format!(
        "{trending_config:?} {:?} top={} {:?} trending-out={} anomaly-out={} hourly-out={}",
        args.scoring,
        args.anomaly_top,
        t.source,
        super::checkpoint_args::output_id(&args.trending_out),
        super::checkpoint_args::output_id(&args.anomaly_out),
        super::checkpoint_args::output_id(&t.hourly_out)
    );
    match checkpoint_plan(
        "pageviews",
        &t.checkpoint,
        semantic,
        &t.source,
        &args.scoring.baseline,
        run_config.process,
    )? {
        None => return Ok(0),
        Some(super::checkpoint_args::Plan::Run(c)) => run_config.checkpoint = Some(c),
        Some(_) => {}
    }
    let source_config = args.trending.source.source_config()?;
    let (make_source, acker) =
        pageview_source(&args.trending.source, args.trending.cluster.connect_timeout)?;
    let redis = args.trending.redis.config()?;
    let processes = run_config.processes;
    let ctx = Arc::new(Context::new(run_config));
    super::validate::refuse_all_bad_outputs(&ctx, processes);
    let dashboard = Dashboard::start(&args.trending.serve, "pageviews", &ctx)?;
    let quiet = args.trending.quiet;
    let progress = Progress::start(&ctx, quiet);
    let args = args.clone();
    let dash = dashboard.clone();
    let ran = run_with_context(Arc::clone(&ctx), move |flow| {
        let src: PageviewSource = make_source()?;
        let (tc, ac, sc, args) = (
            trending_config.clone(),
            anomaly_config.clone(),
            source_config.clone(),
            args.clone(),
        );
        let events = flow.source("pageviews", src, &sc)?;
        let minutes = trending(events.clone(), &tc)?;
        let hours = anomaly(events, &ac)?;
        dash.trending(&minutes.minutes)?;
        dash.anomaly(&hours)?;
        if !quiet {
            let shown = minutes
                .minutes
                .clone()
                .filter(|m| m.trending > 0 || m.update);
            shown.sink("trending-table", || {
                Ok(StdoutSink(|_, m: &TrendingMinute| trending_table(m)))
            })?;
            hours.clone().sink("anomaly-table", || {
                Ok(StdoutSink(|_, h: &AnomalyHour| anomaly_table(h)))
            })?;
        }
        if let Some(path) = &args.trending_out {
            minutes
                .minutes
                .clone()
                .sink("trending-out", || JsonLinesSink::create(path))?;
        }
        if let Some(config) = &redis {
            minutes.minutes.clone().sink("trending-redis", || {
                super::redis_out::trending_sink(config.clone())
            })?;
            hours.clone().sink("anomaly-redis", || {
                super::redis_out::anomaly_sink(config.clone())
            })?;
        }
        if let Some(path) = &args.anomaly_out {
            hours.sink("anomaly-out", || JsonLinesSink::create(path))?;
        }
        if let Some(dir) = &args.trending.hourly_out {
            let keep = match tc.lateness {
                Lateness::Allowed(d) => d,
                _ => 0,
            };
            minutes.hourly.sink("hourly", || {
                keyflow::jobs::trending::HourlyDumpSink::create(dir, keep)
            })?;
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
