//! `keyflow generate`: the generator's pageview events as JSON lines, or
//! into a Redis stream, in event-time order.

use std::collections::VecDeque;
use std::io::Write;

use clap::Args;
use keyflow::dataflow::sink::{RedisConfig, RedisConnection};
use keyflow::dataflow::source::{Batch, PollStatus, Source};
use keyflow::jobs::pageviews::{GeneratorConfig, PageView, PageviewSource};

use super::run_args::{
    parse_typed_duration, TypedDuration, DEFAULT_ARTICLES, DEFAULT_DURATION, DEFAULT_RATE,
    DEFAULT_SEED,
};

/// Write the generator's events somewhere.
#[derive(Debug, Clone, Args)]
pub struct GenerateArgs {
    /// `redis://HOST:PORT/DB` (with --stream), `kafka://HOST:PORT/TOPIC`
    /// (an existing topic; messages keyed by article), a file, or `-` for
    /// stdout.
    #[arg(long, default_value = "-", value_name = "WHERE")]
    pub to: String,
    /// With a redis:// target: the stream to add the events to.
    #[arg(long, value_name = "NAME")]
    pub stream: Option<String>,
    /// Number of distinct articles.
    #[arg(long, default_value_t = DEFAULT_ARTICLES)]
    pub articles: u32,
    /// Random seed.
    #[arg(long, default_value_t = DEFAULT_SEED)]
    pub seed: u64,
    /// Events per second of event time.
    #[arg(long, default_value_t = DEFAULT_RATE)]
    pub rate: u64,
    /// Event-time span of the events.
    #[arg(long, default_value = DEFAULT_DURATION, value_parser = parse_typed_duration)]
    pub duration: TypedDuration,
    /// Pace the events at real time.
    #[arg(long)]
    pub realtime: bool,
}

enum Target {
    Lines(Box<dyn Write>),
    Stream(Box<RedisConnection>, String),
    #[cfg(feature = "kafka")]
    Kafka(Box<keyflow::dataflow::kafka::KafkaSink<PageView>>),
}

/// An event as a JSON line, as `keyflow run --input-format jsonl` reads it
/// (and as a Kafka message's value).
pub(super) fn json_line(ts: u64, view: &PageView) -> String {
    serde_json::json!({
        "project": view.article.project(),
        "title": view.article.title(),
        "ts": ts,
        "views": view.views,
    })
    .to_string()
}

impl Target {
    fn open(args: &GenerateArgs) -> anyhow::Result<Target> {
        if args.to.starts_with("redis://") || args.to.starts_with("rediss://") {
            let Some(stream) = args.stream.clone().filter(|s| !s.is_empty()) else {
                anyhow::bail!("--to {} needs --stream NAME", args.to);
            };
            return Ok(Target::Stream(
                Box::new(RedisConnection::new(RedisConfig::new(&args.to)?)?),
                stream,
            ));
        }
        if args.to.starts_with("kafka://") {
            #[cfg(feature = "kafka")]
            {
                use keyflow::dataflow::kafka::{KafkaSink, KafkaSinkConfig};
                let config = KafkaSinkConfig {
                    address: args.to.parse()?,
                    transactional_id: None,
                    connect_timeout: std::time::Duration::from_secs(30),
                };
                let sink = KafkaSink::new(config, |ts, view: &PageView| {
                    let key = format!("{}:{}", view.article.project(), view.article.title());
                    (key, json_line(ts, view))
                })?;
                return Ok(Target::Kafka(Box::new(sink)));
            }
            #[cfg(not(feature = "kafka"))]
            anyhow::bail!(
                "--to {}: this keyflow was built without Kafka: install it with \
                 `cargo install --path . --features kafka` (needs cmake and a C compiler)",
                args.to
            );
        }
        if let Some(stream) = &args.stream {
            anyhow::bail!("--stream {stream} needs --to redis://HOST:PORT/DB");
        }
        if args.to == "-" {
            return Ok(Target::Lines(Box::new(std::io::BufWriter::new(
                std::io::stdout(),
            ))));
        }
        let file = std::fs::File::create(&args.to)
            .map_err(|e| anyhow::anyhow!("--to {}: {e}", args.to))?;
        Ok(Target::Lines(Box::new(std::io::BufWriter::new(file))))
    }

    fn write(&mut self, events: &[(u64, PageView)]) -> anyhow::Result<()> {
        match self {
            Target::Lines(out) => {
                for (ts, view) in events {
                    writeln!(out, "{}", json_line(*ts, view))?;
                }
            }
            Target::Stream(connection, stream) => {
                let mut pipe = keyflow::dataflow::redis::pipe();
                for (ts, view) in events {
                    pipe.cmd("XADD")
                        .arg(stream.as_str())
                        .arg("*")
                        .arg("project")
                        .arg(view.article.project())
                        .arg("title")
                        .arg(view.article.title().as_ref())
                        .arg("ts")
                        .arg(*ts)
                        .arg("views")
                        .arg(view.views)
                        .ignore();
                }
                connection.run::<()>(&pipe)?;
            }
            #[cfg(feature = "kafka")]
            Target::Kafka(sink) => {
                use keyflow::dataflow::sink::Sink;
                sink.write(0, events)?;
            }
        }
        Ok(())
    }
}

/// Hands `write` the events of every partition of `source`, merged into
/// event-time order, a thousand at a time; returns how many there were.
fn in_time_order(
    source: &PageviewSource,
    mut write: impl FnMut(&[(u64, PageView)]) -> anyhow::Result<()>,
) -> anyhow::Result<u64> {
    let mut parts = (0..source.partitions())
        .map(|i| source.open(i).map(|p| (p, VecDeque::new(), false)))
        .collect::<Result<Vec<_>, _>>()?;
    let mut batch = Batch::new(4096);
    let mut out = Vec::with_capacity(1000);
    let mut written = 0u64;
    loop {
        // Refill every partition that has nothing buffered, so the merge
        // below always sees each partition's next event.
        for (partition, buffer, done) in parts.iter_mut() {
            while buffer.is_empty() && !*done {
                batch.clear();
                match partition.poll(&mut batch)? {
                    PollStatus::Done => *done = true,
                    PollStatus::Idle => std::thread::sleep(std::time::Duration::from_millis(5)),
                    PollStatus::Ready => {}
                }
                buffer.extend(batch.records.drain(..));
            }
        }
        let next = parts
            .iter()
            .enumerate()
            .filter_map(|(i, (_, b, _))| b.front().map(|(ts, _)| (*ts, i)))
            .min();
        let Some((_, i)) = next else { break };
        out.extend(parts[i].1.pop_front());
        if out.len() == 1000 {
            write(&out)?;
            written += out.len() as u64;
            out.clear();
        }
    }
    write(&out)?;
    Ok(written + out.len() as u64)
}

/// Writes the events of `source` to `path` as JSON lines, as `keyflow
/// generate --to PATH` does; returns how many.
pub(super) fn jsonl_file(source: &PageviewSource, path: &std::path::Path) -> anyhow::Result<u64> {
    let file =
        std::fs::File::create(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let mut target = Target::Lines(Box::new(std::io::BufWriter::new(file)));
    let written = in_time_order(source, |events| target.write(events))?;
    if let Target::Lines(mut out) = target {
        out.flush()?;
    }
    Ok(written)
}

/// Runs `keyflow generate`; returns the exit code.
pub fn generate(args: &GenerateArgs) -> anyhow::Result<i32> {
    let config = GeneratorConfig {
        articles: args.articles,
        seed: args.seed,
        rate: args.rate,
        duration_ms: args.duration.value.as_millis() as u64,
        realtime: args.realtime,
        ..Default::default()
    };
    let source = PageviewSource::generator(config)?;
    let mut target = Target::open(args)?;
    let written = in_time_order(&source, |events| target.write(events))?;
    match target {
        Target::Lines(mut w) => w.flush()?,
        #[cfg(feature = "kafka")]
        Target::Kafka(mut sink) => keyflow::dataflow::sink::Sink::close(sink.as_mut())?,
        Target::Stream(..) => {}
    }
    say!("generate: {written} events written to {}", args.to);
    Ok(0)
}
