//! How inputs are read: thousands of files under a low open-file limit, gzip
//! told by its magic bytes, runs in which every record is malformed, dump
//! titles with control characters, lines of 0 views, event times past the
//! year 9999, UTF-16 text, and messages about huge bad values.

mod trending_support;

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use trending_support::*;

const LIMIT: Duration = Duration::from_secs(180);

/// 2016-08-01T00:00:00Z.
const BASE: u64 = 1_470_009_600_000;

fn gzip(path: &Path, text: &str) {
    let file = std::fs::File::create(path).unwrap();
    let mut gz = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
    gz.write_all(text.as_bytes()).unwrap();
    gz.finish().unwrap();
}

/// `keyflow ARGS` in a shell whose open-file limit is `nofile`.
fn keyflow_limited(nofile: u32, args: &[String]) -> RunOutput {
    let mut shell = vec![
        "-c".to_string(),
        format!("ulimit -n {nofile} && exec \"$0\" \"$@\""),
        KEYFLOW.to_string(),
    ];
    shell.extend(args.iter().cloned());
    let start = std::time::Instant::now();
    let out = std::process::Command::new("sh")
        .args(&shell)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert!(start.elapsed() < LIMIT, "too slow");
    RunOutput {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        elapsed: start.elapsed(),
    }
}

#[test]
fn thousands_of_files_read_under_a_low_open_file_limit() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("parts");
    std::fs::create_dir(&data).unwrap();
    let files = 1500u64;
    for i in 0..files {
        let lines: String = (0..3)
            .map(|j| {
                let title = format!("T{}", i % 40);
                Event::new("en", &title, BASE + i * 2_000 + j, 1 + j).json_line(false) + "\n"
            })
            .collect();
        // gzip without a `.gz` name: told apart by its first bytes.
        gzip(&data.join(format!("part-{i:05}")), &lines);
    }
    let mut outputs = Vec::new();
    for workers in ["1", "3"] {
        let out = dir.path().join(format!("out-{workers}.jsonl"));
        let args = trending_args(&[
            "--input",
            &arg(&data),
            "--workers",
            workers,
            "--top",
            "0",
            "--out",
            &arg(&out),
        ]);
        let run = keyflow_limited(128, &args);
        run.assert_success("1500 files with 128 descriptors");
        assert_eq!(run.done().events, files * 3, "{}", run.stderr);
        assert_eq!(run.done().bad, 0);
        outputs.push(std::fs::read(&out).unwrap());
    }
    assert!(!outputs[0].is_empty());
    assert_eq!(outputs[0], outputs[1], "results depend on the worker count");
}

#[test]
fn gzip_is_told_by_its_bytes_not_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let text: String = (0..5)
        .map(|i| Event::new("en", "A", BASE + i * MINUTE, 1).json_line(false) + "\n")
        .collect();
    let hidden = dir.path().join("views.jsonl");
    gzip(&hidden, &text);
    let plain = dir.path().join("plain.jsonl.gz");
    std::fs::write(&plain, &text).unwrap();
    for input in [&hidden, &plain] {
        let run = keyflow(trending_args(&["--input", &arg(input)]), LIMIT);
        run.assert_success("gzip by magic");
        assert_eq!(run.done().events, 5, "{}: {}", input.display(), run.stderr);
        assert_eq!(run.done().bad, 0);
    }
    // Dumps too.
    let dump = dir.path().join("pagecounts-20160801-000000");
    gzip(&dump, "en Main_Page 120 0\n");
    let run = keyflow(
        trending_args(&["--input-format", "dump", "--input", &arg(&dump)]),
        LIMIT,
    );
    run.assert_success("gzip dump without .gz");
    assert_eq!(run.done().bad, 0, "{}", run.stderr);
    assert!(run.done().events > 0);
}

#[test]
fn a_run_in_which_every_record_is_bad_fails() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(&bad, "not json\n{\"project\":\"en\"}\n").unwrap();
    // It fails before its outputs are final: an earlier file at --out
    // stays as it was, and nothing else is left beside it.
    let out = dir.path().join("out").join("minutes.jsonl");
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    std::fs::write(&out, "earlier\n").unwrap();
    let args = ["--input", &arg(&bad), "--quiet", "--out", &arg(&out)];
    let run = keyflow(trending_args(&args), LIMIT);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(run.stderr.contains("all 2 records"), "{}", run.stderr);
    assert!(run.stderr.contains("malformed"), "{}", run.stderr);
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "earlier\n");
    assert_eq!(std::fs::read_dir(out.parent().unwrap()).unwrap().count(), 1);
    // Without an earlier file, none appears.
    std::fs::remove_file(&out).unwrap();
    let run = keyflow(trending_args(&args), LIMIT);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert_eq!(std::fs::read_dir(out.parent().unwrap()).unwrap().count(), 0);

    // A gzip of text in the dump format, read as JSON: every line is bad.
    let dump = dir.path().join("pagecounts-20160801-000000.gz");
    gzip(&dump, "en A 1 0\nen B 2 0\n");
    let run = keyflow(trending_args(&["--input", &arg(&dump)]), LIMIT);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(run.stderr.contains("malformed"), "{}", run.stderr);

    // UTF-16 text, as an editor on another system may save it: one error
    // that names the file and its encoding, before any record, and --out
    // untouched.
    let utf16 = dir.path().join("utf16.jsonl");
    let text = format!(
        "\u{feff}{}\n",
        Event::new("en", "A", BASE, 1).json_line(false)
    );
    let bytes: Vec<u8> = text.encode_utf16().flat_map(u16::to_le_bytes).collect();
    std::fs::write(&utf16, bytes).unwrap();
    let args = ["--input", &arg(&utf16), "--quiet", "--out", &arg(&out)];
    let run = keyflow(trending_args(&args), LIMIT);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(run.stderr.contains("utf16.jsonl"), "{}", run.stderr);
    assert!(run.stderr.contains("UTF-16"), "{}", run.stderr);
    assert!(!out.exists());

    // One good record is enough, and an empty input is not an error.
    let mixed = dir.path().join("mixed.jsonl");
    let good = Event::new("en", "A", BASE, 1).json_line(false);
    std::fs::write(&mixed, format!("not json\n{good}\n")).unwrap();
    keyflow(trending_args(&["--input", &arg(&mixed)]), LIMIT).assert_success("mixed");
    let empty = dir.path().join("empty.jsonl");
    std::fs::write(&empty, "").unwrap();
    keyflow(trending_args(&["--input", &arg(&empty)]), LIMIT).assert_success("empty");
}

#[test]
fn event_times_from_the_year_10000_on_are_counted_and_dropped() {
    // Such times used to run windows and timers up to u64::MAX: a hang or
    // a panic, even as the first record of a file (no watermark yet).
    let dir = tempfile::tempdir().unwrap();
    let views = dir.path().join("views.jsonl");
    let good = Event::new("en", "A", BASE, 1).json_line(false);
    let far = |ts: u64| format!("{{\"project\":\"en\",\"title\":\"A\",\"ts\":{ts},\"views\":1}}");
    let text = format!("{}\n{good}\n{}\n", far(u64::MAX), far(u64::MAX - 1_551_615));
    std::fs::write(&views, text).unwrap();
    let out = dir.path().join("minutes.jsonl");
    let run = keyflow(
        trending_args(&["--input", &arg(&views), "--quiet", "--out", &arg(&out)]),
        LIMIT,
    );
    run.assert_success("trending");
    assert!(
        run.stderr.contains("2 too far in the future"),
        "{}",
        run.stderr
    );
    assert!(!std::fs::read_to_string(&out).unwrap().is_empty());

    let users = dir.path().join("users.jsonl");
    let event = |ts: u64| {
        format!("{{\"user\":\"u1\",\"ts\":{ts},\"from\":\"/\",\"op\":\"view\",\"to\":\"/p/3\"}}\n")
    };
    std::fs::write(&users, event(u64::MAX) + &event(BASE)).unwrap();
    let run = keyflow(
        ["run", "behaviour", "--quiet", "--input", &arg(&users)],
        LIMIT,
    );
    run.assert_success("behaviour");
    assert!(
        run.stderr.contains("1 too far in the future"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_gap_longer_than_max_future_in_one_file_loses_nothing() {
    // Nine days without records in one file, more than --max-future's
    // seven: the records after the gap agree with each other, so the
    // watermark follows them once --jump-after of them are read.
    let dir = tempfile::tempdir().unwrap();
    let views = dir.path().join("views.jsonl");
    let day = 86_400_000;
    let text: String = (0..300u64)
        .map(|i| {
            let ts = BASE + i * 1_000 + if i >= 150 { 9 * day } else { 0 };
            Event::new("en", "A", ts, 10).json_line(false) + "\n"
        })
        .collect();
    std::fs::write(&views, text).unwrap();
    let minutes = |extra: &[&str]| {
        let out = dir.path().join("minutes.jsonl");
        let (views, out_arg) = (arg(&views), arg(&out));
        let mut args = vec!["--input", &views, "--quiet", "--out", &out_arg];
        args.extend(extra);
        let run = keyflow(trending_args(&args), LIMIT);
        run.assert_success("trending");
        let written = std::fs::read_to_string(&out).unwrap();
        (run.stderr, written.lines().count())
    };
    let (followed, lines) = minutes(&[]);
    assert!(followed.contains("0 too far in the future"), "{followed}");
    assert!(followed.contains("followed 100 records"), "{followed}");
    let (strict, fewer) = minutes(&["--jump-after", "0"]);
    assert!(strict.contains("150 too far in the future"), "{strict}");
    assert!(
        fewer < lines,
        "{fewer} minutes without following, {lines} with"
    );
}

#[test]
fn a_first_line_from_a_wrong_clock_does_not_make_the_file_late() {
    // A first line stamped in the year 9999 used to set the file's
    // watermark: every line after it was late, and the run exited 0.
    let dir = tempfile::tempdir().unwrap();
    let views = dir.path().join("views.jsonl");
    let year_9999 = 253_370_764_800_000u64;
    let mut text = Event::new("en", "A", year_9999, 1).json_line(false) + "\n";
    for i in 0..50u64 {
        text += &(Event::new("en", "B", BASE + i * 1_000, 1).json_line(false) + "\n");
    }
    std::fs::write(&views, text).unwrap();
    let run = keyflow(trending_args(&["--input", &arg(&views), "--quiet"]), LIMIT);
    run.assert_success("trending");
    assert!(
        run.stderr
            .contains("51 events, 0 late, 0 bad, 1 too far in the future"),
        "{}",
        run.stderr
    );
}

#[test]
fn dump_titles_with_control_characters_are_bad_and_zero_views_are_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let dump = dir.path().join("pagecounts-20160801-000000");
    std::fs::write(
        &dump,
        "en Good 120 0\nen Tab\tbed 5 0\nen Nul\0led 5 0\nen Zero 0 0\nde Zero 0 0\n",
    )
    .unwrap();
    let run = keyflow(
        trending_args(&["--input-format", "dump", "--input", &arg(&dump)]),
        LIMIT,
    );
    run.assert_success("dump with bad titles");
    assert_eq!(run.done().bad, 2, "{}", run.stderr);
    assert_eq!(run.done().events, 60, "Good's 120 views over 60 minutes");
    assert!(
        run.stderr.contains("skipped: 2 records with no views"),
        "{}",
        run.stderr
    );
    // The message shows the tab escaped, never raw.
    assert!(run.stderr.contains("Tab\\tbed"), "{}", run.stderr);
    assert!(!run.stderr.contains("Nul\0"), "{}", run.stderr);
}

#[test]
fn messages_cap_the_bad_value_they_quote() {
    let dir = tempfile::tempdir().unwrap();
    let huge = "x".repeat(5_000_000);
    let json = dir.path().join("huge.jsonl");
    std::fs::write(
        &json,
        format!("{{\"project\":\"en\",\"title\":\"A {huge}\",\"ts\":{BASE}}}\n"),
    )
    .unwrap();
    let dump = dir.path().join("pagecounts-20160801-000000");
    std::fs::write(&dump, format!("en A\t{huge} 1 0\n")).unwrap();
    let string_ts = dir.path().join("ts.jsonl");
    std::fs::write(
        &string_ts,
        format!("{{\"project\":\"en\",\"title\":\"A\",\"ts\":\"{huge}\"}}\n"),
    )
    .unwrap();
    for (format, input) in [("jsonl", &json), ("dump", &dump), ("jsonl", &string_ts)] {
        let run = keyflow(
            trending_args(&[
                "--input-format",
                format,
                "--input",
                &arg(input),
                "--bad-input",
                "fail",
            ]),
            LIMIT,
        );
        assert_ne!(run.code, Some(0));
        assert!(
            run.stderr.len() < 4_000,
            "{format}: a {} byte message",
            run.stderr.len()
        );
        assert!(run.stderr.contains("bytes)"), "{}", run.stderr);
    }
}
