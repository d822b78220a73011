//! Where activity events come from: JSON-lines files or the generator.

use std::path::PathBuf;

use keyflow_dataflow::source::{
    check_exists, plan_splits, split_of, Batch, FileSplit, InputFile, NextLine, Partition,
    PollStatus, Source, SKIP_CHUNK,
};

use super::event::{parse_activity_line, Activity, Strings};
use super::generator::{ActivityGenerator, ActivityGeneratorConfig};
use crate::error::Result;
use crate::pageviews::input_files;

/// Activity JSON-lines files (gzip or plain, told apart by their first
/// bytes), one partition per file or, for a large plain file, per byte-range
/// split of it (see [`plan_splits`]), each opened when first read. Lines are
/// parsed by [`parse_activity_line`]; malformed ones become bad records named
/// `file:line`, or `file@byte N` in a split that does not start its file,
/// and blank lines are skipped.
///
/// # Examples
/// ```
/// use keyflow_dataflow::source::{Batch, Source};
/// use keyflow_jobs::activity::ActivityJsonl;
///
/// let path = std::env::temp_dir().join(format!("keyflow-activity-doc-{}.jsonl", std::process::id()));
/// let line = r#"{"user_id":"u","session_id":"s","page_url":"/","ts":7,"action_type":"view","browser":"b","device_type":"d"}"#;
/// std::fs::write(&path, format!("{line}\nnot json\n"))?;
/// let src = ActivityJsonl::new(vec![path.clone()]);
/// let mut batch = Batch::new(100);
/// src.open(0)?.poll(&mut batch)?;
/// std::fs::remove_file(&path)?;
/// assert_eq!(batch.records.len(), 1);
/// assert!(batch.bad[0].location.ends_with(":2"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct ActivityJsonl {
    splits: Vec<FileSplit>,
}

impl ActivityJsonl {
    /// A source over `files`, read as given.
    pub fn new(files: Vec<PathBuf>) -> Self {
        ActivityJsonl {
            splits: plan_splits(&files),
        }
    }
}

struct JsonlPartition {
    reader: InputFile,
    strings: Strings,
}

impl Partition<Activity> for JsonlPartition {
    fn poll(&mut self, batch: &mut Batch<Activity>) -> keyflow_dataflow::Result<PollStatus> {
        while !batch.is_full() {
            let parsed = match self.reader.next_line()? {
                NextLine::End => return Ok(PollStatus::Done),
                // Not open yet: other files hold every place.
                NextLine::Wait => break,
                NextLine::Line(Err(reason)) => Err(reason),
                NextLine::Line(Ok(line)) if line.trim().is_empty() => continue,
                NextLine::Line(Ok(line)) => parse_activity_line(line, &mut self.strings),
            };
            match parsed {
                Ok((ts, event)) => batch.push(ts, event),
                Err(reason) => batch.bad(self.reader.location(), reason),
            }
        }
        Ok(PollStatus::Ready)
    }

    fn offset(&self) -> u64 {
        self.reader.line()
    }

    fn skip(&mut self, n: u64) -> keyflow_dataflow::Result<(u64, PollStatus)> {
        // Blank lines are no items, every other line one: no need to parse.
        self.reader.skip_items(n.min(SKIP_CHUNK))
    }

    fn pause(&mut self) {
        self.reader.pause();
    }
}

impl Source for ActivityJsonl {
    type Item = Activity;

    fn name(&self) -> String {
        "activity-jsonl".into()
    }

    fn partitions(&self) -> usize {
        self.splits.len()
    }

    fn open(&self, index: usize) -> keyflow_dataflow::Result<Box<dyn Partition<Activity>>> {
        let split = &self.splits[index];
        check_exists(&split.path)?;
        Ok(Box::new(JsonlPartition {
            reader: InputFile::split(split),
            strings: Strings::default(),
        }))
    }

    fn split_of(&self, index: usize) -> Option<(usize, usize)> {
        split_of(&self.splits, index)
    }
}

/// Either activity source, so that a job or the CLI can take whichever the
/// user picks.
#[derive(Debug, Clone)]
pub enum ActivitySource {
    /// JSON-lines files.
    Jsonl(ActivityJsonl),
    /// The generator.
    Generator(ActivityGenerator),
}

impl ActivitySource {
    /// JSON-lines files from `inputs` (files, or directories standing for
    /// their files); every one must exist.
    pub fn from_files(inputs: &[PathBuf]) -> Result<Self> {
        Ok(ActivitySource::Jsonl(ActivityJsonl::new(input_files(
            inputs,
        )?)))
    }

    /// The generator, once `config` is validated.
    pub fn generator(config: ActivityGeneratorConfig) -> Result<Self> {
        Ok(ActivitySource::Generator(ActivityGenerator::new(config)?))
    }
}

impl Source for ActivitySource {
    type Item = Activity;

    fn name(&self) -> String {
        match self {
            ActivitySource::Jsonl(s) => s.name(),
            ActivitySource::Generator(s) => s.name(),
        }
    }

    fn partitions(&self) -> usize {
        match self {
            ActivitySource::Jsonl(s) => s.partitions(),
            ActivitySource::Generator(s) => s.partitions(),
        }
    }

    fn open(&self, index: usize) -> keyflow_dataflow::Result<Box<dyn Partition<Activity>>> {
        match self {
            ActivitySource::Jsonl(s) => s.open(index),
            ActivitySource::Generator(s) => s.open(index),
        }
    }

    fn split_of(&self, index: usize) -> Option<(usize, usize)> {
        match self {
            ActivitySource::Jsonl(s) => s.split_of(index),
            ActivitySource::Generator(s) => s.split_of(index),
        }
    }
}
