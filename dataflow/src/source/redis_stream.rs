//! A Redis Streams source: each stream is one partition (its order decides
//! lateness, as a file's does), read through a consumer group, so that the
//! group records what keyflow has taken and what it has finished with.
//!
//! Without checkpoints the reader first takes the entries the group
//! delivered to it earlier but never saw acknowledged (a run that failed),
//! then new ones. Entries are acknowledged by
//! [`RedisStreamSource::acknowledge`], which a job calls once its run has
//! ended well and its results are written: a failed run is read again (at
//! least once). An unbounded run without checkpoints therefore acknowledges
//! nothing while it runs.
//!
//! With checkpoints a checkpoint keeps each stream's read position, the ID
//! of the last entry read ([`Partition::position`], packed into a `u64` by
//! [`pack_id`]). A restore moves the group back there (`XGROUP SETID`) and
//! reads on from the entry after it, so every entry counts exactly once;
//! once a checkpoint is complete, the entries up to its position are
//! acknowledged (`XACK`), as a Kafka source commits its offsets.

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
/// per stream, as packed IDs in the order read (which is the stream's).
#[derive(Debug, Default)]
struct Delivered {
    ids: Vec<(String, Vec<u64>)>,
}

/// Bits of a packed ID that hold the sequence number.
const SEQ_BITS: u32 = 22;

/// A stream entry ID `MS-SEQ` packed into one number that orders like the
/// stream: `MS << 22 | SEQ`. IDs that Redis makes (`XADD *`) fit until the
/// year 2109 at up to four million entries per millisecond; `None` for one
/// that does not fit, or is not an ID.
///
/// ```
/// use keyflow_dataflow::source::{pack_id, unpack_id};
/// let packed = pack_id("1470009600000-3").unwrap();
/// assert_eq!(unpack_id(packed), "1470009600000-3");
/// assert!(pack_id("1-0").unwrap() > pack_id("0-4000").unwrap());
/// assert_eq!(pack_id("18446744073709551615-0"), None);
/// ```
pub fn pack_id(id: &str) -> Option<u64> {
    let (ms, seq) = id.split_once('-').unwrap_or((id, "0"));
    let (ms, seq) = (ms.parse::<u64>().ok()?, seq.parse::<u64>().ok()?);
    if ms >> (64 - SEQ_BITS) != 0 || seq >> SEQ_BITS != 0 {
        return None;
    }
    Some(ms << SEQ_BITS | seq)
}

/// The ID [`pack_id`] packed.
pub fn unpack_id(packed: u64) -> String {
    format!("{}-{}", packed >> SEQ_BITS, packed & ((1 << SEQ_BITS) - 1))
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
            count += ack(&mut connection, &stream, &self.config.group, &ids)?;
        }
        Ok(count)
    }

    /// Connects and makes sure the group exists (at the stream's start, the
    /// stream too when missing).
    fn connect(&self, stream: &str) -> Result<RedisConnection> {
        let mut connection = RedisConnection::new(self.redis_config())?;
        let mut create = redis::pipe();
        create
            .cmd("XGROUP")
            .arg("CREATE")
            .arg(stream)
            .arg(&self.config.group)
            .arg("0")
            .arg("MKSTREAM");
        if let Err(e) = connection.run::<redis::Value>(&create) {
            // The group exists already: read on from where it is.
            if !e.to_string().contains("BUSYGROUP") {
                return Err(e);
            }
        }
        Ok(connection)
    }

    /// For a bounded read: the last entry now (`None`: the stream is empty).
    fn end(&self, connection: &mut RedisConnection, stream: &str) -> Result<Option<Option<u64>>> {
        if !self.config.bounded {
            return Ok(None);
        }
        let mut last = redis::pipe();
        last.cmd("XREVRANGE")
            .arg(stream)
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1);
        let (found,): (Vec<(String, Vec<String>)>,) = connection.run(&last)?;
        match found.first() {
            Some((id, _)) => Ok(Some(Some(packed(stream, id)?))),
            None => Ok(Some(None)),
        }
    }

    fn partition(
        &self,
        index: usize,
        connection: RedisConnection,
        pending_from: Option<String>,
        last: u64,
    ) -> Result<Box<dyn Partition<T>>>
    where
        T: 'static,
    {
        let stream = self.config.streams[index].clone();
        let mut connection = connection;
        let end = self.end(&mut connection, &stream)?;
        Ok(Box::new(StreamPartition {
            connection,
            stream,
            group: self.config.group.clone(),
            parse: self.parse,
            end,
            pending_from,
            delivered: Arc::clone(&self.delivered),
            read: 0,
            last,
        }))
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
        let stream = &self.config.streams[index];
        let mut connection = self.connect(stream)?;
        // The position before anything is read: before the first entry
        // delivered to keyflow and never acknowledged, or else where the
        // group stands.
        let mut first = redis::pipe();
        first
            .cmd("XPENDING")
            .arg(stream)
            .arg(&self.config.group)
            .arg("-")
            .arg("+")
            .arg(1)
            .arg(CONSUMER);
        let (pending,): (Vec<(String, String, u64, u64)>,) = connection.run(&first)?;
        let last = match pending.first() {
            Some((id, ..)) => packed(stream, id)?.saturating_sub(1),
            None => group_position(&mut connection, stream, &self.config.group)?,
        };
        self.partition(index, connection, Some("0".to_string()), last)
    }

    fn open_at(&self, index: usize, position: u64) -> Result<Box<dyn Partition<T>>> {
        let stream = &self.config.streams[index];
        let mut connection = self.connect(stream)?;
        // The group goes back to the checkpoint's position: the entries
        // after it are delivered again, those up to it are in the
        // checkpoint and done with. Every entry this consumer has pending
        // is acknowledged: those up to the position are done with, and
        // those after it are pending again once delivered again, so the
        // pending list holds only what this run was handed (which a read
        // lost with its connection is read back from).
        let mut set = redis::pipe();
        set.cmd("XGROUP")
            .arg("SETID")
            .arg(stream)
            .arg(&self.config.group)
            .arg(unpack_id(position));
        connection.run::<redis::Value>(&set)?;
        loop {
            let mut list = redis::pipe();
            list.cmd("XPENDING")
                .arg(stream)
                .arg(&self.config.group)
                .arg("-")
                .arg("+")
                .arg(1000)
                .arg(CONSUMER);
            let (pending,): (Vec<(String, String, u64, u64)>,) = connection.run(&list)?;
            let ids = pending
                .iter()
                .map(|(id, ..)| packed(stream, id))
                .collect::<Result<Vec<u64>>>()?;
            if ack(&mut connection, stream, &self.config.group, &ids)? < 1000 {
                break;
            }
        }
        self.partition(index, connection, None, position)
    }
}

/// `id` packed, or an error naming it when it does not fit.
fn packed(stream: &str, id: &str) -> Result<u64> {
    pack_id(id).ok_or_else(|| {
        Error::External(format!(
            "stream {stream}: entry ID {id} is beyond what keyflow can keep as a read \
             position (milliseconds below 2^42, sequence below 2^22)"
        ))
    })
}

/// Where `group` stands in `stream`: the last entry it delivered.
fn group_position(connection: &mut RedisConnection, stream: &str, group: &str) -> Result<u64> {
    let mut info = redis::pipe();
    info.cmd("XINFO").arg("GROUPS").arg(stream);
    let (groups,): (Vec<std::collections::HashMap<String, redis::Value>>,) =
        connection.run(&info)?;
    for g in groups {
        let name: Option<String> = g.get("name").and_then(|v| redis::from_redis_value(v).ok());
        if name.as_deref() == Some(group) {
            let id: Option<String> = g
                .get("last-delivered-id")
                .and_then(|v| redis::from_redis_value(v).ok());
            return packed(stream, id.as_deref().unwrap_or("0-0"));
        }
    }
    Err(Error::External(format!(
        "stream {stream}: the group {group} is missing"
    )))
}

/// Acknowledges `ids` (packed) in `stream`; returns how many it sent.
fn ack(connection: &mut RedisConnection, stream: &str, group: &str, ids: &[u64]) -> Result<usize> {
    for chunk in ids.chunks(1000) {
        let mut pipe = redis::pipe();
        pipe.cmd("XACK").arg(stream).arg(group);
        for &id in chunk {
            pipe.arg(unpack_id(id));
        }
        pipe.ignore();
        connection.run::<()>(&pipe)?;
    }
    Ok(ids.len())
}

type Entries = Vec<(String, Vec<(String, Vec<String>)>)>;

struct StreamPartition<T> {
    connection: RedisConnection,
    stream: String,
    group: String,
    parse: ParseEntry<T>,
    /// For a bounded read: the last entry at start, packed (`None`: the
    /// stream was empty).
    end: Option<Option<u64>>,
    /// While re-reading what the group delivered earlier: from after this.
    pending_from: Option<String>,
    delivered: Arc<Mutex<Delivered>>,
    read: u64,
    /// The last entry read, packed: the read position.
    last: u64,
}

impl<T> StreamPartition<T> {
    fn note(&self, ids: Vec<u64>) {
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
        let resent = self.connection.resent();
        let (reply,): (Option<Entries>,) = self.connection.run(&read)?;
        if self.pending_from.is_none() && self.connection.resent() != resent {
            // A `>` read sent again after a lost connection: the server may
            // have delivered entries to the first one and lost them with
            // the connection. They are in this consumer's pending list,
            // before what the second read returned (pending too): read the
            // list from the last entry handed out instead, in order.
            self.pending_from = Some(unpack_id(self.last));
            return Ok(PollStatus::Ready);
        }
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
            let packed = packed(&self.stream, &id)?;
            if let Some(Some(end)) = self.end {
                if packed > end {
                    // Past the bounded read's end: left for a later run.
                    reached_end = true;
                    continue;
                }
                reached_end |= packed == end;
            }
            self.read += 1;
            self.last = packed;
            let fields: Vec<(String, String)> = flat
                .chunks(2)
                .filter(|kv| kv.len() == 2)
                .map(|kv| (kv[0].clone(), kv[1].clone()))
                .collect();
            match (self.parse)(&fields) {
                Ok((ts, item)) => batch.push(ts, item),
                Err(reason) => batch.bad(format!("{} entry {id}", self.stream), reason),
            }
            ids.push(packed);
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

    fn position(&self) -> Option<u64> {
        Some(self.last)
    }

    fn committed(&mut self, position: u64) -> Result<()> {
        let done: Vec<u64> = {
            let mut d = self.delivered.lock().unwrap_or_else(|p| p.into_inner());
            match d.ids.iter_mut().find(|(s, _)| *s == self.stream) {
                Some((_, list)) => {
                    let n = list.partition_point(|&id| id <= position);
                    list.drain(..n).collect()
                }
                None => Vec::new(),
            }
        };
        ack(&mut self.connection, &self.stream, &self.group, &done)?;
        Ok(())
    }
}
