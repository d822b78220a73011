//! User events, the states users move between, and their JSON form.

use std::path::PathBuf;

use keyflow_dataflow::source::JsonLinesSource;
use keyflow_dataflow::time::EventTime;
use serde::{Deserialize, Serialize};

/// What a user did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    /// A purchase. (Declared first: `buy` sorts before `view`, as the
    /// strings do, which orders a user's events of one millisecond.)
    Buy,
    /// A page view.
    View,
}

/// One user event: `{"user":"u17","ts":1700000000000,"from":"/","op":"view","to":"/p/3"}`.
/// Every field is required; others are ignored.
///
/// # Examples
/// ```
/// use keyflow_jobs::behaviour::{Op, UserEvent};
/// let e: UserEvent = serde_json::from_str(r#"{"user":"u1","ts":5,"from":"/","op":"buy","to":"/p/3"}"#)?;
/// assert_eq!((e.op, e.ts), (Op::Buy, 5));
/// assert!(serde_json::from_str::<UserEvent>(r#"{"user":"u1","ts":5,"from":"/","op":"jump","to":"/"}"#).is_err());
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct UserEvent {
    /// The user.
    pub user: String,
    /// Event time, ms since the Unix epoch.
    pub ts: EventTime,
    /// The page the user was on.
    pub from: String,
    /// What the user did.
    pub op: Op,
    /// The page the user went to.
    pub to: String,
}

/// What a user's state machine sees of an event. Field order is the order
/// of one user's events at the same millisecond: by `(op, from, to)`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Action {
    /// What the user did.
    pub op: Op,
    /// The page the user was on.
    pub from: String,
    /// The page the user went to.
    pub to: String,
}

impl UserEvent {
    /// The user and what the state machine sees of the event.
    pub fn split(self) -> (String, Action) {
        let UserEvent {
            user, from, op, to, ..
        } = self;
        (user, Action { op, from, to })
    }

    /// The event of `user` doing `action` at `ts`.
    pub fn join(ts: EventTime, user: String, action: Action) -> Self {
        let Action { op, from, to } = action;
        UserEvent {
            user,
            ts,
            from,
            op,
            to,
        }
    }
}

/// The states a user moves between.
///
/// Their order (declaration order) is the order of flows in the output.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum UserState {
    /// Not seen yet.
    #[default]
    None,
    /// Viewed the landing page (from none, gone or bounced).
    Landed,
    /// Viewed another page.
    Browsing,
    /// Landed and then did nothing for the bounce timeout.
    Bounced,
    /// Bought something.
    Buying,
    /// Did nothing for the session timeout.
    Gone,
}

impl UserState {
    /// The states whose populations are reported, in report order.
    pub const COUNTED: [UserState; 4] = [
        UserState::Landed,
        UserState::Browsing,
        UserState::Bounced,
        UserState::Buying,
    ];

    /// The state's name, as in the output.
    pub fn name(self) -> &'static str {
        match self {
            UserState::None => "none",
            UserState::Landed => "landed",
            UserState::Browsing => "browsing",
            UserState::Bounced => "bounced",
            UserState::Buying => "buying",
            UserState::Gone => "gone",
        }
    }

    /// Its index in [`UserState::COUNTED`], if it is counted.
    pub fn counted_index(self) -> Option<usize> {
        UserState::COUNTED.iter().position(|s| *s == self)
    }
}

/// A JSON-lines source of user events over `files` (gzip or plain), one
/// partition per file; a line that does not parse is a bad record.
pub fn user_event_files(files: Vec<PathBuf>) -> JsonLinesSource<UserEvent> {
    JsonLinesSource::new("user-events", files, |e: &UserEvent| Some(e.ts))
}
