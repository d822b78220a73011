//! The deterministic pageview generator: the embedded default input.

use std::sync::Arc;
use std::time::Instant;

use keyflow_dataflow::source::{Batch, Partition, PollStatus, Source};
use keyflow_dataflow::time::{EventTime, HOUR, MINUTE};
use serde::{Deserialize, Serialize};

use super::article::{Article, PageView};
use super::zipf::{mix64, SplitMix64, Zipf};
use crate::error::{Error, Result};

/// 2024-01-01T00:00:00Z, the default start of generated event time.
pub const DEFAULT_START_MS: EventTime = 1_704_067_200_000;

/// The exponent of the generated popularity law.
pub const ZIPF_EXPONENT: f64 = 1.0;

/// At the top of its ramp a burst takes 1 in this many of the event slots
/// reserved to it (1/bursts of all slots).
const BURST_PEAK_DIVISOR: u64 = 50;

/// The most events per second the generator accepts: beyond it minute
/// arithmetic could overflow, and no machine would keep up anyway.
const MAX_RATE: u64 = 1_000_000_000;

/// Domain separators, so that streams drawn for different purposes from the
/// same seed are unrelated.
const EVENT_STREAM: u64 = 0x6576_656e_7473;
const BURST_STREAM: u64 = 0x6275_7273_7473;

/// Settings of the pageview generator.
///
/// Event `i` (`0 <= i < rate * duration`) happens at
/// `start_ms + i * 1000 / rate` and is a pure function of `(seed, i)`.
/// Partition `p` of `partitions` produces the events with
/// `i % partitions == p`, so the events are the same for any number of
/// workers, and even for any number of partitions.
///
/// # Examples
/// ```
/// use keyflow_jobs::pageviews::GeneratorConfig;
/// let config = GeneratorConfig { rate: 100, duration_ms: 60_000, ..Default::default() };
/// config.validate()?;
/// assert_eq!(config.total_events(), 6_000);
/// let bad = GeneratorConfig { partitions: 0, ..config };
/// assert!(bad.validate().unwrap_err().to_string().contains("partitions"));
/// # Ok::<(), keyflow_jobs::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct GeneratorConfig {
    /// How many distinct articles (Zipf ranks) there are.
    pub articles: u32,
    /// The seed every event derives from.
    pub seed: u64,
    /// Events per second of event time.
    pub rate: u64,
    /// Span of event time to generate, in milliseconds.
    pub duration_ms: u64,
    /// Event time of the first event (ms since the epoch). Burst ramps are
    /// aligned to it, so a minute-aligned start lines them up with windows.
    pub start_ms: EventTime,
    /// Number of partitions; fixed, whatever the number of workers.
    pub partitions: usize,
    /// Number of trending articles planted.
    pub bursts: usize,
    /// Pace each partition to the wall clock (event time advances at real
    /// speed from the moment the partition starts) instead of producing as
    /// fast as possible.
    pub realtime: bool,
    /// With `realtime`, event time advances this many times as fast as
    /// the wall clock (1: real speed). A latency benchmark compresses
    /// hours of windows into minutes with it.
    pub speedup: u64,
}

impl Default for GeneratorConfig {
    fn default() -> Self {
        GeneratorConfig {
            articles: 6_000_000,
            seed: 1,
            rate: 20_000,
            duration_ms: 2 * HOUR,
            start_ms: DEFAULT_START_MS,
            partitions: 8,
            bursts: 20,
            realtime: false,
            speedup: 1,
        }
    }
}

impl GeneratorConfig {
    /// Checks the values, naming the first bad one.
    pub fn validate(&self) -> Result<()> {
        let fail = |msg: String| Err(Error::Config(msg));
        if self.articles == 0 {
            return fail("generator articles 0 must be at least 1".into());
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
        if !(1..=3_600_000).contains(&self.speedup) {
            return fail(format!(
                "generator speedup {} must be between 1 and 3600000",
                self.speedup
            ));
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
        if self.partitions == 0 {
            return fail("generator partitions 0 must be at least 1".into());
        }
        if self.bursts > self.articles as usize {
            return fail(format!(
                "generator articles {} (--articles) are fewer than its {} bursts (planted \
                 trending articles): give at least {}",
                self.articles, self.bursts, self.bursts
            ));
        }
        Ok(())
    }

    /// How many events the generator produces: `rate * duration`.
    pub fn total_events(&self) -> u64 {
        let total = self.duration_ms as u128 * self.rate as u128 / 1000;
        total.min(u64::MAX as u128) as u64
    }
}

/// A planted trending article: its share of the traffic grows linearly,
/// minute by minute, over each hour starting at `ramp_start_ms`, then drops
/// back and ramps again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Burst {
    /// The article.
    pub article: Article,
    /// Start of its first full ramp; the next ones follow every hour.
    pub ramp_start_ms: EventTime,
}

/// The generator as a [`Source`] of pageviews (each with `views = 1`), the
/// embedded default input of the trending job.
///
/// Background views follow a Zipf law over article ranks (article
/// `Generated(1)` is the most popular). On top, each burst article owns the
/// event slots `j % bursts == b` of every minute (`j` counted from the
/// minute's first event) and takes an even share of them that grows from
/// 1/3000 to 1/50 over its hour. Burst counts are thus exact, not noisy, and
/// its six consecutive 10-minute windows rise. The bursts' hours are
/// staggered so that some article trends at most minutes.
///
/// # Examples
/// ```
/// use keyflow_dataflow::source::{Batch, Source};
/// use keyflow_jobs::pageviews::{GeneratorConfig, GeneratorSource};
///
/// let config = GeneratorConfig { rate: 10, duration_ms: 10_000, partitions: 2, ..Default::default() };
/// let src = GeneratorSource::new(config)?;
/// let mut batch = Batch::new(1000);
/// src.open(1)?.poll(&mut batch)?;
/// assert_eq!(batch.records.len(), 50); // events 1, 3, 5, ... of 100
/// assert_eq!(batch.records[0].0, src.event(1).0);
/// assert_eq!(batch.records[0].1.article, src.event(1).1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct GeneratorSource {
    config: GeneratorConfig,
    plan: Arc<Plan>,
}

#[derive(Debug)]
struct Plan {
    zipf: Zipf,
    seed_key: u64,
    bursts: Vec<u32>,
    per_minute: u64,
    total: u64,
}

impl GeneratorSource {
    /// A generator for a validated `config`.
    pub fn new(config: GeneratorConfig) -> Result<Self> {
        config.validate()?;
        let plan = Plan {
            zipf: Zipf::new(config.articles as u64, ZIPF_EXPONENT),
            seed_key: mix64(config.seed ^ EVENT_STREAM),
            bursts: burst_ranks(config.seed, config.articles, config.bursts),
            per_minute: config.rate * 60,
            total: config.total_events(),
        };
        Ok(GeneratorSource {
            config,
            plan: Arc::new(plan),
        })
    }

    /// The settings.
    pub fn config(&self) -> &GeneratorConfig {
        &self.config
    }

    /// How many events all partitions together produce.
    pub fn total_events(&self) -> u64 {
        self.plan.total
    }

    /// The planted trending articles.
    pub fn bursts(&self) -> Vec<Burst> {
        let count = self.plan.bursts.len() as u64;
        (0..count)
            .map(|b| Burst {
                article: Article::Generated(self.plan.bursts[b as usize]),
                ramp_start_ms: self.config.start_ms + (60 - phase(b, count)) % 60 * MINUTE,
            })
            .collect()
    }

    /// Event time of event `i`.
    #[inline]
    pub fn time_of(&self, i: u64) -> EventTime {
        let rate = self.config.rate;
        // The u128 division is only for indices that would overflow; it is
        // several times slower.
        let offset = match i.checked_mul(1000) {
            Some(ms) => ms / rate,
            None => (i as u128 * 1000 / rate as u128) as u64,
        };
        self.config.start_ms + offset
    }

    /// Event `i`: its time and article, a pure function of the seed and `i`.
    #[inline]
    pub fn event(&self, i: u64) -> (EventTime, Article) {
        (self.time_of(i), Article::Generated(self.article_id(i)))
    }

    /// The article id of event `i` (see [`Article::Generated`]).
    #[inline]
    pub fn article_id(&self, i: u64) -> u32 {
        let plan = &*self.plan;
        let count = plan.bursts.len() as u64;
        if count > 0 {
            let minute = i / plan.per_minute;
            let slot = i % plan.per_minute;
            let (b, s) = (slot % count, slot / count);
            let step = (minute + phase(b, count)) % 60 + 1;
            // Bresenham: exactly floor(slots * step / D) of the burst's slots
            // in this minute, evenly spaced.
            const D: u64 = 60 * BURST_PEAK_DIVISOR;
            if (s + 1) * step / D > s * step / D {
                return plan.bursts[b as usize];
            }
        }
        let mut rng = SplitMix64::new(mix64(plan.seed_key ^ i));
        // Ranks are at most `articles`, a u32.
        plan.zipf.sample(&mut rng) as u32
    }
}

/// Minutes by which burst `b`'s ramp is ahead of the start.
#[inline]
fn phase(b: u64, count: u64) -> u64 {
    b * 60 / count
}

/// `count` distinct ranks outside the top 1% when there is room: a walk with
/// a stride coprime to the range visits distinct ranks without a set.
fn burst_ranks(seed: u64, articles: u32, count: usize) -> Vec<u32> {
    let n = articles as u64;
    let (lo, size) = if n - n / 100 >= count as u64 {
        (n / 100 + 1, n - n / 100)
    } else {
        (1, n)
    };
    let mut rng = SplitMix64::new(mix64(seed ^ BURST_STREAM));
    let offset = rng.next_u64() % size;
    let mut stride = rng.next_u64() % size + 1;
    while gcd(stride, size) != 1 {
        stride = stride % size + 1;
    }
    (0..count as u64)
        .map(|b| {
            let k = (offset as u128 + b as u128 * stride as u128) % size as u128;
            (lo + k as u64) as u32
        })
        .collect()
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

impl Source for GeneratorSource {
    type Item = PageView;

    fn name(&self) -> String {
        "pageviews-generator".into()
    }

    fn partitions(&self) -> usize {
        self.config.partitions
    }

    fn open(&self, index: usize) -> keyflow_dataflow::Result<Box<dyn Partition<PageView>>> {
        Ok(Box::new(GeneratorPartition {
            source: self.clone(),
            next: index as u64,
            step: self.config.partitions as u64,
            started: None,
            emitted: 0,
        }))
    }
}

struct GeneratorPartition {
    source: GeneratorSource,
    next: u64,
    step: u64,
    started: Option<Instant>,
    emitted: u64,
}

impl Partition<PageView> for GeneratorPartition {
    fn poll(&mut self, batch: &mut Batch<PageView>) -> keyflow_dataflow::Result<PollStatus> {
        let due = self.source.config.realtime.then(|| {
            let started = *self.started.get_or_insert_with(Instant::now);
            let wall = started.elapsed().as_millis() as u64;
            self.source.config.start_ms + wall.saturating_mul(self.source.config.speedup)
        });
        while !batch.is_full() {
            if self.next >= self.source.plan.total {
                return Ok(PollStatus::Done);
            }
            let ts = self.source.time_of(self.next);
            if due.is_some_and(|due| ts > due) {
                return Ok(PollStatus::Idle);
            }
            let article = Article::Generated(self.source.article_id(self.next));
            batch.push(ts, PageView { article, views: 1 });
            self.emitted += 1;
            self.next = self.next.saturating_add(self.step);
        }
        Ok(PollStatus::Ready)
    }

    /// Events emitted so far.
    fn offset(&self) -> u64 {
        self.emitted
    }

    fn skip(&mut self, n: u64) -> keyflow_dataflow::Result<(u64, PollStatus)> {
        let left = (self.source.plan.total.saturating_sub(self.next)).div_ceil(self.step);
        let n = n.min(left);
        self.next = self.next.saturating_add(n * self.step);
        self.emitted += n;
        let status = if n == left {
            PollStatus::Done
        } else {
            PollStatus::Ready
        };
        Ok((n, status))
    }
}
