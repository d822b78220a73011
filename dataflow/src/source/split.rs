//! Byte-range splits of large uncompressed files, so that one big file is
//! read by every worker.
//!
//! A plain file larger than the split size is cut into equal byte ranges
//! of at most the split size, and at least [`MIN_SPLITS`] of them (none
//! under 1 MiB); each is a partition of its own. Many splits keep the
//! splits that the workers read at the same time close together in the
//! file, and so in event time: with few, large splits, a worker's first
//! split would begin a large fraction of the file ahead of another's, and
//! the windows of the gap would be held until the earlier one caught up.
//! A split owns the lines whose first byte lies in its range: its reader
//! seeks to the range's start, drops the partial line there (the split
//! before reads it, across the boundary), and stops after the line that
//! crosses the range's end. The number and the ranges of the splits depend
//! only on the file's size and the split size, never on the number of
//! workers, so results are the same at any layout. A gzip file cannot be
//! read from the middle and stays one partition.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

/// The split size when [`SPLIT_BYTES_ENV`] is not set: 64 MiB.
pub const DEFAULT_SPLIT_BYTES: u64 = 64 << 20;

/// The environment variable that overrides [`DEFAULT_SPLIT_BYTES`], in
/// bytes. It is meant for tests, which need files of several splits
/// without writing hundreds of megabytes; every process of a run must see
/// the same value.
pub const SPLIT_BYTES_ENV: &str = "KEYFLOW_SPLIT_BYTES";

/// The least split size [`SPLIT_BYTES_ENV`] may set: smaller splits would
/// only multiply partitions (a byte per split would plan a billion for a
/// gigabyte).
pub const MIN_SPLIT_BYTES: u64 = 64 << 10;

/// Fails, naming the value, when [`SPLIT_BYTES_ENV`] is set to anything but
/// a number of bytes of at least [`MIN_SPLIT_BYTES`] ([`split_bytes`] would
/// ignore it), so that a command can refuse it before any work.
///
/// ```
/// assert!(keyflow_dataflow::source::check_split_bytes().is_ok()); // unset
/// ```
pub fn check_split_bytes() -> crate::Result<()> {
    match std::env::var(SPLIT_BYTES_ENV) {
        Err(std::env::VarError::NotPresent) => Ok(()),
        Ok(v) if v.trim().parse::<u64>().is_ok_and(|n| n >= MIN_SPLIT_BYTES) => Ok(()),
        Ok(v) => Err(crate::Error::Config(format!(
            "{SPLIT_BYTES_ENV}={v}: not a number of bytes of at least {MIN_SPLIT_BYTES}"
        ))),
        Err(_) => Err(crate::Error::Config(format!(
            "{SPLIT_BYTES_ENV} is not valid Unicode"
        ))),
    }
}

/// The split size in force: [`SPLIT_BYTES_ENV`] when it holds a number of
/// at least [`MIN_SPLIT_BYTES`], else [`DEFAULT_SPLIT_BYTES`].
pub fn split_bytes() -> u64 {
    std::env::var(SPLIT_BYTES_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|n| *n >= MIN_SPLIT_BYTES)
        .unwrap_or(DEFAULT_SPLIT_BYTES)
}

/// One partition of a file input: a whole file, or a byte range of one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSplit {
    /// The file.
    pub path: PathBuf,
    /// The file's place among the source's files.
    pub file: usize,
    /// The split's place among its file's splits, from 0.
    pub part: usize,
    /// Where the range starts, in bytes: lines that start before it belong
    /// to the split before.
    pub start: u64,
    /// Where the range ends: the split reads every line that starts before
    /// it. `None` reads to the end of the file (a whole file, or a file's
    /// last split).
    pub end: Option<u64>,
}

impl FileSplit {
    /// The whole of `path`, the source's file number `file`.
    pub fn whole(path: PathBuf, file: usize) -> Self {
        FileSplit {
            path,
            file,
            part: 0,
            start: 0,
            end: None,
        }
    }

    /// Whether this split is its whole file (which may be compressed, and
    /// so cannot be opened again in the middle).
    pub fn is_whole(&self) -> bool {
        self.start == 0 && self.end.is_none()
    }
}

/// Whether `path` starts with the gzip magic bytes. A file that cannot be
/// read counts as compressed: it stays whole, and opening it reports why.
fn is_gzip(path: &Path) -> bool {
    let mut head = [0u8; 2];
    match File::open(path).and_then(|mut f| f.read_exact(&mut head)) {
        Ok(()) => head == [0x1f, 0x8b],
        Err(e) => e.kind() != std::io::ErrorKind::UnexpectedEof,
    }
}

/// The fewest splits a file larger than the split size is cut into (unless
/// they would be smaller than 1 MiB, or than the split size if that is
/// smaller).
pub const MIN_SPLITS: u64 = 64;

/// The most splits one file is cut into, whatever the split size: each is
/// a partition with state of its own, so a split size of a few bytes (a
/// library call may ask for 1) must not turn a large file into millions of
/// them. At the default split size a file reaches it at 256 GiB.
pub const MAX_SPLITS: u64 = 4096;

/// The splits of one file of `size` bytes at most `split` bytes each, or
/// [`MAX_SPLITS`] larger ones.
fn ranges(size: u64, split: u64) -> Vec<(u64, Option<u64>)> {
    if size <= split {
        return vec![(0, None)];
    }
    let piece = size
        .div_ceil(MIN_SPLITS)
        .max(split.min(1 << 20))
        .min(split)
        .max(size.div_ceil(MAX_SPLITS));
    let n = size.div_ceil(piece);
    (0..n)
        .map(|i| (i * piece, (i + 1 < n).then_some((i + 1) * piece)))
        .collect()
}

/// The partitions of `files`, split at `split` bytes, in an order that
/// interleaves files: the first split of every file, then the second of
/// every file that has one, and so on. Partition `p` goes to worker
/// `p % peers`, so a worker gets splits spread over each file rather than
/// the start of one file and the end of another, and every worker's event
/// time moves on at about the same pace.
pub fn plan_splits_at(files: &[PathBuf], split: u64) -> Vec<FileSplit> {
    let per_file: Vec<Vec<(u64, Option<u64>)>> = files
        .iter()
        .map(|path| match std::fs::metadata(path) {
            Ok(meta) if meta.is_file() && !is_gzip(path) => ranges(meta.len(), split),
            // Missing, unreadable or compressed: whole, and opening it says
            // what is wrong.
            _ => vec![(0, None)],
        })
        .collect();
    let rounds = per_file.iter().map(Vec::len).max().unwrap_or(0);
    let mut out = Vec::new();
    for part in 0..rounds {
        for (file, splits) in per_file.iter().enumerate() {
            if let Some(&(start, end)) = splits.get(part) {
                out.push(FileSplit {
                    path: files[file].clone(),
                    file,
                    part,
                    start,
                    end,
                });
            }
        }
    }
    out
}

/// [`plan_splits_at`] at the split size in force ([`split_bytes`]).
pub fn plan_splits(files: &[PathBuf]) -> Vec<FileSplit> {
    plan_splits_at(files, split_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::test_file::temp;
    use crate::source::{InputFile, NextLine};

    /// Every split's lines with their locations, in partition order.
    fn read(files: &[PathBuf], split: u64) -> Vec<Vec<(String, String)>> {
        plan_splits_at(files, split)
            .iter()
            .map(|s| {
                let mut file = InputFile::split(s);
                let mut lines = Vec::new();
                while let NextLine::Line(line) = file.next_line().unwrap() {
                    let line = line.unwrap().to_string();
                    lines.push((line, file.location()));
                }
                lines
            })
            .collect()
    }

    fn all_lines(files: &[PathBuf], split: u64) -> Vec<String> {
        let mut parts: Vec<_> = plan_splits_at(files, split)
            .into_iter()
            .zip(read(files, split))
            .collect();
        parts.sort_by_key(|(s, _)| (s.file, s.part));
        parts
            .into_iter()
            .flat_map(|(_, lines)| lines.into_iter().map(|l| l.0))
            .collect()
    }

    #[test]
    fn every_split_size_reads_every_line_once() {
        let text = b"alpha\nbe\n\ngamma gamma\r\ndelta\nlast-without-newline";
        let path = temp("lines.txt", text);
        let want: Vec<String> = String::from_utf8_lossy(text)
            .lines()
            .map(str::to_string)
            .collect();
        for split in 1..=(text.len() as u64 + 2) {
            assert_eq!(
                all_lines(std::slice::from_ref(&path), split),
                want,
                "split {split}"
            );
        }
    }

    #[test]
    fn lines_belong_to_the_split_they_start_in() {
        // Lines start at 0, 4 and 8; splits of 4 bytes start exactly there,
        // of 3 bytes at 0, 3, 6, 9 (the split at 3 owns the line at 4).
        let path = temp("aligned.txt", b"aaa\nbbb\nccc\n");
        let lines = |split| -> Vec<Vec<String>> {
            read(std::slice::from_ref(&path), split)
                .into_iter()
                .map(|p| p.into_iter().map(|l| l.0).collect())
                .collect()
        };
        assert_eq!(lines(4), vec![vec!["aaa"], vec!["bbb"], vec!["ccc"]]);
        assert_eq!(
            lines(3),
            vec![vec!["aaa"], vec!["bbb"], vec!["ccc"], Vec::<&str>::new()]
        );
    }

    #[test]
    fn a_split_with_no_line_start_reads_nothing() {
        let long = format!("{}\nshort\n", "x".repeat(30));
        let path = temp("long-line.txt", long.as_bytes());
        let parts = read(&[path.to_path_buf()], 8);
        assert_eq!(parts.len(), 5);
        assert_eq!(
            parts[0].len(),
            1,
            "the first split reads the long line whole"
        );
        assert!(parts[1].is_empty() && parts[2].is_empty());
        assert_eq!(parts[3][0].0, "short");
        assert!(parts[4].is_empty());
    }

    #[test]
    fn lines_across_the_read_buffer_and_longer_than_it_read_whole() {
        // Lines read in place and lines that run past the 64 KiB buffer
        // (copied) alternate; every one comes back whole, at its place.
        let mut text = String::new();
        let mut want = Vec::new();
        for (i, len) in [70_000, 3, 65_530, 0, 9, 140_000, 1, 65_536, 5]
            .iter()
            .enumerate()
        {
            let line = format!("{i}{}", "x".repeat(*len));
            text.push_str(&line);
            text.push_str(if i % 2 == 0 { "\n" } else { "\r\n" });
            want.push(line);
        }
        let path = temp("buffer.txt", text.as_bytes());
        for split in [1 << 16, 100_000, 1 << 40] {
            assert_eq!(
                all_lines(std::slice::from_ref(&path), split),
                want,
                "{split}"
            );
        }
        let whole = read(std::slice::from_ref(&path), 1 << 40);
        let at = |n: usize| format!("{}:{n}", path.display());
        assert_eq!(whole[0][5].1, at(6));
    }

    #[test]
    fn crlf_lines_split_cleanly() {
        let path = temp("crlf.txt", b"one\r\ntwo\r\nthree\r\n");
        for split in 1..=8 {
            assert_eq!(
                all_lines(std::slice::from_ref(&path), split),
                vec!["one", "two", "three"],
                "split {split}"
            );
        }
    }

    #[test]
    fn small_empty_and_compressed_files_stay_whole() {
        let small = temp("small.txt", b"a\nb\n");
        let empty = temp("empty.txt", b"");
        let gz = temp("data.gz", &[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4]);
        let missing = PathBuf::from("/nonexistent/keyflow-split");
        let plan = plan_splits_at(
            &[small.clone(), empty.clone(), gz.to_path_buf(), missing],
            2,
        );
        assert_eq!(plan.len(), 1 + 1 + 1 + 1 + 1, "{plan:?}");
        assert_eq!((plan[0].start, plan[0].end), (0, Some(2)));
        assert!(plan[1..4].iter().all(|s| s.part == 0 && s.end.is_none()));
        assert_eq!((plan[4].file, plan[4].part, plan[4].start), (0, 1, 2));
        assert_eq!(all_lines(&[empty.to_path_buf()], 2), Vec::<String>::new());
        assert_eq!(plan_splits_at(&[small.to_path_buf()], 100).len(), 1);
    }

    #[test]
    fn splits_interleave_files_and_name_byte_offsets() {
        let a = temp("a.txt", b"a1\na2\na3\n");
        let b = temp("b.txt", b"b1\nb2\n");
        let plan = plan_splits_at(&[a.to_path_buf(), b.to_path_buf()], 3);
        let order: Vec<_> = plan.iter().map(|s| (s.file, s.part)).collect();
        assert_eq!(order, vec![(0, 0), (1, 0), (0, 1), (1, 1), (0, 2)]);
        let parts = read(std::slice::from_ref(&a), 3);
        assert_eq!(parts[0][0].1, format!("{}:1", a.display()));
        assert_eq!(parts[1][0].1, format!("{}@byte 3", a.display()));
    }

    #[test]
    fn a_paused_split_reads_on_where_it_stopped() {
        let path = temp("paused.txt", b"l1\nl2\n\nl4\nl5\nl6\nl7\n");
        for s in plan_splits_at(std::slice::from_ref(&path), 6) {
            let (mut plain, mut paused) = (InputFile::split(&s), InputFile::split(&s));
            loop {
                paused.pause();
                let want = match plain.next_line().unwrap() {
                    NextLine::Line(l) => Some(l.unwrap().to_string()),
                    _ => None,
                };
                let got = match paused.next_line().unwrap() {
                    NextLine::Line(l) => Some(l.unwrap().to_string()),
                    _ => None,
                };
                assert_eq!(got, want, "{s:?}");
                assert_eq!(paused.location(), plain.location());
                if want.is_none() {
                    break;
                }
            }
        }
    }

    #[test]
    fn skipping_passes_the_lines_that_become_items() {
        // Blank lines are no items; a line that is not UTF-8 is a bad one.
        let path = temp("skip.txt", b"a\n\n  \nb\n\xff\nc\nd\n");
        let items = ["a", "b", "\u{fffd}", "c", "d"];
        for n in 0..=items.len() as u64 + 1 {
            let mut file = InputFile::new(path.clone());
            let (passed, _) = file.skip_items(n).unwrap();
            assert_eq!(passed, n.min(items.len() as u64));
            let mut rest = Vec::new();
            while let NextLine::Line(line) = file.next_line().unwrap() {
                match line {
                    Ok(l) if l.trim().is_empty() => {}
                    Ok(l) => rest.push(l.to_string()),
                    Err(_) => rest.push("\u{fffd}".to_string()),
                }
            }
            assert_eq!(rest, items[passed as usize..], "skip {n}");
        }
    }

    #[test]
    fn ranges_cover_the_file() {
        assert_eq!(ranges(10, 4), vec![(0, Some(4)), (4, Some(8)), (8, None)]);
        assert_eq!(ranges(8, 4), vec![(0, Some(4)), (4, None)]);
        assert_eq!(ranges(0, 4), vec![(0, None)]);
        // A large split size still cuts a file above it into many splits,
        // of at least 1 MiB.
        let mib = 1 << 20;
        assert_eq!(ranges(64 * mib, 64 * mib), vec![(0, None)]);
        let r = ranges(185_000_000, 64 * mib);
        assert_eq!(r.len() as u64, MIN_SPLITS);
        assert_eq!(r[1].0, 185_000_000u64.div_ceil(MIN_SPLITS));
        assert_eq!(ranges(65 * mib, 64 * mib).len(), 64);
        assert_eq!(ranges(2 * mib, mib / 2).len(), 4);
        assert_eq!(ranges(100 * 64 * mib, 64 * mib).len(), 100);
        // A tiny split size: no more than MAX_SPLITS, still covering it all.
        let r = ranges(10 * mib + 3, 1);
        assert!((MAX_SPLITS - 8..=MAX_SPLITS).contains(&(r.len() as u64)));
        assert_eq!(r.last().unwrap().1, None);
        assert!(r.windows(2).all(|w| w[0].1 == Some(w[1].0)));
        assert!(r[r.len() - 1].0 < 10 * mib + 3);
        assert_eq!(ranges(500, 1).len(), 500);
    }
}
