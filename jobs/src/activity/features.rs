//! Per-user features of a window: counts per action and the mean click
//! position.

use keyflow_dataflow::window::Aggregator;
use keyflow_operators::exact_sum::ExactSum;
use serde::{Deserialize, Serialize};

use super::event::{Action, Float};

/// One user's activity in one window.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct UserFeatures {
    /// `view` events.
    pub views: u64,
    /// `click` events.
    pub clicks: u64,
    /// `scroll` events.
    pub scrolls: u64,
    /// `add_to_cart` events.
    pub add_to_cart: u64,
    /// `purchase` events.
    pub purchases: u64,
    /// `search` events.
    pub searches: u64,
    /// Mean `click_x` over the clicks; `None` without clicks.
    pub mean_click_x: Option<Float>,
    /// Mean `click_y` over the clicks; `None` without clicks.
    pub mean_click_y: Option<Float>,
}

/// What [`Features`] keeps per user and window: counts per action (in the
/// order of [`Action::ALL`]) and exact sums of the click positions, so that
/// the means do not depend on the order events are combined in.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FeatureSums {
    counts: [u64; 6],
    positions: u64,
    x: ExactSum,
    y: ExactSum,
}

/// Aggregates a user's `(action, click position)` values into
/// [`UserFeatures`]. The means are the exact sums of the positions, rounded
/// once, divided by the number of positions: the same bits at any number of
/// workers.
///
/// # Examples
/// ```
/// use keyflow_dataflow::prelude::*;
/// use keyflow_dataflow::testing::example;
/// use keyflow_jobs::activity::{Action, Features, Float};
///
/// let click = |x, y| (Action::Click, Some((Float(x), Float(y))));
/// let events = vec![(1, (7u32, click(10.0, 4.0))), (2, (7, (Action::View, None))), (3, (7, click(20.0, 5.0)))];
/// let out = example(events, |e| {
///     let users = e.key_by(|kv| kv).window(WindowSpec::tumbling(10)?).aggregate("users", Features);
///     Ok(users.results.map(|r| r.value))
/// });
/// let (_, features) = &out.unwrap()[0];
/// assert_eq!((features.views, features.clicks), (1, 2));
/// assert_eq!(features.mean_click_x, Some(Float(15.0)));
/// assert_eq!(features.mean_click_y, Some(Float(4.5)));
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Features;

impl Aggregator<(Action, Option<(Float, Float)>)> for Features {
    type Acc = FeatureSums;
    type Output = UserFeatures;

    fn init(&self) -> FeatureSums {
        FeatureSums::default()
    }

    fn add(&self, acc: &mut FeatureSums, (action, click): (Action, Option<(Float, Float)>)) {
        acc.counts[action.index()] += 1;
        if let Some((x, y)) = click {
            acc.positions += 1;
            acc.x.add(x.0);
            acc.y.add(y.0);
        }
    }

    fn merge(&self, acc: &mut FeatureSums, other: &FeatureSums) {
        for (mine, theirs) in acc.counts.iter_mut().zip(other.counts) {
            *mine += theirs;
        }
        acc.positions += other.positions;
        acc.x.merge(&other.x);
        acc.y.merge(&other.y);
    }

    fn finish(&self, acc: &FeatureSums) -> UserFeatures {
        let mean =
            |sum: &ExactSum| (acc.positions > 0).then(|| Float(sum.value() / acc.positions as f64));
        let [views, clicks, scrolls, add_to_cart, purchases, searches] = acc.counts;
        UserFeatures {
            views,
            clicks,
            scrolls,
            add_to_cart,
            purchases,
            searches,
            mean_click_x: mean(&acc.x),
            mean_click_y: mean(&acc.y),
        }
    }
}
