//! `keyflow bench kafka`: the trending job reading a topic of generated
//! events from librdkafka's mock cluster (in this process, over loopback),
//! next to the same job on the same events from the generator and from a
//! JSON-lines file, measured in the same run.

use std::sync::Arc;
use std::time::Instant;

use clap::Args;
use keyflow::dataflow::kafka::rdkafka::mocking::MockCluster;
use keyflow::dataflow::kafka::{
    Encode, KafkaSink, KafkaSinkConfig, KafkaSource, KafkaSourceConfig, KafkaStart, KafkaTime,
};
use keyflow::dataflow::prelude::*;
use keyflow::dataflow::run::run_with_context;
use keyflow::dataflow::source::{Batch, PollStatus, Source};
use keyflow::jobs::pageviews::{
    parse_json_message, GeneratorConfig, PageView, PageviewSource, DEFAULT_START_MS,
};
use keyflow::jobs::trending::{trending, TrendingConfig};
use serde_json::json;

/// Flags of `keyflow bench kafka`.
#[derive(Debug, Clone, Args)]
pub struct KafkaBenchArgs {
    /// Events to generate (over two hours of event time). The mock cluster
    /// keeps about 5 MB per partition and drops older messages, so keep
    /// events / partitions under about 50,000.
    #[arg(long, default_value_t = 1_000_000)]
    pub events: u64,
    /// Distinct articles.
    #[arg(long, default_value_t = 100_000)]
    pub articles: u32,
    /// Partitions of the topic.
    #[arg(long, default_value_t = 32)]
    pub partitions: i32,
    /// Worker threads for the job.
    #[arg(long, short = 'w', default_value_t = 1)]
    pub workers: usize,
}

fn encode_event() -> Encode<PageView> {
    |ts, view| {
        // Keyed by time and article, so that the hash spreads the events
        // evenly: keyed by article alone, the Zipf head would fill one
        // partition past what the mock cluster keeps.
        let key = format!("{ts}:{}:{}", view.article.project(), view.article.title());
        (key, super::generate::json_line(ts, view))
    }
}

/// Runs the trending job over `source`; returns seconds and events read.
fn time_job(source: PageviewSource, workers: usize) -> anyhow::Result<(f64, u64)> {
    let ctx = Arc::new(Context::new(RunConfig::threads(workers)));
    let start = Instant::now();
    run_with_context(Arc::clone(&ctx), move |flow| {
        let events = flow.source("pageviews", source.clone(), &SourceConfig::default())?;
        let job = trending(
            events,
            &TrendingConfig {
                hourly: false,
                ..TrendingConfig::default()
            },
        )?;
        job.minutes.inspect(|_, _| {});
        Ok(())
    })?;
    Ok((start.elapsed().as_secs_f64(), ctx.metrics.snapshot().events))
}

/// `keyflow bench kafka`.
pub fn kafka_throughput(args: &KafkaBenchArgs) -> anyhow::Result<i32> {
    anyhow::ensure!(args.partitions >= 1, "--partitions must be at least 1");
    let rate = (args.events / 7_200).max(1);
    let config = GeneratorConfig {
        articles: args.articles,
        rate,
        duration_ms: args.events * 1000 / rate,
        start_ms: DEFAULT_START_MS,
        ..GeneratorConfig::default()
    };
    // One partition to fill the topic and the file, so that the file is in
    // time order; the generator round reads the default partitions.
    let single = PageviewSource::generator(GeneratorConfig {
        partitions: 1,
        ..config.clone()
    })?;
    let generator = PageviewSource::generator(config)?;
    let cluster = MockCluster::new(1)?;
    cluster.create_topic("events", args.partitions, 1)?;
    let address: keyflow::dataflow::kafka::KafkaAddress =
        format!("kafka://{}/events", cluster.bootstrap_servers()).parse()?;
    let dir = tempfile_dir()?;
    let file = dir.join("events.jsonl");

    // Fill the topic and the file with the generator's events.
    let start = Instant::now();
    let mut sink = KafkaSink::new(
        KafkaSinkConfig {
            address: address.clone(),
            transactional_id: None,
            connect_timeout: std::time::Duration::from_secs(30),
        },
        encode_event(),
    )?;
    let mut lines = std::io::BufWriter::new(std::fs::File::create(&file)?);
    let mut produced = 0u64;
    let encode = encode_event();
    for p in 0..single.partitions() {
        let mut part = single.open(p)?;
        let mut batch = Batch::new(4096);
        loop {
            batch.clear();
            let status = part.poll(&mut batch)?;
            for (ts, view) in &batch.records {
                use std::io::Write;
                writeln!(lines, "{}", encode(*ts, view).1)?;
            }
            produced += batch.records.len() as u64;
            sink.write(0, &batch.records)?;
            if status == PollStatus::Done {
                break;
            }
        }
    }
    sink.close()?;
    drop(lines);
    let produce_secs = start.elapsed().as_secs_f64();

    let kafka = KafkaSource::new(
        KafkaSourceConfig {
            address,
            group: "keyflow-bench".into(),
            start: KafkaStart::Earliest,
            time: KafkaTime::Json,
            bounded: true,
            connect_timeout: std::time::Duration::from_secs(30),
        },
        parse_json_message,
    )?;
    let (kafka_secs, kafka_events) = time_job(PageviewSource::Kafka(kafka), args.workers)?;
    let from_file = PageviewSource::from_files(
        keyflow::jobs::pageviews::InputFormat::Jsonl,
        std::slice::from_ref(&file),
        keyflow::jobs::pageviews::DumpTime::Start,
    )?;
    let (file_secs, file_events) = time_job(from_file, args.workers)?;
    let (gen_secs, gen_events) = time_job(generator, args.workers)?;
    let _ = std::fs::remove_dir_all(&dir);
    anyhow::ensure!(
        kafka_events == produced && file_events == produced && gen_events == produced,
        "events read: kafka {kafka_events}, file {file_events}, generator {gen_events}; \
         produced {produced} (the mock cluster drops a partition's oldest messages past \
         about 5 MB: use more --partitions)"
    );
    let report = json!({
        "bench": "kafka",
        "events": produced,
        "articles": args.articles,
        "partitions": args.partitions,
        "workers": args.workers,
        "produce": { "seconds": produce_secs, "events_per_s": produced as f64 / produce_secs },
        "kafka": { "seconds": kafka_secs, "events_per_s": produced as f64 / kafka_secs },
        "file": { "seconds": file_secs, "events_per_s": produced as f64 / file_secs },
        "generator": { "seconds": gen_secs, "events_per_s": produced as f64 / gen_secs },
        "kafka_vs_file": file_secs / kafka_secs,
        "kafka_vs_generator": gen_secs / kafka_secs,
    });
    showln!("{}", serde_json::to_string_pretty(&report)?);
    Ok(0)
}

fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("keyflow-bench-kafka-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
