//! Checkpoint blobs in memory, for tests of sinks that commit with blobs.

use std::collections::BTreeMap;

use crate::error::{Error, Result};
use crate::sink::Blobs;

/// [`Blobs`] kept in memory, as a checkpoint directory keeps them: a test
/// of a sink's [`commit_with`](crate::sink::Sink::commit_with) hands the
/// same value to a new sink's
/// [`restore_with`](crate::sink::Sink::restore_with).
///
/// # Examples
/// ```
/// use keyflow_dataflow::sink::Blobs;
/// use keyflow_dataflow::testing::MemoryBlobs;
///
/// let mut blobs = MemoryBlobs::default();
/// let name = blobs.save(b"rows".to_vec()).unwrap();
/// assert_eq!(blobs.read(&name).unwrap(), b"rows");
/// assert!(blobs.read("missing").is_err());
/// ```
#[derive(Debug, Default, Clone)]
pub struct MemoryBlobs {
    saved: BTreeMap<String, Vec<u8>>,
}

impl MemoryBlobs {
    /// How many blobs were saved.
    pub fn len(&self) -> usize {
        self.saved.len()
    }

    /// Whether none was saved.
    pub fn is_empty(&self) -> bool {
        self.saved.is_empty()
    }
}

impl Blobs for MemoryBlobs {
    fn save(&mut self, bytes: Vec<u8>) -> Result<String> {
        let name = format!("blob-{}", self.saved.len());
        self.saved.insert(name.clone(), bytes);
        Ok(name)
    }

    fn keep(&mut self, _name: &str) {}

    fn read(&mut self, name: &str) -> Result<Vec<u8>> {
        self.saved
            .get(name)
            .cloned()
            .ok_or_else(|| Error::Checkpoint {
                path: name.into(),
                reason: "no such blob".into(),
            })
    }
}
