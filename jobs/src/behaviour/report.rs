//! What the job reports at every boundary, and the lines it writes.

use keyflow_dataflow::time::EventTime;
use serde::{Deserialize, Serialize};

use super::event::UserState;

/// What a windowed count tallies, per interval: flows between states, and
/// the events read by how they were taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Measure {
    /// Users moving from one state to another.
    Flow(UserState, UserState),
    /// Events that came on time (at or above the watermark).
    OnTime,
    /// Late events applied all the same (within the allowed lateness).
    LateCounted,
    /// Late events not applied (dropped, or sent to the late output).
    LateDropped,
}

/// The job's quality at a boundary: counts over all events read before it,
/// and how long after the boundary the report was made.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Quality {
    /// Events received (each at the later of its event time and the time
    /// it was read at).
    pub received: u64,
    /// Events applied to the users' states.
    pub counted: u64,
    /// Events that came late.
    pub late: u64,
    /// Late events not applied.
    pub dropped: u64,
    /// Wall-clock time of the report minus the boundary, in ms.
    pub delay_ms: i64,
}

impl Quality {
    /// Events counted over events received (1 before any event).
    pub fn coverage(&self) -> f64 {
        if self.received == 0 {
            1.0
        } else {
            self.counted as f64 / self.received as f64
        }
    }
}

/// The report of one boundary `t`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Report {
    /// The boundary, ms since the Unix epoch (a multiple of the resolution).
    pub t: EventTime,
    /// Users per state as of `t` (every change before `t` applied), in the
    /// order of [`UserState::COUNTED`].
    pub populations: [u64; 4],
    /// State changes in `[t - resolution, t)`, by `(from, to)`.
    pub flows: Vec<(UserState, UserState, u64)>,
    /// Populations whose alert starts at `t`, in the order of
    /// [`UserState::COUNTED`].
    pub alerts: Vec<Alert>,
    /// The job's quality.
    pub quality: Quality,
}

/// A population that grew by more than the alert's rise over its window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Alert {
    /// The state.
    pub state: UserState,
    /// Its population one alert window before.
    pub was: u64,
    /// Its population now.
    pub now: u64,
}

/// Users per counted state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Populations {
    /// Landed users.
    pub landed: u64,
    /// Browsing users.
    pub browsing: u64,
    /// Bounced users.
    pub bounced: u64,
    /// Buying users.
    pub buying: u64,
}

/// One flow of a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct FlowCount {
    /// The state before.
    pub from: UserState,
    /// The state after.
    pub to: UserState,
    /// How many changes.
    pub n: u64,
}

/// A line of `--out`:
/// `{"t":T,"populations":{"landed":n,..},"flows":[{"from":"none","to":"landed","n":5},..]}`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PopulationLine {
    /// The boundary.
    pub t: EventTime,
    /// Users per state as of `t`.
    pub populations: Populations,
    /// State changes in `[t - resolution, t)`.
    pub flows: Vec<FlowCount>,
}

/// A line of `--alerts-out`: `{"t":T,"state":"bounced","was":n0,"now":n1}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AlertLine {
    /// The boundary.
    pub t: EventTime,
    /// The state.
    pub state: UserState,
    /// Its population one alert window before.
    pub was: u64,
    /// Its population at `t`.
    pub now: u64,
}

/// A line of `--stats-out`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct QualityLine {
    /// The boundary.
    pub t: EventTime,
    /// Wall-clock time of the report minus `t`, in ms.
    pub delay_ms: i64,
    /// Events received before `t`.
    pub received: u64,
    /// Of them, applied.
    pub counted: u64,
    /// Of them, late.
    pub late: u64,
    /// Of them, late and not applied.
    pub dropped: u64,
    /// `counted / received`.
    pub coverage: f64,
}

// `coverage` is a function of `counted` and `received`, so the other fields
// decide equality and order (a sink sorts the lines of one time).
impl Eq for QualityLine {}

impl PartialOrd for QualityLine {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for QualityLine {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        let key = |q: &Self| (q.t, q.delay_ms, q.received, q.counted, q.late, q.dropped);
        key(self).cmp(&key(other))
    }
}

impl Report {
    /// The `--out` line.
    ///
    /// # Examples
    /// ```
    /// use keyflow_jobs::behaviour::{Report, UserState};
    /// let report = Report {
    ///     t: 10_000,
    ///     populations: [5, 0, 0, 0],
    ///     flows: vec![(UserState::None, UserState::Landed, 5)],
    ///     alerts: vec![],
    ///     quality: Default::default(),
    /// };
    /// assert_eq!(
    ///     serde_json::to_string(&report.line()).unwrap(),
    ///     r#"{"t":10000,"populations":{"landed":5,"browsing":0,"bounced":0,"buying":0},"flows":[{"from":"none","to":"landed","n":5}]}"#
    /// );
    /// ```
    pub fn line(&self) -> PopulationLine {
        let [landed, browsing, bounced, buying] = self.populations;
        PopulationLine {
            t: self.t,
            populations: Populations {
                landed,
                browsing,
                bounced,
                buying,
            },
            flows: self
                .flows
                .iter()
                .map(|&(from, to, n)| FlowCount { from, to, n })
                .collect(),
        }
    }

    /// The `--alerts-out` lines.
    pub fn alert_lines(&self) -> Vec<AlertLine> {
        self.alerts
            .iter()
            .map(|a| AlertLine {
                t: self.t,
                state: a.state,
                was: a.was,
                now: a.now,
            })
            .collect()
    }

    /// The `--stats-out` line.
    pub fn quality_line(&self) -> QualityLine {
        let q = &self.quality;
        QualityLine {
            t: self.t,
            delay_ms: q.delay_ms,
            received: q.received,
            counted: q.counted,
            late: q.late,
            dropped: q.dropped,
            coverage: q.coverage(),
        }
    }
}
