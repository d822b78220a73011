//! Incremental checkpoints of a keyed state: a chain of blobs, a full
//! snapshot first and then the changes made in each epoch since.
//!
//! Both rise states (with and without allowed lateness) are large and
//! change little per epoch, so each epoch writes only its changes, and a
//! new full snapshot once the changes outweigh twice the last one (as a log
//! is compacted). That bounds both the disk a checkpoint takes and the
//! replay a restore does.

use keyflow_dataflow::checkpoint::{decode, encode, StepCheckpoint};
use keyflow_dataflow::time::EventTime;
use keyflow_dataflow::{Error, Result};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// A state that can be written as a full snapshot or as the changes made
/// to it since the last write.
pub(crate) trait ChangeLog {
    /// The serialized form of the whole state.
    type Full: Serialize + DeserializeOwned;
    /// One logged change.
    type Change: Serialize + DeserializeOwned;

    /// A full snapshot of the state.
    fn full(&self) -> Self::Full;
    /// Starts logging changes (from now on).
    fn track_changes(&mut self);
    /// The changes since tracking started or since the last call.
    fn take_changes(&mut self) -> Vec<Self::Change>;
}

/// One blob of a chain: a full snapshot, or the changes made since the blob
/// before it.
#[derive(Serialize, Deserialize)]
enum Blob<F, C> {
    Full(F),
    Changes(Vec<C>),
}

/// The blobs of a step's current checkpoint chain, and their sizes.
#[derive(Default)]
pub(crate) struct Chain {
    blobs: Vec<String>,
    full_bytes: usize,
    change_bytes: usize,
}

/// Writes the state as of `epoch`: the changes since the last epoch as a
/// new link of the chain, or a new full snapshot once the changes outweigh
/// twice the last snapshot. The part names the whole chain, full snapshot
/// first; each link is written at once, so a chain never misses one even
/// when an epoch is not completed.
pub(crate) fn save_chain<S: ChangeLog>(
    k: &StepCheckpoint,
    state: &mut S,
    chain: &mut Chain,
    epoch: EventTime,
) -> Result<()> {
    let full = chain.blobs.is_empty()
        || chain.change_bytes > 2 * chain.full_bytes
        || chain.blobs.len() >= 256;
    if full {
        let bytes = encode(&Blob::<S::Full, S::Change>::Full(state.full()))?;
        let full_bytes = bytes.len();
        let name = k.save_blob(epoch, bytes)?;
        *chain = Chain {
            blobs: vec![name],
            full_bytes,
            change_bytes: 0,
        };
        state.track_changes();
    } else {
        let bytes = encode(&Blob::<S::Full, S::Change>::Changes(state.take_changes()))?;
        chain.change_bytes += bytes.len();
        let name = k.save_blob(epoch, bytes)?;
        chain.blobs.push(name);
    }
    k.save_with(epoch, encode(&chain.blobs)?, &chain.blobs)
}

/// Rebuilds the state one old worker wrote in `part`: `restore` makes it
/// from the chain's full snapshot and `replay` applies each later link
/// (both keep only the keys this worker owns now).
pub(crate) fn read_chain<S: ChangeLog>(
    part: &[u8],
    id: &str,
    read_blob: &impl Fn(&str) -> Result<Vec<u8>>,
    mut restore: impl FnMut(S::Full) -> Result<S, String>,
    mut replay: impl FnMut(&mut S, Vec<S::Change>) -> Result<(), String>,
) -> Result<S> {
    let chain: Vec<String> = decode(part, id)?;
    let damaged = |path: &str, reason: String| Error::Checkpoint {
        path: path.into(),
        reason,
    };
    let mut state: Option<S> = None;
    for name in &chain {
        let blob: Blob<S::Full, S::Change> = decode(&read_blob(name)?, name)?;
        match (blob, state.as_mut()) {
            (Blob::Full(full), _) => state = Some(restore(full).map_err(|r| damaged(name, r))?),
            (Blob::Changes(changes), Some(s)) => {
                replay(s, changes).map_err(|r| damaged(name, r))?;
            }
            (Blob::Changes(_), None) => {
                return Err(damaged(
                    name,
                    "changes without the snapshot they apply to".into(),
                ))
            }
        }
    }
    state.ok_or_else(|| damaged(&format!("step {id}"), "an empty chain".into()))
}
