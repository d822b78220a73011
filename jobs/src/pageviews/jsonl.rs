//! Pageviews as JSON lines, one partition per file or per split of a large
//! plain file.

use std::borrow::Cow;
use std::cell::RefCell;
use std::path::PathBuf;

use keyflow_dataflow::source::{
    check_exists, plan_splits, split_of, Batch, FileSplit, InputFile, NextLine, Partition,
    PollStatus, Source, SKIP_CHUNK,
};
use keyflow_dataflow::time::EventTime;
use serde::Deserialize;

use super::article::{Article, PageView};
use super::interner::{Interner, GROUP};
use super::jsonl_plain::parse_plain;

/// Articles a worker keeps shared: enough for the busy part of a day's
/// traffic, at about 60 bytes each.
const INTERNED: usize = 1 << 20;

thread_local! {
    /// One interner per worker thread, shared by every partition it reads:
    /// the splits of a file name the same articles, and a keyed operator
    /// compares two handles to one allocation without reading the names.
    static INTERNER: RefCell<Interner> = RefCell::new(Interner::new(INTERNED));
}

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
fn parse_timed(line: &str) -> Result<(EventTime, JsonView<'_>), String> {
    let raw = parse_fields(line)?;
    let ts = raw.ts.ok_or("missing field `ts`")?;
    Ok((ts, raw))
}

/// Parses and checks one line's fields.
fn parse_fields(line: &str) -> Result<JsonView<'_>, String> {
    let raw = match parse_plain(line) {
        Some(raw) => raw,
        None => serde_json::from_str(line).map_err(|e| e.to_string())?,
    };
    if !raw.names_checked {
        check_name("project", &raw.project)?;
        check_name("title", &raw.title)?;
    }
    if raw.views == 0 {
        return Err("views is 0; an event stands for at least one view".into());
    }
    if raw.views > super::MAX_VIEWS {
        return Err(format!(
            "views {} exceeds the maximum of {} per event",
            raw.views,
            super::MAX_VIEWS
        ));
    }
    Ok(raw)
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
/// [`InputFile`]). Malformed lines become bad records named `file:line`, or
/// `file@byte N` in a split that does not start its file; blank lines are
/// skipped.
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

struct JsonlPartition {
    reader: InputFile,
    held: Held,
}

/// Lines read whose articles are not yet looked up: the interner looks up
/// a group at a time.
#[derive(Default)]
struct Held {
    /// Their names, one after another.
    names: String,
    pending: Vec<Pending>,
    articles: Vec<Article>,
}

/// A line read whose article is not yet looked up.
struct Pending {
    ts: EventTime,
    views: u64,
    /// Where its project and its title end in `names`.
    project_end: usize,
    title_end: usize,
}

impl Held {
    /// Keeps a parsed line until its group is looked up; true when the
    /// group is full.
    fn hold(&mut self, ts: EventTime, raw: &JsonView<'_>) -> bool {
        self.names.push_str(&raw.project);
        let project_end = self.names.len();
        self.names.push_str(&raw.title);
        self.pending.push(Pending {
            ts,
            views: raw.views,
            project_end,
            title_end: self.names.len(),
        });
        self.pending.len() == GROUP
    }

    /// Looks up the held lines' articles and adds them to `batch`, in the
    /// order they were read.
    fn flush(&mut self, interner: &mut Interner, batch: &mut Batch<PageView>) {
        if self.pending.is_empty() {
            return;
        }
        let mut names = [("", ""); GROUP];
        let mut start = 0;
        for (name, held) in names.iter_mut().zip(&self.pending) {
            *name = (
                &self.names[start..held.project_end],
                &self.names[held.project_end..held.title_end],
            );
            start = held.title_end;
        }
        // Empty: the last flush drained it.
        interner.get_group(&names[..self.pending.len()], &mut self.articles);
        for (held, article) in self.pending.drain(..).zip(self.articles.drain(..)) {
            batch.push(held.ts, PageView::new(article, held.views));
        }
        self.names.clear();
    }
}

impl Partition<PageView> for JsonlPartition {
    fn poll(&mut self, batch: &mut Batch<PageView>) -> keyflow_dataflow::Result<PollStatus> {
        INTERNER.with_borrow_mut(|interner| {
            let mut room = batch.room();
            let status = loop {
                if room == 0 {
                    break PollStatus::Ready;
                }
                let next = match self.reader.next_line() {
                    Ok(next) => next,
                    Err(e) => {
                        self.held.flush(interner, batch);
                        return Err(e);
                    }
                };
                let parsed = match next {
                    NextLine::End => break PollStatus::Done,
                    // Not open yet: other files hold every place.
                    NextLine::Wait => break PollStatus::Ready,
                    NextLine::Line(Err(reason)) => Err(reason),
                    NextLine::Line(Ok(line)) if line.trim().is_empty() => continue,
                    NextLine::Line(Ok(line)) => parse_timed(line),
                };
                room -= 1;
                match parsed {
                    Ok((ts, raw)) => {
                        if self.held.hold(ts, &raw) {
                            self.held.flush(interner, batch);
                        }
                    }
                    Err(reason) => batch.bad(self.reader.location(), reason),
                }
            };
            self.held.flush(interner, batch);
            Ok(status)
        })
    }

    fn offset(&self) -> u64 {
        self.reader.line()
    }

    fn skip(&mut self, n: u64) -> keyflow_dataflow::Result<(u64, PollStatus)> {
        // Blank lines are no items, every other line one: no need to parse.
        self.reader.skip_items(n.min(SKIP_CHUNK))
    }

    fn pause(&mut self) {
        self.reader.pause();
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
        Ok(Box::new(JsonlPartition {
            reader: InputFile::split(split),
            held: Held::default(),
        }))
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
