//! Either input of the behaviour job, as one source type.

use std::path::PathBuf;

use keyflow_dataflow::source::{JsonLinesSource, Partition, Source};

use super::event::{user_event_files, UserEvent};
use super::generator::{UserGenerator, UserGeneratorConfig};
use crate::error::Result;

/// User events from JSON-lines files or from the generator.
///
/// # Examples
/// ```
/// use keyflow_jobs::behaviour::UserSource;
/// let err = UserSource::files(&["no/such-events.jsonl".into()]).unwrap_err();
/// assert!(err.to_string().contains("no/such-events.jsonl"));
/// ```
pub enum UserSource {
    /// JSON-lines files, one partition each, or one per split of a large
    /// plain file.
    Files(JsonLinesSource<UserEvent>),
    /// The generator.
    Generator(UserGenerator),
}

impl std::fmt::Debug for UserSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UserSource::Files(s) => write!(f, "UserSource::Files({})", s.name()),
            UserSource::Generator(s) => write!(f, "UserSource::Generator({:?})", s.config()),
        }
    }
}

impl UserSource {
    /// The files of `inputs` (files, or directories standing for their
    /// files), which must exist.
    pub fn files(inputs: &[PathBuf]) -> Result<Self> {
        let files = crate::pageviews::input_files(inputs)?;
        Ok(UserSource::Files(user_event_files(files)))
    }

    /// The generator, once `config` is validated.
    pub fn generator(config: UserGeneratorConfig) -> Result<Self> {
        Ok(UserSource::Generator(UserGenerator::new(config)?))
    }
}

impl Source for UserSource {
    type Item = UserEvent;

    fn name(&self) -> String {
        match self {
            UserSource::Files(s) => s.name(),
            UserSource::Generator(s) => s.name(),
        }
    }

    fn partitions(&self) -> usize {
        match self {
            UserSource::Files(s) => s.partitions(),
            UserSource::Generator(s) => s.partitions(),
        }
    }

    fn open(&self, index: usize) -> keyflow_dataflow::Result<Box<dyn Partition<UserEvent>>> {
        match self {
            UserSource::Files(s) => s.open(index),
            UserSource::Generator(s) => s.open(index),
        }
    }

    fn split_of(&self, index: usize) -> Option<(usize, usize)> {
        match self {
            UserSource::Files(s) => s.split_of(index),
            UserSource::Generator(s) => s.split_of(index),
        }
    }
}
