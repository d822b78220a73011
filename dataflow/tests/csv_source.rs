//! The CSV source: headers or positions, delimiters, quoting, event times,
//! bad rows, gzip, empty files and resuming by `skip`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use serde::Deserialize;

use keyflow_dataflow::prelude::*;
use keyflow_dataflow::run::run_with_context;
use keyflow_dataflow::source::{
    Batch, CsvSource, Partition, PollStatus, MAX_LINE_BYTES, MAX_OPEN_INPUTS,
};
use keyflow_dataflow::testing::Captured;

/// A folder of its own for one test, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(test: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "keyflow-csv-{}-{}-{test}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    /// Writes `contents` to `name` in the folder and returns its path.
    fn file(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
struct Click {
    user: String,
    page: String,
    ts: u64,
}

/// One item as `poll` returns it: a record or a bad record's location and
/// reason.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Item<T> {
    Good(u64, T),
    Bad(String, String),
}

/// Polls `partition` to its end, `limit` items at a time, keeping the order
/// of good and bad items (a poll with limit 1 returns one of them).
fn drain<T>(partition: &mut dyn Partition<T>, limit: usize) -> Vec<Item<T>> {
    let mut items = Vec::new();
    loop {
        let mut batch = Batch::new(limit);
        let status = partition.poll(&mut batch).unwrap();
        assert!(limit > 1 || batch.records.len() + batch.bad.len() <= 1);
        items.extend(batch.records.into_iter().map(|(t, v)| Item::Good(t, v)));
        items.extend(
            batch
                .bad
                .into_iter()
                .map(|b| Item::Bad(b.location, b.reason)),
        );
        if status == PollStatus::Done {
            return items;
        }
    }
}

/// Every item of partition 0, one at a time.
fn read_all<T: serde::de::DeserializeOwned + Send + 'static>(src: &CsvSource<T>) -> Vec<Item<T>> {
    drain(&mut *src.open(0).unwrap(), 1)
}

/// The good records of `items`.
fn good<T: Clone>(items: &[Item<T>]) -> Vec<(u64, T)> {
    items
        .iter()
        .filter_map(|i| match i {
            Item::Good(t, v) => Some((*t, v.clone())),
            Item::Bad(..) => None,
        })
        .collect()
}

/// The bad records of `items`, as (location, reason).
fn bad<T>(items: &[Item<T>]) -> Vec<(String, String)> {
    items
        .iter()
        .filter_map(|i| match i {
            Item::Bad(l, r) => Some((l.clone(), r.clone())),
            Item::Good(..) => None,
        })
        .collect()
}

fn click(user: &str, page: &str, ts: u64) -> (u64, Click) {
    (
        ts,
        Click {
            user: user.into(),
            page: page.into(),
            ts,
        },
    )
}

fn at(path: &Path, line: u64) -> String {
    format!("{}:{line}", path.display())
}

#[test]
fn rows_deserialize_by_header_name() {
    let dir = TempDir::new("headers");
    // Columns in another order than the struct's fields, and one more.
    let text = "ts,extra,page,user\n1000,x,/home,ann\n2500,y,/cart,bob\n";
    let path = dir.file("clicks.csv", text);
    let src = CsvSource::<Click>::new("clicks", vec![path.clone()], "ts");
    assert_eq!(src.name(), "clicks");
    assert_eq!(src.partitions(), 1);
    let mut partition = src.open(0).unwrap();
    let items = drain(&mut *partition, 10);
    assert_eq!(
        items,
        vec![
            Item::Good(1000, click("ann", "/home", 1000).1),
            Item::Good(2500, click("bob", "/cart", 2500).1),
        ]
    );
    assert_eq!(partition.offset(), text.len() as u64);
}

#[test]
fn every_file_is_a_partition() {
    let dir = TempDir::new("partitions");
    let a = dir.file("a.csv", "user,page,ts\nann,/a,1\n");
    let b = dir.file("b.csv", "user,page,ts\nbob,/b,2\ncid,/c,3\n");
    let src = CsvSource::<Click>::new("clicks", vec![a, b], "ts");
    assert_eq!(src.partitions(), 2);
    assert_eq!(
        good(&drain(&mut *src.open(1).unwrap(), 10)),
        vec![click("bob", "/b", 2), click("cid", "/c", 3)]
    );
    assert_eq!(
        good(&drain(&mut *src.open(0).unwrap(), 10)),
        vec![click("ann", "/a", 1)]
    );
}

#[test]
fn rows_without_headers_deserialize_by_position() {
    let dir = TempDir::new("positions");
    let path = dir.file("rows.csv", "ann,1000,0.5\nbob,2000,1.25\n");
    let src = CsvSource::<(String, u64, f64)>::without_headers("rows", vec![path], 1);
    let items = read_all(&src);
    assert_eq!(
        good(&items),
        vec![
            (1000, ("ann".to_string(), 1000, 0.5)),
            (2000, ("bob".to_string(), 2000, 1.25)),
        ]
    );

    // The first row is a record too, on line 1.
    let path = dir.file("bad.csv", "ann,never,0.5\nbob,2000,1.25\ncid,3000\n");
    let src = CsvSource::<(String, u64, f64)>::without_headers("rows", vec![path.clone()], 1);
    let items = read_all(&src);
    assert_eq!(good(&items), vec![(2000, ("bob".to_string(), 2000, 1.25))]);
    let lines: Vec<String> = bad(&items).into_iter().map(|(l, _)| l).collect();
    assert_eq!(lines, vec![at(&path, 1), at(&path, 3)]);

    // A struct reads its fields in order when there is no header.
    #[derive(Debug, Clone, PartialEq, Deserialize)]
    struct Row {
        name: String,
        at: u64,
        score: f64,
    }
    let dir2 = TempDir::new("positions-struct");
    let path = dir2.file("rows.csv", "ann,1000,0.5\n");
    let src = CsvSource::<Row>::without_headers("rows", vec![path], 1);
    assert_eq!(
        good(&read_all(&src)),
        vec![(
            1000,
            Row {
                name: "ann".into(),
                at: 1000,
                score: 0.5
            }
        )]
    );
}

#[test]
fn a_time_index_past_the_first_row_is_a_config_error() {
    let dir = TempDir::new("index");
    let path = dir.file("rows.csv", "ann,1000\n");
    let src = CsvSource::<(String, u64)>::without_headers("rows", vec![path.clone()], 2);
    let err = src.open(0).err().expect("index 2 of 2 columns");
    assert!(matches!(err, Error::Config(_)), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("index 2") && text.contains(&path.display().to_string()),
        "{text}"
    );
}

#[test]
fn a_custom_delimiter_splits_fields() {
    let dir = TempDir::new("delimiter");
    let path = dir.file("clicks.tsv", "user\tpage\tts\nann\t/a,b\t7\n");
    let src = CsvSource::<Click>::new("clicks", vec![path.clone()], "ts").delimiter(b'\t');
    assert_eq!(good(&read_all(&src)), vec![click("ann", "/a,b", 7)]);

    let path = dir.file("clicks.ssv", "user;page;ts\nbob;/x;8\n");
    let src = CsvSource::<Click>::new("clicks", vec![path], "ts").delimiter(b';');
    assert_eq!(good(&read_all(&src)), vec![click("bob", "/x", 8)]);

    // Read with the default comma, the tab-separated header is one column
    // and has no `ts`.
    let src = CsvSource::<Click>::new("clicks", vec![dir.0.join("clicks.tsv")], "ts");
    assert!(src.open(0).is_err());
}

#[test]
fn quoted_fields_keep_delimiters_quotes_and_line_breaks() {
    let dir = TempDir::new("quoted");
    let text = concat!(
        "user,page,ts\n",
        "\"Smith, Ann\",\"/search?q=a,b\",1000\n",
        "bob,\"line one\nline two\",2000\n",
        "\"say \"\"hi\"\"\",/q,3000\n",
        "cid,/c,oops\n",
    );
    let path = dir.file("quoted.csv", text);
    let src = CsvSource::<Click>::new("clicks", vec![path.clone()], "ts");
    let items = read_all(&src);
    assert_eq!(
        good(&items),
        vec![
            click("Smith, Ann", "/search?q=a,b", 1000),
            click("bob", "line one\nline two", 2000),
            click("say \"hi\"", "/q", 3000),
        ]
    );
    // The embedded line break counts: the bad row starts on line 6.
    let bad = bad(&items);
    assert_eq!(bad.len(), 1);
    assert_eq!(bad[0].0, at(&path, 6));
}

#[test]
fn crlf_line_endings_and_a_missing_final_newline_are_read() {
    let dir = TempDir::new("crlf");
    let path = dir.file(
        "clicks.csv",
        "user,page,ts\r\nann,/a,1\r\n\r\nbob,\"x\r\ny\",2",
    );
    let src = CsvSource::<Click>::new("clicks", vec![path], "ts");
    let items = read_all(&src);
    assert_eq!(
        good(&items),
        vec![click("ann", "/a", 1), click("bob", "x\r\ny", 2)]
    );
    assert!(bad(&items).is_empty());
}

#[test]
fn rfc3339_times_become_epoch_milliseconds() {
    #[derive(Debug, Clone, PartialEq, Deserialize)]
    struct Reading {
        sensor: String,
        value: f64,
    }
    let dir = TempDir::new("rfc3339");
    let text = concat!(
        "sensor,at,value\n",
        "s1,2024-08-01T00:00:00Z,1.5\n",
        "s2,2024-08-01T00:00:00.250Z,2\n",
        "s3,2024-08-01 00:00:01,3\n",
        "s4,1722470400000,4\n",
        "s5,yesterday,5\n",
    );
    let path = dir.file("readings.csv", text);
    let src = CsvSource::<Reading>::new("readings", vec![path.clone()], "at");
    let items = read_all(&src);
    let times: Vec<(u64, String)> = good(&items)
        .into_iter()
        .map(|(t, r)| (t, r.sensor))
        .collect();
    assert_eq!(
        times,
        vec![
            (1_722_470_400_000, "s1".into()),
            (1_722_470_400_250, "s2".into()),
            (1_722_470_401_000, "s3".into()),
            (1_722_470_400_000, "s4".into()),
        ]
    );
    let bad = bad(&items);
    assert_eq!(bad.len(), 1);
    assert_eq!(bad[0].0, at(&path, 6));
    assert!(bad[0].1.contains("yesterday"), "{}", bad[0].1);
}

#[test]
fn bad_rows_are_reported_with_their_line_and_good_rows_still_arrive() {
    let dir = TempDir::new("bad");
    let text = concat!(
        "user,page,ts\n",
        "ann,/a,1000\n",
        "bob,/b\n",
        "cid,/c,soon\n",
        "dan,/d,\n",
        "eve,/e,-5\n",
        "fay,/f,2000\n",
        "gus,/g,3000,extra\n",
        "hal,/h,99999999999999999999999\n",
        "ivy,/i,4000\n",
    );
    let path = dir.file("clicks.csv", text);
    let src = CsvSource::<Click>::new("clicks", vec![path.clone()], "ts");
    let items = read_all(&src);
    assert_eq!(
        good(&items),
        vec![
            click("ann", "/a", 1000),
            click("fay", "/f", 2000),
            click("ivy", "/i", 4000)
        ]
    );
    let bad = bad(&items);
    let lines: Vec<&str> = bad.iter().map(|(l, _)| l.as_str()).collect();
    let expected: Vec<String> = [3, 4, 5, 6, 8, 9].iter().map(|l| at(&path, *l)).collect();
    assert_eq!(lines, expected);
    let reasons: Vec<&str> = bad.iter().map(|(_, r)| r.as_str()).collect();
    assert!(reasons[0].contains("2 fields") && reasons[0].contains('3'));
    assert!(reasons[1].contains("soon"), "{}", reasons[1]);
    assert!(reasons[2].contains("empty"), "{}", reasons[2]);
    assert!(reasons[3].contains("-5"), "{}", reasons[3]);
    assert!(reasons[4].contains("4 fields"), "{}", reasons[4]);
    assert!(reasons[5].contains("out of range"), "{}", reasons[5]);
    // Items keep the file's order, bad ones included.
    assert!(matches!(&items[1], Item::Bad(l, _) if *l == at(&path, 3)));
}

/// A stray quote makes the rest of a file one field: once a row runs past
/// `MAX_LINE_BYTES` the partition stops with an error that names the file,
/// after handing out the rows before it, instead of reading the file into
/// memory. A header row over the limit fails the source's first check.
#[test]
fn a_row_over_the_limit_stops_the_partition_with_an_error() {
    let dir = TempDir::new("long-row");
    let mut text = b"user,page,ts\nann,/a,1000\nbob,\"/b".to_vec();
    text.extend(std::iter::repeat_n(b'z', MAX_LINE_BYTES + 100));
    text.extend_from_slice(b"\ncid,/c,3000\n");
    let path = dir.file("clicks.csv", &text);
    let src = CsvSource::<Click>::new("clicks", vec![path.clone()], "ts");
    let mut partition = src.open(0).unwrap();
    let mut batch = Batch::new(1);
    assert_eq!(partition.poll(&mut batch).unwrap(), PollStatus::Ready);
    assert_eq!(batch.records, vec![click("ann", "/a", 1000)]);
    let err = partition.poll(&mut Batch::new(10)).unwrap_err().to_string();
    assert!(err.contains("clicks.csv"), "{err}");
    // The row starts after the header and ann's row: at byte 25.
    let over = format!("the row at byte 25 runs over {MAX_LINE_BYTES} bytes");
    assert!(err.contains(&over), "{err}");

    let mut header = b"user,page,\"ts".to_vec();
    header.extend(std::iter::repeat_n(b'z', MAX_LINE_BYTES + 1));
    let path = dir.file("header.csv", &header);
    let err = CsvSource::<Click>::new("clicks", vec![path], "ts")
        .open(0)
        .map(|_| ())
        .unwrap_err()
        .to_string();
    let over = "the row at byte 0 runs over";
    assert!(err.contains("header.csv") && err.contains(over), "{err}");
}

#[test]
fn a_field_that_does_not_deserialize_is_a_bad_record() {
    #[derive(Debug, Clone, PartialEq, Deserialize)]
    struct Sale {
        item: String,
        qty: u32,
        ts: u64,
    }
    let dir = TempDir::new("deserialize");
    let path = dir.file(
        "sales.csv",
        &b"item,qty,ts\npen,2,10\ncup,many,20\n\xff,3,30\n"[..],
    );
    let src = CsvSource::<Sale>::new("sales", vec![path.clone()], "ts");
    let items = read_all(&src);
    assert_eq!(
        good(&items),
        vec![(
            10,
            Sale {
                item: "pen".into(),
                qty: 2,
                ts: 10
            }
        )]
    );
    let bad = bad(&items);
    assert_eq!(bad.len(), 2);
    assert_eq!(bad[0].0, at(&path, 3));
    assert!(bad[0].1.contains("invalid digit"), "{}", bad[0].1);
    assert_eq!(bad[1].0, at(&path, 4));
}

#[test]
fn bad_rows_are_counted_by_the_source_operator() {
    let dir = TempDir::new("operator");
    let text = "user,page,ts\nann,/a,1000\nbob,/b\ncid,/c,x\ndan,/d,3000\n";
    let path = dir.file("clicks.csv", text);
    let run_with = |config: SourceConfig| {
        let out = Captured::new();
        let ctx = Arc::new(Context::new(RunConfig::threads(2)));
        let (sink, path) = (out.clone(), path.clone());
        let result = run_with_context(Arc::clone(&ctx), move |flow| {
            let (sink, path) = (sink.clone(), path.clone());
            let input = CsvSource::<Click>::new("clicks", vec![path], "ts");
            flow.source("clicks", input, &config)?.capture(&sink);
            Ok(())
        });
        (result, out.sorted(), ctx.metrics.snapshot())
    };

    let (result, records, metrics) = run_with(SourceConfig::default());
    result.unwrap();
    assert_eq!(
        records,
        vec![click("ann", "/a", 1000), click("dan", "/d", 3000)]
    );
    assert_eq!(metrics.bad, 2);

    let strict = SourceConfig {
        bad_input: BadInputPolicy::Fail,
        ..SourceConfig::default()
    };
    let (result, _, _) = run_with(strict);
    let text = result.unwrap_err().to_string();
    assert!(text.contains(&at(&path, 3)), "{text}");
}

#[test]
fn a_missing_time_column_is_a_config_error_naming_it_and_the_file() {
    let dir = TempDir::new("missing-column");
    let path = dir.file("clicks.csv", "user,page,time\nann,/a,1\n");
    let src = CsvSource::<Click>::new("clicks", vec![path.clone()], "ts");
    let err = src.open(0).err().expect("no `ts` column");
    assert!(matches!(err, Error::Config(_)), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("`ts`"), "{text}");
    assert!(text.contains(&path.display().to_string()), "{text}");
    assert!(text.contains("user, page, time"), "{text}");

    // Through the source operator, the job fails before reading anything.
    let err = run(&RunConfig::threads(1), move |flow| {
        let path = path.clone();
        let input = CsvSource::<Click>::new("clicks", vec![path], "ts");
        flow.source("input", input, &SourceConfig::default())?;
        Ok(())
    })
    .unwrap_err();
    assert!(err.to_string().contains("`ts`"), "{err}");
}

#[test]
fn a_missing_file_is_an_error_naming_it() {
    let src = CsvSource::<Click>::new("clicks", vec!["/nonexistent/x.csv".into()], "ts");
    let err = src.open(0).err().expect("no such file");
    assert!(err.to_string().contains("/nonexistent/x.csv"), "{err}");
}

#[test]
fn gzip_files_are_read_by_their_magic_bytes() {
    let dir = TempDir::new("gzip");
    let text = "user,page,ts\nann,\"a\nb\",1000\nbob,/b,2000\n";
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(text.as_bytes()).unwrap();
    let bytes = gz.finish().unwrap();
    // No `.gz` in the name: the content decides.
    let path = dir.file("clicks.csv", &bytes);
    let src = CsvSource::<Click>::new("clicks", vec![path], "ts");
    let mut partition = src.open(0).unwrap();
    let items = drain(&mut *partition, 10);
    assert_eq!(
        good(&items),
        vec![click("ann", "a\nb", 1000), click("bob", "/b", 2000)]
    );
    // The offset counts decompressed bytes.
    assert_eq!(partition.offset(), text.len() as u64);
}

#[test]
fn empty_header_only_and_blank_files_have_no_records() {
    let dir = TempDir::new("empty");
    for (name, text) in [
        ("empty.csv", ""),
        ("header.csv", "user,page,ts\n"),
        ("header-no-newline.csv", "user,page,ts"),
        ("blank.csv", "\n\n"),
    ] {
        let path = dir.file(name, text);
        let src = CsvSource::<Click>::new("clicks", vec![path], "ts");
        let mut partition = src.open(0).unwrap();
        // Another test may hold every place for open files for a while, so
        // the first poll may find the file waiting.
        assert!(drain(&mut *partition, 10).is_empty(), "{name}");
        // Polling again after the end stays done.
        let mut batch = Batch::new(10);
        assert_eq!(partition.poll(&mut batch).unwrap(), PollStatus::Done);
        assert!(batch.records.is_empty() && batch.bad.is_empty(), "{name}");
    }
    let src = CsvSource::<(String, u64)>::without_headers(
        "rows",
        vec![dir.file("empty-rows.csv", "")],
        1,
    );
    assert!(read_all(&src).is_empty());
}

#[test]
fn a_trailing_newline_adds_no_record() {
    let dir = TempDir::new("trailing");
    let with = dir.file("with.csv", "user,page,ts\nann,/a,1\n\n");
    let without = dir.file("without.csv", "user,page,ts\nann,/a,1");
    for path in [with, without] {
        let src = CsvSource::<Click>::new("clicks", vec![path], "ts");
        assert_eq!(read_all(&src), vec![Item::Good(1, click("ann", "/a", 1).1)]);
    }
}

#[test]
fn a_utf8_bom_before_the_header_is_ignored() {
    let dir = TempDir::new("bom");
    let path = dir.file("clicks.csv", "\u{feff}ts,user,page\n5,ann,/a\n");
    let src = CsvSource::<Click>::new("clicks", vec![path], "ts");
    assert_eq!(read_all(&src), vec![Item::Good(5, click("ann", "/a", 5).1)]);

    // Also without a header, and inside gzip.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all("\u{feff}ann,5\n".as_bytes()).unwrap();
    let path = dir.file("rows.csv.gz", gz.finish().unwrap());
    let src = CsvSource::<(String, u64)>::without_headers("rows", vec![path], 1);
    assert_eq!(read_all(&src), vec![Item::Good(5, ("ann".to_string(), 5))]);

    // A file that holds only the mark has no rows.
    let path = dir.file("bom-only.csv", "\u{feff}");
    let src = CsvSource::<Click>::new("clicks", vec![path], "ts");
    assert!(read_all(&src).is_empty());
}

#[test]
fn skip_resumes_exactly_where_reading_from_the_start_would_be() {
    let dir = TempDir::new("skip");
    let text = concat!(
        "user,page,ts\n",
        "a,/1,1\n",
        "b,/2\n",
        "c,\"/3\nstill 3\",3\n",
        "\n",
        "d,/4,x\n",
        "e,/5,5\n",
        "f,/6,6,6\n",
        "g,/7,7\n",
    );
    let path = dir.file("clicks.csv", text);
    let src = CsvSource::<Click>::new("clicks", vec![path], "ts");
    let full = read_all(&src);
    assert_eq!(full.len(), 7);
    assert_eq!(good(&full).len(), 4);
    for n in 0..=full.len() as u64 + 2 {
        let mut partition = src.open(0).unwrap();
        let mut skipped = 0;
        let mut status = PollStatus::Ready;
        while skipped < n && status != PollStatus::Done {
            let (k, s) = partition.skip(n - skipped).unwrap();
            skipped += k;
            status = s;
        }
        assert_eq!(skipped, n.min(full.len() as u64), "n={n}");
        let rest = if status == PollStatus::Done {
            Vec::new()
        } else {
            drain(&mut *partition, 1)
        };
        assert_eq!(rest, full[skipped as usize..].to_vec(), "n={n}");
    }
}

#[test]
fn more_files_than_may_be_open_are_all_read() {
    let dir = TempDir::new("many");
    let count = MAX_OPEN_INPUTS + 6;
    let files: Vec<PathBuf> = (0..count)
        .map(|i| {
            dir.file(
                &format!("{i}.csv"),
                format!("user,page,ts\nu{i},/p,{i}\nx,/y,0\n"),
            )
        })
        .collect();
    let src = CsvSource::<Click>::new("clicks", files, "ts");
    let mut partitions: Vec<_> = (0..count).map(|i| src.open(i).unwrap()).collect();
    // One row from each: the files stay open, so some must wait.
    let mut waited = 0;
    let mut rows = Vec::new();
    for p in partitions.iter_mut() {
        let mut batch = Batch::new(1);
        assert_eq!(p.poll(&mut batch).unwrap(), PollStatus::Ready);
        if batch.records.is_empty() {
            waited += 1;
        }
        rows.extend(batch.records);
    }
    assert!(waited >= count - MAX_OPEN_INPUTS, "waited={waited}");
    for p in partitions.iter_mut() {
        rows.extend(good(&drain(&mut **p, 10)));
    }
    let mut firsts: Vec<String> = rows
        .into_iter()
        .filter(|(_, c)| c.user != "x")
        .map(|(_, c)| c.user)
        .collect();
    firsts.sort();
    let mut expected: Vec<String> = (0..count).map(|i| format!("u{i}")).collect();
    expected.sort();
    assert_eq!(firsts, expected);
}
