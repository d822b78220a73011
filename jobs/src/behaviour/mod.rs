//! The behaviour job: real-time web user behaviour monitoring, after
//! Karakostas and Theodoulidis, *A MapReduce Architecture for Web Site User
//! Behaviour Monitoring in Real Time* (DATA 2013).
//!
//! Each user moves between the states none, landed, browsing, bounced,
//! buying and gone, by its events (in event-time order; one user's events
//! of one millisecond in the order of their `(op, from, to)`) and by two
//! event-time timers ([`UserMachine`]). At every boundary `T` (a multiple
//! of the resolution), the job reports the users per state as of `T`
//! (every change at a time below `T` applied), the changes in
//! `[T - resolution, T)`, the populations whose growth over the alert
//! window starts an alert, and its own quality ([`Report`]).
//!
//! The paper's cascade is the dataflow's:
//! 1. **mapper**: on every worker, the users' changes (from the keyed
//!    process function [`UserMachine`], run by
//!    [`keyflow_operators::process`]) and the events read are tallied per
//!    interval before any exchange (the window's local pre-aggregation);
//! 2. **reducer**: the tallies are exchanged by what they count and summed
//!    per interval (a keyed tumbling-window count);
//! 3. **rereducer**: worker 0 gathers the sums of each interval, adds the
//!    changes up into populations, and checks the alerts ([`Series`]).
//!
//! Late events (below their partition's watermark) follow the
//! [`Lateness`] policy. Under `Allowed(d)` the users' machines run `d`
//! behind progress, so an event up to `d` late is applied in its place and
//! reports are exact, `d` later; nothing is re-emitted.

mod event;
mod generator;
mod machine;
mod report;
mod series;
mod source;
#[cfg(test)]
mod tests;

use keyflow_dataflow::prelude::*;
use keyflow_dataflow::source::EventStream;
use keyflow_operators::process::KeyedProcess;
use keyflow_operators::rate_alert::{Percent, RateAlert, RateWatch};
use serde::{Deserialize, Serialize};
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;

pub use event::{user_event_files, Action, Op, UserEvent, UserState};
pub use generator::{UserGenerator, UserGeneratorConfig, TICK_MS, USERS};
pub use machine::{Transition, UserMachine, Visitor};
pub use report::{
    Alert, AlertLine, FlowCount, Measure, PopulationLine, Populations, Quality, QualityLine, Report,
};
pub use series::{Series, MAX_IDLE_REPORTS};
pub use source::UserSource;

use crate::error::{Error, Result};

/// The most boundaries an alert window may span (its populations are kept).
pub const MAX_ALERT_BOUNDARIES: u64 = 1_000_000;

/// The most boundaries a bounce or session timeout may span: the reports
/// after the input ends run until the last user's timeout.
pub const MAX_TIMEOUT_BOUNDARIES: u64 = 1_000_000;

/// The behaviour job's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BehaviourConfig {
    /// The landing page.
    pub landing: String,
    /// Quiet time after which a landed user has bounced, in ms.
    pub bounce_timeout: u64,
    /// Quiet time after which a user is gone, in ms.
    pub session_timeout: u64,
    /// Distance between reported boundaries, in ms.
    pub resolution: u64,
    /// The growth that raises an alert.
    pub alert_rise: Percent,
    /// The span the growth is measured over, in ms (a multiple of the
    /// resolution).
    pub alert_window: u64,
    /// The least population one window earlier that can raise an alert.
    pub alert_min: u64,
    /// What happens to late events.
    pub lateness: Lateness,
}

impl Default for BehaviourConfig {
    fn default() -> Self {
        BehaviourConfig {
            landing: "/".into(),
            bounce_timeout: 30 * SECOND,
            session_timeout: 30 * MINUTE,
            resolution: 10 * SECOND,
            alert_rise: Percent::whole(100),
            alert_window: HOUR,
            alert_min: 10,
            lateness: Lateness::Drop,
        }
    }
}

impl BehaviourConfig {
    /// Checks the values, naming the first bad one.
    ///
    /// # Examples
    /// ```
    /// use keyflow_jobs::behaviour::BehaviourConfig;
    /// let bad = BehaviourConfig { resolution: 0, ..Default::default() };
    /// assert!(bad.validate().unwrap_err().to_string().contains("resolution 0"));
    /// let endless = BehaviourConfig { session_timeout: u64::MAX, ..Default::default() };
    /// assert!(endless.validate().unwrap_err().to_string().contains("session timeout"));
    /// ```
    pub fn validate(&self) -> Result<()> {
        let fail = |msg: String| Err(Error::Config(msg));
        if self.resolution == 0 {
            return fail("resolution 0 ms: boundaries must be at least 1 ms apart".into());
        }
        if self.bounce_timeout == 0 {
            return fail("bounce timeout 0 ms must be positive".into());
        }
        if self.session_timeout == 0 {
            return fail("session timeout 0 ms must be positive".into());
        }
        if self.landing.is_empty() {
            return fail("the landing page is empty".into());
        }
        for (what, timeout) in [
            ("bounce", self.bounce_timeout),
            ("session", self.session_timeout),
        ] {
            if timeout / self.resolution > MAX_TIMEOUT_BOUNDARIES {
                return fail(format!(
                    "{what} timeout {timeout} ms spans {} boundaries of {} ms; at most \
                     {MAX_TIMEOUT_BOUNDARIES} (after the input ends, a report is written for \
                     every boundary until the last user times out)",
                    timeout / self.resolution,
                    self.resolution
                ));
            }
        }
        if self.alert_window == 0 || !self.alert_window.is_multiple_of(self.resolution) {
            return fail(format!(
                "alert window {} ms must be a positive multiple of the resolution {} ms",
                self.alert_window, self.resolution
            ));
        }
        if self.alert_window / self.resolution > MAX_ALERT_BOUNDARIES {
            return fail(format!(
                "alert window {} ms spans {} boundaries of {} ms; at most {MAX_ALERT_BOUNDARIES} \
                 are kept",
                self.alert_window,
                self.alert_window / self.resolution,
                self.resolution
            ));
        }
        Ok(())
    }

    /// How far behind progress the users' machines run: the allowed
    /// lateness, or 0.
    pub fn delay(&self) -> u64 {
        match self.lateness {
            Lateness::Allowed(d) => d,
            Lateness::Drop | Lateness::SideOutput => 0,
        }
    }

    /// The users' state machine.
    pub fn machine(&self) -> UserMachine {
        UserMachine::new(&self.landing, self.bounce_timeout, self.session_timeout)
    }

    /// The alert rule over the four populations.
    pub fn watch(&self) -> Result<RateWatch> {
        let rule = RateAlert {
            rise: self.alert_rise,
            min: self.alert_min,
        };
        Ok(RateWatch::new(
            rule,
            (self.alert_window / self.resolution) as usize,
            UserState::COUNTED.len(),
        )?)
    }
}

/// The job's output streams.
pub struct BehaviourStreams<'scope> {
    /// One report per boundary, on worker 0, at time `t` plus the allowed
    /// lateness.
    pub reports: Events<'scope, Report>,
    /// Late events not applied (only with [`Lateness::SideOutput`]).
    pub late: Events<'scope, UserEvent>,
}

/// Tags every event read with how it was taken, at the later of its event
/// time and the time it was read at, shifted by `delay`.
fn arrivals<'scope>(
    events: EventStream<'scope, UserEvent>,
    delay: u64,
) -> EventStream<'scope, Measure> {
    events.unary(Pipeline, "Arrivals", move |_, _| {
        move |input, output| {
            input.for_each(|cap, data| {
                let Some(&time) = cap.least() else { return };
                let mut session = output.session(&cap);
                for (ts, _) in data.drain(..) {
                    let measure = if ts >= time {
                        Measure::OnTime
                    } else if ts.saturating_add(delay) >= time {
                        Measure::LateCounted
                    } else {
                        Measure::LateDropped
                    };
                    session.give((ts.max(time).saturating_add(delay), measure));
                }
            });
        }
    })
}

/// Builds the behaviour job over `events`.
///
/// # Examples
/// ```
/// use keyflow_dataflow::prelude::*;
/// use keyflow_dataflow::testing::Captured;
/// use keyflow_jobs::behaviour::{behaviour, BehaviourConfig, Op, UserEvent};
///
/// let out = Captured::new();
/// let into = out.clone();
/// run(&RunConfig::threads(2), move |flow| {
///     let view = |user: &str, ts, to: &str| UserEvent { user: user.into(), ts, from: "/".into(), op: Op::View, to: to.into() };
///     let events = vec![(1_000, view("a", 1_000, "/")), (12_000, view("b", 12_000, "/p/1"))];
///     let input = IterSource::new("events", 1, move |_| events.clone().into_iter());
///     let events = flow.source("events", input, &SourceConfig::default())?;
///     behaviour(events, &BehaviourConfig::default())?.reports.capture(&into);
///     Ok(())
/// })
/// .unwrap();
/// let reports: Vec<_> = out.sorted().into_iter().map(|(_, r)| r).collect();
/// assert_eq!((reports[0].t, reports[0].populations), (10_000, [1, 0, 0, 0]));
/// assert_eq!((reports[1].t, reports[1].populations), (20_000, [1, 1, 0, 0]));
/// assert_eq!((reports[4].t, reports[4].populations), (50_000, [0, 1, 1, 0])); // a bounced at 31 s
/// // The last user leaves 30 minutes after 12 s.
/// assert_eq!(reports.last().unwrap().t, 1_820_000);
/// assert_eq!(reports.last().unwrap().populations, [0, 0, 0, 0]);
/// ```
pub fn behaviour<'scope>(
    events: Events<'scope, UserEvent>,
    config: &BehaviourConfig,
) -> Result<BehaviourStreams<'scope>> {
    config.validate()?;
    let flow = events.flow().clone();
    let delay = config.delay();
    let resolution = config.resolution;
    let taken = events.clone().apply(|s| arrivals(s, delay));
    let users = events
        .key_by_named("ByUser", UserEvent::split)
        .process_with("behaviour-users", config.machine(), config.lateness);
    // Shifted by the delay, changes are on time for the window again.
    let changes = users.output.apply(move |s| {
        use timely::dataflow::operators::vec::Map;
        s.map(move |(ts, c)| (ts.saturating_add(delay), Measure::Flow(c.from, c.to)))
            .container::<Vec<_>>()
    });
    let tallies = changes
        .union(taken)
        .key_by_named("ByMeasure", |m| (m, ()))
        .window(WindowSpec::tumbling(resolution)?.with_offset(delay % resolution))
        .count("behaviour-tally")
        .results;
    let step = flow.step("behaviour-series");
    let fresh = Series::new(resolution, config.watch()?);
    let reports = series::series(tallies.inner(), flow.context(), &step, delay, fresh)?;
    let late = users.late.apply(|s| {
        use timely::dataflow::operators::vec::Map;
        s.map(|(ts, (user, action))| (ts, UserEvent::join(ts, user, action)))
            .container::<Vec<_>>()
    });
    Ok(BehaviourStreams {
        reports: flow.wrap(reports),
        late,
    })
}
