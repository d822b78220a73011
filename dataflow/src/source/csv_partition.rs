//! One partition of a CSV source: a whole file, or a split of a large
//! plain one that starts at a row start (see `csv_split`).

use std::collections::VecDeque;
use std::fs::File;
use std::io::{Cursor, Read, Seek, SeekFrom};
use std::marker::PhantomData;

use csv::{ByteRecord, ErrorKind, Position};
use serde::de::DeserializeOwned;

use super::ahead::{ChunkRead, Stopped};
use super::csv::{csv_error, parse_time, FirstRow, Format, Reader};
use super::jsonl::{open_bytes, OpenSlot};
use super::split::FileSplit;
use super::{BadRecord, PollStatus};
use crate::error::{Error, Result};
use crate::time::EventTime;

/// Most rows one call to [`Partition::skip`] reads, so that resuming a long
/// file does not hold its worker in one activation.
const SKIP_CHUNK: u64 = 1 << 16;

/// An open file and its place among the open inputs.
struct OpenCsv {
    reader: Reader,
    /// The file offset of the reader's byte 0.
    byte_base: u64,
    /// Added to the reader's line numbers (negative when the reader was
    /// given a newline that is not in the file).
    line_base: i64,
    /// Where the reader's first row is: its file offset and line.
    first: (u64, i64),
    _slot: OpenSlot,
}

/// Where a partition's file is.
enum FileState {
    /// Not open: read from the split's start, or from where a paused
    /// reader stopped (its file offset and line number).
    Closed(Option<(u64, u64)>),
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

pub(super) struct CsvPartition<T> {
    split: FileSplit,
    format: Format,
    /// The file's first row; `None` for a file without rows.
    first: Option<FirstRow>,
    file: FileState,
    record: ByteRecord,
    /// Bytes of the split read so far, kept when the file is closed.
    offset: u64,
    _item: PhantomData<fn() -> T>,
}

impl<T> CsvPartition<T> {
    pub(super) fn new(split: FileSplit, format: Format, first: Option<FirstRow>) -> Self {
        CsvPartition {
            split,
            format,
            file: if first.is_some() {
                FileState::Closed(None)
            } else {
                FileState::Ended
            },
            first,
            record: ByteRecord::new(),
            offset: 0,
            _item: PhantomData,
        }
    }

    /// `file:line` in the split that starts the file, `file@byte N`
    /// elsewhere (a line number there would mean reading the file before).
    fn location(&self, position: Option<&Position>) -> String {
        let path = self.split.path.display();
        match (position, &self.file) {
            // The reader places a row where it began to look for it, which
            // for its first row is the newline it was given.
            (Some(p), FileState::Open(open)) if self.split.start == 0 => {
                let line = (open.line_base + p.line() as i64).max(open.first.1);
                format!("{path}:{line}")
            }
            (Some(p), FileState::Open(open)) => {
                let byte = (open.byte_base + p.byte()).max(open.first.0);
                format!("{path}@byte {byte}")
            }
            _ => path.to_string(),
        }
    }

    /// Opens the reader: from the file's start (a byte order mark dropped,
    /// the header read as one), or at a row start inside it, behind a
    /// newline so that the reader starts a row and takes nothing there for
    /// a byte order mark. Either way it stops at the split's end.
    fn open(&self, from: Option<(u64, u64)>, slot: OpenSlot) -> Result<OpenCsv> {
        let path = &self.split.path;
        let resume = from.or((self.split.start > 0).then_some((self.split.start, 0)));
        let Some((at, line)) = resume else {
            let input = open_bytes(path)?;
            let input: Box<dyn Read + Send> = match self.split.end {
                Some(end) => Box::new(input.take(end)),
                None => input,
            };
            return Ok(OpenCsv {
                reader: self.format.reader(input, 0, self.format.has_headers()),
                byte_base: 0,
                line_base: 0,
                first: (0, 1),
                _slot: slot,
            });
        };
        let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
        file.seek(SeekFrom::Start(at))
            .map_err(|e| Error::io(path, e))?;
        let rest: Box<dyn Read + Send> = match self.split.end {
            Some(end) => Box::new(file.take(end.saturating_sub(at))),
            None => Box::new(file),
        };
        // The newline given first stands for the byte before `at`.
        let byte_base = at - 1;
        Ok(OpenCsv {
            reader: self
                .format
                .reader(Box::new(Cursor::new(b"\n").chain(rest)), byte_base, false),
            byte_base,
            // The reader counts its newline as line 1.
            line_base: line as i64 - 2,
            first: (at, line as i64),
            _slot: slot,
        })
    }

    /// Reads the next row into `self.record`, opening the file first if a
    /// place is free.
    fn next_row(&mut self) -> Result<Row> {
        if let FileState::Closed(from) = self.file {
            let Some(slot) = OpenSlot::take() else {
                return Ok(Row::Wait);
            };
            self.file = FileState::Open(Box::new(self.open(from, slot)?));
        }
        let FileState::Open(open) = &mut self.file else {
            return Ok(Row::End);
        };
        let read = open.reader.read_byte_record(&mut self.record);
        let at = open.reader.position().byte();
        open.reader.get_mut().row_ended(at);
        self.offset = (open.byte_base + at).saturating_sub(self.split.start);
        match read {
            Ok(true) => {
                let fields = self.first.as_ref().map_or(0, |f| f.fields);
                if self.record.len() == fields {
                    return Ok(Row::Record);
                }
                Ok(Row::Bad(
                    self.location(self.record.position()),
                    format!(
                        "row has {} fields, the first row has {fields}",
                        self.record.len()
                    ),
                ))
            }
            Ok(false) => {
                // Closed at its end: the descriptor and buffers go now.
                self.file = FileState::Ended;
                Ok(Row::End)
            }
            Err(e) => match e.kind() {
                ErrorKind::Io(_) => Err(csv_error(&self.split.path, e)),
                _ => Ok(Row::Bad(self.location(e.position()), e.to_string())),
            },
        }
    }

    /// The event time and value of the row in `self.record`.
    fn parse(&self) -> std::result::Result<(EventTime, T), String>
    where
        T: DeserializeOwned,
    {
        let Some(first) = &self.first else {
            return Err("the file has no rows".into());
        };
        let field = self.record.get(first.time_index).ok_or_else(|| {
            format!(
                "row has {} fields, no time column {}",
                self.record.len(),
                first.time_index
            )
        })?;
        let ts = parse_time(field)?;
        let item = self
            .record
            .deserialize::<T>(first.headers.as_ref())
            .map_err(|e| match e.kind() {
                ErrorKind::Deserialize { err, .. } => err.to_string(),
                _ => e.to_string(),
            })?;
        Ok((ts, item))
    }
}

impl<T: DeserializeOwned + Send + 'static> ChunkRead<T> for CsvPartition<T> {
    fn read(
        &mut self,
        room: usize,
        records: &mut Vec<(EventTime, T)>,
        bad: &mut VecDeque<(usize, BadRecord)>,
    ) -> Result<(usize, Stopped)> {
        let mut items = 0;
        while items < room {
            let (location, reason) = match self.next_row()? {
                Row::End => return Ok((items, Stopped::End)),
                Row::Wait => return Ok((items, Stopped::Wait)),
                Row::Bad(location, reason) => (location, reason),
                Row::Record => match self.parse() {
                    Ok(record) => {
                        records.push(record);
                        items += 1;
                        continue;
                    }
                    Err(reason) => (self.location(self.record.position()), reason),
                },
            };
            bad.push_back((records.len(), BadRecord::new(location, reason)));
            items += 1;
        }
        Ok((items, Stopped::Full))
    }

    fn is_open(&self) -> bool {
        matches!(self.file, FileState::Open(_))
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

    /// A split closes its file until its turn; it reopens where its reader
    /// stopped, between two rows. A whole file (perhaps compressed) stays
    /// open to its end.
    fn pause(&mut self) {
        if self.split.is_whole() {
            return;
        }
        if let FileState::Open(open) = &self.file {
            let p = open.reader.position();
            let from = (p.byte() > 0).then(|| {
                let line = (open.line_base + p.line() as i64).max(1) as u64;
                (open.byte_base + p.byte(), line)
            });
            // A reader that has read nothing starts over.
            let from = match (from, self.split.start) {
                (Some((at, _)), start) if at <= start && start > 0 => None,
                (from, _) => from,
            };
            self.file = FileState::Closed(from);
        }
    }

    fn describe(&self) -> String {
        self.split.path.display().to_string()
    }
}
