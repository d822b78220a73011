//! The per-window report: top pages, browser and device shares, conversion.
//!
//! It is built in two keyed steps. The first counts each window's events per
//! [`Facet`] (a page, a browser, a device or a session) with [`Tally`];
//! each facet value is owned by one worker, so this is where the events are
//! spread. The second gathers the tallies of one window on one worker with
//! [`Report`], which ranks and divides them into an [`ActivityWindow`].

use std::sync::Arc;

use keyflow_dataflow::hash::StableMap;
use keyflow_dataflow::time::EventTime;
use keyflow_dataflow::window::Aggregator;
use keyflow_operators::topk::best_k;
use serde::{Deserialize, Serialize};

use super::event::Float;

/// What a window's events are broken down by.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Facet {
    /// A page URL.
    Page(Arc<str>),
    /// A browser name.
    Browser(Arc<str>),
    /// A device type.
    Device(Arc<str>),
    /// A session id.
    Session(Arc<str>),
}

/// The events of one facet value in one window, and whether one of them was
/// a purchase.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Tally {
    /// Events.
    pub events: u64,
    /// Whether any of them was a purchase.
    pub purchased: bool,
}

impl Tally {
    /// Takes in a later tally of the same facet value and window: an update
    /// made by late events has counted everything the earlier one had and
    /// more, so the larger count and any purchase win. Tallies of one
    /// window never meet otherwise (each facet value has one), so this is
    /// also their union.
    fn absorb(&mut self, other: &Tally) {
        self.events = self.events.max(other.events);
        self.purchased |= other.purchased;
    }
}

/// Counts the events of a facet value; a value of `true` marks a purchase.
///
/// # Examples
/// ```
/// use keyflow_dataflow::prelude::*;
/// use keyflow_dataflow::testing::example;
/// use keyflow_jobs::activity::{Tally, TallyEvents};
///
/// // Session `1` bought, session `2` did not.
/// let out = example(vec![(1, (1u32, false)), (2, (1, true)), (3, (2, false))], |e| {
///     let tallies = e.key_by(|kv| kv).window(WindowSpec::tumbling(10)?).aggregate("tallies", TallyEvents);
///     Ok(tallies.results.map(|r| (r.key, r.value)))
/// });
/// let expected = vec![
///     (10, (1, Tally { events: 2, purchased: true })),
///     (10, (2, Tally { events: 1, purchased: false })),
/// ];
/// assert_eq!(out.unwrap(), expected);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct TallyEvents;

impl Aggregator<bool> for TallyEvents {
    type Acc = Tally;
    type Output = Tally;
    fn init(&self) -> Tally {
        Tally::default()
    }
    fn add(&self, acc: &mut Tally, purchase: bool) {
        acc.events += 1;
        acc.purchased |= purchase;
    }
    fn merge(&self, acc: &mut Tally, other: &Tally) {
        acc.events += other.events;
        acc.purchased |= other.purchased;
    }
    fn finish(&self, acc: &Tally) -> Tally {
        *acc
    }
}

/// A page and its events in a window.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PageEvents {
    /// The page URL.
    pub page: Arc<str>,
    /// Its events in the window.
    pub events: u64,
}

/// A browser's or device type's events and share of a window's events.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Share {
    /// The browser or device type.
    pub name: Arc<str>,
    /// Its events in the window.
    pub events: u64,
    /// `events` divided by the window's events.
    pub share: Float,
}

/// Sessions, purchasing sessions, and their ratio.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Conversion {
    /// Distinct sessions with an event in the window.
    pub sessions: u64,
    /// Distinct sessions with a purchase in the window.
    pub purchasing: u64,
    /// `purchasing / sessions`; 0 when there are no sessions.
    pub rate: Float,
}

/// One window's report: a line of the job's `--out`. Fields serialize in
/// this order; `update` only when set.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
pub struct ActivityWindow {
    /// First millisecond of the window.
    pub start: EventTime,
    /// First millisecond after the window.
    pub end: EventTime,
    /// Events in the window.
    pub events: u64,
    /// The pages with most events, most first, ties by page ascending.
    pub top_pages: Vec<PageEvents>,
    /// Every browser seen, by name.
    pub browsers: Vec<Share>,
    /// Every device type seen, by name.
    pub devices: Vec<Share>,
    /// Sessions that bought, out of all sessions.
    pub conversion: Conversion,
    /// `true` when late events (under allowed lateness) changed a window
    /// already reported: this line replaces the earlier one.
    #[serde(default)]
    pub update: bool,
}

// JSON leaves `update` out when false; bincode (between processes, in
// checkpoints) always writes it.
keyflow_dataflow::serialize_with_update!(
    ActivityWindow,
    [start, end, events, top_pages, browsers, devices, conversion]
);

/// The tallies of one window, by facet value.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WindowTallies {
    tallies: StableMap<Facet, Tally>,
}

/// Gathers the tallies of one window into its report (the window's times
/// are left 0, for the caller to set): every browser and device type with
/// its share, the `top` pages with most events (all when `top` is 0), and
/// the conversion of its sessions.
///
/// # Examples
/// ```
/// use keyflow_dataflow::window::Aggregator;
/// use keyflow_jobs::activity::{Facet, Report, Tally};
///
/// let report = Report { top: 1 };
/// let mut acc = report.init();
/// let tally = |events, purchased| Tally { events, purchased };
/// report.add(&mut acc, (Facet::Page("/a".into()), tally(1, false)));
/// report.add(&mut acc, (Facet::Page("/b".into()), tally(3, true)));
/// report.add(&mut acc, (Facet::Browser("Firefox".into()), tally(4, true)));
/// report.add(&mut acc, (Facet::Session("s1".into()), tally(1, false)));
/// report.add(&mut acc, (Facet::Session("s2".into()), tally(3, true)));
/// let window = report.finish(&acc);
/// assert_eq!(window.events, 4);
/// assert_eq!(&*window.top_pages[0].page, "/b");
/// assert_eq!(window.browsers[0].share.0, 1.0);
/// assert_eq!((window.conversion.sessions, window.conversion.purchasing), (2, 1));
/// assert_eq!(window.conversion.rate.0, 0.5);
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Report {
    /// Pages listed; 0 lists all.
    pub top: usize,
}

impl Aggregator<(Facet, Tally)> for Report {
    type Acc = WindowTallies;
    type Output = ActivityWindow;

    fn init(&self) -> WindowTallies {
        WindowTallies::default()
    }

    fn add(&self, acc: &mut WindowTallies, (facet, tally): (Facet, Tally)) {
        acc.tallies.entry(facet).or_default().absorb(&tally);
    }

    fn merge(&self, acc: &mut WindowTallies, other: &WindowTallies) {
        for (facet, tally) in &other.tallies {
            match acc.tallies.get_mut(facet) {
                Some(mine) => mine.absorb(tally),
                None => {
                    acc.tallies.insert(facet.clone(), *tally);
                }
            }
        }
    }

    fn finish(&self, acc: &WindowTallies) -> ActivityWindow {
        let mut pages = Vec::new();
        let (mut browsers, mut devices) = (Vec::new(), Vec::new());
        let (mut sessions, mut purchasing) = (0, 0);
        for (facet, tally) in &acc.tallies {
            match facet {
                Facet::Page(page) => pages.push(PageEvents {
                    page: Arc::clone(page),
                    events: tally.events,
                }),
                Facet::Browser(name) => browsers.push((Arc::clone(name), tally.events)),
                Facet::Device(name) => devices.push((Arc::clone(name), tally.events)),
                Facet::Session(_) => {
                    sessions += 1;
                    purchasing += tally.purchased as u64;
                }
            }
        }
        // Every event has one browser.
        let events: u64 = browsers.iter().map(|(_, n)| n).sum();
        let shares = |mut named: Vec<(Arc<str>, u64)>| {
            named.sort();
            named
                .into_iter()
                .map(|(name, n)| Share {
                    name,
                    events: n,
                    share: Float(n as f64 / events as f64),
                })
                .collect()
        };
        // Most events first; `PageEvents` orders by page, which breaks ties.
        let top_pages = best_k(pages, self.top, |a, b| b.events.cmp(&a.events));
        let rate = if sessions == 0 {
            0.0
        } else {
            purchasing as f64 / sessions as f64
        };
        ActivityWindow {
            start: 0,
            end: 0,
            events,
            top_pages,
            browsers: shares(browsers),
            devices: shares(devices),
            conversion: Conversion {
                sessions,
                purchasing,
                rate: Float(rate),
            },
            update: false,
        }
    }
}
