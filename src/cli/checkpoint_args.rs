//! `--checkpoint-dir`, `--checkpoint-every` and `--fresh`, shared by the jobs.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use clap::Args;
use keyflow::dataflow::checkpoint::{self, CheckpointConfig, Status};

use super::run_args::parse_duration;

/// Checkpoints and exactly-once restart.
#[derive(Debug, Clone, Args)]
pub struct CheckpointArgs {
    /// Keep checkpoints in this directory (shared by every process of a
    /// cluster). Running the same command again resumes from the last
    /// complete checkpoint; outputs end up byte for byte as in one run.
    #[arg(long, value_name = "DIR")]
    pub checkpoint_dir: Option<PathBuf>,
    /// Event time between checkpoints [default: 1m].
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub checkpoint_every: Option<Duration>,
    /// Discard the checkpoints in --checkpoint-dir and start from the
    /// beginning.
    #[arg(long)]
    pub fresh: bool,
}

/// What a run does about checkpoints.
#[derive(Debug)]
pub enum Plan {
    /// No checkpoints.
    Off,
    /// Checkpoint (and resume, if the directory holds a checkpoint).
    Run(CheckpointConfig),
    /// The job already finished with this configuration: nothing to do.
    Finished(PathBuf),
}

/// An output path as it will be written, whatever the working directory.
pub fn output_id(path: &Option<PathBuf>) -> String {
    path.as_ref()
        .map(|p| {
            std::path::absolute(p)
                .unwrap_or_else(|_| p.clone())
                .display()
                .to_string()
        })
        .unwrap_or_default()
}

impl CheckpointArgs {
    /// Checks the flags and the directory. `semantic` is everything that
    /// changes the job's results (its configuration, source flags and
    /// outputs), so that a restore with other values is refused; `inputs`
    /// are fingerprinted by path, size and modification time. Takes the
    /// directory's lock for `process` first and holds it until this
    /// process ends: nothing else may wipe, read or write the directory
    /// as this process meanwhile.
    pub fn plan(
        &self,
        job: &str,
        semantic: &str,
        inputs: &[PathBuf],
        process: usize,
    ) -> anyhow::Result<Plan> {
        let Some(dir) = &self.checkpoint_dir else {
            if self.checkpoint_every.is_some() {
                anyhow::bail!("--checkpoint-every needs --checkpoint-dir");
            }
            if self.fresh {
                anyhow::bail!("--fresh needs --checkpoint-dir");
            }
            return Ok(Plan::Off);
        };
        let every = self
            .checkpoint_every
            .unwrap_or(Duration::from_secs(60))
            .as_millis() as u64;
        if every == 0 {
            anyhow::bail!("--checkpoint-every 0: the interval must be positive");
        }
        let files = checkpoint::describe_inputs(inputs);
        let mut fingerprint = format!("job={job} every={every} config={semantic} inputs=[{files}]");
        // Another split size cuts large files into other partitions, whose
        // positions a restore would misread; the default leaves
        // fingerprints as they were.
        let split = keyflow::dataflow::source::split_bytes();
        if split != keyflow::dataflow::source::DEFAULT_SPLIT_BYTES {
            fingerprint.push_str(&format!(" split={split}"));
        }
        let described = fingerprint;
        let fingerprint = format!(
            "{job}-{:08x}-{:08x}",
            crc32(described.as_bytes()),
            crc32(described.chars().rev().collect::<String>().as_bytes())
        );
        hold(checkpoint::lock(dir, process)?);
        if self.fresh {
            checkpoint::wipe(dir)?;
        }
        let config = CheckpointConfig {
            dir: dir.clone(),
            every,
            fingerprint,
        };
        config.validate()?;
        let described_at = dir.join(DESCRIBED);
        let status = checkpoint::status_as(dir, &config.fingerprint, process).map_err(|e| {
            let before = std::fs::read_to_string(&described_at).unwrap_or_default();
            match first_difference(&before, &described) {
                Some((then, now)) => {
                    anyhow::anyhow!("{e}\n  it was made with   {then}\n  where this run has {now}")
                }
                None => e.into(),
            }
        })?;
        if status == Status::Fresh && process == 0 {
            // Process 0's, whose fingerprint the checkpoints carry. Only
            // read back to say what differs, so not worth failing for.
            let _ = std::fs::write(&described_at, &described);
        }
        Ok(match status {
            Status::Finished => Plan::Finished(dir.clone()),
            _ => Plan::Run(config),
        })
    }
}

/// The checkpoint directory's lock, kept until the process exits; the run
/// shares it (see [`checkpoint::lock`]).
fn hold(lock: checkpoint::DirLock) {
    static HELD: Mutex<Vec<checkpoint::DirLock>> = Mutex::new(Vec::new());
    HELD.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(lock);
}

/// The readable form of the fingerprint the checkpoint was made with, so
/// that a refusal can say what differs.
const DESCRIBED: &str = "fingerprint.txt";

/// The first word where two fingerprints' readable forms differ, with the
/// word before it (mostly a field's name), each cut to a readable length.
fn first_difference(then: &str, now: &str) -> Option<(String, String)> {
    let (a, b): (Vec<&str>, Vec<&str>) = (
        then.split_whitespace().collect(),
        now.split_whitespace().collect(),
    );
    if a.is_empty() {
        return None;
    }
    let at = (0..a.len().max(b.len())).find(|&i| a.get(i) != b.get(i))?;
    let around = |words: &[&str]| {
        let text = words[at.saturating_sub(1)..words.len().min(at + 1)].join(" ");
        format!("`{}`", keyflow::dataflow::source::shorten(&text, 160))
    };
    Some((around(&a), around(&b)))
}

fn crc32(bytes: &[u8]) -> u32 {
    // CRC-32 (IEEE), bitwise: fingerprints are short and made once.
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// Says that the job already finished, for `Plan::Finished`.
pub fn report_finished(dir: &Path) {
    say!(
        "keyflow: {}: this job already ran to its end with this configuration; \
         nothing to do (use --fresh to run it again)",
        dir.display()
    );
}
