//! The deterministic activity generator: a web shop's traffic.

use std::sync::Arc;
use std::time::Instant;

use keyflow_dataflow::source::{Batch, Partition, PollStatus, Source};
use keyflow_dataflow::time::{EventTime, SECOND};
use serde::{Deserialize, Serialize};

use super::event::{Action, Activity, Float, MAX_EVENT_TIME};
use crate::error::{Error, Result};
use crate::pageviews::{mix64, SplitMix64, Zipf, DEFAULT_START_MS};

/// Events per session on average: a session starts every this many events.
pub const EVENTS_PER_SESSION: u64 = 20;
/// The shortest session, in ms.
const MIN_SESSION: u64 = 60 * SECOND;
/// The longest session, in ms.
pub const MAX_SESSION: u64 = 6 * 60 * SECOND;
/// The most users and pages the generator takes: their names are made once.
pub const MAX_NAMES: u32 = 1_000_000;
/// The most events per second.
const MAX_RATE: u64 = 1_000_000_000;
/// Share (per cent) of sessions that come to buy.
const BUYERS: u64 = 10;

/// Domain separators, so that draws for different purposes from one seed
/// are unrelated.
const EVENT_STREAM: u64 = 0x6163_745f_6576;
const SESSION_STREAM: u64 = 0x6163_745f_7365;
const USER_STREAM: u64 = 0x6163_745f_7573;

/// Devices with their shares (per cent) and screen sizes in pixels.
const DEVICES: [(&str, u64, (u32, u32)); 3] = [
    ("mobile", 58, (390, 844)),
    ("desktop", 38, (1920, 1080)),
    ("tablet", 4, (820, 1180)),
];

/// Browsers per device, with their shares (per cent).
const BROWSERS: [&[(&str, u64)]; 3] = [
    &[
        ("Chrome", 62),
        ("Safari", 30),
        ("Samsung Internet", 6),
        ("Firefox", 2),
    ],
    &[
        ("Chrome", 66),
        ("Edge", 13),
        ("Safari", 10),
        ("Firefox", 8),
        ("Opera", 3),
    ],
    &[("Safari", 55), ("Chrome", 40), ("Samsung Internet", 5)],
];

/// Actions with their shares (per cent): browsing sessions, then buying
/// ones.
const ACTIONS: [[(Action, u64); 6]; 2] = [
    [
        (Action::View, 50),
        (Action::Click, 25),
        (Action::Scroll, 18),
        (Action::Search, 5),
        (Action::AddToCart, 2),
        (Action::Purchase, 0),
    ],
    [
        (Action::View, 40),
        (Action::Click, 22),
        (Action::Scroll, 15),
        (Action::Search, 5),
        (Action::AddToCart, 12),
        (Action::Purchase, 6),
    ],
];

/// The entry of `table` that `draw` (uniform in `0..100`) falls on.
fn pick<T: Copy>(table: &[(T, u64)], draw: u64) -> usize {
    let mut left = draw;
    for (i, (_, share)) in table.iter().enumerate() {
        if left < *share {
            return i;
        }
        left -= share;
    }
    table.len() - 1
}

/// Settings of the activity generator.
///
/// Event `i` (`0 <= i < rate * duration`) happens at
/// `start_ms + i * 1000 / rate` and is a pure function of `(seed, i)`;
/// partition `p` of `partitions` produces the events with
/// `i % partitions == p`, so the events are the same for any number of
/// workers.
///
/// # Examples
/// ```
/// use keyflow_jobs::activity::ActivityGeneratorConfig;
/// let config = ActivityGeneratorConfig { rate: 100, duration_ms: 60_000, ..Default::default() };
/// config.validate()?;
/// assert_eq!(config.total_events(), 6_000);
/// let bad = ActivityGeneratorConfig { users: 0, ..config };
/// assert!(bad.validate().unwrap_err().to_string().contains("users"));
/// # Ok::<(), keyflow_jobs::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ActivityGeneratorConfig {
    /// How many distinct users there are.
    pub users: u32,
    /// How many distinct pages there are (besides `/search` and
    /// `/checkout`).
    pub pages: u32,
    /// The seed every event derives from.
    pub seed: u64,
    /// Events per second of event time.
    pub rate: u64,
    /// Span of event time to generate, in milliseconds.
    pub duration_ms: u64,
    /// Event time of the first event (ms since the epoch).
    pub start_ms: EventTime,
    /// Number of partitions; fixed, whatever the number of workers.
    pub partitions: usize,
    /// Pace each partition to the wall clock instead of producing as fast
    /// as possible.
    pub realtime: bool,
}

impl Default for ActivityGeneratorConfig {
    fn default() -> Self {
        ActivityGeneratorConfig {
            users: 10_000,
            pages: 1_000,
            seed: 42,
            rate: 1_000,
            duration_ms: 10 * 60 * SECOND,
            start_ms: DEFAULT_START_MS,
            partitions: 8,
            realtime: false,
        }
    }
}

impl ActivityGeneratorConfig {
    /// Checks the values, naming the first bad one.
    pub fn validate(&self) -> Result<()> {
        let fail = |msg: String| Err(Error::Config(msg));
        if self.users == 0 || self.users > MAX_NAMES {
            return fail(format!(
                "generator users {} must be between 1 and {MAX_NAMES}",
                self.users
            ));
        }
        if self.pages == 0 || self.pages > MAX_NAMES {
            return fail(format!(
                "generator pages {} must be between 1 and {MAX_NAMES}",
                self.pages
            ));
        }
        if self.rate == 0 || self.rate > MAX_RATE {
            return fail(format!(
                "generator rate {} must be between 1 and {MAX_RATE} events per second",
                self.rate
            ));
        }
        if self.duration_ms == 0 {
            return fail("generator duration 0 would produce no events".into());
        }
        if self
            .start_ms
            .checked_add(self.duration_ms)
            .is_none_or(|end| end > MAX_EVENT_TIME)
        {
            return fail(format!(
                "generator start {} plus duration {} ms is after the year 9999",
                self.start_ms, self.duration_ms
            ));
        }
        if self.partitions == 0 {
            return fail("generator partitions 0 must be at least 1".into());
        }
        Ok(())
    }

    /// How many events the generator produces: `rate * duration`.
    pub fn total_events(&self) -> u64 {
        let total = self.duration_ms as u128 * self.rate as u128 / 1000;
        total.min(u64::MAX as u128) as u64
    }
}

/// Pages of the highest popularity that every partition names itself.
const HOT_PAGES: usize = 1024;

/// The strings that nearly every event takes a reference to. Each
/// partition makes its own copy, so that workers do not contend for the
/// same reference counts; the many rarely used names (users, the other
/// pages) stay shared in the [`Plan`].
#[derive(Debug)]
struct HotNames {
    pages: Vec<Arc<str>>,
    search: Arc<str>,
    checkout: Arc<str>,
    devices: Vec<Arc<str>>,
    browsers: Vec<Vec<Arc<str>>>,
}

impl HotNames {
    /// Fresh copies of the hot names among `pages`.
    fn new(pages: &[Arc<str>]) -> Self {
        HotNames {
            pages: pages
                .iter()
                .take(HOT_PAGES)
                .map(|p| Arc::from(&**p))
                .collect(),
            search: Arc::from("/search"),
            checkout: Arc::from("/checkout"),
            devices: DEVICES.iter().map(|(name, ..)| Arc::from(*name)).collect(),
            browsers: BROWSERS
                .iter()
                .map(|table| table.iter().map(|(name, _)| Arc::from(*name)).collect())
                .collect(),
        }
    }
}

/// What every event draws on, made once per source.
#[derive(Debug)]
struct Plan {
    users: Vec<Arc<str>>,
    pages: Vec<Arc<str>>,
    /// The hot names for [`ActivityGenerator::event`]; partitions use their
    /// own.
    hot: HotNames,
    page_ranks: Zipf,
    user_ranks: Zipf,
    event_key: u64,
    session_key: u64,
    user_key: u64,
    total: u64,
}

/// The URL of the page of popularity rank `rank` (1-based): the home page,
/// ten categories, then products.
fn page_url(rank: u64) -> String {
    match rank {
        1 => "/".into(),
        2..=11 => format!("/category/{}", rank - 1),
        _ => format!("/product/{}", rank - 11),
    }
}

/// The generator as a [`Source`] of [`Activity`]: a web shop's traffic.
///
/// - **Sessions.** A session starts every [`EVENTS_PER_SESSION`] events and
///   lasts 1 to 6 minutes; each event belongs to a session active at its
///   time, picked at random, so sessions interleave and span windows. One
///   session in ten comes to buy: it adds to the cart more often and buys.
/// - **Users.** Sessions belong to users drawn with a mild Zipf skew (some
///   users come back often); each user keeps one device (58% mobile, 38%
///   desktop, 4% tablet) and a browser whose share depends on the device.
/// - **Pages.** Views, clicks, scrolls and additions to the cart land on
///   pages drawn from a Zipf law (the home page first, then categories,
///   then products); searches on `/search`, purchases on `/checkout`.
///   Clicks carry a position on the device's screen.
///
/// # Examples
/// ```
/// use keyflow_dataflow::source::{Batch, Source};
/// use keyflow_jobs::activity::{ActivityGenerator, ActivityGeneratorConfig};
///
/// let config = ActivityGeneratorConfig { rate: 10, duration_ms: 10_000, partitions: 2, ..Default::default() };
/// let src = ActivityGenerator::new(config)?;
/// let mut batch = Batch::new(1000);
/// src.open(1)?.poll(&mut batch)?;
/// assert_eq!(batch.records.len(), 50); // events 1, 3, 5, ... of 100
/// assert_eq!(batch.records[0], src.event(1));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct ActivityGenerator {
    config: ActivityGeneratorConfig,
    plan: Arc<Plan>,
}

impl ActivityGenerator {
    /// A generator for a validated `config`.
    pub fn new(config: ActivityGeneratorConfig) -> Result<Self> {
        config.validate()?;
        let names = |n: u32, name: fn(u64) -> String| -> Vec<Arc<str>> {
            (1..=n as u64).map(|r| Arc::from(name(r))).collect()
        };
        let pages = names(config.pages, page_url);
        let plan = Plan {
            users: names(config.users, |r| format!("u{r}")),
            hot: HotNames::new(&pages),
            pages,
            page_ranks: Zipf::new(config.pages as u64, 1.0),
            user_ranks: Zipf::new(config.users as u64, 0.6),
            event_key: mix64(config.seed ^ EVENT_STREAM),
            session_key: mix64(config.seed ^ SESSION_STREAM),
            user_key: mix64(config.seed ^ USER_STREAM),
            total: config.total_events(),
        };
        Ok(ActivityGenerator {
            config,
            plan: Arc::new(plan),
        })
    }

    /// The settings.
    pub fn config(&self) -> &ActivityGeneratorConfig {
        &self.config
    }

    /// How many events all partitions together produce.
    pub fn total_events(&self) -> u64 {
        self.plan.total
    }

    /// Event time of event `i`.
    pub fn time_of(&self, i: u64) -> EventTime {
        let offset = i as u128 * 1000 / self.config.rate as u128;
        self.config.start_ms + offset as u64
    }

    /// Start and length (ms) of session `s`, and whether it comes to buy.
    fn session(&self, s: u64) -> (EventTime, u64, bool) {
        let mut rng = SplitMix64::new(mix64(self.plan.session_key ^ s));
        let length = MIN_SESSION + rng.next_u64() % (MAX_SESSION - MIN_SESSION + 1);
        let buyer = rng.next_u64() % 100 < BUYERS;
        (self.time_of(s * EVENTS_PER_SESSION), length, buyer)
    }

    /// The user of session `s` (0-based index).
    fn user_of(&self, s: u64) -> usize {
        let mut rng = SplitMix64::new(mix64(self.plan.session_key ^ s ^ USER_STREAM));
        // Zipf ranks are 1-based.
        self.plan.user_ranks.sample(&mut rng) as usize - 1
    }

    /// A session active at event `i`'s time `t`: drawn among those started
    /// within the longest session's span before `t`, redrawn while the one
    /// drawn has ended (the newest session, started less than
    /// [`EVENTS_PER_SESSION`] events ago, if every draw missed).
    fn session_of(&self, i: u64, t: EventTime, rng: &mut SplitMix64) -> u64 {
        let newest = i / EVENTS_PER_SESSION;
        let span = (MAX_SESSION as u128 * self.config.rate as u128 / 1000) as u64;
        let oldest = i.saturating_sub(span) / EVENTS_PER_SESSION;
        for _ in 0..16 {
            let s = oldest + rng.next_u64() % (newest - oldest + 1);
            let (start, length, _) = self.session(s);
            if t < start + length {
                return s;
            }
        }
        newest
    }

    /// Event `i`: its time and content, a pure function of the seed and `i`.
    pub fn event(&self, i: u64) -> (EventTime, Activity) {
        self.event_named(i, &self.plan.hot)
    }

    /// Event `i`, taking the hot names from `hot`.
    fn event_named(&self, i: u64, hot: &HotNames) -> (EventTime, Activity) {
        let plan = &*self.plan;
        let t = self.time_of(i);
        let mut rng = SplitMix64::new(mix64(plan.event_key ^ i));
        let s = self.session_of(i, t, &mut rng);
        let (_, _, buyer) = self.session(s);
        let user = self.user_of(s);
        let mut user_rng = SplitMix64::new(mix64(plan.user_key ^ user as u64));
        let device = pick(
            &DEVICES.map(|(_, share, _)| ((), share)),
            user_rng.next_u64() % 100,
        );
        let browsers = BROWSERS[device];
        let browser = pick(browsers, user_rng.next_u64() % 100);
        let actions = &ACTIONS[buyer as usize];
        let action = actions[pick(actions, rng.next_u64() % 100)].0;
        let page = match action {
            Action::Search => Arc::clone(&hot.search),
            Action::Purchase => Arc::clone(&hot.checkout),
            _ => {
                let rank = plan.page_ranks.sample(&mut rng) as usize - 1;
                Arc::clone(hot.pages.get(rank).unwrap_or(&plan.pages[rank]))
            }
        };
        let click = (action == Action::Click).then(|| {
            let (width, height) = DEVICES[device].2;
            // Clicks gather towards the top of the page.
            let x = (rng.next_f64() * width as f64).floor();
            let y = (rng.next_f64().powi(2) * height as f64).floor();
            (Float(x), Float(y))
        });
        let event = Activity {
            user: Arc::clone(&plan.users[user]),
            session: Arc::from(format!("s{s}")),
            page,
            action,
            browser: Arc::clone(&hot.browsers[device][browser]),
            device: Arc::clone(&hot.devices[device]),
            click,
        };
        (t, event)
    }
}

impl Source for ActivityGenerator {
    type Item = Activity;

    fn name(&self) -> String {
        "activity-generator".into()
    }

    fn partitions(&self) -> usize {
        self.config.partitions
    }

    fn open(&self, index: usize) -> keyflow_dataflow::Result<Box<dyn Partition<Activity>>> {
        Ok(Box::new(GeneratorPartition {
            hot: HotNames::new(&self.plan.pages),
            source: self.clone(),
            next: index as u64,
            step: self.config.partitions as u64,
            started: None,
            emitted: 0,
        }))
    }
}

struct GeneratorPartition {
    source: ActivityGenerator,
    hot: HotNames,
    next: u64,
    step: u64,
    started: Option<Instant>,
    emitted: u64,
}

impl Partition<Activity> for GeneratorPartition {
    fn poll(&mut self, batch: &mut Batch<Activity>) -> keyflow_dataflow::Result<PollStatus> {
        let config = &self.source.config;
        let due = config.realtime.then(|| {
            let started = *self.started.get_or_insert_with(Instant::now);
            config.start_ms + started.elapsed().as_millis() as u64
        });
        while !batch.is_full() {
            if self.next >= self.source.plan.total {
                return Ok(PollStatus::Done);
            }
            if due.is_some_and(|due| self.source.time_of(self.next) > due) {
                return Ok(PollStatus::Idle);
            }
            let (ts, event) = self.source.event_named(self.next, &self.hot);
            batch.push(ts, event);
            self.emitted += 1;
            self.next = self.next.saturating_add(self.step);
        }
        Ok(PollStatus::Ready)
    }

    fn offset(&self) -> u64 {
        self.emitted
    }

    /// Events are a function of their index: a resumed partition jumps
    /// over the ones a checkpoint had read instead of generating them.
    fn skip(&mut self, n: u64) -> keyflow_dataflow::Result<(u64, PollStatus)> {
        let total = self.source.plan.total;
        let left = total.saturating_sub(self.next).div_ceil(self.step);
        let skipped = n.min(left);
        self.next = self.next.saturating_add(skipped.saturating_mul(self.step));
        self.emitted += skipped;
        let status = if self.next >= total {
            PollStatus::Done
        } else {
            PollStatus::Ready
        };
        Ok((skipped, status))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, BTreeSet};

    fn generator(rate: u64, minutes: u64) -> ActivityGenerator {
        ActivityGenerator::new(ActivityGeneratorConfig {
            rate,
            duration_ms: minutes * 60 * SECOND,
            ..Default::default()
        })
        .unwrap()
    }

    #[test]
    fn events_are_a_function_of_the_seed_and_index() {
        let a = generator(100, 2);
        let b = generator(100, 2);
        for i in [0, 1, 77, 11_999] {
            assert_eq!(a.event(i), b.event(i));
        }
        let other = ActivityGenerator::new(ActivityGeneratorConfig {
            seed: 7,
            ..a.config().clone()
        })
        .unwrap();
        assert!((0..100).any(|i| other.event(i) != a.event(i)));
    }

    #[test]
    fn a_skip_resumes_where_reading_would_have_been() {
        let g = ActivityGenerator::new(ActivityGeneratorConfig {
            partitions: 3,
            ..generator(10, 1).config().clone()
        })
        .unwrap();
        let read = |p: &mut Box<dyn Partition<Activity>>, n| {
            let mut batch = Batch::new(n);
            p.poll(&mut batch).unwrap();
            batch.records
        };
        let mut whole = g.open(1).unwrap();
        let mut resumed = g.open(1).unwrap();
        let first = read(&mut whole, 150);
        assert_eq!(resumed.skip(120).unwrap(), (120, PollStatus::Ready));
        assert_eq!(read(&mut resumed, 30), first[120..]);
        assert_eq!(resumed.offset(), 150);
        // 600 events in 3 partitions: 50 are left after 150 here.
        assert_eq!(resumed.skip(80).unwrap(), (50, PollStatus::Done));
    }

    #[test]
    fn traffic_is_skewed_and_sessions_last_minutes() {
        let g = generator(200, 20);
        let mut pages: BTreeMap<Arc<str>, u64> = BTreeMap::new();
        let mut devices: BTreeMap<Arc<str>, u64> = BTreeMap::new();
        // Per session: first and last event time, and its users.
        type Seen = (u64, u64, BTreeSet<Arc<str>>);
        let mut sessions: BTreeMap<Arc<str>, Seen> = BTreeMap::new();
        let mut purchases = 0;
        let total = g.total_events();
        for i in 0..total {
            let (t, e) = g.event(i);
            *pages.entry(e.page.clone()).or_default() += 1;
            *devices.entry(e.device.clone()).or_default() += 1;
            let s = sessions
                .entry(e.session.clone())
                .or_insert((t, t, BTreeSet::new()));
            s.1 = t;
            s.2.insert(e.user.clone());
            purchases += (e.action == Action::Purchase) as u64;
            assert_eq!(e.click.is_some(), e.action == Action::Click);
        }
        let share = |n: u64| n as f64 / total as f64;
        assert!(
            share(pages["/"]) > 0.05,
            "the home page is the most popular"
        );
        assert!(
            (0.5..0.66).contains(&share(devices["mobile"])),
            "{devices:?}"
        );
        assert!(purchases > 0);
        // Every session has one user; most last minutes.
        assert!(sessions.values().all(|(_, _, users)| users.len() == 1));
        let lengths: Vec<u64> = sessions.values().map(|(a, b, _)| b - a).collect();
        let long = lengths.iter().filter(|l| **l >= 60 * SECOND).count();
        assert!(long * 2 > lengths.len(), "{long} of {}", lengths.len());
        assert!(lengths.iter().all(|l| *l <= MAX_SESSION + 60 * SECOND));
    }

    #[test]
    fn rejects_bad_settings_by_name() {
        let base = ActivityGeneratorConfig::default();
        for (config, name) in [
            (
                ActivityGeneratorConfig {
                    pages: 0,
                    ..base.clone()
                },
                "pages",
            ),
            (
                ActivityGeneratorConfig {
                    users: MAX_NAMES + 1,
                    ..base.clone()
                },
                "users",
            ),
            (
                ActivityGeneratorConfig {
                    rate: 0,
                    ..base.clone()
                },
                "rate",
            ),
            (
                ActivityGeneratorConfig {
                    duration_ms: 0,
                    ..base.clone()
                },
                "duration",
            ),
            (
                ActivityGeneratorConfig {
                    partitions: 0,
                    ..base
                },
                "partitions",
            ),
        ] {
            let err = config.validate().unwrap_err().to_string();
            assert!(err.contains(name), "{err}");
        }
    }
}
