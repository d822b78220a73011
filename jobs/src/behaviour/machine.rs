//! The per-user state machine, as a keyed process function.

use keyflow_dataflow::time::EventTime;
use keyflow_operators::process::{ProcessContext, ProcessFunction};
use serde::{Deserialize, Serialize};

use super::event::{Action, Op, UserState};

/// A change of one user's state (never to the same state), at the event
/// time of the record or timer that made it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Transition {
    /// The state before.
    pub from: UserState,
    /// The state after.
    pub to: UserState,
}

/// What the machine keeps per user.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Visitor {
    /// The user's state.
    pub state: UserState,
    /// The time of the user's latest event.
    pub last: EventTime,
}

/// The user state machine:
/// - `buy` → buying, from any state;
/// - `view` of the landing page: none, gone or bounced → landed; landed,
///   browsing and buying stay;
/// - `view` of any other page → browsing;
/// - after its latest event at `t`, a landed user bounces at
///   `t + bounce`, and a user in any state but none or gone is gone at
///   `t + session`, unless an event comes in `(t, t + timeout]`.
///
/// When both timeouts fall at the same time, the bounce comes first
/// (landed → bounced → gone).
///
/// # Examples
/// ```
/// use keyflow_jobs::behaviour::{Action, Op, UserMachine, UserState};
/// use keyflow_operators::process::ProcessState;
///
/// let machine = UserMachine::new("/", 30_000, 1_800_000);
/// let view = |to: &str| Action { op: Op::View, from: "/".into(), to: to.into() };
/// let mut users = ProcessState::new();
/// users.push(0, "u1".to_string(), view("/"));
/// users.push(30_000, "u2".to_string(), view("/"));
/// users.push(40_000, "u2".to_string(), view("/p/1"));
/// let mut out = Vec::new();
/// users.advance(&machine, 60_000, &mut out);
/// let mut changes: Vec<_> = out.iter().map(|(t, c)| (*t, c.from, c.to)).collect();
/// changes.sort();
/// assert_eq!(changes, vec![
///     (0, UserState::None, UserState::Landed),          // u1
///     (30_000, UserState::None, UserState::Landed),     // u2
///     (30_000, UserState::Landed, UserState::Bounced),  // u1, 30 s later
///     (40_000, UserState::Landed, UserState::Browsing), // u2
/// ]);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserMachine {
    landing: String,
    bounce: u64,
    session: u64,
}

impl UserMachine {
    /// A machine with landing page `landing` and the two timeouts in ms.
    pub fn new(landing: &str, bounce: u64, session: u64) -> Self {
        UserMachine {
            landing: landing.to_string(),
            bounce,
            session,
        }
    }

    /// The state after `action` in `state`.
    pub fn next_state(&self, state: UserState, action: &Action) -> UserState {
        match action.op {
            Op::Buy => UserState::Buying,
            Op::View if action.to == self.landing => match state {
                UserState::None | UserState::Gone | UserState::Bounced => UserState::Landed,
                other => other,
            },
            Op::View => UserState::Browsing,
        }
    }
}

fn change(visitor: &mut Visitor, to: UserState, ctx: &mut ProcessContext<'_, Transition>) {
    if visitor.state != to {
        ctx.emit(Transition {
            from: visitor.state,
            to,
        });
        visitor.state = to;
    }
}

impl UserMachine {
    /// When the user's state changes next without an event: its bounce
    /// and its leaving, each if pending.
    fn deadlines(&self, visitor: &Visitor) -> [Option<EventTime>; 2] {
        let active = !matches!(visitor.state, UserState::None | UserState::Gone);
        [
            (visitor.state == UserState::Landed).then(|| visitor.last.saturating_add(self.bounce)),
            active.then(|| visitor.last.saturating_add(self.session)),
        ]
    }

    /// Keeps a timer at or before the next deadline after now. Timers are
    /// set lazily: an event only moves the deadlines later, so the timer
    /// already set usually stands, and when it fires before a deadline
    /// it is set again; a transition happens only at a deadline exactly.
    fn arm(&self, visitor: &Visitor, ctx: &mut ProcessContext<'_, Transition>) {
        let now = ctx.time();
        let next = self
            .deadlines(visitor)
            .into_iter()
            .flatten()
            .filter(|d| *d > now)
            .min();
        if let Some(next) = next {
            if ctx.timers().first().is_none_or(|first| *first > next) {
                ctx.set_timer(next);
            }
        }
    }
}

impl ProcessFunction for UserMachine {
    type Key = String;
    type In = Action;
    type State = Visitor;
    type Out = Transition;

    fn on_event(
        &self,
        _user: &String,
        visitor: &mut Visitor,
        action: Action,
        ctx: &mut ProcessContext<'_, Transition>,
    ) {
        let next = self.next_state(visitor.state, &action);
        change(visitor, next, ctx);
        visitor.last = ctx.time();
        self.arm(visitor, ctx);
    }

    fn on_timer(
        &self,
        _user: &String,
        visitor: &mut Visitor,
        ctx: &mut ProcessContext<'_, Transition>,
    ) {
        let t = ctx.time();
        let [bounce, leave] = self.deadlines(visitor);
        if bounce == Some(t) {
            change(visitor, UserState::Bounced, ctx);
        }
        // A bounce at the same time leaves the user active: it still leaves.
        if leave == Some(t) {
            change(visitor, UserState::Gone, ctx);
        }
        self.arm(visitor, ctx);
    }
}
