//! Reading baseline files (the format is described in [`super::format`]).

use std::collections::BTreeMap;
use std::io::{BufRead, Read};
use std::path::{Path, PathBuf};

use keyflow_dataflow::source::{read_line_within, MAX_LINE_BYTES};
use keyflow_dataflow::time::{days_from_civil, EventTime};

use super::format::{is_field, Baseline, BASELINE_MAGIC, BASELINE_VERSION, HOURS, MAX_DAYS};
use crate::error::{Error, Result};
use crate::pageviews::Article;

/// Midnight UTC of a `YYYY-MM-DD` date.
fn parse_day(text: &str) -> Option<EventTime> {
    let mut parts = text.split('-');
    let (y, m, d) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return None;
    }
    days_from_civil(y.parse().ok()?, m.parse().ok()?, d.parse().ok()?)
}

/// A line-by-line parser that checksums as it goes.
pub(super) struct Reader<R> {
    path: PathBuf,
    input: R,
    line_no: u64,
    line: Vec<u8>,
    crc: flate2::Crc,
}

impl<R: BufRead> Reader<R> {
    /// A reader of `input`, which came from `path`.
    pub(super) fn new(path: &Path, input: R) -> Self {
        Reader {
            path: path.to_path_buf(),
            input,
            line_no: 0,
            line: Vec::new(),
            crc: flate2::Crc::new(),
        }
    }

    fn fail(&self, reason: impl std::fmt::Display) -> Error {
        // Before the first line (an empty file) the fault is the file's.
        let reason = match self.line_no {
            0 => reason.to_string(),
            n => format!("line {n}: {reason}"),
        };
        Error::Format {
            path: self.path.clone(),
            reason,
        }
    }

    /// The next line without its `\n`; `None` at the end of the file.
    /// The line counts towards the checksum once [`Reader::sum`] is called.
    /// A line over [`MAX_LINE_BYTES`] fails once that much is read, so that
    /// a wrong file without line breaks is neither read into memory nor
    /// read to its end.
    fn next(&mut self) -> Result<Option<&str>> {
        self.line.clear();
        let mut bounded = (&mut self.input).take(MAX_LINE_BYTES as u64 + 1);
        let (n, over) =
            read_line_within(&mut bounded, &mut self.line, MAX_LINE_BYTES).map_err(|e| {
                Error::Format {
                    path: self.path.clone(),
                    reason: format!("line {}: {e}", self.line_no + 1),
                }
            })?;
        if n == 0 {
            return Ok(None);
        }
        self.line_no += 1;
        if over {
            return Err(self.fail(format!(
                "a line of more than {MAX_LINE_BYTES} bytes: not a baseline file, or a damaged one"
            )));
        }
        let Ok(line) = std::str::from_utf8(&self.line) else {
            return Err(self.fail("not UTF-8 text: not a baseline file, or a damaged one"));
        };
        if !line.ends_with('\n') {
            return Err(self.fail("the line has no end: the file is truncated"));
        }
        Ok(Some(line.trim_end_matches('\n')))
    }

    /// Adds the line last read to the checksum.
    fn sum(&mut self) {
        self.crc.update(&self.line);
    }

    /// The next line, which must exist and be `name value`.
    fn field(&mut self, name: &str) -> Result<String> {
        let line = match self.next()? {
            Some(line) => line.to_string(),
            None => return Err(self.truncated()),
        };
        self.sum();
        match line.split_once(' ') {
            Some((key, value)) if key == name => Ok(value.to_string()),
            _ => Err(self.fail(format!("expected `{name} ...`, found `{}`", shorten(&line)))),
        }
    }

    fn truncated(&self) -> Error {
        self.fail("unexpected end of file: the file is truncated (no `end` line)")
    }

    fn header(&mut self) -> Result<()> {
        let Some(first) = self.next()?.map(str::to_string) else {
            return Err(self.fail("empty file: not a keyflow baseline"));
        };
        self.sum();
        let first = first.as_str();
        let Some(version) = first
            .strip_prefix(BASELINE_MAGIC)
            .and_then(|v| v.strip_prefix(' '))
        else {
            return Err(self.fail(format!(
                "bad header `{}`: not a keyflow baseline file (it must start with `{BASELINE_MAGIC} {BASELINE_VERSION}`)",
                shorten(first)
            )));
        };
        match version.parse::<u32>() {
            Ok(BASELINE_VERSION) => Ok(()),
            Ok(v) => Err(self.fail(format!(
                "baseline format version {v} is not supported: this keyflow reads version {BASELINE_VERSION}; rebuild the baseline with `keyflow baseline`"
            ))),
            Err(_) => Err(self.fail(format!("bad format version `{}`", shorten(version)))),
        }
    }

    fn day(&mut self, name: &str) -> Result<Option<EventTime>> {
        let value = self.field(name)?;
        if value == "-" {
            return Ok(None);
        }
        parse_day(&value).map(Some).ok_or_else(|| {
            self.fail(format!(
                "bad date `{}` (want YYYY-MM-DD or -)",
                shorten(&value)
            ))
        })
    }

    fn count(&mut self, name: &str) -> Result<u64> {
        let value = self.field(name)?;
        value
            .parse()
            .map_err(|_| self.fail(format!("bad {name} `{}`", shorten(&value))))
    }

    fn row(&self, line: &str) -> Result<(Article, [f64; HOURS])> {
        let mut fields = line.split(' ');
        let (Some(project), Some(title)) = (fields.next(), fields.next()) else {
            return Err(self.fail("expected `project title` and 24 averages"));
        };
        if !is_field(project) || !is_field(title) {
            return Err(self.fail("empty project or title"));
        }
        let mut hours = [0.0; HOURS];
        let mut n = 0;
        for field in fields {
            if n == HOURS {
                return Err(self.fail("more than 24 averages"));
            }
            let a: f64 = field
                .parse()
                .map_err(|_| self.fail(format!("hour {n}: bad number `{}`", shorten(field))))?;
            if !a.is_finite() || a < 0.0 {
                return Err(self.fail(format!(
                    "hour {n}: {a} is not a finite non-negative average"
                )));
            }
            hours[n] = a;
            n += 1;
        }
        if n != HOURS {
            return Err(self.fail(format!("{n} averages, expected 24")));
        }
        Ok((Article::named(project, title), hours))
    }

    /// Parses the whole file.
    pub(super) fn read(mut self) -> Result<Baseline> {
        self.header()?;
        let days = self.count("days")?;
        let first_day = self.day("first-day")?;
        let last_day = self.day("last-day")?;
        if (days == 0) != first_day.is_none() || first_day.is_none() != last_day.is_none() {
            return Err(self.fail(format!(
                "days {days} does not agree with the first and last days"
            )));
        }
        if first_day > last_day {
            return Err(self.fail("the first day is after the last day"));
        }
        if days > MAX_DAYS {
            return Err(self.fail(format!("days {days} is more than {MAX_DAYS}")));
        }
        let keys = self.count("keys")?;
        let mut baseline = Baseline {
            days,
            first_day,
            last_day,
            keys: BTreeMap::new(),
        };
        let mut previous: Option<Article> = None;
        loop {
            let line = match self.next()? {
                Some(line) => line.to_string(),
                None => return Err(self.truncated()),
            };
            // An article line has 26 fields, the `end` line 3 (so a project
            // named `end` is no trouble).
            if let Some(rest) = line
                .strip_prefix("end ")
                .filter(|r| r.split(' ').count() == 2)
            {
                self.trailer(rest, keys, baseline.keys.len() as u64)?;
                break;
            }
            self.sum();
            let (article, hours) = self.row(&line)?;
            if previous.as_ref().is_some_and(|p| *p >= article) {
                return Err(self.fail(format!("article `{article}` is out of order or repeated")));
            }
            previous = Some(article.clone());
            baseline.keys.insert(article, hours);
        }
        if self.next()?.is_some() {
            return Err(self.fail("text after the `end` line"));
        }
        Ok(baseline)
    }

    fn trailer(&self, rest: &str, header_keys: u64, rows: u64) -> Result<()> {
        let (count, crc) = rest
            .split_once(' ')
            .ok_or_else(|| self.fail("bad `end` line (want `end <rows> <crc32>`)"))?;
        let count: u64 = count.parse().map_err(|_| {
            self.fail(format!(
                "bad row count `{}` in the `end` line",
                shorten(count)
            ))
        })?;
        if count != rows || header_keys != rows {
            return Err(self.fail(format!(
                "the file holds {rows} article lines, but its header says {header_keys} and its end line {count}: it is damaged"
            )));
        }
        let expected = format!("{:08x}", self.crc.sum());
        if crc != expected {
            return Err(self.fail(format!(
                "checksum mismatch (file says {}, contents give {expected}): the file is damaged",
                shorten(crc)
            )));
        }
        Ok(())
    }
}

/// At most 40 characters of `s`, for an error message, with control
/// characters (and quotes, backslashes) escaped as in a Rust string.
fn shorten(s: &str) -> String {
    let (head, more) = match s.char_indices().nth(40) {
        Some((cut, _)) => (&s[..cut], "..."),
        None => (s, ""),
    };
    format!("{}{more}", head.escape_debug())
}
