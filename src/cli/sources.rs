//! Building the pageview source a job reads from the command line.

use keyflow::jobs::pageviews::{DumpTime, InputFormat, PageviewSource};

use super::run_args::{DumpTimeArg, InputFormat as FormatArg, SourceArgs};

/// Checks the source flags now (no contradictions, files exist, generator
/// values valid) and returns a function that builds the source on each
/// worker.
pub fn pageview_source(
    args: &SourceArgs,
) -> anyhow::Result<impl Fn() -> keyflow::dataflow::Result<PageviewSource> + Send + Sync + 'static>
{
    args.check_flags()?;
    let source = if args.inputs.is_empty() {
        PageviewSource::generator(args.generator())?
    } else {
        args.check_inputs()?;
        let format = match args.format() {
            FormatArg::Jsonl => InputFormat::Jsonl,
            FormatArg::Dump => InputFormat::Dump,
        };
        let dump_time = match args.dump_time.unwrap_or(DumpTimeArg::Start) {
            DumpTimeArg::Start => DumpTime::Start,
            DumpTimeArg::End => DumpTime::End,
        };
        PageviewSource::from_files(format, &args.inputs, dump_time)?
    };
    // The source is cheap to clone: workers get their own copy.
    let shared = std::sync::Mutex::new(source);
    Ok(move || Ok(shared.lock().unwrap_or_else(|p| p.into_inner()).clone()))
}
