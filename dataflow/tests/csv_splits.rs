//! Large CSV files read in byte-range splits: the same rows and bad rows as
//! reading the file whole, at every split size, with quoted line breaks,
//! CRLF endings and blank lines; pausing and skipping inside a split; and
//! the same results through the source operator at any worker count.

use std::path::PathBuf;

use serde::Deserialize;

use keyflow_dataflow::prelude::*;
use keyflow_dataflow::source::{Batch, CsvSource, Partition, PollStatus};
use keyflow_dataflow::testing::Captured;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
struct Note {
    user: String,
    text: String,
    ts: u64,
}

/// One item as `poll` returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Item {
    Good(u64, Note),
    Bad(String, String),
}

/// A file of a test, removed when dropped.
struct Temp(PathBuf);

impl Drop for Temp {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn temp(name: &str, text: &str) -> Temp {
    let path =
        std::env::temp_dir().join(format!("keyflow-csv-splits-{}-{name}", std::process::id()));
    std::fs::write(&path, text).unwrap();
    Temp(path)
}

/// Rows with quoted commas, quotes and line breaks, CRLF endings, blank
/// lines, rows of the wrong length and bad times, in time order.
fn text(rows: u64) -> String {
    let mut text = String::from("user,text,ts\n");
    for i in 0..rows {
        let row = match i % 9 {
            0 => format!("u{i},plain,{i}\n"),
            1 => format!("u{i},\"a, b\",{i}\r\n"),
            2 => format!("u{i},\"line one\nline two\n\",{i}\n"),
            3 => format!("\"u{i}\",\"say \"\"hi\"\"\nbye\",{i}\n"),
            4 => format!("u{i},short\n"),
            5 => format!("u{i},\"\n,\n\",later\n"),
            6 => format!("\nu{i},after a blank line,{i}\n"),
            7 => format!("u{i},\"\"\"\",{i}\n"),
            _ => format!("u{i},x\"y,{i}\n"),
        };
        text.push_str(&row);
    }
    text
}

/// How many of the first `rows` rows of [`text`] are bad.
fn bad_rows(rows: u64) -> usize {
    (0..rows).filter(|i| matches!(i % 9, 4 | 5)).count()
}

/// Polls `partition` to its end, `limit` items at a time, pausing it
/// before every poll when `pause` is set.
fn drain(partition: &mut dyn Partition<Note>, limit: usize, pause: bool) -> Vec<Item> {
    let mut items = Vec::new();
    loop {
        if pause {
            partition.pause();
        }
        let mut batch = Batch::new(limit);
        let status = partition.poll(&mut batch).unwrap();
        let mut good: Vec<_> = batch
            .records
            .into_iter()
            .map(|(t, v)| Item::Good(t, v))
            .collect();
        let bad: Vec<_> = batch
            .bad
            .into_iter()
            .map(|b| Item::Bad(b.location, b.reason))
            .collect();
        assert!(limit > 1 || good.len() + bad.len() <= 1);
        good.extend(bad);
        items.extend(good);
        if status == PollStatus::Done {
            return items;
        }
    }
}

/// Every partition's items, one at a time, in partition order.
fn read(src: &CsvSource<Note>, pause: bool) -> Vec<Vec<Item>> {
    (0..src.partitions())
        .map(|p| drain(&mut *src.open(p).unwrap(), 1, pause))
        .collect()
}

/// `path:line` of the row at byte `offset` of `text`.
fn line_of(path: &std::path::Path, text: &str, offset: usize) -> String {
    let line = 1 + text.as_bytes()[..offset]
        .iter()
        .filter(|&&b| b == b'\n')
        .count();
    format!("{}:{line}", path.display())
}

#[test]
fn splits_read_the_rows_of_the_whole_file() {
    let text = text(120);
    let file = temp("rows.csv", &text);
    let whole = read(
        &CsvSource::new("notes", vec![file.0.clone()], "ts").split_size(u64::MAX),
        false,
    );
    assert_eq!(whole.len(), 1);
    let whole = &whole[0];
    let bad = whole.iter().filter(|i| matches!(i, Item::Bad(..))).count();
    assert_eq!(bad, bad_rows(120));
    for size in [5, 16, 61, 100, 257, 1000, 4096] {
        let src = CsvSource::new("notes", vec![file.0.clone()], "ts").split_size(size);
        let parts = read(&src, false);
        assert_eq!(parts.len(), text.len().div_ceil(size as usize), "{size}");
        assert!(parts.iter().filter(|p| !p.is_empty()).count() > 1 || size >= 4096);
        // The same items in the same order; a bad row outside the first
        // split is named by its byte offset, which must be its row's.
        let mut got = Vec::new();
        for (p, items) in parts.into_iter().enumerate() {
            for item in items {
                got.push(match item {
                    Item::Bad(location, reason) if p > 0 => {
                        let at = format!("{}@byte ", file.0.display());
                        let offset: usize = location.strip_prefix(&at).unwrap().parse().unwrap();
                        Item::Bad(line_of(&file.0, &text, offset), reason)
                    }
                    item => item,
                });
            }
        }
        assert_eq!(&got, whole, "split size {size}");
    }
}

#[test]
fn a_paused_or_skipped_split_reads_on_where_it_stopped() {
    let text = text(40);
    let file = temp("paused.csv", &text);
    let src = CsvSource::new("notes", vec![file.0.clone()], "ts").split_size(97);
    let plain = read(&src, false);
    assert_eq!(read(&src, true), plain);
    for (p, items) in plain.iter().enumerate() {
        for n in [0, 1, 3] {
            let mut partition = src.open(p).unwrap();
            let (skipped, _) = partition.skip(n as u64).unwrap();
            assert_eq!(skipped as usize, n.min(items.len()));
            assert_eq!(
                drain(&mut *partition, 1, true),
                items[skipped as usize..],
                "{p} {n}"
            );
        }
    }
}

#[test]
fn a_split_file_gives_the_same_results_at_any_worker_count() {
    let text = text(300);
    let file = temp("workers.csv", &text);
    let run_with = |workers: usize, size: u64| {
        let out = Captured::new();
        let (sink, path) = (out.clone(), file.0.clone());
        run(&RunConfig::threads(workers), move |flow| {
            let input = CsvSource::<Note>::new("notes", vec![path.clone()], "ts").split_size(size);
            flow.source("notes", input, &SourceConfig::default())?
                .capture(&sink);
            Ok(())
        })
        .unwrap();
        out.sorted()
    };
    let whole = run_with(1, u64::MAX);
    assert_eq!(whole.len(), 300 - bad_rows(300));
    for workers in [1, 2, 3] {
        assert_eq!(run_with(workers, 1000), whole, "{workers} workers");
    }
}
