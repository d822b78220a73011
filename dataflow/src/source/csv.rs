//! CSV files, one partition per file, gzip or plain: typed rows through
//! serde, event time from one column.

use std::io::Read;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use csv::{ByteRecord, ErrorKind, Position};
use serde::de::DeserializeOwned;

use super::jsonl::{open_bytes, OpenSlot};
use super::{shorten, Batch, Partition, PollStatus, Source};
use crate::error::{Error, Result};
use crate::time::EventTime;

/// Most rows one call to [`Partition::skip`] reads, so that resuming a long
/// file does not hold its worker in one activation.
const SKIP_CHUNK: u64 = 1 << 16;

/// The CSV reader's buffer, in bytes.
const BUFFER: usize = 1 << 16;

/// A CSV reader over a file's (decompressed) bytes.
type Reader = csv::Reader<Box<dyn Read>>;

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
struct Format {
    time: TimeColumn,
    delimiter: u8,
}

impl Format {
    fn has_headers(&self) -> bool {
        matches!(self.time, TimeColumn::Name(_))
    }

    /// Opens `path` (decompressing it when it starts with the gzip magic
    /// bytes `1f 8b`) and reads its first row, the header or the first
    /// record. Returns the reader and the index of the time column, or
    /// `None` for a file with no rows at all. A time column that the first
    /// row does not have is an [`Error::Config`] naming it and the file.
    fn open(&self, path: &Path) -> Result<(Reader, Option<usize>)> {
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(self.has_headers())
            .delimiter(self.delimiter)
            .flexible(false)
            .buffer_capacity(BUFFER)
            .from_reader(open_bytes(path)?);
        let first = reader
            .byte_headers()
            .map_err(|e| csv_error(path, e))?
            .clone();
        if first.is_empty() {
            return Ok((reader, None));
        }
        let index =
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
        Ok((reader, Some(index)))
    }
}

/// A reader error that ends the partition: I/O (including damaged gzip
/// data) as [`Error::Io`], anything else as [`Error::External`].
fn csv_error(path: &Path, err: csv::Error) -> Error {
    let text = err.to_string();
    match err.into_kind() {
        ErrorKind::Io(e) => Error::io(path, e),
        _ => Error::External(format!("{}: {text}", path.display())),
    }
}

/// Parses an event time: integer milliseconds since the Unix epoch, or a UTC
/// timestamp as [`humantime::parse_rfc3339_weak`] reads it
/// (`2024-08-01T00:00:00Z`, `2024-08-01 00:00:00.250`).
fn parse_time(field: &[u8]) -> std::result::Result<EventTime, String> {
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

/// A source of CSV rows, each file a partition, plain or gzip (recognized
/// by its magic bytes). Rows deserialize into `T` through serde: by header
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
/// `file:line`, the line where the row starts.
///
/// Each file is one partition, however large: since quoted fields may hold
/// line breaks, no byte offset can be known to start a row without reading
/// the file from its start, so CSV files are not cut into splits as large
/// JSON-lines files are (see [`plan_splits`](super::plan_splits)).
///
/// [`Source::open`] opens its file, reads the first row and closes the file
/// again, so that a missing file is an [`Error::Io`] and a time column the
/// file lacks is an [`Error::Config`], each naming the file, before any
/// record is read; a file that is empty (or holds only blank
/// lines) has no rows and no columns to check. The file is then read from
/// its start on the partition's first poll, at most [`MAX_OPEN_INPUTS`](super::MAX_OPEN_INPUTS)
/// files per process at once, and closed at its end. A partition's
/// [`Partition::offset`] is the number of bytes it has read (after
/// decompression); [`Partition::skip`] reads the rows it skips without
/// deserializing them.
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
    _item: PhantomData<fn() -> T>,
}

impl<T: DeserializeOwned + 'static> CsvSource<T> {
    /// A source over `files` whose first row is a header: rows deserialize
    /// by header name, and the event time is in the column named
    /// `time_column`.
    pub fn new(name: &str, files: Vec<PathBuf>, time_column: &str) -> Self {
        CsvSource {
            name: name.to_string(),
            files,
            format: Format {
                time: TimeColumn::Name(time_column.to_string()),
                delimiter: b',',
            },
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
            files,
            format: Format {
                time: TimeColumn::Index(time_index),
                delimiter: b',',
            },
            _item: PhantomData,
        }
    }

    /// Separates fields with `delimiter` instead of `b','` (for example
    /// `b'\t'` or `b';'`).
    pub fn delimiter(mut self, delimiter: u8) -> Self {
        self.format.delimiter = delimiter;
        self
    }
}

/// An open file: its reader, the time column, the header for
/// deserializing, and its place among the open inputs.
struct OpenCsv {
    reader: Reader,
    time_index: usize,
    headers: Option<ByteRecord>,
    _slot: OpenSlot,
}

/// Where a partition's file is.
enum FileState {
    /// Not opened yet.
    Closed,
    /// Being read.
    Open(Box<OpenCsv>),
    /// Read to its end, and closed.
    Ended,
}

/// What [`CsvPartition::next_row`] found.
enum Row {
    /// A row, now in the partition's record buffer.
    Record,
    /// A row that the reader rejected, with its location and why.
    Bad(String, String),
    /// The file is not open yet because [`MAX_OPEN_INPUTS`](super::MAX_OPEN_INPUTS) others are.
    Wait,
    /// The file is read to its end.
    End,
}

struct CsvPartition<T> {
    path: PathBuf,
    format: Format,
    file: FileState,
    record: ByteRecord,
    /// Bytes read so far, kept when the file is closed.
    offset: u64,
    _item: PhantomData<fn() -> T>,
}

impl<T> CsvPartition<T> {
    fn location(&self, position: Option<&Position>) -> String {
        match position {
            Some(p) => format!("{}:{}", self.path.display(), p.line()),
            None => self.path.display().to_string(),
        }
    }

    /// Reads the next row into `self.record`, opening the file first if a
    /// place is free.
    fn next_row(&mut self) -> Result<Row> {
        if let FileState::Closed = self.file {
            let Some(slot) = OpenSlot::take() else {
                return Ok(Row::Wait);
            };
            let (mut reader, time_index) = self.format.open(&self.path)?;
            let Some(time_index) = time_index else {
                self.file = FileState::Ended;
                return Ok(Row::End);
            };
            let headers = if self.format.has_headers() {
                Some(
                    reader
                        .byte_headers()
                        .map_err(|e| csv_error(&self.path, e))?
                        .clone(),
                )
            } else {
                None
            };
            self.file = FileState::Open(Box::new(OpenCsv {
                reader,
                time_index,
                headers,
                _slot: slot,
            }));
        }
        let FileState::Open(open) = &mut self.file else {
            return Ok(Row::End);
        };
        let read = open.reader.read_byte_record(&mut self.record);
        self.offset = open.reader.position().byte();
        match read {
            Ok(true) => Ok(Row::Record),
            Ok(false) => {
                // Closed at its end: the descriptor and buffers go now.
                self.file = FileState::Ended;
                Ok(Row::End)
            }
            Err(e) => match e.kind() {
                ErrorKind::UnequalLengths {
                    pos,
                    expected_len,
                    len,
                } => Ok(Row::Bad(
                    self.location(pos.as_ref()),
                    format!("row has {len} fields, the first row has {expected_len}"),
                )),
                ErrorKind::Io(_) => Err(csv_error(&self.path, e)),
                _ => Ok(Row::Bad(self.location(e.position()), e.to_string())),
            },
        }
    }

    /// The event time and value of the row in `self.record`.
    fn parse(&self) -> std::result::Result<(EventTime, T), String>
    where
        T: DeserializeOwned,
    {
        let FileState::Open(open) = &self.file else {
            return Err("no open file".into());
        };
        let field = self.record.get(open.time_index).ok_or_else(|| {
            format!(
                "row has {} fields, no time column {}",
                self.record.len(),
                open.time_index
            )
        })?;
        let ts = parse_time(field)?;
        let item = self
            .record
            .deserialize::<T>(open.headers.as_ref())
            .map_err(|e| match e.kind() {
                ErrorKind::Deserialize { err, .. } => err.to_string(),
                _ => e.to_string(),
            })?;
        Ok((ts, item))
    }
}

impl<T: DeserializeOwned> Partition<T> for CsvPartition<T> {
    fn poll(&mut self, batch: &mut Batch<T>) -> Result<PollStatus> {
        while !batch.is_full() {
            match self.next_row()? {
                Row::End => return Ok(PollStatus::Done),
                Row::Wait => break,
                Row::Bad(location, reason) => batch.bad(location, reason),
                Row::Record => match self.parse() {
                    Ok((ts, item)) => batch.push(ts, item),
                    Err(reason) => batch.bad(self.location(self.record.position()), reason),
                },
            }
        }
        Ok(PollStatus::Ready)
    }

    fn offset(&self) -> u64 {
        self.offset
    }

    /// Reads up to `n` rows (at most 65536 per call) without deserializing
    /// them: every row counts once, as `poll` returns it as a record or a
    /// bad record.
    fn skip(&mut self, n: u64) -> Result<(u64, PollStatus)> {
        let want = n.min(SKIP_CHUNK);
        let mut skipped = 0;
        while skipped < want {
            match self.next_row()? {
                Row::End => return Ok((skipped, PollStatus::Done)),
                Row::Wait => break,
                Row::Record | Row::Bad(..) => skipped += 1,
            }
        }
        Ok((skipped, PollStatus::Ready))
    }
}

impl<T: DeserializeOwned + 'static> Source for CsvSource<T> {
    type Item = T;

    fn name(&self) -> String {
        self.name.clone()
    }

    fn partitions(&self) -> usize {
        self.files.len()
    }

    fn open(&self, index: usize) -> Result<Box<dyn Partition<T>>> {
        let path = &self.files[index];
        // Checks the file and its time column now, and closes the file: it
        // is read again from its start on the first poll.
        drop(self.format.open(path)?);
        Ok(Box::new(CsvPartition {
            path: path.clone(),
            format: self.format.clone(),
            file: FileState::Closed,
            record: ByteRecord::new(),
            offset: 0,
            _item: PhantomData,
        }))
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
