//! A file's lines parsed one by one into records, read in place or ahead.

use std::collections::VecDeque;

use super::ahead::{ChunkRead, Stopped};
use super::jsonl::{InputFile, NextLine, SKIP_CHUNK};
use super::split::FileSplit;
use super::{BadRecord, PollStatus};
use crate::error::Result;
use crate::time::EventTime;

/// Parses one line (never blank) into a record and its event time, or
/// says why it is malformed. Closures `FnMut(&str) -> Result<(EventTime,
/// T), String>` are parsers; a parser may keep state across lines (such as
/// a table of shared strings), which moves with it to a read-ahead thread.
pub trait ParseLine<T>: Send + 'static {
    /// The record on `line`, or why there is none.
    fn parse(&mut self, line: &str) -> std::result::Result<(EventTime, T), String>;
}

impl<T, F> ParseLine<T> for F
where
    F: FnMut(&str) -> std::result::Result<(EventTime, T), String> + Send + 'static,
{
    fn parse(&mut self, line: &str) -> std::result::Result<(EventTime, T), String> {
        self(line)
    }
}

/// The lines of a file, or of a split of one, each parsed into a record:
/// the reader of an [`AheadPartition`](super::AheadPartition) for a
/// line-based format. Blank lines are skipped and are not items; a line
/// that is not UTF-8 or that the parser refuses is a bad record named
/// `file:line`, or `file@byte N` in a split that does not start its file.
/// The file opens on the first read (see [`InputFile`]).
///
/// # Examples
/// ```
/// use keyflow_dataflow::source::{AheadPartition, Batch, FileSplit, ParsedLines, Partition};
///
/// let path = std::env::temp_dir().join(format!("keyflow-doc-parsed-{}.txt", std::process::id()));
/// std::fs::write(&path, "5 a\n\n7 b\nnonsense\n")?;
/// // "TIME WORD" lines.
/// let parse = |line: &str| {
///     let (ts, word) = line.split_once(' ').ok_or("no space")?;
///     Ok((ts.parse::<u64>().map_err(|e| e.to_string())?, word.to_string()))
/// };
/// let mut p = AheadPartition::new(ParsedLines::new(&FileSplit::whole(path.clone(), 0), parse));
/// let mut batch = Batch::new(10);
/// p.poll(&mut batch)?;
/// assert_eq!(batch.records, vec![(5, "a".to_string()), (7, "b".to_string())]);
/// assert_eq!(batch.bad[0].location, format!("{}:4", path.display()));
/// std::fs::remove_file(&path)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct ParsedLines<P> {
    file: InputFile,
    parser: P,
}

impl<P> ParsedLines<P> {
    /// The lines of `split`, parsed by `parser`; nothing is opened yet.
    pub fn new(split: &FileSplit, parser: P) -> Self {
        ParsedLines {
            file: InputFile::split(split),
            parser,
        }
    }
}

impl<T: Send + 'static, P: ParseLine<T>> ChunkRead<T> for ParsedLines<P> {
    fn read(
        &mut self,
        room: usize,
        records: &mut Vec<(EventTime, T)>,
        bad: &mut VecDeque<(usize, BadRecord)>,
    ) -> Result<(usize, Stopped)> {
        let mut items = 0;
        while items < room {
            let parsed = match self.file.next_line()? {
                NextLine::End => return Ok((items, Stopped::End)),
                NextLine::Wait => return Ok((items, Stopped::Wait)),
                NextLine::Line(Err(reason)) => Err(reason),
                NextLine::Line(Ok(line)) if line.trim().is_empty() => continue,
                NextLine::Line(Ok(line)) => self.parser.parse(line),
            };
            items += 1;
            match parsed {
                Ok(record) => records.push(record),
                Err(reason) => {
                    bad.push_back((records.len(), BadRecord::new(self.file.location(), reason)))
                }
            }
        }
        Ok((items, Stopped::Full))
    }

    fn is_open(&self) -> bool {
        self.file.is_open()
    }

    fn offset(&self) -> u64 {
        self.file.line()
    }

    fn skip(&mut self, n: u64) -> Result<(u64, PollStatus)> {
        // Blank lines are no items, every other line one: no need to parse.
        self.file.skip_items(n.min(SKIP_CHUNK))
    }

    fn pause(&mut self) {
        self.file.pause();
    }

    fn describe(&self) -> String {
        self.file.path().display().to_string()
    }
}
