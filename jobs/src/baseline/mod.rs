//! The baseline batch job: per article and hour of the day, the average
//! views over the days of a history.
//!
//! For every `(project, title)` and hour of the day `h` in `0..24` (UTC),
//! `a_h = (views in hour h, summed over the days of the input) / n`, where
//! n is the number of days the input covers: the distinct UTC days of the
//! input's hours. A day on which an article had no views counts as 0 for it,
//! so every article is averaged over the same n. A dump file's hour (from its
//! name) counts as covered even when the file has no line; for JSON lines,
//! the days are those of the events. Days are counted, not spanned: a
//! history of 1 and 3 August has n = 2.
//!
//! The job is a differential dataflow (see `compute.rs`): hourly counts are a
//! collection whose multiplicities are views; `count` sums them per article
//! and hour, `reduce` builds each article's 24-hour vector, `distinct` and
//! `reduce` find the days, and a `join` divides by n. The files are spread
//! over the workers; the result is gathered on worker 0 and written as a
//! [`Baseline`] file (format in [`mod@format`]), byte for byte the same at any
//! number of workers. [`run_baseline`] shows a complete run.

mod compute;
pub mod format;
mod read;

use std::collections::BTreeMap;
use std::path::PathBuf;

use std::sync::Arc;

use keyflow_dataflow::run::{run_workers_with_context, Context, RunConfig};
use keyflow_dataflow::source::BadInputPolicy;
use keyflow_dataflow::time::DAY;
use serde::{Deserialize, Serialize};

pub use format::{format_day, Baseline, BASELINE_MAGIC, BASELINE_VERSION, HOURS, MAX_DAYS};

use crate::error::{Error, Result};
use crate::pageviews::{input_files, DumpTime, InputFormat};
use compute::{run_worker, Gathered, ReadSpec};

/// What `keyflow baseline` reads and where it writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BaselineConfig {
    /// Input files, or directories standing for their files.
    pub inputs: Vec<PathBuf>,
    /// How the files are written.
    pub format: InputFormat,
    /// What a dump's hour stamp marks (dumps only).
    pub dump_time: DumpTime,
    /// Malformed lines: skip and count them, or fail.
    pub bad_input: BadInputPolicy,
    /// The baseline file to write (atomically).
    pub out: PathBuf,
}

impl BaselineConfig {
    /// Reads `inputs` of `format` into `out`, with dump stamps marking the
    /// start of the hour and malformed lines skipped.
    pub fn new(inputs: Vec<PathBuf>, format: InputFormat, out: PathBuf) -> Self {
        BaselineConfig {
            inputs,
            format,
            dump_time: DumpTime::Start,
            bad_input: BadInputPolicy::Drop,
            out,
        }
    }
}

/// What a baseline run did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BaselineSummary {
    /// Articles in the baseline.
    pub keys: usize,
    /// n: days averaged.
    pub days: u64,
    /// The first and last day, `YYYY-MM-DD`.
    pub first_day: Option<String>,
    /// See `first_day`.
    pub last_day: Option<String>,
    /// Files read (by every process).
    pub files: usize,
    /// Good lines read by this process.
    pub records: u64,
    /// Malformed lines skipped by this process.
    pub bad: u64,
    /// Whether this process wrote the file (the one holding worker 0).
    pub written: bool,
}

/// Turns what worker 0 gathered into a baseline.
fn assemble(gathered: Gathered) -> Result<Baseline> {
    let mut meta: BTreeMap<_, isize> = BTreeMap::new();
    for (m, diff) in gathered.meta {
        *meta.entry(m).or_default() += diff;
    }
    meta.retain(|_, d| *d != 0);
    let mut base = Baseline::empty();
    match meta.into_iter().collect::<Vec<_>>().as_slice() {
        [] => {
            return Err(Error::Config(
                "the input covers no hour: nothing to build a baseline from".into(),
            ))
        }
        [((n, first, last), 1)] => {
            base.days = *n;
            base.first_day = Some(*first as u64 * DAY);
            base.last_day = Some(*last as u64 * DAY);
        }
        other => {
            return Err(Error::Dataflow(keyflow_dataflow::Error::External(format!(
                "internal error: the baseline dataflow gave {} day summaries",
                other.len()
            ))))
        }
    }
    let mut rows: BTreeMap<_, isize> = BTreeMap::new();
    for (row, diff) in gathered.rows {
        *rows.entry(row).or_default() += diff;
    }
    for ((article, bits), diff) in rows {
        match diff {
            0 => {}
            1 if !base.keys.contains_key(&article) => {
                base.keys.insert(article, bits.map(f64::from_bits));
            }
            _ => {
                return Err(Error::Dataflow(keyflow_dataflow::Error::External(format!(
                    "internal error: the baseline dataflow gave `{article}` {diff} times"
                ))))
            }
        }
    }
    Ok(base)
}

/// Runs `keyflow baseline`: reads the history, computes the averages with
/// differential dataflow on the workers of `run_config`, and writes
/// `config.out` atomically from the process holding worker 0. Every file
/// must exist (checked before any work).
///
/// # Examples
/// ```
/// use keyflow_dataflow::run::RunConfig;
/// use keyflow_jobs::baseline::{run_baseline, Baseline, BaselineConfig};
/// use keyflow_jobs::pageviews::{Article, InputFormat};
///
/// let dir = std::env::temp_dir().join(format!("keyflow-doc-baseline-job-{}", std::process::id()));
/// std::fs::create_dir_all(&dir)?;
/// // Two days of history: 10 views at 13:00 on day 1, none on day 2.
/// std::fs::write(dir.join("pageviews-20160801-130000"), "en Simon_Pegg 10 0\n")?;
/// std::fs::write(dir.join("pageviews-20160802-130000"), "en Other 4 0\n")?;
/// let config = BaselineConfig::new(vec![dir.clone()], InputFormat::Dump, dir.join("base.txt"));
/// let summary = run_baseline(&RunConfig::threads(2), &config)?;
/// assert_eq!((summary.days, summary.keys), (2, 2));
///
/// let base = Baseline::read(&dir.join("base.txt"))?;
/// assert_eq!(base.get(&Article::named("en", "Simon_Pegg")).unwrap()[13], 5.0);
/// assert_eq!(base.get(&Article::named("en", "Other")).unwrap()[13], 2.0);
/// std::fs::remove_dir_all(&dir)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn run_baseline(run_config: &RunConfig, config: &BaselineConfig) -> Result<BaselineSummary> {
    let files = input_files(&config.inputs)?;
    if config.out.as_os_str().is_empty() {
        return Err(Error::Config("--out: no baseline file given".into()));
    }
    if config.out.is_dir() {
        return Err(Error::Config(format!(
            "--out {} is a directory, not a file",
            config.out.display()
        )));
    }
    let spec = ReadSpec {
        files: files.clone(),
        format: config.format,
        dump_time: config.dump_time,
        bad_input: config.bad_input,
    };
    let ctx = Arc::new(Context::new(run_config.clone()));
    let gathered = run_workers_with_context(Arc::clone(&ctx), move |worker, ctx| {
        run_worker(worker, ctx, &spec)
    })?;
    let metrics = ctx.metrics.snapshot();
    let mut summary = BaselineSummary {
        keys: 0,
        days: 0,
        first_day: None,
        last_day: None,
        files: files.len(),
        records: metrics.events,
        bad: metrics.bad,
        written: false,
    };
    // Every line read was malformed: an earlier baseline at `out` stays
    // as it was. (A process of a cluster cannot tell: the others' lines
    // are not in its counters.)
    let all_bad = run_config.processes == 1 && metrics.events == 0 && metrics.bad > 0;
    if let Some(gathered) = gathered.into_iter().flatten().next().filter(|_| !all_bad) {
        let base = assemble(gathered)?;
        base.write_atomic(&config.out)?;
        summary.keys = base.keys.len();
        summary.days = base.days;
        summary.first_day = base.first_day.map(format_day);
        summary.last_day = base.last_day.map(format_day);
        summary.written = true;
    }
    Ok(summary)
}
