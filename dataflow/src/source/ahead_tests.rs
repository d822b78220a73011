//! Reading JSON-lines and CSV partitions ahead hands out, poll by poll,
//! exactly what reading them in place does.

use std::sync::Arc;

use serde::Deserialize;

use super::ahead::{AheadPartition, ChunkRead, ReadAheadWhen};
use super::jsonl::JsonReader;
use super::test_file::temp;
use super::{plan_splits_at, Batch, CsvSource, InputFile, Partition, PollStatus, Source};
use crate::time::EventTime;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
struct Note {
    text: String,
    ts: u64,
}

type Polled = (Vec<(EventTime, Note)>, Vec<String>, PollStatus);

/// Polls with `limits` in turn (then 4096 until done), pausing after the
/// polls listed in `pauses`; and whether it read ahead.
fn polls<R: ChunkRead<Note>>(
    p: &mut AheadPartition<Note, R>,
    limits: &[usize],
    pauses: &[usize],
) -> (Vec<Polled>, bool) {
    let mut out = Vec::new();
    let mut ahead = false;
    for i in 0..10_000 {
        let mut batch = Batch::new(limits.get(i).copied().unwrap_or(4096));
        let status = p.poll(&mut batch).unwrap();
        ahead |= p.is_reading_ahead();
        let bad = batch
            .bad
            .iter()
            .map(|b| format!("{}: {}", b.location, b.reason))
            .collect();
        out.push((std::mem::take(&mut batch.records), bad, status));
        if pauses.contains(&i) {
            p.pause();
        }
        if status == PollStatus::Done {
            assert!(!p.is_reading_ahead() && p.reader().is_some());
            return (out, ahead);
        }
    }
    panic!("no end");
}

/// Skips `n` items, as a resumed partition does before its first poll.
fn skipped<R: ChunkRead<Note>>(mut p: AheadPartition<Note, R>, n: u64) -> AheadPartition<Note, R> {
    let mut skipped = 0;
    while skipped < n {
        skipped += p.skip(n - skipped).unwrap().0;
    }
    p
}

/// A priming poll first (no thread), then large ones, some cutting a
/// chunk, and a small one among them.
const LIMITS: [usize; 8] = [16, 2000, 1024, 5000, 1500, 3, 4096, 1100];

/// Reads each partition `open` gives, in place and ahead (through pauses
/// and after a skip), and checks that the polls agree; returns how many
/// items the partitions held.
fn agree<R: ChunkRead<Note>>(
    partitions: usize,
    open: impl Fn(usize) -> AheadPartition<Note, R>,
) -> usize {
    let mut items = 0;
    for index in 0..partitions {
        let (here, ahead) = polls(
            &mut open(index).read_ahead(ReadAheadWhen::Never),
            &LIMITS,
            &[],
        );
        assert!(!ahead);
        items += here.iter().map(|p| p.0.len() + p.1.len()).sum::<usize>();
        for pauses in [&[][..], &[1, 2, 4][..]] {
            let mut p = open(index).read_ahead(ReadAheadWhen::Always);
            let (there, ahead) = polls(&mut p, &LIMITS, pauses);
            assert!(ahead, "a large poll of an open input reads ahead");
            assert_eq!(there, here, "partition {index}, pauses {pauses:?}");
        }
        let resumed = |when| skipped(open(index).read_ahead(when), 3000);
        let (there, ahead) = polls(&mut resumed(ReadAheadWhen::Always), &[1024], &[]);
        let (here, _) = polls(&mut resumed(ReadAheadWhen::Never), &[1024], &[]);
        assert_eq!(there, here);
        assert!(ahead || here.len() == 1, "a resumed partition reads ahead");
    }
    items
}

#[test]
fn json_lines_read_ahead_as_in_place() {
    let mut text = Vec::new();
    for i in 0..12_345u64 {
        match i % 997 {
            5 => text.extend_from_slice(b"\n"),
            17 => text.extend_from_slice(b"not json\n"),
            301 => text.extend_from_slice(b"{\"text\":\"no time\"}\n"),
            400 => text.extend_from_slice(b"{\"text\":\"\xff\",\"ts\":1}\n"),
            _ => text.extend_from_slice(format!("{{\"text\":\"n{i}\",\"ts\":{i}}}\n").as_bytes()),
        }
    }
    let file = temp("ahead.jsonl", &text);
    let splits = plan_splits_at(std::slice::from_ref(&*file), text.len() as u64 / 3 + 1);
    assert_eq!(splits.len(), 3);
    let ts = Arc::new(|n: &Note| (n.ts > 0).then_some(n.ts));
    let items = agree(splits.len(), |index| {
        AheadPartition::new(JsonReader {
            file: InputFile::split(&splits[index]),
            ts: ts.clone(),
        })
    });
    assert_eq!(items, 12_345 - 13, "every line but the blank ones");
}

#[test]
fn csv_rows_read_ahead_as_in_place() {
    let mut text = b"text,ts\n".to_vec();
    for i in 0..12_345u64 {
        match i % 997 {
            17 => text.extend_from_slice(b"one field\n"),
            301 => text.extend_from_slice(b"no time,\n"),
            400 => text.extend_from_slice(format!("\"a\nquoted\",{i}\n").as_bytes()),
            _ => text.extend_from_slice(format!("n{i},{i}\n").as_bytes()),
        }
    }
    let file = temp("ahead.csv", &text);
    let src = CsvSource::<Note>::new("notes", vec![file.to_path_buf()], "ts")
        .split_size(text.len() as u64 / 3 + 1);
    assert_eq!(src.partitions(), 3);
    let items = agree(src.partitions(), |index| {
        AheadPartition::new(src.reader(index).unwrap())
    });
    assert_eq!(items, 12_345);
}
