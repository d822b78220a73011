//! One shared allocation per article name, looked up in groups.

use prefetch_index::prefetch_index;

use super::article::{name_hash, Allowance, Article, NamedArticle};

/// How many lookups ahead of its comparison a name is prefetched, and its
/// slot twice as far: a lookup that finds its lines in cache takes tens of
/// nanoseconds, a miss to memory a hundred or more.
const AHEAD: usize = 16;

/// Slots in a cache line (16 bytes each, of 64): about as far as a probe
/// from a home slot finds them in the line its prefetch brought in.
const LINE_SLOTS: usize = 4;

/// Slots of a new table; it doubles from here.
const FIRST_SLOTS: usize = 1 << 10;

/// A project and a title as their bytes, which are UTF-8: a reader looks
/// names up as it read them, and only a name inserted is checked.
pub(super) type NameBytes<'a> = (&'a [u8], &'a [u8]);

/// `names` as their bytes.
pub(super) fn as_bytes<'a>(names: &[(&'a str, &'a str)]) -> Vec<NameBytes<'a>> {
    names
        .iter()
        .map(|(project, title)| (project.as_bytes(), title.as_bytes()))
        .collect()
}

/// Hands out one shared [`Article`] per distinct project and title, so that
/// a source reading the same article many times allocates it once. It
/// holds at most `capacity` articles and forgets them all when full, which
/// bounds its memory whatever the input; a forgotten article is simply
/// allocated again. The names it allocates are kept while the process's
/// allowance lasts (see [`NamedArticle`]).
///
/// With a million articles nearly every lookup misses the cache on the
/// table's slot and again on the name it compares. [`Interner::get_group`]
/// prefetches the slots and names of lookups to come while it does the
/// earlier ones, so that their misses overlap instead of following each
/// other.
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
        let (project, title) = (project.as_bytes(), title.as_bytes());
        Article::Named(self.get_hashed(name_hash(project, title), project, title))
    }

    /// The articles named by `names` (project, title), in order, appended
    /// to `out`: as [`Interner::get`] on each, with the cache misses of
    /// lookups to come overlapped.
    pub fn get_group(&mut self, names: &[(&str, &str)], out: &mut Vec<Article>) {
        let names = as_bytes(names);
        let hashes: Vec<u32> = names.iter().map(|(p, t)| name_hash(p, t)).collect();
        let indices: Vec<u32> = (0..names.len() as u32).collect();
        out.reserve(names.len());
        // In order of index: each article goes next.
        self.get_indexed(&hashes, &names, &indices, |_, named| {
            out.push(Article::Named(named))
        });
    }

    /// The articles of `names` (UTF-8 bytes) at `indices` (hashed as
    /// `hashes`, by index), each handed to `put` with its index, in the order of
    /// `indices`. Each lookup's slot is prefetched about [`AHEAD`] lookups
    /// before its name, and its name about [`AHEAD`] lookups before it is
    /// compared, so that the misses of many lookups are under way at once
    /// while earlier ones run.
    pub(super) fn get_indexed(
        &mut self,
        hashes: &[u32],
        names: &[NameBytes<'_>],
        indices: &[u32],
        mut put: impl FnMut(usize, NamedArticle),
    ) {
        if self.slots.is_empty() {
            self.slots.resize(FIRST_SLOTS, None);
        }
        // Windows of `AHEAD` lookups: while one window's names are
        // compared, the next one's names and the one after's slots load.
        let mut windows = indices.chunks(AHEAD);
        let (mut next, mut after) = (windows.next(), windows.next());
        for window in [next, after].into_iter().flatten() {
            self.prefetch_slots(hashes, window);
        }
        if let Some(window) = next {
            self.prefetch_names(hashes, names, window);
        }
        while let Some(window) = next {
            if let Some(after) = after {
                self.prefetch_names(hashes, names, after);
            }
            let later = windows.next();
            if let Some(later) = later {
                self.prefetch_slots(hashes, later);
            }
            for &i in window {
                let (i, (project, title)) = (i as usize, names[i as usize]);
                put(i, self.get_hashed(hashes[i], project, title));
            }
            (next, after) = (after, later);
        }
    }

    /// Prefetches the home slots of the names at `window`.
    fn prefetch_slots(&self, hashes: &[u32], window: &[u32]) {
        for &i in window {
            prefetch_index(&self.slots, self.home(hashes[i as usize]));
        }
    }

    /// Prefetches the names that the lookups of `window` will most likely
    /// compare (see [`Interner::prefetch_name`]).
    fn prefetch_names(&self, hashes: &[u32], names: &[NameBytes<'_>], window: &[u32]) {
        for &i in window {
            let (project, title) = names[i as usize];
            self.prefetch_name(hashes[i as usize], project.len() + title.len());
        }
    }

    /// Prefetches the name of `len` bytes that a lookup of `hash` will
    /// most likely compare: the first slot of its probe, at most
    /// [`LINE_SLOTS`] from its home, whose hash is `hash`. Slots further on
    /// were not prefetched, and reading them would wait. A slot taken
    /// since, or moved by growth, only makes the prefetch useless.
    fn prefetch_name(&self, hash: u32, len: usize) {
        let mask = self.slots.len() - 1;
        let home = self.home(hash);
        for index in (home..home + LINE_SLOTS).map(|index| index & mask) {
            match &self.slots[index] {
                Some(slot) if slot.hash() == hash => return slot.prefetch(len),
                Some(_) => {}
                None => return,
            }
        }
    }

    /// The first slot to probe for `hash`: the top bits of a multiplicative
    /// hash, which spreads hashes that differ only in high bits too.
    fn home(&self, hash: u32) -> usize {
        let bits = self.slots.len().trailing_zeros();
        let mixed = u64::from(hash).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        (mixed >> (64 - bits)) as usize
    }

    fn get_hashed(&mut self, hash: u32, project: &[u8], title: &[u8]) -> NamedArticle {
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
