//! The anomaly and baseline jobs on real data: 2016-08-01 is the history,
//! 2016-08-02 is scored hour by hour. Expected results come from the raw
//! files, parsed and scored with plain loops.

mod anomaly_support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anomaly_support::{
    assert_same_baseline, assert_same_hours, oracle, run_job, run_job_to_file, Hours,
};
use keyflow_dataflow::run::RunConfig;
use keyflow_dataflow::time::{days_from_civil, DAY, HOUR};
use keyflow_jobs::anomaly::{AnomalyConfig, Metric};
use keyflow_jobs::baseline::{run_baseline, Baseline, BaselineConfig};
use keyflow_jobs::pageviews::{Article, DumpTime, InputFormat, PageviewSource};

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../data/pagecounts-2016-08");
const AUG1: u64 = 1_470_009_600_000;
const AUG2: u64 = AUG1 + DAY;

fn files(day: &str) -> Vec<PathBuf> {
    let dir = Path::new(DATA);
    assert!(dir.is_dir(), "the real data {} is missing", dir.display());
    let files: Vec<PathBuf> = (0..24)
        .map(|h| dir.join(format!("pagecounts-{day}-{h:02}0000.gz")))
        .collect();
    assert!(files.iter().all(|f| f.is_file()));
    files
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "keyflow-anomaly-real-{}-{name}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `yyyymmdd-hh0000 project title views bytes` lines, read by hand.
fn raw_hours(files: &[PathBuf]) -> Hours {
    let mut hours = Hours::new();
    for path in files {
        let gz = flate2::read::MultiGzDecoder::new(std::fs::File::open(path).unwrap());
        for line in BufReader::new(gz).lines() {
            let line = line.unwrap();
            let f: Vec<&str> = line.split(' ').collect();
            assert_eq!(f.len(), 5, "{line}");
            let n = |r: std::ops::Range<usize>| f[0][r].parse::<u32>().unwrap();
            let start =
                days_from_civil(n(0..4) as i64, n(4..6), n(6..8)).unwrap() + n(9..11) as u64 * HOUR;
            let views: u64 = f[3].parse().unwrap();
            *hours
                .entry(start)
                .or_default()
                .entry(Article::named(f[1], f[2]))
                .or_default() += views;
        }
    }
    hours
}

/// The baseline of whole days of hours, by direct computation.
fn raw_baseline(hours: &Hours) -> Baseline {
    let days: std::collections::BTreeSet<u64> = hours.keys().map(|s| s - s % DAY).collect();
    let mut base = Baseline::empty();
    base.days = days.len() as u64;
    base.first_day = days.first().copied();
    base.last_day = days.last().copied();
    let mut totals: BTreeMap<Article, [f64; 24]> = BTreeMap::new();
    for (start, views) in hours {
        for (article, v) in views {
            totals.entry(article.clone()).or_insert([0.0; 24])[((start % DAY) / HOUR) as usize] +=
                *v as f64;
        }
    }
    for (article, t) in totals {
        base.keys.insert(article, t.map(|x| x / base.days as f64));
    }
    base
}

fn build_baseline(workers: usize, inputs: Vec<PathBuf>, out: &Path) -> Baseline {
    let config = BaselineConfig::new(inputs, InputFormat::Dump, out.to_path_buf());
    let summary = run_baseline(&RunConfig::threads(workers), &config).unwrap();
    assert!(summary.written);
    Baseline::read(out).unwrap()
}

fn day_two_source() -> impl Fn() -> PageviewSource + Send + Sync + 'static {
    let files = files("20160802");
    move || PageviewSource::from_files(InputFormat::Dump, &files, DumpTime::Start).unwrap()
}

#[test]
fn baseline_of_day_one_matches_the_raw_counts() {
    let dir = temp_dir("base1");
    let one = build_baseline(1, files("20160801"), &dir.join("w1.txt"));
    let three = build_baseline(3, files("20160801"), &dir.join("w3.txt"));
    let expected = raw_baseline(&raw_hours(&files("20160801")));
    assert_eq!(one.days, 1);
    assert_eq!((one.first_day, one.last_day), (Some(AUG1), Some(AUG1)));
    assert_eq!(one.keys.len(), 7291);
    assert_eq!(one, expected, "averages are exact for one day");
    assert_eq!(
        std::fs::read(dir.join("w1.txt")).unwrap(),
        std::fs::read(dir.join("w3.txt")).unwrap(),
        "the file is the same at any worker count"
    );
    assert_eq!(three, one);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn day_two_canberra_matches_direct_computation_at_any_worker_count() {
    let dir = temp_dir("canberra");
    let base = Arc::new(build_baseline(2, files("20160801"), &dir.join("base.txt")));
    let config = AnomalyConfig {
        top: 5,
        min_volume: 10.0,
        ..AnomalyConfig::new(base.clone())
    };
    let (want, _) = oracle(
        &base,
        &raw_hours(&files("20160802")),
        Metric::Canberra,
        5,
        10.0,
    );
    assert_eq!(want.len(), 24);
    let (one, metrics) = run_job(1, day_two_source(), &config);
    assert_eq!(metrics.bad + metrics.late() + metrics.future, 0);
    assert_same_hours(&one, &want);
    assert!(one
        .iter()
        .all(|h| h.day == "2016-08-02" && h.top.len() == 5));
    assert_eq!(
        one.iter().map(|h| h.hour).collect::<Vec<_>>(),
        (0..24).collect::<Vec<_>>()
    );
    for workers in [2, 4] {
        let (many, _) = run_job(workers, day_two_source(), &config);
        assert_eq!(many, one, "{workers} workers");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn day_two_bray_curtis_matches_direct_computation() {
    let dir = temp_dir("bray");
    let base = Arc::new(build_baseline(1, files("20160801"), &dir.join("base.txt")));
    let config = AnomalyConfig {
        metric: Metric::BrayCurtis,
        top: 5,
        min_volume: 10.0,
        ..AnomalyConfig::new(base.clone())
    };
    let (want, _) = oracle(
        &base,
        &raw_hours(&files("20160802")),
        Metric::BrayCurtis,
        5,
        10.0,
    );
    let (got, _) = run_job(2, day_two_source(), &config);
    assert_same_hours(&got, &want);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn daily_update_of_day_two_equals_the_two_day_baseline() {
    let dir = temp_dir("update");
    let base = Arc::new(build_baseline(1, files("20160801"), &dir.join("base1.txt")));
    let out = dir.join("updated.txt");
    let config = AnomalyConfig {
        top: 5,
        min_volume: 10.0,
        baseline_out: Some(out.clone()),
        ..AnomalyConfig::new(base.clone())
    };
    run_job(3, day_two_source(), &config);
    let updated = Baseline::read(&out).unwrap();
    let mut both = files("20160801");
    both.extend(files("20160802"));
    let two_days = build_baseline(2, both.clone(), &dir.join("base2.txt"));
    assert_eq!(two_days.days, 2);
    assert_eq!(
        (two_days.first_day, two_days.last_day),
        (Some(AUG1), Some(AUG2))
    );
    assert_same_baseline(&updated, &two_days);
    assert_same_baseline(&two_days, &raw_baseline(&raw_hours(&both)));
    let (_, by_oracle) = oracle(
        &base,
        &raw_hours(&files("20160802")),
        Metric::Canberra,
        5,
        10.0,
    );
    assert_same_baseline(&updated, &by_oracle);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn day_two_as_json_lines() {
    let dir = temp_dir("jsonl");
    let base = Arc::new(build_baseline(1, files("20160801"), &dir.join("base.txt")));
    let config = AnomalyConfig {
        top: 5,
        min_volume: 10.0,
        ..AnomalyConfig::new(base.clone())
    };
    let out = dir.join("anomalies.jsonl");
    run_job_to_file(2, day_two_source(), &config, &out);
    let text = std::fs::read_to_string(&out).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 24);
    assert!(lines[0].starts_with(r#"{"day":"2016-08-02","hour":0,"top":[{"rank":1,"project":""#));
    let parsed: Vec<keyflow_jobs::anomaly::AnomalyHour> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let (want, _) = oracle(
        &base,
        &raw_hours(&files("20160802")),
        Metric::Canberra,
        5,
        10.0,
    );
    assert_same_hours(&parsed, &want);
    // The file holds exactly the in-memory results, serialized (the JSON
    // parser above need not read floats back to the last bit).
    let (direct, _) = run_job(1, day_two_source(), &config);
    let serialized: Vec<String> = direct
        .iter()
        .map(|h| serde_json::to_string(h).unwrap())
        .collect();
    assert_eq!(lines, serialized);
    std::fs::remove_dir_all(&dir).unwrap();
}
