//! The rise rules and the operator's parameters.

use std::fmt;
use std::str::FromStr;

use keyflow_dataflow::time::MINUTE;
use serde::{Deserialize, Serialize};

use super::state::Geometry;
use crate::error::{Error, Result};

/// The built-in rise rules over the window counts `c1..cN`.
///
/// None of them lets a count fall below `c1`, so with `min_first >= 1` a
/// passing key has weight in every window; the operator uses this to read
/// only keys whose panes spread from the first window to the last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum RiseRule {
    /// `c1 <= c2 <= ... <= cN` and `cN > c1`: never falling, and grown.
    #[default]
    NonDecreasing,
    /// `c1 < c2 < ... < cN`.
    Strict,
    /// `c1 <= c2 <= ... <= cN`; a flat series passes.
    AllowFlat,
}

impl RiseRule {
    /// Whether `counts` (`c1..cN`) satisfy the rule.
    ///
    /// # Examples
    /// ```
    /// use keyflow_operators::rise::RiseRule;
    /// assert!(RiseRule::NonDecreasing.holds(&[1, 1, 2]));
    /// assert!(!RiseRule::NonDecreasing.holds(&[2, 2, 2]));
    /// assert!(!RiseRule::Strict.holds(&[1, 1, 2]));
    /// assert!(RiseRule::AllowFlat.holds(&[2, 2, 2]));
    /// ```
    pub fn holds(&self, counts: &[u64]) -> bool {
        let (Some(first), Some(last)) = (counts.first(), counts.last()) else {
            return false;
        };
        match self {
            RiseRule::NonDecreasing => counts.windows(2).all(|w| w[0] <= w[1]) && last > first,
            RiseRule::Strict => counts.windows(2).all(|w| w[0] < w[1]),
            RiseRule::AllowFlat => counts.windows(2).all(|w| w[0] <= w[1]),
        }
    }
}

impl FromStr for RiseRule {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "non-decreasing" | "default" => Ok(RiseRule::NonDecreasing),
            "strict" => Ok(RiseRule::Strict),
            "allow-flat" | "flat" => Ok(RiseRule::AllowFlat),
            other => Err(Error::Config(format!(
                "rise rule `{other}` is not one of: non-decreasing, strict, allow-flat"
            ))),
        }
    }
}

impl fmt::Display for RiseRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RiseRule::NonDecreasing => "non-decreasing",
            RiseRule::Strict => "strict",
            RiseRule::AllowFlat => "allow-flat",
        })
    }
}

/// Parameters of the rise operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RiseConfig {
    /// Length of each of the N windows, in ms (default 10 minutes); a
    /// positive multiple of `slide`.
    pub window: u64,
    /// Distance between evaluated boundaries, in ms (default 1 minute).
    pub slide: u64,
    /// Number N of disjoint windows (default 6).
    pub windows: usize,
    /// The rule the counts must satisfy (default non-decreasing).
    pub rule: RiseRule,
    /// The least `c1` of a passing key (default 1).
    pub min_first: u64,
    /// How long after a boundary late records may still change its result,
    /// in ms; `None` (the default) drops and counts every late record. See
    /// [`RiseConfig::with_allowed_lateness`].
    #[serde(default)]
    pub allowed_lateness: Option<u64>,
}

impl Default for RiseConfig {
    fn default() -> Self {
        RiseConfig {
            window: 10 * MINUTE,
            slide: MINUTE,
            windows: 6,
            rule: RiseRule::NonDecreasing,
            min_first: 1,
            allowed_lateness: None,
        }
    }
}

impl RiseConfig {
    /// `windows` disjoint windows of `window` ms, evaluated every `slide`
    /// ms, with the default rule (non-decreasing) and `min_first` 1; checked
    /// here, so a bad value fails where the job is declared.
    ///
    /// # Examples
    /// ```
    /// use keyflow_dataflow::time::MINUTE;
    /// use keyflow_operators::rise::{RiseConfig, RiseRule};
    /// let config = RiseConfig::new(10 * MINUTE, MINUTE, 6).unwrap().with_rule(RiseRule::Strict);
    /// assert_eq!(config.rule, RiseRule::Strict);
    /// assert!(RiseConfig::new(90_000, MINUTE, 6).unwrap_err().to_string().contains("multiple"));
    /// ```
    pub fn new(window: u64, slide: u64, windows: usize) -> Result<Self> {
        let config = RiseConfig {
            window,
            slide,
            windows,
            ..RiseConfig::default()
        };
        config.validate().map(|()| config)
    }

    /// The same config with another rule.
    pub fn with_rule(self, rule: RiseRule) -> Self {
        RiseConfig { rule, ..self }
    }

    /// The same config with another least `c1` of a passing key.
    pub fn with_min_first(self, min_first: u64) -> Self {
        RiseConfig { min_first, ..self }
    }

    /// The same config with allowed lateness `ms`. A late record (event
    /// time below the time it travels at, which is when it was read) then
    /// still counts for the boundaries `T` of its span that are ahead of
    /// that time or no more than `ms` behind it (`T + ms` above it); a
    /// record that counts for none is dropped and counted in
    /// `late_dropped`. Every boundary at or below that time that a late
    /// record counts for is evaluated again (for the first time, if nothing
    /// counted there before), and [`super::RiseOut::top_k`] ranks it again
    /// as an update. With lateness 0 a late record still counts for the
    /// boundaries ahead, which without this option it would not.
    ///
    /// # Examples
    /// ```
    /// use keyflow_dataflow::time::MINUTE;
    /// use keyflow_operators::rise::RiseConfig;
    /// let config = RiseConfig::new(10 * MINUTE, MINUTE, 6).unwrap().with_allowed_lateness(5 * MINUTE);
    /// assert_eq!(config.allowed_lateness, Some(5 * MINUTE));
    /// assert_eq!(RiseConfig::default().allowed_lateness, None);
    /// ```
    pub fn with_allowed_lateness(self, ms: u64) -> Self {
        RiseConfig {
            allowed_lateness: Some(ms),
            ..self
        }
    }

    /// Checks the values, naming the first bad one.
    ///
    /// # Examples
    /// ```
    /// use keyflow_operators::rise::RiseConfig;
    /// assert!(RiseConfig::default().validate().is_ok());
    /// let bad = RiseConfig { window: 90_000, slide: 60_000, ..Default::default() };
    /// assert!(bad.validate().unwrap_err().to_string().contains("multiple"));
    /// ```
    pub fn validate(&self) -> Result<()> {
        if self.slide == 0 {
            return Err(Error::Config("rise slide 0 ms must be positive".into()));
        }
        if self.window == 0 || !self.window.is_multiple_of(self.slide) {
            return Err(Error::Config(format!(
                "rise window {} ms must be a positive multiple of the slide {} ms",
                self.window, self.slide
            )));
        }
        if self.windows == 0 {
            return Err(Error::Config("rise needs at least 1 window, not 0".into()));
        }
        let span = (self.window / self.slide).checked_mul(self.windows as u64);
        if span.is_none_or(|s| s > 1 << 30)
            || self.window.checked_mul(self.windows as u64).is_none()
        {
            return Err(Error::Config(format!(
                "rise span of {} windows of {} ms at slide {} ms is too long",
                self.windows, self.window, self.slide
            )));
        }
        Ok(())
    }

    pub(super) fn geometry(&self) -> Geometry {
        Geometry {
            slide: self.slide,
            per_window: self.window / self.slide,
            windows: self.windows,
        }
    }
}
