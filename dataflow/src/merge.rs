//! Pairwise merging of sorted runs, shared by the ordered sink (records of
//! one time from every worker) and the pane windows (a window's panes).

/// Merges `runs` with `two`, adjacent runs pairwise, level by level, so
/// each element moves once a level: `ceil(log2(k))` times for `k` runs.
/// `two` always gets the earlier run first. `None` when there is no run.
pub(crate) fn pairwise<R>(mut runs: Vec<R>, mut two: impl FnMut(R, R) -> R) -> Option<R> {
    while runs.len() > 1 {
        let mut next = Vec::with_capacity(runs.len().div_ceil(2));
        let mut pairs = runs.into_iter();
        while let Some(earlier) = pairs.next() {
            next.push(match pairs.next() {
                Some(later) => two(earlier, later),
                None => earlier,
            });
        }
        runs = next;
    }
    runs.pop()
}
