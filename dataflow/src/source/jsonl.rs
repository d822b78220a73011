//! JSON-lines files, gzip or plain, one partition per file or per split of
//! a large plain file, and the lazily opened input files that file sources
//! read.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use serde::de::DeserializeOwned;

use super::ahead::{AheadPartition, ReadAheadWhen};
use super::gzip::GzMembers;
use super::line_ends::LineEnds;
use super::lines::{ParseLine, ParsedLines};
use super::long_line::{pass_line, read_line_within, MAX_LINE_BYTES};
use super::split::{plan_splits, FileSplit};
use super::{input_files, Partition, PollStatus, Source};
use crate::error::{Error, Result};
use crate::time::EventTime;

/// The bytes a line reader reads at once. A line that lies whole in them
/// is within [`MAX_LINE_BYTES`], so [`BufferedLines`] never meets one too
/// long.
const BUFFER: usize = 1 << 16;
const _: () = assert!(BUFFER <= MAX_LINE_BYTES);

/// Opens `path` for reading lines, decompressing it when it starts with the
/// gzip magic bytes (`1f 8b`), whatever its name. A missing file is an
/// error that names it.
/// A UTF-8 byte order mark at its start is no part of its first line.
pub fn open_lines(path: &Path) -> Result<LineReader> {
    let mut inner = BufReader::with_capacity(BUFFER, open_bytes(path)?);
    let pos = skip_bom(&mut inner).map_err(|e| Error::io(path, e))?;
    Ok(LineReader {
        path: path.to_path_buf(),
        inner,
        line: 0,
        buf: Vec::new(),
        too_long: false,
        lent: 0,
        start: 0,
        pos,
        line_start: pos,
        end: None,
    })
}

/// The bytes of a UTF-8 byte order mark, which some editors put at the
/// start of a text file.
pub(super) const BOM: &[u8] = b"\xef\xbb\xbf";

/// Passes a UTF-8 byte order mark at the start of `input`, as the CSV
/// reader does, so that a file saved with one loses no line to it; returns
/// how many bytes it passed. A file's first read holds its first bytes in
/// one piece (see [`open_bytes`]), so a mark is never cut in two here.
fn skip_bom(input: &mut impl BufRead) -> std::io::Result<u64> {
    if !input.fill_buf()?.starts_with(BOM) {
        return Ok(0);
    }
    input.consume(BOM.len());
    Ok(BOM.len() as u64)
}

/// Opens the lines of a split of an uncompressed file (see [`FileSplit`]):
/// those that start at or after its start and before its end.
pub fn open_split(split: &FileSplit) -> Result<LineReader> {
    if split.is_whole() {
        return open_lines(&split.path);
    }
    let path = &split.path;
    let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut pos = split.start;
    if split.start > 0 {
        // From the byte before the start, through the first newline: what
        // is left of a line the split before reads across its end. A line
        // that starts exactly at the start is this split's.
        file.seek(SeekFrom::Start(split.start - 1))
            .map_err(|e| Error::io(path, e))?;
        pos -= 1;
    }
    let mut inner = BufReader::with_capacity(BUFFER, Box::new(file) as Box<dyn Read + Send>);
    if split.start == 0 {
        // `open_bytes` checks the head of whole files; a split's is here.
        let head = inner.fill_buf().map_err(|e| Error::io(path, e))?;
        utf8_only(head).map_err(|e| Error::io(path, e))?;
        // A split that ends inside the mark keeps it: its first line
        // starts before its end only with the mark counted in.
        if split.end.is_none_or(|end| end > BOM.len() as u64) {
            pos = skip_bom(&mut inner).map_err(|e| Error::io(path, e))?;
        }
    } else {
        // A line that runs past the split's end starts no line here: the
        // pass stops at the end, so that the splits inside one huge line
        // do not each read to its end.
        let room = split.end.map_or(u64::MAX, |end| end.saturating_sub(pos));
        pos += pass_line(&mut (&mut inner).take(room)).map_err(|e| Error::io(path, e))? as u64;
    }
    Ok(LineReader {
        path: path.clone(),
        inner,
        line: 0,
        buf: Vec::new(),
        too_long: false,
        lent: 0,
        start: split.start,
        pos,
        line_start: pos,
        end: split.end,
    })
}

/// Opens a split again where a paused reader of it stopped: at byte `pos`,
/// after `line` lines, the last of which started at `line_start`.
fn reopen_split(split: &FileSplit, pos: u64, line: u64, line_start: u64) -> Result<LineReader> {
    let path = &split.path;
    let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
    file.seek(SeekFrom::Start(pos))
        .map_err(|e| Error::io(path, e))?;
    Ok(LineReader {
        path: path.clone(),
        inner: BufReader::with_capacity(BUFFER, Box::new(file)),
        line,
        buf: Vec::new(),
        too_long: false,
        lent: 0,
        start: split.start,
        pos,
        line_start,
        end: split.end,
    })
}

/// Opens `path` for reading bytes, decompressing it when it starts with the
/// gzip magic bytes (`1f 8b`), whatever its name: every member, and zero
/// padding after them (see [`GzMembers`]).
pub(crate) fn open_bytes(path: &Path) -> Result<Box<dyn Read + Send>> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let (head, file) = with_head(file).map_err(|e| Error::io(path, e))?;
    if head.starts_with(&[0x1f, 0x8b]) {
        let gz = GzMembers::new(BufReader::new(file));
        let (head, gz) = with_head(gz).map_err(|e| Error::io(path, e))?;
        utf8_only(&head).map_err(|e| Error::io(path, e))?;
        Ok(Box::new(gz))
    } else {
        utf8_only(&head).map_err(|e| Error::io(path, e))?;
        Ok(Box::new(file))
    }
}

/// Refuses text that starts with a UTF-16 (or UTF-32) byte order mark:
/// read as UTF-8, every line of it would be malformed, and a run would
/// only count them; one error that names the encoding says more.
fn utf8_only(head: &[u8]) -> std::io::Result<()> {
    if head.starts_with(b"\xff\xfe") || head.starts_with(b"\xfe\xff") {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "starts with a UTF-16 byte order mark, and keyflow reads UTF-8 text; \
             convert it first (for example `iconv -f UTF-16 -t UTF-8`)",
        ));
    }
    Ok(())
}

/// Reads the first four bytes of `input` (fewer at its end) and returns
/// them with a reader that yields them in one piece before the rest. The
/// CSV reader drops a UTF-8 byte order mark only when its first read holds
/// all three of its bytes, and takes a first read that holds nothing else
/// for the end of the input.
fn with_head<R: Read>(mut input: R) -> std::io::Result<(Vec<u8>, impl Read)> {
    let mut head = [0u8; 4];
    let mut got = 0;
    // One `read` may return fewer bytes than asked (pipes, decoders).
    while got < head.len() {
        match input.read(&mut head[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let head = head[..got].to_vec();
    Ok((head.clone(), std::io::Cursor::new(head).chain(input)))
}

/// Reads a file (or a split of one) line by line, tracking where each line
/// is for error messages.
pub struct LineReader {
    path: PathBuf,
    inner: BufReader<Box<dyn Read + Send>>,
    line: u64,
    /// The line last read, its ending included, when it did not lie whole
    /// in `inner`'s buffer.
    buf: Vec<u8>,
    /// Whether the line last read was over [`MAX_LINE_BYTES`] (and not
    /// kept).
    too_long: bool,
    /// How many bytes of `inner`'s buffer the line last read takes, its
    /// ending included (after [`LineReader::buffered`], all the lines it
    /// handed out); 0 when it is in `buf`. Most lines are read where they
    /// lie, and given back to the reader when the next is read.
    lent: usize,
    /// Where the split starts: 0 for a whole file.
    start: u64,
    /// The byte offset of the next read (of the decompressed bytes).
    pos: u64,
    /// The byte offset of the line last read.
    line_start: u64,
    /// No line starting here or later is read: the next split's.
    end: Option<u64>,
}

impl LineReader {
    /// The next line without its line ending, or `None` at the end. Invalid
    /// UTF-8 is returned as an `Err` with the line's location, so the caller
    /// can count it as a bad record.
    #[allow(clippy::type_complexity)]
    pub fn next_line(&mut self) -> Result<Option<std::result::Result<&str, String>>> {
        Ok(self.advance()?.then(|| self.current()))
    }

    /// Reads the next line; false at the end. A line that lies whole in the
    /// reader's buffer stays there (no copy); one that runs past it is
    /// copied into `buf`, unless it is over [`MAX_LINE_BYTES`].
    fn advance(&mut self) -> Result<bool> {
        self.inner.consume(std::mem::take(&mut self.lent));
        self.buf.clear();
        self.too_long = false;
        if self.end.is_some_and(|end| self.pos >= end) {
            return Ok(false);
        }
        let ahead = self
            .inner
            .fill_buf()
            .map_err(|e| Error::io(&self.path, e))?;
        let n = match memchr::memchr(b'\n', ahead) {
            Some(newline) => {
                self.lent = newline + 1;
                self.lent
            }
            None => {
                let (read, over) = read_line_within(&mut self.inner, &mut self.buf, MAX_LINE_BYTES)
                    .map_err(|e| Error::io(&self.path, e))?;
                self.too_long = over;
                read
            }
        };
        if n == 0 {
            return Ok(false);
        }
        self.line += 1;
        self.line_start = self.pos;
        self.pos += n as u64;
        Ok(true)
    }

    /// The line last read.
    fn current(&self) -> std::result::Result<&str, String> {
        let bytes = self.current_bytes()?;
        line_text(bytes)
    }

    /// The line last read by [`LineReader::advance`], as bytes: not
    /// checked to be UTF-8.
    fn current_bytes(&self) -> std::result::Result<&[u8], String> {
        if self.too_long {
            return Err(format!(
                "a line of more than {MAX_LINE_BYTES} bytes (the most one may have)"
            ));
        }
        let read = match self.lent {
            0 => &self.buf,
            _ => &self.inner.buffer()[..self.lent],
        };
        Ok(without_ending(read))
    }

    /// The lines after the line last read that lie whole in the buffer,
    /// each read as [`LineReader::advance`] would, without refilling it.
    /// Once they are used up, `advance` reads on from the last one.
    fn buffered(&mut self) -> BufferedLines<'_> {
        // The line last read goes, as `advance` would let it go; `lent`
        // then grows by each line handed out.
        self.inner.consume(std::mem::take(&mut self.lent));
        self.buf.clear();
        self.too_long = false;
        BufferedLines {
            rest: self.inner.buffer(),
            lent: &mut self.lent,
            line: &mut self.line,
            pos: &mut self.pos,
            line_start: &mut self.line_start,
            end: self.end,
            ends: LineEnds::new(),
        }
    }

    /// Where the line last returned is: `file:line`, or `file@byte N` (its
    /// first byte) in a split that does not start the file, whose reader
    /// does not know how many lines come before it.
    pub fn location(&self) -> String {
        if self.start == 0 {
            format!("{}:{}", self.path.display(), self.line)
        } else {
            format!("{}@byte {}", self.path.display(), self.line_start)
        }
    }

    /// Lines read so far.
    pub fn line(&self) -> u64 {
        self.line
    }

    /// Reads past up to `n` lines that hold something other than white
    /// space (or are not UTF-8), without looking further into them: the
    /// lines a line-based partition turns into records or bad records.
    /// Returns how many it passed; fewer than `n` at the end.
    pub fn skip_items(&mut self, n: u64) -> Result<u64> {
        let mut passed = 0;
        while passed < n && self.advance()? {
            if self.current().is_ok_and(|line| line.trim().is_empty()) {
                continue;
            }
            passed += 1;
        }
        Ok(passed)
    }
}

/// A line's bytes as text, or why they are not, in the words
/// [`InputFile::next_line`] uses: for a reader of [`InputFile::next_bytes`]
/// or [`InputFile::buffered_bytes`] that checks a line itself.
///
/// ```
/// use keyflow_dataflow::source::line_text;
/// assert_eq!(line_text(b"a"), Ok("a"));
/// assert!(line_text(b"\xff").unwrap_err().starts_with("invalid UTF-8"));
/// ```
pub fn line_text(line: &[u8]) -> std::result::Result<&str, String> {
    std::str::from_utf8(line).map_err(|e| format!("invalid UTF-8: {e}"))
}

/// A line's bytes without the line ending: every `\n` and `\r` at its end.
fn without_ending(line: &[u8]) -> &[u8] {
    let end = line
        .iter()
        .rposition(|&b| b != b'\n' && b != b'\r')
        .map_or(0, |last| last + 1);
    &line[..end]
}

/// The lines of a [`LineReader`] that lie whole in its buffer (see
/// [`InputFile::buffered_bytes`]). Reading a line here costs a search for
/// its newline and a few counts, against a call through the reader's whole
/// path (refill, long lines, the open file's state) for each.
struct BufferedLines<'a> {
    /// What follows the last line handed out.
    rest: &'a [u8],
    /// The reader's bytes to let go of on its next read.
    lent: &'a mut usize,
    line: &'a mut u64,
    pos: &'a mut u64,
    line_start: &'a mut u64,
    end: Option<u64>,
    ends: LineEnds,
}

impl<'a> BufferedLines<'a> {
    /// The next line without its ending; `None` when the rest of the
    /// buffer holds no whole line, or at the split's end.
    fn next(&mut self) -> Option<&'a [u8]> {
        if self.end.is_some_and(|end| *self.pos >= end) {
            return None;
        }
        let n = self.ends.find(self.rest)? + 1;
        let (line, rest) = self.rest.split_at(n);
        self.rest = rest;
        *self.lent += n;
        *self.line += 1;
        *self.line_start = *self.pos;
        *self.pos += n as u64;
        Some(without_ending(line))
    }
}

/// Input files one process reads at once, over all its workers and sources.
/// Each open file holds a descriptor and, for gzip, a decoder's buffers, so
/// thousands of inputs must not be open together.
pub const MAX_OPEN_INPUTS: usize = 64;

static OPEN_INPUTS: AtomicUsize = AtomicUsize::new(0);

/// One of the [`MAX_OPEN_INPUTS`] places, shared by every file source,
/// given back when dropped.
pub(crate) struct OpenSlot;

impl OpenSlot {
    pub(crate) fn take() -> Option<OpenSlot> {
        OPEN_INPUTS
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < MAX_OPEN_INPUTS).then_some(n + 1)
            })
            .ok()
            .map(|_| OpenSlot)
    }
}

impl Drop for OpenSlot {
    fn drop(&mut self) {
        OPEN_INPUTS.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What [`InputFile::next_line`] found (a line as text), or
/// [`InputFile::next_bytes`] (a line as bytes, `L` = `[u8]`).
#[derive(Debug, PartialEq, Eq)]
pub enum NextLine<'a, L: ?Sized = str> {
    /// A line without its ending, or why it cannot be read.
    Line(std::result::Result<&'a L, String>),
    /// The file is not open yet because [`MAX_OPEN_INPUTS`] others are:
    /// read nothing now and ask again (its partition stays active, so its
    /// watermark holds progress back and nothing it reads later is late).
    Wait,
    /// The file is read to its end (and closed).
    End,
}

/// A file read line by line that is opened on its first read, at most
/// [`MAX_OPEN_INPUTS`] per process at once, and closed at its end. Its place
/// among the open inputs is given back when it is dropped, so a partition
/// that still works on what it read keeps it.
///
/// # Examples
/// ```
/// use keyflow_dataflow::source::{InputFile, NextLine};
/// let path = std::env::temp_dir().join(format!("keyflow-doc-lazy-{}", std::process::id()));
/// std::fs::write(&path, "a\nb\n")?;
/// let mut file = InputFile::new(path.clone());
/// assert_eq!(file.next_line()?, NextLine::Line(Ok("a")));
/// assert_eq!(file.location(), format!("{}:1", path.display()));
/// assert_eq!(file.next_line()?, NextLine::Line(Ok("b")));
/// assert_eq!(file.next_line()?, NextLine::End);
/// std::fs::remove_file(&path)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct InputFile {
    split: FileSplit,
    reader: Option<LineReader>,
    slot: Option<OpenSlot>,
    line: u64,
    /// The byte offset of the line last returned.
    line_start: u64,
    /// Where to read on after [`InputFile::pause`] closed the file.
    paused_at: Option<u64>,
    ended: bool,
}

impl InputFile {
    /// The whole of `path`, not opened yet.
    pub fn new(path: PathBuf) -> Self {
        InputFile::split(&FileSplit::whole(path, 0))
    }

    /// The lines of `split` (see [`FileSplit`]), not opened yet. Outside
    /// the split that starts its file, lines are named by their byte
    /// offset (`file@byte N`) rather than their line number.
    pub fn split(split: &FileSplit) -> Self {
        InputFile {
            split: split.clone(),
            reader: None,
            slot: None,
            line: 0,
            line_start: 0,
            paused_at: None,
            ended: false,
        }
    }

    /// Opens the file if a place is free; false if none is.
    fn ensure_open(&mut self) -> Result<bool> {
        if self.reader.is_none() {
            let Some(slot) = OpenSlot::take() else {
                return Ok(false);
            };
            self.reader = Some(match self.paused_at.take() {
                Some(pos) => reopen_split(&self.split, pos, self.line, self.line_start)?,
                None => open_split(&self.split)?,
            });
            self.slot = Some(slot);
        }
        Ok(true)
    }

    /// Closes the file at its end: the descriptor and buffers go now.
    fn close(&mut self) {
        self.reader = None;
        self.slot = None;
        self.ended = true;
    }

    /// The next line, opening the file first if a place is free. A line
    /// that is not UTF-8 comes as an `Err` saying so.
    pub fn next_line(&mut self) -> Result<NextLine<'_>> {
        self.next_with(LineReader::current)
    }

    /// The next line as [`InputFile::next_line`] gives it, but as bytes,
    /// not checked to be UTF-8: for a parser that checks only the parts it
    /// keeps. Only a line over [`MAX_LINE_BYTES`] comes as an `Err`.
    ///
    /// ```
    /// use keyflow_dataflow::source::{InputFile, NextLine};
    /// let path = std::env::temp_dir().join(format!("keyflow-doc-bytes-{}", std::process::id()));
    /// std::fs::write(&path, b"a\r\n\xff\n")?;
    /// let mut file = InputFile::new(path.clone());
    /// assert_eq!(file.next_bytes()?, NextLine::Line(Ok(&b"a"[..])));
    /// assert_eq!(file.next_bytes()?, NextLine::Line(Ok(&b"\xff"[..])));
    /// assert_eq!(file.next_bytes()?, NextLine::End);
    /// std::fs::remove_file(&path)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn next_bytes(&mut self) -> Result<NextLine<'_, [u8]>> {
        self.next_with(LineReader::current_bytes)
    }

    /// The lines that lie whole in the open file's buffer, read one by one
    /// as [`InputFile::next_bytes`] reads them but without refilling the
    /// buffer, which makes each cheaper: a reader takes these first, then
    /// one line from `next_bytes`, which refills the buffer (or opens or
    /// ends the file), and so on. Nothing while the file is not open.
    ///
    /// ```
    /// use keyflow_dataflow::source::{InputFile, NextLine};
    /// let path = std::env::temp_dir().join(format!("keyflow-doc-buffered-{}", std::process::id()));
    /// std::fs::write(&path, b"a\r\nb\n\xff\n")?;
    /// let mut file = InputFile::new(path.clone());
    /// let mut lines = Vec::new();
    /// loop {
    ///     lines.extend(file.buffered_bytes().map(<[u8]>::to_vec));
    ///     match file.next_bytes()? {
    ///         NextLine::Line(line) => lines.push(line?.to_vec()),
    ///         NextLine::Wait => continue,
    ///         NextLine::End => break,
    ///     }
    /// }
    /// assert_eq!(lines, [&b"a"[..], b"b", b"\xff"]);
    /// std::fs::remove_file(&path)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn buffered_bytes(&mut self) -> FileLines<'_> {
        FileLines {
            lines: self.reader.as_mut().map(LineReader::buffered),
            path: &self.split.path,
            split_start: self.split.start,
            line: &mut self.line,
            line_start: &mut self.line_start,
        }
    }

    /// Reads the next line, opening the file first if a place is free, and
    /// gives it as `line` reads it from the reader.
    fn next_with<'a, L: ?Sized>(
        &'a mut self,
        line: impl FnOnce(&'a LineReader) -> std::result::Result<&'a L, String>,
    ) -> Result<NextLine<'a, L>> {
        if self.ended {
            return Ok(NextLine::End);
        }
        if !self.ensure_open()? {
            return Ok(NextLine::Wait);
        }
        let advanced = match self.reader.as_mut() {
            Some(reader) => reader.advance()?,
            None => false,
        };
        if !advanced {
            self.close();
            return Ok(NextLine::End);
        }
        let reader = self.reader.as_ref().expect("read above");
        // Kept here so that `location` stays right after the file closes.
        self.line = reader.line();
        self.line_start = reader.line_start;
        Ok(NextLine::Line(line(reader)))
    }

    /// Passes up to `n` lines as [`LineReader::skip_items`] does, to resume
    /// a partition without parsing what it had read. Returns how many it
    /// passed, and `Done` once the file is exhausted (`Ready` with 0 while
    /// no place is free to open it).
    pub fn skip_items(&mut self, n: u64) -> Result<(u64, PollStatus)> {
        if self.ended {
            return Ok((0, PollStatus::Done));
        }
        if !self.ensure_open()? {
            return Ok((0, PollStatus::Ready));
        }
        let reader = self.reader.as_mut().expect("opened above");
        let passed = reader.skip_items(n)?;
        self.line = reader.line();
        self.line_start = reader.line_start;
        if passed < n {
            self.close();
            return Ok((passed, PollStatus::Done));
        }
        Ok((passed, PollStatus::Ready))
    }

    /// Closes a split that will not be read for a while, giving back its
    /// place among the open inputs; the next read opens it again where it
    /// stopped. Does nothing to a whole file, which may be compressed and
    /// could not be opened again in the middle.
    pub fn pause(&mut self) {
        if self.split.is_whole() {
            return;
        }
        if let Some(reader) = self.reader.take() {
            self.paused_at = Some(reader.pos);
            self.slot = None;
        }
    }

    /// Where the line last returned is: `file:line`, or `file@byte N` in a
    /// split that does not start its file (see [`LineReader::location`]).
    pub fn location(&self) -> String {
        location(
            &self.split.path,
            self.split.start,
            self.line,
            self.line_start,
        )
    }

    /// Lines read so far.
    pub fn line(&self) -> u64 {
        self.line
    }

    /// Whether the file is open now: read from, holding one of the
    /// [`MAX_OPEN_INPUTS`] places, and not yet at its end.
    pub fn is_open(&self) -> bool {
        self.reader.is_some()
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.split.path
    }
}

/// `file:line`, or `file@byte N` (where the line starts) in a split that
/// does not start its file.
fn location(path: &Path, split_start: u64, line: u64, line_start: u64) -> String {
    if split_start > 0 {
        format!("{}@byte {line_start}", path.display())
    } else {
        format!("{}:{line}", path.display())
    }
}

/// The lines that lie whole in an [`InputFile`]'s buffer (see
/// [`InputFile::buffered_bytes`]).
pub struct FileLines<'a> {
    lines: Option<BufferedLines<'a>>,
    path: &'a Path,
    split_start: u64,
    /// The file's own count and place of the line last returned.
    line: &'a mut u64,
    line_start: &'a mut u64,
}

/// Each line without its ending, as bytes (not checked to be UTF-8), until
/// the buffer holds no further whole line, or at the split's end.
impl<'a> Iterator for FileLines<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let lines = self.lines.as_mut()?;
        let line = lines.next()?;
        *self.line = *lines.line;
        *self.line_start = *lines.line_start;
        Some(line)
    }
}

impl FileLines<'_> {
    /// Where the line last returned is, as [`InputFile::location`] says.
    pub fn location(&self) -> String {
        location(self.path, self.split_start, *self.line, *self.line_start)
    }
}

/// Most lines one call to [`Partition::skip`] passes, so that resuming a
/// long file does not hold its worker in one activation.
pub const SKIP_CHUNK: u64 = 1 << 16;

/// [`Source::split_of`] for a source whose partitions are `splits`: the
/// file and the split's place in it, for files read in more than one split.
pub fn split_of(splits: &[FileSplit], index: usize) -> Option<(usize, usize)> {
    let split = splits.get(index)?;
    (split.start > 0 || split.end.is_some()).then_some((split.file, split.part))
}

/// Fails unless `path` names a file that exists, so that a source can
/// refuse a missing file when its partition is set up, before opening it.
pub fn check_exists(path: &Path) -> Result<()> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if meta.is_dir() {
        // Only a directory without files stays one (see `input_files`).
        return Err(Error::Config(format!(
            "input directory {} holds no files",
            path.display()
        )));
    }
    Ok(())
}

/// Extracts a record's event time.
type TimeOf<T> = Arc<dyn Fn(&T) -> Option<EventTime> + Send + Sync>;

/// A source of JSON objects, one per line. Each file is a partition, and a
/// large uncompressed file is cut into byte-range splits at line
/// boundaries, each a partition (see [`plan_splits`]), so that it is read by
/// every worker; lateness is judged per partition, so per split. `ts`
/// extracts the event time; a line that does not parse or has no time is a
/// bad record, named `file:line`, or `file@byte N` in a split that does
/// not start its file.
///
/// # Examples
/// ```
/// use keyflow_dataflow::prelude::*;
/// use keyflow_dataflow::testing::Captured;
///
/// #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Deserialize)]
/// struct Click { page: String, ts: u64 }
/// let path = std::env::temp_dir().join(format!("keyflow-jsonl-doc-{}.jsonl", std::process::id()));
/// std::fs::write(&path, "{\"page\":\"/\",\"ts\":5}\nnot json\n").unwrap();
/// let out = Captured::new();
/// let into = out.clone();
/// run(&RunConfig::threads(1), move |flow| {
///     let clicks = JsonLinesSource::new("clicks", vec![path.clone()], |c: &Click| Some(c.ts));
///     flow.source("clicks", clicks, &SourceConfig::default())?.map(|c| c.page).capture(&into);
///     Ok(())
/// })
/// .unwrap();
/// assert_eq!(out.items(), vec![(5, "/".to_string())]); // the bad line is counted and skipped
/// # std::fs::remove_file(std::env::temp_dir().join(format!("keyflow-jsonl-doc-{}.jsonl", std::process::id()))).unwrap();
/// ```
pub struct JsonLinesSource<T> {
    name: String,
    splits: Vec<FileSplit>,
    ts: TimeOf<T>,
    read_ahead: ReadAheadWhen,
    _item: PhantomData<T>,
}

impl<T: DeserializeOwned + Send + 'static> JsonLinesSource<T> {
    /// A source over `files` whose records carry their time as `ts(record)`.
    /// A directory stands for its files (see [`input_files`]). Large
    /// uncompressed files are read in splits (see [`plan_splits`]).
    pub fn new(
        name: &str,
        files: Vec<PathBuf>,
        ts: impl Fn(&T) -> Option<EventTime> + Send + Sync + 'static,
    ) -> Self {
        JsonLinesSource {
            name: name.to_string(),
            splits: plan_splits(&input_files(&files)),
            ts: Arc::new(ts),
            read_ahead: ReadAheadWhen::Never,
            _item: PhantomData,
        }
    }

    /// Reads and parses lines on a thread of its own, beside the worker,
    /// `when` says (by default never; see [`AheadPartition`]). Worth it
    /// where a core would otherwise idle: where workers and sink threads
    /// already keep every core busy it slows the job instead (see
    /// BENCHMARKS.md).
    pub fn read_ahead(mut self, when: ReadAheadWhen) -> Self {
        self.read_ahead = when;
        self
    }
}

/// Parses a line as one JSON object and takes its event time.
pub(super) struct JsonLine<T> {
    pub(super) ts: TimeOf<T>,
}

impl<T: DeserializeOwned + Send + 'static> ParseLine<T> for JsonLine<T> {
    fn parse(&mut self, line: &str) -> std::result::Result<(EventTime, T), String> {
        let item = serde_json::from_str::<T>(line).map_err(|e| e.to_string())?;
        match (self.ts)(&item) {
            Some(ts) => Ok((ts, item)),
            None => Err("record has no event time".to_string()),
        }
    }
}

impl<T: DeserializeOwned + Send + 'static> JsonLinesSource<T> {
    /// The reader of partition `index`, not opened yet.
    pub(super) fn reader(&self, index: usize) -> Result<ParsedLines<JsonLine<T>>> {
        let split = &self.splits[index];
        check_exists(&split.path)?;
        let ts = Arc::clone(&self.ts);
        Ok(ParsedLines::new(split, JsonLine { ts }))
    }
}

impl<T: DeserializeOwned + Send + 'static> Source for JsonLinesSource<T> {
    type Item = T;

    fn name(&self) -> String {
        self.name.clone()
    }

    fn partitions(&self) -> usize {
        self.splits.len()
    }

    fn open(&self, index: usize) -> Result<Box<dyn Partition<T>>> {
        Ok(Box::new(
            AheadPartition::new(self.reader(index)?).read_ahead(self.read_ahead),
        ))
    }

    fn split_of(&self, index: usize) -> Option<(usize, usize)> {
        split_of(&self.splits, index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::gzip::tests::gzip;
    use crate::source::test_file::temp;

    /// Every line of `split` with its location, read one at a time, or
    /// taking `take(i)` lines from the buffer before each line read alone,
    /// and pausing before each read where `pause(i)`.
    fn read_all(
        split: &FileSplit,
        take: impl Fn(usize) -> usize,
        pause: impl Fn(usize) -> bool,
    ) -> Vec<(std::result::Result<Vec<u8>, String>, String)> {
        let mut file = InputFile::split(split);
        let mut got = Vec::new();
        for i in 0.. {
            if pause(i) {
                file.pause();
            }
            let mut lines = file.buffered_bytes();
            for _ in 0..take(i) {
                let Some(line) = lines.next() else { break };
                got.push((Ok(line.to_vec()), lines.location()));
            }
            match file.next_bytes().unwrap() {
                NextLine::Line(line) => {
                    got.push((line.map(<[u8]>::to_vec), file.location()));
                }
                NextLine::End => break,
                NextLine::Wait => panic!("no other file is open"),
            }
        }
        got
    }

    /// Lines taken from the buffer are the lines, locations and splits'
    /// ends that reading one line at a time gives: random files of short,
    /// blank, CRLF and buffer-crossing lines, split at random, read with
    /// pauses that close and reopen the file.
    #[test]
    fn buffered_lines_read_as_single_lines_do() {
        let mut x: u64 = 7;
        let mut next = move |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        for round in 0..12 {
            let mut text = Vec::new();
            while text.len() < 300_000 {
                let len = match next(20) {
                    0 => BUFFER as u64 + next(3000),
                    1 => 0,
                    _ => next(200),
                };
                text.extend((0..len).map(|i| b'a' + (i % 26) as u8));
                text.extend_from_slice(if next(4) == 0 { b"\r\n" } else { b"\n" });
            }
            if round % 2 == 1 {
                text.extend_from_slice(b"no newline at the end");
            }
            let path = temp(&format!("buffered-{round}.jsonl"), &text);
            let split = [text.len() as u64 + 1, 100_000, 30_001][round % 3];
            let seed = next(1000);
            for s in crate::source::plan_splits_at(std::slice::from_ref(&*path), split) {
                let one = read_all(&s, |_| 0, |_| false);
                let mixed = read_all(
                    &s,
                    |i| (i * 7 + seed as usize) % 50,
                    |i| (i * 13 + seed as usize).is_multiple_of(40),
                );
                assert_eq!(one.len(), mixed.len(), "round {round}, {s:?}");
                assert!(one == mixed, "round {round}, {s:?}");
            }
        }
    }

    /// A UTF-8 byte order mark starts no line: a file saved with one,
    /// plain or gzip, read whole or split every way, gives every line once
    /// without it, numbered from 1; a mark later in a file stays.
    #[test]
    fn a_byte_order_mark_is_no_part_of_the_first_line() {
        let text = b"\xef\xbb\xbfa\nbb\n\xef\xbb\xbfc\n";
        let lines: Vec<Vec<u8>> = vec![b"a".to_vec(), b"bb".to_vec(), b"\xef\xbb\xbfc".to_vec()];
        let path = temp("bom.jsonl", text);
        for size in 1..=text.len() as u64 + 1 {
            let mut got = Vec::new();
            for s in crate::source::plan_splits_at(std::slice::from_ref(&*path), size) {
                got.extend(
                    read_all(&s, |_| 0, |_| false)
                        .into_iter()
                        .map(|(l, _)| l.unwrap()),
                );
            }
            if size > BOM.len() as u64 {
                assert_eq!(got, lines, "splits of {size} bytes");
            } else {
                // The first split ends inside the mark and keeps it.
                assert_eq!(got[1..], lines[1..], "splits of {size} bytes");
            }
        }
        let whole = read_all(&FileSplit::whole(path.to_path_buf(), 0), |_| 0, |_| false);
        assert_eq!(
            whole[0],
            (Ok(b"a".to_vec()), format!("{}:1", path.display()))
        );
        let zipped = temp("bom.jsonl.gz", &gzip(text));
        let mut reader = open_lines(&zipped).unwrap();
        let mut got = Vec::new();
        while let Some(line) = reader.next_line().unwrap() {
            got.push(line.unwrap().as_bytes().to_vec());
        }
        assert_eq!(got, lines);
        let mut empty = open_lines(&temp("bom-only.jsonl", BOM)).unwrap();
        assert!(empty.next_line().unwrap().is_none());
    }

    /// UTF-16 text, plain, gzip or as the first of its splits, is refused
    /// with an error that names the file and the encoding; later splits
    /// read from its middle, and the run stops on the first split's error.
    #[test]
    fn utf16_text_is_refused_by_name() {
        let text: Vec<u8> = "\u{feff}{\"a\":1}\n{\"a\":2}\n"
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect();
        let path = temp("utf16.jsonl", &text);
        let zipped = temp("utf16.jsonl.gz", &gzip(&text));
        let big_endian: Vec<u8> = text.chunks(2).flat_map(|p| [p[1], p[0]]).collect();
        let be = temp("utf16be.csv", &big_endian);
        for p in [&*path, &*zipped, &*be] {
            let Err(e) = open_lines(p) else {
                panic!("{} opened", p.display())
            };
            let message = e.to_string();
            assert!(message.contains(&p.display().to_string()), "{message}");
            assert!(message.contains("UTF-16"), "{message}");
        }
        let splits = crate::source::plan_splits_at(std::slice::from_ref(&*path), 8);
        assert!(splits.len() > 1);
        assert!(open_split(&splits[0]).is_err());
    }

    /// A gzip file read as lines: both members, and no error from the zero
    /// padding after them.
    #[test]
    fn a_padded_gzip_file_reads_every_member() {
        let mut bytes = Vec::new();
        for text in [&b"a\nb"[..], b"b\nc\n"] {
            bytes.extend(gzip(text));
        }
        bytes.extend([0; 512]);
        let path = temp("padded.jsonl.gz", &bytes);
        let mut reader = open_lines(&path).unwrap();
        let mut got = Vec::new();
        while let Some(line) = reader.next_line().unwrap() {
            got.push(line.unwrap().to_string());
        }
        assert_eq!(got, ["a", "bb", "c"]);
    }

    /// A split that starts inside a line passes the rest of it, but no
    /// further than its own end: a file of one huge line, split many ways,
    /// is then read about once, not once per split.
    #[test]
    fn a_split_inside_a_long_line_passes_no_further_than_its_end() {
        let mut text = b"a\n".to_vec();
        text.extend(std::iter::repeat_n(b'x', 10_000));
        text.extend_from_slice(b"\nb\n");
        let path = temp("split-pass.jsonl", &text);
        let split = |start, end| FileSplit {
            path: path.to_path_buf(),
            file: 0,
            part: 1,
            start,
            end,
        };
        let mut inside = open_split(&split(100, Some(200))).unwrap();
        assert_eq!(inside.pos, 200);
        assert!(inside.next_line().unwrap().is_none());
        // The long line ends just before this split's end: the line after
        // it starts at the end and is the next split's.
        let mut up_to = open_split(&split(100, Some(10_003))).unwrap();
        assert_eq!(up_to.pos, 10_003);
        assert!(up_to.next_line().unwrap().is_none());
        let mut past = open_split(&split(100, Some(10_004))).unwrap();
        assert_eq!(past.pos, 10_003);
        assert_eq!(past.next_line().unwrap().unwrap().unwrap(), "b");
        assert!(past.next_line().unwrap().is_none());
        let mut last = open_split(&split(100, None)).unwrap();
        assert_eq!(last.next_line().unwrap().unwrap().unwrap(), "b");
    }
}
