//! Seeded oracle tests of the trending job: random JSON-lines inputs over
//! two or three files (one source partition each), run through the `keyflow`
//! binary and through the library at several worker counts, compared minute
//! by minute with a brute-force recomputation (`trending_support`).
//!
//! The inputs have many background articles, a few planted risers, groups
//! of articles with identical series (ranking ties on growth and `c6`,
//! broken by project then title), odd titles (UTF-8, quotes, upper before
//! lower case), a gap of more than an hour, out-of-order events within the
//! 5 s bound, events exactly at the watermark, and late events beyond it.

mod trending_support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use trending_support::*;

/// 2016-08-01T00:00:00Z.
const BASE: u64 = 1_470_009_600_000;
const LIMIT: Duration = Duration::from_secs(180);

/// The minutes (relative to `BASE`) that carry events: two stretches with a
/// gap of 85 minutes, so that 25 boundaries in between are not evaluated.
const SEGMENTS: [(u64, u64); 2] = [(0, 100), (185, 262)];

struct Scenario {
    tmp: tempfile::TempDir,
    /// Each file's events in file order.
    files: Vec<Vec<Event>>,
    paths: Vec<PathBuf>,
    /// Number of JSON lines written (all events).
    lines: u64,
}

impl Scenario {
    fn input_args(&self) -> Vec<String> {
        let mut args = vec!["--input".to_string()];
        args.extend(self.paths.iter().map(|p| arg(p)));
        args
    }

    fn dir(&self) -> &Path {
        self.tmp.path()
    }
}

fn background_articles() -> Vec<(String, String)> {
    let projects = ["en", "de", "fr", "en.m"];
    let mut articles: Vec<(String, String)> = (0..120)
        .map(|i| (projects[i % 4].to_string(), format!("Bg_{i:03}")))
        .collect();
    for (p, t) in [
        ("en", "Zebra"),
        ("en", "apple"),
        ("en", "Zürich"),
        ("en", "Ärger"),
        ("de", "Ö"),
        ("en", "Quote\"d"),
        ("en", "Back\\slash"),
        ("ja", "日本"),
        ("en", "Main_Page"),
    ] {
        articles.push((p.to_string(), t.to_string()));
    }
    articles
}

/// A ramp: in minute `m` after `start`, `base + (m / 10) * step` events of
/// one view, spread over the minute; `skip` is the chance to leave one out.
fn ramp(rng: &mut StdRng, start: u64, minutes: u64, base: u64, step: u64, skip: f64) -> Vec<u64> {
    let mut times = Vec::new();
    for m in 0..minutes {
        for _ in 0..base + (m / 10) * step {
            if rng.gen_bool(skip) {
                continue;
            }
            times.push(BASE + (start + m) * MINUTE + rng.gen_range(0..MINUTE));
        }
    }
    times
}

/// Builds, writes and returns a scenario of `nfiles` (at least 2) files.
fn scenario(seed: u64, nfiles: usize) -> Scenario {
    assert!(nfiles >= 2);
    let mut rng = StdRng::seed_from_u64(seed);
    let background = background_articles();
    let mut events: Vec<Event> = Vec::new();

    for (a, b) in SEGMENTS {
        for minute in a..b {
            for _ in 0..rng.gen_range(0..25) {
                // Skewed popularity: low indexes are drawn far more often.
                let r: f64 = rng.gen();
                let (p, t) = &background[(r * r * background.len() as f64) as usize];
                let views = if rng.gen_bool(0.8) {
                    1
                } else {
                    rng.gen_range(2..6)
                };
                let ts = BASE + minute * MINUTE + rng.gen_range(0..MINUTE);
                events.push(Event::new(p, t, ts, views));
            }
        }
    }
    // Risers, some noisy.
    for (i, (start, step, skip)) in [(0, 1, 0.0), (20, 3, 0.1), (40, 2, 0.3), (185, 4, 0.05)]
        .into_iter()
        .enumerate()
    {
        let title = format!("Riser_{i}");
        for ts in ramp(&mut rng, start, 66, 1, step, skip) {
            events.push(Event::new("en", &title, ts, 1));
        }
    }
    // Identical series: ties on growth and c6, broken by project, then title
    // (bytes: "Twin" < "Twin_b" < "twin").
    for start in [10, 190] {
        let times = ramp(&mut rng, start, 64, 1, 2, 0.0);
        for (p, t) in [
            ("en", "Twin"),
            ("de", "Twin"),
            ("en.m", "Twin"),
            ("en", "Twin_b"),
            ("en", "twin"),
        ] {
            events.extend(times.iter().map(|&ts| Event::new(p, t, ts, 1)));
        }
        // The same growth with a higher c6: ten more views in every window.
        for &ts in &times {
            events.push(Event::new("fr", "Tie_high", ts, 1));
        }
        for m in start..start + 64 {
            events.push(Event::new("fr", "Tie_high", BASE + m * MINUTE + 30_000, 1));
        }
    }

    // Files: the third and later ones (if any) start with the second stretch.
    let mut files: Vec<Vec<(u64, Event)>> = vec![Vec::new(); nfiles];
    for e in events {
        let in_first = e.ts < BASE + SEGMENTS[1].0 * MINUTE;
        let f = rng.gen_range(0..if in_first { 2 } else { nfiles });
        // Out of order within the bound: sorted by ts plus up to 5 s of
        // jitter, an event is never more than 5 s below an earlier one.
        let key = e.ts + rng.gen_range(0..=5_000);
        files[f].push((key, e));
    }
    let mut files: Vec<Vec<Event>> = files
        .into_iter()
        .map(|mut f| {
            f.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
            f.into_iter().map(|(_, e)| e).collect()
        })
        .collect();

    // Events exactly at the watermark (on time) and just below it or far
    // below it (late), inserted at random places.
    for file in files.iter_mut() {
        let mut out = Vec::with_capacity(file.len() + 64);
        let mut max = 0;
        for e in file.drain(..) {
            max = max.max(e.ts);
            out.push(e);
            if rng.gen_bool(0.004) {
                out.push(Event::new("en", "Edge", max - 5_000, 2));
                out.push(Event::new("en", "Edge", max - 5_001, 3));
            }
            if rng.gen_bool(0.004) {
                let (p, t) = &background[rng.gen_range(0..background.len())];
                out.push(Event::new(p, t, max - rng.gen_range(5_001..2 * HOUR), 1));
            }
        }
        *file = out;
    }
    // A late event inside the gap: it must not make the gap's boundaries
    // evaluated.
    files[0].push(Event::new("en", "Late_in_gap", BASE + 170 * MINUTE, 9));

    let dir = tempfile::tempdir().unwrap();
    let mut paths = Vec::new();
    let mut lines = 0;
    for (i, file) in files.iter().enumerate() {
        let path = dir.path().join(format!("views-{i}.jsonl"));
        let text: String = file
            .iter()
            .map(|e| e.json_line(e.views == 1 && rng.gen_bool(0.5)) + "\n")
            .collect();
        std::fs::write(&path, text).unwrap();
        lines += file.len() as u64;
        paths.push(path);
    }
    Scenario {
        tmp: dir,
        files,
        paths,
        lines,
    }
}

/// Guards against a vacuous comparison: the scenario must exercise what it
/// claims to.
fn assert_nontrivial(s: &Scenario, on_time: &[Event], late: &[Event], minutes: &[Minute]) {
    assert!(late.len() >= 5, "only {} late events", late.len());
    assert!(late.iter().any(|e| e.title == "Late_in_gap"));
    assert!(
        on_time.iter().any(|e| e.title == "Edge" && e.views == 2),
        "no event exactly at the watermark"
    );
    assert!(
        late.iter().any(|e| e.title == "Edge" && e.views == 3),
        "no event 1 ms below the watermark"
    );
    let out_of_order = s
        .files
        .iter()
        .flat_map(|f| f.windows(2))
        .filter(|w| w[1].ts < w[0].ts && w[0].ts - w[1].ts <= 5_000)
        .count();
    assert!(out_of_order > 100, "only {out_of_order} out-of-order pairs");
    assert!(minutes.len() > 150, "only {} minutes", minutes.len());
    assert!(
        minutes.iter().any(|m| m.trending >= 5),
        "nothing trends much"
    );
    assert!(
        minutes.windows(2).any(|w| w[1].t - w[0].t > HOUR / 3),
        "no gap in the evaluated boundaries"
    );
    let tie = |same_project: bool| {
        minutes.iter().any(|m| {
            m.top.windows(2).any(|w| {
                let (a, b) = (&w[0].counts, &w[1].counts);
                a[5] - a[0] == b[5] - b[0]
                    && a[5] == b[5]
                    && (w[0].project == w[1].project) == same_project
            })
        })
    };
    assert!(tie(true) && tie(false), "no ranking ties to break");
    assert!(
        minutes
            .iter()
            .any(|m| m.top.iter().any(|e| e.title == "Tie_high")),
        "Tie_high never trends"
    );
}

fn run_binary(s: &Scenario, workers: usize, extra: &[&str], tag: &str) -> (RunOutput, String) {
    let out = s.dir().join(format!("out-{tag}-w{workers}.jsonl"));
    let mut args = trending_args(extra);
    args.extend(s.input_args());
    args.extend([
        "--out".into(),
        arg(&out),
        "--workers".into(),
        workers.to_string(),
    ]);
    let run = keyflow(&args, LIMIT);
    run.assert_success(&format!("{tag} at {workers} workers"));
    let text = std::fs::read_to_string(&out).unwrap();
    (run, text)
}

#[test]
fn binary_matches_oracle_at_1_and_4_workers() {
    for (seed, nfiles) in [(11, 3), (12, 2)] {
        let s = scenario(seed, nfiles);
        let (on_time, late) = split_late(&s.files, 5_000);
        let params = Params {
            top: 0,
            ..Params::default()
        };
        let expected = minutes(&on_time, &params);
        assert_nontrivial(&s, &on_time, &late, &expected);
        let expected_hourly = hourly(&on_time);
        let mut texts = Vec::new();
        for workers in [1, 4] {
            let hourly_dir = s.dir().join(format!("hourly-w{workers}"));
            let tag = format!("seed {seed}");
            let (run, text) = run_binary(
                &s,
                workers,
                &["--top", "0", "--hourly-out", &arg(&hourly_dir)],
                &tag,
            );
            let what = format!("seed {seed}, {nfiles} files, {workers} workers");
            assert_minutes_eq(&what, &text, &expected);
            assert_hourly_eq(&what, &hourly_dir, &expected_hourly);
            let done = run.done();
            assert_eq!(
                done,
                DoneLine {
                    events: s.lines,
                    late: late.len() as u64,
                    bad: 0,
                    future: 0
                },
                "{what}: summary line"
            );
            texts.push(text);
        }
        assert_eq!(texts[0], texts[1], "1 and 4 workers differ");
    }
}

#[test]
fn rule_and_listing_options_match_oracle() {
    let s = scenario(14, 3);
    let default = Params::default();
    let cases: [(&[&str], Params); 6] = [
        (
            &["--strict", "--top", "0"],
            Params {
                rule: Rule::Strict,
                top: 0,
                ..default
            },
        ),
        (
            &["--allow-flat", "--top", "0"],
            Params {
                rule: Rule::AllowFlat,
                top: 0,
                ..default
            },
        ),
        (
            &["--min-views", "3", "--top", "0"],
            Params {
                min_views: 3,
                top: 0,
                ..default
            },
        ),
        (&["--top", "3"], Params { top: 3, ..default }),
        (
            &["--window", "4m", "--slide", "2m", "--top", "0"],
            Params {
                window: 4 * MINUTE,
                slide: 2 * MINUTE,
                top: 0,
                ..default
            },
        ),
        (
            &["--max-out-of-orderness", "30s", "--top", "0"],
            Params {
                out_of_orderness: 30_000,
                top: 0,
                ..default
            },
        ),
    ];
    let (on_time, _) = split_late(&s.files, 5_000);
    let base_trending: u64 = minutes(&on_time, &Params { top: 0, ..default })
        .iter()
        .map(|m| m.trending)
        .sum();
    for (flags, params) in cases {
        let (on_time, late) = split_late(&s.files, params.out_of_orderness);
        let expected = minutes(&on_time, &params);
        let total: u64 = expected.iter().map(|m| m.trending).sum();
        // Each option must change something, or the case tests nothing.
        match flags[0] {
            "--strict" | "--min-views" => assert!(total < base_trending, "{flags:?}"),
            "--allow-flat" => assert!(total > base_trending, "{flags:?}"),
            "--top" => assert!(expected.iter().any(|m| m.trending > 3), "{flags:?}"),
            "--window" => assert!(total > 0 && expected.iter().all(|m| m.t % (2 * MINUTE) == 0)),
            _ => assert!(
                late.len() < split_late(&s.files, 5_000).1.len(),
                "{flags:?}"
            ),
        }
        let mut args = flags.to_vec();
        args.push("--quiet");
        let (_, text) = run_binary(&s, 2, &args, &flags.join(""));
        assert_minutes_eq(&format!("{flags:?}"), &text, &expected);
    }
}

#[test]
fn late_side_output_holds_exactly_the_late_events() {
    let s = scenario(15, 3);
    let (on_time, late) = split_late(&s.files, 5_000);
    let late_out = s.dir().join("late.jsonl");
    let (run, text) = run_binary(
        &s,
        3,
        &[
            "--top",
            "0",
            "--late",
            "side-output",
            "--late-out",
            &arg(&late_out),
        ],
        "side",
    );
    let params = Params {
        top: 0,
        ..Params::default()
    };
    assert_minutes_eq("side output", &text, &minutes(&on_time, &params));
    assert_eq!(run.done().late, late.len() as u64);
    let mut got: Vec<Event> = std::fs::read_to_string(&late_out)
        .unwrap()
        .lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            Event::new(
                v["project"].as_str().unwrap(),
                v["title"].as_str().unwrap(),
                v["ts"].as_u64().unwrap(),
                v["views"].as_u64().unwrap(),
            )
        })
        .collect();
    let mut want = late;
    got.sort();
    want.sort();
    assert_eq!(got, want, "late events written to --late-out");
}

#[test]
fn watermark_bound_is_exact_and_per_file() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = BASE + 30 * MINUTE;
    // File a: max 100 s; 95 s is exactly at the watermark (on time), 94.999 s
    // is 1 ms below it (late); later 96 s and 99 s are out of order but on
    // time.
    let a = [
        ("A", 100_000, 1),
        ("A", 95_000, 10),
        ("A", 94_999, 100),
        ("A", 96_000, 1_000),
        ("A", 99_000, 10_000),
    ];
    // File b is far behind file a: its own watermark decides, so nothing in
    // it is late; its one late event is 5.001 s below its own maximum.
    let b = [
        ("B", 0, 1),
        ("B", 4_000, 10),
        ("B", 10_000, 100),
        ("B", 4_999, 1_000),
    ];
    let mut paths = Vec::new();
    for (name, rows) in [("a", &a[..]), ("b", &b[..])] {
        let text: String = rows
            .iter()
            .map(|&(t, ts, v)| Event::new("en", t, t0 + ts, v).json_line(false) + "\n")
            .collect();
        let path = dir.path().join(format!("{name}.jsonl"));
        std::fs::write(&path, text).unwrap();
        paths.push(arg(&path));
    }
    let hourly_dir = dir.path().join("hourly");
    let mut args = trending_args(&["--hourly-out", &arg(&hourly_dir), "--input"]);
    args.extend(paths);
    let run = keyflow(&args, LIMIT);
    run.assert_success("watermark edge");
    assert_eq!(
        run.done(),
        DoneLine {
            events: 9,
            late: 2,
            bad: 0,
            future: 0
        }
    );
    let files = read_dir_files(&hourly_dir);
    assert_eq!(
        files.get(&hourly_name(BASE)).map(String::as_str),
        Some("en A 11011 0\nen B 111 0\n"),
        "hourly totals count the on-time events only: {files:?}"
    );
}

#[test]
fn library_matches_oracle_at_1_2_4_workers() {
    use keyflow::dataflow::prelude::*;
    use keyflow::dataflow::testing::Captured;
    use keyflow::jobs::pageviews::{Article, DumpTime, InputFormat, PageView, PageviewSource};
    use keyflow::jobs::trending::{trending, TrendingConfig, TrendingMinute};

    type Hourly = WindowResult<Article, u64>;

    let s = scenario(13, 3);
    let (on_time, late) = split_late(&s.files, 5_000);
    let expected = minutes(
        &on_time,
        &Params {
            top: 0,
            ..Params::default()
        },
    );
    let expected_hourly = hourly(&on_time);
    let mut expected_late: Vec<Event> = late;
    expected_late.sort();
    for workers in [1, 2, 4] {
        let src =
            PageviewSource::from_files(InputFormat::Jsonl, &s.paths, DumpTime::Start).unwrap();
        let config = TrendingConfig {
            top: 0,
            hourly: true,
            lateness: Lateness::SideOutput,
            ..TrendingConfig::default()
        };
        let mins: Captured<(EventTime, TrendingMinute)> = Captured::new();
        let hours: Captured<(EventTime, Hourly)> = Captured::new();
        let lates: Captured<(EventTime, PageView)> = Captured::new();
        let (m, h, l) = (mins.clone(), hours.clone(), lates.clone());
        run(&RunConfig::threads(workers), move |flow| {
            let (m, h, l) = (m.clone(), h.clone(), l.clone());
            let (src, config) = (src.clone(), config.clone());
            let events = flow.source("input", src, &SourceConfig::default())?;
            let out = trending(events, &config)?;
            out.minutes.capture(&m);
            out.hourly.capture(&h);
            out.late.capture(&l);
            Ok(())
        })
        .unwrap_or_else(|e| panic!("library run at {workers} workers: {e}"));

        let got: Vec<Minute> = mins
            .sorted()
            .into_iter()
            .map(|(ts, m)| {
                assert_eq!(ts, m.t, "a minute travels at event time t");
                assert!(!m.update, "no updates under side output");
                Minute {
                    t: m.t,
                    trending: m.trending,
                    top: m
                        .top
                        .into_iter()
                        .map(|e| Entry {
                            rank: e.rank,
                            project: e.project,
                            title: e.title,
                            counts: e.counts,
                        })
                        .collect(),
                }
            })
            .collect();
        assert_eq!(got.len(), expected.len(), "{workers} workers: minute count");
        for (g, w) in got.iter().zip(&expected) {
            assert_eq!(g, w, "{workers} workers: minute t={} differs", w.t);
        }

        let mut by_hour: std::collections::BTreeMap<String, String> = Default::default();
        let mut results = hours.sorted();
        results.sort_by(|a, b| (a.1.start, &a.1.key).cmp(&(b.1.start, &b.1.key)));
        for (ts, r) in results {
            assert_eq!((r.end - r.start, ts, r.update), (HOUR, r.end, false));
            let line = format!("{} {} {} 0\n", r.key.project(), r.key.title(), r.value);
            by_hour
                .entry(hourly_name(r.start))
                .or_default()
                .push_str(&line);
        }
        assert_files_eq(
            &format!("{workers} workers: hourly totals"),
            &by_hour,
            &expected_hourly,
        );

        let mut got_late: Vec<Event> = lates
            .items()
            .into_iter()
            .map(|(ts, v)| Event::new(v.article.project(), &v.article.title(), ts, v.views))
            .collect();
        got_late.sort();
        assert_eq!(got_late, expected_late, "{workers} workers: late events");
    }
}

#[test]
fn far_future_and_near_epoch_events() {
    let dir = tempfile::tempdir().unwrap();
    // "Up" grows 1..6 over the first hour after the epoch, where the first
    // windows of the first boundaries start before 1970.
    let mut events: Vec<Event> = (0..6u64)
        .flat_map(|w| (0..=w).map(move |i| Event::new("en", "Up", w * 10 * MINUTE + i * 1_000, 1)))
        .collect();
    let future = Event::new("en", "Up", 40 * 24 * HOUR, 1_000);
    events.insert(10, future.clone());
    let path = dir.path().join("early.jsonl");
    let text: String = events.iter().map(|e| e.json_line(false) + "\n").collect();
    std::fs::write(&path, text).unwrap();
    let out = dir.path().join("out.jsonl");
    let run = keyflow(
        trending_args(&[
            "--allow-flat",
            "--min-views",
            "0",
            "--top",
            "0",
            "--input",
            &arg(&path),
            "--out",
            &arg(&out),
        ]),
        LIMIT,
    );
    run.assert_success("near the epoch");
    // More than 7 days ahead of the watermark: rejected and counted, and it
    // neither closes windows nor adds boundaries.
    assert_eq!(
        run.done(),
        DoneLine {
            events: events.len() as u64,
            late: 0,
            bad: 0,
            future: 1
        }
    );
    events.retain(|e| *e != future);
    let params = Params {
        rule: Rule::AllowFlat,
        min_views: 0,
        top: 0,
        ..Params::default()
    };
    let expected = minutes(&events, &params);
    assert_eq!(expected[0].t, MINUTE);
    assert_minutes_eq(
        "near the epoch",
        &std::fs::read_to_string(&out).unwrap(),
        &expected,
    );
}

/// More seeds, file counts and worker counts than the regular run:
/// `KEYFLOW_SOAK_SEEDS=50 cargo test --test trending_oracle -- --ignored`.
#[test]
#[ignore = "slow; set KEYFLOW_SOAK_SEEDS"]
fn oracle_soak() {
    let seeds: u64 = std::env::var("KEYFLOW_SOAK_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    for seed in 100..100 + seeds {
        let nfiles = 2 + (seed % 4) as usize;
        let workers = 1 + (seed % 3) as usize * 2;
        let s = scenario(seed, nfiles);
        let (on_time, late) = split_late(&s.files, 5_000);
        let expected = minutes(
            &on_time,
            &Params {
                top: 0,
                ..Params::default()
            },
        );
        let (run, text) = run_binary(&s, workers, &["--top", "0"], "soak");
        let what = format!("seed {seed}, {nfiles} files, {workers} workers");
        assert_minutes_eq(&what, &text, &expected);
        assert_eq!(run.done().late, late.len() as u64, "{what}");
    }
}
