//! Hourly per-article totals, written as Wikimedia dump files.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use keyflow_dataflow::sink::Sink;
use keyflow_dataflow::time::{civil, EventTime, HOUR};
use keyflow_dataflow::window::WindowResult;
use keyflow_dataflow::{Error, Result};

use crate::output_file::write_whole_file;
use crate::pageviews::Article;

/// The dump file name for the hour starting at `hour`:
/// `pageviews-YYYYMMDD-HH0000`.
///
/// # Examples
/// ```
/// use keyflow_jobs::trending::hourly_file_name;
/// assert_eq!(hourly_file_name(1_470_009_600_000 + 13 * 3_600_000), "pageviews-20160801-130000");
/// ```
pub fn hourly_file_name(hour: EventTime) -> String {
    let (y, mo, d, h, _, _) = civil(hour);
    format!("pageviews-{y:04}{mo:02}{d:02}-{h:02}0000")
}

/// Writes one file per hour into a directory, lines `project title views 0`
/// sorted by article. Each file is written to a temporary name and renamed,
/// so a reader never sees half an hour (a FIFO or device already at a
/// file's name is written directly). Updates (allowed lateness) rewrite
/// the hour's file with the new totals.
pub struct HourlyDumpSink {
    dir: PathBuf,
    hours: BTreeMap<EventTime, BTreeMap<Article, u64>>,
    keep: u64,
}

impl HourlyDumpSink {
    /// A sink into `dir` (created if missing). `keep` is how long after an
    /// hour's end updates may still arrive (the allowed lateness).
    pub fn create(dir: &Path, keep: u64) -> Result<Self> {
        if dir.exists() && !dir.is_dir() {
            return Err(Error::Config(format!(
                "hourly output {} is not a directory: it takes a directory, \
                 into which one dump file per hour is written",
                dir.display()
            )));
        }
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        remove_dead_temps(dir);
        Ok(HourlyDumpSink {
            dir: dir.to_path_buf(),
            hours: BTreeMap::new(),
            keep,
        })
    }

    fn write_hour(&self, hour: EventTime, totals: &BTreeMap<Article, u64>) -> Result<()> {
        let mut text = String::new();
        for (article, views) in totals {
            let _ = writeln!(text, "{article} {views} 0");
        }
        write_whole_file(&self.dir.join(hourly_file_name(hour)), text.as_bytes())
    }
}

/// Removes the temporary files of writers that are no longer running
/// (`.pageviews-*.tmp-PID-N`, PID not alive): a run killed before its first
/// complete checkpoint leaves them, and the next run then starts fresh,
/// without a restore to clear them.
fn remove_dead_temps(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some((_, tail)) = name
            .split_once(".tmp-")
            .filter(|_| name.starts_with(".pageviews-"))
        else {
            continue;
        };
        let pid = tail.split('-').next().unwrap_or_default();
        let alive = pid.parse::<u32>().is_ok_and(|pid| {
            pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists()
        });
        if !alive && Path::new("/proc/self").exists() {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

impl Sink<WindowResult<Article, u64>> for HourlyDumpSink {
    fn write(
        &mut self,
        time: EventTime,
        records: &[(EventTime, WindowResult<Article, u64>)],
    ) -> Result<()> {
        let mut touched = Vec::new();
        for (_, r) in records {
            let hour = r.start;
            self.hours
                .entry(hour)
                .or_default()
                .insert(r.key.clone(), r.value);
            if touched.last() != Some(&hour) {
                touched.push(hour);
            }
        }
        touched.sort_unstable();
        touched.dedup();
        for hour in touched {
            self.write_hour(hour, &self.hours[&hour])?;
        }
        // Hours that no late update can reach any more are forgotten.
        let keep = self.keep;
        self.hours.retain(|hour, _| hour + HOUR + keep > time);
        Ok(())
    }

    /// Each hour's file is rewritten whole, so a resumed run needs no
    /// commit point; it only clears the temporary files of killed runs.
    fn restore(&mut self, _point: &[u8]) -> Result<()> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Ok(());
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(".pageviews-") && name.contains(".tmp-") {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(())
    }
}
