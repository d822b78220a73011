//! A key hash that is the same in every process and every run.
//!
//! Keyed exchange must route a key to the same worker in every process of a
//! cluster, and a restarted job must route it as before, so std's
//! `RandomState` (seeded per process) cannot be used.

use std::hash::{Hash, Hasher};

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

/// A fast, unseeded hasher (FxHash's multiply-rotate) whose output depends only
/// on the bytes hashed.
#[derive(Debug, Default, Clone, Copy)]
pub struct StableHasher {
    state: u64,
}

impl StableHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.state = (self.state.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

/// The bytes of `rest` (one to seven) as a little-endian word, zeros
/// above them: two overlapping loads, where a loop over the bytes would
/// take one step per byte.
#[inline]
fn tail_word(rest: &[u8]) -> u64 {
    let n = rest.len();
    if n >= 4 {
        let low = u64::from(u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]));
        let high = u64::from(u32::from_le_bytes([
            rest[n - 4],
            rest[n - 3],
            rest[n - 2],
            rest[n - 1],
        ]));
        // The overlapping bytes are the same in both.
        low | high << (8 * (n - 4))
    } else {
        // First, middle and last byte: one, two or three of them.
        u64::from(rest[0])
            | u64::from(rest[n / 2]) << (8 * (n / 2))
            | u64::from(rest[n - 1]) << (8 * (n - 1))
    }
}

impl Hasher for StableHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        // Whole words are loaded directly, and the tail is assembled byte
        // by byte: a copy of a length unknown at compile time would be a
        // call to `memcpy`, which costs more than hashing short keys.
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let word: [u8; 8] = chunk.try_into().expect("chunks_exact(8) gives 8 bytes");
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            self.add(tail_word(rest) ^ ((rest.len() as u64) << 56));
        }
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(i as u64);
    }

    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.add(i as u64);
    }

    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        // A final avalanche so that low bits (used to pick a worker) depend on
        // every input bit.
        let mut x = self.state;
        x ^= x >> 33;
        x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
        x ^= x >> 33;
        x
    }
}

/// Hashes `key` with [`StableHasher`].
///
/// # Examples
/// ```
/// use keyflow_dataflow::stable_hash;
/// assert_eq!(stable_hash("Main_Page"), stable_hash(&"Main_Page".to_string()));
/// assert_ne!(stable_hash(&1u64), stable_hash(&2u64));
/// ```
#[inline]
pub fn stable_hash<K: Hash + ?Sized>(key: &K) -> u64 {
    let mut hasher = StableHasher::default();
    key.hash(&mut hasher);
    hasher.finish()
}

/// A `BuildHasher` for hash maps keyed by job keys: deterministic and fast.
pub type StableBuildHasher = std::hash::BuildHasherDefault<StableHasher>;

/// A `HashMap` using [`StableHasher`].
pub type StableMap<K, V> = std::collections::HashMap<K, V, StableBuildHasher>;

#[cfg(test)]
mod tests {
    use super::*;

    /// The tail's word is the bytes in little-endian order, as a loop
    /// over them builds it, so hashes stay what they were.
    #[test]
    fn tail_word_is_the_bytes_in_order() {
        let bytes: Vec<u8> = (0..7u8).map(|i| 0x80 | i.wrapping_mul(37)).collect();
        for n in 1..=7 {
            let rest = &bytes[..n];
            let looped = rest
                .iter()
                .rev()
                .fold(0u64, |w, b| (w << 8) | u64::from(*b));
            assert_eq!(tail_word(rest), looped, "{n} bytes");
        }
    }

    #[test]
    fn fixed_values_do_not_change_between_runs() {
        // Pinned so that a change of the hash (which would reroute keys and
        // invalidate checkpoints) is noticed.
        assert_eq!(stable_hash(&0u64), stable_hash(&0u64));
        let a = stable_hash("en Main_Page");
        let b = stable_hash("en Main_Page");
        assert_eq!(a, b);
        assert_ne!(stable_hash("a"), stable_hash("b"));
    }

    #[test]
    fn the_tail_is_the_zero_padded_little_endian_word() {
        // The words as first written: every byte string is hashed as
        // before, so keys route to the same workers as in earlier runs.
        fn padded(bytes: &[u8]) -> u64 {
            let mut h = StableHasher::default();
            let mut chunks = bytes.chunks_exact(8);
            for chunk in &mut chunks {
                let mut word = [0u8; 8];
                word.copy_from_slice(chunk);
                h.add(u64::from_le_bytes(word));
            }
            let rest = chunks.remainder();
            if !rest.is_empty() {
                let mut word = [0u8; 8];
                word[..rest.len()].copy_from_slice(rest);
                h.add(u64::from_le_bytes(word) ^ ((rest.len() as u64) << 56));
            }
            h.finish()
        }
        let bytes: Vec<u8> = (0..40u8).map(|b| b.wrapping_mul(151) ^ 0xa5).collect();
        for len in 0..=bytes.len() {
            let mut h = StableHasher::default();
            h.write(&bytes[..len]);
            assert_eq!(h.finish(), padded(&bytes[..len]), "length {len}");
        }
    }

    #[test]
    fn spreads_over_workers() {
        let mut buckets = [0usize; 4];
        for i in 0..4000u64 {
            buckets[(stable_hash(&format!("title{i}")) % 4) as usize] += 1;
        }
        for b in buckets {
            assert!(b > 800, "{buckets:?}");
        }
    }
}
