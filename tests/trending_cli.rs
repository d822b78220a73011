//! The `keyflow` command line around the trending job: malformed input is
//! counted and skipped (or fails, naming file and line), missing files and
//! bad flags fail fast with a message naming them, the generator default
//! runs, and `jobs` / `explain` describe the job.

mod trending_support;

use std::path::Path;
use std::time::Duration;

use trending_support::*;

/// 2016-08-01T00:00:00Z.
const BASE: u64 = 1_470_009_600_000;
/// Failures must come well before any real work could finish.
const FAST: Duration = Duration::from_secs(60);
const LIMIT: Duration = Duration::from_secs(180);

/// Good events: "Up" grows over the six windows before `BASE + 1h`.
fn good_events() -> Vec<Event> {
    let mut events = Vec::new();
    for w in 0..6u64 {
        for i in 0..=w {
            events.push(Event::new(
                "en",
                "Up",
                BASE + w * 10 * MINUTE + i * 1_000,
                1,
            ));
        }
        events.push(Event::new("de", "Flat", BASE + w * 10 * MINUTE, 2));
    }
    events
}

fn jsonl(events: &[Event]) -> String {
    events.iter().map(|e| e.json_line(false) + "\n").collect()
}

/// Malformed JSON lines; each must be counted once and skipped.
const BAD_JSON: [&str; 10] = [
    "not json",
    r#"{"project":"en","title":"A"}"#,
    r#"{"project":"en","title":"A","ts":1470009600000,"views":0}"#,
    r#"{"project":"en","title":"A","ts":-5}"#,
    r#"{"project":"en","title":"Main Page","ts":1470009600000}"#,
    r#"{"project":"en","title":"A","ts":"1470009600000"}"#,
    r#"{"project":"","title":"A","ts":1470009600000}"#,
    r#"{"project":"en","title":"A","ts":1470009600000,"views":2.5}"#,
    "[1,2,3]",
    r#"{"project":"en","title":"A","ts":14700096"#,
];

fn run_out(args: Vec<String>, out: &Path) -> (RunOutput, String) {
    let run = keyflow(&args, LIMIT);
    let text = std::fs::read_to_string(out).unwrap_or_default();
    (run, text)
}

#[test]
fn malformed_json_lines_are_counted_and_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let good = good_events();
    let clean = dir.path().join("clean.jsonl");
    std::fs::write(&clean, jsonl(&good)).unwrap();

    // The bad lines interleaved with the good ones, one invalid UTF-8 line
    // and one blank line (blank lines are skipped, not bad).
    let mut bytes = Vec::new();
    let mut first_bad_line = None;
    let mut line_no = 0;
    for (i, e) in good.iter().enumerate() {
        if let Some(bad) = BAD_JSON.get(i) {
            bytes.extend_from_slice(bad.as_bytes());
            bytes.push(b'\n');
            line_no += 1;
            first_bad_line.get_or_insert(line_no);
        }
        bytes.extend_from_slice((e.json_line(false) + "\n").as_bytes());
        line_no += 1;
    }
    bytes.extend_from_slice(b"{\"project\":\"en\",\"title\":\"\xff\xfe\",\"ts\":1}\n\n");
    let dirty = dir.path().join("dirty.jsonl");
    std::fs::write(&dirty, &bytes).unwrap();

    let mut outputs = Vec::new();
    for (name, input) in [("clean", &clean), ("dirty", &dirty)] {
        let out = dir.path().join(format!("{name}.out"));
        let args = trending_args(&["--input", &arg(input), "--out", &arg(&out)]);
        let (run, text) = run_out(args, &out);
        run.assert_success(name);
        let bad = if name == "dirty" {
            BAD_JSON.len() + 1
        } else {
            0
        };
        assert_eq!(
            run.done(),
            DoneLine {
                events: good.len() as u64,
                late: 0,
                bad: bad as u64,
                future: 0
            },
            "{name}: summary line"
        );
        if name == "dirty" {
            let location = format!("{}:{}", dirty.display(), first_bad_line.unwrap());
            assert!(
                run.stderr.contains(&location),
                "the sample of skipped records names {location}:\n{}",
                run.stderr
            );
        }
        outputs.push(text);
    }
    assert!(outputs[0].contains(r#""title":"Up","counts":[1,2,3,4,5,6]"#));
    assert_eq!(outputs[0], outputs[1], "bad lines changed the results");
}

/// A dump file for hour 10 of 2016-08-01, and its malformed lines.
fn dump_text() -> (String, usize) {
    let good = [
        "en Simon_Pegg 120 4000",
        "20160801-100000 de Simon_Rattle 7 100",
        "en.m Simon 3 0",
    ];
    let bad = [
        "en Only_Three",
        "en Too many 5 0 fields",
        "\"\" Z11550 1 0",
        "en Title abc 0",
        "en Title 5 -1",
        "en Title +5 0",
        "2016080-100000 en Title 1 0",
        "20160801-250000 en Title 1 0",
        " en Title 1 0",
    ];
    let mut text = String::new();
    for (i, line) in bad.iter().enumerate() {
        text.push_str(good[i % good.len()]);
        text.push('\n');
        text.push_str(line);
        text.push('\n');
    }
    (text, bad.len())
}

#[test]
fn malformed_dump_lines_are_counted_and_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let (text, bad) = dump_text();
    let path = dir.path().join("pagecounts-20160801-100000");
    std::fs::write(&path, &text).unwrap();
    // Our own count of the good events: the oracle's reading of the file.
    let (events, oracle_bad) = dump_events(&text, file_hour(&path));
    assert_eq!(oracle_bad, bad);
    let hourly_dir = dir.path().join("hourly");
    let args = trending_args(&[
        "--input-format",
        "dump",
        "--input",
        &arg(&path),
        "--hourly-out",
        &arg(&hourly_dir),
    ]);
    let run = keyflow(&args, LIMIT);
    run.assert_success("dump with bad lines");
    assert_eq!(
        run.done(),
        DoneLine {
            events: events.len() as u64,
            late: 0,
            bad: bad as u64,
            future: 0
        }
    );
    assert_hourly_eq("dump with bad lines", &hourly_dir, &hourly(&events));

    // A 4-field line needs the hour from the file name.
    let nameless = dir.path().join("views.txt");
    std::fs::write(&nameless, "en A 1 0\n20160801-100000 en B 2 0\n").unwrap();
    let run = keyflow(
        trending_args(&["--input-format", "dump", "--input", &arg(&nameless)]),
        LIMIT,
    );
    run.assert_success("dump without an hour in its name");
    // The 5-field line's 2 views become 2 minute events.
    assert_eq!((run.done().events, run.done().bad), (2, 1));
}

#[test]
fn real_malformed_lines_are_counted() {
    // The 2024 sample has two lines with the domain code `""` (lines 549
    // and 978); everything else is well formed.
    let path = sample_data("pageviews-2024-08/pageviews-20240803-060000.gz");
    let (events, bad) = dump_events(&read_text(&path), file_hour(&path));
    assert_eq!(bad, 2);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.jsonl");
    let args = trending_args(&[
        "--input-format",
        "dump",
        "--input",
        &arg(&path),
        "--out",
        &arg(&out),
    ]);
    let (run, text) = run_out(args, &out);
    run.assert_success("2024 sample");
    assert_eq!(
        run.done(),
        DoneLine {
            events: events.len() as u64,
            late: 0,
            bad: 2,
            future: 0
        }
    );
    assert!(run.stderr.contains(&format!("{}:549", path.display())));
    let expected = minutes(&events, &Params::default());
    assert_minutes_eq("2024 sample", &text, &expected);
}

#[test]
fn bad_input_fail_names_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let good = good_events();
    let json = dir.path().join("views.jsonl");
    let mut text = jsonl(&good[..2]);
    text.push_str("{\"project\":\"en\",\n");
    text.push_str(&jsonl(&good[2..]));
    std::fs::write(&json, text).unwrap();

    let dump = dir.path().join("pagecounts-20160801-100000");
    std::fs::write(&dump, "en A 1 0\nen B 1 0\nen C x 0\nen D 1 0\n").unwrap();

    for (input, format, line) in [(&json, "jsonl", 3), (&dump, "dump", 3)] {
        let out = dir.path().join(format!("{format}.out"));
        let args = trending_args(&[
            "--bad-input",
            "fail",
            "--input-format",
            format,
            "--input",
            &arg(input),
            "--out",
            &arg(&out),
        ]);
        let run = keyflow(&args, LIMIT);
        assert_ne!(run.code, Some(0), "{format}: --bad-input fail must fail");
        assert!(run.code.is_some(), "{format}: died of a signal");
        let location = format!("{}:{line}", input.display());
        assert!(
            run.stderr.contains(&location),
            "{format}: the error names {location}:\n{}",
            run.stderr
        );
        assert!(
            !run.stderr.contains("panicked"),
            "{format}: bad input must not panic:\n{}",
            run.stderr
        );
        // The same input under the default policy succeeds.
        let args = trending_args(&["--input-format", format, "--input", &arg(input)]);
        let run = keyflow(&args, LIMIT);
        run.assert_success(format);
        assert_eq!(run.done().bad, 1);
    }
}

#[test]
fn missing_input_fails_fast_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.jsonl");
    std::fs::write(&good, jsonl(&good_events())).unwrap();
    let missing = dir.path().join("no-such-dir").join("missing-views.jsonl");
    for format in ["jsonl", "dump"] {
        let out = dir.path().join(format!("{format}.out"));
        let args = trending_args(&[
            "--input-format",
            format,
            "--input",
            &arg(&good),
            &arg(&missing),
            "--out",
            &arg(&out),
        ]);
        let run = keyflow(&args, FAST);
        assert_ne!(run.code, Some(0), "{format}: a missing input must fail");
        assert!(
            run.stderr.contains(&missing.display().to_string()),
            "{format}: the error names the missing file:\n{}",
            run.stderr
        );
        assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
        assert!(
            !out.exists(),
            "{format}: no work (no output file) before the check"
        );
    }
}

#[test]
fn invalid_flags_fail_naming_the_bad_value() {
    // Each case: flags, and alternatives of which one must be in the
    // message (the value as typed, or in ms). The generator flags would
    // make any run that got past validation take minutes.
    let cases: [(&[&str], &[&str]); 11] = [
        (&["--window", "7m", "--slide", "2m"], &["7m", "420000"]),
        (&["--window", "ten"], &["ten"]),
        (&["--slide", "0s"], &["slide 0", "0s"]),
        (&["--workers", "0"], &["--workers 0", "workers 0"]),
        (&["--late", "sometimes"], &["sometimes"]),
        (&["--bad-input", "maybe"], &["maybe"]),
        (&["--input-format", "xml"], &["xml"]),
        (&["--max-out-of-orderness", "soon"], &["soon"]),
        (&["--min-views", "x"], &["'x'", "`x`"]),
        // Past u64 milliseconds: it used to wrap to 384 ms.
        (
            &["--duration", "18446744073709552s"],
            &["18446744073709552s"],
        ),
        (&["--max-future", "10000000years"], &["10000000years"]),
    ];
    for (flags, names) in cases {
        let mut args = trending_args(flags);
        args.extend(["--quiet".into(), "--rate".into(), "1000000".into()]);
        let run = keyflow(&args, FAST);
        assert_ne!(run.code, Some(0), "{flags:?} must fail");
        assert!(
            names.iter().any(|n| run.stderr.contains(n)),
            "{flags:?}: the message names the bad value (one of {names:?}):\n{}",
            run.stderr
        );
        assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
        assert!(run.elapsed < Duration::from_secs(30), "{flags:?} was slow");
    }
    // The window must be a multiple of the slide: say so.
    let run = keyflow(trending_args(&["--window", "7m", "--slide", "2m"]), FAST);
    assert!(run.stderr.contains("multiple"), "{}", run.stderr);
}

#[test]
fn generator_default_runs_and_trends() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.jsonl");
    let args = trending_args(&[
        "--articles",
        "20000",
        "--rate",
        "300",
        "--duration",
        "70m",
        "--quiet",
        "--out",
        &arg(&out),
    ]);
    let (run, text) = run_out(args, &out);
    run.assert_success("generator");
    assert!(run.stdout.is_empty(), "--quiet prints no tables");
    let minutes = parse_minutes(&text);
    // Events over [S, S + 70m): every boundary from S + 1m to S + 129m.
    const START: u64 = 1_704_067_200_000;
    let ts: Vec<u64> = minutes.iter().map(|m| m.t).collect();
    let want: Vec<u64> = (1..=129).map(|i| START + i * MINUTE).collect();
    assert_eq!(ts, want, "one line per evaluated minute, in order");
    assert!(
        minutes.iter().filter(|m| m.trending > 0).count() > 10,
        "the planted bursts trend"
    );
    for m in &minutes {
        assert!(m.top.len() <= 10 && m.top.len() as u64 <= m.trending);
        assert_eq!(m.top.len() as u64, m.trending.min(10), "t={}", m.t);
        for (i, e) in m.top.iter().enumerate() {
            let c = &e.counts;
            assert_eq!(e.rank, i + 1);
            assert_eq!(c.len(), 6);
            assert!(c.windows(2).all(|w| w[0] <= w[1]) && c[5] > c[0] && c[0] >= 1);
            assert_eq!(e.project, "en");
            assert!(e.title.starts_with("Article_"), "{}", e.title);
        }
        for w in m.top.windows(2) {
            let key = |e: &Entry| {
                let c = &e.counts;
                (
                    std::cmp::Reverse(c[5] - c[0]),
                    std::cmp::Reverse(c[5]),
                    e.title.clone(),
                )
            };
            assert!(key(&w[0]) < key(&w[1]), "t={}: ranking order", m.t);
        }
    }
}

#[test]
fn tables_and_summary_without_quiet() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("views.jsonl");
    std::fs::write(&input, jsonl(&good_events())).unwrap();
    let run = keyflow(trending_args(&["--input", &arg(&input)]), LIMIT);
    run.assert_success("tables");
    // 2016-08-01 01:00 UTC is the minute "Up" trends at.
    let at = run
        .stdout
        .lines()
        .position(|l| {
            l.starts_with("2016-08-01") && l.contains("01:00") && l.contains("1 trending")
        })
        .unwrap_or_else(|| panic!("no table for 01:00:\n{}", run.stdout));
    let table: Vec<&str> = run.stdout.lines().skip(at).take(6).collect();
    assert!(
        table.iter().any(|l| l.contains("Up") && l.contains(" 6 ")),
        "{table:#?}"
    );
    assert_eq!(run.done().events, good_events().len() as u64);
}

#[test]
fn jobs_lists_trending() {
    let run = keyflow(["jobs"], FAST);
    run.assert_success("jobs");
    assert!(
        run.stdout
            .lines()
            .any(|l| l.split_whitespace().next() == Some("trending")),
        "{}",
        run.stdout
    );
}

#[test]
fn explain_trending_prints_operators() {
    let run = keyflow(["explain", "trending"], FAST);
    run.assert_success("explain");
    for op in [
        "Source(",
        "SplitLate",
        "RisePreAggregate(trending-rise)",
        "Rise(trending-rise)",
        "TopK(trending-top)",
        "Window(hourly-totals)",
        "channels:",
        "->",
    ] {
        assert!(run.stdout.contains(op), "no {op:?} in:\n{}", run.stdout);
    }
    let run = keyflow(["explain", "no-such-job"], FAST);
    assert_ne!(run.code, Some(0));
    assert!(run.stderr.contains("no-such-job"), "{}", run.stderr);
}

#[test]
fn help_lists_the_documented_flags() {
    let run = keyflow(["run", "trending", "--help"], FAST);
    run.assert_success("help");
    for flag in [
        "--input",
        "--input-format",
        "--top",
        "--min-views",
        "--strict",
        "--allow-flat",
        "--window",
        "--slide",
        "--max-out-of-orderness",
        "--out",
        "--hourly-out",
        "--workers",
        "--bad-input",
        "--quiet",
        "--late",
        "--late-out",
        "--articles",
        "--seed",
        "--rate",
        "--duration",
    ] {
        assert!(
            run.stdout.contains(&format!("{flag} ")) || run.stdout.contains(&format!("{flag}\n")),
            "--help does not list {flag}"
        );
    }
    // --strict and --allow-flat contradict each other.
    let run = keyflow(trending_args(&["--strict", "--allow-flat"]), FAST);
    assert_ne!(run.code, Some(0));
    assert!(run.stderr.contains("--allow-flat"), "{}", run.stderr);
}

/// Huge view counts (2^32, u64::MAX) are malformed input: under the default
/// policy they are counted as bad and skipped, never abort the job or
/// overflow a sum.
#[test]
fn huge_view_counts_neither_abort_nor_panic() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("over-u32", vec![(0, 1u64 << 32), (1, 5)]),
        ("u64-max", vec![(0, u64::MAX), (MINUTE, u64::MAX)]),
    ];
    for (name, rows) in cases {
        let path = dir.path().join(format!("{name}.jsonl"));
        let text: String = rows
            .iter()
            .map(|&(dt, views)| Event::new("en", "A", BASE + dt, views).json_line(false) + "\n")
            .collect();
        std::fs::write(&path, text).unwrap();
        let hourly_dir = dir.path().join(format!("{name}-hourly"));
        let args = trending_args(&["--input", &arg(&path), "--hourly-out", &arg(&hourly_dir)]);
        let run = keyflow(&args, LIMIT);
        assert!(!run.stderr.contains("panicked"), "{name}:\n{}", run.stderr);
        let done = run.done();
        assert_eq!(done.events + done.bad, rows.len() as u64, "{name}");
        if done.events == 0 {
            // Every record was bad: a clear failure, not an empty success.
            assert_eq!(run.code, Some(2), "{name}:\n{}", run.stderr);
            assert!(run.stderr.contains("malformed"), "{}", run.stderr);
        } else {
            run.assert_success(name);
        }
    }
}

/// A project that dump files would not take (not a domain code) is bad
/// input in JSON lines too, so the hourly files read back as dumps with no
/// bad line and every view.
#[test]
fn hourly_files_from_json_lines_read_back_as_dumps() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("views.jsonl");
    let rows = [
        ("en", "A", 0, 3),
        ("en/wiki", "B", 1, 1),
        ("de.m", "C", MINUTE, 2),
        ("\u{e9}n", "D", 2 * MINUTE, 1),
        ("zh-min-nan", "E", 61 * MINUTE, 4),
    ];
    let text: String = rows
        .iter()
        .map(|&(p, t, dt, v)| Event::new(p, t, BASE + dt, v).json_line(false) + "\n")
        .collect();
    std::fs::write(&path, text).unwrap();
    let hourly_dir = dir.path().join("hourly");
    let first = keyflow(
        trending_args(&["--input", &arg(&path), "--hourly-out", &arg(&hourly_dir)]),
        LIMIT,
    );
    first.assert_success("json lines");
    let done = first.done();
    assert_eq!((done.events, done.bad), (3, 2), "{}", first.stderr);
    assert!(
        first.stderr.contains("not a domain code"),
        "{}",
        first.stderr
    );

    let again = keyflow(
        trending_args(&["--input-format", "dump", "--input", &arg(&hourly_dir)]),
        LIMIT,
    );
    again.assert_success("hourly files as dumps");
    // A dump line's views are spread over its hour, one record a view.
    let done = again.done();
    assert_eq!((done.events, done.bad), (3 + 2 + 4, 0), "{}", again.stderr);
}
