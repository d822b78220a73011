//! Pairwise merging of sorted runs, shared by the ordered sink (records of
//! one time from every worker) and the pane windows (a window's panes).

/// Merges `runs` with `two`, adjacent runs pairwise, level by level, so
/// each element moves once a level: `ceil(log2(k))` times for `k` runs.
/// `two` always gets the earlier run first. `None` when there is no run.
pub(crate) fn pairwise<R>(runs: Vec<R>, two: impl FnMut(R, R) -> R) -> Option<R> {
    pairwise_until(runs, 1, two).pop()
}

/// As [`pairwise`], stopping at the first level with at most `most` runs
/// (at least 1): for a caller that merges the last few itself, as it
/// consumes them.
pub(crate) fn pairwise_until<R>(
    mut runs: Vec<R>,
    most: usize,
    mut two: impl FnMut(R, R) -> R,
) -> Vec<R> {
    while runs.len() > most.max(1) {
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
    runs
}
