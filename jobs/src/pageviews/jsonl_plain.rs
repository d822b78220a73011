//! A fast path for the JSON lines that keyflow and most producers write:
//! `{"project":"P","title":"T","ts":N,"views":N}` in that order, no spaces,
//! no escapes, `views` optional. It accepts a strict subset of what
//! `serde_json` accepts and reads the same values from it; any other line
//! (other order, extra fields, whitespace, escapes, floats, signs, leading
//! zeros, numbers past `u64`) returns `None` and goes to `serde_json`, which
//! also words the errors.

use std::ops::Range;

/// The fields of a plain line. The names are where they lie in the line,
/// and are UTF-8: a plain name is ASCII by its scan, any other is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Plain {
    pub(super) project: Range<usize>,
    pub(super) title: Range<usize>,
    pub(super) ts: u64,
    pub(super) views: u64,
    /// Whether both names are known to pass
    /// [`check_name`](super::jsonl::check_name): the scan for the closing
    /// quotes learns it.
    pub(super) names_checked: bool,
}

/// The fields of a plain line, or `None` for anything else. Reads bytes, so
/// that a file's lines need no UTF-8 check of their own: the literals are
/// ASCII, a plain name too, and any other name is checked.
pub(super) fn parse_plain(line: &[u8]) -> Option<Plain> {
    let mut at = 0;
    if !literal(line, &mut at, b"{\"project\":\"") {
        return None;
    }
    let (project, project_plain) = string(line, &mut at)?;
    if !literal(line, &mut at, b",\"title\":\"") {
        return None;
    }
    let (title, title_plain) = string(line, &mut at)?;
    if !literal(line, &mut at, b",\"ts\":") {
        return None;
    }
    let ts = number(line, &mut at)?;
    let mut views = 1;
    if literal(line, &mut at, b",\"views\":") {
        views = number(line, &mut at)?;
    }
    (&line[at..] == b"}").then_some(Plain {
        project,
        title,
        ts,
        views,
        names_checked: project_plain && title_plain,
    })
}

/// Whether `text` comes at `at`; if so, `at` moves past it. Its length is
/// a constant, so the comparison is a word or two, not a call.
#[inline(always)]
fn literal<const N: usize>(line: &[u8], at: &mut usize, text: &[u8; N]) -> bool {
    let found = line.get(*at..*at + N) == Some(&text[..]);
    if found {
        *at += N;
    }
    found
}

/// The body of the string that starts at `at`, up to its closing quote,
/// which `at` moves past, and whether the body is a plain name: not empty,
/// ASCII, no space or control character, so that it needs no further
/// check. `None` on an escape, a control character (which JSON forbids
/// unescaped), or a body that is not UTF-8.
#[inline(always)]
fn string(line: &[u8], at: &mut usize) -> Option<(Range<usize>, bool)> {
    let bytes = &line[*at..];
    // Nearly every name ends at its quote in this first scan; anything
    // else a name may hold (spaces, other characters) takes the second.
    let first = first_stop(bytes)?;
    let (end, plain) = if bytes[first] == b'"' {
        (first, first > 0)
    } else {
        let more = bytes[first..]
            .iter()
            .position(|&b| b == b'"' || b == b'\\' || b < 0x20)?;
        (first + more, false)
    };
    if bytes[end] != b'"' || (!plain && std::str::from_utf8(&bytes[..end]).is_err()) {
        return None;
    }
    let body = *at..*at + end;
    *at += end + 1;
    Some((body, plain))
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// 10 to the power of each digit count below eight: a load, where `pow`
/// with a count known only at run time is a loop.
const POWERS_OF_TEN: [u64; 8] = [1, 10, 100, 1_000, 10_000, 100_000, 1_000_000, 10_000_000];

/// Where the first byte of `bytes` is that ends a plain name: a quote, a
/// backslash, a space or control character, or 0x7f and above. Eight bytes
/// at a time while eight are left, as a name is about fifteen.
fn first_stop(bytes: &[u8]) -> Option<usize> {
    let mut words = bytes.chunks_exact(8);
    for (n, chunk) in words.by_ref().enumerate() {
        let stops = stops(word(chunk));
        if stops != 0 {
            return Some(n * 8 + stops.trailing_zeros() as usize / 8);
        }
    }
    let done = bytes.len() - words.remainder().len();
    let more = words.remainder().iter().position(|&b| ends_plain(b))?;
    Some(done + more)
}

/// Whether `b` ends a plain name (see [`first_stop`]).
fn ends_plain(b: u8) -> bool {
    b == b'"' || b == b'\\' || b <= b' ' || b >= 0x7f
}

/// A word whose lowest set bit is the high bit of its first byte (in
/// memory order) that [`first_stop`] stops at; 0 when it has none. Each
/// test below marks its first match exactly (a borrow only runs upwards
/// from a byte that matches), so the lowest mark of all of them is exact.
fn stops(word: u64) -> u64 {
    let below = |n: u64| word.wrapping_sub(ONES * n) & !word & HIGHS;
    let equal = |b: u8| {
        let x = word ^ (ONES * u64::from(b));
        x.wrapping_sub(ONES) & !x & HIGHS
    };
    below(0x21) | equal(b'"') | equal(b'\\') | equal(0x7f) | (word & HIGHS)
}

/// An unsigned integer as JSON writes it: no sign, no leading zero, no
/// fraction or exponent (`at` stops before those, which fails the caller).
/// Eight digits at a time while eight are left, as an event time has
/// thirteen.
#[inline(always)]
fn number(line: &[u8], at: &mut usize) -> Option<u64> {
    let bytes = &line[*at..];
    let mut value = 0u64;
    let mut len = 0;
    while let Some(chunk) = bytes.get(len..len + 8) {
        let w = word(chunk);
        let digits = digits_in(w);
        if digits < 8 {
            value = append(value, w, digits)?;
            return finish(bytes, value, len + digits, at);
        }
        value = value
            .checked_mul(100_000_000)?
            .checked_add(eight_digits(w))?;
        len += 8;
    }
    // Fewer than eight bytes left: a word of them, ended by a non-digit.
    // The line's last eight bytes, shifted down, put zeros past its end;
    // copying the tail into a padded word instead stalls the load that
    // reads it back.
    let tail = bytes.len() - len;
    let w = match line.len().checked_sub(8) {
        _ if tail == 0 => 0,
        Some(last) => word(&line[last..]) >> (8 * (8 - tail)),
        None => {
            let mut padded = [b' '; 8];
            padded[..tail].copy_from_slice(&bytes[len..]);
            u64::from_le_bytes(padded)
        }
    };
    let digits = digits_in(w);
    value = append(value, w, digits)?;
    finish(bytes, value, len + digits, at)
}

/// `value` followed by the first `digits` (fewer than eight) digits of
/// `word`, checked for overflow.
#[inline(always)]
fn append(value: u64, word: u64, digits: usize) -> Option<u64> {
    if digits == 0 {
        return Some(value);
    }
    // The digits moved to the word's end, '0's before them.
    let shift = 8 * (8 - digits as u32);
    let padded = (word << shift) | (ONES * u64::from(b'0')) >> (64 - shift);
    value
        .checked_mul(POWERS_OF_TEN[digits])?
        .checked_add(eight_digits(padded))
}

/// The number of `len` digits at the start of `bytes` is `value`: moves
/// `at` past them, unless there are none or a leading zero.
fn finish(bytes: &[u8], value: u64, len: usize, at: &mut usize) -> Option<u64> {
    if len == 0 || (len > 1 && bytes[0] == b'0') {
        return None;
    }
    *at += len;
    Some(value)
}

/// How many of a word's bytes, from its first in memory, are ASCII digits.
/// A byte is a digit when XOR `'0'` leaves at most 9: no high nibble, and
/// adding 6 does not carry into it. A carry only runs upwards from a byte
/// that is no digit already, so the lowest mark is exact.
fn digits_in(word: u64) -> usize {
    let x = word ^ (ONES * u64::from(b'0'));
    let not_digit = (x | x.wrapping_add(ONES * 6)) & (ONES * 0xf0);
    (not_digit.trailing_zeros() / 8) as usize
}

/// The value of a word of eight ASCII digits, the first in memory the
/// most significant: pairs, then fours, then all eight, by multiplies.
fn eight_digits(word: u64) -> u64 {
    let w = word - ONES * u64::from(b'0');
    let w = (w * 10 + (w >> 8)) & 0x00ff_00ff_00ff_00ff;
    let w = (w * 100 + (w >> 16)) & 0x0000_ffff_0000_ffff;
    (w * 10_000 + (w >> 32)) & 0xffff_ffff
}

/// Eight bytes as a little-endian word.
#[inline(always)]
pub(super) fn word(eight: &[u8]) -> u64 {
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(eight);
    u64::from_le_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pageviews::jsonl::{check_name, JsonView};

    fn fields(line: &str) -> Option<(String, String, Option<u64>, u64)> {
        parse_plain(line.as_bytes()).map(|v| {
            (
                line[v.project].into(),
                line[v.title].into(),
                Some(v.ts),
                v.views,
            )
        })
    }

    #[test]
    fn reads_plain_lines() {
        let line = r#"{"project":"en","title":"Main_Page","ts":1470009600000,"views":3}"#;
        let want = ("en".into(), "Main_Page".into(), Some(1_470_009_600_000), 3);
        assert_eq!(fields(line), Some(want));
        let line = r#"{"project":"de.m","title":"Zürich","ts":0}"#;
        assert_eq!(
            fields(line),
            Some(("de.m".into(), "Zürich".into(), Some(0), 1))
        );
    }

    #[test]
    fn knows_which_names_need_no_check() {
        let checked = |line: &str| parse_plain(line.as_bytes()).map(|v| v.names_checked);
        assert_eq!(
            checked(r#"{"project":"en","title":"Main_Page","ts":1}"#),
            Some(true)
        );
        for title in ["Main Page", "", "A\u{7f}", "Zürich", "A\u{a0}B", "A~\u{80}"] {
            let line = format!(r#"{{"project":"en","title":"{title}","ts":1}}"#);
            assert_eq!(checked(&line), Some(false), "{title:?}");
        }
        assert_eq!(checked(r#"{"project":"","title":"A","ts":1}"#), Some(false));
    }

    /// A name that is not UTF-8 is declined, for the slow path to name
    /// the error; one that is, and not plain, is read.
    #[test]
    fn declines_names_that_are_not_utf8() {
        let line = |title: &[u8]| {
            let mut line = br#"{"project":"en","title":""#.to_vec();
            line.extend_from_slice(title);
            line.extend_from_slice(br#"","ts":1}"#);
            line
        };
        assert!(parse_plain(&line(b"A\xffB")).is_none());
        assert!(parse_plain(&line(b"\xc3")).is_none());
        let zurich = line("Zürich".as_bytes());
        let read = parse_plain(&zurich).map(|v| zurich[v.title].to_vec());
        assert_eq!(read.as_deref(), Some("Zürich".as_bytes()));
    }

    #[test]
    fn finds_where_a_plain_name_stops_as_a_plain_loop_does() {
        let plain = |bytes: &[u8]| bytes.iter().position(|&b| ends_plain(b));
        let mut x: u64 = 9;
        for len in 0..40usize {
            for _ in 0..300 {
                let bytes: Vec<u8> = (0..len)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        // Mostly name bytes, with every kind of stop.
                        match x % 16 {
                            0 => [b'"', b'\\', b' ', 0x7f, 0x80, 0xff, 0, 0x21]
                                [(x >> 8) as usize % 8],
                            _ => b'!' + (x >> 8) as u8 % 94,
                        }
                    })
                    .collect();
                assert_eq!(first_stop(&bytes), plain(&bytes), "{bytes:?}");
            }
        }
    }

    #[test]
    fn reads_numbers_as_str_parse_does() {
        let mut x: u64 = 5;
        for len in 1..=20usize {
            for round in 0..200 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let mut text: String = (0..len)
                    .map(|i| char::from(b'0' + ((x >> (i % 60)) % 10) as u8))
                    .collect();
                if round % 2 == 0 {
                    // Any byte after the digits, digits' neighbours included.
                    let tail = [b'/', b':', b'}', b',', b' ', b'.', b'e'][round % 7];
                    text.push(char::from(tail));
                }
                let digits = &text[..len];
                let leading_zero = len > 1 && digits.starts_with('0');
                let want = digits.parse::<u64>().ok().filter(|_| !leading_zero);
                // Alone, and after a field name: a line of fewer than eight
                // bytes, and one whose last eight start before the number.
                for prefix in ["", "{\"views\":"] {
                    let line = format!("{prefix}{text}");
                    let mut at = prefix.len();
                    assert_eq!(number(line.as_bytes(), &mut at), want, "{line}");
                    if want.is_some() {
                        assert_eq!(at, prefix.len() + len);
                    }
                }
            }
        }
    }

    /// Lines changed at random, a byte replaced, added or removed here and
    /// there: whatever the fast path accepts, serde reads alike, and names
    /// it calls checked pass the check.
    #[test]
    fn changed_lines_read_as_serde_reads_them() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let names = [
            "en",
            "de.m",
            "Main_Page",
            "Zürich",
            "A B",
            "",
            "Article_0005485",
        ];
        let bytes: &[u8] = b"\"\\{}:,. 0123456789eE+-_aZ\x7f\x80\xc3\xa9\xff\t";
        let mut accepted = 0;
        for _ in 0..20_000 {
            let project = names[next() as usize % names.len()];
            let title = names[next() as usize % names.len()];
            let views = match next() % 3 {
                0 => String::new(),
                n => format!(",\"views\":{}", next() % 10u64.pow(n as u32 * 4)),
            };
            let ts = next() % 10u64.pow(1 + next() as u32 % 19);
            let mut line =
                format!(r#"{{"project":"{project}","title":"{title}","ts":{ts}{views}}}"#)
                    .into_bytes();
            for _ in 0..next() % 3 {
                let at = next() as usize % (line.len() + 1);
                let byte = bytes[next() as usize % bytes.len()];
                match (next() % 3, at < line.len()) {
                    (0, true) => line[at] = byte,
                    (1, _) => line.insert(at, byte),
                    (_, true) => {
                        line.remove(at);
                    }
                    _ => {}
                }
            }
            let serde = serde_json::from_slice::<JsonView>(&line)
                .ok()
                .map(|v| (v.project.into_owned(), v.title.into_owned(), v.ts, v.views));
            let Some(plain) = parse_plain(&line) else {
                continue;
            };
            accepted += 1;
            let text = |range: Range<usize>| String::from_utf8(line[range].to_vec());
            let (project, title) = (text(plain.project).unwrap(), text(plain.title).unwrap());
            if plain.names_checked {
                assert!(check_name("project", &project).is_ok(), "{project:?}");
                assert!(check_name("title", &title).is_ok(), "{title:?}");
            }
            let fast = Some((project, title, Some(plain.ts), plain.views));
            assert_eq!(fast, serde, "{}", String::from_utf8_lossy(&line));
        }
        assert!(accepted > 5_000, "{accepted} lines accepted");
    }

    /// Whatever the fast path declines, serde reads (or rejects); whatever
    /// it accepts, it reads as serde does.
    #[test]
    fn declines_everything_else_and_agrees_with_serde() {
        let lines = [
            r#"{"project":"en","title":"A","ts":5,"views":2}"#,
            r#"{"title":"A","project":"en","ts":5}"#,
            r#"{"project":"en","title":"A","ts":5,"views":2,"x":1}"#,
            r#"{"project":"en","title":"A","ts":5 }"#,
            r#"{ "project":"en","title":"A","ts":5}"#,
            r#"{"project":"en","title":"A\"B","ts":5}"#,
            r#"{"project":"en","title":"A\u0042","ts":5}"#,
            "{\"project\":\"en\",\"title\":\"A\tB\",\"ts\":5}",
            r#"{"project":"en","title":"A","ts":05}"#,
            r#"{"project":"en","title":"A","ts":-5}"#,
            r#"{"project":"en","title":"A","ts":5.0}"#,
            r#"{"project":"en","title":"A","ts":5e3}"#,
            r#"{"project":"en","title":"A","ts":18446744073709551615}"#,
            r#"{"project":"en","title":"A","ts":18446744073709551616}"#,
            r#"{"project":"en","title":"A","ts":5,"views":0}"#,
            r#"{"project":"en","title":"A","ts":5,"views":}"#,
            r#"{"project":"en","title":"A","ts":5}x"#,
            r#"{"project":"en","title":"A","ts":5}}"#,
            r#"{"project":"en","title":"A"}"#,
            r#"{"project":"en","title":"A","ts":"5"}"#,
            r#"{"project":"en","title":"A"#,
            "{\"project\":\"en\",\"title\":\"A\",\"ts\":5}\r",
            "",
        ];
        let mut accepted = 0;
        for line in lines {
            let serde = serde_json::from_str::<JsonView>(line)
                .ok()
                .map(|v| (v.project.into_owned(), v.title.into_owned(), v.ts, v.views));
            if let Some(fast) = fields(line) {
                accepted += 1;
                assert_eq!(Some(fast), serde, "{line}");
            }
        }
        // The canonical form, the large ts, and `views` 0 (checked later).
        assert_eq!(accepted, 3);
    }
}
