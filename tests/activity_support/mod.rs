//! Shared by the activity job's end-to-end tests: random web-shop events
//! written as JSON-lines files with disorder, late arrivals and bad lines,
//! and an independent brute-force oracle of the job's rules (per-file
//! lateness, tumbling windows, top pages, shares, conversion, per-user
//! features), plus a reader of the Parquet files it writes.
//!
//! The oracle shares no code with the job: plain loops over the events,
//! written from the rules in the README.

// Each test crate uses a different part of this module.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use arrow_array::{Array, Float64Array, Int64Array, StringArray, TimestampMillisecondArray};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

/// 2024-01-01T00:17:00Z: inputs start off the hour and off every window.
pub const START: u64 = 1_704_067_200_000 + 17 * 60_000;
/// One hour in ms.
pub const HOUR: u64 = 3_600_000;

/// The six actions, as the input spells them.
pub const ACTIONS: [&str; 6] = [
    "view",
    "click",
    "scroll",
    "add_to_cart",
    "purchase",
    "search",
];

/// One input event.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// `event_id`.
    pub id: u64,
    /// `user_id`: written as a JSON integer when it is all digits.
    pub user: String,
    /// `session_id`.
    pub session: String,
    /// `page_url`.
    pub page: String,
    /// `ts`.
    pub ts: u64,
    /// Index into [`ACTIONS`].
    pub action: usize,
    /// `browser`.
    pub browser: String,
    /// `device_type`.
    pub device: String,
    /// `click_x`, `click_y` of a click.
    pub click: Option<(f64, f64)>,
}

impl Event {
    /// The event as a JSON line, with the fields the job does not read too.
    /// Non-click events leave their coordinates out, null, or give some
    /// (which the job ignores), by the event's id.
    pub fn json_line(&self) -> String {
        let user = match self.user.parse::<u64>() {
            Ok(n) => json!(n),
            Err(_) => json!(self.user),
        };
        let mut v = json!({
            "event_id": format!("e{}", self.id),
            "user_id": user,
            "session_id": self.session,
            "page_url": self.page,
            "ts": self.ts,
            "action_type": ACTIONS[self.action],
            "browser": self.browser,
            "device_type": self.device,
            "timezone": "Europe/Berlin",
            "ip": format!("192.0.2.{}", self.id % 250),
        });
        match (self.click, self.id % 3) {
            (Some((x, y)), _) => {
                v["click_x"] = coordinate(x);
                v["click_y"] = coordinate(y);
            }
            (None, 0) => {}
            (None, 1) => {
                v["click_x"] = Value::Null;
                v["click_y"] = Value::Null;
            }
            (None, _) => {
                v["click_x"] = json!(5);
                v["click_y"] = json!(7.5);
            }
        }
        v.to_string()
    }
}

/// Whole coordinates as JSON integers, the others as numbers with a point.
fn coordinate(v: f64) -> Value {
    if v.fract() == 0.0 {
        json!(v as i64)
    } else {
        json!(v)
    }
}

/// Settings of [`events`].
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// Sessions to make.
    pub sessions: usize,
    /// Distinct users.
    pub users: usize,
    /// Event time the sessions spread over, ms.
    pub span: u64,
}

/// Random sessions of random users, each 1 to 12 minutes long, so that they
/// span windows; pages are skewed (ties are common), each user keeps a
/// browser and device, and one session in five can buy. Sorted by time.
pub fn events(seed: u64, shape: Shape) -> Vec<Event> {
    let mut rng = StdRng::seed_from_u64(seed);
    let browsers = ["Chrome", "Safari", "Firefox", "Edge", "Samsung Internet"];
    let devices = ["mobile", "desktop", "tablet"];
    let mut out = Vec::new();
    for s in 0..shape.sessions {
        let u = rng.gen_range(0..shape.users);
        // Some user ids are numbers in the input.
        let user = if u % 4 == 0 {
            format!("{}", 1000 + u)
        } else {
            format!("user-{u}")
        };
        let browser = browsers[(u * 7) % browsers.len()].to_string();
        let device = devices[(u * 3) % devices.len()].to_string();
        let begin = START + rng.gen_range(0..shape.span);
        let length = rng.gen_range(60_000..12 * 60_000);
        let buyer = rng.gen_bool(0.2);
        for _ in 0..rng.gen_range(3..30) {
            let weights: [u32; 6] = if buyer {
                [35, 25, 15, 10, 8, 7]
            } else {
                [45, 25, 20, 2, 0, 8]
            };
            let mut draw = rng.gen_range(0..100);
            let action = weights
                .iter()
                .position(|w| {
                    if draw < *w {
                        true
                    } else {
                        draw -= w;
                        false
                    }
                })
                .unwrap_or(0);
            let page = match ACTIONS[action] {
                "search" => "/search".to_string(),
                "purchase" => "/checkout".to_string(),
                _ => format!("/p{}", (rng.gen::<f64>().powi(2) * 15.0) as u32),
            };
            let click = (ACTIONS[action] == "click").then(|| {
                let x = rng.gen_range(0..1920) as f64;
                let y = rng.gen_range(0..2160) as f64 / 2.0;
                (x, y)
            });
            out.push(Event {
                id: out.len() as u64,
                user: user.clone(),
                session: format!("sess-{s}"),
                page,
                ts: begin + rng.gen_range(0..length),
                action,
                browser: browser.clone(),
                device: device.clone(),
                click,
            });
        }
    }
    out.sort_by_key(|e| (e.ts, e.id));
    out
}

/// One input file: its lines in order, good events and bad lines mixed.
#[derive(Debug, Clone, Default)]
pub struct File {
    /// `Ok(event)` or `Err(bad line)`.
    pub lines: Vec<Result<Event, String>>,
}

/// Bad lines that every policy must refuse.
pub fn bad_lines() -> Vec<String> {
    let click = r#"{"user_id":"u","session_id":"s","page_url":"/","ts":1704070000000,"action_type":"click","browser":"b","device_type":"d"}"#;
    vec![
        "not json".to_string(),
        r#"{"user_id":"u1","ts":1704070000000}"#.to_string(),
        click.replace("\"click\"", "\"tap\""),
        click.to_string(),
        click.replace("\"ts\":1704070000000", "\"ts\":\"soon\""),
    ]
}

/// Splits `events` over `files` files by session, shuffles each file's
/// order a little (up to `jitter` ms) and delays one event in `late_every`
/// by 20 to 90 seconds (most of those become late), and puts the bad lines
/// into the first file.
pub fn files(seed: u64, events: &[Event], files: usize, jitter: u64, late_every: u64) -> Vec<File> {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed);
    let mut keyed: Vec<Vec<(u64, u64, Event)>> = vec![Vec::new(); files];
    for e in events {
        let file = e.session.bytes().map(|b| b as usize).sum::<usize>() % files;
        let delay = if late_every > 0 && rng.gen_range(0..late_every) == 0 {
            rng.gen_range(20_000..90_000)
        } else {
            rng.gen_range(0..=jitter)
        };
        keyed[file].push((e.ts + delay, e.id, e.clone()));
    }
    let mut out: Vec<File> = keyed
        .into_iter()
        .map(|mut k| {
            k.sort_by_key(|(at, id, _)| (*at, *id));
            File {
                lines: k.into_iter().map(|(_, _, e)| Ok(e)).collect(),
            }
        })
        .collect();
    let first = &mut out[0].lines;
    for (i, bad) in bad_lines().into_iter().enumerate() {
        let at = (first.len() * (i + 1) / 7).min(first.len());
        first.insert(at, Err(bad));
    }
    out
}

/// Writes the files into `dir` as `events-N.jsonl`.
pub fn write_files(dir: &Path, files: &[File]) -> Vec<PathBuf> {
    files
        .iter()
        .enumerate()
        .map(|(n, f)| {
            let path = dir.join(format!("events-{n}.jsonl"));
            let text: String = f
                .lines
                .iter()
                .map(|l| match l {
                    Ok(e) => e.json_line() + "\n",
                    Err(bad) => bad.clone() + "\n",
                })
                .collect();
            std::fs::write(&path, text).unwrap();
            path
        })
        .collect()
}

/// Splits the files' events into on-time and late ones: per file, an event
/// is late when its time is below the largest time read before it in that
/// file minus the allowed out-of-orderness `ooo`.
pub fn split_late(files: &[File], ooo: u64) -> (Vec<Event>, Vec<Event>) {
    let (mut on_time, mut late) = (Vec::new(), Vec::new());
    for f in files {
        let mut max_seen: Option<u64> = None;
        for e in f.lines.iter().filter_map(|l| l.as_ref().ok()) {
            let watermark = max_seen.map_or(0, |m| m.saturating_sub(ooo));
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

/// The start of the window of `ts`.
pub fn window_of(ts: u64, window: u64) -> u64 {
    ts - ts % window
}

/// The `--out` lines the rules give for `events`, by window start: every
/// window with events, its top `top` pages (0: all), shares and conversion.
pub fn expected_windows(events: &[Event], window: u64, top: usize) -> Vec<Value> {
    let mut by_window: BTreeMap<u64, Vec<&Event>> = BTreeMap::new();
    for e in events {
        by_window
            .entry(window_of(e.ts, window))
            .or_default()
            .push(e);
    }
    by_window
        .into_iter()
        .map(|(start, evs)| {
            let total = evs.len() as u64;
            let count = |f: &dyn Fn(&Event) -> String| {
                let mut n: BTreeMap<String, u64> = BTreeMap::new();
                for e in &evs {
                    *n.entry(f(e)).or_default() += 1;
                }
                n
            };
            let mut pages: Vec<(String, u64)> = count(&|e| e.page.clone()).into_iter().collect();
            pages.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            if top > 0 {
                pages.truncate(top);
            }
            let shares = |n: BTreeMap<String, u64>| -> Vec<Value> {
                n.into_iter()
                    .map(|(name, c)| json!({"name": name, "events": c, "share": c as f64 / total as f64}))
                    .collect()
            };
            let sessions: BTreeSet<&str> = evs.iter().map(|e| e.session.as_str()).collect();
            let buying: BTreeSet<&str> = evs
                .iter()
                .filter(|e| ACTIONS[e.action] == "purchase")
                .map(|e| e.session.as_str())
                .collect();
            json!({
                "start": start,
                "end": start + window,
                "events": total,
                "top_pages": pages.iter().map(|(p, c)| json!({"page": p, "events": c})).collect::<Vec<_>>(),
                "browsers": shares(count(&|e| e.browser.clone())),
                "devices": shares(count(&|e| e.device.clone())),
                "conversion": {
                    "sessions": sessions.len(),
                    "purchasing": buying.len(),
                    "rate": buying.len() as f64 / sessions.len() as f64,
                },
            })
        })
        .collect()
}

/// One row of the per-user features.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// `window_start`.
    pub start: i64,
    /// `window_end`.
    pub end: i64,
    /// `user_id`.
    pub user: String,
    /// views, clicks, scrolls, add_to_cart, purchases, searches.
    pub counts: [i64; 6],
    /// `mean_click_x`, `mean_click_y`.
    pub mean: Option<(f64, f64)>,
}

/// The feature rows the rules give for `events`, sorted by window start
/// and user. Coordinates are whole or half pixels, so plain sums are exact.
pub fn expected_rows(events: &[Event], window: u64) -> Vec<Row> {
    let mut rows: BTreeMap<(u64, String), (Row, f64, f64)> = BTreeMap::new();
    for e in events {
        let start = window_of(e.ts, window);
        let (row, sx, sy) = rows.entry((start, e.user.clone())).or_insert_with(|| {
            let row = Row {
                start: start as i64,
                end: (start + window) as i64,
                user: e.user.clone(),
                counts: [0; 6],
                mean: None,
            };
            (row, 0.0, 0.0)
        });
        row.counts[e.action] += 1;
        if let Some((x, y)) = e.click {
            *sx += x;
            *sy += y;
        }
    }
    rows.into_values()
        .map(|(mut row, sx, sy)| {
            let clicks = row.counts[1];
            row.mean = (clicks > 0).then(|| (sx / clicks as f64, sy / clicks as f64));
            row
        })
        .collect()
}

/// Reads `--out`: one JSON value per line.
pub fn read_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

/// The Parquet files under `dir` (sorted by path), checking the layout:
/// only `date=YYYY-MM-DD/hour=HH/part-0.parquet`, nothing else (no
/// temporary files left).
pub fn lake_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                found.push(path);
            }
        }
    }
    found.sort();
    for f in &found {
        let rel = f.strip_prefix(dir).unwrap().to_str().unwrap().to_string();
        let parts: Vec<&str> = rel.split('/').collect();
        assert!(
            parts.len() == 3
                && parts[0].starts_with("date=")
                && parts[0].len() == 15
                && parts[1].starts_with("hour=")
                && parts[1].len() == 7
                && parts[2] == "part-0.parquet",
            "unexpected file {rel} in the Parquet output"
        );
    }
    found
}

/// Every row of every Parquet file under `dir`, read with the `parquet`
/// crate, in file order. Checks the column types, that each file's rows
/// are sorted by window start and user, and that each row's window starts
/// in its file's hour.
pub fn read_lake(dir: &Path) -> Vec<Row> {
    let mut rows = Vec::new();
    for path in lake_files(dir) {
        let file = std::fs::File::open(&path).unwrap();
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap();
        let mut in_file = Vec::new();
        for batch in reader {
            let batch = batch.unwrap();
            let col = |name: &str| {
                batch
                    .column_by_name(name)
                    .unwrap_or_else(|| panic!("no column {name}"))
            };
            let times = |name| {
                col(name)
                    .as_any()
                    .downcast_ref::<TimestampMillisecondArray>()
                    .unwrap()
                    .clone()
            };
            let (starts, ends) = (times("window_start"), times("window_end"));
            assert_eq!(starts.timezone(), Some("UTC"));
            let users = col("user_id")
                .as_any()
                .downcast_ref::<StringArray>()
                .unwrap()
                .clone();
            let counts: Vec<Int64Array> = [
                "views",
                "clicks",
                "scrolls",
                "add_to_cart",
                "purchases",
                "searches",
            ]
            .iter()
            .map(|n| {
                col(n)
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .unwrap()
                    .clone()
            })
            .collect();
            let mean = |name| {
                col(name)
                    .as_any()
                    .downcast_ref::<Float64Array>()
                    .unwrap()
                    .clone()
            };
            let (mx, my) = (mean("mean_click_x"), mean("mean_click_y"));
            for i in 0..batch.num_rows() {
                assert_eq!(mx.is_null(i), my.is_null(i));
                in_file.push(Row {
                    start: starts.value(i),
                    end: ends.value(i),
                    user: users.value(i).to_string(),
                    counts: std::array::from_fn(|c| counts[c].value(i)),
                    mean: (!mx.is_null(i)).then(|| (mx.value(i), my.value(i))),
                });
            }
        }
        assert!(
            in_file
                .windows(2)
                .all(|w| (w[0].start, &w[0].user) < (w[1].start, &w[1].user)),
            "{}: rows are not sorted by (window_start, user_id)",
            path.display()
        );
        let hour_dir = path.parent().unwrap().to_str().unwrap().to_string();
        for r in &in_file {
            let hour = r.start as u64 / HOUR * HOUR;
            assert!(
                hour_dir.ends_with(&hour_path(hour)),
                "{}: row of window {} is in the wrong hour",
                path.display(),
                r.start
            );
        }
        rows.extend(in_file);
    }
    rows
}

/// `date=YYYY-MM-DD/hour=HH` of the hour starting at `hour`.
pub fn hour_path(hour: u64) -> String {
    let days = hour / 86_400_000;
    // Howard Hinnant's civil_from_days.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + (m <= 2) as i64;
    format!(
        "date={y:04}-{m:02}-{d:02}/hour={:02}",
        hour % 86_400_000 / HOUR
    )
}
