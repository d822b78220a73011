//! Golden-file tests of the trending job on real Wikimedia dumps and on the
//! built-in generator: the binary's `--out` and `--hourly-out` must match
//! committed files under `tests/golden/`, byte for byte, at 1 and at 4
//! workers.
//!
//! Provenance: every golden file is written by the brute-force oracle of
//! `trending_support` (never by the binary), and each test also checks that
//! the oracle still reproduces the committed file. Regenerate with
//!
//! ```text
//! KEYFLOW_BLESS=1 cargo test --test trending_golden
//! ```
//!
//! which also rewrites the derived fixture under
//! `tests/fixtures/pagecounts-2016-08-subset/` from `data/`.

mod trending_support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use trending_support::*;

const LIMIT: Duration = Duration::from_secs(180);

/// The hours of 2016-08-01 the dump tests replay.
const HOURS: [u32; 4] = [10, 11, 12, 13];

/// The generator settings of the generator golden files.
const GENERATOR: [&str; 10] = [
    "--articles",
    "500",
    "--rate",
    "100",
    "--duration",
    "90m",
    "--seed",
    "7",
    "--top",
    "5",
];

fn sample_dump(hour: u32) -> PathBuf {
    sample_data(&format!(
        "pagecounts-2016-08/pagecounts-20160801-{hour:02}0000.gz"
    ))
}

/// The derived fixture: the lines of the four hours with at least 3 views,
/// as plain text. The first two hours keep the leading hour field (5
/// fields); the last two drop it, so that the hour comes from the file name
/// (the official 4-field form).
fn derive_fixture() -> BTreeMap<String, String> {
    HOURS
        .iter()
        .enumerate()
        .map(|(i, &hour)| {
            let text: String = read_text(&sample_dump(hour))
                .lines()
                .filter_map(|line| {
                    let f: Vec<&str> = line.split(' ').collect();
                    assert_eq!(f.len(), 5, "unexpected sample data line {line:?}");
                    let views: u64 = f[3].parse().ok()?;
                    (views >= 3).then(|| {
                        let kept = if i < 2 { &f[..] } else { &f[1..] };
                        kept.join(" ") + "\n"
                    })
                })
                .collect();
            (format!("pagecounts-20160801-{hour:02}0000"), text)
        })
        .collect()
}

fn fixture_dir() -> PathBuf {
    tests_dir("fixtures/pagecounts-2016-08-subset")
}

/// The fixture's files, (re)written first when blessing (once per run).
fn fixture_files() -> &'static [PathBuf] {
    static FILES: OnceLock<Vec<PathBuf>> = OnceLock::new();
    FILES.get_or_init(|| {
        let dir = fixture_dir();
        if blessing() {
            std::fs::create_dir_all(&dir).unwrap();
            for (name, text) in derive_fixture() {
                std::fs::write(dir.join(name), text).unwrap();
            }
        }
        let files: Vec<PathBuf> = HOURS
            .iter()
            .map(|h| dir.join(format!("pagecounts-20160801-{h:02}0000")))
            .collect();
        for f in &files {
            assert!(
                f.exists(),
                "fixture {} is missing; KEYFLOW_BLESS=1 recreates it",
                f.display()
            );
        }
        files
    })
}

/// Checks (or, when blessing, writes) one golden file.
fn golden_text(rel: &str, expected: &str) {
    let path = tests_dir("golden").join(rel);
    if blessing() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, expected).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "golden file {}: {e}; KEYFLOW_BLESS=1 creates it",
            path.display()
        )
    });
    let single = BTreeMap::from([(rel.to_string(), expected.to_string())]);
    let found = BTreeMap::from([(rel.to_string(), committed)]);
    assert_files_eq(
        "the oracle no longer reproduces the golden file",
        &single,
        &found,
    );
}

/// Checks (or writes) a golden directory of hourly files.
fn golden_dir(rel: &str, expected: &BTreeMap<String, String>) -> PathBuf {
    let dir = tests_dir("golden").join(rel);
    if blessing() {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for (name, text) in expected {
            std::fs::write(dir.join(name), text).unwrap();
        }
    }
    assert!(
        dir.is_dir(),
        "golden directory {} is missing; KEYFLOW_BLESS=1 creates it",
        dir.display()
    );
    assert_files_eq(
        "the oracle no longer reproduces the golden hourly files",
        expected,
        &read_dir_files(&dir),
    );
    dir
}

/// Runs the job at 1 and 4 workers with `args` plus `--out` and
/// `--hourly-out`; checks that both runs agree byte for byte and match the
/// golden `out` text and `hourly` files. Returns the summary of the first run.
fn run_against_golden(
    what: &str,
    args: &[String],
    golden_out: &str,
    golden_hourly: Option<&Path>,
) -> DoneLine {
    let tmp = tempfile::tempdir().unwrap();
    let golden = std::fs::read_to_string(tests_dir("golden").join(golden_out)).unwrap();
    let expected_hourly = golden_hourly.map(read_dir_files);
    let mut seen: Vec<(String, BTreeMap<String, String>)> = Vec::new();
    let mut done = None;
    for workers in [1, 4] {
        let out = tmp.path().join(format!("out-{workers}.jsonl"));
        let hourly_dir = tmp.path().join(format!("hourly-{workers}"));
        let mut run_args = args.to_vec();
        run_args.extend([
            "--out".into(),
            arg(&out),
            "--hourly-out".into(),
            arg(&hourly_dir),
            "--workers".into(),
            workers.to_string(),
        ]);
        let run = keyflow(&run_args, LIMIT);
        run.assert_success(&format!("{what} at {workers} workers"));
        let text = std::fs::read_to_string(&out).unwrap();
        let what = format!("{what} at {workers} workers vs tests/golden/{golden_out}");
        assert_minutes_eq(&what, &text, &parse_minutes(&golden));
        let hourly = read_dir_files(&hourly_dir);
        if let Some(expected) = &expected_hourly {
            assert_files_eq(&what, &hourly, expected);
        }
        if !run_args.iter().any(|a| a == "--quiet") {
            done.get_or_insert(run.done());
        }
        seen.push((text, hourly));
    }
    assert!(
        seen[0] == seen[1],
        "{what}: 1 and 4 workers give different bytes"
    );
    done.unwrap_or(DoneLine {
        events: 0,
        late: 0,
        bad: 0,
        future: 0,
    })
}

fn dump_args(files: &[PathBuf], top: &str) -> Vec<String> {
    let mut args = trending_args(&["--input-format", "dump", "--top", top, "--input"]);
    args.extend(files.iter().map(|f| arg(f)));
    args
}

/// Events of dump files as the oracle reads them: one partition per file.
fn dump_partitions(files: &[PathBuf]) -> (Vec<Vec<Event>>, usize) {
    let mut bad = 0;
    let parts = files
        .iter()
        .map(|f| {
            let (events, b) = dump_events(&read_text(f), file_hour(f));
            bad += b;
            events
        })
        .collect();
    (parts, bad)
}

#[test]
fn fixture_is_derived_from_sample_data() {
    let files = fixture_files();
    let committed: BTreeMap<String, String> = files
        .iter()
        .map(|f| {
            let name = f.file_name().unwrap().to_str().unwrap().to_string();
            (name, std::fs::read_to_string(f).unwrap())
        })
        .collect();
    assert_files_eq(
        "tests/fixtures/pagecounts-2016-08-subset vs data/",
        &committed,
        &derive_fixture(),
    );
}

#[test]
fn dump_fixture_matches_golden() {
    let files = fixture_files();
    let (parts, bad) = dump_partitions(files);
    assert_eq!(bad, 0, "the fixture is clean");
    let (on_time, late) = split_late(&parts, 5_000);
    assert!(late.is_empty(), "a replayed dump is in time order");
    let params = Params {
        top: 0,
        ..Params::default()
    };
    let minutes = minutes(&on_time, &params);
    assert!(
        minutes.iter().filter(|m| m.trending > 0).count() > 50,
        "the fixture should trend now and then"
    );
    golden_text(
        "trending-pagecounts-20160801-10-13.jsonl",
        &to_jsonl(&minutes),
    );
    let hourly_dir = golden_dir("hourly-pagecounts-20160801-10-13", &hourly(&on_time));
    let done = run_against_golden(
        "dump fixture",
        &dump_args(files, "0"),
        "trending-pagecounts-20160801-10-13.jsonl",
        Some(&hourly_dir),
    );
    let events: usize = parts.iter().map(Vec::len).sum();
    assert_eq!(
        done,
        DoneLine {
            events: events as u64,
            late: 0,
            bad: 0,
            future: 0
        }
    );
}

#[test]
fn sample_dumps_match_golden() {
    let files: Vec<PathBuf> = HOURS.iter().map(|&h| sample_dump(h)).collect();
    let (parts, bad) = dump_partitions(&files);
    assert_eq!(bad, 0, "the 2016 sample is clean");
    let (on_time, _) = split_late(&parts, 5_000);
    // The original, flat-friendly rule with a floor, unlike the fixture
    // test: flat series are common in replayed dumps (views spread evenly).
    let params = Params {
        rule: Rule::AllowFlat,
        min_views: 5,
        top: 1,
        ..Params::default()
    };
    let minutes = minutes(&on_time, &params);
    assert!(minutes.iter().any(|m| m.trending > 1), "nothing to rank");
    golden_text(
        "trending-pagecounts-20160801-10-13-gz-flat-min5-top1.jsonl",
        &to_jsonl(&minutes),
    );
    // The hourly totals of a dump replay are the dump's own lines, summed
    // per article: check that directly rather than commit 5,000 lines.
    let mut from_lines: BTreeMap<String, BTreeMap<(String, String), u64>> = BTreeMap::new();
    for f in &files {
        for line in read_text(f).lines() {
            let v: Vec<&str> = line.split(' ').collect();
            let hour = hourly_name(parse_stamp(v[0]).unwrap());
            *from_lines
                .entry(hour)
                .or_default()
                .entry((v[1].to_string(), v[2].to_string()))
                .or_default() += v[3].parse::<u64>().unwrap();
        }
    }
    let from_lines: BTreeMap<String, String> = from_lines
        .into_iter()
        .map(|(name, totals)| {
            let text = totals
                .into_iter()
                .map(|((p, t), v)| format!("{p} {t} {v} 0\n"))
                .collect();
            (name, text)
        })
        .collect();
    let expected_hourly = hourly(&on_time);
    assert_files_eq("oracle vs dump lines", &expected_hourly, &from_lines);
    let tmp = tempfile::tempdir().unwrap();
    for (name, text) in &expected_hourly {
        std::fs::write(tmp.path().join(name), text).unwrap();
    }
    let mut args = dump_args(&files, "1");
    args.extend(["--allow-flat", "--min-views", "5", "--quiet"].map(String::from));
    run_against_golden(
        "sample 2016-08-01 10:00-14:00 dumps",
        &args,
        "trending-pagecounts-20160801-10-13-gz-flat-min5-top1.jsonl",
        Some(tmp.path()),
    );
}

/// The generator's events, read partition by partition through the
/// library's source (the input, not the job, so the oracle stays
/// independent of what it checks), with the binary's generator settings.
fn generator_partitions() -> Vec<Vec<Event>> {
    use keyflow::dataflow::source::{Batch, PollStatus, Source};
    use keyflow::jobs::pageviews::{GeneratorConfig, PageviewSource};

    let config = GeneratorConfig {
        articles: 500,
        seed: 7,
        rate: 100,
        duration_ms: 90 * MINUTE,
        realtime: false,
        ..GeneratorConfig::default()
    };
    let src = PageviewSource::generator(config).unwrap();
    (0..src.partitions())
        .map(|p| {
            let mut partition = src.open(p).unwrap();
            let mut batch = Batch::new(1 << 16);
            let mut events = Vec::new();
            loop {
                batch.clear();
                let status = partition.poll(&mut batch).unwrap();
                assert!(batch.bad.is_empty());
                events.extend(batch.records.drain(..).map(|(ts, v)| {
                    Event::new(v.article.project(), &v.article.title(), ts, v.views)
                }));
                match status {
                    PollStatus::Done => break events,
                    PollStatus::Idle => std::thread::sleep(Duration::from_millis(1)),
                    PollStatus::Ready => {}
                }
            }
        })
        .collect()
}

/// Sums events per article and minute, at the minute's start: the same
/// windows (which are whole minutes) see the same views, and the brute
/// force gets far fewer events.
fn per_minute(events: &[Event]) -> Vec<Event> {
    let mut sums: BTreeMap<(&str, &str, u64), u64> = BTreeMap::new();
    for e in events {
        *sums
            .entry((&e.project, &e.title, e.ts / MINUTE * MINUTE))
            .or_default() += e.views;
    }
    sums.into_iter()
        .map(|((p, t, ts), v)| Event::new(p, t, ts, v))
        .collect()
}

#[test]
fn generator_matches_golden() {
    let parts = generator_partitions();
    let total: usize = parts.iter().map(Vec::len).sum();
    assert_eq!(total, 540_000, "100 events/s for 90 minutes");
    let (on_time, late) = split_late(&parts, 5_000);
    assert!(late.is_empty(), "the generator is in time order");
    let on_time = per_minute(&on_time);
    let minutes = minutes(
        &on_time,
        &Params {
            top: 5,
            ..Params::default()
        },
    );
    assert!(
        minutes.iter().filter(|m| m.trending > 0).count() > 20,
        "the planted bursts should trend"
    );
    golden_text(
        "trending-generator-a500-r100-d90m-s7.jsonl",
        &to_jsonl(&minutes),
    );
    let hourly_dir = golden_dir("hourly-generator-a500-r100-d90m-s7", &hourly(&on_time));
    let done = run_against_golden(
        "generator",
        &trending_args(&GENERATOR),
        "trending-generator-a500-r100-d90m-s7.jsonl",
        Some(&hourly_dir),
    );
    assert_eq!(
        done,
        DoneLine {
            events: total as u64,
            late: 0,
            bad: 0,
            future: 0
        }
    );
}
