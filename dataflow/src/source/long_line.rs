//! Lines that run past a reader's buffer, read with a bound on what is
//! kept: a file without line breaks (a binary file, a wrong format, one
//! huge record) must not fill memory.

use std::io::{BufRead, ErrorKind, Read};

/// The most bytes a line of a file source may have, its ending included
/// (16 MiB). A longer line is a bad record, which `--bad-input` drops or
/// fails on; it is read through to its end without being kept, so the
/// lines after it, and the positions that splits and checkpoints record,
/// are the same as if it had been read whole. A CSV row over it stops its
/// partition with an error instead: a quoted field may span lines, so
/// after such a row no row start can be trusted.
pub const MAX_LINE_BYTES: usize = 16 << 20;

/// A CSV file's bytes, cut off with an error once a row runs over
/// [`MAX_LINE_BYTES`]: a quoted field may hold line breaks, so a stray quote
/// makes the rest of the file one field, and no later row start can be
/// trusted. The reader's partition marks where each row ends.
pub(crate) struct RowBound {
    inner: Box<dyn Read + Send>,
    /// The file offset of this input's first byte (of the decompressed
    /// bytes, for gzip).
    base: u64,
    /// Bytes handed to the CSV reader so far.
    read: u64,
    /// Where the last complete row ended, in the same bytes.
    row_end: u64,
}

impl RowBound {
    /// `inner`, whose first byte is at file offset `base`.
    pub(crate) fn new(inner: Box<dyn Read + Send>, base: u64) -> Self {
        RowBound {
            inner,
            base,
            read: 0,
            row_end: 0,
        }
    }

    /// Notes that the rows read so far end at byte `at` of this input.
    pub(crate) fn row_ended(&mut self, at: u64) {
        self.row_end = at;
    }
}

impl Read for RowBound {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        // The CSV reader reads again only once it has parsed everything it
        // read: all of it since the last row's end is the current row.
        if self.read.saturating_sub(self.row_end) > MAX_LINE_BYTES as u64 {
            return Err(std::io::Error::new(
                ErrorKind::InvalidData,
                format!(
                    "the row at byte {} runs over {MAX_LINE_BYTES} bytes (an unclosed \
                     quote?); the rows after it cannot be found",
                    self.base + self.row_end
                ),
            ));
        }
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        Ok(n)
    }
}

/// Appends the rest of a line (through its newline, or to the end of the
/// input) to `kept` while `kept` stays within `limit` bytes; past that,
/// reads through the line without keeping it, and empties `kept`. Returns
/// the bytes read, and whether the line was over `limit`. Unlike
/// `read_until`, a file without line breaks never fills memory.
///
/// ```
/// use keyflow_dataflow::source::read_line_within;
/// let mut input = &b"short\na line too long\nend"[..];
/// let mut line = Vec::new();
/// assert_eq!(read_line_within(&mut input, &mut line, 8).unwrap(), (6, false));
/// assert_eq!(line, b"short\n");
/// line.clear();
/// assert_eq!(read_line_within(&mut input, &mut line, 8).unwrap(), (16, true));
/// assert!(line.is_empty());
/// assert_eq!(read_line_within(&mut input, &mut line, 8).unwrap(), (3, false));
/// assert_eq!(line, b"end");
/// ```
pub fn read_line_within(
    input: &mut impl BufRead,
    kept: &mut Vec<u8>,
    limit: usize,
) -> std::io::Result<(usize, bool)> {
    let mut read = 0;
    let mut over = false;
    loop {
        let ahead = match input.fill_buf() {
            Ok(ahead) => ahead,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if ahead.is_empty() {
            return Ok((read, over));
        }
        let (take, ended) = match memchr::memchr(b'\n', ahead) {
            Some(newline) => (newline + 1, true),
            None => (ahead.len(), false),
        };
        if !over && kept.len() + take <= limit {
            kept.extend_from_slice(&ahead[..take]);
        } else if !over {
            over = true;
            // What was kept is of no use: give its memory back.
            *kept = Vec::new();
        }
        input.consume(take);
        read += take;
        if ended {
            return Ok((read, over));
        }
    }
}

/// Reads through the next newline (or to the end of the input) without
/// keeping anything; returns the bytes read.
pub(crate) fn pass_line(input: &mut impl BufRead) -> std::io::Result<usize> {
    let mut nothing = Vec::new();
    read_line_within(input, &mut nothing, 0).map(|(read, _)| read)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufReader;

    /// Splits `text` as `read_until(b'\n')` does, each line kept only when
    /// within `limit`.
    fn plain(text: &[u8], limit: usize) -> Vec<(usize, Option<Vec<u8>>)> {
        text.split_inclusive(|&b| b == b'\n')
            .map(|line| (line.len(), (line.len() <= limit).then(|| line.to_vec())))
            .collect()
    }

    #[test]
    fn reads_what_read_until_reads_and_keeps_lines_within_the_limit() {
        let mut x: u64 = 11;
        for round in 0..200 {
            // Lines of 0 to 40 bytes, the last one without a newline in
            // odd rounds, through buffers of 1 to 16 bytes.
            let mut text = Vec::new();
            for _ in 0..(round % 9) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                text.extend(std::iter::repeat_n(b'a', (x % 41) as usize));
                text.push(b'\n');
            }
            if round % 2 == 1 {
                text.extend_from_slice(b"tail");
            }
            let limit = (x >> 8) as usize % 30;
            let mut input = BufReader::with_capacity(1 + round % 16, &text[..]);
            let mut got = Vec::new();
            loop {
                let mut kept = Vec::new();
                let (read, over) = read_line_within(&mut input, &mut kept, limit).unwrap();
                if read == 0 {
                    break;
                }
                assert_eq!(over, read > limit);
                assert_eq!(kept.is_empty(), over);
                got.push((read, (!over).then_some(kept)));
            }
            assert_eq!(got, plain(&text, limit), "round {round}");
        }
    }

    /// A file with lines over the limit, read whole and from a split that
    /// starts inside one: each long line is one bad item at its place, and
    /// the lines around it read as they are.
    #[test]
    fn a_file_source_reads_past_lines_over_the_limit() {
        use crate::source::test_file::temp;
        use crate::source::{FileSplit, InputFile, NextLine};
        let mut text = b"first\n".to_vec();
        text.extend(std::iter::repeat_n(b'x', MAX_LINE_BYTES + 10));
        text.extend_from_slice(b"\nthird\n");
        // Over by one byte, and no newline at the end.
        text.extend(std::iter::repeat_n(b'y', MAX_LINE_BYTES + 1));
        let path = temp("long.jsonl", &text);
        let read = |mut file: InputFile| {
            let mut lines = Vec::new();
            while let NextLine::Line(line) = file.next_line().unwrap() {
                let line = line
                    .map(str::to_string)
                    .map_err(|e| e.contains("more than"));
                lines.push((line, file.location()));
            }
            lines
        };
        let at = |line: u64| format!("{}:{line}", path.display());
        assert_eq!(
            read(InputFile::new(path.to_path_buf())),
            vec![
                (Ok("first".to_string()), at(1)),
                (Err(true), at(2)),
                (Ok("third".to_string()), at(3)),
                (Err(true), at(4)),
            ]
        );
        // A split that starts inside the first long line reads from the
        // line after it; its last long line is its own.
        let split = FileSplit {
            path: path.to_path_buf(),
            file: 0,
            part: 1,
            start: 100,
            end: None,
        };
        let third = (6 + MAX_LINE_BYTES + 11) as u64;
        assert_eq!(
            read(InputFile::split(&split)),
            vec![
                (
                    Ok("third".to_string()),
                    format!("{}@byte {third}", path.display())
                ),
                (Err(true), format!("{}@byte {}", path.display(), third + 6)),
            ]
        );
        let mut file = InputFile::new(path.to_path_buf());
        assert_eq!(file.skip_items(10).unwrap().0, 4);
    }

    #[test]
    fn passes_a_line_without_keeping_it() {
        let mut input = BufReader::with_capacity(4, &b"a long first line\nsecond\n"[..]);
        assert_eq!(pass_line(&mut input).unwrap(), 18);
        let mut rest = String::new();
        input.read_line(&mut rest).unwrap();
        assert_eq!(rest, "second\n");
        assert_eq!(pass_line(&mut input).unwrap(), 0);
    }
}
