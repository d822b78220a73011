//! Where activity events come from: JSON-lines files or the generator.

use std::path::PathBuf;

use keyflow_dataflow::source::{
    check_exists, plan_splits, split_of, AheadPartition, FileSplit, ParseLine, ParsedLines,
    Partition, Source,
};
use keyflow_dataflow::time::EventTime;

use super::event::{parse_activity_line, Activity, Strings};
use super::generator::{ActivityGenerator, ActivityGeneratorConfig};
use crate::error::Result;
use crate::pageviews::input_files;

/// Activity JSON-lines files (gzip or plain, told apart by their first
/// bytes), one partition per file or, for a large plain file, per byte-range
/// split of it (see [`plan_splits`]), each opened when first read and read
/// ahead on a thread of its own where the process has a core to spare (see
/// [`AheadPartition`]; what the job computes does not change). Lines are
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

/// Parses activity lines, sharing their repeated names.
struct ActivityLine {
    /// Moves with the reader, so a read-ahead thread shares names too.
    strings: Strings,
}

impl ParseLine<Activity> for ActivityLine {
    fn parse(&mut self, line: &str) -> Result<(EventTime, Activity), String> {
        parse_activity_line(line, &mut self.strings)
    }
}

impl ActivityJsonl {
    /// Partition `index`'s reader, not opened yet.
    fn reader(&self, index: usize) -> ParsedLines<ActivityLine> {
        let strings = Strings::default();
        ParsedLines::new(&self.splits[index], ActivityLine { strings })
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
        check_exists(&self.splits[index].path)?;
        Ok(Box::new(AheadPartition::new(self.reader(index))))
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

#[cfg(test)]
mod tests {
    use keyflow_dataflow::source::ChunkRead;
    use keyflow_dataflow::testing::check_read_ahead;

    use super::*;

    /// Reading ahead hands out what reading in place does, poll by poll,
    /// across the splits of a file with malformed and blank lines.
    #[test]
    fn activity_lines_read_ahead_as_in_place() {
        let path = std::env::temp_dir().join(format!(
            "keyflow-activity-ahead-{}.jsonl",
            std::process::id()
        ));
        let mut text = Vec::new();
        for i in 0..12_345u64 {
            match i % 997 {
                5 => text.extend_from_slice(b"\n"),
                17 => text.extend_from_slice(b"not json\n"),
                301 => text.extend_from_slice(b"{\"user_id\":\"u\",\"action_type\":\"tap\"}\n"),
                400 => text.extend_from_slice(b"{\"user_id\":\"\xff\"}\n"),
                _ => text.extend_from_slice(
                    format!(
                        "{{\"user_id\":\"u{}\",\"session_id\":\"s{}\",\"page_url\":\"/p{}\",\
                         \"ts\":{i},\"action_type\":\"view\",\"browser\":\"b\",\"device_type\":\"d\"}}\n",
                        i % 101,
                        i % 203,
                        i % 7
                    )
                    .as_bytes(),
                ),
            }
        }
        std::fs::write(&path, &text).unwrap();
        let src = ActivityJsonl {
            splits: keyflow_dataflow::source::plan_splits_at(
                std::slice::from_ref(&path),
                text.len() as u64 / 3 + 1,
            ),
        };
        assert_eq!(src.partitions(), 3);
        assert_eq!(src.reader(0).describe(), path.display().to_string());
        let items = check_read_ahead(src.partitions(), |index| {
            AheadPartition::new(src.reader(index))
        });
        std::fs::remove_file(&path).unwrap();
        assert_eq!(items, 12_345 - 13, "every line but the blank ones");
    }
}
