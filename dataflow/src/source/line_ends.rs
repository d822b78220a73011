//! Finding where lines end, with the searcher for this processor chosen
//! once for many lines.

/// Finds `\n` in a buffer of lines. `memchr::memchr` picks its searcher
/// for the processor on every call, through a function pointer, and sets
/// it up again: for lines of a hundred bytes that costs about as much as
/// the search. This holds the AVX2 searcher where the processor has AVX2,
/// and leaves other processors to `memchr::memchr`.
#[derive(Clone, Copy, Debug)]
pub(crate) enum LineEnds {
    #[cfg(target_arch = "x86_64")]
    Avx2(memchr::arch::x86_64::avx2::memchr::One),
    Any,
}

impl LineEnds {
    pub(crate) fn new() -> Self {
        #[cfg(target_arch = "x86_64")]
        if let Some(one) = memchr::arch::x86_64::avx2::memchr::One::new(b'\n') {
            return LineEnds::Avx2(one);
        }
        LineEnds::Any
    }

    /// Where the first `\n` of `bytes` is.
    #[inline]
    pub(crate) fn find(&self, bytes: &[u8]) -> Option<usize> {
        match self {
            #[cfg(target_arch = "x86_64")]
            LineEnds::Avx2(one) => one.find(bytes),
            LineEnds::Any => memchr::memchr(b'\n', bytes),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both searchers agree with a loop, at every length and place.
    #[test]
    fn finds_the_first_newline() {
        for len in 0..200usize {
            for at in (0..len).step_by(7).chain([len]) {
                let mut bytes = vec![b'x'; len];
                if at < len {
                    bytes[at] = b'\n';
                    if at + 3 < len {
                        bytes[at + 3] = b'\n';
                    }
                }
                let want = bytes.iter().position(|&b| b == b'\n');
                assert_eq!(LineEnds::new().find(&bytes), want, "{len} {at}");
                assert_eq!(LineEnds::Any.find(&bytes), want);
            }
        }
    }
}
