//! Checks every command makes on the paths it was given, before any work:
//! no output may be an input, the `--baseline`, or another output, and no
//! input file may be given twice.
//!
//! A path is compared by what it leads to, not by how it is spelled: by
//! (device, inode) when it exists, else by its canonical form (symlinks
//! resolved; for a path that does not exist yet, its nearest existing
//! ancestor canonicalized plus the rest). Character devices, FIFOs and
//! sockets (`/dev/null`, `/dev/stdout`, a terminal, a pipe) are left out:
//! writing to them cannot destroy a file, and they are how a user sends
//! output somewhere other than a file.

use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};

use anyhow::bail;

/// What a path leads to now.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Identity {
    /// Absolute, with symlinks resolved as far as they exist.
    canonical: PathBuf,
    /// (device, inode) of an existing file or directory.
    inode: Option<(u64, u64)>,
    kind: Kind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    File,
    Dir,
    /// Does not exist yet.
    Missing,
    /// A device, FIFO or socket.
    Special,
}

impl Identity {
    fn of(path: &Path) -> Identity {
        match std::fs::metadata(path) {
            Ok(meta) => {
                let kind = if meta.is_file() {
                    Kind::File
                } else if meta.is_dir() {
                    Kind::Dir
                } else {
                    Kind::Special
                };
                let canonical =
                    std::fs::canonicalize(path).unwrap_or_else(|_| resolve_missing(path, 0));
                Identity {
                    canonical,
                    inode: inode(&meta),
                    kind,
                }
            }
            Err(_) => Identity {
                canonical: resolve_missing(path, 0),
                inode: None,
                kind: Kind::Missing,
            },
        }
    }

    fn same(&self, other: &Identity) -> bool {
        match (self.inode, other.inode) {
            (Some(a), Some(b)) => a == b,
            _ => self.canonical == other.canonical,
        }
    }

    /// The directory the path's file lives in.
    fn parent(&self) -> Option<&Path> {
        self.canonical.parent()
    }
}

#[cfg(unix)]
fn inode(meta: &std::fs::Metadata) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    Some((meta.dev(), meta.ino()))
}

#[cfg(not(unix))]
fn inode(_meta: &std::fs::Metadata) -> Option<(u64, u64)> {
    None
}

/// The canonical form of a path that does not exist (yet): its nearest
/// existing ancestor canonicalized, then the rest. A dangling symlink leads
/// to where it points, since creating the file follows it.
fn resolve_missing(path: &Path, depth: usize) -> PathBuf {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    if depth < 40 {
        if let Ok(target) = std::fs::read_link(&absolute) {
            let base = absolute.parent().unwrap_or(Path::new("/"));
            return resolve_missing(&base.join(target), depth + 1);
        }
    }
    let mut rest: Vec<OsString> = Vec::new();
    let mut cur = absolute.as_path();
    loop {
        if let Ok(found) = std::fs::canonicalize(cur) {
            let mut out = found;
            out.extend(rest.iter().rev());
            return normalize(&out);
        }
        match (cur.parent(), cur.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                cur = parent;
            }
            _ => return normalize(&absolute),
        }
    }
}

/// Drops `.` and applies `..` by spelling alone.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// The nearest existing ancestor of `path` when it is not a directory:
/// writing `path` would then fail with an error that names neither it nor
/// its flag.
fn file_above(path: &Path) -> Option<PathBuf> {
    let absolute = std::path::absolute(path).ok()?;
    let mut above = absolute.parent();
    while let Some(dir) = above {
        if let Ok(meta) = std::fs::metadata(dir) {
            return (!meta.is_dir()).then(|| dir.to_path_buf());
        }
        above = dir.parent();
    }
    None
}

/// A path given on the command line, with its flag.
struct Given<'a> {
    flag: &'a str,
    path: &'a Path,
    id: Identity,
}

impl Given<'_> {
    fn name(&self) -> String {
        format!("{} {}", self.flag, self.path.display())
    }
}

/// The paths one command reads and writes.
#[derive(Default)]
pub struct RunPaths<'a> {
    inputs: Vec<&'a Path>,
    reads: Vec<(&'a str, &'a Path)>,
    outputs: Vec<(&'a str, &'a Path)>,
    output_dirs: Vec<(&'a str, &'a Path)>,
}

impl<'a> RunPaths<'a> {
    /// Nothing read or written yet.
    pub fn new() -> Self {
        RunPaths::default()
    }

    /// `--input` values: files, or directories standing for their files.
    pub fn inputs(mut self, inputs: &'a [PathBuf]) -> Self {
        self.inputs.extend(inputs.iter().map(PathBuf::as_path));
        self
    }

    /// Another file the command reads, such as `--baseline`.
    pub fn reads(mut self, flag: &'a str, path: &'a Path) -> Self {
        self.reads.push((flag, path));
        self
    }

    /// A file the command writes, when the flag is given.
    pub fn output(mut self, flag: &'a str, path: Option<&'a PathBuf>) -> Self {
        if let Some(path) = path {
            self.outputs.push((flag, path));
        }
        self
    }

    /// A directory the command writes files into, when the flag is given.
    pub fn output_dir(mut self, flag: &'a str, path: Option<&'a PathBuf>) -> Self {
        if let Some(path) = path {
            self.output_dirs.push((flag, path));
        }
        self
    }

    /// Fails, naming both paths, when an output would overwrite an input or
    /// another output, or when an input file is given twice.
    pub fn check(&self) -> anyhow::Result<()> {
        let files = if self.inputs.is_empty() {
            Vec::new()
        } else {
            let owned: Vec<PathBuf> = self.inputs.iter().map(|p| p.to_path_buf()).collect();
            keyflow::jobs::pageviews::input_files(&owned)?
        };
        let given = |flag, path| Given {
            flag,
            path,
            id: Identity::of(path),
        };
        let input_files: Vec<Given> = files.iter().map(|p| given("--input", p)).collect();
        let input_dirs: Vec<Given> = self
            .inputs
            .iter()
            .map(|p| given("--input", p))
            .filter(|g| g.id.kind == Kind::Dir)
            .collect();
        let reads: Vec<Given> = self.reads.iter().map(|(f, p)| given(f, p)).collect();
        let outputs: Vec<Given> = self.outputs.iter().map(|(f, p)| given(f, p)).collect();
        let dirs: Vec<Given> = self.output_dirs.iter().map(|(f, p)| given(f, p)).collect();

        for (i, a) in input_files.iter().enumerate() {
            if a.id.kind != Kind::File {
                continue;
            }
            if let Some(b) = input_files[..i].iter().find(|b| b.id.same(&a.id)) {
                bail!(
                    "input {} is given twice (also as {}): each file may be read only once, \
                     or its views would be counted twice",
                    a.path.display(),
                    b.path.display()
                );
            }
        }
        for out in outputs.iter().chain(&dirs) {
            if let Some(file) = file_above(out.path) {
                bail!(
                    "{}: {} is a file, not a directory, so nothing can be written below it",
                    out.name(),
                    file.display()
                );
            }
        }
        let sources: Vec<&Given> = input_files.iter().chain(&reads).collect();
        for (i, out) in outputs.iter().enumerate() {
            if out.id.kind == Kind::Special {
                continue;
            }
            if let Some(src) = sources.iter().find(|s| s.id.same(&out.id)) {
                bail!(
                    "{} is the same file as {}: a run never overwrites what it reads",
                    out.name(),
                    src.name()
                );
            }
            if let Some(dir) = input_dirs
                .iter()
                .find(|d| out.id.parent() == Some(&d.id.canonical))
            {
                bail!(
                    "{} is inside input directory {}: the run would write among its own \
                     inputs; write it elsewhere",
                    out.name(),
                    dir.name()
                );
            }
            if let Some(other) = outputs[..i]
                .iter()
                .chain(&dirs)
                .find(|o| o.id.kind != Kind::Special && o.id.same(&out.id))
            {
                bail!(
                    "{} and {} are the same path: two outputs would overwrite each other",
                    other.name(),
                    out.name()
                );
            }
        }
        for dir in &dirs {
            if dir.id.kind == Kind::Special {
                continue;
            }
            // What a run writes into a directory (hourly files, checkpoint
            // files) could replace whatever else is there.
            let inside = |g: &&Given| {
                g.id.kind != Kind::Special && g.id.canonical.starts_with(&dir.id.canonical)
            };
            if let Some(other) = outputs.iter().chain(&reads).find(inside) {
                bail!(
                    "{} is inside {}: the files the run writes there could replace it; \
                     keep it elsewhere",
                    other.name(),
                    dir.name()
                );
            }
            if let Some(src) = sources.iter().find(|s| s.id.same(&dir.id)) {
                bail!(
                    "{} is the same path as {}: a run never overwrites what it reads",
                    dir.name(),
                    src.name()
                );
            }
            // Hourly files are named like dump files: among the inputs they
            // could replace one, and a later run would read them as input.
            let holds_input = input_dirs.iter().find(|d| d.id.same(&dir.id)).or_else(|| {
                input_files
                    .iter()
                    .find(|f| f.id.parent() == Some(&dir.id.canonical))
            });
            if let Some(src) = holds_input {
                bail!(
                    "{} is the directory of {}: the run would write files among its own \
                     inputs; write them elsewhere",
                    dir.name(),
                    src.name()
                );
            }
        }
        Ok(())
    }
}

/// Why a run has no results, when every record it read was malformed. A
/// run resumed from a checkpoint cannot tell: what it read before the
/// crash is not in its counters.
fn all_bad(ctx: &keyflow::dataflow::run::Context) -> Option<String> {
    let resumed = ctx.checkpointer().and_then(|c| c.restored_epoch());
    let m = ctx.metrics.snapshot();
    (m.events == 0 && m.bad > 0 && resumed.is_none()).then(|| {
        format!(
            "all {} records read were malformed and skipped (--bad-input drop), so there are \
             no results; the warnings above name the first few",
            m.bad
        )
    })
}

/// Makes a run that read records and found every one malformed fail before
/// its sinks make their outputs final, so that such a run leaves no empty
/// `--out` behind and keeps an earlier file at that path. Counters are per
/// process, so in a cluster a process cannot tell whether the others read
/// good records; there [`some_input_was_good`] only warns, after the run.
pub fn refuse_all_bad_outputs(ctx: &keyflow::dataflow::run::Context, processes: usize) {
    if processes == 1 {
        ctx.check_before_close(|ctx| match all_bad(ctx) {
            Some(what) => Err(keyflow::dataflow::Error::External(what)),
            None => Ok(()),
        });
    }
}

/// Ends a run: prints its summary when it succeeded, or failed by the
/// rule of [`refuse_all_bad_outputs`] (the summary then shows the bad
/// records), and returns its outcome.
pub fn finish_run<T>(
    ran: keyflow::dataflow::Result<T>,
    ctx: &keyflow::dataflow::run::Context,
    quiet: bool,
) -> anyhow::Result<()> {
    if ran.is_ok() || all_bad(ctx).is_some() {
        super::progress::summary(ctx, quiet);
    }
    ran?;
    Ok(())
}

/// Fails a run that read records and found every one malformed: under
/// `--bad-input drop` it would otherwise end with no results and exit 0
/// (a run without sinks gets here; one with sinks failed before they
/// closed, see [`refuse_all_bad_outputs`]).
pub fn some_input_was_good(
    ctx: &keyflow::dataflow::run::Context,
    processes: usize,
) -> anyhow::Result<()> {
    let Some(what) = all_bad(ctx) else {
        return Ok(());
    };
    if processes > 1 {
        tracing::warn!("this process: {what}");
        return Ok(());
    }
    bail!("{what}")
}

/// `keyflow baseline`: its inputs and `--out`.
pub fn baseline(args: &super::anomaly::BaselineArgs) -> anyhow::Result<()> {
    RunPaths::new()
        .inputs(&args.inputs)
        .output("--out", Some(&args.out))
        .output("--ready-file", args.cluster.ready_file.as_ref())
        .check()
}

/// `keyflow run anomaly`: its inputs, `--baseline` and outputs.
pub fn anomaly(args: &super::anomaly::AnomalyArgs) -> anyhow::Result<()> {
    RunPaths::new()
        .inputs(args.source.files())
        .reads("--baseline", &args.scoring.baseline)
        .output("--out", super::kafka_io::file_out(&args.out))
        .output("--baseline-out", args.scoring.baseline_out.as_ref())
        .output("--ready-file", args.cluster.ready_file.as_ref())
        .output_dir("--checkpoint-dir", args.checkpoint.checkpoint_dir.as_ref())
        .check()
}

/// `keyflow run pageviews`: its inputs, `--baseline` and outputs, and the
/// trending flags it does not use.
pub fn pageviews(args: &super::anomaly::PageviewsArgs) -> anyhow::Result<()> {
    let trending = &args.trending;
    if let Some(out) = &trending.out {
        bail!(
            "--out {} does nothing with `run pageviews`; use --trending-out and --anomaly-out",
            out.display()
        );
    }
    if let Some(late) = &trending.late_out {
        bail!(
            "--late-out {} does nothing with `run pageviews`, which has no late output; use \
             `run trending --late side-output --late-out FILE`",
            late.display()
        );
    }
    if super::run_args::parse_late(&trending.late)?
        == keyflow::dataflow::prelude::Lateness::SideOutput
    {
        bail!("--late side-output does nothing with `run pageviews`, which has no late output");
    }
    RunPaths::new()
        .inputs(trending.source.files())
        .reads("--baseline", &args.scoring.baseline)
        .output("--trending-out", args.trending_out.as_ref())
        .output("--anomaly-out", args.anomaly_out.as_ref())
        .output("--baseline-out", args.scoring.baseline_out.as_ref())
        .output("--ready-file", trending.cluster.ready_file.as_ref())
        .output_dir("--hourly-out", trending.hourly_out.as_ref())
        .output_dir(
            "--checkpoint-dir",
            trending.checkpoint.checkpoint_dir.as_ref(),
        )
        .check()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(paths: RunPaths) -> String {
        format!("{:#}", paths.check().unwrap_err())
    }

    #[test]
    fn an_output_may_not_be_an_input_by_any_name() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("views.jsonl");
        std::fs::write(&input, "{}\n").unwrap();
        let link = dir.path().join("link.jsonl");
        std::os::unix::fs::symlink(&input, &link).unwrap();
        let hard = dir.path().join("hard.jsonl");
        std::fs::hard_link(&input, &hard).unwrap();
        let dotted = dir.path().join(".").join("views.jsonl");
        let inputs = vec![input.clone()];
        for out in [&input, &link, &hard, &dotted] {
            let out = out.clone();
            let message = err(RunPaths::new().inputs(&inputs).output("--out", Some(&out)));
            assert!(message.contains(&out.display().to_string()), "{message}");
            assert!(message.contains(&input.display().to_string()), "{message}");
        }
        assert_eq!(std::fs::read_to_string(&input).unwrap(), "{}\n");
    }

    #[test]
    fn outputs_inside_an_input_directory_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        std::fs::write(data.join("pageviews-20160801-000000"), "en A 1 0\n").unwrap();
        let inputs = vec![data.clone()];
        let new_file = data.join("new.jsonl");
        let message = err(RunPaths::new()
            .inputs(&inputs)
            .output("--out", Some(&new_file)));
        assert!(message.contains("inside input directory"), "{message}");
        let message = err(RunPaths::new()
            .inputs(&inputs)
            .output_dir("--hourly-out", Some(&data)));
        assert!(message.contains("--hourly-out"), "{message}");
        // Given as files, their directory is theirs too.
        let file_inputs = vec![data.join("pageviews-20160801-000000")];
        let message = err(RunPaths::new()
            .inputs(&file_inputs)
            .output_dir("--hourly-out", Some(&data)));
        assert!(message.contains("directory of --input"), "{message}");
        // Elsewhere is fine, and so is a directory below the inputs.
        let elsewhere = dir.path().join("out").join("x.jsonl");
        let below = data.join("hourly");
        RunPaths::new()
            .inputs(&inputs)
            .output("--out", Some(&elsewhere))
            .output_dir("--hourly-out", Some(&below))
            .check()
            .unwrap();
    }

    #[test]
    fn nothing_read_or_written_may_sit_inside_an_output_directory() {
        let dir = tempfile::tempdir().unwrap();
        let (ckpt, hourly) = (dir.path().join("ckpt"), dir.path().join("hourly"));
        std::fs::create_dir(&hourly).unwrap();
        let baseline = hourly.join("pageviews-20160802-000000");
        std::fs::write(&baseline, "").unwrap();
        let finished = ckpt.join("FINISHED");
        let message = err(RunPaths::new()
            .output("--late-out", Some(&finished))
            .output_dir("--checkpoint-dir", Some(&ckpt)));
        assert!(
            message.contains("--late-out") && message.contains("inside --checkpoint-dir"),
            "{message}"
        );
        let message = err(RunPaths::new()
            .reads("--baseline", &baseline)
            .output_dir("--hourly-out", Some(&hourly)));
        assert!(message.contains("inside --hourly-out"), "{message}");
        // The ready file is an output like the others.
        let input = dir.path().join("views.jsonl");
        std::fs::write(&input, "").unwrap();
        let inputs = vec![input.clone()];
        let message = err(RunPaths::new()
            .inputs(&inputs)
            .output("--ready-file", Some(&input)));
        assert!(message.contains("--ready-file"), "{message}");
    }

    #[test]
    fn an_output_below_a_file_is_refused_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("views.jsonl.gz");
        std::fs::write(&file, "").unwrap();
        let out = file.join("sub").join("x.jsonl");
        let message = err(RunPaths::new().output("--out", Some(&out)));
        assert!(
            message.contains("--out") && message.contains("views.jsonl.gz is a file"),
            "{message}"
        );
        let message = err(RunPaths::new().output_dir("--hourly-out", Some(&file.join("h"))));
        assert!(message.contains("--hourly-out"), "{message}");
    }

    #[test]
    fn two_outputs_on_one_path_are_refused_devices_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f.jsonl");
        let g = dir.path().join("sub").join("..").join("f.jsonl");
        let message = err(RunPaths::new()
            .output("--out", Some(&f))
            .output("--late-out", Some(&g)));
        assert!(
            message.contains("--out") && message.contains("--late-out"),
            "{message}"
        );
        let null = PathBuf::from("/dev/null");
        let stdout = PathBuf::from("/dev/stdout");
        RunPaths::new()
            .output("--out", Some(&null))
            .output("--late-out", Some(&null))
            .output("--anomaly-out", Some(&stdout))
            .check()
            .unwrap();
    }

    #[test]
    fn an_input_given_twice_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.jsonl");
        std::fs::write(&a, "").unwrap();
        let inputs = vec![dir.path().to_path_buf(), a.clone()];
        let message = err(RunPaths::new().inputs(&inputs));
        assert!(message.contains("given twice"), "{message}");
    }

    #[test]
    fn the_baseline_is_an_input() {
        let dir = tempfile::tempdir().unwrap();
        let b = dir.path().join("baseline.txt");
        std::fs::write(&b, "").unwrap();
        let message = err(RunPaths::new()
            .reads("--baseline", &b)
            .output("--baseline-out", Some(&b)));
        assert!(
            message.contains("--baseline-out") && message.contains("--baseline "),
            "{message}"
        );
    }
}
