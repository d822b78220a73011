//! The commit point of [`HourlyParquetSink`], and its restore.
//!
//! A file is written only once its hour is complete, so between two
//! checkpoints the sink holds rows of open hours that no file has yet; the
//! windows that produced them are gone from the upstream state by then.
//! The commit point therefore carries those rows along with the hours
//! already written. A restore takes the rows back and cuts the directory
//! back to the written hours: the files of later hours (written after the
//! checkpoint by the run that stopped) and the temporary files of
//! interrupted writes are removed, and the resumed run writes those hours
//! again, whole and once.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use keyflow_dataflow::checkpoint::{decode, encode};
use keyflow_dataflow::time::{align_down, EventTime, HOUR};
use keyflow_dataflow::{Error, Result};
use serde::{Deserialize, Serialize};

use super::lake::{hour_dir, FeatureRow, HourlyParquetSink, PART_FILE};

/// What a checkpoint stores for the sink.
#[derive(Serialize, Deserialize)]
struct CommitPoint {
    /// Hours whose files were written, in order.
    written: Vec<EventTime>,
    /// The rows of hours not yet written, in the sink's order.
    open: Vec<FeatureRow>,
}

pub(super) fn commit_point(sink: &HourlyParquetSink) -> Result<Vec<u8>> {
    let point = CommitPoint {
        written: sink.written.iter().copied().collect(),
        open: sink
            .hours
            .values()
            .flat_map(|rows| rows.values().cloned())
            .collect(),
    };
    encode(&point)
}

pub(super) fn restore(sink: &mut HourlyParquetSink, point: &[u8]) -> Result<()> {
    let point: CommitPoint = decode(point, "Parquet sink commit point")?;
    sink.written = point.written.into_iter().collect();
    sink.hours.clear();
    for row in point.open {
        let hour = align_down(row.window_start, HOUR, 0);
        let key = (row.window_start, row.user_id.clone());
        sink.hours.entry(hour).or_default().insert(key, row);
    }
    let keep: BTreeSet<PathBuf> = sink
        .written
        .iter()
        .map(|&h| hour_dir(&sink.dir, h).join(PART_FILE))
        .collect();
    if let Some(missing) = keep.iter().find(|f| !f.is_file()) {
        return Err(Error::Checkpoint {
            path: missing.clone(),
            reason: "the checkpoint counts this hour as written, but its file is missing".into(),
        });
    }
    cut_back(&sink.dir, &keep)
}

/// Removes from the hour directories under `dir` every part file not in
/// `keep` and every temporary file of a part, then the directories left
/// empty. Anything else is left alone.
fn cut_back(dir: &Path, keep: &BTreeSet<PathBuf>) -> Result<()> {
    let temp_prefix = format!(".{PART_FILE}.tmp-");
    for date in subdirs(dir, "date=")? {
        for hour in subdirs(&date, "hour=")? {
            for entry in read_dir(&hour)? {
                let name = entry.file_name().to_string_lossy().into_owned();
                let path = hour.join(&name);
                let stale =
                    (name == PART_FILE && !keep.contains(&path)) || name.starts_with(&temp_prefix);
                if stale {
                    std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
                }
            }
            // Fails harmlessly when something is left in it.
            let _ = std::fs::remove_dir(&hour);
        }
        let _ = std::fs::remove_dir(&date);
    }
    Ok(())
}

fn read_dir(dir: &Path) -> Result<Vec<std::fs::DirEntry>> {
    std::fs::read_dir(dir)
        .and_then(|entries| entries.collect())
        .map_err(|e| Error::io(dir, e))
}

/// The directories in `dir` whose names start with `prefix`.
fn subdirs(dir: &Path, prefix: &str) -> Result<Vec<PathBuf>> {
    Ok(read_dir(dir)?
        .into_iter()
        .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use keyflow_dataflow::sink::Sink;
    use keyflow_dataflow::time::MINUTE;
    use keyflow_dataflow::window::WindowResult;

    use super::*;
    use crate::activity::UserFeatures;

    fn result(user: &str, start: EventTime) -> (EventTime, WindowResult<Arc<str>, UserFeatures>) {
        let r = WindowResult {
            key: Arc::from(user),
            start,
            end: start + MINUTE,
            value: UserFeatures {
                views: start / MINUTE,
                ..UserFeatures::default()
            },
            update: false,
        };
        (start + MINUTE, r)
    }

    /// Feeds one row per minute from `from` to `to` (exclusive), one time
    /// each, as the ordered sink would.
    fn feed(sink: &mut HourlyParquetSink, from: u64, to: u64) {
        for m in from..to {
            let (t, r) = result(if m % 2 == 0 { "a" } else { "b" }, m * MINUTE);
            sink.write(t, &[(t, r)]).unwrap();
        }
    }

    /// Every file under `dir`, with its bytes, in path order.
    fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
        let mut out = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let path = e.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else {
                    let bytes = std::fs::read(&path).unwrap();
                    out.push((path.strip_prefix(dir).unwrap().to_path_buf(), bytes));
                }
            }
        }
        out.sort();
        out
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("keyflow-lake-commit-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn a_restore_rewrites_what_followed_the_commit_point_identically() {
        let (want_dir, dir) = (temp_dir("want"), temp_dir("got"));
        let mut want = HourlyParquetSink::create(&want_dir, MINUTE, 0).unwrap();
        feed(&mut want, 0, 200);
        want.close().unwrap();

        // Committed mid-hour 1, then ran into hour 3 and stopped, leaving a
        // temporary file of an interrupted write.
        let mut first = HourlyParquetSink::create(&dir, MINUTE, 0).unwrap();
        feed(&mut first, 0, 90);
        let point = first.commit().unwrap();
        feed(&mut first, 90, 190);
        assert!(hour_dir(&dir, 2 * HOUR).join(PART_FILE).exists());
        let interrupted = hour_dir(&dir, 3 * HOUR);
        std::fs::create_dir_all(&interrupted).unwrap();
        std::fs::write(interrupted.join(".part-0.parquet.tmp-1-0"), b"half").unwrap();
        drop(first);

        let mut resumed = HourlyParquetSink::resume(&dir, MINUTE, 0).unwrap();
        resumed.restore(&point).unwrap();
        assert!(hour_dir(&dir, 0).join(PART_FILE).exists(), "committed");
        assert!(!hour_dir(&dir, HOUR).exists(), "written after the commit");
        assert!(!interrupted.exists());
        feed(&mut resumed, 90, 200);
        resumed.close().unwrap();
        assert_eq!(files(&dir), files(&want_dir));
        std::fs::remove_dir_all(&dir).unwrap();
        std::fs::remove_dir_all(&want_dir).unwrap();
    }

    #[test]
    fn a_missing_committed_file_is_an_error() {
        let dir = temp_dir("missing");
        let mut sink = HourlyParquetSink::create(&dir, MINUTE, 0).unwrap();
        feed(&mut sink, 0, 70);
        let point = sink.commit().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let mut resumed = HourlyParquetSink::resume(&dir, MINUTE, 0).unwrap();
        let err = resumed.restore(&point).unwrap_err().to_string();
        assert!(err.contains("missing") && err.contains("hour=00"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
