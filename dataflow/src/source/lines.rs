//! A file's lines parsed one by one into records, read in place or ahead.

use std::collections::VecDeque;

use super::ahead::{ChunkRead, Stopped};
use super::jsonl::{line_text, InputFile, NextLine, SKIP_CHUNK};
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
            // The lines already in the buffer first, then one that refills
            // it (or opens or ends the file).
            let mut lines = self.file.buffered_bytes();
            while items < room {
                let Some(line) = lines.next() else { break };
                let parsed = parse_one(&mut self.parser, line_text(line));
                items += keep(parsed, || lines.location(), records, bad);
            }
            if items == room {
                break;
            }
            let parsed = match self.file.next_line()? {
                NextLine::End => return Ok((items, Stopped::End)),
                NextLine::Wait => return Ok((items, Stopped::Wait)),
                NextLine::Line(line) => parse_one(&mut self.parser, line),
            };
            items += keep(parsed, || self.file.location(), records, bad);
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

/// A line's record, or why it has none; `None` for a blank line, which is
/// no item.
fn parse_one<T, P: ParseLine<T>>(
    parser: &mut P,
    line: std::result::Result<&str, String>,
) -> Option<std::result::Result<(EventTime, T), String>> {
    match line {
        Ok(line) if line.trim().is_empty() => None,
        Ok(line) => Some(parser.parse(line)),
        Err(reason) => Some(Err(reason)),
    }
}

/// Puts a parsed line's record in `records`, or the reason it has none in
/// `bad`, at the line's location; 0 for a blank line, 1 for an item.
fn keep<T>(
    parsed: Option<std::result::Result<(EventTime, T), String>>,
    location: impl FnOnce() -> String,
    records: &mut Vec<(EventTime, T)>,
    bad: &mut VecDeque<(usize, BadRecord)>,
) -> usize {
    match parsed {
        None => return 0,
        Some(Ok(record)) => records.push(record),
        Some(Err(reason)) => bad.push_back((records.len(), BadRecord::new(location(), reason))),
    }
    1
}
