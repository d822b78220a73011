//! Building the pageview source a job reads from the command line.

use keyflow::jobs::pageviews::{DumpTime, InputFormat, PageviewSource};

use super::run_args::{DumpTimeArg, InputFormat as FormatArg, SourceArgs};

/// Checks the source flags now (no contradictions, files exist, generator
/// values valid) and returns a function that builds the source on each
/// worker.
pub fn pageview_source(
    args: &SourceArgs,
    connect_timeout: std::time::Duration,
) -> anyhow::Result<(
    impl Fn() -> keyflow::dataflow::Result<PageviewSource> + Send + Sync + 'static,
    Acker,
)> {
    args.check_flags()?;
    let source = if args.format() == FormatArg::Kafka {
        let config = args
            .kafka
            .config(&args.inputs[0], args.bounded, connect_timeout)?;
        kafka_source(config)?
    } else if let Some(config) = args.stream_config() {
        PageviewSource::RedisStream(keyflow::jobs::pageviews::stream_source(config)?)
    } else if args.inputs.is_empty() {
        PageviewSource::generator(args.generator())?
    } else {
        args.check_inputs()?;
        let format = match args.format() {
            FormatArg::Jsonl => InputFormat::Jsonl,
            FormatArg::Dump | FormatArg::RedisStream | FormatArg::Kafka => InputFormat::Dump,
        };
        let dump_time = match args.dump_time.unwrap_or(DumpTimeArg::Start) {
            DumpTimeArg::Start => DumpTime::Start,
            DumpTimeArg::End => DumpTime::End,
        };
        PageviewSource::from_files(format, &args.inputs, dump_time)?
    };
    let acker = Acker(match &source {
        PageviewSource::RedisStream(s) => Some(s.clone()),
        _ => None,
    });
    // The source is cheap to clone: workers get their own copy.
    let shared = std::sync::Mutex::new(source);
    let make = move || Ok(shared.lock().unwrap_or_else(|p| p.into_inner()).clone());
    Ok((make, acker))
}

/// Acknowledges a Redis stream's entries once the run that read them has
/// ended well (a no-op for other sources). With checkpoints, complete
/// checkpoints acknowledge what they cover while the run goes on.
pub struct Acker(
    Option<keyflow::dataflow::source::RedisStreamSource<keyflow::jobs::pageviews::PageView>>,
);

impl Acker {
    /// Call after the run returned successfully: its results are written.
    pub fn acknowledge(&self) -> anyhow::Result<()> {
        if let Some(source) = &self.0 {
            let n = source.acknowledge()?;
            tracing::info!("acknowledged {n} stream entries");
        }
        Ok(())
    }
}

#[cfg(feature = "kafka")]
fn kafka_source(
    config: keyflow::dataflow::kafka::KafkaSourceConfig,
) -> anyhow::Result<PageviewSource> {
    Ok(PageviewSource::Kafka(
        keyflow::dataflow::kafka::KafkaSource::new(
            config,
            keyflow::jobs::pageviews::parse_json_message,
        )?,
    ))
}

/// A build without Kafka refuses the flags before this is reached.
#[cfg(not(feature = "kafka"))]
fn kafka_source(config: std::convert::Infallible) -> anyhow::Result<PageviewSource> {
    match config {}
}
