//! Pageviews as JSON lines, one partition per file or per split of a large
//! plain file.

use std::borrow::Cow;
use std::path::PathBuf;

use keyflow_dataflow::source::{
    check_exists, line_text, plan_splits, split_of, FileSplit, Partition, Source,
};
use keyflow_dataflow::time::EventTime;
use serde::Deserialize;

use super::article::{Article, PageView};
use super::jsonl_partition::partition;
use super::jsonl_plain::parse_plain;

/// One line's fields, borrowed from the line unless they hold escapes.
#[derive(Deserialize)]
pub(super) struct JsonView<'a> {
    #[serde(borrow)]
    pub(super) project: Cow<'a, str>,
    #[serde(borrow)]
    pub(super) title: Cow<'a, str>,
    #[serde(default)]
    pub(super) ts: Option<EventTime>,
    #[serde(default = "one")]
    pub(super) views: u64,
    /// Whether both names are known to pass [`check_name`] (the plain-line
    /// scanner learns it while it looks for the closing quotes).
    #[serde(skip)]
    pub(super) names_checked: bool,
}

fn one() -> u64 {
    1
}

/// Parses one JSON line such as
/// `{"project":"en","title":"Main_Page","ts":1470009600000,"views":1}` into
/// its event time and pageview. `views` defaults to 1 and must be a positive
/// integer; `ts` is event time in milliseconds. Other fields are ignored.
/// The error says what is wrong.
///
/// # Examples
/// ```
/// use keyflow_jobs::pageviews::{parse_json_line, Article};
/// let (ts, view) = parse_json_line(r#"{"project":"en","title":"Main_Page","ts":5}"#).unwrap();
/// assert_eq!((ts, view.views), (5, 1));
/// assert_eq!(view.article, Article::named("en", "Main_Page"));
/// assert!(parse_json_line(r#"{"project":"en","title":"X","ts":5,"views":0}"#).is_err());
/// ```
pub fn parse_json_line(line: &str) -> Result<(EventTime, PageView), String> {
    let (ts, raw) = parse_timed(line)?;
    let article = Article::named(raw.project, raw.title);
    Ok((ts, PageView::new(article, raw.views)))
}

/// A Kafka message's payload, one JSON object as in a JSON-lines file.
/// `record_ts` (the record's timestamp) stands in for a missing `ts`; with
/// `--kafka-time record` the source uses it in any case.
///
/// ```
/// use keyflow_jobs::pageviews::parse_json_message;
/// let (ts, view) = parse_json_message(br#"{"project":"en","title":"A","ts":5}"#, Some(9)).unwrap();
/// assert_eq!((ts, view.views), (5, 1));
/// assert_eq!(parse_json_message(br#"{"project":"en","title":"A"}"#, Some(9)).unwrap().0, 9);
/// assert!(parse_json_message(br#"{"project":"en","title":"A"}"#, None).is_err());
/// assert!(parse_json_message(b"\xff", None).is_err());
/// ```
pub fn parse_json_message(
    payload: &[u8],
    record_ts: Option<EventTime>,
) -> Result<(EventTime, PageView), String> {
    let line = std::str::from_utf8(payload).map_err(|e| format!("not UTF-8: {e}"))?;
    let raw = parse_fields(line.trim_end())?;
    let ts = raw.ts.or(record_ts).ok_or("missing field `ts`")?;
    let article = Article::named(raw.project, raw.title);
    Ok((ts, PageView::new(article, raw.views)))
}

/// [`parse_fields`], with the event time the line must hold.
pub(super) fn parse_timed(line: &str) -> Result<(EventTime, JsonView<'_>), String> {
    let raw = parse_fields(line)?;
    let ts = raw.ts.ok_or("missing field `ts`")?;
    Ok((ts, raw))
}

/// A file line's fields, its names as bytes that are known to be UTF-8.
pub(super) struct LineFields<'a> {
    pub(super) ts: EventTime,
    pub(super) views: u64,
    pub(super) project: Cow<'a, [u8]>,
    pub(super) title: Cow<'a, [u8]>,
}

/// [`parse_timed`] of a file's line read as bytes; `None` for a blank
/// line. A plain line is read straight from its bytes, its names checked
/// only where its scan could not tell; any other line is checked to be
/// UTF-8 first, as [`InputFile::next_line`] would have.
///
/// [`InputFile::next_line`]: keyflow_dataflow::source::InputFile::next_line
pub(super) fn parse_line(line: &[u8]) -> Result<Option<LineFields<'_>>, String> {
    if let Some(plain) = parse_plain(line) {
        let (project, title) = (&line[plain.project], &line[plain.title]);
        if !plain.names_checked {
            check_name("project", &String::from_utf8_lossy(project))?;
            check_name("title", &String::from_utf8_lossy(title))?;
        }
        check_project(project)?;
        check_views(plain.views)?;
        return Ok(Some(LineFields {
            ts: plain.ts,
            views: plain.views,
            project: Cow::Borrowed(project),
            title: Cow::Borrowed(title),
        }));
    }
    let line = line_text(line)?;
    if line.trim().is_empty() {
        return Ok(None);
    }
    let (ts, raw) = parse_timed(line)?;
    Ok(Some(LineFields {
        ts,
        views: raw.views,
        project: bytes(raw.project),
        title: bytes(raw.title),
    }))
}

impl LineFields<'_> {
    /// The same fields, the names copied where they were borrowed.
    pub(super) fn into_owned(self) -> LineFields<'static> {
        LineFields {
            ts: self.ts,
            views: self.views,
            project: Cow::Owned(self.project.into_owned()),
            title: Cow::Owned(self.title.into_owned()),
        }
    }
}

/// A name's bytes, borrowed where the name is.
fn bytes(name: Cow<'_, str>) -> Cow<'_, [u8]> {
    match name {
        Cow::Borrowed(name) => Cow::Borrowed(name.as_bytes()),
        Cow::Owned(name) => Cow::Owned(name.into_bytes()),
    }
}

/// Parses and checks one line's fields.
fn parse_fields(line: &str) -> Result<JsonView<'_>, String> {
    let raw = match parse_plain(line.as_bytes()) {
        Some(plain) => JsonView {
            project: Cow::Borrowed(&line[plain.project]),
            title: Cow::Borrowed(&line[plain.title]),
            ts: Some(plain.ts),
            views: plain.views,
            names_checked: plain.names_checked,
        },
        None => serde_json::from_str(line).map_err(|e| e.to_string())?,
    };
    check_fields(raw)
}

/// Checks what the parser does not: names, and views in range.
fn check_fields(raw: JsonView<'_>) -> Result<JsonView<'_>, String> {
    if !raw.names_checked {
        check_name("project", &raw.project)?;
        check_name("title", &raw.title)?;
    }
    check_project(raw.project.as_bytes())?;
    check_views(raw.views)?;
    Ok(raw)
}

/// An event stands for at least one view, and at most [`MAX_VIEWS`].
///
/// [`MAX_VIEWS`]: super::MAX_VIEWS
fn check_views(views: u64) -> Result<(), String> {
    if views == 0 {
        return Err("views is 0; an event stands for at least one view".into());
    }
    if views > super::MAX_VIEWS {
        return Err(format!(
            "views {views} exceeds the maximum of {} per event",
            super::MAX_VIEWS
        ));
    }
    Ok(())
}

/// A project that passed [`check_name`] must also be a domain code (`en`,
/// `en.m`, `zh-min-nan`), as in dump files: the trending job's hourly files
/// are dump files, and a project they could not read back would turn into
/// bad lines there.
#[inline]
pub(crate) fn check_project(project: &[u8]) -> Result<(), String> {
    if super::dump::is_domain_code(project) {
        return Ok(());
    }
    Err(not_a_domain_code(project))
}

/// Why `project` is refused: apart, so that the check of every line is
/// a few instructions in its caller.
#[cold]
fn not_a_domain_code(project: &[u8]) -> String {
    format!(
        "project `{}` is not a domain code (ASCII letters, digits, `.`, `-` and `_`, from a letter or digit)",
        keyflow_dataflow::source::shorten(&String::from_utf8_lossy(project), super::dump::QUOTED)
    )
}

/// Project codes and titles become fields of space-separated dump lines
/// downstream, so they must be non-empty and free of whitespace.
pub(crate) fn check_name(what: &str, value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err(format!("{what} is empty"));
    }
    // ASCII names, nearly all of them, are checked byte by byte; others
    // char by char, for Unicode's spaces.
    let bad = if value.is_ascii() {
        value.bytes().any(|b| b <= b' ' || b == 0x7f)
    } else {
        value.chars().any(|c| c.is_whitespace() || c.is_control())
    };
    if bad {
        return Err(format!(
            "{what} `{}` contains whitespace or control characters (titles use _ for spaces)",
            keyflow_dataflow::source::shorten(value, super::dump::QUOTED)
        ));
    }
    Ok(())
}

/// Pageview JSON-lines files (gzip or plain, told apart by their first
/// bytes), one partition per file or, for a large plain file, per byte-range
/// split of it (see [`plan_splits`]), each opened when first read (see
/// [`InputFile`](keyflow_dataflow::source::InputFile)). Malformed lines become bad records named `file:line`, or
/// `file@byte N` in a split that does not start its file; blank lines are
/// skipped. Where the process has a core to spare
/// ([`spare_core`](keyflow_dataflow::run::spare_core)), a partition reads
/// ahead of its worker on a thread of its own; its polls return the same
/// records either way.
///
/// # Examples
/// ```
/// use keyflow_dataflow::source::{Batch, Source};
/// use keyflow_jobs::pageviews::JsonlSource;
///
/// let path = std::env::temp_dir().join(format!("keyflow-doc-{}.jsonl", std::process::id()));
/// std::fs::write(&path, "{\"project\":\"en\",\"title\":\"A\",\"ts\":7,\"views\":2}\nnot json\n")?;
/// let src = JsonlSource::new(vec![path.clone()]);
/// let mut batch = Batch::new(100);
/// src.open(0)?.poll(&mut batch)?;
/// std::fs::remove_file(&path)?;
/// assert_eq!(batch.records.len(), 1);
/// assert_eq!(batch.records[0].0, 7);
/// assert!(batch.bad[0].location.ends_with(":2"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct JsonlSource {
    files: Vec<PathBuf>,
    splits: Vec<FileSplit>,
}

impl JsonlSource {
    /// A source over `files`, read as given (see
    /// [`PageviewSource::from_files`](super::PageviewSource::from_files) for
    /// up-front checks).
    pub fn new(files: Vec<PathBuf>) -> Self {
        let splits = plan_splits(&files);
        JsonlSource { files, splits }
    }

    /// The files, one or more partitions each.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }
}

impl Source for JsonlSource {
    type Item = PageView;

    fn name(&self) -> String {
        "pageviews-jsonl".into()
    }

    fn partitions(&self) -> usize {
        self.splits.len()
    }

    fn open(&self, index: usize) -> keyflow_dataflow::Result<Box<dyn Partition<PageView>>> {
        let split = &self.splits[index];
        check_exists(&split.path)?;
        Ok(Box::new(partition(split)))
    }

    fn split_of(&self, index: usize) -> Option<(usize, usize)> {
        split_of(&self.splits, index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pageviews::read_all;

    #[test]
    fn parses_and_defaults_views() {
        let (ts, v) =
            parse_json_line(r#"{"project":"en","title":"Main_Page","ts":1470009600000}"#).unwrap();
        assert_eq!(ts, 1_470_009_600_000);
        assert_eq!(v, PageView::new(Article::named("en", "Main_Page"), 1));
        let (_, v) =
            parse_json_line(r#"{"title":"B","project":"de","ts":0,"views":12,"x":[1]}"#).unwrap();
        assert_eq!(v.views, 12);
    }

    #[test]
    fn rejects_bad_lines_with_reasons() {
        let cases = [
            ("{", "EOF"),
            (r#"{"project":"en","ts":1}"#, "missing field `title`"),
            (r#"{"project":"en","title":"A"}"#, "missing field `ts`"),
            (
                r#"{"project":"en","title":"A","ts":1,"views":0}"#,
                "views is 0",
            ),
            (r#"{"project":"en","title":"A","ts":1,"views":-3}"#, "-3"),
            (r#"{"project":"en","title":"A","ts":1,"views":1.5}"#, "1.5"),
            (r#"{"project":"en","title":"A","ts":-1}"#, "-1"),
            (r#"{"project":"en","title":"","ts":1}"#, "title is empty"),
            (r#"{"project":"","title":"A","ts":1}"#, "project is empty"),
            (
                r#"{"project":"en","title":"Main Page","ts":1}"#,
                "whitespace",
            ),
            (
                r#"{"project":"en/wiki","title":"A","ts":1}"#,
                "not a domain code",
            ),
            (
                r#"{"project":"-en","title":"A","ts":1}"#,
                "not a domain code",
            ),
            (
                r#"{"project":"\u00e9n","title":"A","ts":1}"#,
                "not a domain code",
            ),
            (r#"[1,2]"#, "invalid type"),
            (r#"{"project":"en","title":"A","ts":"5"}"#, "invalid type"),
        ];
        for (line, reason) in cases {
            let err = parse_json_line(line).unwrap_err();
            assert!(err.contains(reason), "{line}: {err}");
        }
    }

    #[test]
    fn reads_a_file_counting_bad_lines() {
        let path = std::env::temp_dir().join(format!("keyflow-pv-{}.jsonl", std::process::id()));
        let mut text = String::new();
        text.push_str("{\"project\":\"en\",\"title\":\"A\",\"ts\":1000}\n\n");
        text.push_str("{\"project\":\"en\",\"title\":\"B\",\"ts\":2000,\"views\":4}\r\n");
        text.push_str("garbage\n");
        let mut bytes = text.into_bytes();
        bytes.extend_from_slice(b"{\"project\":\"en\",\"title\":\"\xff\",\"ts\":1}\n");
        std::fs::write(&path, bytes).unwrap();
        let (records, bad) = read_all(&JsonlSource::new(vec![path.clone()])).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(
            records[1],
            (2000, PageView::new(Article::named("en", "B"), 4))
        );
        let locations: Vec<_> = bad.iter().map(|b| b.location.rsplit(':').next()).collect();
        assert_eq!(locations, vec![Some("4"), Some("5")]);
        assert!(bad[1].reason.contains("UTF-8"), "{:?}", bad[1]);
    }

    #[test]
    fn missing_file_names_it() {
        let err = JsonlSource::new(vec!["/nonexistent/x.jsonl".into()])
            .open(0)
            .err()
            .unwrap();
        assert!(err.to_string().contains("/nonexistent/x.jsonl"), "{err}");
    }
}
