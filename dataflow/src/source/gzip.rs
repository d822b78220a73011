//! Gzip input: one member after another, as `gzip -d` reads a file, with
//! the zero padding that block-oriented tools leave after the last one.

use std::io::{BufRead, Read};

use flate2::bufread::GzDecoder;

/// The first byte of a gzip member (`1f 8b`).
const MAGIC: u8 = 0x1f;

/// The decompressed bytes of every gzip member in `input`, in order. Zero
/// bytes after a member are padding and are passed over, as `gzip -d` and
/// Python's `gzip` module pass them; anything else there that does not
/// start a member is an error, where a decoder that stops at the first
/// member would silently drop the rest.
pub(crate) struct GzMembers<R: BufRead> {
    /// The member being read; `None` once the input has ended.
    member: Option<GzDecoder<R>>,
}

impl<R: BufRead> GzMembers<R> {
    /// Reads `input`, which starts with a member.
    pub(crate) fn new(input: R) -> Self {
        GzMembers {
            member: Some(GzDecoder::new(input)),
        }
    }
}

impl<R: BufRead> Read for GzMembers<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while let Some(member) = self.member.as_mut() {
            let n = member.read(buf)?;
            if n > 0 || buf.is_empty() {
                return Ok(n);
            }
            // The member has ended; its decoder consumed exactly its bytes.
            if let Some(mut input) = self.member.take().map(GzDecoder::into_inner) {
                if next_member(&mut input)? {
                    self.member = Some(GzDecoder::new(input));
                }
            }
        }
        Ok(0)
    }
}

/// Passes zero padding; true when another member follows, false at the
/// end of the input.
fn next_member(input: &mut impl BufRead) -> std::io::Result<bool> {
    loop {
        let ahead = input.fill_buf()?;
        let Some(&first) = ahead.first() else {
            return Ok(false);
        };
        let zeros = ahead.iter().take_while(|&&b| b == 0).count();
        if zeros == 0 {
            return match first {
                MAGIC => Ok(true),
                _ => Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "after the gzip data comes something that is neither another gzip \
                     member nor zero padding",
                )),
            };
        }
        input.consume(zeros);
    }
}

#[cfg(test)]
pub(super) mod tests {
    use std::io::Write;

    use super::*;

    /// `text` as one gzip member.
    pub(crate) fn gzip(text: &[u8]) -> Vec<u8> {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(text).unwrap();
        gz.finish().unwrap()
    }

    /// Decompresses `bytes` through a reader whose buffer holds `buffer`
    /// bytes, so that members and padding cross its refills.
    fn read(bytes: &[u8], buffer: usize) -> std::io::Result<Vec<u8>> {
        let mut out = Vec::new();
        GzMembers::new(std::io::BufReader::with_capacity(buffer, bytes)).read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn members_and_zero_padding_are_read_as_gzip_reads_them() {
        let (a, b) = (gzip(b"first\n"), gzip(b"second\n"));
        let zeros = vec![0u8; 700];
        let cases: [(Vec<u8>, &[u8]); 5] = [
            (a.clone(), b"first\n"),
            ([&a[..], &b[..]].concat(), b"first\nsecond\n"),
            ([&a[..], &zeros[..]].concat(), b"first\n"),
            ([&a[..], &[0]].concat(), b"first\n"),
            (
                [&a[..], &zeros[..], &b[..], &zeros[..]].concat(),
                b"first\nsecond\n",
            ),
        ];
        for (bytes, text) in cases {
            for buffer in [1, 2, 7, 64, 1 << 16] {
                assert_eq!(read(&bytes, buffer).unwrap(), text, "buffer {buffer}");
            }
        }
    }

    #[test]
    fn anything_else_after_a_member_is_an_error() {
        let a = gzip(b"first\n");
        for tail in [&b"garbage\n"[..], b"\0\0x", b"\x1f\x00"] {
            for buffer in [1, 64, 1 << 16] {
                let bytes = [&a[..], tail].concat();
                assert!(read(&bytes, buffer).is_err(), "{tail:?}, buffer {buffer}");
            }
        }
        let cut = &a[..a.len() - 3];
        assert!(read(cut, 64).is_err(), "a member cut short");
    }
}
