//! The activity job: website activity analytics per tumbling window.
//!
//! For every window `[T - w, T)` with events, the job reports the pages with
//! most events, each browser's and device type's share of the events, and
//! the conversion rate (sessions with a purchase over sessions), as one
//! [`ActivityWindow`]. Per user and window it computes [`UserFeatures`]
//! (events per action, mean click position), which [`HourlyParquetSink`]
//! writes as hour-partitioned Parquet files.
//!
//! The dataflow, in keyed steps (local pre-aggregation before each
//! exchange):
//! 1. `activity-facets`: each event counts once for its page, browser,
//!    device type and session ([`Facet`]), per window ([`TallyEvents`]);
//! 2. `activity-windows`: the tallies of one window meet on one worker and
//!    become its report ([`Report`]);
//! 3. `activity-users`: each user's events per window ([`Features`]).

mod event;
mod features;
mod generator;
mod lake;
mod lake_commit;
mod report;
mod source;

use std::sync::Arc;

use keyflow_dataflow::metrics::Metrics;
use keyflow_dataflow::prelude::*;

pub use event::{
    parse_activity_line, Action, Activity, Float, Strings, MAX_COORDINATE, MAX_EVENT_TIME,
};
pub use features::{FeatureSums, Features, UserFeatures};
pub use generator::{
    ActivityGenerator, ActivityGeneratorConfig, EVENTS_PER_SESSION, MAX_NAMES, MAX_SESSION,
};
pub use lake::{
    check_lake_dir, encode_features, feature_schema, hour_dir, FeatureRow, HourlyParquetSink,
    PART_FILE,
};
pub use lake_commit::clear_lake;
pub use report::{
    ActivityWindow, Conversion, Facet, PageEvents, Report, Share, Tally, TallyEvents, WindowTallies,
};
pub use source::{ActivityJsonl, ActivitySource};

use crate::error::{Error, Result};

/// The activity job's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivityConfig {
    /// Length of the tumbling windows, in ms.
    pub window: u64,
    /// Pages listed per window; 0 lists all.
    pub top: usize,
    /// What happens to late events.
    pub lateness: Lateness,
    /// Whether to compute the per-user features (skip them when nothing
    /// reads them).
    pub features: bool,
}

impl Default for ActivityConfig {
    fn default() -> Self {
        ActivityConfig {
            window: MINUTE,
            top: 10,
            lateness: Lateness::Drop,
            features: true,
        }
    }
}

impl ActivityConfig {
    /// Checks the values, naming the first bad one.
    pub fn validate(&self) -> Result<()> {
        if self.window == 0 {
            return Err(Error::Config(
                "activity window 0 ms must be positive".into(),
            ));
        }
        Ok(())
    }
}

/// The job's output streams.
pub struct ActivityStreams<'scope> {
    /// One report per window with events (and, under allowed lateness, one
    /// more each time late events change it), at event time `end + 1`.
    pub windows: Events<'scope, ActivityWindow>,
    /// Per-user features per window, at the window's end.
    pub features: Events<'scope, WindowResult<Arc<str>, UserFeatures>>,
    /// Late events (only with [`Lateness::SideOutput`]).
    pub late: Events<'scope, Activity>,
}

/// Builds the activity job over `events`.
///
/// Under `Drop` and `SideOutput`, late events (older than their partition's
/// watermark) are split off first and counted once, so that the reports and
/// the features agree on which events count; under `Allowed`, both keyed
/// steps keep their windows for the allowed lateness and re-emit what late
/// events change.
///
/// # Examples
/// ```
/// use keyflow_dataflow::prelude::*;
/// use keyflow_dataflow::testing::example;
/// use keyflow_jobs::activity::{activity, Action, Activity, ActivityConfig};
///
/// let event = |user: &str, action| Activity {
///     user: user.into(), session: format!("s-{user}").into(), page: "/".into(), action,
///     browser: "Firefox".into(), device: "desktop".into(), click: None,
/// };
/// let events = vec![(1_000, event("ann", Action::View)), (2_000, event("bob", Action::Purchase))];
/// let out = example(events, |events| Ok(activity(events, &ActivityConfig::default())?.windows));
/// let (_, window) = &out.unwrap()[0];
/// assert_eq!((window.start, window.end, window.events), (0, MINUTE, 2));
/// assert_eq!((window.conversion.sessions, window.conversion.purchasing), (2, 1));
/// ```
pub fn activity<'scope>(
    events: Events<'scope, Activity>,
    config: &ActivityConfig,
) -> Result<ActivityStreams<'scope>> {
    config.validate()?;
    let flow = events.flow().clone();
    let (input, late) = match config.lateness {
        Lateness::Allowed(_) => (events, flow.empty()),
        Lateness::Drop | Lateness::SideOutput => {
            let (on_time, late) = events.split_late();
            let side = config.lateness == Lateness::SideOutput;
            let ctx = Arc::clone(flow.context());
            let late = late.inspect(move |_, _| {
                let m = &ctx.metrics;
                Metrics::add(if side { &m.late_side } else { &m.late_dropped }, 1)
            });
            (on_time, if side { late } else { late.filter(|_| false) })
        }
    };
    let window = WindowSpec::tumbling(config.window)?;
    let tallies = input
        .clone()
        .flat_map(|e| {
            let purchase = e.action == Action::Purchase;
            [
                (Facet::Page(e.page), purchase),
                (Facet::Browser(e.browser), purchase),
                (Facet::Device(e.device), purchase),
                (Facet::Session(e.session), purchase),
            ]
        })
        .key_by(|kv| kv)
        .window(window)
        .lateness(config.lateness)
        .aggregate("activity-facets", TallyEvents)
        .results;
    // Each window's end `T` is a 1 ms window `[T, T + 1)` of the next step,
    // so the tallies of one window meet there and fire as soon as they are
    // all in; an update at a later time is a late record there, which
    // allowed lateness re-applies to the same window.
    let gather = match config.lateness {
        Lateness::Allowed(d) => Lateness::Allowed(d),
        Lateness::Drop | Lateness::SideOutput => Lateness::Drop,
    };
    let w = config.window;
    let windows = tallies
        .key_by(|r| ((), (r.key, r.value)))
        .window(WindowSpec::tumbling(1)?)
        .lateness(gather)
        .aggregate("activity-windows", Report { top: config.top })
        .results
        .map(move |r| ActivityWindow {
            start: r.start.saturating_sub(w),
            end: r.start,
            update: r.update,
            ..r.value
        });
    let features = if config.features {
        input
            .map(|e| (e.user, (e.action, e.click)))
            .key_by(|kv| kv)
            .window(window)
            .lateness(config.lateness)
            .aggregate("activity-users", Features)
            .results
    } else {
        flow.empty()
    };
    Ok(ActivityStreams {
        windows,
        features,
        late,
    })
}
