//! The baseline file: hourly view averages per article, versioned and
//! checksummed.
//!
//! Version 1 is plain UTF-8 text, one record per line, `\n` line endings:
//!
//! ```text
//! keyflow-baseline 1
//! days 2
//! first-day 2016-08-01
//! last-day 2016-08-02
//! keys 3
//! de Simon 0 0 0.5 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
//! en Simon_Pegg 146 120.5 ... (24 values)
//! en.m Simon_Pegg 0 1 ...
//! end 3 9f2c81d0
//! ```
//!
//! - line 1 names the format and its version; a reader refuses any other
//!   version by number;
//! - `days` is n, the number of days averaged; `first-day` and `last-day`
//!   are the UTC dates of the oldest and newest of them (`-` when n is 0);
//!   with gaps in the history, n can be less than the days between them;
//! - `keys` is the number of article lines that follow;
//! - each article line is `project title a_0 .. a_23`: the project and
//!   title as in dump files (no whitespace), then the 24 hourly averages
//!   (hour of day 0..23, UTC), finite and non-negative, written as the
//!   shortest decimal that reads back to the same `f64`. Lines are sorted
//!   by project, then title, and each article appears once;
//! - the last line is `end <rows> <crc>`: the number of article lines again,
//!   and the CRC-32 (IEEE, as in gzip) of every byte before the `end` line,
//!   as 8 lowercase hex digits. A file cut short or altered fails to read.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use keyflow_dataflow::time::{civil, EventTime};

use super::read::Reader;
use crate::error::{Error, Result};
use crate::pageviews::Article;

/// The format version this build writes and reads.
pub const BASELINE_VERSION: u32 = 1;

/// The first word of every baseline file.
pub const BASELINE_MAGIC: &str = "keyflow-baseline";

/// Hours in a day: the length of every baseline vector.
pub const HOURS: usize = 24;

/// The most days a baseline may average: far past any history (each
/// `--refold-days` run adds one more), and far enough below `u64::MAX` that
/// folding in another day never wraps the count to 0, which would turn every
/// average into NaN. A file edited by hand past it is refused.
pub const MAX_DAYS: u64 = u32::MAX as u64;

/// Hourly view averages per article over `days` days.
///
/// # Examples
/// ```
/// use keyflow_jobs::baseline::Baseline;
/// use keyflow_jobs::pageviews::Article;
///
/// let mut base = Baseline::empty();
/// base.days = 1;
/// base.first_day = Some(1_470_009_600_000);
/// base.last_day = base.first_day;
/// let mut hours = [0.0; 24];
/// hours[13] = 42.0;
/// base.keys.insert(Article::named("en", "Simon_Pegg"), hours);
///
/// let path = std::env::temp_dir().join(format!("keyflow-doc-baseline-{}", std::process::id()));
/// base.write_atomic(&path)?;
/// let back = Baseline::read(&path)?;
/// assert_eq!(back, base);
///
/// std::fs::write(&path, "keyflow-baseline 2\n")?;
/// let err = Baseline::read(&path).unwrap_err().to_string();
/// assert!(err.contains("version 2"), "{err}");
/// std::fs::remove_file(&path)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Baseline {
    /// n: how many days are averaged.
    pub days: u64,
    /// Midnight UTC (ms) of the oldest day averaged; `None` when n is 0.
    pub first_day: Option<EventTime>,
    /// Midnight UTC (ms) of the newest day averaged; `None` when n is 0.
    pub last_day: Option<EventTime>,
    /// `a_0..a_23` per article: its average views in each hour of the day.
    pub keys: BTreeMap<Article, [f64; HOURS]>,
}

/// `YYYY-MM-DD` of the UTC day holding `ts`.
///
/// # Examples
/// ```
/// assert_eq!(keyflow_jobs::baseline::format_day(1_470_013_200_000), "2016-08-01");
/// ```
pub fn format_day(ts: EventTime) -> String {
    let (y, m, d, ..) = civil(ts);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Whether `s` can be a project or title field: non-empty, without spaces
/// or line breaks (dump fields never have them).
pub(super) fn is_field(s: &str) -> bool {
    !s.is_empty() && !s.contains([' ', '\n', '\r'])
}

impl Baseline {
    /// No days, no articles.
    pub fn empty() -> Self {
        Baseline::default()
    }

    /// The averages of `article`, if tracked.
    pub fn get(&self, article: &Article) -> Option<&[f64; HOURS]> {
        self.keys.get(article)
    }

    /// Checks what the file format needs: names without spaces or line
    /// breaks, finite non-negative averages, first and last days set exactly
    /// when n > 0 and in order, n at most [`MAX_DAYS`].
    ///
    /// # Examples
    /// ```
    /// use keyflow_jobs::baseline::Baseline;
    /// use keyflow_jobs::pageviews::Article;
    /// let mut base = Baseline::empty();
    /// assert!(base.validate().is_ok());
    /// base.keys.insert(Article::named("en", "Simon"), [f64::NAN; 24]);
    /// assert!(base.validate().unwrap_err().to_string().contains("en Simon"));
    /// ```
    pub fn validate(&self) -> Result<()> {
        self.check()
            .map_err(|reason| Error::Config(format!("baseline: {reason}")))
    }

    fn check(&self) -> std::result::Result<(), String> {
        if (self.days == 0) != self.first_day.is_none()
            || self.first_day.is_none() != self.last_day.is_none()
            || self.first_day > self.last_day
        {
            return Err(format!(
                "days {} does not agree with first day {:?} and last day {:?}",
                self.days, self.first_day, self.last_day
            ));
        }
        if self.days > MAX_DAYS {
            return Err(format!("days {} is more than {MAX_DAYS}", self.days));
        }
        for (article, hours) in &self.keys {
            if !is_field(article.project()) || !is_field(&article.title()) {
                return Err(format!(
                    "article `{article}` has an empty name, or a space or line break in it"
                ));
            }
            if let Some(h) = hours.iter().position(|a| !a.is_finite() || *a < 0.0) {
                return Err(format!(
                    "article `{article}` hour {h}: average {} is not a finite non-negative number",
                    hours[h]
                ));
            }
        }
        Ok(())
    }

    /// The file's text (see the module docs).
    pub fn to_text(&self) -> String {
        let mut text = String::new();
        self.write_text(&mut text);
        text
    }

    /// The file's text in memory reserved up front, so that running out of
    /// it is an error naming what was being built rather than an abort. The
    /// reservation is an estimate (a name and 24 short numbers per article);
    /// growth past it can still abort.
    fn try_to_text(&self, path: &Path) -> Result<String> {
        let mut text = String::new();
        text.try_reserve(self.keys.len().saturating_mul(96).saturating_add(256))
            .map_err(|_| Error::Format {
                path: path.to_path_buf(),
                reason: format!(
                    "out of memory while building the text of a baseline of {} articles",
                    self.keys.len()
                ),
            })?;
        self.write_text(&mut text);
        Ok(text)
    }

    fn write_text(&self, text: &mut String) {
        let day = |d: Option<EventTime>| d.map_or_else(|| "-".to_string(), format_day);
        let _ = write!(
            text,
            "{BASELINE_MAGIC} {BASELINE_VERSION}\ndays {}\nfirst-day {}\nlast-day {}\nkeys {}\n",
            self.days,
            day(self.first_day),
            day(self.last_day),
            self.keys.len()
        );
        for (article, hours) in &self.keys {
            text.push_str(&article.to_string());
            for a in hours {
                // `Display` for f64 is the shortest decimal that parses back
                // to the same value, without an exponent.
                let _ = write!(text, " {a}");
            }
            text.push('\n');
        }
        let mut crc = flate2::Crc::new();
        crc.update(text.as_bytes());
        let _ = writeln!(text, "end {} {:08x}", self.keys.len(), crc.sum());
    }

    /// Writes the file atomically: a temporary file beside `path`, fsync,
    /// rename over `path`, then fsync of the directory, so a reader sees the
    /// old file or the new one, never a part. A device or pipe at `path`
    /// (`/dev/stdout`, a FIFO) is written directly instead; see
    /// [`write_whole_file`](crate::output_file::write_whole_file).
    pub fn write_atomic(&self, path: &Path) -> Result<()> {
        self.check().map_err(|reason| Error::Format {
            path: path.to_path_buf(),
            reason: format!("cannot write this baseline: {reason}"),
        })?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| keyflow_dataflow::Error::io(dir, e))?;
        }
        crate::output_file::write_whole_file(path, self.try_to_text(path)?.as_bytes())?;
        Ok(())
    }

    /// Reads a baseline file. A file of another version, a bad header, a bad
    /// line, a missing `end` line (truncation) or a checksum mismatch is an
    /// [`Error::Format`] naming the file and line.
    pub fn read(path: &Path) -> Result<Baseline> {
        let file = File::open(path).map_err(|e| keyflow_dataflow::Error::io(path, e))?;
        Reader::new(path, BufReader::with_capacity(1 << 16, file)).read()
    }
}

#[cfg(test)]
#[path = "format_tests.rs"]
mod tests;
