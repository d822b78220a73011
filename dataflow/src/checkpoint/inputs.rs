//! Input identities for a checkpoint's fingerprint, so that a restore
//! over inputs that changed since the checkpoint is refused instead of
//! reading on from offsets into other bytes.

use std::path::{Path, PathBuf};

/// One input file as `path:size:mtime` (see [`describe_inputs`]).
fn describe_input(path: &Path) -> String {
    let meta = std::fs::metadata(path).ok();
    let modified = meta
        .as_ref()
        .and_then(|m| m.modified().ok())
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_nanos());
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    format!(
        "{}:{}:{}",
        abs.display(),
        meta.map_or(0, |m| m.len()),
        modified.unwrap_or(0)
    )
}

/// Every input file of `paths` as `path:size:mtime` (absolute path, bytes,
/// modification time in ns), joined by `,`, for a job's fingerprint:
/// enough to notice a file that was appended to, replaced or touched. A
/// directory stands for its files, as
/// [`input_files`](crate::source::input_files) lists them, since its own
/// time changes when a file comes or goes. A file that cannot be read is
/// `path:0:0`, so that the job, not the fingerprint, reports it.
///
/// ```
/// use keyflow_dataflow::checkpoint::describe_inputs;
/// use keyflow_dataflow::prelude::*;
///
/// let dir = std::env::temp_dir().join(format!("keyflow-describe-{}", std::process::id()));
/// std::fs::create_dir_all(&dir).unwrap();
/// let input = dir.join("clicks.jsonl");
/// std::fs::write(&input, "{}\n").unwrap();
/// let fingerprint = format!("clicks v1 {}", describe_inputs(&[input.clone()]));
/// let config = RunConfig::threads(2).checkpointed(dir.join("ckpt"), MINUTE, &fingerprint);
/// // Appending to the input changes the fingerprint: a restore is refused.
/// std::fs::write(&input, "{}\n{}\n").unwrap();
/// assert_ne!(fingerprint, format!("clicks v1 {}", describe_inputs(&[input])));
/// # drop(config);
/// # std::fs::remove_dir_all(&dir).unwrap();
/// ```
pub fn describe_inputs(paths: &[PathBuf]) -> String {
    let files = crate::source::input_files(paths);
    let described: Vec<String> = files.iter().map(|f| describe_input(f)).collect();
    described.join(",")
}
