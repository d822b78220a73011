//! CSV files, gzip or plain, one partition per file or per split of a
//! large plain file: typed rows through serde, event time from one column.

use std::cell::OnceCell;
use std::io::Read;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use csv::{ByteRecord, ErrorKind};
use serde::de::DeserializeOwned;

use super::ahead::{AheadPartition, ReadAheadWhen};
use super::csv_partition::CsvPartition;
use super::csv_split::plan_csv_splits;
use super::jsonl::{open_bytes, split_of};
use super::long_line::RowBound;
use super::split::{split_bytes, FileSplit};
use super::{shorten, Partition, Source};
use crate::error::{Error, Result};
use crate::time::EventTime;

/// The CSV reader's buffer, in bytes.
const BUFFER: usize = 1 << 16;

/// A CSV reader over a file's (decompressed) bytes, its rows bounded.
pub(super) type Reader = csv::Reader<RowBound>;

/// Where a row's event time is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum TimeColumn {
    /// The column with this name in the header row.
    Name(String),
    /// The column at this index, counting from 0.
    Index(usize),
}

/// How the files are read; shared by a source and its partitions.
#[derive(Debug, Clone)]
pub(super) struct Format {
    time: TimeColumn,
    delimiter: u8,
}

impl Format {
    pub(super) fn has_headers(&self) -> bool {
        matches!(self.time, TimeColumn::Name(_))
    }

    /// A reader of `input`. Rows of another length than the first are
    /// found by the partition, which knows the first row of a file whose
    /// split it reads from the middle.
    /// `base` is the file offset of `input`'s first byte.
    pub(super) fn reader(&self, input: Box<dyn Read + Send>, base: u64, headers: bool) -> Reader {
        csv::ReaderBuilder::new()
            .has_headers(headers)
            .delimiter(self.delimiter)
            .flexible(true)
            .buffer_capacity(BUFFER)
            .from_reader(RowBound::new(input, base))
    }

    /// Opens `path` (decompressing it when it starts with the gzip magic
    /// bytes `1f 8b`) and reads its first row, the header or the first
    /// record: `None` for a file with no rows at all. A time column that
    /// the first row does not have is an [`Error::Config`] naming it and
    /// the file.
    fn first_row(&self, path: &Path) -> Result<Option<FirstRow>> {
        let mut reader = self.reader(open_bytes(path)?, 0, self.has_headers());
        let first = reader
            .byte_headers()
            .map_err(|e| csv_error(path, e))?
            .clone();
        if first.is_empty() {
            return Ok(None);
        }
        let time_index =
            match &self.time {
                TimeColumn::Name(name) => first
                    .iter()
                    .position(|h| h == name.as_bytes())
                    .ok_or_else(|| {
                        let columns: Vec<_> = first.iter().map(String::from_utf8_lossy).collect();
                        Error::Config(format!(
                            "{}: the header has no time column `{name}` (columns: {})",
                            path.display(),
                            shorten(&columns.join(", "), 200)
                        ))
                    })?,
                TimeColumn::Index(index) => {
                    if *index >= first.len() {
                        return Err(Error::Config(format!(
                            "{}: time column index {index} is past the {} columns of the first row",
                            path.display(),
                            first.len()
                        )));
                    }
                    *index
                }
            };
        Ok(Some(FirstRow {
            time_index,
            fields: first.len(),
            headers: self.has_headers().then_some(first),
        }))
    }
}

/// What every split of a file needs from its first row.
#[derive(Debug, Clone)]
pub(super) struct FirstRow {
    /// The time column's index.
    pub(super) time_index: usize,
    /// How many fields every row has.
    pub(super) fields: usize,
    /// The header, for deserializing by name.
    pub(super) headers: Option<ByteRecord>,
}

/// A reader error that ends the partition: I/O (including damaged gzip
/// data) as [`Error::Io`], anything else as [`Error::External`].
pub(super) fn csv_error(path: &Path, err: csv::Error) -> Error {
    let text = err.to_string();
    match err.into_kind() {
        ErrorKind::Io(e) => Error::io(path, e),
        _ => Error::External(format!("{}: {text}", path.display())),
    }
}

/// Parses an event time: integer milliseconds since the Unix epoch, or a UTC
/// timestamp as [`humantime::parse_rfc3339_weak`] reads it
/// (`2024-08-01T00:00:00Z`, `2024-08-01 00:00:00.250`).
pub(super) fn parse_time(field: &[u8]) -> std::result::Result<EventTime, String> {
    // Epoch milliseconds without spaces, the common case, in one pass: 19
    // digits always fit a u64 (longer numbers take the checked path below).
    if (1..=19).contains(&field.len()) && field.iter().all(u8::is_ascii_digit) {
        return Ok(field
            .iter()
            .fold(0, |n, &d| n * 10 + EventTime::from(d - b'0')));
    }
    let text = std::str::from_utf8(field)
        .map_err(|e| format!("time column is not UTF-8: {e}"))?
        .trim();
    if text.is_empty() {
        return Err("time column is empty".into());
    }
    if text.bytes().all(|b| b.is_ascii_digit()) {
        return text
            .parse()
            .map_err(|e| format!("time `{}` is out of range: {e}", shorten(text, 40)));
    }
    let at = humantime::parse_rfc3339_weak(text).map_err(|e| {
        format!(
            "time `{}` is neither epoch milliseconds nor an RFC 3339 timestamp: {e}",
            shorten(text, 40)
        )
    })?;
    let since = at
        .duration_since(UNIX_EPOCH)
        .map_err(|_| format!("time `{text}` is before 1970"))?;
    Ok(since.as_millis() as EventTime)
}

/// A source of CSV rows, plain or gzip (recognized by its magic bytes). Rows deserialize into `T` through serde: by header
/// name for [`CsvSource::new`], by position for
/// [`CsvSource::without_headers`]. A row's event time is read from its time
/// column, as integer milliseconds since the Unix epoch or as a UTC RFC 3339
/// timestamp such as `2024-08-01T00:00:00Z`. The time column also
/// deserializes into a field of `T` of its name (or position), so a field
/// that holds RFC 3339 times must have a string type, or be left out.
///
/// Quoted fields may hold delimiters, quotes (doubled) and line breaks. A
/// UTF-8 byte order mark before the first row is ignored, and so are blank
/// lines. A row that does not deserialize, has another number of fields
/// than the first row, or has a time that does not parse is a bad record at
/// `file:line`, the line where the row starts (in a split that does not
/// start its file, `file@byte N`: where the reader began the row, its first
/// byte or a blank line or CRLF newline before it).
///
/// Each gzip file, and each plain file of at most
/// [`split_bytes`](super::split_bytes), is a partition. A larger plain
/// file is cut into byte-range splits, each a partition, read by every
/// worker as JSON-lines splits are (see [`plan_splits`](super::plan_splits)
/// and [`Source::split_of`]). Since a quoted field may hold a line break,
/// splits start at exact row starts, found by one scan of the file for
/// quotes when the source first plans its partitions (once per process).
///
/// [`Source::open`] opens its file, reads the first row and closes the file
/// again, so that a missing file is an [`Error::Io`] and a time column the
/// file lacks is an [`Error::Config`], each naming the file, before any
/// record is read; a file that is empty (or holds only blank
/// lines) has no rows and no columns to check. The file is then read on
/// the partition's first poll, at most [`MAX_OPEN_INPUTS`](super::MAX_OPEN_INPUTS)
/// files per process at once, and closed at its end (and while a split
/// waits for its turn). A partition's [`Partition::offset`] is the number
/// of bytes it has read (after decompression); [`Partition::skip`] reads
/// the rows it skips without deserializing them.
///
/// # Examples
/// ```
/// use keyflow_dataflow::source::{Batch, CsvSource, PollStatus, Source};
/// #[derive(serde::Deserialize, Debug, PartialEq)]
/// struct Click { user: String, ts: u64 }
///
/// let path = std::env::temp_dir().join(format!("keyflow-doc-csv-{}.csv", std::process::id()));
/// std::fs::write(&path, "user,ts\nann,1000\nbob,oops\n")?;
/// let src = CsvSource::<Click>::new("clicks", vec![path.clone()], "ts");
/// let mut partition = src.open(0)?;
/// let mut batch = Batch::new(10);
/// assert_eq!(partition.poll(&mut batch)?, PollStatus::Done);
/// assert_eq!(batch.records, vec![(1000, Click { user: "ann".into(), ts: 1000 })]);
/// assert_eq!(batch.bad[0].location, format!("{}:3", path.display()));
/// std::fs::remove_file(&path)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct CsvSource<T> {
    name: String,
    files: Vec<PathBuf>,
    format: Format,
    /// The split size; `None`: [`split_bytes`].
    split_size: Option<u64>,
    /// Planned on first use, once the delimiter is known.
    splits: OnceCell<Vec<FileSplit>>,
    read_ahead: ReadAheadWhen,
    _item: PhantomData<fn() -> T>,
}

impl<T: DeserializeOwned + Send + 'static> CsvSource<T> {
    /// A source over `files` (a directory stands for its files, see
    /// [`input_files`](super::input_files)) whose first row is a header:
    /// rows deserialize by header name, and the event time is in the
    /// column named `time_column`.
    pub fn new(name: &str, files: Vec<PathBuf>, time_column: &str) -> Self {
        CsvSource {
            name: name.to_string(),
            files: super::input_files(&files),
            format: Format {
                time: TimeColumn::Name(time_column.to_string()),
                delimiter: b',',
            },
            split_size: None,
            splits: OnceCell::new(),
            read_ahead: ReadAheadWhen::Never,
            _item: PhantomData,
        }
    }

    /// A source over `files` without a header row: every row is a record,
    /// rows deserialize by position (into a tuple, or a struct in field
    /// order), and the event time is in column `time_index`, counting from
    /// 0.
    pub fn without_headers(name: &str, files: Vec<PathBuf>, time_index: usize) -> Self {
        CsvSource {
            name: name.to_string(),
            files: super::input_files(&files),
            format: Format {
                time: TimeColumn::Index(time_index),
                delimiter: b',',
            },
            split_size: None,
            splits: OnceCell::new(),
            read_ahead: ReadAheadWhen::Never,
            _item: PhantomData,
        }
    }

    /// Separates fields with `delimiter` instead of `b','` (for example
    /// `b'\t'` or `b';'`).
    pub fn delimiter(mut self, delimiter: u8) -> Self {
        self.format.delimiter = delimiter;
        self.splits = OnceCell::new();
        self
    }

    /// Cuts plain files larger than `bytes` into splits of about `bytes`
    /// each, instead of [`split_bytes`](super::split_bytes) (64 MiB unless
    /// [`SPLIT_BYTES_ENV`](super::SPLIT_BYTES_ENV) says otherwise). Every
    /// process of a run must use the same size; `u64::MAX` reads every file
    /// whole. However small the size, a file is cut into at most
    /// [`MAX_SPLITS`](super::MAX_SPLITS) splits.
    pub fn split_size(mut self, bytes: u64) -> Self {
        self.split_size = Some(bytes.max(1));
        self.splits = OnceCell::new();
        self
    }

    /// Reads and parses rows on a thread of its own, beside the worker,
    /// `when` says (by default never; see [`AheadPartition`]). Worth it
    /// where a core would otherwise idle: where sink threads already keep
    /// every core busy it slows the job instead (`keyflow bench sliding`
    /// at one worker on two cores: about 15% slower, see BENCHMARKS.md).
    pub fn read_ahead(mut self, when: ReadAheadWhen) -> Self {
        self.read_ahead = when;
        self
    }

    /// The partitions: the files, large plain ones cut into splits.
    fn splits(&self) -> &[FileSplit] {
        self.splits.get_or_init(|| {
            let size = self.split_size.unwrap_or_else(split_bytes);
            plan_csv_splits(&self.files, size, self.format.delimiter)
        })
    }
}

impl<T: DeserializeOwned + Send + 'static> CsvSource<T> {
    /// The reader of partition `index`. Checks the file and its time column
    /// now, and closes the file: it is read again on the first poll.
    pub(super) fn reader(&self, index: usize) -> Result<CsvPartition<T>> {
        let split = &self.splits()[index];
        let first = self.format.first_row(&split.path)?;
        Ok(CsvPartition::new(split.clone(), self.format.clone(), first))
    }
}

impl<T: DeserializeOwned + Send + 'static> Source for CsvSource<T> {
    type Item = T;

    fn name(&self) -> String {
        self.name.clone()
    }

    fn partitions(&self) -> usize {
        self.splits().len()
    }

    fn open(&self, index: usize) -> Result<Box<dyn Partition<T>>> {
        Ok(Box::new(
            AheadPartition::new(self.reader(index)?).read_ahead(self.read_ahead),
        ))
    }

    fn split_of(&self, index: usize) -> Option<(usize, usize)> {
        split_of(self.splits(), index)
    }
}

#[cfg(test)]
mod tests {
    use super::parse_time;

    #[test]
    fn epoch_milliseconds_read_as_str_parse_reads_them() {
        let mut cases: Vec<String> = ["0", "7", "0001704067200000", "1704067200000"]
            .map(String::from)
            .to_vec();
        cases.push("9".repeat(19));
        cases.push(u64::MAX.to_string());
        cases.push("18446744073709551616".into());
        cases.push("1".repeat(25));
        for case in &cases {
            let want = case.parse::<u64>().ok();
            assert_eq!(parse_time(case.as_bytes()).ok(), want, "{case}");
        }
        assert_eq!(parse_time(b" 42 "), Ok(42));
        assert!(parse_time(b"").is_err());
        assert!(parse_time(b"12a").is_err());
    }
}
