//! The commit point of [`HourlyParquetSink`], and its restore.
//!
//! A file is written only once its hour is complete, so between two
//! checkpoints the sink holds rows of open hours that no file has yet; the
//! windows that produced them are gone from the upstream state by then.
//! The checkpoint therefore keeps those rows: each commit saves the rows
//! that arrived since the last one as a checkpoint blob (so an epoch writes
//! only what is new, not an hour of rows), and its commit point names the
//! blobs that still hold rows of open hours, with the hours already
//! written. A restore reads the rows back and cuts the directory back to
//! the written hours: the files of later hours (written after the
//! checkpoint by the run that stopped) and the temporary files of
//! interrupted writes are removed, and the resumed run writes those hours
//! again, whole and once.
//!
//! A blob holds, integers little-endian, per hour: the hour and the length
//! of its rows (`u64`s), then the rows, each a `u32` length and a row in
//! the checkpoint encoding, in arrival order (a later row of a window and
//! user replaces an earlier one, as in the sink).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use keyflow_dataflow::checkpoint::{decode, encode};
use keyflow_dataflow::sink::Blobs;
use keyflow_dataflow::time::{align_down, EventTime, HOUR};
use keyflow_dataflow::{Error, Result};

use super::lake::{hour_dir, FeatureRow, HourlyParquetSink, PART_FILE};

const WHAT: &str = "Parquet sink commit point";

/// The commit point: the written hours, and the blobs with open rows,
/// oldest first, each with the hours it holds rows of.
type Point = (Vec<EventTime>, Vec<(String, Vec<EventTime>)>);

/// Appends `row` to the encoded rows of its hour.
pub(super) fn append(rows: &mut Vec<u8>, row: &FeatureRow) -> Result<()> {
    let bytes = encode(row)?;
    let len = u32::try_from(bytes.len())
        .map_err(|_| Error::External(format!("a feature row of {} bytes", bytes.len())))?;
    rows.extend_from_slice(&len.to_le_bytes());
    rows.extend_from_slice(&bytes);
    Ok(())
}

pub(super) fn commit_point(sink: &mut HourlyParquetSink, blobs: &mut dyn Blobs) -> Result<Vec<u8>> {
    let new = match sink.encoded.take() {
        Some(new) => new,
        None => {
            // The first commit: rows are encoded as they arrive from now on.
            let mut all: BTreeMap<EventTime, Vec<u8>> = BTreeMap::new();
            for (&hour, rows) in &sink.hours {
                let bytes = all.entry(hour).or_default();
                for row in rows.values() {
                    append(bytes, row)?;
                }
            }
            all
        }
    };
    sink.encoded = Some(BTreeMap::new());
    let open = &sink.hours;
    sink.blobs
        .retain(|(_, hours)| hours.iter().any(|h| open.contains_key(h)));
    for (name, _) in &sink.blobs {
        blobs.keep(name);
    }
    let new: BTreeMap<EventTime, Vec<u8>> = new
        .into_iter()
        .filter(|(hour, rows)| !rows.is_empty() && open.contains_key(hour))
        .collect();
    if !new.is_empty() {
        let mut bytes = Vec::new();
        for (hour, rows) in &new {
            bytes.extend_from_slice(&hour.to_le_bytes());
            bytes.extend_from_slice(&(rows.len() as u64).to_le_bytes());
            bytes.extend_from_slice(rows);
        }
        let name = blobs.save(bytes)?;
        sink.blobs.push((name, new.into_keys().collect()));
    }
    let point: Point = (
        sink.written.iter().copied().collect(),
        sink.blobs
            .iter()
            .map(|(name, hours)| (name.clone(), hours.iter().copied().collect()))
            .collect(),
    );
    encode(&point)
}

/// Reads the commit point's parts in order.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn bytes(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.0.len() < n {
            return Err(Error::Checkpoint {
                path: PathBuf::from(WHAT),
                reason: "it ends early".into(),
            });
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u64(&mut self) -> Result<u64> {
        let b = self.bytes(8)?;
        Ok(u64::from_le_bytes(b.try_into().unwrap_or_default()))
    }

    fn u32(&mut self) -> Result<usize> {
        let b = self.bytes(4)?;
        Ok(u32::from_le_bytes(b.try_into().unwrap_or_default()) as usize)
    }
}

pub(super) fn restore(
    sink: &mut HourlyParquetSink,
    point: &[u8],
    blobs: &mut dyn Blobs,
) -> Result<()> {
    let (written, saved): Point = decode(point, WHAT)?;
    sink.written = written.into_iter().collect();
    sink.hours.clear();
    sink.blobs.clear();
    for (name, hours) in saved {
        let bytes = blobs.read(&name)?;
        let mut r = Reader(&bytes);
        while !r.0.is_empty() {
            let hour = r.u64()?;
            let len = usize::try_from(r.u64()?).unwrap_or(usize::MAX);
            let mut rows = Reader(r.bytes(len)?);
            while !rows.0.is_empty() {
                let n = rows.u32()?;
                let row: FeatureRow = decode(rows.bytes(n)?, WHAT)?;
                if align_down(row.window_start, HOUR, 0) != hour {
                    return Err(Error::Checkpoint {
                        path: PathBuf::from(&name),
                        reason: format!(
                            "a row of window {} is filed under another hour",
                            row.window_start
                        ),
                    });
                }
                if sink.written.contains(&hour) {
                    continue;
                }
                let key = (row.window_start, row.user_id.clone());
                sink.hours.entry(hour).or_default().insert(key, row);
            }
        }
        sink.blobs.push((name, hours.into_iter().collect()));
    }
    sink.encoded = Some(BTreeMap::new());
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
    if let Some(damaged) = keep.iter().find(|f| !framed_as_parquet(f)) {
        return Err(Error::Checkpoint {
            path: damaged.clone(),
            reason: "the checkpoint counts this hour as written, but its file is damaged (it \
                     does not start and end as a Parquet file); start over with --fresh and an \
                     empty --parquet-out"
                .into(),
        });
    }
    cut_back(&sink.dir, &keep)
}

/// Whether `path` starts and ends with Parquet's magic bytes: a written
/// file cut short, or overwritten by something else since, does not.
fn framed_as_parquet(path: &Path) -> bool {
    use std::io::{Read, Seek, SeekFrom};
    const MAGIC: &[u8; 4] = b"PAR1";
    let check = || -> std::io::Result<bool> {
        let mut file = std::fs::File::open(path)?;
        if file.metadata()?.len() < 12 {
            return Ok(false);
        }
        let (mut head, mut tail) = ([0u8; 4], [0u8; 4]);
        file.read_exact(&mut head)?;
        file.seek(SeekFrom::End(-4))?;
        file.read_exact(&mut tail)?;
        Ok(&head == MAGIC && &tail == MAGIC)
    };
    check().unwrap_or(false)
}

/// Removes every part file under `dir` that a [`HourlyParquetSink`] wrote,
/// the temporary files of its interrupted writes and the directories left
/// empty, for a run that starts over the files of an earlier attempt of
/// the same job. Anything else stays.
pub fn clear_lake(dir: &Path) -> Result<()> {
    if !dir.is_dir() {
        return Ok(());
    }
    cut_back(dir, &BTreeSet::new())
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
                if !stale {
                    continue;
                }
                // Gone already is fine: every process of a cluster clears
                // a directory it starts over in.
                match std::fs::remove_file(&path) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        return Err(Error::io(&path, e));
                    }
                    _ => {}
                }
            }
            // Fails harmlessly when something is left in it.
            let _ = std::fs::remove_dir(&hour);
        }
        let _ = std::fs::remove_dir(&date);
    }
    Ok(())
}

/// The entries of `dir`; none when another process removed it meanwhile.
fn read_dir(dir: &Path) -> Result<Vec<std::fs::DirEntry>> {
    match std::fs::read_dir(dir).and_then(|entries| entries.collect()) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        found => found.map_err(|e| Error::io(dir, e)),
    }
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
    use keyflow_dataflow::testing::MemoryBlobs;

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

        // Committed in hour 0 and mid-hour 1 (rows encoded as they came in
        // between), then ran into hour 3 and stopped, leaving a temporary
        // file of an interrupted write.
        let mut blobs = MemoryBlobs::default();
        let mut first = HourlyParquetSink::create(&dir, MINUTE, 0).unwrap();
        feed(&mut first, 0, 30);
        first.commit_with(&mut blobs).unwrap();
        feed(&mut first, 30, 90);
        let point = first.commit_with(&mut blobs).unwrap();
        feed(&mut first, 90, 190);
        assert!(hour_dir(&dir, 2 * HOUR).join(PART_FILE).exists());
        let interrupted = hour_dir(&dir, 3 * HOUR);
        std::fs::create_dir_all(&interrupted).unwrap();
        std::fs::write(interrupted.join(".part-0.parquet.tmp-1-0"), b"half").unwrap();
        drop(first);

        let mut resumed = HourlyParquetSink::resume(&dir, MINUTE, 0).unwrap();
        resumed.restore_with(&point, &mut blobs).unwrap();
        assert!(hour_dir(&dir, 0).join(PART_FILE).exists(), "committed");
        assert!(!hour_dir(&dir, HOUR).exists(), "written after the commit");
        assert!(!interrupted.exists());
        feed(&mut resumed, 90, 130);
        // A second restore, from a commit point of the resumed run.
        let point = resumed.commit_with(&mut blobs).unwrap();
        drop(resumed);
        let mut resumed = HourlyParquetSink::resume(&dir, MINUTE, 0).unwrap();
        resumed.restore_with(&point, &mut blobs).unwrap();
        feed(&mut resumed, 130, 200);
        resumed.close().unwrap();
        assert_eq!(files(&dir), files(&want_dir));
        std::fs::remove_dir_all(&dir).unwrap();
        std::fs::remove_dir_all(&want_dir).unwrap();
    }

    #[test]
    fn clearing_removes_only_what_the_sink_writes() {
        let dir = temp_dir("clear");
        let mut sink = HourlyParquetSink::create(&dir, MINUTE, 0).unwrap();
        feed(&mut sink, 0, 130);
        sink.close().unwrap();
        let hour = hour_dir(&dir, HOUR);
        std::fs::write(hour.join(".part-0.parquet.tmp-1-0"), b"half").unwrap();
        std::fs::write(hour.join("notes.txt"), b"mine").unwrap();
        clear_lake(&dir).unwrap();
        assert_eq!(
            files(&dir),
            [(
                PathBuf::from("date=1970-01-01/hour=01/notes.txt"),
                b"mine".to_vec()
            )]
        );
        clear_lake(&dir.join("missing")).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_missing_committed_file_is_an_error() {
        let dir = temp_dir("missing");
        let mut blobs = MemoryBlobs::default();
        let mut sink = HourlyParquetSink::create(&dir, MINUTE, 0).unwrap();
        feed(&mut sink, 0, 70);
        let point = sink.commit_with(&mut blobs).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let mut resumed = HourlyParquetSink::resume(&dir, MINUTE, 0).unwrap();
        let err = resumed
            .restore_with(&point, &mut blobs)
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing") && err.contains("hour=00"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_committed_file_cut_short_is_an_error() {
        let dir = temp_dir("cut");
        let mut blobs = MemoryBlobs::default();
        let mut sink = HourlyParquetSink::create(&dir, MINUTE, 0).unwrap();
        feed(&mut sink, 0, 70);
        let point = sink.commit_with(&mut blobs).unwrap();
        drop(sink);
        let file = hour_dir(&dir, 0).join(PART_FILE);
        let len = std::fs::metadata(&file).unwrap().len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&file)
            .unwrap()
            .set_len(len - 1)
            .unwrap();
        let mut resumed = HourlyParquetSink::resume(&dir, MINUTE, 0).unwrap();
        let err = resumed
            .restore_with(&point, &mut blobs)
            .unwrap_err()
            .to_string();
        assert!(err.contains("damaged") && err.contains("hour=00"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
