//! Building the pageview source a job reads from the command line.

use keyflow::jobs::pageviews::{DumpTime, GeneratorConfig, InputFormat, PageviewSource};

use super::run_args::{DumpTimeArg, InputFormat as FormatArg, SourceArgs};

/// Checks the source flags now (files exist, generator values valid) and
/// returns a function that builds the source on each worker.
pub fn pageview_source(
    args: &SourceArgs,
) -> anyhow::Result<impl Fn() -> keyflow::dataflow::Result<PageviewSource> + Send + Sync + 'static>
{
    let source = if args.inputs.is_empty() {
        PageviewSource::generator(GeneratorConfig {
            articles: args.articles,
            seed: args.seed,
            rate: args.rate,
            duration_ms: args.duration.as_millis() as u64,
            realtime: args.realtime,
            ..GeneratorConfig::default()
        })?
    } else {
        args.check_inputs()?;
        let format = match args.input_format {
            FormatArg::Jsonl => InputFormat::Jsonl,
            FormatArg::Dump => InputFormat::Dump,
        };
        let dump_time = match args.dump_time {
            DumpTimeArg::Start => DumpTime::Start,
            DumpTimeArg::End => DumpTime::End,
        };
        PageviewSource::from_files(format, &args.inputs, dump_time)?
    };
    // The source is cheap to clone: workers get their own copy.
    let shared = std::sync::Mutex::new(source);
    Ok(move || Ok(shared.lock().unwrap_or_else(|p| p.into_inner()).clone()))
}
