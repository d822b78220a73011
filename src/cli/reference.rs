//! The benchmark's reference: the trending rule as a plain single-thread
//! loop with no dataflow at all. Article ids are dense ranks, so each
//! article's panes sit in one array indexed by id: no hashing. It reads the
//! same generated events (by index) and must find the same trending
//! articles.

use std::collections::BTreeMap;

use keyflow::jobs::pageviews::GeneratorSource;

const MINUTE: u64 = 60_000;
const PER_WINDOW: u32 = 10;
const WINDOWS: usize = 6;
const SPAN: u32 = PER_WINDOW * WINDOWS as u32;

#[derive(Default, Clone)]
struct Panes {
    minutes: Vec<(u32, u32)>,
    seen_at: u32,
}

/// What the reference found: per evaluated minute, the trending count and
/// the top-10 article ids.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ReferenceResult {
    /// `(T, trending, top ids)` per evaluated minute.
    pub minutes: Vec<(u64, u64, Vec<u32>)>,
    /// The most articles held at once.
    pub peak_articles: usize,
}

/// Runs the trending rule (10-minute windows, 1-minute slide, six windows,
/// default rule, min views 1, top 10) over events `0..events` of a
/// generator of `count` articles (ids `1..=count`).
pub fn run(source: &GeneratorSource, events: u64, count: u32) -> ReferenceResult {
    let mut articles: Vec<Panes> = vec![Panes::default(); count as usize + 1];
    let mut active = 0usize;
    let mut by_minute: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    let mut result = ReferenceResult::default();
    let mut next_boundary: Option<u32> = None;
    let evaluate = |boundary: u32,
                    articles: &mut [Panes],
                    active: &mut usize,
                    by_minute: &mut BTreeMap<u32, Vec<u32>>,
                    result: &mut ReferenceResult| {
        let first = boundary.saturating_sub(SPAN);
        if by_minute.range(first..boundary).next().is_some() {
            let mut trending: Vec<(u64, u64, u32)> = Vec::new();
            let candidates: Vec<u32> = by_minute
                .range(first..first + PER_WINDOW)
                .flat_map(|(_, ids)| ids.iter().copied())
                .collect();
            for id in candidates {
                let panes = &mut articles[id as usize];
                if panes.seen_at == boundary {
                    continue;
                }
                panes.seen_at = boundary;
                let mut c = [0u64; WINDOWS];
                for &(m, n) in &panes.minutes {
                    if m >= first && m < boundary {
                        c[((m - first) / PER_WINDOW) as usize] += n as u64;
                    }
                }
                if c[0] >= 1 && c.windows(2).all(|w| w[0] <= w[1]) && c[5] > c[0] {
                    trending.push((c[5] - c[0], c[5], id));
                }
            }
            trending.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.cmp(&a.1)).then(a.2.cmp(&b.2)));
            let top = trending.iter().take(10).map(|t| t.2).collect();
            result
                .minutes
                .push((boundary as u64 * MINUTE, trending.len() as u64, top));
        }
        // Forget minutes no later boundary needs.
        let keep_from = (boundary + 1).saturating_sub(SPAN);
        while let Some(entry) = by_minute.first_entry() {
            if *entry.key() >= keep_from {
                break;
            }
            for id in entry.remove() {
                let panes = &mut articles[id as usize];
                if !panes.minutes.is_empty() {
                    panes.minutes.retain(|(m, _)| *m >= keep_from);
                    if panes.minutes.is_empty() {
                        *active -= 1;
                    }
                }
            }
        }
    };
    for i in 0..events {
        let minute = (source.time_of(i) / MINUTE) as u32;
        let id = source.article_id(i);
        let boundary = *next_boundary.get_or_insert(minute + 1);
        // Events come in time order: every boundary at or before this
        // minute is complete.
        for b in boundary..=minute {
            evaluate(b, &mut articles, &mut active, &mut by_minute, &mut result);
            next_boundary = Some(b + 1);
        }
        let panes = &mut articles[id as usize];
        match panes.minutes.last_mut() {
            Some((m, n)) if *m == minute => *n += 1,
            last => {
                if last.is_none() {
                    active += 1;
                    result.peak_articles = result.peak_articles.max(active);
                }
                panes.minutes.push((minute, 1));
                by_minute.entry(minute).or_default().push(id);
            }
        }
    }
    if let Some(mut b) = next_boundary {
        while !by_minute.is_empty() {
            evaluate(b, &mut articles, &mut active, &mut by_minute, &mut result);
            b += 1;
        }
    }
    result
}
