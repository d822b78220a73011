//! One shared allocation per article name, looked up in groups.

use std::hint::black_box;

use super::article::{name_hash, Allowance, Article, NamedArticle};

/// How many names [`Interner::get_group`] looks up together: enough to keep
/// a core's outstanding cache misses busy, few enough that the group's
/// loads fit in its out-of-order window.
pub(super) const GROUP: usize = 16;

/// Slots of a new table; it doubles from here.
const FIRST_SLOTS: usize = 1 << 10;

/// Hands out one shared [`Article`] per distinct project and title, so that
/// a source reading the same article many times allocates it once. It
/// holds at most `capacity` articles and forgets them all when full, which
/// bounds its memory whatever the input; a forgotten article is simply
/// allocated again. The names it allocates are kept while the process's
/// allowance lasts (see [`NamedArticle`]).
///
/// With a million articles nearly every lookup misses the cache on the
/// table's slot and again on the name it compares. [`Interner::get_group`]
/// reads the slots of a whole group first, then the names they point to,
/// so that the misses of a group overlap instead of following each other.
///
/// # Examples
/// ```
/// use keyflow_jobs::pageviews::{Article, Interner};
/// let mut interner = Interner::new(1000);
/// let a = interner.get("en", "Main_Page");
/// assert_eq!(a, Article::named("en", "Main_Page"));
/// assert_eq!(interner.len(), 1);
/// interner.get("en", "Main_Page");
/// assert_eq!(interner.len(), 1);
///
/// let mut out = Vec::new();
/// interner.get_group(&[("en", "Main_Page"), ("de", "Berlin")], &mut out);
/// assert_eq!(out, vec![a, Article::named("de", "Berlin")]);
/// assert_eq!(interner.len(), 2);
/// ```
#[derive(Debug, Clone)]
pub struct Interner {
    /// Open addressing with linear probing; a power of two long, at most
    /// three quarters full. Nothing is removed but all at once, so no tombstones.
    slots: Vec<Option<NamedArticle>>,
    len: usize,
    capacity: usize,
    /// What it may still keep of the process's allowance for names.
    allowance: Allowance,
}

impl Interner {
    /// An interner that keeps at most `capacity` articles (at least 1).
    pub fn new(capacity: usize) -> Self {
        Interner {
            slots: Vec::new(),
            len: 0,
            capacity: capacity.max(1),
            allowance: Allowance::default(),
        }
    }

    /// How many articles it holds now.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The article named `project` and `title`, shared with earlier calls.
    pub fn get(&mut self, project: &str, title: &str) -> Article {
        Article::Named(self.get_hashed(name_hash(project, title), project, title))
    }

    /// The articles named by `names` (project, title), in order, appended
    /// to `out`: as [`Interner::get`] on each, with the cache misses of
    /// 16 lookups at a time overlapped.
    pub fn get_group(&mut self, names: &[(&str, &str)], out: &mut Vec<Article>) {
        let hashes: Vec<u32> = names.iter().map(|(p, t)| name_hash(p, t)).collect();
        let indices: Vec<u32> = (0..names.len() as u32).collect();
        out.reserve(names.len());
        // In order of index: each article goes next.
        self.get_indexed(&hashes, names, &indices, |_, named| {
            out.push(Article::Named(named))
        });
    }

    /// The articles of `names` at `indices` (hashed as `hashes`, by
    /// index), each handed to `put` with its index, in the order of
    /// `indices`: the lookups of 16 at a time with their misses overlapped.
    pub(super) fn get_indexed(
        &mut self,
        hashes: &[u32],
        names: &[(&str, &str)],
        indices: &[u32],
        mut put: impl FnMut(usize, NamedArticle),
    ) {
        for group in indices.chunks(GROUP) {
            let mut own = [0u32; GROUP];
            for (hash, &i) in own.iter_mut().zip(group) {
                *hash = hashes[i as usize];
            }
            let own = &own[..group.len()];
            if !self.slots.is_empty() {
                self.touch(own);
            }
            for (&hash, &i) in own.iter().zip(group) {
                let (project, title) = names[i as usize];
                put(i as usize, self.get_hashed(hash, project, title));
            }
        }
    }

    /// Loads what the lookups of `hashes` will read: first every home
    /// slot, then the name in each slot whose hash matches. The loads of
    /// each pass do not depend on each other, so the core issues them
    /// together; the lookups that follow then find them in cache.
    fn touch(&self, hashes: &[u32]) {
        let mut seen = 0usize;
        for &hash in hashes {
            if let Some(slot) = &self.slots[self.home(hash)] {
                seen ^= slot.hash() as usize;
            }
        }
        for &hash in hashes {
            if let Some(slot) = &self.slots[self.home(hash)] {
                if slot.hash() == hash {
                    seen ^= slot.text_len();
                }
            }
        }
        black_box(seen);
    }

    /// The first slot to probe for `hash`: the top bits of a multiplicative
    /// hash, which spreads hashes that differ only in high bits too.
    fn home(&self, hash: u32) -> usize {
        let bits = self.slots.len().trailing_zeros();
        let mixed = u64::from(hash).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        (mixed >> (64 - bits)) as usize
    }

    fn get_hashed(&mut self, hash: u32, project: &str, title: &str) -> NamedArticle {
        if self.slots.is_empty() {
            self.slots.resize(FIRST_SLOTS, None);
        }
        let mask = self.slots.len() - 1;
        let mut index = self.home(hash);
        // Three quarters full at most: the probe ends at an empty slot.
        while let Some(slot) = &self.slots[index] {
            if slot.is(hash, project, title) {
                return slot.clone();
            }
            index = (index + 1) & mask;
        }
        let named = NamedArticle::kept(hash, project, title, &mut self.allowance);
        if self.len >= self.capacity {
            self.slots.iter_mut().for_each(|slot| *slot = None);
            self.len = 0;
            self.insert(named.clone());
        } else if (self.len + 1) * 4 > self.slots.len() * 3 {
            self.grow();
            self.insert(named.clone());
        } else {
            self.slots[index] = Some(named.clone());
            self.len += 1;
        }
        named
    }

    /// Doubles the table, moving every article to its new slot.
    fn grow(&mut self) {
        let doubled = vec![None; self.slots.len() * 2];
        let old = std::mem::replace(&mut self.slots, doubled);
        self.len = 0;
        for named in old.into_iter().flatten() {
            self.insert(named);
        }
    }

    /// Puts an article known to be absent in the first free slot.
    fn insert(&mut self, named: NamedArticle) {
        let mask = self.slots.len() - 1;
        let mut index = self.home(named.hash());
        while self.slots[index].is_some() {
            index = (index + 1) & mask;
        }
        self.slots[index] = Some(named);
        self.len += 1;
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// The named article `article` is (a test of named articles only).
    pub(in crate::pageviews) fn named(article: &Article) -> &NamedArticle {
        match article {
            Article::Named(named) => named,
            Article::Generated(_) => panic!("named articles expected"),
        }
    }

    #[test]
    fn shares_and_stays_bounded() {
        let mut interner = Interner::new(3);
        let a = interner.get("en", "A");
        let again = interner.get("en", "A");
        assert!(named(&a).ptr_eq(named(&again)));
        assert_ne!(interner.get("de", "A"), a);
        interner.get("en", "B");
        assert_eq!(interner.len(), 3);
        assert_eq!(interner.get("en", "C"), Article::named("en", "C"));
        assert_eq!(interner.len(), 1);
        assert_eq!(interner.get("en", "A"), a);
    }

    /// Groups and single lookups agree, through growth and clearing, and
    /// every name seen since the last clearing is shared.
    #[test]
    fn groups_agree_with_single_lookups() {
        let names: Vec<(String, String)> = (0..5000u32)
            .map(|i| {
                let rank = (i * 7919) % 1300;
                (format!("p{}", rank % 3), format!("T{rank}"))
            })
            .collect();
        let borrowed: Vec<(&str, &str)> = names
            .iter()
            .map(|(p, t)| (p.as_str(), t.as_str()))
            .collect();
        let mut grouped = Interner::new(1000);
        let mut single = Interner::new(1000);
        let mut out = Vec::new();
        for chunk in borrowed.chunks(37) {
            out.clear();
            grouped.get_group(chunk, &mut out);
            assert_eq!(out.len(), chunk.len());
            for (article, (project, title)) in out.iter().zip(chunk) {
                assert_eq!(article, &single.get(project, title));
                assert_eq!((article.project(), &*article.title()), (*project, *title));
            }
            assert_eq!(grouped.len(), single.len());
            assert!(grouped.len() <= 1000);
        }
        let again = grouped.get("p1", "T1");
        let mut out = Vec::new();
        grouped.get_group(&[("p1", "T1"), ("p1", "T1")], &mut out);
        assert!(named(&out[0]).ptr_eq(named(&again)));
        assert!(named(&out[1]).ptr_eq(named(&again)));
    }
}
