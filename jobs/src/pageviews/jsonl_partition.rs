//! A partition of JSON-lines pageviews: one file, or one split of a large
//! plain file, read in place or ahead on a thread of its own (see
//! [`AheadPartition`]).

use std::collections::VecDeque;
use std::sync::Arc;

use keyflow_dataflow::source::{
    AheadPartition, BadRecord, ChunkRead, FileSplit, InputFile, NextLine, PollStatus, Stopped,
    SKIP_CHUNK,
};
use keyflow_dataflow::time::EventTime;

use super::article::{Article, PageView};
use super::interner::NameBytes;
use super::jsonl::{parse_line, LineFields};
use super::shared_interner::SharedInterner;

/// Articles a process keeps shared: enough for the busy part of a day's
/// traffic, at about 60 bytes each.
const INTERNED: usize = 1 << 20;

/// Lines whose articles are looked up together, at most: enough that each
/// of the shared interner's locks is taken once for many names.
const FLUSH: usize = 1024;

/// One file, or one split of a file, read line by line: in place, or ahead
/// on a thread of its own.
pub(super) type JsonlPartition = AheadPartition<PageView, Lines>;

/// The partition of `split`'s lines, not opened yet.
pub(super) fn partition(split: &FileSplit) -> JsonlPartition {
    AheadPartition::new(Lines {
        file: InputFile::split(split),
        held: Held::default(),
        interner: SharedInterner::current(INTERNED),
    })
}

/// Reads a partition's lines and looks up their articles in the interner
/// every partition of the process shares: the splits of a file name the
/// same articles, and a keyed operator compares two handles to one
/// allocation without reading the names.
pub(super) struct Lines {
    file: InputFile,
    held: Held,
    interner: Arc<SharedInterner>,
}

impl ChunkRead<PageView> for Lines {
    fn read(
        &mut self,
        room: usize,
        records: &mut Vec<(EventTime, PageView)>,
        bad: &mut VecDeque<(usize, BadRecord)>,
    ) -> keyflow_dataflow::Result<(usize, Stopped)> {
        self.held
            .read(&mut self.file, &self.interner, room, records, bad)
    }

    fn is_open(&self) -> bool {
        self.file.is_open()
    }

    fn offset(&self) -> u64 {
        self.file.line()
    }

    fn skip(&mut self, n: u64) -> keyflow_dataflow::Result<(u64, PollStatus)> {
        // Blank lines are no items, every other line one: no need to parse.
        self.file.skip_items(n.min(SKIP_CHUNK))
    }

    fn pause(&mut self) {
        self.file.pause();
    }

    fn describe(&self) -> String {
        self.file.path().display().to_string()
    }
}

/// Looks up the articles of the lines read many at a time, straight from
/// the read buffer: the lines of one pass over the buffer are held, names
/// borrowed, until a group is full or the buffer is about to refill.
#[derive(Default)]
pub(super) struct Held {
    /// The articles of the group being looked up; empty between groups.
    articles: Vec<Article>,
}

impl Held {
    /// Reads up to `room` items (every line but blank ones) of `file`,
    /// parsing them and looking up their articles in `interner`, into
    /// `records`; each malformed line goes to `bad` with how many records
    /// come before it. Returns how many items it read and why it stopped.
    /// Every line read is in `records` or `bad` when it returns, after a
    /// read error too.
    pub(super) fn read(
        &mut self,
        file: &mut InputFile,
        interner: &SharedInterner,
        room: usize,
        records: &mut Vec<(EventTime, PageView)>,
        bad: &mut impl Extend<(usize, BadRecord)>,
    ) -> keyflow_dataflow::Result<(usize, Stopped)> {
        let mut items = 0;
        // The line read by a refill, its names copied: the buffer it came
        // from is refilled before it is looked up, with the next pass.
        let mut carried: Option<LineFields<'static>> = None;
        let stopped = loop {
            // The lines already in the buffer first, then one that refills
            // it (or opens or ends the file).
            let mut lines = file.buffered_bytes();
            let mut group: Vec<LineFields<'_>> = Vec::with_capacity(FLUSH);
            group.extend(carried.take());
            while items < room {
                let Some(line) = lines.next() else { break };
                match parse_line(line) {
                    Ok(None) => continue,
                    Ok(Some(fields)) => {
                        group.push(fields);
                        if group.len() == FLUSH {
                            self.flush(&mut group, interner, records);
                        }
                    }
                    Err(reason) => {
                        // After the records of the lines before it.
                        self.flush(&mut group, interner, records);
                        bad.extend([(records.len(), BadRecord::new(lines.location(), reason))]);
                    }
                }
                items += 1;
            }
            // Before the buffer the names borrow from refills.
            self.flush(&mut group, interner, records);
            drop(group);
            if items == room {
                break Stopped::Full;
            }
            let parsed = match file.next_bytes()? {
                NextLine::End => break Stopped::End,
                NextLine::Wait => break Stopped::Wait,
                NextLine::Line(Err(reason)) => Err(reason),
                NextLine::Line(Ok(line)) => match parse_line(line).transpose() {
                    Some(parsed) => parsed,
                    None => continue,
                },
            };
            items += 1;
            match parsed {
                Ok(fields) => carried = Some(fields.into_owned()),
                Err(reason) => {
                    bad.extend([(records.len(), BadRecord::new(file.location(), reason))])
                }
            }
        };
        Ok((items, stopped))
    }

    /// Looks up the articles of the lines of `group` and adds their
    /// records to `records`, in the order they were read; empties `group`.
    fn flush(
        &mut self,
        group: &mut Vec<LineFields<'_>>,
        interner: &SharedInterner,
        records: &mut Vec<(EventTime, PageView)>,
    ) {
        if group.is_empty() {
            return;
        }
        let names: Vec<NameBytes<'_>> = group
            .iter()
            .map(|fields| (&*fields.project, &*fields.title))
            .collect();
        // Empty: the last flush drained it.
        interner.get_many_bytes(&names, &mut self.articles);
        drop(names);
        let views = group.drain(..).zip(self.articles.drain(..));
        records.extend(
            views.map(|(fields, article)| (fields.ts, PageView::new(article, fields.views))),
        );
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use keyflow_dataflow::source::{Batch, Partition, ReadAheadWhen};
    use keyflow_dataflow::testing::{check_read_ahead, poll_to_end};

    use super::super::jsonl::parse_json_line;
    use super::*;

    /// A file of `n` lines, most good, some blank, malformed or not UTF-8.
    fn mixed_file(name: &str, n: usize) -> PathBuf {
        let path =
            std::env::temp_dir().join(format!("keyflow-{name}-{}.jsonl", std::process::id()));
        let mut bytes = Vec::new();
        for i in 0..n {
            match i % 997 {
                5 => bytes.extend_from_slice(b"\n"),
                17 => bytes.extend_from_slice(b"not json\n"),
                400 => {
                    bytes.extend_from_slice(b"{\"project\":\"en\",\"title\":\"\xff\",\"ts\":1}\n")
                }
                600 => bytes.extend_from_slice(
                    format!(
                        "{{\"project\":\"de\",\"title\":\"\\\"Zitat\\\"_\\u00e9{}\",\"ts\":{}}}\n",
                        i % 7,
                        1000 + i
                    )
                    .as_bytes(),
                ),
                700 => bytes.extend_from_slice(
                    format!(
                        "{{\"project\":\"de\",\"title\":\"Ä_{}\",\"ts\":{}}}\n",
                        i % 5,
                        1000 + i
                    )
                    .as_bytes(),
                ),
                _ => bytes.extend_from_slice(
                    format!(
                        "{{\"project\":\"en\",\"title\":\"T{}\",\"ts\":{},\"views\":{}}}\n",
                        i % 301,
                        1000 + i,
                        1 + i % 3
                    )
                    .as_bytes(),
                ),
            }
        }
        std::fs::write(&path, bytes).unwrap();
        path
    }

    /// Every line's record, as parsing the line alone gives it, in the
    /// order of the file: names borrowed from the read buffer, lines read
    /// by a refill, escaped and non-ASCII names alike.
    #[test]
    fn each_line_reads_as_it_parses_alone() {
        let path = mixed_file("each", 40_000);
        let bytes = std::fs::read(&path).unwrap();
        let (mut expected, mut malformed) = (Vec::new(), 0);
        for line in bytes.split(|&b| b == b'\n') {
            let parsed = std::str::from_utf8(line).map_err(|e| e.to_string());
            match parsed.and_then(|line| match line.trim() {
                "" => Ok(None),
                _ => parse_json_line(line).map(Some),
            }) {
                Ok(Some(record)) => expected.push(record),
                Ok(None) => {}
                Err(_) => malformed += 1,
            }
        }
        let limits: Vec<usize> = (0..200).map(|i| 1 + i * 37 % 3000).collect();
        let whole = FileSplit::whole(path.clone(), 0);
        let (polls, _) = poll_to_end(&mut partition(&whole, Never), &limits, &[]);
        std::fs::remove_file(&path).unwrap();
        let records: Vec<(EventTime, PageView)> = polls
            .iter()
            .flat_map(|(records, ..)| records.clone())
            .collect();
        let bad: usize = polls.iter().map(|(_, bad, _)| bad.len()).sum();
        assert_eq!(records.len(), expected.len());
        assert!(
            records == expected,
            "records differ from the lines parsed alone"
        );
        assert_eq!(bad, malformed);
        assert!(records
            .iter()
            .any(|(_, view)| &*view.article.title() == "\"Zitat\"_é3"));
        assert!(records
            .iter()
            .any(|(_, view)| &*view.article.title() == "Ä_2"));
    }

    /// Lines ended by `\r\n`, and a last line with no ending, read as
    /// their text says, at any room per poll.
    #[test]
    fn line_endings_and_a_last_line_without_one() {
        let path = std::env::temp_dir().join(format!("keyflow-ends-{}.jsonl", std::process::id()));
        let lines: Vec<String> = (0..3000)
            .map(|i| format!(r#"{{"project":"en","title":"T{}","ts":{i}}}"#, i % 17))
            .collect();
        std::fs::write(&path, lines.join("\r\n")).unwrap();
        let expected: Vec<(EventTime, PageView)> = lines
            .iter()
            .map(|line| parse_json_line(line).unwrap())
            .collect();
        let whole = FileSplit::whole(path.clone(), 0);
        for limits in [vec![1; 3000], vec![7; 500], vec![]] {
            let (polls, _) = poll_to_end(&mut partition(&whole, Never), &limits, &[]);
            let records: Vec<(EventTime, PageView)> = polls
                .iter()
                .flat_map(|(records, ..)| records.clone())
                .collect();
            assert!(polls.iter().all(|(_, bad, _)| bad.is_empty()));
            assert!(records == expected, "room {:?}", limits.first());
        }
        std::fs::remove_file(&path).unwrap();
    }

    fn partition(split: &FileSplit, when: ReadAheadWhen) -> JsonlPartition {
        super::partition(split).read_ahead(when)
    }

    use ReadAheadWhen::{Always, Never};

    /// Reading ahead hands out, poll by poll, exactly what reading in place
    /// does: the same records and bad lines in the same polls, across
    /// chunks, pauses that close the file, and a skip.
    #[test]
    fn reading_ahead_polls_like_reading_in_place() {
        let path = mixed_file("ahead", 12_345);
        let bytes = std::fs::metadata(&path).unwrap().len();
        let splits =
            keyflow_dataflow::source::plan_splits_at(std::slice::from_ref(&path), bytes / 3 + 1);
        assert_eq!(splits.len(), 3);
        let items = check_read_ahead(splits.len(), |index| super::partition(&splits[index]));
        std::fs::remove_file(&path).unwrap();
        assert_eq!(items, 12_345 - 13, "every line but the blank ones");
    }

    /// One partition of a worker reads ahead at a time, and a partition
    /// dropped while its thread reads stops the thread and lets another
    /// start.
    #[test]
    fn one_read_ahead_at_a_time_per_worker() {
        let path = mixed_file("ahead-one", 50_000);
        let whole = FileSplit::whole(path.clone(), 0);
        let mut a = partition(&whole, Always);
        let mut b = partition(&whole, Always);
        for p in [&mut a, &mut b] {
            p.poll(&mut Batch::new(16)).unwrap();
            p.poll(&mut Batch::new(2000)).unwrap();
        }
        assert!(a.is_reading_ahead() && !b.is_reading_ahead());
        drop(a);
        let (rest, ahead) = poll_to_end(&mut b, &[], &[]);
        assert!(ahead);
        let (mut here, _) = poll_to_end(&mut partition(&whole, Never), &[2016], &[]);
        here.remove(0);
        assert_eq!(rest, here);
        std::fs::remove_file(&path).unwrap();
    }
}
