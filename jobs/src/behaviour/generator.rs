//! The deterministic user generator: the built-in input of the behaviour
//! job.

use std::time::Instant;

use keyflow_dataflow::source::{Batch, Partition, PollStatus, Source};
use keyflow_dataflow::time::{EventTime, SECOND};
use serde::{Deserialize, Serialize};

use super::event::{Op, UserEvent};
use crate::error::{Error, Result};
use crate::pageviews::{SplitMix64, DEFAULT_START_MS};

/// The fewest and the most users the generator simulates.
pub const USERS: std::ops::RangeInclusive<u32> = 1_000..=1_000_000;

/// Each user's tick: one event or one pause per tick.
pub const TICK_MS: u64 = 10 * SECOND;

/// Product pages a user browses among.
const PAGES: u64 = 100;

/// Settings of the user generator.
///
/// Every user has a tick every 10 s of event time (user `u` of `n` at
/// `start + k * 10 s + u * 10 s / n`), and at each tick either acts or
/// pauses. A visit starts with a view of the landing page; half of the
/// visits bounce (the user pauses 40 to 70 s, past the default bounce
/// timeout, and comes back); a tenth browse 1 to 12 product pages and buy;
/// the rest browse 1 to 20 pages. After a visit a user comes back within
/// 30 s, or, one time in 50, pauses 30 to 90 minutes (past the default
/// session timeout). Each tick's draw is a pure function of the seed, the
/// user and the tick, so the events are the same for any number of
/// partitions and workers.
///
/// # Examples
/// ```
/// use keyflow_jobs::behaviour::UserGeneratorConfig;
/// let config = UserGeneratorConfig { users: 500, ..Default::default() };
/// assert!(config.validate().unwrap_err().to_string().contains("500"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserGeneratorConfig {
    /// How many users.
    pub users: u32,
    /// The seed every draw derives from.
    pub seed: u64,
    /// Span of event time to generate, in ms.
    pub duration_ms: u64,
    /// Event time of the first tick.
    pub start_ms: EventTime,
    /// The landing page.
    pub landing: String,
    /// Most events per second of wall-clock time over all partitions;
    /// `None` runs as fast as possible.
    pub rate: Option<u64>,
    /// Number of partitions; fixed, whatever the number of workers.
    pub partitions: usize,
}

impl Default for UserGeneratorConfig {
    fn default() -> Self {
        UserGeneratorConfig {
            users: 10_000,
            seed: 42,
            duration_ms: 3_600 * SECOND,
            start_ms: DEFAULT_START_MS,
            landing: "/".into(),
            rate: None,
            partitions: 8,
        }
    }
}

impl UserGeneratorConfig {
    /// Checks the values, naming the first bad one.
    pub fn validate(&self) -> Result<()> {
        let fail = |msg: String| Err(Error::Config(msg));
        if !USERS.contains(&self.users) {
            return fail(format!(
                "--users {} is outside {}..={}",
                self.users,
                USERS.start(),
                USERS.end()
            ));
        }
        if self.duration_ms == 0 {
            return fail("generator duration 0 would produce no events".into());
        }
        if self
            .start_ms
            .checked_add(self.duration_ms)
            .is_none_or(|end| end > keyflow_dataflow::time::MAX_EVENT_TIME)
        {
            return fail(format!(
                "generator start {} plus duration {} ms is after the year 9999",
                self.start_ms, self.duration_ms
            ));
        }
        if self.rate == Some(0) {
            return fail(
                "--rate 0 would produce nothing; leave it out to run as fast as possible".into(),
            );
        }
        if self.partitions == 0 {
            return fail("generator partitions 0 must be at least 1".into());
        }
        Ok(())
    }
}

/// What a user does at its next tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    /// View the landing page.
    Arrive,
    /// View a product page; `left` more after this one, then buy or not.
    Browse { left: u8, buy: bool },
    /// Buy.
    Buy,
}

/// One user's place in its visits.
#[derive(Debug, Clone, Copy)]
struct Walker {
    next: Next,
    /// Ticks to pause before the next action.
    pause: u16,
    /// The product page the user is on (0: the landing page).
    page: u16,
}

/// The generator as a [`Source`] of [`UserEvent`]s.
///
/// # Examples
/// ```
/// use keyflow_dataflow::source::{Batch, Source};
/// use keyflow_jobs::behaviour::{UserGeneratorConfig, UserGenerator};
///
/// let config = UserGeneratorConfig { users: 1_000, duration_ms: 60_000, ..Default::default() };
/// let src = UserGenerator::new(config)?;
/// let mut batch = Batch::new(100_000);
/// src.open(0)?.poll(&mut batch)?;
/// assert!(!batch.records.is_empty());
/// assert!(batch.records.windows(2).all(|w| w[0].0 <= w[1].0));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct UserGenerator {
    config: UserGeneratorConfig,
}

impl UserGenerator {
    /// A generator for a validated `config`.
    pub fn new(config: UserGeneratorConfig) -> Result<Self> {
        config.validate()?;
        Ok(UserGenerator { config })
    }

    /// The settings.
    pub fn config(&self) -> &UserGeneratorConfig {
        &self.config
    }

    /// Event time of user `u`'s tick `k`.
    fn time_of(&self, u: u64, k: u64) -> EventTime {
        self.config.start_ms + k * TICK_MS + u * TICK_MS / u64::from(self.config.users)
    }

    /// The draws of user `u` at tick `k`.
    fn rng(&self, u: u64, k: u64) -> SplitMix64 {
        let a =
            SplitMix64::new(self.config.seed ^ u.wrapping_mul(0x9e37_79b9_7f4a_7c15)).next_u64();
        SplitMix64::new(a ^ k.wrapping_mul(0xd1b5_4a32_d192_ed03))
    }

    /// Where user `u` starts: arriving within its first 30 ticks.
    fn walker(&self, u: u64) -> Walker {
        let mut rng = self.rng(u, u64::MAX);
        Walker {
            next: Next::Arrive,
            pause: (rng.next_u64() % 30) as u16,
            page: 0,
        }
    }

    fn page(&self, page: u16) -> String {
        if page == 0 {
            self.config.landing.clone()
        } else {
            format!("/p/{page}")
        }
    }

    /// Moves user `u` through tick `k`: its event, if it acts.
    fn step(&self, u: u64, k: u64, w: &mut Walker) -> Option<UserEvent> {
        if w.pause > 0 {
            w.pause -= 1;
            return None;
        }
        let mut rng = self.rng(u, k);
        let event = |from: String, op, to: String| UserEvent {
            user: format!("u{u}"),
            ts: self.time_of(u, k),
            from,
            op,
            to,
        };
        // After a visit: back within 30 s, or away past the session timeout.
        let end_visit = |w: &mut Walker, rng: &mut SplitMix64| {
            w.next = Next::Arrive;
            w.pause = if rng.next_u64().is_multiple_of(50) {
                180 + (rng.next_u64() % 360) as u16
            } else {
                (rng.next_u64() % 3) as u16
            };
        };
        match w.next {
            Next::Arrive => {
                let e = event(String::new(), Op::View, self.page(0));
                w.page = 0;
                let r = rng.next_u64() % 10;
                if r < 5 {
                    // A bounce: quiet past the bounce timeout.
                    w.pause = 3 + (rng.next_u64() % 4) as u16;
                } else {
                    let buy = r == 5;
                    let most = if buy { 12 } else { 20 };
                    let left = (rng.next_u64() % most) as u8;
                    w.next = Next::Browse { left, buy };
                }
                Some(e)
            }
            Next::Browse { left, buy } => {
                let to = 1 + (rng.next_u64() % PAGES) as u16;
                let e = event(self.page(w.page), Op::View, self.page(to));
                w.page = to;
                w.next = match (left, buy) {
                    (0, true) => Next::Buy,
                    (0, false) => {
                        end_visit(w, &mut rng);
                        Next::Arrive
                    }
                    (left, buy) => Next::Browse {
                        left: left - 1,
                        buy,
                    },
                };
                Some(e)
            }
            Next::Buy => {
                let e = event(self.page(w.page), Op::Buy, "/checkout".into());
                end_visit(w, &mut rng);
                Some(e)
            }
        }
    }
}

impl Source for UserGenerator {
    type Item = UserEvent;

    fn name(&self) -> String {
        "user-generator".into()
    }

    fn partitions(&self) -> usize {
        self.config.partitions
    }

    fn open(&self, index: usize) -> keyflow_dataflow::Result<Box<dyn Partition<UserEvent>>> {
        let step = self.config.partitions as u64;
        let users: Vec<u64> = (index as u64..u64::from(self.config.users))
            .step_by(step as usize)
            .collect();
        let walkers = users.iter().map(|&u| self.walker(u)).collect();
        Ok(Box::new(GeneratorPartition {
            source: self.clone(),
            users,
            walkers,
            tick: 0,
            at: 0,
            emitted: 0,
            started: None,
            share: self
                .config
                .rate
                .map(|r| (r as f64 / self.config.partitions as f64).max(1e-3)),
        }))
    }
}

struct GeneratorPartition {
    source: UserGenerator,
    /// This partition's users, ascending.
    users: Vec<u64>,
    walkers: Vec<Walker>,
    /// The tick being generated, and the position in `users` within it.
    tick: u64,
    at: usize,
    emitted: u64,
    started: Option<Instant>,
    /// Events per wall-clock second for this partition, when paced.
    share: Option<f64>,
}

impl Partition<UserEvent> for GeneratorPartition {
    fn poll(&mut self, batch: &mut Batch<UserEvent>) -> keyflow_dataflow::Result<PollStatus> {
        let end = self.source.config.start_ms + self.source.config.duration_ms;
        let allowed = self.share.map(|share| {
            let started = *self.started.get_or_insert_with(Instant::now);
            (started.elapsed().as_secs_f64() * share) as u64 + 1
        });
        while !batch.is_full() {
            if allowed.is_some_and(|a| self.emitted >= a) {
                return Ok(PollStatus::Idle);
            }
            if self.at == self.users.len() {
                self.at = 0;
                self.tick += 1;
            }
            let Some(&u) = self.users.get(self.at) else {
                return Ok(PollStatus::Done);
            };
            if self.source.time_of(u, self.tick) >= end {
                return Ok(PollStatus::Done);
            }
            let event = self.source.step(u, self.tick, &mut self.walkers[self.at]);
            self.at += 1;
            if let Some(e) = event {
                batch.push(e.ts, e);
                self.emitted += 1;
            }
        }
        Ok(PollStatus::Ready)
    }

    /// Events emitted so far.
    fn offset(&self) -> u64 {
        self.emitted
    }
}
