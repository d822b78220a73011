//! The pageview key and record.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::fmt;
use std::hash::Hasher;
use std::sync::atomic::{AtomicUsize, Ordering as AtomicOrdering};

use arcstr::ArcStr;
use keyflow_dataflow::hash::StableHasher;

use serde::{Deserialize, Serialize};

use super::jsonl_plain::word;

/// The project of every generated article.
pub const GENERATED_PROJECT: &str = "en";

/// Below this id a generated title has exactly seven digits, so comparing
/// ids compares titles; above it the padding no longer lines them up.
const SEVEN_DIGITS: u32 = 10_000_000;

/// A Wikimedia article: the key of the pageview jobs.
///
/// Generated articles are a bare rank id, so the generator fills batches
/// without allocating; file inputs carry their project and title behind one
/// shared pointer, which keeps the key at 16 bytes (it is stored once per
/// active article in every keyed operator and moves with every record) and
/// lets a source hand out one allocation per article rather than one per
/// record (see [`Interner`](super::Interner)). Both
/// variants are ordered by `(project, title)` as strings, so rankings that
/// break ties by project then title treat them alike.
///
/// # Examples
/// ```
/// use keyflow_jobs::pageviews::Article;
///
/// let generated = Article::Generated(42);
/// assert_eq!(generated.project(), "en");
/// assert_eq!(generated.title(), "Article_0000042");
/// assert_eq!(generated.to_string(), "en Article_0000042");
///
/// let named = Article::named("en", "Main_Page");
/// assert!(generated < named); // "Article_0000042" < "Main_Page"
/// assert!(Article::named("de", "Zebra") < generated); // "de" < "en"
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Article {
    /// A generated article of project `en` titled `Article_{id:07}`; the id is
    /// its 1-based popularity rank.
    Generated(u32),
    /// An article read from a file.
    Named(NamedArticle),
}

/// The project and title of an article read from a file, shared: cloning
/// it copies a pointer, so a source hands out one allocation per article
/// rather than one per record (see [`Interner`](super::Interner)).
///
/// Both names live in one allocation behind a thin pointer, with the split
/// between them and the low 32 bits of their hash beside it, so the whole
/// is 16 bytes. Keyed operators hash and compare the key of every record:
/// hashing reads no memory behind the pointer, and comparing two handles
/// to one allocation reads none either. For a million articles each such
/// read would be a cache miss.
///
/// The interner makes the names it hands out *kept* while the process's
/// allowance lasts: kept names live as long as the process, and their
/// handles carry no count. A counted handle writes its count at every
/// clone and drop, a line that every core holding the article then has to
/// fetch back; dropping a kept one reads no memory behind the pointer,
/// and cloning one reads the allocation's header but writes nothing.
///
/// ```
/// use keyflow_jobs::pageviews::NamedArticle;
/// let a = NamedArticle::new("en.m", "Main_Page");
/// assert_eq!((a.project(), a.title()), ("en.m", "Main_Page"));
/// assert_ne!(a, NamedArticle::new("en", "m.Main_Page"));
/// assert!(a.ptr_eq(&a.clone()));
/// ```
#[derive(Clone)]
pub struct NamedArticle {
    /// The low half of [`name_hash`] of the project and title.
    hash: u32,
    /// Where the title starts in `text` (the low 31 bits), and whether the
    /// text is kept (the top bit, [`KEPT`]).
    split: u32,
    /// The project, then the title.
    text: ArcStr,
}

/// The bit of `NamedArticle::split` that marks a kept text.
const KEPT: u32 = 1 << 31;

/// How many bytes of names a process keeps for its lifetime, at most,
/// counted as each name's bytes and its allocation's 16-byte header (the
/// allocator may round each allocation up): about a million and a half
/// article names. Past it, names are counted and freed with their last
/// handle, so a stream that names new articles for months keeps a
/// bounded amount.
const KEPT_BYTES: usize = 64 << 20;

/// Bytes of names this process has kept so far, or set aside to keep.
static KEPT_SO_FAR: AtomicUsize = AtomicUsize::new(0);

/// How much of [`KEPT_BYTES`] an [`Allowance`] sets aside at a time.
const BLOCK: usize = 256 << 10;

/// A share of the process's allowance for kept names, set aside a block
/// at a time: threads that keep names at once would otherwise each write
/// one shared counter per name. What a share has left when it goes is not
/// kept by anyone (at most a block each).
#[derive(Debug, Default)]
pub(super) struct Allowance {
    left: usize,
}

/// A copy starts with nothing set aside, so that a block is spent once.
impl Clone for Allowance {
    fn clone(&self) -> Self {
        Allowance::default()
    }
}

impl Allowance {
    /// Whether `bytes` more may be kept, setting them aside if so; counts
    /// what it sets aside in `so_far`, up to `total`.
    fn take(&mut self, bytes: usize, so_far: &AtomicUsize, total: usize) -> bool {
        if self.left < bytes {
            let block = BLOCK.max(bytes);
            let set_aside =
                so_far.fetch_update(AtomicOrdering::Relaxed, AtomicOrdering::Relaxed, |n| {
                    (n + block <= total).then_some(n + block)
                });
            if set_aside.is_err() {
                return false;
            }
            self.left += block;
        }
        self.left -= bytes;
        true
    }
}

impl NamedArticle {
    /// The article `title` of `project`.
    pub fn new(project: &str, title: &str) -> Self {
        let (project, title) = (project.as_bytes(), title.as_bytes());
        NamedArticle::hashed(name_hash(project, title), project, title)
    }

    /// The article named by `project` and `title`, whose hash is `hash`.
    /// Both must be UTF-8; this is the one place the names are checked,
    /// as they are written into the shared allocation.
    pub(super) fn hashed(hash: u32, project: &[u8], title: &[u8]) -> Self {
        // Both names written straight into the shared allocation: one
        // allocation per name, not a `String` first.
        let (text, split) = match ArcStr::init_with(project.len() + title.len(), |bytes| {
            let (front, back) = bytes.split_at_mut(project.len());
            front.copy_from_slice(project);
            back.copy_from_slice(title);
        }) {
            Ok(text) => (text, project.len()),
            // Only a caller that breaks the promise gets here: its names
            // are kept as they read with each bad sequence replaced.
            Err(_) => {
                let project = String::from_utf8_lossy(project);
                let title = String::from_utf8_lossy(title);
                (ArcStr::from(format!("{project}{title}")), project.len())
            }
        };
        NamedArticle {
            hash,
            // Longer projects than 2 GiB are not names.
            split: split.min((KEPT - 1) as usize) as u32,
            text,
        }
    }

    /// `project` and `title` (whose hash is `hash`) as a kept name, paid
    /// from `allowance` while the process's allowance lasts, and as a
    /// counted one after.
    pub(super) fn kept(hash: u32, project: &[u8], title: &[u8], allowance: &mut Allowance) -> Self {
        NamedArticle::kept_within(&KEPT_SO_FAR, KEPT_BYTES, allowance, hash, project, title)
    }

    /// As [`NamedArticle::kept`], with the process's kept bytes counted in
    /// `so_far` up to `total`.
    fn kept_within(
        so_far: &AtomicUsize,
        total: usize,
        allowance: &mut Allowance,
        hash: u32,
        project: &[u8],
        title: &[u8],
    ) -> Self {
        let mut named = NamedArticle::hashed(hash, project, title);
        // The allocation's header (a length and a count) counts too.
        if allowance.take(named.text.len() + 16, so_far, total) {
            // Marks the allocation static: never freed, never counted.
            named.text.leak();
            named.split |= KEPT;
        }
        named
    }

    /// Whether its text is kept: its handles are neither counted nor freed.
    fn is_kept(&self) -> bool {
        self.split & KEPT != 0
    }

    /// Where the title starts in the text.
    fn split(&self) -> usize {
        (self.split & !KEPT) as usize
    }

    /// Wikimedia domain code, such as `en` or `en.m`.
    pub fn project(&self) -> &str {
        &self.text[..self.split()]
    }

    /// Page title as the input spells it (URL-encoded in dumps).
    pub fn title(&self) -> &str {
        &self.text[self.split()..]
    }

    /// The low half of the names' hash.
    pub(super) fn hash(&self) -> u32 {
        self.hash
    }

    /// Starts loading into cache, without waiting, the lines that
    /// [`NamedArticle::is`] reads when the names are `len` bytes long: the
    /// allocation's header, 16 bytes before the text, where the text's
    /// length is, and the text's last byte. A name of other length, or
    /// another layout of the allocation, only makes the hint useless.
    /// The length `as_bytes` reads goes unused, so the compiler drops its
    /// load, which would wait.
    pub(super) fn prefetch(&self, len: usize) {
        let text = self.text.as_bytes();
        prefetch_index::prefetch_index(text, 0usize.wrapping_sub(16));
        prefetch_index::prefetch_index(text, len.saturating_sub(1));
    }

    /// Whether both share one allocation.
    pub fn ptr_eq(&self, other: &NamedArticle) -> bool {
        ArcStr::ptr_eq(&self.text, &other.text)
    }

    /// The order of `(project, title)` as strings, that of [`Article`]: two
    /// handles to one allocation are equal without reading it (an
    /// interner's handles to one article are), and the names are compared
    /// inline, where `str::cmp` calls `memcmp` for each.
    fn cmp_names(&self, other: &NamedArticle) -> Ordering {
        let (split, other_split) = (self.split(), other.split());
        if self.ptr_eq(other) && split == other_split {
            return Ordering::Equal;
        }
        let (project, title) = self.text.as_bytes().split_at(split);
        let (other_project, other_title) = other.text.as_bytes().split_at(other_split);
        if split == other_split && same_bytes(project, other_project) {
            return cmp_bytes(title, other_title);
        }
        cmp_bytes(project, other_project)
    }

    /// Whether it is `project` and `title`, whose hash is `hash`.
    pub(super) fn is(&self, hash: u32, project: &[u8], title: &[u8]) -> bool {
        let text = self.text.as_bytes();
        self.hash == hash
            && self.split() == project.len()
            && text.len() == project.len() + title.len()
            && same_bytes(&text[..project.len()], project)
            && same_bytes(&text[project.len()..], title)
    }
}

/// The order of `a` and `b` as strings of bytes, as `<[u8]>::cmp` gives
/// it: a word at a time, read big-endian so that the first byte that
/// differs decides, the last word overlapping the one before (its bytes
/// that overlap are equal by then). Inline, for the reason [`same_bytes`]
/// is.
#[inline(always)]
fn cmp_bytes(a: &[u8], b: &[u8]) -> Ordering {
    let n = a.len().min(b.len());
    if n < 8 {
        for (x, y) in a[..n].iter().zip(&b[..n]) {
            if x != y {
                return x.cmp(y);
            }
        }
        return a.len().cmp(&b.len());
    }
    let big = |bytes: &[u8]| word(bytes).swap_bytes();
    let mut at = 0;
    while at + 8 < n {
        let (x, y) = (big(&a[at..at + 8]), big(&b[at..at + 8]));
        if x != y {
            return x.cmp(&y);
        }
        at += 8;
    }
    big(&a[n - 8..n])
        .cmp(&big(&b[n - 8..n]))
        .then(a.len().cmp(&b.len()))
}

/// Whether `a` and `b`, of equal length, hold the same bytes: a word at a
/// time, the last word overlapping the one before, where comparing the
/// slices calls `memcmp`, whose setup costs as much as comparing a name
/// of twenty bytes this way.
#[inline(always)]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    if n < 8 {
        return a.iter().zip(b).all(|(x, y)| x == y);
    }
    let mut at = 0;
    while at + 8 < n {
        if word(&a[at..at + 8]) != word(&b[at..at + 8]) {
            return false;
        }
        at += 8;
    }
    word(&a[n - 8..]) == word(&b[n - 8..])
}

impl PartialEq for NamedArticle {
    fn eq(&self, other: &Self) -> bool {
        self.hash == other.hash
            && self.split() == other.split()
            && (self.ptr_eq(other) || self.text == other.text)
    }
}

impl Drop for NamedArticle {
    fn drop(&mut self) {
        if self.is_kept() {
            // Dropping a static text reads its header only to learn that
            // it is static; forgetting it reads nothing. The empty text
            // left in its place is a constant, its header always at hand.
            std::mem::forget(std::mem::replace(&mut self.text, ArcStr::new()));
        }
    }
}

impl Eq for NamedArticle {}

/// The names, and whether they are kept (the raw `split` would show the
/// mark as part of a number).
impl fmt::Debug for NamedArticle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NamedArticle")
            .field("project", &self.project())
            .field("title", &self.title())
            .field("kept", &self.is_kept())
            .finish()
    }
}

impl std::hash::Hash for NamedArticle {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u32(self.hash);
    }
}

/// How a [`NamedArticle`] is read and written: its two names.
#[derive(Serialize, Deserialize)]
struct Names<'a> {
    #[serde(borrow)]
    project: Cow<'a, str>,
    #[serde(borrow)]
    title: Cow<'a, str>,
}

/// Written borrowing the names (records moving between processes are
/// serialized: no copy on the way).
impl Serialize for NamedArticle {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let names = Names {
            project: Cow::Borrowed(self.project()),
            title: Cow::Borrowed(self.title()),
        };
        names.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for NamedArticle {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let names = Names::deserialize(deserializer)?;
        Ok(NamedArticle::new(&names.project, &names.title))
    }
}

impl Article {
    /// A named article.
    pub fn named(project: impl AsRef<str>, title: impl AsRef<str>) -> Self {
        Article::Named(NamedArticle::new(project.as_ref(), title.as_ref()))
    }

    /// The Wikimedia domain code (`en`, `en.m`, ...).
    pub fn project(&self) -> &str {
        match self {
            Article::Generated(_) => GENERATED_PROJECT,
            Article::Named(named) => named.project(),
        }
    }

    /// The page title; generated titles are formatted on demand.
    pub fn title(&self) -> Cow<'_, str> {
        match self {
            Article::Generated(id) => Cow::Owned(generated_title(*id)),
            Article::Named(named) => Cow::Borrowed(named.title()),
        }
    }

    /// Breaks the tie between a generated and a named article that spell
    /// the same project and title, so that `Ord` agrees with `Eq`.
    fn variant(&self) -> u8 {
        match self {
            Article::Generated(_) => 0,
            Article::Named(_) => 1,
        }
    }
}

/// The hash of a project and title, given as their bytes; any fixed hash
/// would do. Articles keep its low half. It is the stable hash of the pair
/// of `str`s, which hashes each one's bytes and then `0xff`: a pair of
/// byte slices would hash their lengths instead.
pub(super) fn name_hash(project: &[u8], title: &[u8]) -> u32 {
    let mut hasher = StableHasher::default();
    for name in [project, title] {
        hasher.write(name);
        hasher.write_u8(0xff);
    }
    hasher.finish() as u32
}

/// The title of generated article `id`.
///
/// # Examples
/// ```
/// assert_eq!(keyflow_jobs::pageviews::generated_title(7), "Article_0000007");
/// ```
pub fn generated_title(id: u32) -> String {
    format!("Article_{id:07}")
}

impl Ord for Article {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            // The hot case in rankings over the generator: no formatting.
            (Article::Generated(a), Article::Generated(b))
                if *a < SEVEN_DIGITS && *b < SEVEN_DIGITS =>
            {
                a.cmp(b)
            }
            // The hot case in sorting a file's articles.
            (Article::Named(a), Article::Named(b)) => a.cmp_names(b),
            _ => self
                .project()
                .cmp(other.project())
                .then_with(|| self.title().cmp(&other.title()))
                .then_with(|| self.variant().cmp(&other.variant())),
        }
    }
}

impl PartialOrd for Article {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Article {
    /// `project title`, as the two first fields of a dump line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Article::Generated(id) => write!(f, "{GENERATED_PROJECT} Article_{id:07}"),
            Article::Named(named) => write!(f, "{} {}", named.project(), named.title()),
        }
    }
}

/// The most views one event (or dump line) may stand for. Larger counts
/// are malformed input: no page gets four billion views in an hour, and the
/// operators count in 32 bits per key and minute.
pub const MAX_VIEWS: u64 = u32::MAX as u64;

/// One pageview event: `views` requests of `article` (1 for a single
/// request, N when a dump line is replayed). Sources pair it with its event
/// time in milliseconds.
///
/// # Examples
/// ```
/// use keyflow_jobs::pageviews::{Article, PageView};
/// let view = PageView::new(Article::named("en", "Main_Page"), 3);
/// assert_eq!(view.views, 3);
/// assert_eq!(view.article.title(), "Main_Page");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PageView {
    /// The article viewed.
    pub article: Article,
    /// How many views the event stands for (at least 1).
    pub views: u64,
}

impl PageView {
    /// `views` views of `article`.
    pub fn new(article: Article, views: u64) -> Self {
        PageView { article, views }
    }
}

#[cfg(test)]
mod tests {
    use keyflow_dataflow::stable_hash;

    use super::*;

    /// Routing and checkpoints hash a name as the pair of its `str`s:
    /// hashed from bytes, it must come out the same.
    #[test]
    fn name_hash_is_the_stable_hash_of_both_strs() {
        for (project, title) in [
            ("en", "Main_Page"),
            ("", ""),
            ("de.m", "Ä_%C3%84_lange_Überschrift"),
        ] {
            assert_eq!(
                name_hash(project.as_bytes(), title.as_bytes()),
                stable_hash(&(project, title)) as u32
            );
        }
        assert_ne!(name_hash(b"en", b"ab"), name_hash(b"ena", b"b"));
    }

    /// The word-at-a-time comparison agrees with slice equality at every
    /// length up to past three words, with one byte changed anywhere.
    #[test]
    fn same_bytes_is_slice_equality() {
        let a: Vec<u8> = (0..40u8).map(|i| b'A' + i).collect();
        for len in 0..=a.len() {
            let a = &a[..len];
            assert!(same_bytes(a, a));
            assert!(!same_bytes(a, &[a, b"x"].concat()));
            for at in 0..len {
                let mut b = a.to_vec();
                b[at] ^= 0x20;
                assert!(!same_bytes(a, &b), "len {len}, changed at {at}");
            }
        }
    }

    /// The word-at-a-time order agrees with the order of slices, and
    /// named articles are ordered by project, then title, as strings.
    #[test]
    fn cmp_bytes_is_slice_order() {
        let a: Vec<u8> = (0..40u8).map(|i| b'A' + i).collect();
        for len in 0..=a.len() {
            let a = &a[..len];
            for b_len in [0, len.saturating_sub(1), len, len + 1] {
                let b: Vec<u8> = (0..b_len as u8).map(|i| b'A' + i).collect();
                assert_eq!(cmp_bytes(a, &b), a.cmp(&b[..]), "{len} against {b_len}");
            }
            for at in 0..len {
                for flip in [0x01, 0x20, 0x80] {
                    let mut b = a.to_vec();
                    b[at] ^= flip;
                    assert_eq!(cmp_bytes(a, &b), a.cmp(&b[..]), "{len}, {at}, {flip}");
                    assert_eq!(cmp_bytes(&b, a), b[..].cmp(a), "{len}, {at}, {flip}");
                }
            }
        }
        let names = [
            ("en", "Article_0000012"),
            ("en", "Article_00000123"),
            ("en", "Article_0000013"),
            ("en", "Main_Page"),
            ("en.m", "A"),
            ("enm", "A"),
            ("e", "nA"),
            ("de", "Zürich"),
            ("de", "Zurich"),
        ];
        for (p, t) in names {
            for (q, u) in names {
                let (a, b) = (Article::named(p, t), Article::named(q, u));
                assert_eq!(a.cmp(&b), (p, t).cmp(&(q, u)), "{p} {t} against {q} {u}");
            }
            let a = Article::named(p, t);
            assert_eq!(a.cmp(&a.clone()), Ordering::Equal);
        }
    }

    /// Bytes that are not UTF-8, which no caller should pass, make a name
    /// with each bad sequence replaced, not a panic.
    #[test]
    fn names_not_utf8_are_replaced() {
        let named = NamedArticle::hashed(7, b"e\xffn", b"A\xffB");
        assert_eq!(
            (named.project(), named.title()),
            ("e\u{fffd}n", "A\u{fffd}B")
        );
    }

    /// `is` tells names apart that share a hash, and a split that moves.
    #[test]
    fn is_compares_both_names() {
        let named = NamedArticle::new("en.m", "Main_Page_Of_All");
        let hash = named.hash();
        assert!(named.is(hash, b"en.m", b"Main_Page_Of_All"));
        assert!(!named.is(hash, b"en.", b"mMain_Page_Of_All"));
        assert!(!named.is(hash, b"en.m", b"Main_Page_Of_Alk"));
        assert!(!named.is(hash, b"en.n", b"Main_Page_Of_All"));
        assert!(!named.is(hash, b"en.m", b"Main_Page_Of_Al"));
        assert!(!named.is(hash ^ 1, b"en.m", b"Main_Page_Of_All"));
    }

    #[test]
    fn generated_orders_like_its_strings() {
        let mut articles = vec![
            Article::Generated(10_000_001),
            Article::named("en", "Article_0000005"),
            Article::Generated(9_999_999),
            Article::named("en", "Zed"),
            Article::Generated(5),
            Article::named("de", "Article_0000001"),
            Article::Generated(40),
            Article::named("en.m", "A"),
        ];
        articles.sort();
        let mut by_strings = articles.clone();
        by_strings.sort_by(|a, b| {
            (a.project(), a.title(), a.variant()).cmp(&(b.project(), b.title(), b.variant()))
        });
        assert_eq!(articles, by_strings);
        assert_eq!(articles[0], Article::named("de", "Article_0000001"));
        assert_eq!(articles[1], Article::Generated(5));
        assert_eq!(articles[2], Article::named("en", "Article_0000005"));
        assert!(Article::Generated(5) != Article::named("en", "Article_0000005"));
    }

    #[test]
    fn large_ids_compare_as_titles() {
        // "Article_10000000" < "Article_9999999" as strings.
        assert!(Article::Generated(10_000_000) < Article::Generated(9_999_999));
        assert!(Article::Generated(9_999_998) < Article::Generated(9_999_999));
        assert_eq!(
            Article::Generated(12_345_678).cmp(&Article::Generated(12_345_678)),
            Ordering::Equal
        );
    }

    #[test]
    fn key_is_sixteen_bytes() {
        assert_eq!(std::mem::size_of::<Article>(), 16);
    }

    /// Kept and counted handles to one name agree in every comparison;
    /// kept ones are shared without a count.
    #[test]
    fn kept_and_counted_names_agree() {
        let (so_far, mut allowance) = (AtomicUsize::new(0), Allowance::default());
        let hash = name_hash(b"en", b"Main_Page");
        let kept =
            NamedArticle::kept_within(&so_far, BLOCK, &mut allowance, hash, b"en", b"Main_Page");
        assert!(kept.is_kept() && ArcStr::is_static(&kept.text));
        let counted = NamedArticle::new("en", "Main_Page");
        assert!(!counted.is_kept() && !ArcStr::is_static(&counted.text));
        assert_eq!(kept, counted);
        assert_eq!((kept.project(), kept.title()), ("en", "Main_Page"));
        assert_eq!(
            format!("{kept:?}"),
            r#"NamedArticle { project: "en", title: "Main_Page", kept: true }"#
        );
        let (kept, counted) = (Article::Named(kept), Article::Named(counted));
        assert_eq!(kept.cmp(&counted), Ordering::Equal);
        assert_eq!(stable_hash(&kept), stable_hash(&counted));
        let copies: Vec<Article> = (0..1000).map(|_| kept.clone()).collect();
        drop(kept);
        assert!(copies.iter().all(|copy| copy == &counted));
        let Article::Named(text) = &counted else {
            unreachable!()
        };
        let text = &text.text;
        assert_eq!(ArcStr::strong_count(text), Some(1));
        let more = counted.clone();
        assert_eq!(ArcStr::strong_count(text), Some(2));
        drop(more);
        assert_eq!(ArcStr::strong_count(text), Some(1));
        assert_eq!(
            serde_json::to_string(&copies[0]).unwrap(),
            serde_json::to_string(&counted).unwrap()
        );
    }

    /// Shares set the process's allowance aside a block at a time, and
    /// keep names only while their block lasts or a new one fits.
    #[test]
    fn kept_names_within_the_allowance() {
        let so_far = AtomicUsize::new(0);
        let total = 2 * BLOCK + 100;
        let keep = |allowance: &mut Allowance, title: &str| {
            let hash = name_hash(b"en", title.as_bytes());
            NamedArticle::kept_within(&so_far, total, allowance, hash, b"en", title.as_bytes())
                .is_kept()
        };
        let (mut a, mut b, mut c) = Default::default();
        assert!(keep(&mut a, "Main_Page"));
        assert_eq!(so_far.load(AtomicOrdering::Relaxed), BLOCK);
        assert_eq!(a.left, BLOCK - 11 - 16);
        assert!(keep(&mut b, "Main_Page"));
        assert!(!keep(&mut c, "Main_Page"), "a third block does not fit");
        assert!(keep(&mut a, "Berlin"), "from what the first block has left");
        assert_eq!(so_far.load(AtomicOrdering::Relaxed), 2 * BLOCK);
        let long = "x".repeat(BLOCK);
        assert!(!keep(&mut a, &long), "longer than what the block has left");
        let mut fresh = Allowance::default();
        let so_far = AtomicUsize::new(0);
        let hash = name_hash(b"en", long.as_bytes());
        let named =
            NamedArticle::kept_within(&so_far, 2 * BLOCK, &mut fresh, hash, b"en", long.as_bytes());
        assert!(named.is_kept(), "a block of its own size");
        assert_eq!(so_far.load(AtomicOrdering::Relaxed), BLOCK + 16 + 2);
    }

    #[test]
    fn serde_round_trip() {
        for a in [Article::Generated(3), Article::named("en.m", "Ä_%C3%84")] {
            let text = serde_json::to_string(&PageView::new(a.clone(), 2)).unwrap();
            let back: PageView = serde_json::from_str(&text).unwrap();
            assert_eq!(back, PageView::new(a, 2));
        }
    }
}
