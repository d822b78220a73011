//! Wikimedia hourly dump files replayed as minute-stamped events.

use std::collections::HashMap;
use std::path::PathBuf;

use keyflow_dataflow::source::{
    check_exists, plan_splits, Batch, FileSplit, InputFile, NextLine, Partition, PollStatus, Source,
};
use keyflow_dataflow::time::{EventTime, MINUTE};

use super::article::{Article, PageView};
use super::dump::{hour_from_file_name, minute_views, parse_dump_line_with, DumpTime};

/// Wikimedia dump files (gzip or plain, told apart by their first bytes),
/// one partition per file or, for a large plain file, per byte-range split
/// of it (see [`plan_splits`]), each opened when first read (see
/// [`InputFile`]), replayed as events: a line with N views in an hour
/// becomes up to 60 events, one per minute with [`minute_views`] views,
/// stamped at the start of the minute.
///
/// A partition reads its whole file or split before emitting, into about 40
/// bytes plus the title per line, so that it can emit every minute-0 event
/// before any minute-1 event: event time never goes backwards within a
/// partition, and nothing is late. Malformed lines are bad records named
/// `file:line`, or `file@byte N` in a split that does not start its file.
///
/// # Examples
/// ```
/// use keyflow_dataflow::source::{Batch, Source};
/// use keyflow_jobs::pageviews::{DumpSource, DumpTime};
///
/// let dir = std::env::temp_dir().join(format!("keyflow-doc-dump-{}", std::process::id()));
/// std::fs::create_dir_all(&dir)?;
/// let path = dir.join("pageviews-20160801-000000");
/// std::fs::write(&path, "en Main_Page 61 0\nen Other 2 0\n")?;
/// let src = DumpSource::new(vec![path], DumpTime::Start);
/// let mut batch = Batch::new(1000);
/// src.open(0)?.poll(&mut batch)?;
/// std::fs::remove_dir_all(&dir)?;
/// let times: Vec<u64> = batch.records.iter().map(|(ts, _)| ts - 1_470_009_600_000).collect();
/// assert_eq!(&times[..4], &[0, 0, 60_000, 60_000]);
/// assert_eq!(batch.records.iter().map(|(_, v)| v.views).sum::<u64>(), 63);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct DumpSource {
    files: Vec<PathBuf>,
    splits: Vec<FileSplit>,
    time: DumpTime,
}

impl DumpSource {
    /// A source over `files`, whose hour stamps mean `time`.
    pub fn new(files: Vec<PathBuf>, time: DumpTime) -> Self {
        let splits = plan_splits(&files);
        DumpSource {
            files,
            splits,
            time,
        }
    }

    /// The files, one or more partitions each.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }
}

impl Source for DumpSource {
    type Item = PageView;

    fn name(&self) -> String {
        "pageviews-dump".into()
    }

    fn partitions(&self) -> usize {
        self.splits.len()
    }

    // No `split_of`: every split of an hourly dump replays the same hour,
    // so its splits are read alongside one another, not one after another.

    fn open(&self, index: usize) -> keyflow_dataflow::Result<Box<dyn Partition<PageView>>> {
        let split = &self.splits[index];
        check_exists(&split.path)?;
        Ok(Box::new(DumpPartition {
            reader: InputFile::split(split),
            loaded: false,
            file_stamp: hour_from_file_name(&split.path),
            time: self.time,
            projects: Projects::default(),
            entries: Vec::new(),
            group: 0..0,
            minute: 0,
            cursor: 0,
            emitted: 0,
        }))
    }
}

const LOAD_LINES_PER_POLL: usize = 16_384;

/// A line kept between loading and emitting; the project is an index into
/// the partition's few distinct domain codes.
struct Entry {
    hour: EventTime,
    views: u64,
    project: u32,
    title: Box<str>,
}

/// The distinct domain codes of a file, by number. A dump lists its lines
/// by project, so most lines name the project of the line before; the rest
/// are looked up by hash (a real dump has over a thousand projects).
#[derive(Default)]
struct Projects {
    names: Vec<String>,
    ids: HashMap<String, u32>,
    last: u32,
}

impl Projects {
    /// The number of `project`, numbered in order of first sight.
    fn id(&mut self, project: &str) -> u32 {
        if self
            .names
            .get(self.last as usize)
            .is_some_and(|p| p == project)
        {
            return self.last;
        }
        let next = self.names.len() as u32;
        let id = *self.ids.entry(project.to_string()).or_insert(next);
        if id == next {
            self.names.push(project.to_string());
        }
        self.last = id;
        id
    }

    /// The domain code numbered `id`.
    fn name(&self, id: u32) -> &str {
        self.names.get(id as usize).map_or("", String::as_str)
    }
}

struct DumpPartition {
    /// The file; it keeps its place among the open inputs until the
    /// partition is done emitting, so that few files' lines are held at once.
    reader: InputFile,
    /// Whether the whole file is loaded.
    loaded: bool,
    file_stamp: Option<EventTime>,
    time: DumpTime,
    projects: Projects,
    entries: Vec<Entry>,
    /// Entries of the hour being emitted; they are sorted by hour, then by
    /// views descending, so that a minute's pass stops at the first entry
    /// with too few views to reach it.
    group: std::ops::Range<usize>,
    minute: u64,
    cursor: usize,
    emitted: u64,
}

impl DumpPartition {
    /// Loads at most `budget` lines; true once the file is exhausted.
    fn load(
        &mut self,
        batch: &mut Batch<PageView>,
        budget: usize,
    ) -> keyflow_dataflow::Result<bool> {
        if self.loaded {
            return Ok(true);
        }
        for _ in 0..budget {
            // Bad lines count against the batch too, so that a resume can
            // skip exactly the items a poll returned.
            if batch.is_full() {
                return Ok(false);
            }
            let parsed = match self.reader.next_line()? {
                NextLine::End => {
                    self.loaded = true;
                    self.finish_loading();
                    return Ok(true);
                }
                // Not open yet: other files hold every place.
                NextLine::Wait => return Ok(false),
                NextLine::Line(Err(reason)) => Err(reason),
                NextLine::Line(Ok(line)) if line.trim().is_empty() => continue,
                NextLine::Line(Ok(line)) => parse_dump_line_with(line, self.file_stamp, self.time)
                    .map(|l| Entry {
                        hour: l.hour_start_ms,
                        views: l.views,
                        project: self.projects.id(l.project),
                        title: l.title.into(),
                    }),
            };
            match parsed {
                Ok(entry) if entry.views > 0 => self.entries.push(entry),
                // Well formed, but nothing to replay: counted, not bad.
                Ok(_) => batch.skip(),
                Err(reason) => batch.bad(self.reader.location(), reason),
            }
        }
        Ok(false)
    }

    fn finish_loading(&mut self) {
        // Stable, so equal counts keep file order: the replay is the same on
        // every run.
        self.entries
            .sort_by(|a, b| a.hour.cmp(&b.hour).then(b.views.cmp(&a.views)));
        self.start_group(0);
    }

    fn start_group(&mut self, start: usize) {
        let end = match self.entries.get(start) {
            Some(first) => start + self.entries[start..].partition_point(|e| e.hour == first.hour),
            None => start,
        };
        self.group = start..end;
        self.minute = 0;
        self.cursor = start;
    }
}

impl Partition<PageView> for DumpPartition {
    fn poll(&mut self, batch: &mut Batch<PageView>) -> keyflow_dataflow::Result<PollStatus> {
        // Loading is cut into steps so that one poll never blocks the worker
        // for a whole file.
        if !self.load(batch, LOAD_LINES_PER_POLL)? {
            return Ok(PollStatus::Ready);
        }
        while !batch.is_full() {
            if self.group.is_empty() {
                return Ok(PollStatus::Done);
            }
            if self.minute == 60 {
                self.start_group(self.group.end);
                continue;
            }
            match self.entries[self.cursor..self.group.end].first() {
                Some(e) if e.views > self.minute => {
                    let article = Article::named(self.projects.name(e.project), &*e.title);
                    let views = minute_views(e.views, self.minute);
                    batch.push(e.hour + self.minute * MINUTE, PageView::new(article, views));
                    self.cursor += 1;
                    self.emitted += 1;
                }
                _ => {
                    self.minute += 1;
                    self.cursor = self.group.start;
                }
            }
        }
        Ok(PollStatus::Ready)
    }

    /// Events emitted so far.
    fn offset(&self) -> u64 {
        self.emitted
    }
}

#[cfg(test)]
mod tests {
    use super::Projects;

    /// Projects are numbered in order of first sight, whether a line names
    /// the project of the line before or one seen long ago.
    #[test]
    fn projects_are_numbered_in_order_of_first_sight() {
        let mut projects = Projects::default();
        let ids: Vec<u32> = ["en", "en", "de", "en.m", "de", "de", "en", "fr"]
            .iter()
            .map(|p| projects.id(p))
            .collect();
        assert_eq!(ids, [0, 0, 1, 2, 1, 1, 0, 3]);
        assert_eq!(
            (0..4).map(|i| projects.name(i)).collect::<Vec<_>>(),
            ["en", "de", "en.m", "fr"]
        );
    }
}
