//! Parsing Wikimedia hourly dump lines (`pagecounts-*`, `pageviews-*`).

use std::path::Path;

use keyflow_dataflow::time::{days_from_civil, EventTime, HOUR};
use serde::{Deserialize, Serialize};

use super::article::Article;

/// What the hour stamp of a dump (file name or leading field) marks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum DumpTime {
    /// The stamp is the start of the hour counted (Wikimedia's convention).
    #[default]
    Start,
    /// The stamp is the end of the hour counted: `[stamp - 1h, stamp)`.
    End,
}

impl DumpTime {
    /// The start of the hour that `stamp` marks; `None` when it would fall
    /// before the epoch.
    ///
    /// # Examples
    /// ```
    /// use keyflow_jobs::pageviews::DumpTime;
    /// assert_eq!(DumpTime::Start.hour_start(7_200_000), Some(7_200_000));
    /// assert_eq!(DumpTime::End.hour_start(7_200_000), Some(3_600_000));
    /// assert_eq!(DumpTime::End.hour_start(0), None);
    /// ```
    pub fn hour_start(self, stamp: EventTime) -> Option<EventTime> {
        match self {
            DumpTime::Start => Some(stamp),
            DumpTime::End => stamp.checked_sub(HOUR),
        }
    }
}

impl std::str::FromStr for DumpTime {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "start" => Ok(DumpTime::Start),
            "end" => Ok(DumpTime::End),
            other => Err(format!("dump time `{other}` is not one of: start, end")),
        }
    }
}

/// One parsed dump line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DumpLine<'a> {
    /// Start of the hour the counts belong to (ms since the epoch, UTC).
    pub hour_start_ms: EventTime,
    /// Wikimedia domain code (`en`, `en.m`, ...).
    pub project: &'a str,
    /// Page title, as the dump spells it (URL-encoded).
    pub title: &'a str,
    /// Views in that hour.
    pub views: u64,
}

impl DumpLine<'_> {
    /// The line's article.
    pub fn article(&self) -> Article {
        Article::named(self.project, self.title)
    }
}

/// Parses a dump line whose hour stamps mark the start of the hour; see
/// [`parse_dump_line_with`].
///
/// # Examples
/// ```
/// use keyflow_jobs::pageviews::parse_dump_line;
/// let line = parse_dump_line("20160801-000000 en Simon_Pegg 146 3720391", None).unwrap();
/// assert_eq!((line.hour_start_ms, line.project, line.title, line.views),
///            (1_470_009_600_000, "en", "Simon_Pegg", 146));
/// let line = parse_dump_line("en.m Main_Page 3 0", Some(3_600_000)).unwrap();
/// assert_eq!(line.hour_start_ms, 3_600_000);
/// assert!(parse_dump_line("en.m Main_Page 3 0", None).is_err());
/// ```
pub fn parse_dump_line(line: &str, file_hour: Option<EventTime>) -> Result<DumpLine<'_>, String> {
    parse_dump_line_with(line, file_hour, DumpTime::Start)
}

/// Parses `domain_code page_title count_views total_response_size`, or the
/// same with a leading `yyyymmdd-hhmmss` hour field, which then wins over
/// `file_stamp` (the stamp from the file name, see [`hour_from_file_name`]).
/// `time` says whether stamps mark the start or the end of the hour. The
/// error says what is wrong with the line.
pub fn parse_dump_line_with(
    line: &str,
    file_stamp: Option<EventTime>,
    time: DumpTime,
) -> Result<DumpLine<'_>, String> {
    let mut fields = [""; 5];
    let mut n = 0;
    for field in line.split(' ') {
        if n == fields.len() {
            return Err(format!(
                "more than 5 space-separated fields in {}",
                shorten(line)
            ));
        }
        fields[n] = field;
        n += 1;
    }
    let (stamp, [project, title, views, size]) = match n {
        4 => (None, [fields[0], fields[1], fields[2], fields[3]]),
        5 => (
            Some(fields[0]),
            [fields[1], fields[2], fields[3], fields[4]],
        ),
        _ => return Err(format!("expected 4 or 5 space-separated fields, found {n}")),
    };
    let stamp = match stamp {
        Some(text) => parse_hour_stamp(text)
            .ok_or_else(|| format!("bad hour field {} (want yyyymmdd-hh0000)", shorten(text)))?,
        None => file_stamp.ok_or(
            "no hour: the line has no leading hour field and the file name has no yyyymmdd-hhmmss",
        )?,
    };
    let hour_start_ms = time
        .hour_start(stamp)
        .ok_or("the hour ending at the stamp starts before 1970")?;
    if !is_domain_code(project.as_bytes()) {
        return Err(format!("bad domain code {}", shorten(project)));
    }
    if title.is_empty() {
        return Err("empty page title".into());
    }
    // As in JSON lines: a title becomes a field of space-separated dump
    // lines downstream, so tabs, NULs and other control characters in it
    // would corrupt them.
    if title.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "page title {} contains whitespace or control characters",
            shorten(title)
        ));
    }
    let views = parse_count(views).ok_or_else(|| format!("bad view count {}", shorten(views)))?;
    if views > super::MAX_VIEWS {
        return Err(format!(
            "view count {views} exceeds the maximum of {}",
            super::MAX_VIEWS
        ));
    }
    parse_count(size).ok_or_else(|| format!("bad response size {}", shorten(size)))?;
    Ok(DumpLine {
        hour_start_ms,
        project,
        title,
        views,
    })
}

/// Domain codes are like `en`, `en.m`, `zh-min-nan`, `commons.m`: real dumps
/// carry a few lines with junk such as `""` there. JSON lines and streams
/// take the same rule, so that any project they accept reads back from the
/// hourly files the trending job writes.
#[inline]
pub(super) fn is_domain_code(s: &[u8]) -> bool {
    s.first().is_some_and(|b| b.is_ascii_alphanumeric())
        && s.iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

/// Only plain digits: `str::parse` would also take `+5`.
fn parse_count(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// A field quoted in a message: control characters escaped, cut after 200
/// characters (a malformed line can be megabytes long).
fn shorten(s: &str) -> String {
    format!("`{}`", keyflow_dataflow::source::shorten(s, QUOTED))
}

/// Characters of a bad value that a message quotes.
pub(crate) const QUOTED: usize = 200;

/// Parses `yyyymmdd-hhmmss` into the start of its hour (minutes and seconds
/// are dropped: some old dumps are stamped a second or two late).
///
/// # Examples
/// ```
/// use keyflow_jobs::pageviews::parse_hour_stamp;
/// assert_eq!(parse_hour_stamp("20160801-010000"), Some(1_470_013_200_000));
/// assert_eq!(parse_hour_stamp("20160801-010002"), Some(1_470_013_200_000));
/// assert_eq!(parse_hour_stamp("20160832-000000"), None);
/// ```
pub fn parse_hour_stamp(text: &str) -> Option<EventTime> {
    let b = text.as_bytes();
    // ASCII first, so that the byte ranges below are char boundaries.
    if b.len() != 15 || !text.is_ascii() || b[8] != b'-' {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<u32> {
        let digits = &text[range];
        digits
            .bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| digits.parse().ok())
            .flatten()
    };
    let (y, mo, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (h, mi, s) = (num(9..11)?, num(11..13)?, num(13..15)?);
    if h > 23 || mi > 59 || s > 59 {
        return None;
    }
    Some(days_from_civil(y as i64, mo, d)? + h as u64 * HOUR)
}

/// The hour stamp in a dump file's name, such as `pageviews-20240803-060000.gz`.
///
/// # Examples
/// ```
/// use keyflow_jobs::pageviews::hour_from_file_name;
/// use std::path::Path;
/// let path = Path::new("data/pagecounts-20160801-000000.gz");
/// assert_eq!(hour_from_file_name(path), Some(1_470_009_600_000));
/// assert_eq!(hour_from_file_name(Path::new("views.txt")), None);
/// ```
pub fn hour_from_file_name(path: &Path) -> Option<EventTime> {
    let name = path.file_name()?.to_str()?;
    (0..name.len().saturating_sub(14))
        .filter(|&i| name.is_char_boundary(i) && name.is_char_boundary(i + 15))
        .find_map(|i| parse_hour_stamp(&name[i..i + 15]))
}

/// The views minute `minute` (0..60) of an hour gets when `views` are spread
/// evenly over it: `views / 60`, plus one for the first `views % 60` minutes.
///
/// # Examples
/// ```
/// use keyflow_jobs::pageviews::minute_views;
/// assert_eq!(minute_views(130, 9), 3);
/// assert_eq!(minute_views(130, 10), 2);
/// assert_eq!((0..60).map(|m| minute_views(130, m)).sum::<u64>(), 130);
/// assert_eq!(minute_views(5, 5), 0);
/// ```
#[inline]
pub fn minute_views(views: u64, minute: u64) -> u64 {
    views / 60 + u64::from(minute < views % 60)
}
