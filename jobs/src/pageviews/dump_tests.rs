//! Tests of the dump parser and source, on made-up and on real files.

use std::collections::HashSet;
use std::io::Read;
use std::path::{Path, PathBuf};

use keyflow_dataflow::source::Source;
use keyflow_dataflow::time::{HOUR, MINUTE};

use super::*;

const H2016: u64 = 1_470_009_600_000;
const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../data");

fn data(rel: &str) -> PathBuf {
    let dir = Path::new(DATA);
    assert!(
        dir.is_dir(),
        "the real-data directory {} is missing: the samples ship in the repository under data/",
        dir.display()
    );
    dir.join(rel)
}

/// A file of a test in a directory of its own, removed when dropped.
struct Temp(PathBuf);

impl std::ops::Deref for Temp {
    type Target = PathBuf;
    fn deref(&self) -> &PathBuf {
        &self.0
    }
}

impl Drop for Temp {
    fn drop(&mut self) {
        if let Some(dir) = self.0.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn temp_file(name: &str, bytes: &[u8]) -> Temp {
    let dir = std::env::temp_dir().join(format!("keyflow-dump-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    Temp(path)
}

#[test]
fn parses_four_and_five_fields() {
    let l = parse_dump_line("en.m World_record 330 0", Some(H2016)).unwrap();
    assert_eq!(
        (l.hour_start_ms, l.project, l.title, l.views),
        (H2016, "en.m", "World_record", 330)
    );
    assert_eq!(l.article(), Article::named("en.m", "World_record"));
    // The leading field wins over the file's hour.
    let l = parse_dump_line("20160801-010000 zh-min-nan A%26B 7 12", Some(H2016)).unwrap();
    assert_eq!(
        (l.hour_start_ms, l.project, l.title, l.views),
        (H2016 + HOUR, "zh-min-nan", "A%26B", 7)
    );
}

#[test]
fn rejects_malformed_lines() {
    let cases = [
        ("en A 1", "found 3"),
        ("20160801-000000 en A 1 2 3", "more than 5"),
        ("en A 12a 0", "bad view count `12a`"),
        ("en A +5 0", "bad view count"),
        ("en A -1 0", "bad view count"),
        ("en A 99999999999999999999 0", "bad view count"),
        ("en A 1 x", "bad response size"),
        ("en  1 0", "empty page title"),
        ("\"\" Z11550 1 0", "bad domain code `\"\"`"),
        ("2016080-000000 en A 1 0", "bad hour field"),
        ("20160801-250000 en A 1 0", "bad hour field"),
        ("20160801_000000 en A 1 0", "bad hour field"),
        ("201é001-000000 en A 1 0", "bad hour field"),
        ("", "found 1"),
    ];
    for (line, reason) in cases {
        let err = parse_dump_line(line, Some(H2016)).unwrap_err();
        assert!(err.contains(reason), "{line:?}: {err}");
    }
    let err = parse_dump_line("en A 1 0", None).unwrap_err();
    assert!(err.contains("no hour"), "{err}");
}

#[test]
fn dump_time_end_shifts_back_an_hour() {
    let l = parse_dump_line_with("en A 1 0", Some(H2016), DumpTime::End).unwrap();
    assert_eq!(l.hour_start_ms, H2016 - HOUR);
    let l = parse_dump_line_with("20160801-010000 en A 1 0", None, DumpTime::End).unwrap();
    assert_eq!(l.hour_start_ms, H2016);
    assert!(parse_dump_line_with("en A 1 0", Some(0), DumpTime::End).is_err());
    assert_eq!("end".parse::<DumpTime>(), Ok(DumpTime::End));
    assert!("later".parse::<DumpTime>().is_err());
}

#[test]
fn spreads_views_over_minutes() {
    let spread: Vec<u64> = (0..60).map(|m| minute_views(130, m)).collect();
    assert!(spread[..10].iter().all(|&v| v == 3));
    assert!(spread[10..].iter().all(|&v| v == 2));
    for n in (0..500).chain([1_000_003, u64::MAX]) {
        let sum: u128 = (0..60).map(|m| minute_views(n, m) as u128).sum();
        assert_eq!(sum, n as u128);
    }
}

#[test]
fn finds_the_hour_in_file_names() {
    assert_eq!(
        hour_from_file_name(Path::new("pagecounts-20160801-000000.gz")),
        Some(H2016)
    );
    assert_eq!(
        hour_from_file_name(Path::new("/x/pageviews-20240803-060000.gz")),
        Some(1_722_664_800_000)
    );
    assert_eq!(
        hour_from_file_name(Path::new("pagecounts-20090430-230001")),
        Some(1_241_132_400_000)
    );
    assert_eq!(
        hour_from_file_name(Path::new("pageviews-2024080-060000.gz")),
        None
    );
    assert_eq!(
        hour_from_file_name(Path::new("é-20160801-000000-é")),
        Some(H2016)
    );
    assert_eq!(hour_from_file_name(Path::new("")), None);
}

#[test]
fn emits_minute_by_minute_across_hours() {
    let text = "20160801-010000 en B 2 0\n20160801-000000 en A 61 0\n\n20160801-000000 de C 1 0\n";
    let path = temp_file("multi", text.as_bytes());
    let (records, bad) =
        read_all(&DumpSource::new(vec![path.to_path_buf()], DumpTime::Start)).unwrap();
    assert!(bad.is_empty(), "{bad:?}");
    let got: Vec<(u64, String, u64)> = records
        .iter()
        .map(|(ts, v)| {
            (
                (ts - H2016) / MINUTE,
                v.article.title().into_owned(),
                v.views,
            )
        })
        .collect();
    let mut want = vec![(0, "A".to_string(), 2), (0, "C".into(), 1)];
    want.extend((1..60).map(|m| (m, "A".to_string(), 1)));
    want.extend([(60, "B".to_string(), 1), (61, "B".into(), 1)]);
    assert_eq!(got, want);
}

#[test]
fn bad_lines_are_counted_with_their_location() {
    let mut bytes = b"en A 1 0\nen B x 0\nen \xff 3 0\nen C 0 0\n".to_vec();
    bytes.extend_from_slice(b"en D 2 0 1 2 3\n");
    let path = temp_file("pageviews-20160801-000000", &bytes);
    let (records, bad) = read_all(&DumpSource::new(vec![path.clone()], DumpTime::Start)).unwrap();
    assert_eq!(
        records,
        vec![(H2016, PageView::new(Article::named("en", "A"), 1))]
    );
    let lines: Vec<String> = bad.iter().map(|b| b.location.clone()).collect();
    let at = |n: u32| format!("{}:{n}", path.display());
    assert_eq!(lines, vec![at(2), at(3), at(5)]);
    assert!(bad[1].reason.contains("UTF-8"));
}

#[test]
fn lines_without_any_hour_are_bad_not_a_panic() {
    let path = temp_file(
        "views.txt",
        b"en A 1 0\nen B 2 0\n20160801-000000 en C 1 0\n",
    );
    let (records, bad) =
        read_all(&DumpSource::new(vec![path.to_path_buf()], DumpTime::Start)).unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(bad.len(), 2);
    assert!(bad.iter().all(|b| b.reason.contains("no hour")));
}

#[test]
fn missing_files_fail_naming_them() {
    let missing = PathBuf::from("/nonexistent/pagecounts-20160801-000000.gz");
    let err = DumpSource::new(vec![missing.clone()], DumpTime::Start)
        .open(0)
        .err()
        .unwrap();
    assert!(err.to_string().contains("/nonexistent/pagecounts"), "{err}");
    let err = PageviewSource::from_files(
        InputFormat::Dump,
        &[data("pagecounts-2016-08"), missing],
        DumpTime::Start,
    )
    .unwrap_err();
    assert!(err.to_string().contains("/nonexistent/pagecounts"), "{err}");
}

/// Sums the view column (second from the end in both forms) with a reader
/// of its own, as the oracle.
fn view_column_sum(path: &Path) -> u64 {
    let mut text = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap())
        .read_to_string(&mut text)
        .unwrap();
    text.lines()
        .map(|l| l.split(' ').nth_back(1).unwrap().parse::<u64>().unwrap())
        .sum()
}

#[test]
fn real_pagecounts_file_keeps_every_view() {
    let path = data("pagecounts-2016-08/pagecounts-20160801-000000.gz");
    let (records, bad) = read_all(&DumpSource::new(vec![path.clone()], DumpTime::Start)).unwrap();
    assert!(bad.is_empty(), "{bad:?}");
    let total: u64 = records.iter().map(|(_, v)| v.views).sum();
    assert_eq!(total, view_column_sum(&path));
    assert_eq!(total, 2484);
    assert!(
        records.windows(2).all(|w| w[0].0 <= w[1].0),
        "event time goes back"
    );
    assert!(records
        .iter()
        .all(|(ts, _)| (H2016..H2016 + HOUR).contains(ts) && ts % MINUTE == 0));
}

#[test]
fn real_pagecounts_set_reads_whole() {
    let src = PageviewSource::from_files(
        InputFormat::Dump,
        &[data("pagecounts-2016-08")],
        DumpTime::Start,
    )
    .unwrap();
    assert_eq!(src.partitions(), 48);
    let (records, bad) = read_all(&src).unwrap();
    assert!(bad.is_empty(), "{bad:?}");
    let keys: HashSet<&Article> = records.iter().map(|(_, v)| &v.article).collect();
    assert_eq!(keys.len(), 9_345); // as the data set's README says
    let last = H2016 + 47 * HOUR;
    assert!(records
        .iter()
        .all(|(ts, _)| (H2016..last + HOUR).contains(ts)));
}

#[test]
fn real_pageviews_file_counts_its_malformed_lines() {
    let path = data("pageviews-2024-08/pageviews-20240803-060000.gz");
    let hour = 1_722_664_800_000;
    let (records, bad) = read_all(&DumpSource::new(vec![path.clone()], DumpTime::Start)).unwrap();
    let lines: Vec<&str> = bad
        .iter()
        .map(|b| b.location.rsplit(':').next().unwrap())
        .collect();
    assert_eq!(lines, vec!["549", "978"], "{bad:?}");
    assert!(bad
        .iter()
        .all(|b| b.location.contains("pageviews-20240803-060000.gz")));
    let total: u64 = records.iter().map(|(_, v)| v.views).sum();
    // The two bad lines hold one view each.
    assert_eq!(total, view_column_sum(&path) - 2);
    assert!(records
        .iter()
        .all(|(ts, _)| (hour..hour + HOUR).contains(ts)));
    assert!(records.windows(2).all(|w| w[0].0 <= w[1].0));
    assert!(records
        .iter()
        .any(|(_, v)| v.article == Article::named("fa.m", "چاه\u{200c}کوتاه")));
}

#[test]
fn end_stamps_shift_the_real_file() {
    let path = data("pageviews-2024-08/pageviews-20240803-060000.gz");
    let (records, _) = read_all(&DumpSource::new(vec![path], DumpTime::End)).unwrap();
    let hour = 1_722_664_800_000 - HOUR;
    assert!(records
        .iter()
        .all(|(ts, _)| (hour..hour + HOUR).contains(ts)));
}

#[test]
fn random_lines_never_panic() {
    use rand::{Rng, SeedableRng};
    let alphabet: Vec<char> = "0123456789- ._\"{}:,éあ\u{200c}aenZ".chars().collect();
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    for _ in 0..20_000 {
        let len = rng.gen_range(0..40);
        let line: String = (0..len)
            .map(|_| alphabet[rng.gen_range(0..alphabet.len())])
            .collect();
        for time in [DumpTime::Start, DumpTime::End] {
            let _ = parse_dump_line_with(&line, Some(H2016), time);
            let _ = parse_dump_line_with(&line, None, time);
        }
        let _ = parse_json_line(&line);
        let _ = hour_from_file_name(Path::new(&line));
    }
}
