//! Shared by the behaviour end-to-end tests: random user events with
//! disorder and timer races, files of them, per-file lateness, and an
//! independent brute-force oracle of the job's rules (user states,
//! populations, flows, alerts).
//!
//! The oracle shares no code with the job: plain loops over each user's
//! events and over every boundary, written from the rules, so that a
//! disagreement points at one of the two.

// Each test crate uses a different part of this module.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

/// The states, in the order flows are sorted by.
pub const STATES: [&str; 6] = ["none", "landed", "browsing", "bounced", "buying", "gone"];
/// The reported populations, in report (and alert) order.
pub const COUNTED: [&str; 4] = ["landed", "browsing", "bounced", "buying"];

/// One user event.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Event {
    pub user: String,
    pub ts: u64,
    pub from: String,
    pub op: String,
    pub to: String,
}

impl Event {
    /// The event as a JSON line.
    pub fn json(&self) -> String {
        json!({"user": self.user, "ts": self.ts, "from": self.from, "op": self.op, "to": self.to})
            .to_string()
    }
}

/// The rules' settings.
#[derive(Debug, Clone)]
pub struct Params {
    pub landing: String,
    pub bounce: u64,
    pub session: u64,
    pub resolution: u64,
    pub window: u64,
    /// Whole percent.
    pub rise: u64,
    pub min: u64,
}

impl Params {
    /// The matching command-line flags.
    pub fn flags(&self) -> Vec<String> {
        [
            "--landing".to_string(),
            self.landing.clone(),
            "--bounce-timeout".into(),
            format!("{}ms", self.bounce),
            "--session-timeout".into(),
            format!("{}ms", self.session),
            "--resolution".into(),
            format!("{}ms", self.resolution),
            "--alert-window".into(),
            format!("{}ms", self.window),
            "--alert-rise".into(),
            format!("{}%", self.rise),
            "--alert-min".into(),
            self.min.to_string(),
        ]
        .to_vec()
    }
}

/// Short timeouts, so that timers fire often and race with events.
pub fn small_params() -> Params {
    Params {
        landing: "/".into(),
        bounce: 3_000,
        session: 20_000,
        resolution: 2_000,
        window: 10_000,
        rise: 50,
        min: 2,
    }
}

/// Random events of `users` users from `start`: gaps that hit the
/// timeouts exactly and one millisecond either side, events of one user
/// at the same millisecond, pauses long enough to bounce and to leave.
pub fn random_events(seed: u64, users: usize, start: u64, p: &Params) -> Vec<Event> {
    let mut rng = StdRng::seed_from_u64(seed);
    let pages = [p.landing.as_str(), "/a", "/b", "/p/1"];
    let mut events = Vec::new();
    for u in 0..users {
        let mut ts = start + rng.gen_range(0..30_000);
        let count = rng.gen_range(1..25);
        for _ in 0..count {
            let (op, to) = match rng.gen_range(0..10) {
                0..=3 => ("view", p.landing.clone()),
                4..=7 => ("view", pages[rng.gen_range(1..pages.len())].to_string()),
                _ => ("buy", "/checkout".to_string()),
            };
            events.push(Event {
                user: format!("u{u}"),
                ts,
                from: pages[rng.gen_range(0..pages.len())].to_string(),
                op: op.into(),
                to,
            });
            let gap = match rng.gen_range(0..14) {
                0 | 1 => 0,
                2 => p.bounce,
                3 => p.bounce - 1,
                4 => p.bounce + 1,
                5 => p.session,
                6 => p.session + 1,
                7 => p.session - 1,
                8 => rng.gen_range(p.session..3 * p.session),
                9..=11 => rng.gen_range(1..p.bounce),
                _ => rng.gen_range(p.bounce.min(p.session)..=p.bounce.max(p.session)),
            };
            ts += gap;
        }
    }
    events
}

/// Splits `events` over `files` files at random, each in an order where no
/// event comes more than `disorder` ms after a later one.
pub fn shuffle_into_files(
    seed: u64,
    events: &[Event],
    files: usize,
    disorder: u64,
) -> Vec<Vec<Event>> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut out: Vec<Vec<(u64, u64, Event)>> = vec![Vec::new(); files];
    for (i, e) in events.iter().enumerate() {
        let jitter = if disorder == 0 {
            0
        } else {
            rng.gen_range(0..=disorder)
        };
        out[rng.gen_range(0..files)].push((e.ts + jitter, i as u64, e.clone()));
    }
    out.into_iter()
        .map(|mut f| {
            f.sort();
            f.into_iter().map(|(_, _, e)| e).collect()
        })
        .collect()
}

/// Writes each file's events as JSON lines into `dir`; returns the paths.
pub fn write_files(dir: &Path, files: &[Vec<Event>]) -> Vec<PathBuf> {
    files
        .iter()
        .enumerate()
        .map(|(i, events)| {
            let path = dir.join(format!("events-{i}.jsonl"));
            let text: String = events.iter().map(|e| e.json() + "\n").collect();
            std::fs::write(&path, text).unwrap();
            path
        })
        .collect()
}

/// Splits each file's events, in file order, into (on time, late) as a
/// source with `out_of_orderness` judges them: late when below the largest
/// time seen before in the file minus the out-of-orderness. `allowed`
/// more ms of lateness still count as on time here.
pub fn split_late(
    files: &[Vec<Event>],
    out_of_orderness: u64,
    allowed: u64,
) -> (Vec<Event>, Vec<Event>) {
    let (mut on_time, mut late) = (Vec::new(), Vec::new());
    for file in files {
        let mut max_seen: Option<u64> = None;
        for e in file {
            let watermark = max_seen.map_or(0, |m| m.saturating_sub(out_of_orderness));
            if e.ts < watermark {
                if e.ts + allowed >= watermark {
                    on_time.push(e.clone());
                } else {
                    late.push(e.clone());
                }
                continue;
            }
            max_seen = Some(max_seen.map_or(e.ts, |m| m.max(e.ts)));
            on_time.push(e.clone());
        }
    }
    (on_time, late)
}

/// Every user's state changes `(time, from, to)`, from the rules.
pub fn changes(events: &[Event], p: &Params) -> Vec<(u64, &'static str, &'static str)> {
    let mut by_user: BTreeMap<&str, Vec<&Event>> = BTreeMap::new();
    for e in events {
        by_user.entry(&e.user).or_default().push(e);
    }
    let mut out = Vec::new();
    for (_, mut list) in by_user {
        list.sort_by(|a, b| (a.ts, &a.op, &a.from, &a.to).cmp(&(b.ts, &b.op, &b.from, &b.to)));
        let mut state = "none";
        for (i, e) in list.iter().enumerate() {
            let next = match (e.op.as_str(), e.to == p.landing) {
                ("buy", _) => "buying",
                (_, true) if matches!(state, "none" | "gone" | "bounced") => "landed",
                (_, true) => state,
                _ => "browsing",
            };
            if next != state {
                out.push((e.ts, state, next));
                state = next;
            }
            // The timers of the latest event, in time order (the bounce
            // first at a tie), each cancelled by an event in (t, t + timeout].
            let following = list.get(i + 1).map(|n| n.ts);
            let mut timers = vec![(e.ts + p.bounce, 0), (e.ts + p.session, 1)];
            timers.sort();
            for (at, kind) in timers {
                if following.is_some_and(|n| n <= at) {
                    continue;
                }
                if kind == 0 && state == "landed" {
                    out.push((at, "landed", "bounced"));
                    state = "bounced";
                }
                if kind == 1 && !matches!(state, "none" | "gone") {
                    out.push((at, state, "gone"));
                    state = "gone";
                }
            }
        }
    }
    out
}

/// Users per counted state as of `t`: every change before `t` applied.
fn populations(changes: &[(u64, &str, &str)], t: u64) -> [u64; 4] {
    let mut pop = [0i64; 4];
    for &(at, from, to) in changes {
        if at >= t {
            continue;
        }
        if let Some(i) = COUNTED.iter().position(|s| *s == from) {
            pop[i] -= 1;
        }
        if let Some(i) = COUNTED.iter().position(|s| *s == to) {
            pop[i] += 1;
        }
    }
    pop.map(|n| u64::try_from(n).expect("a population below 0"))
}

fn alert_holds(p: &Params, was: u64, now: u64) -> bool {
    was >= p.min && now * 100 > (100 + p.rise) * was
}

/// The expected `--out` and `--alerts-out` lines.
pub fn expected(events: &[Event], p: &Params) -> (Vec<Value>, Vec<Value>) {
    let changes = changes(events, p);
    let (mut lines, mut alerts) = (Vec::new(), Vec::new());
    let (Some(first_event), Some(last_change)) = (
        events.iter().map(|e| e.ts).min(),
        changes.iter().map(|c| c.0).max(),
    ) else {
        return (lines, alerts);
    };
    let res = p.resolution;
    let first = first_event / res * res + res;
    let last = last_change / res * res + res;
    let pop_at = |t: Option<u64>| t.map_or([0; 4], |t| populations(&changes, t));
    let mut t = first;
    while t <= last {
        let pop = pop_at(Some(t));
        let mut flows: BTreeMap<(usize, usize), u64> = BTreeMap::new();
        for &(at, from, to) in &changes {
            if t - res <= at && at < t {
                let index = |s| STATES.iter().position(|x| *x == s).unwrap();
                *flows.entry((index(from), index(to))).or_default() += 1;
            }
        }
        let flows: Vec<Value> = flows
            .into_iter()
            .map(|((f, to), n)| json!({"from": STATES[f], "to": STATES[to], "n": n}))
            .collect();
        lines.push(json!({
            "t": t,
            "populations": {"landed": pop[0], "browsing": pop[1], "bounced": pop[2], "buying": pop[3]},
            "flows": flows,
        }));
        let was = pop_at(t.checked_sub(p.window));
        let before = pop_at(t.checked_sub(res));
        let before_was = pop_at(t.checked_sub(res + p.window));
        for i in 0..4 {
            let held = t > first && alert_holds(p, before_was[i], before[i]);
            if alert_holds(p, was[i], pop[i]) && !held {
                alerts.push(json!({"t": t, "state": COUNTED[i], "was": was[i], "now": pop[i]}));
            }
        }
        t += res;
    }
    (lines, alerts)
}

/// The lines of a JSON-lines file.
pub fn read_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

/// Compares lines, naming the first that differs.
pub fn assert_lines_eq(what: &str, actual: &[Value], expected: &[Value]) {
    for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
        assert_eq!(a, e, "{what}: line {} differs", i + 1);
    }
    assert_eq!(
        actual.len(),
        expected.len(),
        "{what}: {} lines, expected {} (first missing or extra: {:?})",
        actual.len(),
        expected.len(),
        actual.get(expected.len()).or(expected.get(actual.len()))
    );
}
