//! The activity event: its fields, and how a JSON line becomes one.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use keyflow_dataflow::hash::StableBuildHasher;
use keyflow_dataflow::time::EventTime;
use serde::{Deserialize, Deserializer, Serialize};

/// What a user did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Action {
    /// Viewed a page.
    View,
    /// Clicked somewhere on a page (the event carries the position).
    Click,
    /// Scrolled a page.
    Scroll,
    /// Put an item in the cart.
    AddToCart,
    /// Bought.
    Purchase,
    /// Searched.
    Search,
}

impl Action {
    /// Every action, in the order of the per-user feature columns.
    pub const ALL: [Action; 6] = [
        Action::View,
        Action::Click,
        Action::Scroll,
        Action::AddToCart,
        Action::Purchase,
        Action::Search,
    ];

    /// The `action_type` value: `view`, `click`, `scroll`, `add_to_cart`,
    /// `purchase` or `search`.
    pub fn name(self) -> &'static str {
        match self {
            Action::View => "view",
            Action::Click => "click",
            Action::Scroll => "scroll",
            Action::AddToCart => "add_to_cart",
            Action::Purchase => "purchase",
            Action::Search => "search",
        }
    }

    /// The action named `name` (exactly as [`Action::name`] spells it).
    ///
    /// # Examples
    /// ```
    /// use keyflow_jobs::activity::Action;
    /// assert_eq!(Action::parse("add_to_cart"), Some(Action::AddToCart));
    /// assert_eq!(Action::parse("Click"), None);
    /// ```
    pub fn parse(name: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.name() == name)
    }

    /// The index of the action in [`Action::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An `f64` with a total order (`f64::total_cmp`), so that records holding
/// one can be sorted and compared; it reads and writes as a plain number.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Float(pub f64);

impl PartialEq for Float {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Float {}

impl PartialOrd for Float {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Float {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.total_cmp(&other.0)
    }
}

impl std::hash::Hash for Float {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.to_bits().hash(state);
    }
}

/// The largest click coordinate accepted, in magnitude: far beyond any
/// screen, and small enough that the sum of a window's coordinates can
/// never overflow.
pub const MAX_COORDINATE: f64 = 1e15;

/// The latest event time accepted: 10000-01-01T00:00:00Z, the first instant
/// whose date has five digits, which Parquet readers and `date=` directory
/// names do not take. Every source rejects later times anyway; here they
/// are a malformed line, named by its place in the file.
pub const MAX_EVENT_TIME: EventTime = keyflow_dataflow::time::MAX_EVENT_TIME;

/// One activity event, with the fields the job uses. Its event time travels
/// beside it. Strings are shared (`Arc<str>`), so a record is cheap to copy
/// into each keyed step.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Activity {
    /// Who.
    pub user: Arc<str>,
    /// The visit (session) the event belongs to.
    pub session: Arc<str>,
    /// The page.
    pub page: Arc<str>,
    /// What happened.
    pub action: Action,
    /// The browser's name.
    pub browser: Arc<str>,
    /// The kind of device (`desktop`, `mobile`, ...).
    pub device: Arc<str>,
    /// Where a click landed (`x`, `y`); `None` for every other action.
    pub click: Option<(Float, Float)>,
}

impl Activity {
    /// The event as a JSON object with the input's field names (only the
    /// fields the job reads), as late events are written.
    pub fn to_json(&self, ts: EventTime) -> serde_json::Value {
        let (x, y) = match self.click {
            Some((x, y)) => (Some(x.0), Some(y.0)),
            None => (None, None),
        };
        serde_json::json!({
            "user_id": &*self.user,
            "session_id": &*self.session,
            "page_url": &*self.page,
            "ts": ts,
            "action_type": self.action.name(),
            "browser": &*self.browser,
            "device_type": &*self.device,
            "click_x": x,
            "click_y": y,
        })
    }
}

/// A user or session id: JSON text, or an integer kept as its decimal text.
struct Id<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Id<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Id<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or an integer")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Id<'de>, E> {
                Ok(Id(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Id<'de>, E> {
                Ok(Id(Cow::Owned(v.to_string())))
            }
            fn visit_string<E>(self, v: String) -> Result<Id<'de>, E> {
                Ok(Id(Cow::Owned(v)))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Id<'de>, E> {
                Ok(Id(Cow::Owned(v.to_string())))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Id<'de>, E> {
                Ok(Id(Cow::Owned(v.to_string())))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// One line's fields, borrowed from the line unless they hold escapes.
/// Other fields (`event_id`, `timezone`, `ip`, anything else) are not read.
#[derive(Deserialize)]
struct RawEvent<'a> {
    #[serde(borrow)]
    user_id: Id<'a>,
    #[serde(borrow)]
    session_id: Id<'a>,
    #[serde(borrow)]
    page_url: Cow<'a, str>,
    ts: EventTime,
    #[serde(borrow)]
    action_type: Cow<'a, str>,
    #[serde(borrow)]
    browser: Cow<'a, str>,
    #[serde(borrow)]
    device_type: Cow<'a, str>,
    #[serde(default)]
    click_x: Option<f64>,
    #[serde(default)]
    click_y: Option<f64>,
}

/// Shares one allocation among the equal strings a source reads (pages,
/// browsers, users, sessions repeat), up to a bound, past which it starts
/// over so that memory stays bounded on endless inputs.
#[derive(Debug, Default)]
pub struct Strings {
    set: HashSet<Arc<str>, StableBuildHasher>,
}

/// Strings one source partition keeps shared.
const SHARED_STRINGS: usize = 1 << 18;

impl Strings {
    /// The shared copy of `s`.
    pub fn get(&mut self, s: &str) -> Arc<str> {
        if let Some(shared) = self.set.get(s) {
            return Arc::clone(shared);
        }
        if self.set.len() >= SHARED_STRINGS {
            self.set.clear();
        }
        let shared: Arc<str> = Arc::from(s);
        self.set.insert(Arc::clone(&shared));
        shared
    }
}

/// Parses one JSON line into its event time and event; the error says what
/// is wrong. Required: `user_id` and `session_id` (strings, or integers
/// taken as their decimal text), `page_url`, `browser`, `device_type`
/// (strings), `ts` (integer milliseconds since the epoch) and `action_type`
/// (one of `view`, `click`, `scroll`, `add_to_cart`, `purchase`, `search`),
/// before [`MAX_EVENT_TIME`].
/// A click needs `click_x` and `click_y`, numbers of magnitude at most
/// [`MAX_COORDINATE`]; other actions may leave them out or null, and their
/// values are not used. Other fields are ignored.
///
/// # Examples
/// ```
/// use keyflow_jobs::activity::{parse_activity_line, Action, Strings};
///
/// let mut strings = Strings::default();
/// let line = r#"{"user_id":7,"session_id":"s1","page_url":"/","ts":5,"action_type":"click",
///     "browser":"Firefox","device_type":"desktop","click_x":10,"click_y":20.5}"#;
/// let (ts, event) = parse_activity_line(line, &mut strings).unwrap();
/// assert_eq!((ts, &*event.user, event.action), (5, "7", Action::Click));
/// assert_eq!(event.click.map(|(x, y)| (x.0, y.0)), Some((10.0, 20.5)));
/// let bad = line.replace("click\"", "tap\"");
/// assert!(parse_activity_line(&bad, &mut strings).unwrap_err().contains("tap"));
/// ```
pub fn parse_activity_line(
    line: &str,
    strings: &mut Strings,
) -> Result<(EventTime, Activity), String> {
    // serde would also take a JSON array of the fields in order.
    if !line.trim_start().starts_with('{') {
        return Err("not a JSON object".into());
    }
    let raw: RawEvent = serde_json::from_str(line).map_err(|e| e.to_string())?;
    let Some(action) = Action::parse(&raw.action_type) else {
        return Err(format!(
            "action_type `{}` is not one of: view, click, scroll, add_to_cart, purchase, search",
            keyflow_dataflow::source::shorten(&raw.action_type, 40)
        ));
    };
    if raw.ts >= MAX_EVENT_TIME {
        return Err(format!(
            "ts {} is after the year 9999; ts is milliseconds since 1970-01-01 UTC",
            raw.ts
        ));
    }
    let click = match (action, raw.click_x, raw.click_y) {
        (Action::Click, Some(x), Some(y)) => {
            for (name, v) in [("click_x", x), ("click_y", y)] {
                if v.abs() > MAX_COORDINATE {
                    return Err(format!(
                        "{name} {v} is beyond ±{MAX_COORDINATE:e}, no screen position"
                    ));
                }
            }
            Some((Float(x), Float(y)))
        }
        (Action::Click, _, _) => {
            return Err("a click needs both click_x and click_y as numbers".into());
        }
        _ => None,
    };
    let event = Activity {
        user: strings.get(&raw.user_id.0),
        session: strings.get(&raw.session_id.0),
        page: strings.get(&raw.page_url),
        action,
        browser: strings.get(&raw.browser),
        device: strings.get(&raw.device_type),
        click,
    };
    Ok((raw.ts, event))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"event_id":"e1","user_id":"u1","session_id":"s1","page_url":"/a","ts":1000,"action_type":"view","browser":"Chrome","device_type":"mobile","timezone":"UTC","click_x":null,"click_y":null,"ip":"10.0.0.1"}"#;

    fn parse(line: &str) -> Result<(EventTime, Activity), String> {
        parse_activity_line(line, &mut Strings::default())
    }

    #[test]
    fn reads_every_field_it_uses() {
        let (ts, e) = parse(GOOD).unwrap();
        assert_eq!(ts, 1000);
        assert_eq!((&*e.user, &*e.session, &*e.page), ("u1", "s1", "/a"));
        assert_eq!((&*e.browser, &*e.device), ("Chrome", "mobile"));
        assert_eq!((e.action, e.click), (Action::View, None));
        // Coordinates of other actions are not used; missing ones are fine.
        let scroll = GOOD
            .replace("\"view\"", "\"scroll\"")
            .replace("\"click_x\":null", "\"click_x\":3");
        assert_eq!(parse(&scroll).unwrap().1.click, None);
        let bare = r#"{"user_id":1,"session_id":2,"page_url":"/","ts":0,"action_type":"purchase","browser":"b","device_type":"d"}"#;
        let (_, e) = parse(bare).unwrap();
        assert_eq!(
            (&*e.user, &*e.session, e.action),
            ("1", "2", Action::Purchase)
        );
    }

    #[test]
    fn rejects_bad_lines_with_reasons() {
        let click = GOOD.replace("\"view\"", "\"click\"");
        let cases = [
            ("{", "EOF".to_string()),
            (
                r#"["u","s","/",1,"view","b","d"]"#,
                "not a JSON object".into(),
            ),
            (
                &GOOD.replace("\"ts\":1000", "\"ts\":-5") as &str,
                "-5".into(),
            ),
            (&GOOD.replace("\"ts\":1000", "\"ts\":1.5"), "1.5".into()),
            (
                &GOOD.replace("\"ts\":1000", "\"ts\":253402300800000"),
                "year 9999".into(),
            ),
            (
                &GOOD.replace("\"ts\":1000,", ""),
                "missing field `ts`".into(),
            ),
            (
                &GOOD.replace("\"user_id\":\"u1\",", ""),
                "missing field `user_id`".into(),
            ),
            (
                &GOOD.replace("\"browser\":\"Chrome\"", "\"browser\":null"),
                "invalid type".into(),
            ),
            (
                &GOOD.replace("\"user_id\":\"u1\"", "\"user_id\":1.5"),
                "string or an integer".into(),
            ),
            (
                &GOOD.replace("\"view\"", "\"View\""),
                "`View` is not one of".into(),
            ),
            (&click, "a click needs both".into()),
            (
                &click
                    .replace("\"click_x\":null", "\"click_x\":1")
                    .replace("\"click_y\":null", "\"click_y\":\"2\""),
                "invalid type".into(),
            ),
            (
                &click
                    .replace("\"click_x\":null", "\"click_x\":1e20")
                    .replace("\"click_y\":null", "\"click_y\":2"),
                "beyond".into(),
            ),
        ];
        for (line, reason) in cases {
            let err = parse(line).unwrap_err();
            assert!(err.contains(&reason), "{line}: {err}");
        }
    }

    #[test]
    fn shares_equal_strings() {
        let mut strings = Strings::default();
        let (_, a) = parse_activity_line(GOOD, &mut strings).unwrap();
        let (_, b) = parse_activity_line(GOOD, &mut strings).unwrap();
        assert!(Arc::ptr_eq(&a.page, &b.page));
        assert!(Arc::ptr_eq(&a.user, &b.user));
    }

    #[test]
    fn writes_late_events_with_input_names() {
        let (ts, e) = parse(GOOD).unwrap();
        let json = e.to_json(ts);
        assert_eq!(json["user_id"], "u1");
        assert_eq!(json["action_type"], "view");
        assert_eq!(json["ts"], 1000);
        let again = parse(&json.to_string()).unwrap();
        assert_eq!(again, (ts, e));
    }
}
