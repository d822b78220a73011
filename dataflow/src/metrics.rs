//! Counters shared by the workers of one process.
//!
//! Nothing is dropped without a counter: every late, malformed or rejected
//! record is counted here, and the CLI prints these counters in its progress
//! line and at the end of a run.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

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
    steps: Mutex<BTreeMap<String, Arc<StepMetrics>>>,
    gauges: Mutex<BTreeMap<String, Arc<AtomicI64>>>,
    /// The latest report of each other process of the cluster, by index
    /// (kept on process 0).
    peers: Mutex<BTreeMap<usize, Report>>,
}

/// One process's counters, as it sends them to process 0.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// The process-wide counters.
    pub totals: MetricsSnapshot,
    /// Each step's counters, by id.
    pub steps: Vec<(String, StepSnapshot)>,
    /// The job's own gauges, by name.
    pub gauges: Vec<(String, i64)>,
}

impl Report {
    /// Adds `other`'s counters to these: counts are summed, watermarks are
    /// the higher one, and gauges this report has keep their values.
    pub fn add(&mut self, other: &Report) {
        self.totals.add(&other.totals);
        for (id, theirs) in &other.steps {
            match self.steps.iter_mut().find(|(mine, _)| mine == id) {
                Some((_, ours)) => ours.add(theirs),
                None => self.steps.push((id.clone(), *theirs)),
            }
        }
        for (name, value) in &other.gauges {
            if !self.gauges.iter().any(|(mine, _)| mine == name) {
                self.gauges.push((name.clone(), *value));
            }
        }
        self.steps.sort_by(|a, b| a.0.cmp(&b.0));
        self.gauges.sort();
    }
}

/// The counters of one step, by its id: summed over this process's workers.
#[derive(Debug, Default)]
pub struct StepMetrics {
    /// Records the step took in.
    pub records_in: AtomicU64,
    /// Records the step sent on.
    pub records_out: AtomicU64,
    /// Late records the step saw (dropped, side-output or applied).
    pub late: AtomicU64,
    /// Records the step dropped: late beyond its policy, or too far ahead.
    pub dropped: AtomicU64,
    /// Malformed records the step skipped.
    pub bad: AtomicU64,
    /// For a source step: the highest watermark of its partitions in this
    /// process (event time, ms); 0 until it has one.
    pub watermark: AtomicU64,
    /// Whether the step is a source (see [`Metrics::source`]).
    pub source: AtomicBool,
}

/// Reads one counter of a [`StepSnapshot`].
type StepField = fn(&StepSnapshot) -> u64;

/// A plain copy of one step's [`StepMetrics`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepSnapshot {
    /// See [`StepMetrics::records_in`].
    pub records_in: u64,
    /// See [`StepMetrics::records_out`].
    pub records_out: u64,
    /// See [`StepMetrics::late`].
    pub late: u64,
    /// See [`StepMetrics::dropped`].
    pub dropped: u64,
    /// See [`StepMetrics::bad`].
    pub bad: u64,
    /// See [`StepMetrics::watermark`].
    #[serde(default)]
    pub watermark: u64,
    /// See [`StepMetrics::source`].
    #[serde(default)]
    pub source: bool,
}

impl StepSnapshot {
    /// Adds `other`'s counts; the watermark is the higher one.
    pub fn add(&mut self, other: &StepSnapshot) {
        self.records_in += other.records_in;
        self.records_out += other.records_out;
        self.late += other.late;
        self.dropped += other.dropped;
        self.bad += other.bad;
        self.watermark = self.watermark.max(other.watermark);
        self.source |= other.source;
    }
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

    /// The counters of step `id`, shared by every worker of this process
    /// that runs it.
    pub fn step(&self, id: &str) -> Arc<StepMetrics> {
        let mut steps = self.steps.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(steps.entry(id.to_string()).or_default())
    }

    /// A job's own gauge named `name` (such as a result's delay), shared by
    /// this process's workers; rendered as `keyflow_<name>` by
    /// [`Metrics::prometheus`].
    ///
    /// # Examples
    /// ```
    /// use std::sync::atomic::Ordering;
    /// use keyflow_dataflow::metrics::Metrics;
    /// let metrics = Metrics::default();
    /// metrics.gauge("delay_ms").store(-5, Ordering::Relaxed);
    /// assert_eq!(metrics.gauges(), vec![("delay_ms".to_string(), -5)]);
    /// assert!(metrics.prometheus().contains("keyflow_delay_ms -5"));
    /// ```
    pub fn gauge(&self, name: &str) -> Arc<AtomicI64> {
        let mut gauges = self.gauges.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(gauges.entry(name.to_string()).or_default())
    }

    /// The value of every gauge, by name.
    pub fn gauges(&self) -> Vec<(String, i64)> {
        let gauges = self.gauges.lock().unwrap_or_else(|p| p.into_inner());
        gauges
            .iter()
            .map(|(name, g)| (name.clone(), g.load(Ordering::Relaxed)))
            .collect()
    }

    /// The counters of source step `id`: [`Metrics::step`], marked as a
    /// source, whose `records_out` are the events it read.
    pub fn source(&self, id: &str) -> Arc<StepMetrics> {
        let step = self.step(id);
        step.source.store(true, Ordering::Relaxed);
        step
    }

    /// Copies the counters of every step, by id.
    ///
    /// # Examples
    /// ```
    /// use keyflow_dataflow::metrics::Metrics;
    /// let metrics = Metrics::default();
    /// Metrics::add(&metrics.step("counts").late, 2);
    /// assert_eq!(metrics.steps()[0].1.late, 2);
    /// ```
    pub fn steps(&self) -> Vec<(String, StepSnapshot)> {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let steps = self.steps.lock().unwrap_or_else(|p| p.into_inner());
        steps
            .iter()
            .map(|(id, m)| {
                let snapshot = StepSnapshot {
                    records_in: get(&m.records_in),
                    records_out: get(&m.records_out),
                    late: get(&m.late),
                    dropped: get(&m.dropped),
                    bad: get(&m.bad),
                    watermark: get(&m.watermark),
                    source: m.source.load(Ordering::Relaxed),
                };
                (id.clone(), snapshot)
            })
            .collect()
    }

    /// Renders the counters in Prometheus' text exposition format: per
    /// step (labelled `step="id"`) the events each source read, late and
    /// bad records, records in, out and dropped, and each source's
    /// watermark lag behind the wall clock; then the process-wide counters
    /// of [`MetricsSnapshot::prometheus`]. All over the cluster, on process
    /// 0 (see [`Metrics::cluster`]).
    ///
    /// # Examples
    /// ```
    /// use keyflow_dataflow::metrics::Metrics;
    /// let metrics = Metrics::default();
    /// Metrics::add(&metrics.source("clicks").records_out, 5);
    /// Metrics::add(&metrics.step("counts").records_in, 3);
    /// let text = metrics.prometheus();
    /// assert!(text.contains("keyflow_events_total{step=\"clicks\"} 5"));
    /// assert!(text.contains("keyflow_step_records_in_total{step=\"counts\"} 3"));
    /// ```
    pub fn prometheus(&self) -> String {
        self.prometheus_at(crate::time::wall_clock_ms())
    }

    /// [`Metrics::prometheus`] with the wall clock at `now` (ms since the
    /// Unix epoch).
    ///
    /// # Examples
    /// ```
    /// use keyflow_dataflow::metrics::Metrics;
    /// let metrics = Metrics::default();
    /// metrics.source("clicks").watermark.store(10_000, std::sync::atomic::Ordering::Relaxed);
    /// let text = metrics.prometheus_at(12_500);
    /// assert!(text.contains("keyflow_watermark_lag_seconds{step=\"clicks\"} 2.5"), "{text}");
    /// ```
    pub fn prometheus_at(&self, now: u64) -> String {
        let cluster = self.cluster();
        let steps = cluster.steps;
        let sources: Vec<&(String, StepSnapshot)> =
            steps.iter().filter(|(_, s)| s.source).collect();
        let mut out = String::new();
        let mut family = |name: &str, kind: &str, help: &str, rows: Vec<(&str, String)>| {
            out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
            for (id, value) in rows {
                let id = id
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n");
                out.push_str(&format!("{name}{{step=\"{id}\"}} {value}\n"));
            }
        };
        let per_source = |get: &dyn Fn(&StepSnapshot) -> String| {
            sources
                .iter()
                .map(|(id, s)| (id.as_str(), get(s)))
                .collect()
        };
        let per_step = |get: StepField| {
            steps
                .iter()
                .map(|(id, s)| (id.as_str(), get(s).to_string()))
                .collect()
        };
        family(
            "keyflow_events_total",
            "counter",
            "Events read by each source step, late ones included.",
            per_source(&|s| s.records_out.to_string()),
        );
        family(
            "keyflow_late_events_total",
            "counter",
            "Late records seen by each step (at a source: behind its watermark).",
            per_step(|s| s.late),
        );
        family(
            "keyflow_bad_records_total",
            "counter",
            "Malformed records skipped by each step.",
            per_step(|s| s.bad),
        );
        family(
            "keyflow_watermark_lag_seconds",
            "gauge",
            "Wall-clock time minus the watermark of each source step (NaN before its first).",
            per_source(&|s| match s.watermark {
                0 => "NaN".to_string(),
                wm => format!("{}", (now as f64 - wm as f64) / 1000.0),
            }),
        );
        family(
            "keyflow_step_records_in_total",
            "counter",
            "Records each step took in.",
            per_step(|s| s.records_in),
        );
        family(
            "keyflow_step_records_out_total",
            "counter",
            "Records each step sent on.",
            per_step(|s| s.records_out),
        );
        family(
            "keyflow_step_dropped_total",
            "counter",
            "Records each step dropped: late beyond its policy, or too far ahead.",
            per_step(|s| s.dropped),
        );
        for (name, value) in cluster.gauges {
            let name: String = name
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                .collect();
            out.push_str(&format!(
                "# TYPE keyflow_{name} gauge\nkeyflow_{name} {value}\n"
            ));
        }
        out.push_str(&cluster.totals.prometheus());
        out
    }

    /// This process's counters, to send to process 0.
    pub fn report(&self) -> Report {
        Report {
            totals: self.snapshot(),
            steps: self.steps(),
            gauges: self.gauges(),
        }
    }

    /// Keeps `report` as the latest of process `process`.
    pub fn note_peer(&self, process: usize, report: Report) {
        let mut peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        peers.insert(process, report);
    }

    /// This process's counters plus the latest report of every other
    /// process that sent one: the cluster's, on process 0 (elsewhere, and
    /// without a cluster, this process's own).
    ///
    /// # Examples
    /// ```
    /// use keyflow_dataflow::metrics::Metrics;
    /// let (zero, one) = (Metrics::default(), Metrics::default());
    /// Metrics::add(&zero.source("clicks").records_out, 5);
    /// Metrics::add(&one.source("clicks").records_out, 7);
    /// zero.note_peer(1, one.report());
    /// assert_eq!(zero.cluster().steps[0].1.records_out, 12);
    /// assert!(zero.prometheus().contains("keyflow_events_total{step=\"clicks\"} 12"));
    /// ```
    pub fn cluster(&self) -> Report {
        let mut all = self.report();
        let peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        for report in peers.values() {
            all.add(report);
        }
        all
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
    /// Adds `other`'s counts; the watermark is the higher one.
    pub fn add(&mut self, other: &MetricsSnapshot) {
        self.events += other.events;
        self.bad += other.bad;
        self.skipped += other.skipped;
        self.future += other.future;
        self.late_dropped += other.late_dropped;
        self.late_side += other.late_side;
        self.late_updates += other.late_updates;
        self.watermark = self.watermark.max(other.watermark);
    }

    /// All late records, whatever their fate.
    pub fn late(&self) -> u64 {
        self.late_dropped + self.late_side
    }

    /// Renders the process-wide counters that have no per-step form in
    /// Prometheus' text exposition format ([`Metrics::prometheus`] adds the
    /// per-step ones: events, late and bad records).
    ///
    /// # Examples
    /// ```
    /// use keyflow_dataflow::metrics::MetricsSnapshot;
    /// let text = MetricsSnapshot { future: 3, ..Default::default() }.prometheus();
    /// assert!(text.contains("keyflow_future_records_total 3"));
    /// ```
    pub fn prometheus(&self) -> String {
        let rows = [
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
