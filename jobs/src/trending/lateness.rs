//! The minute ranking under allowed lateness: late events re-emit the
//! minutes they change, marked as updates.

use std::sync::Arc;

use keyflow_dataflow::prelude::*;

use super::{TrendingConfig, TrendingMinute};
use crate::error::Result;
use crate::pageviews::PageView;

/// Placeholder until the update path lands: ranks on-time events only.
pub(super) fn minutes_with_updates<'scope>(
    events: EventStream<'scope, PageView>,
    ctx: &Arc<Context>,
    config: &TrendingConfig,
) -> Result<EventStream<'scope, TrendingMinute>> {
    use keyflow_dataflow::late::SplitLate;
    let (on_time, _late) = events.split_late();
    super::ranked_minutes(on_time, ctx, config)
}
