//! The single-writer sinks (plain and encoded) and the partitioned sink:
//! ordered output that is
//! byte for byte the same at 1, 2 and 4 workers (and equal to a naive
//! recomputation), part files sorted within each time whose union is the
//! ordered output, and exactly-once output across a failure and a restore,
//! at the same worker count and at others.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use keyflow_dataflow::checkpoint::newest_complete;
use keyflow_dataflow::prelude::*;
use keyflow_dataflow::testing::{ScriptedSource, Step};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const SIZE: u64 = 10 * SECOND;
const SLIDE: u64 = 2 * SECOND;
const KEYS: u32 = 200;
/// Event time of the first records: every window of them starts at or
/// after zero.
const START: u64 = 20 * SECOND;

type Counted = WindowResult<u32, u64>;

/// A fresh directory for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("keyflow-sinks-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Random keys on increasing times, jittered by less than the default
/// out-of-orderness (5 s) so that no record is late: the same results at
/// any layout, and a plain recomputation knows them.
fn random_partitions(seed: u64, partitions: usize, per_partition: usize) -> Vec<Vec<(u64, u32)>> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..partitions)
        .map(|_| {
            let mut base = START;
            (0..per_partition)
                .map(|_| {
                    base += rng.gen_range(0..40);
                    (base + rng.gen_range(0..1_500), rng.gen_range(0..KEYS))
                })
                .collect()
        })
        .collect()
}

/// The ordered output a sliding count of `parts` must write: per window
/// end, the results sorted, one JSON line each.
fn expected_lines(parts: &[Vec<(u64, u32)>]) -> String {
    let mut counts: BTreeMap<(u64, u32), u64> = BTreeMap::new();
    for &(ts, key) in parts.iter().flatten() {
        let mut start = ts - ts % SLIDE;
        while start + SIZE > ts {
            *counts.entry((start + SIZE, key)).or_default() += 1;
            start -= SLIDE;
        }
    }
    let mut text = String::new();
    for ((end, key), value) in counts {
        let result = WindowResult {
            key,
            start: end - SIZE,
            end,
            value,
            update: false,
        };
        text.push_str(&serde_json::to_string(&result).unwrap());
        text.push('\n');
    }
    text
}

/// The scripts of a scripted source over `parts`; partition 0 pauses after
/// `abort_after` records (long enough for the checkpoints below its
/// watermark to complete) and then fails.
fn scripts(parts: &[Vec<(u64, u32)>], abort_after: Option<usize>) -> Vec<Vec<Step<u32>>> {
    parts
        .iter()
        .enumerate()
        .map(|(p, records)| {
            let mut script: Vec<_> = records.iter().map(|&(ts, k)| Step::Event(ts, k)).collect();
            if let (0, Some(n)) = (p, abort_after) {
                script.truncate(n);
                script.push(Step::Pause(Duration::from_millis(700)));
                script.push(Step::Abort("the disk went away".into()));
            }
            script
        })
        .collect()
}

/// Runs the sliding count over `scripts`, writing the results to
/// `DIR/ordered.jsonl`, again to `DIR/encoded.jsonl` through the encoded
/// single writer, and as parts under `DIR/parts`.
fn count_job(config: &RunConfig, scripts: Vec<Vec<Step<u32>>>, dir: &Path) -> Result<()> {
    let scripts = Arc::new(scripts);
    let dir = dir.to_path_buf();
    run(config, move |flow| {
        let source = ScriptedSource::new(scripts.as_ref().clone());
        let results = flow
            .source("keys", source, &SourceConfig::default())?
            .key_by(|k| (k, ()))
            .window(WindowSpec::sliding(SIZE, SLIDE)?)
            .count("counts")
            .results;
        let ordered = dir.join("ordered.jsonl");
        results
            .clone()
            .sink("ordered", move || JsonLinesSink::create(&ordered))?;
        // The same lines, encoded on the workers.
        let encoded = dir.join("encoded.jsonl");
        results.clone().sink_encoded(
            "encoded",
            |_, r: &Counted, out: &mut Vec<u8>| {
                serde_json::to_writer(&mut *out, r).unwrap();
                out.push(b'\n');
            },
            move || JsonLinesSink::create(&encoded),
        )?;
        let parts = dir.join("parts");
        results.sink_partitioned("parts", move |w| JsonLinesSink::part(&parts, w))
    })
    .map(|_| ())
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn parse(text: &str) -> Vec<Counted> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The finished part files in `dir`, by part number; panics on anything
/// else there (a file in progress left behind, say).
fn part_files(dir: &Path) -> BTreeMap<usize, String> {
    finished_parts(dir, false)
}

/// The finished part files in `dir`, by part number, skipping files in
/// progress (hidden names) if `in_progress` allows them.
fn finished_parts(dir: &Path, in_progress: bool) -> BTreeMap<usize, String> {
    let mut parts = BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if in_progress && name.starts_with('.') {
            continue;
        }
        let part = name
            .strip_prefix("part-")
            .and_then(|n| n.strip_suffix(".jsonl"))
            .and_then(|n| n.parse::<usize>().ok())
            .unwrap_or_else(|| panic!("unexpected file `{name}` in {}", dir.display()));
        parts.insert(part, read(&dir.join(&name)));
    }
    parts
}

/// Checks that each part is sorted within each time, times in order, and
/// that together they hold exactly the records of `ordered`.
fn assert_parts_match(parts: &BTreeMap<usize, String>, ordered: &str) {
    let mut union = Vec::new();
    for (part, text) in parts {
        let records = parse(text);
        for pair in records.windows(2) {
            assert!(
                (pair[0].end, &pair[0]) <= (pair[1].end, &pair[1]),
                "part {part} is out of order: {:?} before {:?}",
                pair[0],
                pair[1]
            );
        }
        union.extend(records);
    }
    union.sort_by(|a, b| (a.end, a).cmp(&(b.end, b)));
    assert_eq!(union, parse(ordered), "the parts hold other records");
}

#[test]
fn ordered_output_is_byte_identical_at_1_2_4_and_7_workers() {
    let dir = scratch("layouts");
    let parts = random_partitions(11, 5, 1_500);
    let want = expected_lines(&parts);
    assert!(want.lines().count() > 1_000, "too few results to mean much");
    // From 4 workers on the workers merge by range; at 7, two of them read
    // no partition and hold no run of their own.
    for workers in [1, 2, 4, 7] {
        let out = dir.join(format!("w{workers}"));
        count_job(&RunConfig::threads(workers), scripts(&parts, None), &out).unwrap();
        let ordered = read(&out.join("ordered.jsonl"));
        assert!(
            ordered == want,
            "{workers} workers: the ordered output differs from the recomputation"
        );
        assert!(
            read(&out.join("encoded.jsonl")) == want,
            "{workers} workers: the encoded output differs from the recomputation"
        );
        let files = part_files(&out.join("parts"));
        assert_eq!(
            files.keys().copied().collect::<Vec<_>>(),
            (0..workers).collect::<Vec<_>>()
        );
        assert_parts_match(&files, &ordered);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn equal_records_from_many_workers_merge_like_a_sort() {
    // Only values: many equal records per time, from every worker.
    let dir = scratch("ties");
    let parts = random_partitions(5, 4, 800);
    let mut want: Vec<(u64, u64)> = parse(&expected_lines(&parts))
        .into_iter()
        .map(|r| (r.end, r.value % 4))
        .collect();
    want.sort();
    let want: String = want.iter().map(|(_, v)| format!("{v}\n")).collect();
    // Ties at a cut: equal records must all land in one range.
    for workers in [1, 3, 4, 6] {
        let path = dir.join(format!("values-{workers}.jsonl"));
        let target = path.clone();
        let scripted = Arc::new(scripts(&parts, None));
        run(&RunConfig::threads(workers), move |flow| {
            let target = target.clone();
            flow.source(
                "keys",
                ScriptedSource::new(scripted.as_ref().clone()),
                &SourceConfig::default(),
            )?
            .key_by(|k| (k, ()))
            .window(WindowSpec::sliding(SIZE, SLIDE)?)
            .count("counts")
            .results
            .map(|r| r.value % 4)
            .sink("values", move || JsonLinesSink::create(&target))
        })
        .unwrap();
        assert!(read(&path) == want, "{workers} workers");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn times_of_many_records_are_cut_merged_and_joined_like_a_sort() {
    // Runs of thousands of records per worker and time, which the workers
    // cut into ranges from 4 workers on, with many repeats at the cuts,
    // and a last time of a few records, which goes to the writer whole.
    let dir = scratch("ranges");
    let record = |p: usize, i: u64| {
        let time = if i < 24_000 { i / 8_000 } else { 9 };
        let value = (i * 7_919 + p as u64 * 104_729) % 5_000;
        (time, value)
    };
    let mut want: Vec<(u64, u64)> = (0..6)
        .flat_map(|p| (0..24_003).map(move |i| record(p, i)))
        .collect();
    want.sort_unstable();
    let want: String = want.iter().map(|(_, v)| format!("{v}\n")).collect();
    for workers in [1, 4, 6] {
        let path = dir.join(format!("values-{workers}.jsonl"));
        let target = path.clone();
        run(&RunConfig::threads(workers), move |flow| {
            let target = target.clone();
            let input = IterSource::new("many", 6, move |p| (0..24_003).map(move |i| record(p, i)));
            flow.source("many", input, &SourceConfig::default())?
                .sink("values", move || JsonLinesSink::create(&target))
        })
        .unwrap();
        assert!(read(&path) == want, "{workers} workers");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The uninterrupted run's outputs at `workers`.
fn reference(dir: &Path, parts: &[Vec<(u64, u32)>], workers: usize) -> PathBuf {
    let out = dir.join(format!("reference-{workers}"));
    count_job(&RunConfig::threads(workers), scripts(parts, None), &out).unwrap();
    out
}

#[test]
fn a_failed_run_restarted_from_its_checkpoint_writes_what_an_uninterrupted_one_does() {
    // At 2 workers the writer merges the runs; at 5 the workers merge them
    // by range.
    for workers in [2, 5] {
        restarted_at(workers);
    }
}

fn restarted_at(workers: usize) {
    let dir = scratch(&format!("restart-{workers}"));
    let parts = random_partitions(23, 3, 1_500);
    let want = reference(&dir, &parts, workers);
    let (out, ckpt) = (dir.join("run"), dir.join("ckpt"));
    let config = RunConfig::threads(workers).checkpointed(&ckpt, 2 * SECOND, "sink test v1");

    let err = count_job(&config, scripts(&parts, Some(700)), &out).unwrap_err();
    assert!(err.to_string().contains("the disk went away"), "{err}");
    assert!(
        newest_complete(&ckpt).unwrap().is_some(),
        "no checkpoint completed before the failure: the test proves nothing"
    );
    assert!(!out.join("ordered.jsonl").exists());
    assert!(!out.join("encoded.jsonl").exists());
    count_job(&config, scripts(&parts, None), &out).unwrap();

    assert!(read(&out.join("ordered.jsonl")) == read(&want.join("ordered.jsonl")));
    assert!(read(&out.join("encoded.jsonl")) == read(&want.join("ordered.jsonl")));
    // At the same layout every part is the same, byte for byte.
    let (got, wanted) = (
        part_files(&out.join("parts")),
        part_files(&want.join("parts")),
    );
    assert!(
        got == wanted,
        "the parts differ from the uninterrupted run's"
    );
    assert_parts_match(&got, &read(&want.join("ordered.jsonl")));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn parts_survive_restores_at_fewer_and_then_more_workers() {
    let dir = scratch("rescale");
    let parts = random_partitions(31, 4, 2_000);
    let want = read(&reference(&dir, &parts, 2).join("ordered.jsonl"));
    let (out, ckpt) = (dir.join("run"), dir.join("ckpt"));
    let at = |workers| RunConfig::threads(workers).checkpointed(&ckpt, 2 * SECOND, "rescale v1");

    // 4 workers fail; 2 workers restore, take parts 2 and 3 over as they
    // were committed, and fail later, so that nothing is published; 4
    // workers restore again, resume parts 2 and 3 from the points that
    // worker 0 carried, and finish.
    count_job(&at(4), scripts(&parts, Some(600)), &out).unwrap_err();
    let first = newest_complete(&ckpt)
        .unwrap()
        .expect("a checkpoint at 4 workers");
    count_job(&at(2), scripts(&parts, Some(1_400)), &out).unwrap_err();
    let second = newest_complete(&ckpt)
        .unwrap()
        .expect("a checkpoint at 2 workers");
    assert!(
        second > first,
        "the run at 2 workers completed no checkpoint of its own"
    );
    let finished = finished_parts(&out.join("parts"), true);
    assert!(finished.is_empty(), "a failed run published {finished:?}");
    let in_progress = std::fs::read_dir(out.join("parts")).unwrap().count();
    assert_eq!(in_progress, 4, "every part stays in progress");
    count_job(&at(4), scripts(&parts, None), &out).unwrap();

    assert!(read(&out.join("ordered.jsonl")) == want);
    let files = part_files(&out.join("parts"));
    assert_eq!(files.keys().copied().collect::<Vec<_>>(), vec![0, 1, 2, 3]);
    assert_parts_match(&files, &want);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_restore_at_fewer_workers_finishes_the_higher_parts_as_committed() {
    let dir = scratch("shrink");
    let parts = random_partitions(41, 4, 1_500);
    let want = read(&reference(&dir, &parts, 4).join("ordered.jsonl"));
    let (out, ckpt) = (dir.join("run"), dir.join("ckpt"));
    let at = |workers| RunConfig::threads(workers).checkpointed(&ckpt, 2 * SECOND, "shrink v1");

    count_job(&at(4), scripts(&parts, Some(700)), &out).unwrap_err();
    assert!(newest_complete(&ckpt).unwrap().is_some());
    count_job(&at(1), scripts(&parts, None), &out).unwrap();

    let files = part_files(&out.join("parts"));
    assert_eq!(files.keys().copied().collect::<Vec<_>>(), vec![0, 1, 2, 3]);
    assert!(read(&out.join("ordered.jsonl")) == want);
    assert_parts_match(&files, &want);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Writes `lines` through a `JsonLinesSink` on `path`, as a job does.
fn write_lines(path: &Path, lines: &[u64]) -> keyflow_dataflow::Result<()> {
    let mut sink = JsonLinesSink::create(path)?;
    let records: Vec<(u64, u64)> = lines.iter().map(|&l| (l, l)).collect();
    Sink::write(&mut sink, 0, &records)?;
    Sink::<u64>::close(&mut sink)
}

/// A directory at the output's path is refused when the sink is made,
/// before any work; a symbolic link is written through, and stays a link
/// (as `/dev/stdout` does when a shell sends it to a file).
#[test]
fn a_directory_is_refused_up_front_and_a_link_is_written_through() {
    let dir = scratch("links");
    std::fs::create_dir_all(dir.join("a dir")).unwrap();
    let err = JsonLinesSink::create(&dir.join("a dir")).err().unwrap();
    assert!(err.to_string().contains("is a directory"), "{err}");

    let target = dir.join("target.jsonl");
    std::fs::write(&target, "old\n").unwrap();
    let link = dir.join("link.jsonl");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    write_lines(&link, &[1, 2]).unwrap();
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "1\n2\n");

    // A link to a file not yet there makes that file.
    let dangling = dir.join("dangling.jsonl");
    std::os::unix::fs::symlink("made.jsonl", &dangling).unwrap();
    write_lines(&dangling, &[3]).unwrap();
    assert_eq!(
        std::fs::read_to_string(dir.join("made.jsonl")).unwrap(),
        "3\n"
    );
    assert!(std::fs::symlink_metadata(&dangling)
        .unwrap()
        .file_type()
        .is_symlink());
    std::fs::remove_dir_all(&dir).unwrap();
}
