//! The dashboard's HTML, rendered on the server: the whole page for `/`,
//! and the same parts for the page's script to swap in as they change.

use std::collections::BTreeMap;
use std::fmt::Write;

use keyflow::dataflow::time::{format_utc, wall_clock_ms};
use keyflow::jobs::anomaly::AnomalyHour;
use keyflow::jobs::trending::{TrendingEntry, TrendingMinute};
use serde::Serialize;

use super::state::{Health, Shared, Trending};

/// The page, with `{{name}}` holes filled in one pass.
const PAGE: &str = include_str!("page.html");

/// The most rows of one trending minute or hour shown on the page
/// (`/api/trending` and `/api/anomaly` have them all).
pub const MAX_ROWS: usize = 5_000;

/// The rows that get a sparkline; the rest show their counts only, which
/// keeps a page of thousands of rows light.
const SPARKLINES: usize = 1_000;

/// How many scored hours the page lists, newest first.
const HOURS_SHOWN: usize = 6;

/// Escapes text for HTML content and quoted attributes.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// `n` with thin spaces between thousands: `1 234 567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push('\u{2009}');
        }
        out.push(c);
    }
    out
}

/// The site of a Wikimedia project code, as the pageview dumps spell it
/// (`en`, `en.m` for mobile, `de.b` for Wikibooks, `commons.m`, ..).
fn site(project: &str) -> String {
    let mut parts = project.split('.');
    let lang = parts.next().unwrap_or("en");
    let mut mobile = false;
    let mut family = "wikipedia.org";
    for part in parts {
        match part {
            "m" | "zero" => mobile = true,
            "b" => family = "wikibooks.org",
            "d" => family = "wiktionary.org",
            "n" => family = "wikinews.org",
            "q" => family = "wikiquote.org",
            "s" => family = "wikisource.org",
            "v" => family = "wikiversity.org",
            "voy" => family = "wikivoyage.org",
            "w" => return "www.mediawiki.org".into(),
            "wd" => return "www.wikidata.org".into(),
            "f" => return "wikimediafoundation.org".into(),
            _ => {}
        }
    }
    if matches!(lang, "commons" | "meta" | "species" | "incubator") {
        family = "wikimedia.org";
    }
    let lang = if lang.is_empty() { "en" } else { lang };
    match mobile {
        true => format!("{lang}.m.{family}"),
        false => format!("{lang}.{family}"),
    }
}

/// The article's address on its wiki: `("en", "A&B")` gives
/// `https://en.wikipedia.org/wiki/A%26B`.
pub fn article_url(project: &str, title: &str) -> String {
    let mut path = String::new();
    let title = title.replace(' ', "_");
    let bytes = title.as_bytes();
    for (i, &byte) in bytes.iter().enumerate() {
        // Dump titles are often percent-encoded already: keep `%XX`.
        let encoded = byte == b'%'
            && bytes.len() > i + 2
            && bytes[i + 1].is_ascii_hexdigit()
            && bytes[i + 2].is_ascii_hexdigit();
        if encoded {
            path.push('%');
            continue;
        }
        match byte {
            b'A'..=b'Z'
            | b'a'..=b'z'
            | b'0'..=b'9'
            | b'_'
            | b'-'
            | b'.'
            | b'~'
            | b'('
            | b')'
            | b','
            | b':'
            | b'!'
            | b'*'
            | b'/' => path.push(byte as char),
            _ => {
                let _ = write!(path, "%{byte:02X}");
            }
        }
    }
    format!("https://{}/wiki/{path}", site(project))
}

/// A sparkline of a few counts, as inline SVG.
fn sparkline(counts: &[u64]) -> String {
    let (w, h, pad) = (90.0, 22.0, 2.5);
    // From the least count to the most, so that a rise shows as one.
    let max = counts.iter().copied().max().unwrap_or(0) as f64;
    let min = counts.iter().copied().min().unwrap_or(0) as f64;
    let range = (max - min).max(1.0);
    let step = if counts.len() > 1 {
        (w - 2.0 * pad) / (counts.len() - 1) as f64
    } else {
        0.0
    };
    let points: Vec<(f64, f64)> = counts
        .iter()
        .enumerate()
        .map(|(i, &c)| {
            (
                pad + i as f64 * step,
                h - pad - ((c as f64 - min) / range) * (h - 2.0 * pad),
            )
        })
        .collect();
    let line: Vec<String> = points
        .iter()
        .map(|(x, y)| format!("{x:.1},{y:.1}"))
        .collect();
    let (lx, ly) = points.last().copied().unwrap_or((pad, h - pad));
    format!(
        r#"<svg class="spark" viewBox="0 0 {w} {h}" width="{w}" height="{h}" aria-hidden="true"><polyline points="{}"/><circle cx="{lx:.1}" cy="{ly:.1}" r="2.2"/></svg>"#,
        line.join(" ")
    )
}

fn trending_row(e: &TrendingEntry, spark: bool) -> String {
    let counts: Vec<String> = e.counts.iter().map(u64::to_string).collect();
    format!(
        r#"<tr><td class="rank">{rank}</td><td class="project">{project}</td><td class="title"><a href="{url}" rel="noopener noreferrer">{title}</a></td><td class="trend">{spark}<span class="counts">{counts}</span></td></tr>"#,
        rank = e.rank,
        project = escape(&e.project),
        url = escape(&article_url(&e.project, &e.title)),
        title = escape(&e.title),
        spark = if spark {
            sparkline(&e.counts)
        } else {
            String::new()
        },
        counts = counts.join(" "),
    )
}

fn minute_label(t: u64) -> String {
    format!("{} UTC", format_utc(t))
}

/// The trending panel: the latest minute with trending articles, labelled
/// with its time and the latest evaluated minute's.
pub fn trending(t: &Trending) -> String {
    let mut out = String::new();
    let latest = t.latest.as_ref().map(|m| m.t);
    let Some(shown) = &t.shown else {
        let _ = write!(
            out,
            r#"<p class="when">No minute has had trending articles yet{}.</p>"#,
            latest.map_or(String::new(), |l| format!(
                " (latest evaluated minute: <time>{}</time>)",
                minute_label(l)
            ))
        );
        return out;
    };
    let _ = write!(
        out,
        r#"<p class="when">Minute <time class="shown" data-t="{t}">{label}</time> · <b>{n}</b> trending{update}"#,
        t = shown.t,
        label = minute_label(shown.t),
        n = thousands(shown.trending),
        update = if shown.update { " (updated)" } else { "" },
    );
    if let Some(l) = latest {
        let _ = write!(
            out,
            r#" · latest evaluated minute <time class="latest" data-t="{l}">{}</time>"#,
            minute_label(l)
        );
        if l > shown.t {
            out.push_str(" (nothing trending since)");
        }
    }
    out.push_str("</p>");
    out.push_str(&trending_table(shown));
    out
}

fn trending_table(minute: &TrendingMinute) -> String {
    let mut out = String::from(
        r#"<table class="rows"><thead><tr><th>#</th><th>project</th><th>title</th><th>views in the six windows</th></tr></thead><tbody>"#,
    );
    for (i, e) in minute.top.iter().take(MAX_ROWS).enumerate() {
        out.push_str(&trending_row(e, i < SPARKLINES));
    }
    out.push_str("</tbody></table>");
    if minute.top.len() > MAX_ROWS {
        let _ = write!(
            out,
            r#"<p class="more">and {} more in <a href="/api/trending">/api/trending</a></p>"#,
            thousands((minute.top.len() - MAX_ROWS) as u64)
        );
    }
    out
}

fn hour_table(hour: &AnomalyHour) -> String {
    let mut out = String::from(
        r#"<table class="rows"><thead><tr><th>#</th><th>project</th><th>title</th><th>score</th></tr></thead><tbody>"#,
    );
    for e in hour.top.iter().take(MAX_ROWS) {
        let _ = write!(
            out,
            r#"<tr><td class="rank">{}</td><td class="project">{}</td><td class="title"><a href="{}" rel="noopener noreferrer">{}</a></td><td class="score">{:.4}</td></tr>"#,
            e.rank,
            escape(&e.project),
            escape(&article_url(&e.project, &e.title)),
            escape(&e.title),
            e.score
        );
    }
    out.push_str("</tbody></table>");
    out
}

/// The anomaly panel: the latest scored hours, newest first, the newest
/// open.
pub fn anomaly(hours: &[AnomalyHour]) -> String {
    if hours.is_empty() {
        return r#"<p class="when">No hour has been scored yet.</p>"#.into();
    }
    let mut out = String::new();
    for (i, hour) in hours.iter().rev().take(HOURS_SHOWN).enumerate() {
        let _ = write!(
            out,
            r#"<details{open}><summary><time>{day} {h:02}:00–{h2:02}:00 UTC</time> · {n} listed</summary>{table}</details>"#,
            open = if i == 0 { " open" } else { "" },
            day = escape(&hour.day),
            h = hour.hour,
            h2 = hour.hour + 1,
            n = hour.top.len(),
            table = hour_table(hour),
        );
    }
    out
}

/// A duration in seconds, in its largest units: `3d 4h`, `12m 5s`, `0.4s`.
fn duration(secs: f64) -> String {
    let sign = if secs < 0.0 { "-" } else { "" };
    let s = secs.abs();
    if s < 60.0 {
        return format!("{sign}{s:.1}s");
    }
    let s = s as u64;
    let (d, h, m, sec) = (s / 86_400, s / 3_600 % 24, s / 60 % 60, s % 60);
    if d > 0 {
        format!("{sign}{d}d {h}h")
    } else if h > 0 {
        format!("{sign}{h}h {m}m")
    } else {
        format!("{sign}{m}m {sec}s")
    }
}

/// The health cards.
pub fn health(h: &Health) -> String {
    let card = |label: &str, value: String, class: &str| {
        format!(
            r#"<div class="card {class}"><div class="label">{label}</div><div class="value">{value}</div></div>"#
        )
    };
    let mut out = String::new();
    out.push_str(&card("events", thousands(h.events), "events"));
    out.push_str(&card(
        "events/s",
        thousands(h.events_per_s.round() as u64),
        "rate",
    ));
    let event_time = if h.watermark > 0 {
        minute_label(h.watermark)
    } else {
        "–".into()
    };
    out.push_str(&card("event time (watermark)", event_time, "watermark"));
    out.push_str(&card(
        "watermark lag",
        h.watermark_lag_s.map_or("–".into(), duration),
        "lag",
    ));
    let warn = |n: u64| if n > 0 { "warn" } else { "" };
    out.push_str(&card(
        "late",
        thousands(h.late),
        &format!("late {}", warn(h.late)),
    ));
    out.push_str(&card(
        "bad",
        thousands(h.bad),
        &format!("bad {}", warn(h.bad)),
    ));
    out
}

/// The status line: running, or showing the final state.
pub fn status(h: &Health) -> String {
    let now = format_utc(wall_clock_ms());
    if h.finished {
        format!(
            r#"<span class="badge done">input ended</span> showing the final state · page updated <time>{now} UTC</time>"#
        )
    } else {
        format!(
            r#"<span class="badge live">running</span> for {} · page updated <time>{now} UTC</time>"#,
            duration(h.uptime_s)
        )
    }
}

/// The parts of the page that change, by the id of the element that holds
/// each; what `/api/view` sends the page's script.
#[derive(Debug, Serialize)]
pub struct View {
    status: String,
    health: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    trending: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    anomaly: Option<String>,
    graph: String,
    /// Names what the lists show, so that the script can say what it has
    /// and get the lists again only when they change (they can be long).
    lists: String,
}

/// What the trending and anomaly lists show: the minutes and hours, and
/// their rows' count.
fn lists_key(trending: Option<&Trending>, hours: Option<&[AnomalyHour]>) -> String {
    let minute = |m: Option<&TrendingMinute>| {
        m.map_or("-".to_string(), |m| {
            format!("{}.{}.{}.{}", m.t, m.trending, m.top.len(), m.update)
        })
    };
    let mut key = match trending {
        Some(t) => format!("{}/{}", minute(t.shown.as_ref()), minute(t.latest.as_ref())),
        None => "-".into(),
    };
    for hour in hours.unwrap_or_default() {
        let _ = write!(key, ";{}.{}.{}", hour.day, hour.hour, hour.top.len());
    }
    key
}

/// Renders every changing part now; the lists only when they show
/// something else than `known` says (a [`View`]'s `lists`).
pub fn view(shared: &Shared, graph: &str, known: Option<&str>) -> View {
    let h = shared.health();
    let (t, hours) = (shared.trending(), shared.anomaly());
    let lists = lists_key(t.as_ref(), hours.as_deref());
    let fresh = known != Some(lists.as_str());
    View {
        status: status(&h),
        health: health(&h),
        trending: t.filter(|_| fresh).map(|t| trending(&t)),
        anomaly: hours.filter(|_| fresh).map(|hours| anomaly(&hours)),
        graph: graph.to_string(),
        lists,
    }
}

/// Fills `{{name}}` holes of `template` in one pass, so that filled-in text
/// that looks like a hole stays as it is.
fn fill(template: &str, values: &BTreeMap<&str, String>) -> String {
    let mut out = String::with_capacity(template.len() * 2);
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find("}}") {
            Some(end) if values.contains_key(&after[..end]) => {
                out.push_str(&values[&after[..end]]);
                rest = &after[end + 2..];
            }
            _ => {
                out.push_str("{{");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// The whole page, with the current data in it.
pub fn page(shared: &Shared, graph: &str) -> String {
    let v = view(shared, graph, None);
    let mut panels = String::new();
    if let Some(t) = &v.trending {
        let _ = write!(
            panels,
            r#"<section class="panel"><h2>Trending articles</h2><div id="trending">{t}</div></section>"#
        );
    }
    if let Some(a) = &v.anomaly {
        let _ = write!(
            panels,
            r#"<section class="panel"><h2>Anomalies by hour</h2><div id="anomaly">{a}</div></section>"#
        );
    }
    let values = BTreeMap::from([
        ("job", escape(&shared.job)),
        ("lists", escape(&v.lists)),
        ("status", v.status),
        ("health", v.health),
        ("panels", panels),
        ("graph", v.graph),
    ]);
    fill(PAGE, &values)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_go_to_the_article_on_its_wiki() {
        assert_eq!(
            article_url("en", "A&B c"),
            "https://en.wikipedia.org/wiki/A%26B_c"
        );
        assert_eq!(
            article_url("de.m", "Zürich"),
            "https://de.m.wikipedia.org/wiki/Z%C3%BCrich"
        );
        assert_eq!(
            article_url("fr.d", "chat"),
            "https://fr.wiktionary.org/wiki/chat"
        );
        assert_eq!(
            article_url("en", "Simon_%26_Garfunkel 100%"),
            "https://en.wikipedia.org/wiki/Simon_%26_Garfunkel_100%25"
        );
        assert_eq!(
            article_url("commons.m", "X"),
            "https://commons.m.wikimedia.org/wiki/X"
        );
    }

    #[test]
    fn text_is_escaped_and_holes_filled_once() {
        assert_eq!(
            escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        let values = BTreeMap::from([("a", "{{b}}".to_string()), ("b", "B".to_string())]);
        assert_eq!(fill("{{a}} {{b}} {{c}}", &values), "{{b}} B {{c}}");
    }

    #[test]
    fn numbers_and_durations_read_well() {
        assert_eq!(thousands(1_234_567), "1\u{2009}234\u{2009}567");
        assert_eq!(thousands(12), "12");
        assert_eq!(duration(0.42), "0.4s");
        assert_eq!(duration(3_725.0), "1h 2m");
        assert_eq!(duration(200_000.0), "2d 7h");
    }

    #[test]
    fn the_sparkline_has_a_point_per_count() {
        let svg = sparkline(&[1, 2, 3, 4, 5, 6]);
        let points = svg
            .split("points=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        assert_eq!(points.split(' ').count(), 6);
    }
}
