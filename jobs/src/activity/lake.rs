//! Per-user features as hour-partitioned Parquet files, the data-lake sink.
//!
//! `DIR/date=YYYY-MM-DD/hour=HH/part-0.parquet` (Hive-style partitions, the
//! UTC hour of `window_start`) holds the rows of the windows that start in
//! that hour, sorted by `(window_start, user_id)`. A file is written once,
//! whole, when its hour is complete: to a hidden temporary name beside it,
//! then renamed, so that readers (DuckDB, pandas, Spark) never see part of
//! an hour. Under checkpoints the sink resumes exactly once (see
//! [`HourlyParquetSink::resume`]).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::TimestampMillisecondArray;
use arrow_array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use keyflow_dataflow::sink::{Blobs, Sink};
use keyflow_dataflow::time::{align_down, civil, EventTime, HOUR};
use keyflow_dataflow::window::WindowResult;
use keyflow_dataflow::{Error, Result};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use serde::{Deserialize, Serialize};

use super::features::UserFeatures;
use crate::output_file::write_whole_file;

/// The name of the one file of each hour.
pub const PART_FILE: &str = "part-0.parquet";

/// The directory of the hour starting at `hour` in `dir`:
/// `dir/date=YYYY-MM-DD/hour=HH`.
///
/// # Examples
/// ```
/// use std::path::Path;
/// use keyflow_jobs::activity::hour_dir;
/// let hour = 1_704_067_200_000 + 13 * 3_600_000; // 2024-01-01 13:00 UTC
/// assert_eq!(hour_dir(Path::new("lake"), hour), Path::new("lake/date=2024-01-01/hour=13"));
/// ```
pub fn hour_dir(dir: &Path, hour: EventTime) -> PathBuf {
    let (y, m, d, h, _, _) = civil(hour);
    dir.join(format!("date={y:04}-{m:02}-{d:02}"))
        .join(format!("hour={h:02}"))
}

/// The columns of the feature files: `window_start` and `window_end` as
/// UTC timestamps in milliseconds, `user_id` as text, the six counts as
/// 64-bit integers and the two mean click coordinates as nullable doubles.
pub fn feature_schema() -> SchemaRef {
    let time = DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()));
    let count = |name| Field::new(name, DataType::Int64, false);
    Arc::new(Schema::new(vec![
        Field::new("window_start", time.clone(), false),
        Field::new("window_end", time, false),
        Field::new("user_id", DataType::Utf8, false),
        count("views"),
        count("clicks"),
        count("scrolls"),
        count("add_to_cart"),
        count("purchases"),
        count("searches"),
        Field::new("mean_click_x", DataType::Float64, true),
        Field::new("mean_click_y", DataType::Float64, true),
    ]))
}

/// One row of a feature file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureRow {
    /// First millisecond of the window.
    pub window_start: EventTime,
    /// First millisecond after the window.
    pub window_end: EventTime,
    /// The user.
    pub user_id: Arc<str>,
    /// The user's activity in the window.
    pub features: UserFeatures,
}

fn to_i64(what: &str, v: u64) -> Result<i64> {
    i64::try_from(v)
        .map_err(|_| Error::External(format!("{what} {v} does not fit a Parquet INT64")))
}

/// Encodes `rows` as one Parquet file (Snappy-compressed) with
/// [`feature_schema`], in the order given.
pub fn encode_features(rows: &[FeatureRow]) -> Result<Vec<u8>> {
    let times = |f: fn(&FeatureRow) -> EventTime, what| -> Result<ArrayRef> {
        let values = rows
            .iter()
            .map(|r| to_i64(what, f(r)))
            .collect::<Result<Vec<_>>>()?;
        Ok(Arc::new(
            TimestampMillisecondArray::from(values).with_timezone("UTC"),
        ))
    };
    let count = |f: fn(&UserFeatures) -> u64| -> Result<ArrayRef> {
        let values = rows
            .iter()
            .map(|r| to_i64("count", f(&r.features)))
            .collect::<Result<Vec<_>>>()?;
        Ok(Arc::new(Int64Array::from(values)))
    };
    let mean = |f: fn(&UserFeatures) -> Option<f64>| -> ArrayRef {
        Arc::new(Float64Array::from(
            rows.iter().map(|r| f(&r.features)).collect::<Vec<_>>(),
        ))
    };
    let users: ArrayRef = Arc::new(StringArray::from(
        rows.iter().map(|r| &*r.user_id).collect::<Vec<_>>(),
    ));
    let columns = vec![
        times(|r| r.window_start, "window_start")?,
        times(|r| r.window_end, "window_end")?,
        users,
        count(|f| f.views)?,
        count(|f| f.clicks)?,
        count(|f| f.scrolls)?,
        count(|f| f.add_to_cart)?,
        count(|f| f.purchases)?,
        count(|f| f.searches)?,
        mean(|f| f.mean_click_x.map(|m| m.0)),
        mean(|f| f.mean_click_y.map(|m| m.0)),
    ];
    let parquet_error = |e: &dyn std::fmt::Display| Error::External(format!("parquet: {e}"));
    let batch = RecordBatch::try_new(feature_schema(), columns).map_err(|e| parquet_error(&e))?;
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .build();
    let mut bytes = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut bytes, feature_schema(), Some(props))
        .map_err(|e| parquet_error(&e))?;
    writer.write(&batch).map_err(|e| parquet_error(&e))?;
    writer.close().map_err(|e| parquet_error(&e))?;
    Ok(bytes)
}

/// Writes per-user window features into hour-partitioned Parquet files
/// under a directory (see the module docs), from window results at their
/// window's end.
///
/// An hour is complete once results at or after `keep` past the end of
/// its last window have arrived (the allowed lateness, within which
/// updates replace earlier rows), or the stream ends; its file is then
/// written, once. The directory must be new or empty, so that no file of
/// an earlier run mixes with this run's.
///
/// # Examples
/// ```
/// use keyflow_dataflow::sink::{Blobs, Sink};
/// use keyflow_dataflow::window::WindowResult;
/// use keyflow_jobs::activity::{hour_dir, HourlyParquetSink, UserFeatures, PART_FILE};
///
/// let dir = std::env::temp_dir().join(format!("keyflow-lake-doc-{}", std::process::id()));
/// let mut sink = HourlyParquetSink::create(&dir, 60_000, 0)?;
/// let row = WindowResult { key: "u1".into(), start: 0, end: 60_000, value: UserFeatures::default(), update: false };
/// sink.write(60_000, &[(60_000, row)])?;
/// assert!(!hour_dir(&dir, 0).exists(), "the hour is not complete yet");
/// sink.close()?;
/// assert!(hour_dir(&dir, 0).join(PART_FILE).exists());
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct HourlyParquetSink {
    pub(super) dir: PathBuf,
    window: u64,
    keep: u64,
    /// Rows not yet written, by hour, then `(window_start, user_id)`.
    pub(super) hours: BTreeMap<EventTime, BTreeMap<(EventTime, Arc<str>), FeatureRow>>,
    /// The hours whose files were written, for the commit point: a restore
    /// removes the files of every other hour.
    pub(super) written: BTreeSet<EventTime>,
    /// Once the sink has committed: the rows that arrived since the last
    /// commit, by hour, encoded for the next commit's blob.
    pub(super) encoded: Option<BTreeMap<EventTime, Vec<u8>>>,
    /// The checkpoint blobs of earlier commits that hold rows of hours
    /// still open, oldest first, with the hours each holds rows of.
    pub(super) blobs: Vec<(String, BTreeSet<EventTime>)>,
}

/// Fails unless `dir` is missing or an empty directory, naming what is in
/// the way.
pub fn check_lake_dir(dir: &Path) -> Result<()> {
    match std::fs::read_dir(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(_) if dir.exists() && !dir.is_dir() => Err(Error::Config(format!(
            "Parquet output {} is not a directory: it takes a directory, into which one \
             Parquet file per hour is written",
            dir.display()
        ))),
        Err(e) => Err(Error::io(dir, e)),
        Ok(mut entries) => match entries.next() {
            None => Ok(()),
            Some(entry) => {
                let found = entry.map_err(|e| Error::io(dir, e))?.path();
                Err(Error::Config(format!(
                    "Parquet output {} is not empty (it holds {}): a run writes its files \
                     into a new or empty directory, so that no earlier run's rows mix with \
                     its own; remove it or choose another",
                    dir.display(),
                    found.display()
                )))
            }
        },
    }
}

impl HourlyParquetSink {
    /// A sink into `dir`, which must be missing or empty (it is created),
    /// for windows of `window` ms whose results may be updated until `keep`
    /// ms after their end.
    pub fn create(dir: &Path, window: u64, keep: u64) -> Result<Self> {
        check_lake_dir(dir)?;
        Self::resume(dir, window, keep)
    }

    /// A sink into `dir` that a run resuming from a checkpoint continues:
    /// `dir` may hold the files of an earlier run of the same job, which
    /// [`Sink::restore`] then cuts back to the checkpoint's commit point.
    /// The commit point holds the hours written and the rows of the hours
    /// still open, so the resumed run neither writes an hour twice nor
    /// loses a row received before the checkpoint.
    pub fn resume(dir: &Path, window: u64, keep: u64) -> Result<Self> {
        if dir.exists() && !dir.is_dir() {
            check_lake_dir(dir)?;
        }
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        Ok(HourlyParquetSink {
            dir: dir.to_path_buf(),
            window: window.max(1),
            keep,
            hours: BTreeMap::new(),
            written: BTreeSet::new(),
            encoded: None,
            blobs: Vec::new(),
        })
    }

    /// The time from which no result of hour `hour` can arrive: the end of
    /// the last window starting in the hour, plus the allowed lateness.
    fn complete_at(&self, hour: EventTime) -> EventTime {
        align_down(hour + HOUR - 1, self.window, 0) + self.window + self.keep
    }

    /// Writes and forgets every hour complete at `time` (all of them when
    /// `time` is `None`).
    fn write_complete(&mut self, time: Option<EventTime>) -> Result<()> {
        while let Some(&hour) = self.hours.keys().next() {
            if time.is_some_and(|t| t < self.complete_at(hour)) {
                break;
            }
            let rows: Vec<FeatureRow> = self
                .hours
                .remove(&hour)
                .unwrap_or_default()
                .into_values()
                .collect();
            let dir = hour_dir(&self.dir, hour);
            std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
            write_whole_file(&dir.join(PART_FILE), &encode_features(&rows)?)?;
            self.written.insert(hour);
            if let Some(encoded) = self.encoded.as_mut() {
                encoded.remove(&hour);
            }
        }
        Ok(())
    }
}

impl Sink<WindowResult<Arc<str>, UserFeatures>> for HourlyParquetSink {
    fn write(
        &mut self,
        time: EventTime,
        records: &[(EventTime, WindowResult<Arc<str>, UserFeatures>)],
    ) -> Result<()> {
        for (_, r) in records {
            let hour = align_down(r.start, HOUR, 0);
            let row = FeatureRow {
                window_start: r.start,
                window_end: r.end,
                user_id: Arc::clone(&r.key),
                features: r.value.clone(),
            };
            if let Some(encoded) = self.encoded.as_mut() {
                super::lake_commit::append(encoded.entry(hour).or_default(), &row)?;
            }
            // An update (allowed lateness) replaces the row it updates.
            self.hours
                .entry(hour)
                .or_default()
                .insert((r.start, Arc::clone(&r.key)), row);
        }
        self.write_complete(Some(time))
    }

    fn close(&mut self) -> Result<()> {
        self.write_complete(None)
    }

    fn commit(&mut self) -> Result<Vec<u8>> {
        Err(Error::Config(
            "the Parquet sink commits through `commit_with`, with blobs".into(),
        ))
    }

    fn commit_with(&mut self, blobs: &mut dyn Blobs) -> Result<Vec<u8>> {
        // Each file is fsynced and renamed when written: nothing to flush.
        super::lake_commit::commit_point(self, blobs)
    }

    fn restore_with(&mut self, point: &[u8], blobs: &mut dyn Blobs) -> Result<()> {
        super::lake_commit::restore(self, point, blobs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keyflow_dataflow::time::MINUTE;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    fn result(
        user: &str,
        start: EventTime,
        w: u64,
        views: u64,
    ) -> (EventTime, WindowResult<Arc<str>, UserFeatures>) {
        let value = UserFeatures {
            views,
            ..UserFeatures::default()
        };
        let r = WindowResult {
            key: Arc::from(user),
            start,
            end: start + w,
            value,
            update: false,
        };
        (start + w, r)
    }

    /// `(window_start, user, views)` of every row of the hour's file.
    fn rows(dir: &Path, hour: EventTime) -> Vec<(i64, String, i64)> {
        let file = std::fs::File::open(hour_dir(dir, hour).join(PART_FILE)).unwrap();
        let mut out = Vec::new();
        for batch in ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap()
        {
            let batch = batch.unwrap();
            let col = |i: usize| batch.column(i).clone();
            let starts = col(0);
            let starts = starts
                .as_any()
                .downcast_ref::<TimestampMillisecondArray>()
                .unwrap();
            let users = col(2);
            let users = users.as_any().downcast_ref::<StringArray>().unwrap();
            let views = col(3);
            let views = views.as_any().downcast_ref::<Int64Array>().unwrap();
            for i in 0..batch.num_rows() {
                out.push((starts.value(i), users.value(i).to_string(), views.value(i)));
            }
        }
        out
    }

    #[test]
    fn an_hour_is_written_once_its_last_window_has_ended() {
        let dir = tempfile_dir("straddle");
        let w = 7 * MINUTE;
        let mut sink = HourlyParquetSink::create(&dir, w, 0).unwrap();
        // Windows start at 00:49 and 00:56; the second ends at 01:03.
        let (t1, r1) = result("b", 49 * MINUTE, w, 1);
        let (t2, r2) = result("a", 56 * MINUTE, w, 2);
        let (t3, r3) = result("a", 63 * MINUTE, w, 3);
        sink.write(t1, &[(t1, r1)]).unwrap();
        assert!(!hour_dir(&dir, 0).exists());
        sink.write(t2, &[(t2, r2)]).unwrap();
        assert_eq!(
            rows(&dir, 0),
            vec![
                (49 * MINUTE as i64, "b".into(), 1),
                (56 * MINUTE as i64, "a".into(), 2)
            ]
        );
        sink.write(t3, &[(t3, r3)]).unwrap();
        assert!(!hour_dir(&dir, HOUR).exists());
        sink.close().unwrap();
        assert_eq!(rows(&dir, HOUR), vec![(63 * MINUTE as i64, "a".into(), 3)]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn updates_replace_rows_until_the_lateness_has_passed() {
        let dir = tempfile_dir("updates");
        let w = 30 * MINUTE;
        let mut sink = HourlyParquetSink::create(&dir, w, 10 * MINUTE).unwrap();
        let (t, first) = result("u", 30 * MINUTE, w, 1);
        sink.write(t, &[(t, first)]).unwrap();
        let (_, mut again) = result("u", 30 * MINUTE, w, 5);
        again.update = true;
        sink.write(t + 5 * MINUTE, &[(t + 5 * MINUTE, again)])
            .unwrap();
        assert!(!hour_dir(&dir, 0).exists(), "updates may still come");
        let (t2, later) = result("v", HOUR + 10 * MINUTE, 20 * MINUTE, 1);
        sink.write(t2, &[(t2, later)]).unwrap();
        assert_eq!(rows(&dir, 0), vec![(30 * MINUTE as i64, "u".into(), 5)]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn refuses_a_directory_that_holds_anything() {
        let dir = tempfile_dir("full");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("old.parquet"), b"x").unwrap();
        let err = HourlyParquetSink::create(&dir, MINUTE, 0)
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("not empty") && err.contains("old.parquet"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn tempfile_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("keyflow-lake-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }
}
