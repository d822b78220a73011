//! One interner for all the threads of a process that read named articles.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError, Weak};

use super::article::{name_hash, Article};
use super::interner::{as_bytes, Interner, NameBytes};

/// Shards, each with a lock of its own: a batch of names takes each lock
/// once, and a thread that finds one taken goes on to the next.
const SHARDS: usize = 16;

/// The interner the live readers of this process share (see
/// [`SharedInterner::current`]).
static CURRENT: Mutex<Weak<SharedInterner>> = Mutex::new(Weak::new());

/// An [`Interner`] shared by every worker and read-ahead thread of a
/// process, split in shards by name hash.
///
/// With one interner per thread, each worker allocated its own handle for
/// an article, so each held a table and names of its own, and a keyed
/// operator given two handles to one article compared their names. Shared,
/// every handle to an article is the same allocation, made once per
/// process (and again only after its shard fills and forgets).
///
/// # Examples
/// ```
/// use keyflow_jobs::pageviews::{Article, SharedInterner};
/// let interner = SharedInterner::new(1000);
/// let mut out = Vec::new();
/// interner.get_many(&[("en", "Main_Page"), ("de", "Berlin"), ("en", "Main_Page")], &mut out);
/// assert_eq!(out[0], Article::named("en", "Main_Page"));
/// assert_eq!(out[1], Article::named("de", "Berlin"));
/// assert_eq!(out[0], out[2]);
/// assert_eq!(interner.len(), 2);
/// ```
#[derive(Debug)]
pub struct SharedInterner {
    shards: Box<[Mutex<Interner>]>,
}

impl SharedInterner {
    /// An interner that keeps at most about `capacity` articles: each
    /// shard keeps its share, and forgets its own when full.
    pub fn new(capacity: usize) -> Self {
        let share = capacity.div_ceil(SHARDS);
        SharedInterner {
            shards: (0..SHARDS)
                .map(|_| Mutex::new(Interner::new(share)))
                .collect(),
        }
    }

    /// The interner of the readers alive in this process, or a new one of
    /// `capacity` when there are none: a run's readers share one, and the
    /// next run, once they are gone, starts empty.
    pub fn current(capacity: usize) -> Arc<SharedInterner> {
        current_in(&CURRENT, capacity)
    }

    /// How many articles it holds now.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|shard| lock(shard).len()).sum()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The articles named by `names` (project, title), in order, appended
    /// to `out`. Each shard's lock is taken once: shards another thread
    /// holds are left for later, and waited for only when nothing else is
    /// left.
    pub fn get_many(&self, names: &[(&str, &str)], out: &mut Vec<Article>) {
        self.get_many_bytes(&as_bytes(names), out);
    }

    /// As [`SharedInterner::get_many`], the names given as their bytes,
    /// which must be UTF-8: a reader looks names up in its read buffer,
    /// and the interner checks only those it inserts.
    pub(super) fn get_many_bytes(&self, names: &[NameBytes<'_>], out: &mut Vec<Article>) {
        let hashes: Vec<u32> = names.iter().map(|(p, t)| name_hash(p, t)).collect();
        // The names' indices, grouped by shard (a counting sort).
        let mut starts = [0usize; SHARDS + 1];
        for &hash in &hashes {
            starts[shard(hash) + 1] += 1;
        }
        for s in 0..SHARDS {
            starts[s + 1] += starts[s];
        }
        let mut next = starts;
        let mut order = vec![0u32; names.len()];
        for (i, &hash) in hashes.iter().enumerate() {
            let s = shard(hash);
            order[next[s]] = i as u32;
            next[s] += 1;
        }
        let base = out.len();
        out.resize(base + names.len(), Article::Generated(0));
        let mut left: Vec<usize> = (0..SHARDS).filter(|&s| starts[s] < starts[s + 1]).collect();
        let mut wait = false;
        while !left.is_empty() {
            left.retain(|&s| {
                let mut interner = match self.shards[s].try_lock() {
                    Ok(interner) => interner,
                    Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
                    Err(TryLockError::WouldBlock) if !wait => return true,
                    Err(TryLockError::WouldBlock) => lock(&self.shards[s]),
                };
                let indices = &order[starts[s]..starts[s + 1]];
                interner.get_indexed(&hashes, names, indices, |i, named| {
                    out[base + i] = Article::Named(named);
                });
                false
            });
            wait = true;
        }
    }
}

/// The interner `live` points to, or a new one it then points to.
fn current_in(live: &Mutex<Weak<SharedInterner>>, capacity: usize) -> Arc<SharedInterner> {
    let mut live = live.lock().unwrap_or_else(PoisonError::into_inner);
    live.upgrade().unwrap_or_else(|| {
        let shared = Arc::new(SharedInterner::new(capacity));
        *live = Arc::downgrade(&shared);
        shared
    })
}

/// The shard of a name's hash: its low bits, which the shard's table does
/// not use to place it (see `Interner::home`).
fn shard(hash: u32) -> usize {
    hash as usize % SHARDS
}

/// A shard's interner, after a panic elsewhere too: a lookup leaves the
/// table whole at every step, so what a panicking thread left is usable.
fn lock(shard: &Mutex<Interner>) -> MutexGuard<'_, Interner> {
    shard.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pageviews::interner::tests::named;

    /// Threads looking up the same names get the same handles, in the
    /// order of their names, and the interner holds each name once.
    #[test]
    fn threads_share_one_handle_per_name() {
        let names: Vec<(String, String)> = (0..3000u32)
            .map(|i| (format!("p{}", i % 3), format!("T{}", (i * 7919) % 2000)))
            .collect();
        let interner = Arc::new(SharedInterner::new(1 << 20));
        let outs: Vec<Vec<Article>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..4)
                .map(|t| {
                    let (names, interner) = (&names, &interner);
                    scope.spawn(move || {
                        let borrowed: Vec<(&str, &str)> = names
                            .iter()
                            .map(|(p, t)| (p.as_str(), t.as_str()))
                            .collect();
                        let mut out = Vec::new();
                        for chunk in borrowed.chunks(100 + t * 37) {
                            interner.get_many(chunk, &mut out);
                        }
                        out
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let distinct: std::collections::HashSet<_> = names.iter().collect();
        assert_eq!(interner.len(), distinct.len());
        for out in &outs {
            assert_eq!(out.len(), names.len());
            for (article, (project, title)) in out.iter().zip(&names) {
                assert_eq!(
                    (article.project(), &*article.title()),
                    (&**project, &**title)
                );
            }
            for (a, b) in out.iter().zip(&outs[0]) {
                assert!(named(a).ptr_eq(named(b)));
            }
        }
    }

    /// The live readers share one interner; once they are gone, the next
    /// gets a new, empty one.
    #[test]
    fn current_lives_as_long_as_its_readers() {
        let live = Mutex::new(Weak::new());
        let a = current_in(&live, 100);
        let b = current_in(&live, 100);
        assert!(Arc::ptr_eq(&a, &b));
        let mut out = Vec::new();
        a.get_many(&[("en", "A")], &mut out);
        assert_eq!(b.len(), 1);
        drop((a, b));
        assert!(current_in(&live, 100).is_empty());
    }

    /// Each shard stays within its share, forgetting its names when full.
    #[test]
    fn stays_bounded() {
        let interner = SharedInterner::new(32);
        let names: Vec<(String, String)> = (0..1000)
            .map(|i| ("en".to_string(), format!("T{i}")))
            .collect();
        let borrowed: Vec<(&str, &str)> = names
            .iter()
            .map(|(p, t)| (p.as_str(), t.as_str()))
            .collect();
        let mut out = Vec::new();
        interner.get_many(&borrowed, &mut out);
        assert!(interner.len() <= 32);
        for (article, (_, title)) in out.iter().zip(&names) {
            assert_eq!(&*article.title(), title);
        }
    }
}
