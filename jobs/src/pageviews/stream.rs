//! Pageview events from Redis streams: entries with the fields `project`,
//! `title`, `ts` (epoch milliseconds) and `views`.

use keyflow_dataflow::source::{RedisStreamConfig, RedisStreamSource};
use keyflow_dataflow::time::EventTime;

use super::article::{Article, PageView};
use super::jsonl::{check_name, check_project};
use crate::error::Result;

/// One stream entry's fields as a pageview, checked as a JSON line is.
///
/// ```
/// use keyflow_jobs::pageviews::parse_stream_entry;
/// let f = |k: &str, v: &str| (k.to_string(), v.to_string());
/// let entry = [f("project", "en"), f("title", "Rust"), f("ts", "1470009600000"), f("views", "2")];
/// let (ts, view) = parse_stream_entry(&entry).unwrap();
/// assert_eq!((ts, view.views), (1_470_009_600_000, 2));
/// assert!(parse_stream_entry(&entry[..3]).unwrap_err().contains("views"));
/// ```
pub fn parse_stream_entry(
    fields: &[(String, String)],
) -> std::result::Result<(EventTime, PageView), String> {
    let get = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .ok_or_else(|| format!("the entry has no `{name}` field"))
    };
    let (project, title) = (get("project")?, get("title")?);
    check_name("project", project)?;
    check_project(project.as_bytes())?;
    check_name("title", title)?;
    let ts: EventTime = get("ts")?
        .parse()
        .map_err(|_| format!("ts `{}` is not epoch milliseconds", get("ts").unwrap_or("")))?;
    let views: u64 = get("views")?
        .parse()
        .map_err(|_| format!("views `{}` is not a count", get("views").unwrap_or("")))?;
    if views == 0 || views > super::MAX_VIEWS {
        return Err(format!(
            "views {views} is not between 1 and {}",
            super::MAX_VIEWS
        ));
    }
    Ok((ts, PageView::new(Article::named(project, title), views)))
}

/// Pageviews from the streams in `config`.
pub fn stream_source(config: RedisStreamConfig) -> Result<RedisStreamSource<PageView>> {
    Ok(RedisStreamSource::new(config, parse_stream_entry)?)
}
