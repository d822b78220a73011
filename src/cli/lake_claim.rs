//! `--parquet-out` under `--checkpoint-dir`: which run owns the directory.
//!
//! A run writes its Parquet files into a new or empty directory, so that no
//! other run's rows mix with its own. Under checkpoints, a restart that
//! resumes continues the files of the run it resumes (the sink cuts them
//! back to the checkpoint). A restart that starts over, because the run
//! before it was killed before its first checkpoint was complete, may find
//! hours that run already wrote: checkpoints are written behind the
//! dataflow. The checkpoint directory records which directory a job
//! configuration claimed, so that such a restart removes its own earlier
//! files instead of refusing the directory.

use std::path::Path;

use keyflow::dataflow::checkpoint::CheckpointConfig;
use keyflow::jobs::activity::{check_lake_dir, clear_lake};
use keyflow::jobs::output_file::write_whole_file;

/// The claim's file in the checkpoint directory.
const CLAIM: &str = "parquet-out.claim";

/// Checks that the run may write into `lake` and, under checkpoints,
/// claims it: without checkpoints it must be new or empty; a resumed run
/// owns it; a run starting over may also find the files of an earlier
/// attempt with the same configuration, which it removes.
pub fn claim(lake: &Path, ckpt: Option<&CheckpointConfig>, resuming: bool) -> anyhow::Result<()> {
    let Some(ckpt) = ckpt else {
        check_lake_dir(lake)?;
        return Ok(());
    };
    if resuming {
        return Ok(());
    }
    let path = ckpt.dir.join(CLAIM);
    let ours = format!(
        "{}\n{}\n",
        ckpt.fingerprint,
        std::path::absolute(lake)?.display()
    );
    let claimed = std::fs::read_to_string(&path).is_ok_and(|c| c == ours);
    if claimed && check_lake_dir(lake).is_err() {
        clear_lake(lake)?;
    }
    check_lake_dir(lake)?;
    std::fs::create_dir_all(&ckpt.dir)?;
    write_whole_file(&path, ours.as_bytes())?;
    Ok(())
}
