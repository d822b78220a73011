//! No run may destroy an input: an output that is an input (by any name:
//! symlink, hard link, `./`), lies among the files of an input directory, is
//! the `--baseline`, or is another output, is refused before any work,
//! naming both paths, and the input is left byte for byte as it was. The
//! same input given twice is refused rather than counted twice.

mod trending_support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use trending_support::*;

const FAST: Duration = Duration::from_secs(60);

/// 2016-08-01T00:00:00Z.
const BASE: u64 = 1_470_009_600_000;

fn views_jsonl(dir: &Path) -> PathBuf {
    let path = dir.join("views.jsonl");
    let lines: String = (0..20)
        .map(|i| Event::new("en", "A", BASE + i * MINUTE, 1).json_line(false) + "\n")
        .collect();
    std::fs::write(&path, lines).unwrap();
    path
}

/// A gzip dump file of one hour, named as Wikimedia names them.
fn dump_gz(dir: &Path) -> PathBuf {
    let path = dir.join("pagecounts-20160801-000000.gz");
    let file = std::fs::File::create(&path).unwrap();
    let mut gz = flate2::write::GzEncoder::new(file, flate2::Compression::default());
    gz.write_all(b"en Main_Page 120 0\nde Berlin 7 0\n")
        .unwrap();
    gz.finish().unwrap();
    path
}

/// Runs `args`, which must fail fast naming every one of `names`, and leave
/// `kept` unchanged.
fn refused(args: &[String], names: &[&str], kept: &[&Path]) -> String {
    let before: Vec<Vec<u8>> = kept.iter().map(|p| std::fs::read(p).unwrap()).collect();
    let run = keyflow(args, FAST);
    assert_eq!(
        run.code,
        Some(2),
        "{args:?} must be refused:\n{}",
        run.stderr
    );
    for name in names {
        assert!(
            run.stderr.contains(name),
            "{args:?}: the message names {name}:\n{}",
            run.stderr
        );
    }
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    for (path, bytes) in kept.iter().zip(before) {
        assert_eq!(
            std::fs::read(path).unwrap(),
            bytes,
            "{} was modified",
            path.display()
        );
    }
    run.stderr
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

#[test]
fn an_output_on_an_input_is_refused_by_any_name() {
    let dir = tempfile::tempdir().unwrap();
    let gz = dump_gz(dir.path());
    let gz_arg = arg(&gz);
    refused(
        &trending_args(&[
            "--input-format",
            "dump",
            "--input",
            &gz_arg,
            "--out",
            &gz_arg,
        ]),
        &[&gz_arg, "--out"],
        &[&gz],
    );

    let views = views_jsonl(dir.path());
    let input = arg(&views);
    let link = dir.path().join("link.jsonl");
    std::os::unix::fs::symlink(&views, &link).unwrap();
    let hard = dir.path().join("hard.jsonl");
    std::fs::hard_link(&views, &hard).unwrap();
    let dotted = format!("{}/./views.jsonl", dir.path().display());
    for out in [input.clone(), arg(&link), arg(&hard), dotted] {
        for flag in ["--out", "--late-out"] {
            let mut args = trending_args(&["--input", &input, flag, &out]);
            if flag == "--late-out" {
                args.extend(strings(&["--late", "side-output"]));
            }
            refused(&args, &[&input, &out, flag], &[&views]);
        }
    }
}

#[test]
fn two_outputs_on_one_path_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let views = views_jsonl(dir.path());
    let out = arg(&dir.path().join("out.jsonl"));
    let same = format!("{}/sub/../out.jsonl", dir.path().display());
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    let args = trending_args(&[
        "--input",
        &arg(&views),
        "--out",
        &out,
        "--late",
        "side-output",
        "--late-out",
        &same,
    ]);
    refused(&args, &["--out", "--late-out", &out, &same], &[&views]);
    assert!(
        !dir.path().join("out.jsonl").exists(),
        "refused before any output was created"
    );
}

#[test]
fn the_same_input_twice_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let views = views_jsonl(dir.path());
    let input = arg(&views);
    let again = format!("{}/./views.jsonl", dir.path().display());
    refused(
        &trending_args(&["--input", &input, &again, "--quiet"]),
        &[&input, &again, "twice"],
        &[&views],
    );
    // A directory and a file in it name the file twice.
    let folder = arg(dir.path());
    refused(
        &trending_args(&["--input", &folder, &input, "--quiet"]),
        &[&input, "twice"],
        &[&views],
    );
}

#[test]
fn outputs_among_the_files_of_an_input_directory_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let gz = dump_gz(&data);
    let folder = arg(&data);
    let listing = || {
        let mut names: Vec<_> = std::fs::read_dir(&data)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        names
    };
    let before = listing();
    let dump = ["--input-format", "dump", "--input", &folder];
    let new_out = arg(&data.join("trending.jsonl"));
    let mut args = trending_args(&dump);
    args.extend(strings(&["--out", &new_out]));
    refused(
        &args,
        &[&folder, &new_out, "inside input directory"],
        &[&gz],
    );

    let mut args = trending_args(&dump);
    args.extend(strings(&["--hourly-out", &folder, "--quiet"]));
    refused(&args, &[&folder, "--hourly-out"], &[&gz]);

    // Inputs given as files: their directory is still theirs.
    let mut args = trending_args(&["--input-format", "dump", "--input", &arg(&gz)]);
    args.extend(strings(&["--hourly-out", &folder, "--quiet"]));
    refused(&args, &[&arg(&gz), &folder], &[&gz]);
    assert_eq!(listing(), before, "nothing was written into the inputs");

    let mut args = strings(&["baseline", "--input", &folder, "--out", &new_out]);
    args.extend(strings(&["--dump-time", "start"]));
    refused(&args, &[&folder, &new_out], &[&gz]);
    assert_eq!(listing(), before);
}

#[test]
fn the_baseline_is_never_written_over() {
    let dir = tempfile::tempdir().unwrap();
    let gz = dump_gz(dir.path());
    // Refused before the baseline is even read, so any file will do.
    let baseline = dir.path().join("baseline.txt");
    std::fs::write(&baseline, "not read\n").unwrap();
    let b = arg(&baseline);
    let input = arg(&gz);
    for job in ["anomaly", "pageviews"] {
        let common = ["run", job, "--input-format", "dump", "--input", &input];
        for flag in ["--baseline-out", "--out", "--trending-out", "--anomaly-out"] {
            if (job, flag) == ("anomaly", "--trending-out")
                || (job, flag) == ("anomaly", "--anomaly-out")
                || (job, flag) == ("pageviews", "--out")
            {
                continue;
            }
            let mut args = strings(&common);
            args.extend(strings(&["--baseline", &b, flag, &b, "--quiet"]));
            refused(&args, &[&b, flag, "--baseline "], &[&baseline, &gz]);
        }
        // The input itself, too.
        let mut args = strings(&common);
        args.extend(strings(&["--baseline", &b, "--baseline-out", &input]));
        refused(&args, &[&input, "--baseline-out"], &[&baseline, &gz]);
    }
    // `keyflow baseline --out` over one of its inputs.
    refused(
        &strings(&["baseline", "--input", &input, "--out", &input]),
        &[&input, "--out"],
        &[&gz],
    );
}

#[test]
fn pageviews_refuses_the_trending_flags_it_does_not_use() {
    let dir = tempfile::tempdir().unwrap();
    let views = views_jsonl(dir.path());
    let baseline = dir.path().join("baseline.txt");
    std::fs::write(&baseline, "").unwrap();
    let out = arg(&dir.path().join("o.jsonl"));
    let common = ["run", "pageviews", "--input", &arg(&views)];
    for (extra, name) in [
        (vec!["--out", &out], "--out"),
        (
            vec!["--late", "side-output", "--late-out", &out],
            "--late-out",
        ),
    ] {
        let mut args = strings(&common);
        args.extend(strings(&["--baseline", &arg(&baseline)]));
        args.extend(strings(&extra));
        refused(&args, &[name, "run pageviews"], &[&views]);
    }
}

#[test]
fn devices_stay_allowed_as_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let views = views_jsonl(dir.path());
    let run = keyflow(
        trending_args(&[
            "--input",
            &arg(&views),
            "--out",
            "/dev/null",
            "--late",
            "side-output",
            "--late-out",
            "/dev/null",
            "--quiet",
        ]),
        FAST,
    );
    for refusal in ["never overwrites", "two outputs", "inside input"] {
        assert!(!run.stderr.contains(refusal), "{}", run.stderr);
    }
}
