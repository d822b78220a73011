//! Hourly per-article totals, written as Wikimedia dump files.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use keyflow_dataflow::sink::{Blobs, Sink};
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
///
/// An update carries only the articles it changed, so the sink keeps each
/// hour's totals until no update can reach it; with checkpoints, it keeps
/// them in its commit points too (see `hourly_commit`), so that an update
/// after a restart rewrites the whole hour, not just what it changed.
pub struct HourlyDumpSink {
    pub(super) dir: PathBuf,
    /// The totals of the hours that updates may still reach.
    pub(super) hours: BTreeMap<EventTime, BTreeMap<Article, u64>>,
    keep: u64,
    /// The totals written since the last commit, by hour: `None` until the
    /// first commit, so that a run without checkpoints keeps nothing twice.
    pub(super) changed: Option<BTreeMap<EventTime, BTreeMap<Article, u64>>>,
    /// The blobs of earlier commits that hold totals of hours still kept,
    /// oldest first, each with the hours it holds.
    pub(super) blobs: Vec<(String, Vec<EventTime>)>,
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
            changed: None,
            blobs: Vec::new(),
        })
    }

    /// Writes the hour's file from its `lines` totals, in article order.
    fn write_hour<'a>(
        &self,
        hour: EventTime,
        lines: usize,
        totals: impl IntoIterator<Item = (&'a Article, &'a u64)>,
    ) -> Result<()> {
        // About 32 bytes a line; pushed field by field, as `Display` costs
        // as much as the rest of the write.
        let mut text = String::with_capacity(lines * 32);
        for (article, views) in totals {
            text.push_str(article.project());
            text.push(' ');
            text.push_str(&article.title());
            let _ = writeln!(text, " {views} 0");
        }
        let path = self.dir.join(hourly_file_name(hour));
        // The run names the files of its directory: a link found at one
        // of the names is replaced, never written through (it could lead
        // to an input, which a run never modifies).
        if std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink()) {
            std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
        }
        write_whole_file(&path, text.as_bytes())
    }
}

/// Sets each row's total in `totals`, a later row of an article over an
/// earlier one. An hour's first rows, `sorted` and distinct as a sink gets
/// them, build its map at once: inserting them one by one compared each
/// name with a score of others, and was the most of the sink's time.
fn set_totals(totals: &mut BTreeMap<Article, u64>, rows: Vec<(Article, u64)>, sorted: bool) {
    if totals.is_empty() && sorted {
        *totals = BTreeMap::from_iter(rows);
    } else {
        totals.extend(rows);
    }
}

/// Whether each row's article comes after the one before.
fn sorted_and_distinct(rows: &[(Article, u64)]) -> bool {
    rows.windows(2).all(|pair| pair[0].0 < pair[1].0)
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
        // The records come sorted by article, so each hour's rows are too.
        let mut by_hour: BTreeMap<EventTime, Vec<(Article, u64)>> = BTreeMap::new();
        for (_, r) in records {
            by_hour
                .entry(r.start)
                .or_default()
                .push((r.key.clone(), r.value));
        }
        let keep = self.keep;
        let reachable = |hour: EventTime| hour + HOUR + keep > time;
        for (hour, rows) in by_hour {
            // Without allowed lateness an hour is written once and kept
            // by no one: its rows are its totals, and need no map.
            let sorted = sorted_and_distinct(&rows);
            if !reachable(hour) && !self.hours.contains_key(&hour) && sorted {
                self.write_hour(hour, rows.len(), rows.iter().map(|(a, v)| (a, v)))?;
                continue;
            }
            if let Some(changed) = self.changed.as_mut() {
                set_totals(changed.entry(hour).or_default(), rows.clone(), sorted);
            }
            set_totals(self.hours.entry(hour).or_default(), rows, sorted);
            let totals = &self.hours[&hour];
            self.write_hour(hour, totals.len(), totals)?;
        }
        // Hours that no late update can reach any more are forgotten.
        self.hours.retain(|hour, _| reachable(*hour));
        if let Some(changed) = self.changed.as_mut() {
            changed.retain(|hour, _| reachable(*hour));
        }
        Ok(())
    }

    fn commit(&mut self) -> Result<Vec<u8>> {
        Err(Error::Config(
            "the hourly dump sink commits through `commit_with`, with blobs".into(),
        ))
    }

    /// Each hour's file is written whole when it changes, so there is
    /// nothing to flush: the point keeps the totals of the hours that
    /// updates may still reach.
    fn commit_with(&mut self, blobs: &mut dyn Blobs) -> Result<Vec<u8>> {
        super::hourly_commit::commit_point(self, blobs)
    }

    /// Reads back the totals of the hours that updates may still reach,
    /// and clears the temporary files of killed runs. The files of hours
    /// written since the checkpoint stay: the resumed run writes them again,
    /// whole.
    fn restore_with(&mut self, point: &[u8], blobs: &mut dyn Blobs) -> Result<()> {
        if let Ok(entries) = std::fs::read_dir(&self.dir) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with(".pageviews-") && name.contains(".tmp-") {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        super::hourly_commit::restore(self, point, blobs)
    }
}

#[cfg(test)]
mod tests {
    use keyflow_dataflow::time::MINUTE;

    use super::*;

    /// Built at once or inserted one by one, the totals are those of
    /// inserting every row in order: a later row of an article wins.
    #[test]
    fn totals_are_those_of_inserting_every_row() {
        let row = |title: &str, views: u64| (Article::named("en", title), views);
        let cases = [
            vec![row("A", 1), row("B", 2), row("C", 3)],
            vec![row("A", 1), row("B", 2), row("B", 5), row("C", 3)],
            vec![row("C", 3), row("A", 1), row("B", 2), row("A", 4)],
            vec![],
        ];
        for before in [vec![], vec![row("B", 9), row("D", 7)]] {
            for rows in &cases {
                let mut totals: BTreeMap<Article, u64> = before.iter().cloned().collect();
                let mut inserted = totals.clone();
                inserted.extend(rows.iter().cloned());
                set_totals(&mut totals, rows.clone(), sorted_and_distinct(rows));
                assert_eq!(totals, inserted, "{before:?} then {rows:?}");
            }
        }
    }

    /// Without allowed lateness an hour is written straight from its
    /// records and kept by no one; records out of order write it alike.
    #[test]
    fn an_hour_no_update_can_reach_is_written_and_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let hour = 1_470_009_600_000;
        let result = |title: &str, value: u64| {
            let r = WindowResult {
                key: Article::named("en", title),
                start: hour,
                end: hour + HOUR,
                value,
                update: false,
            };
            (hour + HOUR - 1, r)
        };
        let sorted = [result("A", 3), result("B", 1), result("C", 2)];
        let shuffled = [result("C", 2), result("A", 3), result("B", 1)];
        for records in [&sorted, &shuffled] {
            let mut sink = HourlyDumpSink::create(dir.path(), 0).unwrap();
            sink.write(hour + HOUR, records).unwrap();
            assert!(sink.hours.is_empty());
            let text = std::fs::read_to_string(dir.path().join(hourly_file_name(hour))).unwrap();
            assert_eq!(text, "en A 3 0\nen B 1 0\nen C 2 0\n");
        }
    }

    /// A link at an hour's name is replaced by the hour's file; what it led
    /// to is left as it was.
    #[test]
    fn a_link_at_an_hour_s_name_is_replaced_not_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let hour = 1_470_009_600_000;
        let input = dir.path().join("input");
        std::fs::write(&input, "en A 1 0\n").unwrap();
        let out = dir.path().join("hourly");
        std::fs::create_dir(&out).unwrap();
        let name = out.join(hourly_file_name(hour));
        std::os::unix::fs::symlink(&input, &name).unwrap();
        let mut sink = HourlyDumpSink::create(&out, MINUTE).unwrap();
        let r = WindowResult {
            key: Article::named("en", "B"),
            start: hour,
            end: hour + HOUR,
            value: 7,
            update: false,
        };
        sink.write(hour + HOUR, &[(hour + HOUR - 1, r)]).unwrap();
        assert_eq!(std::fs::read_to_string(&input).unwrap(), "en A 1 0\n");
        assert!(!std::fs::symlink_metadata(&name)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(std::fs::read_to_string(&name).unwrap(), "en B 7 0\n");
    }
}
