//! Byte-range splits of large CSV files, cut where rows start.
//!
//! A quoted CSV field may hold line breaks, so a newline found by seeking
//! into the middle of a file may lie inside a field. The splits of a CSV
//! file therefore start at exact row starts, found before any split is
//! read: one pass over the file tracks whether each byte is inside a quoted
//! field, the way the CSV reader decides it (a quote opens a quoted field
//! only at the start of a field; inside one, two quotes are one quote and a
//! lone quote closes it), and each split starts just after the first
//! newline outside quotes at or after its nominal start (where
//! [`plan_splits_at`] starts the splits of line files). The pass jumps
//! from quote to quote with `memchr`, so a file without quotes costs about
//! a read of it. A split then reads exactly its byte range.
//!
//! The number of splits depends only on the file's size and the split
//! size; where no row starts between two nominal starts, a split is empty.
//! Plans are kept per process, so workers that build the same source scan
//! the file once.

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::SystemTime;

use super::jsonl::BOM;
use super::split::{plan_splits_at, FileSplit};

/// The bytes read per step of the scan.
const CHUNK: usize = 1 << 20;

/// Whether the scan is inside a quoted field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Quoting {
    /// Outside quotes: a newline ends a row.
    Out,
    /// Inside a quoted field.
    In,
    /// Inside a quoted field, just after a quote that was the last byte of
    /// the previous chunk: the next byte decides whether it was one of two.
    InAfterQuote,
}

/// The scan of one file for the row starts at or after each of `starts`
/// (sorted).
struct Scan<'a> {
    delimiter: u8,
    starts: &'a [u64],
    found: Vec<u64>,
    quoting: Quoting,
    /// The byte before the chunk being scanned (a newline before the
    /// file's first byte: the start of a field).
    prev: u8,
}

impl Scan<'_> {
    /// Whether a quote after `prev` starts a field, and so opens quotes.
    fn at_field_start(&self, prev: u8) -> bool {
        prev == self.delimiter || prev == b'\n' || prev == b'\r'
    }

    /// Scans `buf`, the bytes from offset `base`. Returns whether every
    /// start has its row start.
    fn chunk(&mut self, base: u64, buf: &[u8]) -> bool {
        let mut i = 0;
        if self.quoting == Quoting::InAfterQuote {
            if buf.first() == Some(&b'"') {
                self.quoting = Quoting::In;
                i = 1;
            } else {
                self.quoting = Quoting::Out;
            }
        }
        while i < buf.len() {
            if self.quoting != Quoting::Out {
                let Some(q) = memchr::memchr(b'"', &buf[i..]) else {
                    break;
                };
                let q = i + q;
                match buf.get(q + 1) {
                    Some(b'"') => i = q + 2,
                    Some(_) => {
                        self.quoting = Quoting::Out;
                        i = q + 1;
                    }
                    None => {
                        self.quoting = Quoting::InAfterQuote;
                        i = buf.len();
                    }
                }
                continue;
            }
            let quote = memchr::memchr(b'"', &buf[i..]).map_or(buf.len(), |q| i + q);
            // Outside quotes from `i` up to the quote: the first newline at
            // or after a start's byte before it ends the row before.
            while let Some(&start) = self.starts.get(self.found.len()) {
                let from = (start.saturating_sub(1).max(base + i as u64) - base) as usize;
                if from >= quote {
                    break;
                }
                match memchr::memchr(b'\n', &buf[from..quote]) {
                    Some(n) => self.found.push(base + (from + n) as u64 + 1),
                    None => break,
                }
            }
            if self.found.len() == self.starts.len() {
                return true;
            }
            if quote < buf.len() {
                let prev = if quote == 0 {
                    self.prev
                } else {
                    buf[quote - 1]
                };
                if self.at_field_start(prev) {
                    self.quoting = Quoting::In;
                }
            }
            i = quote + 1;
        }
        if let Some(&last) = buf.last() {
            self.prev = last;
        }
        self.found.len() == self.starts.len()
    }
}

/// For each of `starts` (sorted offsets), the offset of the first row of
/// the CSV file at `path` that starts at or after it: just after a newline
/// outside quotes, or the file's size if no row starts there.
pub(super) fn row_starts(path: &Path, starts: &[u64], delimiter: u8) -> std::io::Result<Vec<u64>> {
    let mut file = File::open(path)?;
    let mut scan = Scan {
        delimiter,
        starts,
        found: Vec::with_capacity(starts.len()),
        quoting: Quoting::Out,
        prev: b'\n',
    };
    let mut buf = vec![0u8; CHUNK];
    let mut base = 0u64;
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let mut chunk = &buf[..n];
        if base == 0 && chunk.starts_with(BOM) {
            // The reader drops it: the first field starts after it.
            chunk = &chunk[BOM.len()..];
            base = BOM.len() as u64;
        }
        if scan.chunk(base, chunk) {
            return Ok(scan.found);
        }
        base += chunk.len() as u64;
    }
    let mut found = scan.found;
    found.resize(starts.len(), base);
    Ok(found)
}

/// What a plan depends on: the file as it is now, the delimiter and the
/// split size.
type PlanKey = (PathBuf, u64, Option<SystemTime>, u8, u64);

/// The splits of `files` for CSV, as [`plan_splits_at`] orders them, with
/// every split of a file cut into several starting at a row start (see the
/// module's notes). A file that cannot be scanned, or a delimiter that is
/// a quote or a line break, leaves the file whole.
pub(super) fn plan_csv_splits(files: &[PathBuf], split: u64, delimiter: u8) -> Vec<FileSplit> {
    static PLANS: OnceLock<Mutex<HashMap<PlanKey, Vec<u64>>>> = OnceLock::new();
    let mut plan = plan_splits_at(files, split);
    let splittable = !matches!(delimiter, b'"' | b'\n' | b'\r');
    for (file, path) in files.iter().enumerate() {
        let nominal: Vec<u64> = plan
            .iter()
            .filter(|s| s.file == file && s.part > 0)
            .map(|s| s.start)
            .collect();
        if nominal.is_empty() {
            continue;
        }
        let starts = splittable
            .then(|| {
                let meta = std::fs::metadata(path).ok()?;
                let key = (
                    path.clone(),
                    meta.len(),
                    meta.modified().ok(),
                    delimiter,
                    split,
                );
                // Held while scanning: the other workers of the process
                // wait for this plan instead of scanning the file too.
                let mut plans = PLANS.get_or_init(Default::default).lock().ok()?;
                if let Some(found) = plans.get(&key) {
                    return Some(found.clone());
                }
                let found = row_starts(path, &nominal, delimiter).ok()?;
                plans.insert(key, found.clone());
                Some(found)
            })
            .flatten();
        let splits = plan.iter_mut().filter(|s| s.file == file);
        match starts {
            Some(starts) => {
                // Split `p` starts at row start `p - 1` of the scan and
                // ends where the next starts.
                for s in splits {
                    if s.part > 0 {
                        s.start = starts[s.part - 1];
                    }
                    s.end = starts.get(s.part).copied();
                }
            }
            None => {
                // Whole: the first split reads it all, the others nothing.
                for s in splits {
                    (s.start, s.end) = if s.part == 0 { (0, None) } else { (0, Some(0)) };
                }
            }
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::test_file::temp;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    /// Every record of `bytes` as the CSV reader reads it.
    fn records(bytes: &[u8], delimiter: u8) -> Vec<Vec<Vec<u8>>> {
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .delimiter(delimiter)
            .from_reader(bytes);
        reader
            .byte_records()
            .map(|r| r.unwrap().iter().map(<[u8]>::to_vec).collect())
            .collect()
    }

    /// Checks that reading every split's bytes on its own gives the file's
    /// records, at every split size.
    fn check(name: &str, bytes: &[u8], delimiter: u8) {
        let path = temp(&format!("csv-split-{name}"), bytes);
        let whole = records(bytes, delimiter);
        for split in 1..=bytes.len() as u64 + 1 {
            let plan = plan_csv_splits(std::slice::from_ref(&*path), split, delimiter);
            assert_eq!(
                plan.len() as u64,
                (bytes.len() as u64).div_ceil(split).max(1)
            );
            let mut got = Vec::new();
            for s in &plan {
                let end = s.end.map_or(bytes.len(), |e| e as usize);
                assert!(s.start as usize <= end, "{s:?}");
                got.extend(records(&bytes[s.start as usize..end], delimiter));
            }
            assert_eq!(
                got,
                whole,
                "{name} at split {split}: {:?}",
                String::from_utf8_lossy(bytes)
            );
        }
    }

    #[test]
    fn splits_read_apart_give_the_records_of_the_whole_file() {
        check("plain.csv", b"a,b\n1,2\n3,4\n", b',');
        check(
            "quoted-newlines.csv",
            b"a,b\n\"x\ny\",2\n\"\"\"\n\",4\nz,\"\n\"\n",
            b',',
        );
        check("crlf.csv", b"a,b\r\n1,\"2\r\n3\"\r\n\r\n4,5\r\n", b',');
        check(
            "literal-quotes.csv",
            b"a\"b,c\nd,e\"\nf\n\"g\"h\"\ni\n",
            b',',
        );
        check("bom.csv", b"\xef\xbb\xbf\"a\nb\",c\nd,e\n", b',');
        check("tabs.tsv", b"a\t\"b\nc\"\n\"d\"\te\n", b'\t');
        check("no-newline-at-end.csv", b"a,b\n\"c\nd\"", b',');
    }

    #[test]
    fn random_files_with_quotes_and_line_breaks_split_exactly() {
        let mut rng = StdRng::seed_from_u64(11);
        let alphabet = [b'a', b',', b'"', b'\n', b'\r', b';'];
        for round in 0..300 {
            let len = rng.gen_range(0..60);
            let bytes: Vec<u8> = (0..len)
                .map(|_| alphabet[rng.gen_range(0..alphabet.len())])
                .collect();
            let delimiter = if round % 3 == 0 { b';' } else { b',' };
            check(&format!("random-{round}.csv"), &bytes, delimiter);
        }
    }

    #[test]
    fn quotes_across_read_chunks_are_followed() {
        // A quoted field whose closing quote ends a chunk, and an escaped
        // quote pair cut by the chunk's end.
        let mut text = vec![b'"'];
        text.resize(CHUNK - 1, b'x');
        text.extend_from_slice(b"\"\"\ny\"\nnext,row\n");
        let path = temp("csv-split-chunks.csv", &text);
        let starts = row_starts(&path, &[1, CHUNK as u64 + 2], b',').unwrap();
        let end = text.len() as u64;
        assert_eq!(starts, vec![end - 9, end - 9]);
    }

    #[test]
    fn a_quote_delimiter_or_an_unreadable_file_stays_whole() {
        let path = temp("csv-split-whole.csv", b"a\"b\"c\nd\"e\"f\n");
        let plan = plan_csv_splits(std::slice::from_ref(&*path), 4, b'"');
        assert_eq!((plan[0].start, plan[0].end), (0, None));
        assert!(plan[1..].iter().all(|s| s.end == Some(0)));
    }
}
