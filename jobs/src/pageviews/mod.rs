//! Pageview events and their sources.
//!
//! The pageview jobs read [`PageView`] records keyed by [`Article`], each at
//! its event time in milliseconds, from one of three sources:
//! - [`GeneratorSource`], the embedded default: deterministic Zipf traffic
//!   with planted trending articles;
//! - [`JsonlSource`], JSON lines such as
//!   `{"project":"en","title":"Main_Page","ts":1470009600000,"views":1}`;
//! - [`DumpSource`], Wikimedia's hourly `pagecounts-*` / `pageviews-*`
//!   dumps, each line spread over the minutes of its hour.
//!
//! [`PageviewSource`] picks one from a format name and files, checking the
//! files up front, so that a job or the CLI can take any of them.
//!
//! ```
//! use keyflow_dataflow::source::{Batch, Source};
//! use keyflow_jobs::pageviews::{GeneratorConfig, PageviewSource};
//!
//! let config = GeneratorConfig { rate: 100, duration_ms: 1_000, partitions: 1, ..Default::default() };
//! let src = PageviewSource::generator(config)?;
//! let mut batch = Batch::new(1_000);
//! src.open(0)?.poll(&mut batch)?;
//! assert_eq!(batch.records.len(), 100);
//! assert!(batch.records.windows(2).all(|w| w[0].0 <= w[1].0));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod article;
mod dump;
mod dump_source;
mod generator;
mod interner;
mod jsonl;
mod jsonl_partition;
mod jsonl_plain;
mod shared_interner;
mod stream;
mod zipf;

#[cfg(test)]
mod dump_tests;
#[cfg(test)]
mod generator_tests;

use std::fmt;
use std::path::{Path, PathBuf};

use keyflow_dataflow::source::{Partition, Source};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

pub use article::{generated_title, Article, NamedArticle, PageView, GENERATED_PROJECT, MAX_VIEWS};
pub use dump::{
    hour_from_file_name, minute_views, parse_dump_line, parse_dump_line_with, parse_hour_stamp,
    DumpLine, DumpTime,
};
pub use dump_source::DumpSource;
pub use generator::{Burst, GeneratorConfig, GeneratorSource, DEFAULT_START_MS, ZIPF_EXPONENT};
pub use interner::Interner;
pub use jsonl::{parse_json_line, parse_json_message, JsonlSource};
pub use shared_interner::SharedInterner;
pub use stream::{parse_stream_entry, stream_source};
pub(crate) use zipf::mix64;
pub use zipf::{SplitMix64, Zipf};

/// The format of pageview input files.
///
/// # Examples
/// ```
/// use keyflow_jobs::pageviews::InputFormat;
/// use std::path::Path;
/// assert_eq!("dump".parse::<InputFormat>()?, InputFormat::Dump);
/// assert_eq!(InputFormat::guess(Path::new("pageviews-20240803-060000.gz")), Some(InputFormat::Dump));
/// assert_eq!(InputFormat::guess(Path::new("views.jsonl.gz")), Some(InputFormat::Jsonl));
/// # Ok::<(), keyflow_jobs::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum InputFormat {
    /// JSON lines, see [`JsonlSource`].
    Jsonl,
    /// Wikimedia hourly dumps, see [`DumpSource`].
    Dump,
}

impl InputFormat {
    /// The format a file's name suggests, if any.
    pub fn guess(path: &Path) -> Option<InputFormat> {
        let name = path.file_name()?.to_str()?;
        if name.starts_with("pagecounts-") || name.starts_with("pageviews-") {
            Some(InputFormat::Dump)
        } else if name.ends_with(".jsonl") || name.ends_with(".jsonl.gz") || name.ends_with(".json")
        {
            Some(InputFormat::Jsonl)
        } else {
            None
        }
    }
}

impl std::str::FromStr for InputFormat {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "jsonl" | "json" => Ok(InputFormat::Jsonl),
            "dump" | "pagecounts" | "pageviews" => Ok(InputFormat::Dump),
            other => Err(Error::Config(format!(
                "input format `{other}` is not one of: jsonl, dump"
            ))),
        }
    }
}

impl fmt::Display for InputFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            InputFormat::Jsonl => "jsonl",
            InputFormat::Dump => "dump",
        })
    }
}

/// Resolves input paths into the files to read, failing on the first that
/// does not exist. A directory stands for its files (not hidden ones, not
/// subdirectories) in name order.
pub fn input_files(inputs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let files = keyflow_dataflow::source::input_files(inputs);
    // A missing path, or a directory without files, is left in the list.
    for file in &files {
        keyflow_dataflow::source::check_exists(file)?;
    }
    if files.is_empty() {
        return Err(Error::Config("no input files given".into()));
    }
    Ok(files)
}

/// Any pageview source, so that a job can take whichever the user picks.
///
/// # Examples
/// ```
/// use keyflow_jobs::pageviews::{DumpTime, InputFormat, PageviewSource};
/// let err = PageviewSource::from_files(InputFormat::Dump, &["no/such-file.gz".into()], DumpTime::Start)
///     .unwrap_err();
/// assert!(err.to_string().contains("no/such-file.gz"));
/// ```
#[derive(Debug, Clone)]
pub enum PageviewSource {
    /// JSON-lines files.
    Jsonl(JsonlSource),
    /// Wikimedia dump files.
    Dump(DumpSource),
    /// The generator.
    Generator(GeneratorSource),
    /// Redis streams, see [`stream_source`].
    RedisStream(keyflow_dataflow::source::RedisStreamSource<PageView>),
    /// A Kafka topic of JSON messages, see [`parse_json_message`].
    #[cfg(feature = "kafka")]
    Kafka(keyflow_dataflow::kafka::KafkaSource<PageView>),
}

impl PageviewSource {
    /// A file source of `format` over `inputs` (files or directories, see
    /// [`input_files`]); `dump_time` applies to dumps only. Every file must
    /// exist.
    pub fn from_files(
        format: InputFormat,
        inputs: &[PathBuf],
        dump_time: DumpTime,
    ) -> Result<Self> {
        let files = input_files(inputs)?;
        Ok(match format {
            InputFormat::Jsonl => PageviewSource::Jsonl(JsonlSource::new(files)),
            InputFormat::Dump => PageviewSource::Dump(DumpSource::new(files, dump_time)),
        })
    }

    /// The generator, once `config` is validated.
    pub fn generator(config: GeneratorConfig) -> Result<Self> {
        Ok(PageviewSource::Generator(GeneratorSource::new(config)?))
    }
}

impl Source for PageviewSource {
    type Item = PageView;

    fn name(&self) -> String {
        match self {
            PageviewSource::Jsonl(s) => s.name(),
            PageviewSource::Dump(s) => s.name(),
            PageviewSource::Generator(s) => s.name(),
            PageviewSource::RedisStream(s) => s.name(),
            #[cfg(feature = "kafka")]
            PageviewSource::Kafka(s) => s.name(),
        }
    }

    fn partitions(&self) -> usize {
        match self {
            PageviewSource::Jsonl(s) => s.partitions(),
            PageviewSource::Dump(s) => s.partitions(),
            PageviewSource::Generator(s) => s.partitions(),
            PageviewSource::RedisStream(s) => s.partitions(),
            #[cfg(feature = "kafka")]
            PageviewSource::Kafka(s) => s.partitions(),
        }
    }

    fn open_at(
        &self,
        index: usize,
        position: u64,
    ) -> keyflow_dataflow::Result<Box<dyn Partition<PageView>>> {
        match self {
            #[cfg(feature = "kafka")]
            PageviewSource::Kafka(s) => s.open_at(index, position),
            PageviewSource::RedisStream(s) => s.open_at(index, position),
            // Only broker partitions and streams report positions.
            _ => {
                let _ = position;
                self.open(index)
            }
        }
    }

    fn open(&self, index: usize) -> keyflow_dataflow::Result<Box<dyn Partition<PageView>>> {
        match self {
            PageviewSource::Jsonl(s) => s.open(index),
            PageviewSource::Dump(s) => s.open(index),
            PageviewSource::Generator(s) => s.open(index),
            PageviewSource::RedisStream(s) => s.open(index),
            #[cfg(feature = "kafka")]
            PageviewSource::Kafka(s) => s.open(index),
        }
    }

    fn split_of(&self, index: usize) -> Option<(usize, usize)> {
        match self {
            PageviewSource::Jsonl(s) => s.split_of(index),
            PageviewSource::Dump(s) => s.split_of(index),
            PageviewSource::Generator(s) => s.split_of(index),
            PageviewSource::RedisStream(s) => s.split_of(index),
            #[cfg(feature = "kafka")]
            PageviewSource::Kafka(s) => s.split_of(index),
        }
    }
}

/// Records and bad records read from a source, outside any dataflow.
#[cfg(test)]
pub(crate) type Drained = (
    Vec<(u64, PageView)>,
    Vec<keyflow_dataflow::source::BadRecord>,
);

/// Reads one partition to its end, outside any dataflow.
#[cfg(test)]
pub(crate) fn read_partition<S: Source<Item = PageView>>(
    src: &S,
    index: usize,
) -> keyflow_dataflow::Result<Drained> {
    use keyflow_dataflow::source::{Batch, PollStatus};
    let mut partition = src.open(index)?;
    let (mut records, mut bad) = (Vec::new(), Vec::new());
    let mut batch = Batch::new(4096);
    loop {
        batch.clear();
        let status = partition.poll(&mut batch)?;
        records.append(&mut batch.records);
        bad.append(&mut batch.bad);
        match status {
            PollStatus::Done => return Ok((records, bad)),
            PollStatus::Idle => std::thread::sleep(std::time::Duration::from_millis(1)),
            PollStatus::Ready => {}
        }
    }
}

/// Reads every partition to its end, in partition order.
#[cfg(test)]
pub(crate) fn read_all<S: Source<Item = PageView>>(src: &S) -> keyflow_dataflow::Result<Drained> {
    let (mut records, mut bad) = (Vec::new(), Vec::new());
    for p in 0..src.partitions() {
        let (r, b) = read_partition(src, p)?;
        records.extend(r);
        bad.extend(b);
    }
    Ok((records, bad))
}
