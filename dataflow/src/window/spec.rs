//! Window shapes: tumbling, sliding and session, aligned to the epoch.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::time::{align_down, EventTime, MAX_EVENT_TIME};

/// The most windows a sliding spec may put one record in: each is a
/// window end to update per record, so a day's windows sliding by a
/// millisecond (86,400,000 each) would never finish a record.
pub const MAX_WINDOWS_PER_RECORD: u64 = 100_000;

/// Which windows a record belongs to.
///
/// Tumbling and sliding windows are aligned to the Unix epoch plus `offset`:
/// a window of a sliding spec starts at every `offset + k * slide`, and a
/// record at `ts` belongs to every window whose start lies in
/// `(ts - size, ts]`. A window that would begin before the epoch is reported
/// as beginning at 0 (event time is unsigned).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum WindowSpec {
    /// Disjoint windows of `size` ms.
    Tumbling {
        /// Length in ms.
        size: u64,
        /// Shift of the window grid from the epoch, in ms.
        offset: u64,
    },
    /// Windows of `size` ms starting every `slide` ms.
    Sliding {
        /// Length in ms.
        size: u64,
        /// Distance between window starts in ms.
        slide: u64,
        /// Shift of the window grid from the epoch, in ms.
        offset: u64,
    },
    /// A window per burst of activity, closed after `gap` ms without records.
    Session {
        /// Inactivity that ends a session, in ms.
        gap: u64,
    },
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

impl WindowSpec {
    /// Tumbling windows of `size` ms; a size of 0 is an error.
    ///
    /// # Examples
    /// ```
    /// use keyflow_dataflow::prelude::*;
    /// assert!(WindowSpec::tumbling(HOUR).is_ok());
    /// assert!(WindowSpec::tumbling(0).unwrap_err().to_string().contains("size 0"));
    /// ```
    pub fn tumbling(size: u64) -> Result<Self> {
        let spec = WindowSpec::Tumbling { size, offset: 0 };
        spec.validate().map(|()| spec)
    }

    /// Sliding windows of `size` ms every `slide` ms; both must be positive.
    ///
    /// # Examples
    /// ```
    /// use keyflow_dataflow::prelude::*;
    /// let spec = WindowSpec::sliding(10 * MINUTE, MINUTE).unwrap();
    /// assert_eq!(spec, WindowSpec::Sliding { size: 600_000, slide: 60_000, offset: 0 });
    /// ```
    pub fn sliding(size: u64, slide: u64) -> Result<Self> {
        let spec = WindowSpec::Sliding {
            size,
            slide,
            offset: 0,
        };
        spec.validate().map(|()| spec)
    }

    /// Session windows closed by `gap` ms of inactivity; the gap must be
    /// positive.
    ///
    /// # Examples
    /// ```
    /// use keyflow_dataflow::prelude::*;
    /// assert!(WindowSpec::session(30 * MINUTE).is_ok());
    /// assert!(WindowSpec::session(0).is_err());
    /// ```
    pub fn session(gap: u64) -> Result<Self> {
        let spec = WindowSpec::Session { gap };
        spec.validate().map(|()| spec)
    }

    /// The same spec with its grid shifted by `offset` ms (not for sessions).
    pub fn with_offset(self, new_offset: u64) -> Self {
        match self {
            WindowSpec::Tumbling { size, .. } => WindowSpec::Tumbling {
                size,
                offset: new_offset,
            },
            WindowSpec::Sliding { size, slide, .. } => WindowSpec::Sliding {
                size,
                slide,
                offset: new_offset,
            },
            s @ WindowSpec::Session { .. } => s,
        }
    }

    /// Checks the spec, naming the bad value: sizes, slides and gaps must
    /// be positive and no longer than event time
    /// ([`MAX_EVENT_TIME`](crate::time::MAX_EVENT_TIME) ms, so that window
    /// ends cannot wrap), and a sliding spec may put a record in at most
    /// [`MAX_WINDOWS_PER_RECORD`] windows.
    ///
    /// ```
    /// use keyflow_dataflow::prelude::*;
    /// let err = WindowSpec::sliding(DAY, 1).unwrap_err().to_string();
    /// assert!(err.contains("86400000 windows"), "{err}");
    /// assert!(WindowSpec::tumbling(u64::MAX).is_err());
    /// ```
    pub fn validate(&self) -> Result<()> {
        let longest = match *self {
            WindowSpec::Tumbling { size, .. } => size,
            WindowSpec::Sliding { size, slide, .. } => size.max(slide),
            WindowSpec::Session { gap } => gap,
        };
        if longest > MAX_EVENT_TIME {
            return Err(Error::Config(format!(
                "window of {longest} ms is longer than event time spans (at most \
                 {MAX_EVENT_TIME} ms)"
            )));
        }
        match *self {
            WindowSpec::Tumbling { size: 0, .. } => Err(Error::Config(
                "tumbling window size 0 must be positive".into(),
            )),
            WindowSpec::Sliding { size, slide, .. } if size == 0 || slide == 0 => {
                Err(Error::Config(format!(
                    "sliding window size {size} ms and slide {slide} ms must both be positive"
                )))
            }
            WindowSpec::Sliding { size, slide, .. }
                if size.div_ceil(slide) > MAX_WINDOWS_PER_RECORD =>
            {
                Err(Error::Config(format!(
                    "sliding window size {size} ms over slide {slide} ms puts every record \
                     in {} windows: at most {MAX_WINDOWS_PER_RECORD}",
                    size.div_ceil(slide)
                )))
            }
            WindowSpec::Session { gap: 0 } => {
                Err(Error::Config("session gap 0 must be positive".into()))
            }
            _ => Ok(()),
        }
    }

    /// `(size, slide, offset)` of a grid spec; `None` for sessions.
    pub(crate) fn grid(&self) -> Option<Grid> {
        match *self {
            WindowSpec::Tumbling { size, offset } => Some(Grid::new(size, size, offset)),
            WindowSpec::Sliding {
                size,
                slide,
                offset,
            } => Some(Grid::new(size, slide, offset)),
            WindowSpec::Session { .. } => None,
        }
    }
}

/// The pane layout of a tumbling or sliding spec.
///
/// Panes are the `gcd(size, slide)`-long pieces every window is made of; a
/// record updates exactly one pane, and a window's value merges its panes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Grid {
    pub size: u64,
    pub slide: u64,
    pub offset: u64,
    pub pane: u64,
}

impl Grid {
    pub fn new(size: u64, slide: u64, offset: u64) -> Self {
        Grid {
            size,
            slide,
            offset,
            pane: gcd(size, slide),
        }
    }

    /// The pane (by its start) that holds `ts`.
    #[inline]
    pub fn pane_of(&self, ts: EventTime) -> EventTime {
        align_down(ts, self.pane, self.offset)
    }

    /// Ends of the windows that hold the pane starting at `pane`, from the
    /// latest down: every aligned `e` with `pane < e <= pane + size`.
    pub fn ends_of(&self, pane: EventTime) -> impl Iterator<Item = EventTime> {
        let end_phase = (self.offset + self.size) % self.slide;
        let top = align_down(pane + self.size, self.slide, end_phase);
        let slide = self.slide;
        (0..)
            .map(move |k: u64| top.checked_sub(k * slide))
            .take_while(move |e| e.is_some_and(|e| e > pane))
            .flatten()
    }

    /// The latest end of a window holding the pane at `pane`.
    pub fn last_end(&self, pane: EventTime) -> Option<EventTime> {
        self.ends_of(pane).next()
    }

    /// The start of the window ending at `end`.
    pub fn start_of(&self, end: EventTime) -> EventTime {
        end.saturating_sub(self.size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sliding_ends_cover_every_window_holding_the_pane() {
        let g = Grid::new(10, 3, 0);
        assert_eq!(g.pane, 1);
        // windows start at multiples of 3; ts=7 is in [0,10) [3,13) [6,16)
        let ends: Vec<_> = g.ends_of(g.pane_of(7)).collect();
        assert_eq!(ends, vec![16, 13, 10]);
    }

    #[test]
    fn tumbling_has_one_window_per_pane() {
        let g = Grid::new(60, 60, 0);
        assert_eq!(g.ends_of(g.pane_of(61)).collect::<Vec<_>>(), vec![120]);
        let shifted = Grid::new(60, 60, 10);
        assert_eq!(shifted.pane_of(65), 10);
        assert_eq!(shifted.ends_of(10).collect::<Vec<_>>(), vec![70]);
        // Before the first aligned start: the window [-50, 10) reports start 0.
        assert_eq!(
            shifted.ends_of(shifted.pane_of(5)).collect::<Vec<_>>(),
            vec![10]
        );
    }

    #[test]
    fn hopping_windows_may_skip_panes() {
        // size 2, slide 5: windows [0,2) [5,7); pane = 1.
        let g = Grid::new(2, 5, 0);
        assert_eq!(g.ends_of(1).collect::<Vec<_>>(), vec![2]);
        assert!(g.ends_of(3).next().is_none());
    }
}
