//! Flags shared by every `keyflow run JOB`: workers, processes, sources.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};
use keyflow::dataflow::prelude::*;
use keyflow::dataflow::time::parse_duration_ms;

pub use keyflow::dataflow::args::ClusterArgs;

/// Input file formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum InputFormat {
    /// One JSON object per line.
    Jsonl,
    /// Wikimedia pagecounts/pageviews dump files.
    Dump,
    /// A Redis stream (--input redis://HOST:PORT/DB --stream NAME).
    RedisStream,
    /// A Kafka topic of JSON messages (--input kafka://HOST:PORT/TOPIC;
    /// needs a build with the `kafka` feature).
    Kafka,
}

/// Whether a dump file's hour stamp marks the start or the end of its hour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DumpTimeArg {
    /// The stamp is the hour's start (Wikimedia's convention).
    Start,
    /// The stamp is the hour's end.
    End,
}

/// A duration flag with the text it was given as, so that errors can quote
/// it as typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypedDuration {
    /// The duration.
    pub value: Duration,
    /// The flag's text.
    pub text: String,
}

/// Parses a duration flag, keeping its text.
pub fn parse_typed_duration(text: &str) -> Result<TypedDuration, String> {
    Ok(TypedDuration {
        value: parse_duration(text)?,
        text: text.to_string(),
    })
}

/// The generator's defaults, shown in `--help`.
pub(crate) const DEFAULT_ARTICLES: u32 = 6_000_000;
pub(crate) const DEFAULT_SEED: u64 = 42;
pub(crate) const DEFAULT_RATE: u64 = 1_000;
pub(crate) const DEFAULT_DURATION: &str = "75m";

/// Where events come from and how their time is judged.
#[derive(Debug, Clone, Args)]
pub struct SourceArgs {
    /// Input files (gzip or plain, told apart by their first bytes), or
    /// directories standing for their files. Without any, the built-in
    /// generator runs. No file may be given twice.
    #[arg(long = "input", num_args = 1.., value_name = "FILE")]
    pub inputs: Vec<PathBuf>,
    /// Format of the input files (needs --input) [default: jsonl]
    #[arg(long, value_enum)]
    pub input_format: Option<InputFormat>,
    /// For dump files: whether the hour stamp is the hour's start or end
    /// (needs --input-format dump) [default: start]
    #[arg(long, value_enum)]
    pub dump_time: Option<DumpTimeArg>,
    /// Generator: number of distinct articles (not with --input) [default: 6000000]
    #[arg(long, value_name = "N")]
    pub articles: Option<u32>,
    /// Generator: random seed (not with --input) [default: 42]
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
    /// Generator: events per second of event time (not with --input)
    /// [default: 1000]
    #[arg(long, value_name = "N")]
    pub rate: Option<u64>,
    /// Generator: event-time span of the generated stream (not with --input)
    /// [default: 75m]
    #[arg(long, value_parser = parse_typed_duration, value_name = "DURATION")]
    pub duration: Option<TypedDuration>,
    /// Generator: pace events at real time instead of as fast as possible
    /// (not with --input).
    #[arg(long)]
    pub realtime: bool,
    /// With --input-format redis-stream: the stream (several, comma-separated,
    /// are one partition each).
    #[arg(long, value_name = "NAME")]
    pub stream: Option<String>,
    /// With --input-format redis-stream: the consumer group [default: keyflow]
    #[arg(long, value_name = "NAME")]
    pub group: Option<String>,
    /// With --input-format redis-stream or kafka: read up to the last entry
    /// present at start (for Kafka, each partition's high watermark), then
    /// end.
    #[arg(long)]
    pub bounded: bool,
    /// Kafka source flags.
    #[command(flatten)]
    pub kafka: super::kafka_io::KafkaSourceArgs,
    /// How event time is judged, and malformed input.
    #[command(flatten)]
    pub time: EventTimeArgs,
}

/// How every source's records are judged: watermarks, idleness, the
/// future bound and malformed input. Shared by the jobs' source flags.
#[derive(Debug, Clone, Args)]
pub struct EventTimeArgs {
    /// Allowed out-of-orderness: the watermark trails the largest event
    /// time seen by this much. Must be below --max-future.
    #[arg(long, default_value = "5s", value_parser = parse_typed_duration, value_name = "DURATION")]
    pub max_out_of_orderness: TypedDuration,
    /// A partition with nothing to read for this long stops holding event
    /// time back.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub idle_timeout: Duration,
    /// Records this far ahead of the watermark are rejected and counted.
    #[arg(long, default_value = "7days", value_parser = parse_typed_duration, value_name = "DURATION")]
    pub max_future: TypedDuration,
    /// After a gap longer than --max-future in a partition's event time:
    /// this many records in a row past the bound, in step with each other,
    /// stand, and the watermark moves on to them (held until then; fewer
    /// are rejected and counted). 0 rejects every record past the bound.
    #[arg(long, default_value_t = 100, value_name = "N")]
    pub jump_after: usize,
    /// Malformed input: drop (count and skip; a run in which every record
    /// was malformed still fails, and keeps an earlier --out) or fail
    /// (stop, naming file and line).
    #[arg(long, default_value = "drop", value_parser = parse_bad_input)]
    pub bad_input: BadInputPolicy,
}

impl EventTimeArgs {
    /// The source configuration, checked (flags named as typed first).
    pub fn source_config(&self) -> anyhow::Result<SourceConfig> {
        self.check()?;
        let config = SourceConfig {
            max_out_of_orderness: self.max_out_of_orderness.value.as_millis() as u64,
            idle_timeout: Some(self.idle_timeout),
            max_future: Some(self.max_future.value.as_millis() as u64),
            jump_after: (self.jump_after > 0).then_some(self.jump_after),
            bad_input: self.bad_input,
            ..SourceConfig::default()
        };
        config.validate()?;
        Ok(config)
    }

    /// Refuses an out-of-orderness that is not below the future bound,
    /// naming both as typed.
    pub fn check(&self) -> anyhow::Result<()> {
        let (ooo, future) = (&self.max_out_of_orderness, &self.max_future);
        if ooo.value >= future.value {
            anyhow::bail!(
                "--max-out-of-orderness {} is not below --max-future {}: the watermark would \
                 trail the newest record by at least as much as a record may lead it, so \
                 nearly every record would be rejected as too far in the future",
                ooo.text,
                future.text
            );
        }
        Ok(())
    }
}

impl SourceArgs {
    /// The source configuration, checked.
    pub fn source_config(&self) -> anyhow::Result<SourceConfig> {
        self.time.source_config()
    }

    /// The input format (JSON lines unless given).
    pub fn format(&self) -> InputFormat {
        self.input_format.unwrap_or(InputFormat::Jsonl)
    }

    /// The generator's configuration, defaults filled in.
    pub fn generator(&self) -> keyflow::jobs::pageviews::GeneratorConfig {
        let duration = match &self.duration {
            Some(d) => d.value,
            None => parse_duration(DEFAULT_DURATION).expect("the default duration parses"),
        };
        keyflow::jobs::pageviews::GeneratorConfig {
            articles: self.articles.unwrap_or(DEFAULT_ARTICLES),
            seed: self.seed.unwrap_or(DEFAULT_SEED),
            rate: self.rate.unwrap_or(DEFAULT_RATE),
            duration_ms: duration.as_millis() as u64,
            realtime: self.realtime,
            ..Default::default()
        }
    }

    /// Refuses flags that contradict each other or do nothing with the
    /// others given, naming them as typed.
    pub fn check_flags(&self) -> anyhow::Result<()> {
        self.time.check()?;
        self.check_stream_flags()?;
        if self.inputs.is_empty() {
            if let Some(format) = self.input_format {
                anyhow::bail!(
                    "--input-format {} does nothing without --input: the built-in generator runs",
                    format_name(format)
                );
            }
            if let Some(time) = self.dump_time {
                anyhow::bail!(
                    "--dump-time {} does nothing without --input: the built-in generator runs",
                    dump_time_name(time)
                );
            }
            return Ok(());
        }
        refuse_generator_flags(&[
            ("--articles", self.articles.map(|n| n.to_string())),
            ("--seed", self.seed.map(|n| n.to_string())),
            ("--rate", self.rate.map(|n| n.to_string())),
            ("--duration", self.duration.as_ref().map(|d| d.text.clone())),
            ("--realtime", self.realtime.then(String::new)),
        ])?;
        if let (Some(time), InputFormat::Jsonl) = (self.dump_time, self.format()) {
            anyhow::bail!(
                "--dump-time {} does nothing with JSON-lines input, whose records carry their \
                 own `ts`; it applies with --input-format dump",
                dump_time_name(time)
            );
        }
        Ok(())
    }

    fn check_stream_flags(&self) -> anyhow::Result<()> {
        let kafka = self.format() == InputFormat::Kafka;
        self.kafka.refuse_unless(kafka)?;
        if kafka {
            return self.check_kafka_flags();
        }
        if self.format() != InputFormat::RedisStream {
            for (flag, given) in [
                ("--stream", self.stream.is_some()),
                ("--group", self.group.is_some()),
                ("--bounded", self.bounded),
            ] {
                if given {
                    anyhow::bail!("{flag} needs --input-format redis-stream");
                }
            }
            return Ok(());
        }
        match self.inputs.as_slice() {
            [url]
                if url.to_string_lossy().starts_with("redis://")
                    || url.to_string_lossy().starts_with("rediss://") => {}
            _ => anyhow::bail!(
                "--input-format redis-stream needs one --input redis://HOST:PORT/DB, not {:?}",
                self.inputs
            ),
        }
        if self.stream.as_deref().is_none_or(|s| s.trim().is_empty()) {
            anyhow::bail!("--input-format redis-stream needs --stream NAME");
        }
        if let Some(time) = self.dump_time {
            anyhow::bail!(
                "--dump-time {} does nothing with a Redis stream, whose entries carry their own `ts`",
                dump_time_name(time)
            );
        }
        Ok(())
    }

    fn check_kafka_flags(&self) -> anyhow::Result<()> {
        match self.inputs.as_slice() {
            [url] if super::kafka_io::is_kafka(url) => {}
            _ => anyhow::bail!(
                "--input-format kafka needs one --input kafka://HOST:PORT/TOPIC, not {:?}",
                self.inputs
            ),
        }
        for (flag, given) in [
            ("--stream", self.stream.is_some()),
            ("--group (use --kafka-group)", self.group.is_some()),
            ("--dump-time", self.dump_time.is_some()),
        ] {
            if given {
                anyhow::bail!("{flag} does nothing with --input-format kafka");
            }
        }
        // Checked now, before any work: a bad address or value fails fast.
        self.kafka.config(
            &self.inputs[0],
            self.bounded,
            std::time::Duration::from_secs(1),
        )?;
        Ok(())
    }

    /// The input files (none for a Redis stream or Kafka topic, whose
    /// --input is a URL).
    pub fn files(&self) -> &[PathBuf] {
        if matches!(self.format(), InputFormat::RedisStream | InputFormat::Kafka) {
            &[]
        } else {
            &self.inputs
        }
    }

    /// The Redis stream source's configuration, for --input-format
    /// redis-stream.
    pub fn stream_config(&self) -> Option<keyflow::dataflow::source::RedisStreamConfig> {
        if self.format() != InputFormat::RedisStream {
            return None;
        }
        Some(keyflow::dataflow::source::RedisStreamConfig {
            url: self.inputs.first()?.to_string_lossy().into_owned(),
            streams: self
                .stream
                .as_deref()?
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect(),
            group: self.group.clone().unwrap_or_else(|| "keyflow".to_string()),
            bounded: self.bounded,
            retry_for: std::time::Duration::from_secs(60),
        })
    }

    /// Fails fast on a missing input file, naming it.
    pub fn check_inputs(&self) -> anyhow::Result<()> {
        for path in self.files() {
            if !path.exists() {
                anyhow::bail!("input {} does not exist", path.display());
            }
        }
        Ok(())
    }
}

/// Refuses the first generator flag given (`Some` value; an empty value for
/// a switch) in a run that reads `--input` files, naming it as typed.
pub fn refuse_generator_flags(flags: &[(&str, Option<String>)]) -> anyhow::Result<()> {
    if let Some((flag, value)) = flags
        .iter()
        .find_map(|(flag, value)| value.as_ref().map(|v| (flag, v)))
    {
        let shown = if value.is_empty() {
            flag.to_string()
        } else {
            format!("{flag} {value}")
        };
        anyhow::bail!(
            "{shown} is a generator flag and does nothing with --input: the files are read \
             instead of generating events"
        );
    }
    Ok(())
}

fn format_name(format: InputFormat) -> &'static str {
    match format {
        InputFormat::Jsonl => "jsonl",
        InputFormat::Dump => "dump",
        InputFormat::RedisStream => "redis-stream",
        InputFormat::Kafka => "kafka",
    }
}

fn dump_time_name(time: DumpTimeArg) -> &'static str {
    match time {
        DumpTimeArg::Start => "start",
        DumpTimeArg::End => "end",
    }
}

pub use keyflow::dataflow::args::parse_duration;

fn parse_bad_input(text: &str) -> Result<BadInputPolicy, String> {
    text.parse()
        .map_err(|e: keyflow::dataflow::Error| e.to_string())
}

/// Parses `--late drop | side-output | allowed-lateness D`.
pub fn parse_late(values: &[String]) -> anyhow::Result<Lateness> {
    match values {
        [] => Ok(Lateness::Drop),
        [p] if p == "drop" => Ok(Lateness::Drop),
        [p] if p == "side-output" => Ok(Lateness::SideOutput),
        [p, d] if p == "allowed-lateness" => {
            Ok(Lateness::Allowed(parse_duration_ms("allowed lateness", d)?))
        }
        [p] if p == "allowed-lateness" => {
            anyhow::bail!(
                "--late allowed-lateness needs a duration, e.g. `--late allowed-lateness 30s`"
            )
        }
        other => anyhow::bail!(
            "--late {} is not one of: drop, side-output, allowed-lateness <DURATION>",
            other.join(" ")
        ),
    }
}

/// The longest allowed lateness: state is kept that long past its time.
pub const MAX_LATENESS: u64 = 7 * keyflow::dataflow::time::DAY;

/// Parses `--late` and checks it against `--late-out`: a late file needs
/// `side-output`, which needs one; an allowed lateness may not pass
/// [`MAX_LATENESS`], and `why` says what it would keep that long.
pub fn late_policy(
    values: &[String],
    late_out: Option<&PathBuf>,
    why: &str,
) -> anyhow::Result<Lateness> {
    let lateness = parse_late(values)?;
    match (late_out, lateness) {
        (Some(path), lateness) if lateness != Lateness::SideOutput => anyhow::bail!(
            "--late-out {} needs `--late side-output`; without it nothing is written there",
            path.display()
        ),
        (None, Lateness::SideOutput) => anyhow::bail!(
            "--late side-output needs --late-out FILE: without it late events are only \
             counted, as with `--late drop`"
        ),
        (_, Lateness::Allowed(d)) if d > MAX_LATENESS => anyhow::bail!(
            "--late allowed-lateness {} is longer than 7days: {why}",
            values.get(1).map(String::as_str).unwrap_or_default(),
        ),
        _ => Ok(lateness),
    }
}
