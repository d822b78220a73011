//! One key's sparse pane weights, in 16 bytes.
//!
//! Most keys of a Zipf-distributed input have weight in one pane of the
//! rise span, so that case is stored inline; keys with more panes keep an
//! exact-size boxed slice. A pane index is stored as its low 32 bits and read
//! back relative to a reference pane `r` at or below every live pane (the
//! state keeps all live panes within 2^32 of each other).

/// Pane index and summed weight, oldest pane first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Panes {
    /// Weight in exactly one pane: `(pane, weight)`.
    One((u32, u32)),
    /// Weight in two or more panes, sorted by pane.
    Many(Box<[(u32, u32)]>),
}

/// A pane weight that no longer fits in 32 bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Overflow;

/// The full pane index of a stored one, relative to reference `r`.
#[inline]
pub(crate) fn full(r: u64, pane: u32) -> u64 {
    r + pane.wrapping_sub(r as u32) as u64
}

impl Panes {
    /// Weight `w` in pane `p` only.
    pub(crate) fn new(p: u64, w: u32) -> Self {
        Panes::One((p as u32, w))
    }

    fn as_slice(&self) -> &[(u32, u32)] {
        match self {
            Panes::One(pair) => std::slice::from_ref(pair),
            Panes::Many(b) => b,
        }
    }

    /// The newest pane minus the oldest (0 for one pane).
    #[inline]
    pub(crate) fn spread(&self, r: u64) -> u64 {
        match self {
            Panes::One(_) => 0,
            Panes::Many(b) => full(r, b[b.len() - 1].0) - full(r, b[0].0),
        }
    }

    /// The oldest pane, relative to `r`.
    #[inline]
    pub(crate) fn oldest(&self, r: u64) -> u64 {
        match self {
            Panes::One((p, _)) => full(r, *p),
            Panes::Many(b) => full(r, b[0].0),
        }
    }

    /// `(pane, weight)` pairs, oldest first, relative to `r`.
    #[inline]
    pub(crate) fn iter(&self, r: u64) -> impl Iterator<Item = (u64, u32)> + '_ {
        self.as_slice().iter().map(move |&(p, w)| (full(r, p), w))
    }

    /// Heap bytes held (the boxed slice, if any).
    pub(crate) fn heap_bytes(&self) -> usize {
        match self {
            Panes::One(..) => 0,
            Panes::Many(b) => std::mem::size_of_val(&**b),
        }
    }

    /// Adds `w` to pane `p`, all panes relative to `r` (`r <= p`). Returns
    /// whether `p` became the oldest pane.
    pub(crate) fn add(&mut self, r: u64, p: u64, w: u32) -> Result<bool, Overflow> {
        let r32 = r as u32;
        let off = (p - r) as u32;
        let entries = self.as_slice();
        let at = entries.binary_search_by_key(&off, |&(q, _)| q.wrapping_sub(r32));
        match at {
            Ok(i) => {
                match self {
                    Panes::One((_, c)) => *c = c.checked_add(w).ok_or(Overflow)?,
                    Panes::Many(b) => b[i].1 = b[i].1.checked_add(w).ok_or(Overflow)?,
                }
                Ok(false)
            }
            Err(i) => {
                let mut grown = Vec::with_capacity(entries.len() + 1);
                grown.extend_from_slice(&entries[..i]);
                grown.push((p as u32, w));
                grown.extend_from_slice(&entries[i..]);
                *self = Panes::Many(grown.into_boxed_slice());
                Ok(i == 0)
            }
        }
    }

    /// Drops the panes below `p` (relative to `r`). Returns `false` when no
    /// pane is left.
    pub(crate) fn drop_before(&mut self, r: u64, p: u64) -> bool {
        let entries = self.as_slice();
        let keep = entries.partition_point(|&(q, _)| full(r, q) < p);
        match entries.len() - keep {
            0 => false,
            _ if keep == 0 => true,
            1 => {
                *self = Panes::One(entries[keep]);
                true
            }
            _ => {
                *self = Panes::Many(entries[keep..].into());
                true
            }
        }
    }
}
