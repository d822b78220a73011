//! Shared by the trending end-to-end tests: a bounded runner for the
//! `keyflow` binary, and an independent brute-force oracle of the trending
//! job's semantics (per-file lateness, six 10-minute windows per minute
//! boundary, the rise rules, the ranking, the hourly totals).
//!
//! The oracle shares no code with the job: it is plain loops over the
//! events, written from the spec, so that a disagreement points at one of
//! the two.

// Each test crate uses a different part of this module.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// The binary under test.
pub const KEYFLOW: &str = env!("CARGO_BIN_EXE_keyflow");

/// One minute in ms.
pub const MINUTE: u64 = 60_000;
/// One hour in ms.
pub const HOUR: u64 = 3_600_000;

// ---------------------------------------------------------------------------
// Running the binary.

/// What a finished `keyflow` run left behind.
#[derive(Debug)]
pub struct RunOutput {
    /// Exit code (`None` when killed by a signal).
    pub code: Option<i32>,
    /// Everything written to stdout.
    pub stdout: String,
    /// Everything written to stderr.
    pub stderr: String,
    /// Wall time of the run.
    pub elapsed: Duration,
}

impl RunOutput {
    /// Panics with the run's stderr unless it exited 0.
    pub fn assert_success(&self, what: &str) -> &Self {
        assert_eq!(
            self.code,
            Some(0),
            "{what}: keyflow failed\n--- stderr ---\n{}",
            self.stderr
        );
        self
    }

    /// The numbers of the final `done: N events, L late, B bad, F too far in
    /// the future` line on stderr.
    pub fn done(&self) -> DoneLine {
        let line = self
            .stderr
            .lines()
            .rev()
            .find(|l| l.starts_with("done: "))
            .unwrap_or_else(|| panic!("no `done:` line on stderr:\n{}", self.stderr));
        let nums: Vec<u64> = line
            .split(|c: char| !c.is_ascii_digit())
            .filter(|s| !s.is_empty())
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(nums.len(), 4, "unexpected summary line {line:?}");
        let expected = format!(
            "done: {} events, {} late, {} bad, {} too far in the future",
            nums[0], nums[1], nums[2], nums[3]
        );
        assert_eq!(line, expected, "summary line has an unexpected shape");
        DoneLine {
            events: nums[0],
            late: nums[1],
            bad: nums[2],
            future: nums[3],
        }
    }
}

/// The counters of the final summary line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DoneLine {
    /// Records read (late ones included).
    pub events: u64,
    /// Late records.
    pub late: u64,
    /// Malformed records.
    pub bad: u64,
    /// Records too far in the future.
    pub future: u64,
}

/// Runs `keyflow ARGS`, killing it (and failing the test) after `limit`.
/// stdout and stderr go to anonymous files, so a chatty run can never block
/// on a full pipe.
pub fn keyflow<I, S>(args: I, limit: Duration) -> RunOutput
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let args: Vec<_> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
    let mut out = tempfile::tempfile().unwrap();
    let mut err = tempfile::tempfile().unwrap();
    let start = Instant::now();
    let mut child = Command::new(KEYFLOW)
        .args(&args)
        .env_remove("RUST_LOG")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::from(out.try_clone().unwrap()))
        .stderr(Stdio::from(err.try_clone().unwrap()))
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {KEYFLOW}: {e}"));
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            let mut text = String::new();
            err.seek(SeekFrom::Start(0)).unwrap();
            let _ = err.read_to_string(&mut text);
            panic!("keyflow {args:?} ran past {limit:?}; killed\n--- stderr ---\n{text}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let elapsed = start.elapsed();
    let read = |f: &mut std::fs::File| {
        let mut bytes = Vec::new();
        f.seek(SeekFrom::Start(0)).unwrap();
        f.read_to_end(&mut bytes).unwrap();
        String::from_utf8_lossy(&bytes).into_owned()
    };
    RunOutput {
        code: status.code(),
        stdout: read(&mut out),
        stderr: read(&mut err),
        elapsed,
    }
}

/// `run trending` followed by `extra`, as owned strings.
pub fn trending_args(extra: &[&str]) -> Vec<String> {
    ["run", "trending"]
        .iter()
        .chain(extra)
        .map(|s| s.to_string())
        .collect()
}

/// A path as a `String` argument.
pub fn arg(path: &Path) -> String {
    path.to_str().expect("test paths are UTF-8").to_string()
}

// ---------------------------------------------------------------------------
// The oracle's data model.

/// One pageview event of an input file.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Event {
    /// Wikimedia domain code.
    pub project: String,
    /// Page title.
    pub title: String,
    /// Event time, ms.
    pub ts: u64,
    /// Views it stands for.
    pub views: u64,
}

impl Event {
    /// An event.
    pub fn new(project: &str, title: &str, ts: u64, views: u64) -> Self {
        Event {
            project: project.to_string(),
            title: title.to_string(),
            ts,
            views,
        }
    }

    /// The event as a JSON line; `views` is left out when `omit_views` (the
    /// reader then takes 1).
    pub fn json_line(&self, omit_views: bool) -> String {
        let mut v = serde_json::json!({
            "project": self.project,
            "title": self.title,
            "ts": self.ts,
        });
        if !omit_views {
            v["views"] = self.views.into();
        }
        v.to_string()
    }
}

/// Which series count as rising.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// `c1 <= .. <= c6`, `c6 > c1`.
    Default,
    /// `c1 < .. < c6`.
    Strict,
    /// `c1 <= .. <= c6`.
    AllowFlat,
}

/// The job's parameters, as the oracle sees them.
#[derive(Debug, Clone, Copy)]
pub struct Params {
    /// Window length, ms.
    pub window: u64,
    /// Slide, ms.
    pub slide: u64,
    /// Number of windows.
    pub windows: usize,
    /// The rule.
    pub rule: Rule,
    /// Least `c1`.
    pub min_views: u64,
    /// Entries listed; 0 = all.
    pub top: usize,
    /// Allowed out-of-orderness, ms.
    pub out_of_orderness: u64,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            window: 10 * MINUTE,
            slide: MINUTE,
            windows: 6,
            rule: Rule::Default,
            min_views: 1,
            top: 10,
            out_of_orderness: 5_000,
        }
    }
}

/// One listed article, in the field order of the job's JSON lines.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// 1-based rank.
    pub rank: usize,
    /// Project.
    pub project: String,
    /// Title.
    pub title: String,
    /// `c1..c6`.
    pub counts: Vec<u64>,
}

/// One evaluated minute, in the field order of the job's JSON lines.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Minute {
    /// The boundary.
    pub t: u64,
    /// Number of trending articles.
    pub trending: u64,
    /// The ranked entries.
    pub top: Vec<Entry>,
}

/// Splits each file's events (in file order) into on-time and late ones by
/// the per-file watermark rule: the watermark is the largest event time seen
/// so far in that file minus the out-of-orderness (0 before any event), and
/// an event strictly below it is late. Returns (on-time, late), each in
/// file order, files one after the other.
pub fn split_late(files: &[Vec<Event>], out_of_orderness: u64) -> (Vec<Event>, Vec<Event>) {
    let (mut on_time, mut late) = (Vec::new(), Vec::new());
    for file in files {
        let mut max_seen: Option<u64> = None;
        for e in file {
            let watermark = max_seen.map_or(0, |m| m.saturating_sub(out_of_orderness));
            if e.ts < watermark {
                late.push(e.clone());
            } else {
                max_seen = Some(max_seen.map_or(e.ts, |m| m.max(e.ts)));
                on_time.push(e.clone());
            }
        }
    }
    (on_time, late)
}

fn rule_holds(rule: Rule, c: &[u64]) -> bool {
    let mut non_decreasing = true;
    let mut strict = true;
    for i in 1..c.len() {
        if c[i - 1] > c[i] {
            non_decreasing = false;
        }
        if c[i - 1] >= c[i] {
            strict = false;
        }
    }
    match rule {
        Rule::Default => non_decreasing && c[c.len() - 1] > c[0],
        Rule::Strict => strict,
        Rule::AllowFlat => non_decreasing,
    }
}

/// The brute-force minute results over on-time `events`: every boundary `T`
/// (a multiple of the slide) with an event in `[T - span, T)`, in order.
pub fn minutes(events: &[Event], p: &Params) -> Vec<Minute> {
    let span = p.window * p.windows as u64;
    let mut boundaries = BTreeSet::new();
    for e in events {
        // T with T - span <= ts < T.
        let mut t = (e.ts / p.slide + 1) * p.slide;
        while t <= e.ts + span {
            boundaries.insert(t);
            t += p.slide;
        }
    }
    let mut out = Vec::new();
    for t in boundaries {
        // Signed: near the epoch the first windows start before it.
        let start = t as i128 - span as i128;
        let mut counts: BTreeMap<(&str, &str), Vec<u64>> = BTreeMap::new();
        for e in events {
            if e.ts as i128 >= start && e.ts < t {
                let w = ((e.ts as i128 - start) / p.window as i128) as usize;
                counts
                    .entry((&e.project, &e.title))
                    .or_insert_with(|| vec![0; p.windows])[w] += e.views;
            }
        }
        let mut rising: Vec<((&str, &str), Vec<u64>)> = counts
            .into_iter()
            .filter(|(_, c)| c[0] >= p.min_views && rule_holds(p.rule, c))
            .collect();
        let growth = |c: &[u64]| c[c.len() - 1] - c[0];
        rising.sort_by(|(ka, a), (kb, b)| {
            growth(b)
                .cmp(&growth(a))
                .then(b[b.len() - 1].cmp(&a[a.len() - 1]))
                .then(ka.0.as_bytes().cmp(kb.0.as_bytes()))
                .then(ka.1.as_bytes().cmp(kb.1.as_bytes()))
        });
        let trending = rising.len() as u64;
        if p.top > 0 {
            rising.truncate(p.top);
        }
        let top = rising
            .into_iter()
            .enumerate()
            .map(|(i, ((project, title), counts))| Entry {
                rank: i + 1,
                project: project.to_string(),
                title: title.to_string(),
                counts,
            })
            .collect();
        out.push(Minute { t, trending, top });
    }
    out
}

/// Minutes as the job's JSON-lines text.
pub fn to_jsonl(minutes: &[Minute]) -> String {
    minutes
        .iter()
        .map(|m| serde_json::to_string(m).unwrap() + "\n")
        .collect()
}

/// Parses the job's JSON-lines output, failing on any line that does not
/// have exactly the expected shape.
pub fn parse_minutes(text: &str) -> Vec<Minute> {
    text.lines()
        .enumerate()
        .map(|(i, line)| {
            let m: Minute = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("output line {}: {e}: {line}", i + 1));
            assert_eq!(
                serde_json::to_string(&m).unwrap(),
                line,
                "output line {} has unexpected fields or field order",
                i + 1
            );
            m
        })
        .collect()
}

/// Compares the job's output text with the oracle's minutes: names the
/// first minute that differs, then checks the whole text byte for byte.
pub fn assert_minutes_eq(what: &str, actual: &str, expected: &[Minute]) {
    let got = parse_minutes(actual);
    let got_ts: Vec<u64> = got.iter().map(|m| m.t).collect();
    assert!(
        got_ts.windows(2).all(|w| w[0] < w[1]),
        "{what}: output is not ordered by t (or repeats a minute)"
    );
    let by_t: BTreeMap<u64, &Minute> = got.iter().map(|m| (m.t, m)).collect();
    let want: BTreeMap<u64, &Minute> = expected.iter().map(|m| (m.t, m)).collect();
    let missing: Vec<u64> = want
        .keys()
        .filter(|t| !by_t.contains_key(t))
        .copied()
        .collect();
    let extra: Vec<u64> = by_t
        .keys()
        .filter(|t| !want.contains_key(t))
        .copied()
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{what}: evaluated boundaries differ: missing {} (first {:?}), unexpected {} (first {:?})",
        missing.len(),
        missing.first(),
        extra.len(),
        extra.first()
    );
    for (t, w) in &want {
        let g = by_t[t];
        assert_eq!(
            g, *w,
            "{what}: minute t={t} differs (left: job, right: oracle)"
        );
    }
    assert_eq!(
        actual,
        to_jsonl(expected),
        "{what}: output text differs from the oracle's"
    );
}

// ---------------------------------------------------------------------------
// Hourly totals.

/// Days since 1970-01-01 of a civil date (proleptic Gregorian).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// (year, month, day, hour) of a time in ms, UTC.
pub fn civil(ms: u64) -> (i64, u32, u32, u32) {
    let days = (ms / 86_400_000) as i64;
    let hour = ((ms % 86_400_000) / HOUR) as u32;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = (if mp < 10 { mp + 3 } else { mp - 9 }) as u32;
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
        hour,
    )
}

/// `pageviews-YYYYMMDD-HH0000` for the hour starting at `hour`.
pub fn hourly_name(hour: u64) -> String {
    let (y, m, d, h) = civil(hour);
    format!("pageviews-{y:04}{m:02}{d:02}-{h:02}0000")
}

/// Views per (project, title); `str` orders by bytes.
type Totals<'a> = BTreeMap<(&'a str, &'a str), u64>;

/// The expected `--hourly-out` directory: file name to content, per-article
/// totals of each hour that has on-time events, sorted by (project, title)
/// bytes.
pub fn hourly(events: &[Event]) -> BTreeMap<String, String> {
    let mut hours: BTreeMap<u64, Totals> = BTreeMap::new();
    for e in events {
        *hours
            .entry(e.ts / HOUR * HOUR)
            .or_default()
            .entry((&e.project, &e.title))
            .or_default() += e.views;
    }
    hours
        .into_iter()
        .map(|(h, totals)| {
            let text: String = totals
                .into_iter()
                .map(|((p, t), v)| format!("{p} {t} {v} 0\n"))
                .collect();
            (hourly_name(h), text)
        })
        .collect()
}

/// The files of a directory (hidden ones included, so that leftover
/// temporary files show), name to content.
pub fn read_dir_files(dir: &Path) -> BTreeMap<String, String> {
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let entry = entry.unwrap();
        let name = entry.file_name().into_string().unwrap();
        files.insert(name, std::fs::read_to_string(entry.path()).unwrap());
    }
    files
}

/// Compares an `--hourly-out` directory with the expected files.
pub fn assert_hourly_eq(what: &str, dir: &Path, expected: &BTreeMap<String, String>) {
    assert_files_eq(what, &read_dir_files(dir), expected);
}

/// Compares two sets of named text files, naming the first differing line.
pub fn assert_files_eq(
    what: &str,
    got: &BTreeMap<String, String>,
    expected: &BTreeMap<String, String>,
) {
    let names: Vec<&String> = got.keys().collect();
    let want: Vec<&String> = expected.keys().collect();
    assert_eq!(names, want, "{what}: file names differ");
    for (name, text) in expected {
        if got[name] != *text {
            let (g, w): (Vec<&str>, Vec<&str>) =
                (got[name].lines().collect(), text.lines().collect());
            let at = (0..g.len().max(w.len()))
                .find(|&i| g.get(i) != w.get(i))
                .unwrap_or(0);
            panic!(
                "{what}: {name} differs at line {} (left: actual {:?}, right: expected {:?}; \
                 {} vs {} lines)",
                at + 1,
                g.get(at),
                w.get(at),
                g.len(),
                w.len()
            );
        }
    }
}

// ---------------------------------------------------------------------------
// Dump files.

/// Start of the hour a `yyyymmdd-hhmmss` stamp names.
pub fn parse_stamp(s: &str) -> Option<u64> {
    if s.len() != 15 || !s.is_ascii() || s.as_bytes()[8] != b'-' {
        return None;
    }
    let n = |r: std::ops::Range<usize>| -> Option<u32> {
        let t = &s[r];
        t.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| t.parse().ok())?
    };
    let (y, mo, d, h) = (n(0..4)?, n(4..6)?, n(6..8)?, n(9..11)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 {
        return None;
    }
    Some(days_from_civil(y as i64, mo, d) as u64 * 86_400_000 + h as u64 * HOUR)
}

/// The hour stamp in a dump file's name.
pub fn file_hour(path: &Path) -> Option<u64> {
    let name = path.file_name()?.to_str()?;
    (0..name.len().saturating_sub(14))
        .filter(|&i| name.is_char_boundary(i) && name.is_char_boundary(i + 15))
        .find_map(|i| parse_stamp(&name[i..i + 15]))
}

/// A dump file's events, in the order a time-sorted replay gives them: a
/// line of N views in hour H becomes one event per minute m with
/// `N/60 + (m < N%60)` views (when that is positive) at `H + m min`.
/// Returns (events, number of malformed lines). Only the plain shapes are
/// accepted: 4 fields with the hour from `file_hour`, or 5 with a leading
/// stamp; numeric views and size.
pub fn dump_events(text: &str, file_hour: Option<u64>) -> (Vec<Event>, usize) {
    let mut events = Vec::new();
    let mut bad = 0;
    for line in text.lines() {
        if line.trim().is_empty() {
            continue;
        }
        let Some((hour, project, title, views)) = parse_dump_line(line, file_hour) else {
            bad += 1;
            continue;
        };
        for m in 0..60 {
            let v = views / 60 + u64::from(m < views % 60);
            if v > 0 {
                events.push(Event::new(project, title, hour + m * MINUTE, v));
            }
        }
    }
    // The replay emits a file's events in time order.
    events.sort_by_key(|e| e.ts);
    (events, bad)
}

/// `(hour, project, title, views)` of a well-formed dump line.
fn parse_dump_line(line: &str, file_hour: Option<u64>) -> Option<(u64, &str, &str, u64)> {
    let f: Vec<&str> = line.split(' ').collect();
    let hour = match f.len() {
        4 => file_hour?,
        5 => parse_stamp(f[0])?,
        _ => return None,
    };
    let [project, title, views, size] = f[f.len() - 4..] else {
        return None;
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let project_ok = project
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric())
        && project
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if !project_ok || title.is_empty() || !digits(views) || !digits(size) {
        return None;
    }
    Some((hour, project, title, views.parse().ok()?))
}

/// Reads a file, gunzipping `*.gz`.
pub fn read_text(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    if path.extension().is_some_and(|x| x == "gz") {
        let mut text = String::new();
        flate2::read::GzDecoder::new(&bytes[..])
            .read_to_string(&mut text)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        text
    } else {
        String::from_utf8(bytes).unwrap()
    }
}

/// A file of the real Wikimedia samples shipped under `data/`, failing
/// clearly when it is missing (never skipping the test).
pub fn sample_data(rel: &str) -> PathBuf {
    let path = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/data")).join(rel);
    assert!(
        path.exists(),
        "test data {} is missing: the real Wikimedia samples ship in the \
         repository under data/ (see data/README.md)",
        path.display()
    );
    path
}

/// A path under the facade package's `tests/` directory.
pub fn tests_dir(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join(rel)
}

/// Whether golden files should be regenerated (`KEYFLOW_BLESS=1`).
pub fn blessing() -> bool {
    std::env::var("KEYFLOW_BLESS").is_ok_and(|v| v == "1")
}
