//! A partition of JSON-lines pageviews: one file, or one split of a large
//! plain file, read in place or ahead on a thread of its own (see
//! [`AheadPartition`]).

use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::Arc;

use keyflow_dataflow::source::{
    AheadPartition, BadRecord, ChunkRead, FileSplit, InputFile, NextLine, PollStatus, Stopped,
    SKIP_CHUNK,
};
use keyflow_dataflow::time::EventTime;

use super::article::{Article, PageView};
use super::jsonl::{parse_line, LineFields};
use super::shared_interner::SharedInterner;

/// Articles a process keeps shared: enough for the busy part of a day's
/// traffic, at about 60 bytes each.
const INTERNED: usize = 1 << 20;

/// Lines held before their articles are looked up: enough that each of the
/// shared interner's locks is taken once for many names.
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

/// Lines read whose articles are not yet looked up: the interner looks up
/// many at a time.
#[derive(Default)]
pub(super) struct Held {
    /// Their names, one after another: UTF-8, checked all at once when
    /// they are looked up.
    names: Vec<u8>,
    pending: Vec<Pending>,
    articles: Vec<Article>,
}

/// A line read whose article is not yet looked up.
struct Pending {
    ts: EventTime,
    views: u64,
    /// Where its project and its title end in `names`.
    project_end: usize,
    title_end: usize,
}

impl Held {
    /// Keeps a parsed line until its articles are looked up; true when
    /// [`FLUSH`] lines are held.
    fn hold(&mut self, fields: &LineFields<'_>) -> bool {
        self.names.extend_from_slice(&fields.project);
        let project_end = self.names.len();
        self.names.extend_from_slice(&fields.title);
        self.pending.push(Pending {
            ts: fields.ts,
            views: fields.views,
            project_end,
            title_end: self.names.len(),
        });
        self.pending.len() == FLUSH
    }

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
        let stopped = loop {
            // The lines already in the buffer first, then one that refills
            // it (or opens or ends the file).
            let mut lines = file.buffered_bytes();
            while items < room {
                let Some(line) = lines.next() else { break };
                match parse_line(line) {
                    Ok(None) => continue,
                    Ok(Some(fields)) => self.take(&fields, interner, records),
                    Err(reason) => self.reject(lines.location(), reason, interner, records, bad),
                }
                items += 1;
            }
            if items == room {
                break Stopped::Full;
            }
            let next = match file.next_bytes() {
                Ok(next) => next,
                Err(e) => {
                    self.flush(interner, records);
                    return Err(e);
                }
            };
            let parsed = match next {
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
                Ok(fields) => self.take(&fields, interner, records),
                Err(reason) => self.reject(file.location(), reason, interner, records, bad),
            }
        };
        self.flush(interner, records);
        Ok((items, stopped))
    }

    /// Holds a parsed line, looking up the held lines' articles once
    /// there are enough.
    fn take(
        &mut self,
        fields: &LineFields<'_>,
        interner: &SharedInterner,
        records: &mut Vec<(EventTime, PageView)>,
    ) {
        if self.hold(fields) {
            self.flush(interner, records);
        }
    }

    /// Puts a malformed line in `bad`, after the records of the lines held
    /// before it.
    fn reject(
        &mut self,
        location: String,
        reason: String,
        interner: &SharedInterner,
        records: &mut Vec<(EventTime, PageView)>,
        bad: &mut impl Extend<(usize, BadRecord)>,
    ) {
        self.flush(interner, records);
        bad.extend([(records.len(), BadRecord::new(location, reason))]);
    }

    /// Looks up the held lines' articles and adds them to `records`, in
    /// the order they were read.
    pub(super) fn flush(
        &mut self,
        interner: &SharedInterner,
        records: &mut Vec<(EventTime, PageView)>,
    ) {
        if self.pending.is_empty() {
            return;
        }
        // Every name held is UTF-8, so this check cannot fail: one for all
        // the names costs less than one per name, and less than the lossy
        // conversion, which only stands in for a panic.
        let text = match std::str::from_utf8(&self.names) {
            Ok(text) => Cow::Borrowed(text),
            Err(_) => String::from_utf8_lossy(&self.names),
        };
        let mut start = 0;
        let names: Vec<(&str, &str)> = self
            .pending
            .iter()
            .map(|held| {
                let name = (
                    text.get(start..held.project_end).unwrap_or_default(),
                    text.get(held.project_end..held.title_end)
                        .unwrap_or_default(),
                );
                start = held.title_end;
                name
            })
            .collect();
        // Empty: the last flush drained it.
        interner.get_many(&names, &mut self.articles);
        for (held, article) in self.pending.drain(..).zip(self.articles.drain(..)) {
            records.push((held.ts, PageView::new(article, held.views)));
        }
        self.names.clear();
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use keyflow_dataflow::source::{Batch, Partition, ReadAheadWhen};
    use keyflow_dataflow::testing::{check_read_ahead, poll_to_end};

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
