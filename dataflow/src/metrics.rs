//! Counters shared by the workers of one process.
//!
//! Nothing is dropped without a counter: every late, malformed or rejected
//! record is counted here, and the CLI prints these counters in its progress
//! line and at the end of a run.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

/// Process-wide counters. Cheap to bump from any worker thread.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Records read from sources (good ones, including late ones).
    pub events: AtomicU64,
    /// Malformed records skipped under the `drop` bad-input policy.
    pub bad: AtomicU64,
    /// Well-formed records with nothing to count (a dump line of 0 views).
    pub skipped: AtomicU64,
    /// Records with a timestamp too far ahead of the watermark, rejected.
    pub future: AtomicU64,
    /// Late records dropped by a windowed operator.
    pub late_dropped: AtomicU64,
    /// Late records sent to a `late` side output.
    pub late_side: AtomicU64,
    /// Window results re-emitted because of allowed lateness.
    pub late_updates: AtomicU64,
    /// Largest source watermark seen in this process (event-time progress).
    pub watermark: AtomicU64,
}

/// A plain copy of [`Metrics`] at one moment.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetricsSnapshot {
    /// See [`Metrics::events`].
    pub events: u64,
    /// See [`Metrics::bad`].
    pub bad: u64,
    /// See [`Metrics::skipped`].
    #[serde(default)]
    pub skipped: u64,
    /// See [`Metrics::future`].
    pub future: u64,
    /// See [`Metrics::late_dropped`].
    pub late_dropped: u64,
    /// See [`Metrics::late_side`].
    pub late_side: u64,
    /// See [`Metrics::late_updates`].
    pub late_updates: u64,
    /// See [`Metrics::watermark`].
    pub watermark: u64,
}

impl Metrics {
    /// Adds `n` to a counter.
    #[inline]
    pub fn add(counter: &AtomicU64, n: u64) {
        if n > 0 {
            counter.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Raises the published watermark to at least `wm`.
    pub fn raise_watermark(&self, wm: u64) {
        self.watermark.fetch_max(wm, Ordering::Relaxed);
    }

    /// Copies every counter.
    pub fn snapshot(&self) -> MetricsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        MetricsSnapshot {
            events: get(&self.events),
            bad: get(&self.bad),
            skipped: get(&self.skipped),
            future: get(&self.future),
            late_dropped: get(&self.late_dropped),
            late_side: get(&self.late_side),
            late_updates: get(&self.late_updates),
            watermark: get(&self.watermark),
        }
    }
}

impl MetricsSnapshot {
    /// All late records, whatever their fate.
    pub fn late(&self) -> u64 {
        self.late_dropped + self.late_side
    }

    /// Renders the counters in Prometheus' text exposition format.
    ///
    /// # Examples
    /// ```
    /// use keyflow_dataflow::metrics::MetricsSnapshot;
    /// let text = MetricsSnapshot { events: 3, ..Default::default() }.prometheus();
    /// assert!(text.contains("keyflow_events_total 3"));
    /// ```
    pub fn prometheus(&self) -> String {
        let rows = [
            ("keyflow_events_total", "counter", self.events),
            ("keyflow_bad_records_total", "counter", self.bad),
            ("keyflow_skipped_records_total", "counter", self.skipped),
            ("keyflow_future_records_total", "counter", self.future),
            ("keyflow_late_dropped_total", "counter", self.late_dropped),
            ("keyflow_late_side_output_total", "counter", self.late_side),
            ("keyflow_late_updates_total", "counter", self.late_updates),
            ("keyflow_watermark_ms", "gauge", self.watermark),
        ];
        let mut out = String::new();
        for (name, kind, value) in rows {
            out.push_str(&format!("# TYPE {name} {kind}\n{name} {value}\n"));
        }
        out
    }
}
