//! The reference of `keyflow bench sliding`: the same sliding count as a
//! plain single-thread loop over the same file, writing the same results.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;

use keyflow::dataflow::time::MINUTE;

use super::bench_sliding::{line, Format, BUFFER, SIZE};

/// The reference: one thread, dense key ids, one pane of counts a minute
/// and a running sum over the last ten; a window's keys come out in order
/// by walking the sum's array.
pub(super) fn reference(
    input: &Path,
    out: &Path,
    keys: u64,
    format: Format,
) -> anyhow::Result<u64> {
    let mut reader = BufReader::with_capacity(1 << 20, File::open(input)?);
    let mut out = BufWriter::with_capacity(BUFFER, File::create(out)?);
    let keys = keys as usize;
    let (mut pane, mut sum) = (vec![0u32; keys], vec![0u32; keys]);
    let mut touched: Vec<u32> = Vec::new();
    let mut panes: std::collections::VecDeque<Vec<(u32, u32)>> = Default::default();
    let mut minute: Option<u64> = None;
    let mut live = 0usize;
    // Closes minute `m`'s pane: the window ending after it comes out, and
    // the pane that leaves the next window is taken off the sum.
    let mut close = |m: u64,
                     pane: &mut Vec<u32>,
                     touched: &mut Vec<u32>,
                     out: &mut BufWriter<File>|
     -> std::io::Result<()> {
        let mut counts = Vec::with_capacity(touched.len());
        for &k in touched.iter() {
            let c = std::mem::take(&mut pane[k as usize]);
            if sum[k as usize] == 0 {
                live += 1;
            }
            sum[k as usize] += c;
            counts.push((k, c));
        }
        touched.clear();
        let end = (m + 1) * MINUTE;
        if live > 0 {
            for (k, &c) in sum.iter().enumerate() {
                if c > 0 {
                    line(out, format, end - SIZE, end, k as u64, c as u64)?;
                }
            }
        }
        panes.push_back(counts);
        if panes.len() == (SIZE / MINUTE) as usize {
            for (k, c) in panes.pop_front().unwrap_or_default() {
                sum[k as usize] -= c;
                if sum[k as usize] == 0 {
                    live -= 1;
                }
            }
        }
        Ok(())
    };
    let mut text = String::new();
    reader.read_line(&mut text)?;
    let mut events = 0u64;
    let mut bytes = Vec::with_capacity(64);
    loop {
        bytes.clear();
        if reader.read_until(b'\n', &mut bytes)? == 0 {
            break;
        }
        let (key, ts) = parse_row(&bytes)
            .ok_or_else(|| anyhow::anyhow!("bad row `{}`", String::from_utf8_lossy(&bytes)))?;
        anyhow::ensure!((key as usize) < keys, "key {key} outside --keys");
        let m = ts / MINUTE;
        match minute {
            Some(current) if m > current => {
                for empty in current..m {
                    close(empty, &mut pane, &mut touched, &mut out)?;
                }
            }
            Some(current) if m < current => anyhow::bail!("rows out of time order"),
            _ => {}
        }
        minute = Some(m);
        if pane[key as usize] == 0 {
            touched.push(key as u32);
        }
        pane[key as usize] += 1;
        events += 1;
    }
    if let Some(last) = minute {
        // The stream ended: every window holding an event closes.
        for m in last..last + SIZE / MINUTE {
            close(m, &mut pane, &mut touched, &mut out)?;
        }
    }
    out.flush()?;
    Ok(events)
}

/// `key,ts` without allocating.
fn parse_row(row: &[u8]) -> Option<(u64, u64)> {
    let row = row.strip_suffix(b"\n").unwrap_or(row);
    let comma = row.iter().position(|&b| b == b',')?;
    Some((number(&row[..comma])?, number(&row[comma + 1..])?))
}

fn number(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &d| {
        d.is_ascii_digit()
            .then(|| n.checked_mul(10)?.checked_add((d - b'0') as u64))
            .flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_parse_and_bad_ones_do_not() {
        assert_eq!(
            parse_row(b"12,1704067200000\n"),
            Some((12, 1_704_067_200_000))
        );
        assert_eq!(parse_row(b"12,\n"), None);
        assert_eq!(parse_row(b"x,1\n"), None);
        assert_eq!(parse_row(b"99999999999999999999,1"), None);
    }
}
