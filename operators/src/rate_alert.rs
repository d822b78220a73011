//! Rate-change alerts: a series grew by more than a percentage over a
//! window, reported when that starts to hold.
//!
//! [`RateAlert`] is the rule: `now > (1 + rise) * was` and `was >= min`,
//! where `was` is the value one window earlier, compared exactly (no
//! floating point). [`RateWatch`] applies it to series sampled at
//! consecutive boundaries and reports each series when the rule holds at a
//! boundary but did not at the one before.

use std::collections::VecDeque;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Decimal places a [`Percent`] keeps.
const PLACES: u32 = 6;
const SCALE: u128 = 10u128.pow(PLACES);
/// The largest percentage accepted (a trillion percent).
const MAX_PERCENT: u128 = 1_000_000_000_000;

/// A non-negative percentage, kept exactly to six decimal places: parsed
/// from `100%`, `100`, `12.5%`.
///
/// # Examples
/// ```
/// use keyflow_operators::rate_alert::Percent;
/// assert_eq!("100%".parse::<Percent>()?, Percent::whole(100));
/// assert_eq!("12.5".parse::<Percent>()?.to_string(), "12.5%");
/// assert!("-3%".parse::<Percent>().is_err());
/// # Ok::<(), keyflow_operators::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Percent {
    /// The percentage times 10^6.
    micros: u128,
}

impl Percent {
    /// `n` percent.
    pub fn whole(n: u64) -> Self {
        Percent {
            micros: n as u128 * SCALE,
        }
    }
}

impl FromStr for Percent {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        let bad = |why: &str| Error::Config(format!("percentage `{text}` {why}"));
        let number = text.trim();
        let number = number.strip_suffix('%').unwrap_or(number).trim();
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        let digits = |s: &str| s.chars().all(|c| c.is_ascii_digit());
        if whole.is_empty() && fraction.is_empty() || !digits(whole) || !digits(fraction) {
            return Err(bad("is not a non-negative number such as 100% or 12.5"));
        }
        if fraction.len() > PLACES as usize {
            return Err(bad("has more than 6 decimal places"));
        }
        let whole: u128 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| bad("is too large"))?
        };
        if whole > MAX_PERCENT {
            return Err(bad("is larger than 1000000000000%"));
        }
        let mut micros = whole * SCALE;
        if !fraction.is_empty() {
            let f: u128 = fraction.parse().map_err(|_| bad("is not a number"))?;
            micros += f * 10u128.pow(PLACES - fraction.len() as u32);
        }
        Ok(Percent { micros })
    }
}

impl std::fmt::Display for Percent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (whole, frac) = (self.micros / SCALE, self.micros % SCALE);
        if frac == 0 {
            return write!(f, "{whole}%");
        }
        let frac = format!("{frac:06}");
        write!(f, "{whole}.{}%", frac.trim_end_matches('0'))
    }
}

/// The rule: a value `now` rose from `was`, one window earlier, by more
/// than `rise`, and `was` was at least `min`.
///
/// # Examples
/// ```
/// use keyflow_operators::rate_alert::{Percent, RateAlert};
/// let rule = RateAlert { rise: Percent::whole(100), min: 10 };
/// assert!(rule.holds(10, 21));
/// assert!(!rule.holds(10, 20)); // exactly doubled is not more than 100% up
/// assert!(!rule.holds(9, 100)); // below the minimum
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateAlert {
    /// How much more than `was` the value must be.
    pub rise: Percent,
    /// The least `was` that counts.
    pub min: u64,
}

impl RateAlert {
    /// Whether `now > (1 + rise) * was` and `was >= min`, exactly.
    pub fn holds(&self, was: u64, now: u64) -> bool {
        let hundred = 100 * SCALE;
        was >= self.min && now as u128 * hundred > (hundred + self.rise.micros) * was as u128
    }
}

/// A start of a [`RateAlert`] on one series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RateChange {
    /// Which series (its index in the values pushed).
    pub series: usize,
    /// Its value one window earlier.
    pub was: u64,
    /// Its value now.
    pub now: u64,
}

/// Watches series sampled at consecutive boundaries with a [`RateAlert`]
/// over `window` boundaries. Boundaries before the first pushed count as
/// 0 in every series, and at the first the rule counts as not holding
/// before. Serializable, for checkpoints.
///
/// # Examples
/// ```
/// use keyflow_operators::rate_alert::{Percent, RateAlert, RateChange, RateWatch};
/// let rule = RateAlert { rise: Percent::whole(100), min: 10 };
/// let mut watch = RateWatch::new(rule, 2, 1)?;
/// let mut starts = Vec::new();
/// for v in [10, 10, 25, 30, 40, 90] {
///     starts.push(watch.push(&[v]));
/// }
/// // 25 > 2 * 10 starts an alert; 30 > 2 * 10 still holds, so no new one;
/// // 40 is not above 2 * 25; 90 > 2 * 30 starts one again.
/// let change = |was, now| vec![RateChange { series: 0, was, now }];
/// assert_eq!(starts, vec![vec![], vec![], change(10, 25), vec![], vec![], change(30, 90)]);
/// # Ok::<(), keyflow_operators::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateWatch {
    rule: RateAlert,
    window: usize,
    /// The values of the last `window` boundaries, oldest first.
    history: VecDeque<Vec<u64>>,
    /// Whether the rule held at the last boundary, per series.
    holding: Vec<bool>,
}

impl RateWatch {
    /// A watch of `series` series comparing each boundary with the one
    /// `window` boundaries before it (at least 1).
    pub fn new(rule: RateAlert, window: usize, series: usize) -> Result<Self> {
        if window == 0 {
            return Err(Error::Config(
                "rate alert window of 0 boundaries compares a value with itself".into(),
            ));
        }
        Ok(RateWatch {
            rule,
            window,
            history: VecDeque::with_capacity(window.min(1 << 16) + 1),
            holding: vec![false; series],
        })
    }

    /// How many boundaries back each one is compared with.
    pub fn window(&self) -> usize {
        self.window
    }

    /// Takes the values of the next boundary (one per series) and returns
    /// the series whose alert starts there, in series order.
    pub fn push(&mut self, values: &[u64]) -> Vec<RateChange> {
        assert_eq!(
            values.len(),
            self.holding.len(),
            "a rate watch of {} series was given {} values",
            self.holding.len(),
            values.len()
        );
        let mut starts = Vec::new();
        for (series, &now) in values.iter().enumerate() {
            let was = if self.history.len() == self.window {
                self.history[0][series]
            } else {
                0
            };
            let holds = self.rule.holds(was, now);
            if holds && !self.holding[series] {
                starts.push(RateChange { series, was, now });
            }
            self.holding[series] = holds;
        }
        if self.history.len() == self.window {
            self.history.pop_front();
        }
        self.history.push_back(values.to_vec());
        starts
    }
}
