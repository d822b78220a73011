//! JSON-lines files, one partition per file, gzip or plain.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use serde::de::DeserializeOwned;

use super::{Batch, Partition, PollStatus, Source};
use crate::error::{Error, Result};
use crate::time::EventTime;

/// Opens `path` for reading lines, decompressing it when its name ends in
/// `.gz`. A missing file is an error that names it.
pub fn open_lines(path: &Path) -> Result<LineReader> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let inner: Box<dyn BufRead> = if path.extension().is_some_and(|e| e == "gz") {
        Box::new(BufReader::with_capacity(
            1 << 16,
            flate2::read::MultiGzDecoder::new(BufReader::new(file)),
        ))
    } else {
        Box::new(BufReader::with_capacity(1 << 16, file))
    };
    Ok(LineReader {
        path: path.to_path_buf(),
        inner,
        line: 0,
        buf: Vec::new(),
    })
}

/// Reads a file line by line, tracking the line number for error messages.
pub struct LineReader {
    path: PathBuf,
    inner: Box<dyn BufRead>,
    line: u64,
    buf: Vec<u8>,
}

impl LineReader {
    /// The next line without its line ending, or `None` at the end. Invalid
    /// UTF-8 is returned as an `Err` with the line's location, so the caller
    /// can count it as a bad record.
    #[allow(clippy::type_complexity)]
    pub fn next_line(&mut self) -> Result<Option<std::result::Result<&str, String>>> {
        self.buf.clear();
        let n = self
            .inner
            .read_until(b'\n', &mut self.buf)
            .map_err(|e| Error::io(&self.path, e))?;
        if n == 0 {
            return Ok(None);
        }
        self.line += 1;
        while matches!(self.buf.last(), Some(b'\n' | b'\r')) {
            self.buf.pop();
        }
        Ok(Some(
            std::str::from_utf8(&self.buf).map_err(|e| format!("invalid UTF-8: {e}")),
        ))
    }

    /// `file:line` of the line last returned.
    pub fn location(&self) -> String {
        format!("{}:{}", self.path.display(), self.line)
    }

    /// Lines read so far.
    pub fn line(&self) -> u64 {
        self.line
    }
}

/// Extracts a record's event time.
type TimeOf<T> = Rc<dyn Fn(&T) -> Option<EventTime>>;

/// A source of JSON objects, one per line, each file a partition. `ts`
/// extracts the event time; a line that does not parse or has no time is a
/// bad record.
///
/// # Examples
/// ```
/// use keyflow_dataflow::source::{JsonLinesSource, Source};
/// #[derive(serde::Deserialize)]
/// struct Click { ts: u64 }
/// let src = JsonLinesSource::new("clicks", vec!["a.jsonl".into()], |c: &Click| Some(c.ts));
/// assert_eq!(src.partitions(), 1);
/// ```
pub struct JsonLinesSource<T> {
    name: String,
    files: Vec<PathBuf>,
    ts: TimeOf<T>,
    _item: PhantomData<T>,
}

impl<T: DeserializeOwned + 'static> JsonLinesSource<T> {
    /// A source over `files` whose records carry their time as `ts(record)`.
    pub fn new(
        name: &str,
        files: Vec<PathBuf>,
        ts: impl Fn(&T) -> Option<EventTime> + 'static,
    ) -> Self {
        JsonLinesSource {
            name: name.to_string(),
            files,
            ts: Rc::new(ts),
            _item: PhantomData,
        }
    }
}

struct JsonPartition<T> {
    reader: LineReader,
    ts: TimeOf<T>,
}

impl<T: DeserializeOwned> Partition<T> for JsonPartition<T> {
    fn poll(&mut self, batch: &mut Batch<T>) -> Result<PollStatus> {
        while !batch.is_full() {
            let parsed = match self.reader.next_line()? {
                None => return Ok(PollStatus::Done),
                Some(Err(reason)) => Err(reason),
                Some(Ok(line)) if line.trim().is_empty() => continue,
                Some(Ok(line)) => serde_json::from_str::<T>(line).map_err(|e| e.to_string()),
            };
            match parsed {
                Ok(item) => match (self.ts)(&item) {
                    Some(ts) => batch.push(ts, item),
                    None => batch.bad(self.reader.location(), "record has no event time"),
                },
                Err(reason) => batch.bad(self.reader.location(), reason),
            }
        }
        Ok(PollStatus::Ready)
    }

    fn offset(&self) -> u64 {
        self.reader.line()
    }
}

impl<T: DeserializeOwned + 'static> Source for JsonLinesSource<T> {
    type Item = T;

    fn name(&self) -> String {
        self.name.clone()
    }

    fn partitions(&self) -> usize {
        self.files.len()
    }

    fn open(&self, index: usize) -> Result<Box<dyn Partition<T>>> {
        Ok(Box::new(JsonPartition {
            reader: open_lines(&self.files[index])?,
            ts: Rc::clone(&self.ts),
        }))
    }
}
