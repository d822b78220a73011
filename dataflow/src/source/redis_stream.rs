//! A Redis Streams source: each stream is one partition (its order decides
//! lateness, as a file's does), read through a consumer group, so that the
//! group records what keyflow has taken and what it has finished with.
//!
//! The reader first takes the entries the group delivered to it earlier but
//! never saw acknowledged (a run that failed), then new ones. Entries are
//! acknowledged only by [`RedisStreamSource::acknowledge`], which a job calls
//! once its run has ended well and its results are written: a failed run is
//! read again (at least once).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::sink::{RedisConfig, RedisConnection};
use crate::source::{Batch, Partition, PollStatus, Source};
use crate::time::EventTime;

/// The consumer name keyflow reads each stream under, within its group.
pub const CONSUMER: &str = "keyflow";

/// Turns one entry's fields into a record, or says why it cannot.
pub type ParseEntry<T> = fn(&[(String, String)]) -> std::result::Result<(EventTime, T), String>;

/// Where a [`RedisStreamSource`] reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisStreamConfig {
    /// `redis://HOST:PORT/DB`.
    pub url: String,
    /// The streams, one partition each.
    pub streams: Vec<String>,
    /// The consumer group (created at the stream's start when missing).
    pub group: String,
    /// Read up to the last entry present at start, then end.
    pub bounded: bool,
    /// How long to retry while the server cannot be reached.
    pub retry_for: Duration,
}

/// Entries delivered to this process's readers and not yet acknowledged,
/// per stream.
#[derive(Debug, Default)]
struct Delivered {
    ids: Vec<(String, Vec<String>)>,
}

/// Streams read through a consumer group; see the module docs.
pub struct RedisStreamSource<T> {
    config: RedisStreamConfig,
    parse: ParseEntry<T>,
    delivered: Arc<Mutex<Delivered>>,
}

impl<T> std::fmt::Debug for RedisStreamSource<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStreamSource")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl<T> Clone for RedisStreamSource<T> {
    fn clone(&self) -> Self {
        RedisStreamSource {
            config: self.config.clone(),
            parse: self.parse,
            delivered: Arc::clone(&self.delivered),
        }
    }
}

impl<T> RedisStreamSource<T> {
    /// A source reading `config`'s streams, each entry through `parse`.
    ///
    /// ```no_run
    /// use keyflow_dataflow::source::{RedisStreamConfig, RedisStreamSource};
    /// let config = RedisStreamConfig {
    ///     url: "redis://127.0.0.1:6379/0".into(),
    ///     streams: vec!["clicks".into()],
    ///     group: "keyflow".into(),
    ///     bounded: true,
    ///     retry_for: std::time::Duration::from_secs(30),
    /// };
    /// let source = RedisStreamSource::new(config, |fields| {
    ///     let ts = fields.iter().find(|(k, _)| k == "ts").ok_or("no ts")?;
    ///     Ok((ts.1.parse::<u64>().map_err(|e| e.to_string())?, ()))
    /// });
    /// ```
    pub fn new(config: RedisStreamConfig, parse: ParseEntry<T>) -> Result<Self> {
        RedisConfig::new(&config.url)?;
        if config.streams.is_empty() || config.streams.iter().any(|s| s.is_empty()) {
            return Err(Error::Config("--stream: give a stream name".into()));
        }
        if config.group.is_empty() {
            return Err(Error::Config("--group: the group name is empty".into()));
        }
        Ok(RedisStreamSource {
            config,
            parse,
            delivered: Arc::default(),
        })
    }

    /// Acknowledges every entry this process's readers delivered, once the
    /// results they contributed to are written. Returns how many.
    pub fn acknowledge(&self) -> Result<usize> {
        let pending =
            std::mem::take(&mut self.delivered.lock().unwrap_or_else(|p| p.into_inner()).ids);
        let mut connection = RedisConnection::new(self.redis_config())?;
        let mut count = 0;
        for (stream, ids) in pending {
            for chunk in ids.chunks(1000) {
                let mut pipe = redis::pipe();
                pipe.cmd("XACK")
                    .arg(&stream)
                    .arg(&self.config.group)
                    .arg(chunk)
                    .ignore();
                connection.run::<()>(&pipe)?;
                count += chunk.len();
            }
        }
        Ok(count)
    }

    fn redis_config(&self) -> RedisConfig {
        RedisConfig {
            url: self.config.url.clone(),
            prefix: String::new(),
            ttl: None,
            retry_for: self.config.retry_for,
        }
    }
}

impl<T: 'static> Source for RedisStreamSource<T> {
    type Item = T;

    fn name(&self) -> String {
        format!("redis stream {}", self.config.streams.join(","))
    }

    fn partitions(&self) -> usize {
        self.config.streams.len()
    }

    fn open(&self, index: usize) -> Result<Box<dyn Partition<T>>> {
        let stream = self.config.streams[index].clone();
        let mut connection = RedisConnection::new(self.redis_config())?;
        let mut create = redis::pipe();
        create
            .cmd("XGROUP")
            .arg("CREATE")
            .arg(&stream)
            .arg(&self.config.group)
            .arg("0")
            .arg("MKSTREAM");
        if let Err(e) = connection.run::<redis::Value>(&create) {
            // The group exists already: read on from where it is.
            if !e.to_string().contains("BUSYGROUP") {
                return Err(e);
            }
        }
        let end = if self.config.bounded {
            let mut last = redis::pipe();
            last.cmd("XREVRANGE")
                .arg(&stream)
                .arg("+")
                .arg("-")
                .arg("COUNT")
                .arg(1);
            let (found,): (Vec<(String, Vec<String>)>,) = connection.run(&last)?;
            Some(found.first().map(|(id, _)| parse_id(id)))
        } else {
            None
        };
        Ok(Box::new(StreamPartition {
            connection,
            stream,
            group: self.config.group.clone(),
            parse: self.parse,
            end,
            pending_from: Some("0".to_string()),
            delivered: Arc::clone(&self.delivered),
            read: 0,
        }))
    }
}

/// A stream ID as `(milliseconds, sequence)`, which orders like the stream.
fn parse_id(id: &str) -> (u64, u64) {
    let (ms, seq) = id.split_once('-').unwrap_or((id, "0"));
    (ms.parse().unwrap_or(0), seq.parse().unwrap_or(0))
}

type Entries = Vec<(String, Vec<(String, Vec<String>)>)>;

struct StreamPartition<T> {
    connection: RedisConnection,
    stream: String,
    group: String,
    parse: ParseEntry<T>,
    /// For a bounded read: the last entry at start (`None`: it was empty).
    end: Option<Option<(u64, u64)>>,
    /// While re-reading what the group delivered earlier: from after this.
    pending_from: Option<String>,
    delivered: Arc<Mutex<Delivered>>,
    read: u64,
}

impl<T> StreamPartition<T> {
    fn note(&self, ids: Vec<String>) {
        if ids.is_empty() {
            return;
        }
        let mut d = self.delivered.lock().unwrap_or_else(|p| p.into_inner());
        match d.ids.iter_mut().find(|(s, _)| *s == self.stream) {
            Some((_, list)) => list.extend(ids),
            None => d.ids.push((self.stream.clone(), ids)),
        }
    }
}

impl<T: 'static> Partition<T> for StreamPartition<T> {
    fn poll(&mut self, batch: &mut Batch<T>) -> Result<PollStatus> {
        if self.end == Some(None) {
            return Ok(PollStatus::Done);
        }
        let from = self.pending_from.clone().unwrap_or_else(|| ">".to_string());
        let mut read = redis::pipe();
        read.cmd("XREADGROUP")
            .arg("GROUP")
            .arg(&self.group)
            .arg(CONSUMER)
            .arg("COUNT")
            .arg(batch.limit.clamp(1, 10_000))
            .arg("STREAMS")
            .arg(&self.stream)
            .arg(&from);
        let (reply,): (Option<Entries>,) = self.connection.run(&read)?;
        let entries = reply
            .into_iter()
            .flatten()
            .flat_map(|(_, entries)| entries)
            .collect::<Vec<_>>();
        if entries.is_empty() {
            if self.pending_from.take().is_some() {
                return Ok(PollStatus::Ready);
            }
            return Ok(if self.end.is_some() {
                PollStatus::Done
            } else {
                PollStatus::Idle
            });
        }
        let mut ids = Vec::with_capacity(entries.len());
        let mut reached_end = false;
        for (id, flat) in entries {
            if self.pending_from.is_some() {
                self.pending_from = Some(id.clone());
            }
            if let Some(Some(end)) = self.end {
                if parse_id(&id) > end {
                    // Past the bounded read's end: left for a later run.
                    reached_end = true;
                    continue;
                }
                reached_end |= parse_id(&id) == end;
            }
            self.read += 1;
            let fields: Vec<(String, String)> = flat
                .chunks(2)
                .filter(|kv| kv.len() == 2)
                .map(|kv| (kv[0].clone(), kv[1].clone()))
                .collect();
            match (self.parse)(&fields) {
                Ok((ts, item)) => batch.push(ts, item),
                Err(reason) => batch.bad(format!("{} entry {id}", self.stream), reason),
            }
            ids.push(id);
        }
        self.note(ids);
        Ok(if reached_end {
            PollStatus::Done
        } else {
            PollStatus::Ready
        })
    }

    fn offset(&self) -> u64 {
        self.read
    }
}
