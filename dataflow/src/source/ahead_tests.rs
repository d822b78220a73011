//! Reading JSON-lines and CSV partitions ahead hands out, poll by poll,
//! exactly what reading them in place does.

use std::sync::Arc;

use serde::Deserialize;

use super::ahead::{AheadPartition, ChunkRead};
use super::jsonl::JsonLine;
use super::test_file::temp;
use super::{plan_splits_at, CsvSource, ParsedLines, Source};
use crate::testing::check_read_ahead;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
struct Note {
    text: String,
    ts: u64,
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
    let open = |index: usize| {
        let ts = ts.clone();
        AheadPartition::new(ParsedLines::new(&splits[index], JsonLine { ts }))
    };
    // A thread that cannot start says which file it was for.
    let reader = open(2);
    assert_eq!(
        reader.reader().unwrap().describe(),
        file.display().to_string()
    );
    let items = check_read_ahead(splits.len(), open);
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
    let reader = src.reader(1).unwrap();
    assert_eq!(reader.describe(), file.display().to_string());
    let items = check_read_ahead(src.partitions(), |index| {
        AheadPartition::new(src.reader(index).unwrap())
    });
    assert_eq!(items, 12_345);
}
