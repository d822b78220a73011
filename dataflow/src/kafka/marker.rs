//! What the transactional sink keeps in Kafka itself: the marker topic, and
//! the tags on its records that let a restart see which of them a
//! `read_committed` consumer already receives.
//!
//! Each transaction ends with a marker under the transactional id: the
//! newest epoch whose results it commits, and for each partition of the
//! results topic the offset just past the sink's records so far. A restart
//! reads the newest marker, then the results topic from those offsets: the
//! records found there with the sink's tag came from a transaction the crash
//! cut short. Apache Kafka hides such records (the restart's fencing aborts
//! it), and the sink writes them again; a broker that still shows aborted
//! records to `read_committed` consumers gets only those it lacks.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::{Offset, TopicPartitionList};

use super::{client_config, kafka_error, ReadToEnd};
use crate::error::{Error, Result};
use crate::time::EventTime;

/// The header on each record of a transaction: `{id} {epoch} {index}`.
pub(super) const TAG: &str = "keyflow-batch";

/// A committed transaction's marker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Marker {
    /// Results below this epoch are in the topic.
    pub epoch: EventTime,
    /// By partition, the offset just past the sink's committed records.
    pub ends: BTreeMap<i32, i64>,
}

impl Marker {
    /// `{epoch}` or `{epoch} {partition}:{offset},...`.
    pub fn parse(text: &str) -> Option<Marker> {
        let mut words = text.split_whitespace();
        let epoch = words.next()?.parse().ok()?;
        let mut ends = BTreeMap::new();
        if let Some(list) = words.next() {
            for pair in list.split(',') {
                let (p, o) = pair.split_once(':')?;
                ends.insert(p.parse().ok()?, o.parse().ok()?);
            }
        }
        words.next().is_none().then_some(Marker { epoch, ends })
    }

    pub fn encode(&self) -> String {
        let ends: Vec<String> = self.ends.iter().map(|(p, o)| format!("{p}:{o}")).collect();
        format!("{} {}", self.epoch, ends.join(","))
    }
}

/// Makes the marker topic when it is missing: one partition, compacted (a
/// value per transactional id is all that matters), replicated like the
/// cluster allows.
pub(super) fn ensure_topic(brokers: &str, topic: &str, timeout: Duration) -> Result<()> {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    let admin: AdminClient<DefaultClientContext> = client_config(brokers, timeout)
        .create()
        .map_err(|e| kafka_error(brokers, "cannot create an admin client", e))?;
    let metadata = admin
        .inner()
        .fetch_metadata(None, timeout)
        .map_err(|e| kafka_error(brokers, "no metadata", e))?;
    if metadata
        .topics()
        .iter()
        .any(|t| t.name() == topic && t.error().is_none())
    {
        return Ok(());
    }
    let replicas = metadata.brokers().len().clamp(1, 3) as i32;
    let new =
        NewTopic::new(topic, 1, TopicReplication::Fixed(replicas)).set("cleanup.policy", "compact");
    let options = AdminOptions::new().operation_timeout(Some(timeout));
    let results = futures_executor::block_on(admin.create_topics([&new], &options))
        .map_err(|e| kafka_error(brokers, &format!("cannot create topic {topic}"), e))?;
    for result in results {
        match result {
            Ok(_) => {}
            Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                return Err(kafka_error(
                    brokers,
                    &format!("cannot create topic {name}"),
                    code,
                ))
            }
        }
    }
    Ok(())
}

/// Two views of a topic: `reader` (`read_committed`) reads it, `probe`
/// (`read_uncommitted`) lists how far it is written.
pub(super) struct Reader<'a> {
    pub reader: &'a BaseConsumer<ReadToEnd>,
    pub probe: &'a BaseConsumer<ReadToEnd>,
    pub brokers: &'a str,
    pub timeout: Duration,
}

impl Reader<'_> {
    /// The offset past the last record of each partition now.
    pub fn ends(&self, topic: &str, partitions: usize) -> Result<BTreeMap<i32, i64>> {
        (0..partitions as i32)
            .map(|p| {
                let (_, high) = self
                    .probe
                    .fetch_watermarks(topic, p, self.timeout)
                    .map_err(|e| kafka_error(self.brokers, &format!("no offsets of {topic}"), e))?;
                Ok((p, high))
            })
            .collect()
    }

    /// Reads `topic` from `starts` to the end of each partition, giving
    /// each record to `each`. It first waits (up to the timeout) for the
    /// last stable offset to reach what is written: a transaction still
    /// open there may be the one whose outcome matters.
    fn read(
        &self,
        topic: &str,
        starts: &[(i32, Offset)],
        mut each: impl FnMut(&BorrowedMessage<'_>) -> Result<()>,
    ) -> Result<()> {
        let deadline = Instant::now() + self.timeout;
        let fail = |e| kafka_error(self.brokers, &format!("cannot read {topic}"), e);
        for &(p, _) in starts {
            let (_, written) = self
                .probe
                .fetch_watermarks(topic, p, self.timeout)
                .map_err(fail)?;
            loop {
                let (_, stable) = self
                    .reader
                    .fetch_watermarks(topic, p, self.timeout)
                    .map_err(fail)?;
                if stable >= written {
                    break;
                }
                if Instant::now() > deadline {
                    tracing::warn!(
                        "kafka {}: {topic}/{p} has an open transaction below offset \
                         {written}; reading what is committed",
                        self.brokers
                    );
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let mut list = TopicPartitionList::new();
        for &(p, offset) in starts {
            list.add_partition_offset(topic, p, offset).map_err(fail)?;
        }
        self.reader.assign(&list).map_err(fail)?;
        let mut open: HashSet<i32> = starts.iter().map(|&(p, _)| p).collect();
        while !open.is_empty() {
            match self.reader.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => each(&m)?,
                Some(Err(rdkafka::error::KafkaError::PartitionEOF(p))) => {
                    open.remove(&p);
                }
                Some(Err(e)) => return Err(fail(e)),
                None if Instant::now() > deadline => {
                    return Err(Error::External(format!(
                        "kafka {}: {topic} gave no end within {}",
                        self.brokers,
                        humantime::format_duration(self.timeout)
                    )))
                }
                None => {}
            }
        }
        Ok(())
    }

    /// The newest marker of `id` in the marker topic.
    pub fn marker(&self, topic: &str, id: &str) -> Result<Option<Marker>> {
        let mut marker = None;
        self.read(topic, &[(0, Offset::Beginning)], |m| {
            if m.key() == Some(id.as_bytes()) {
                let text = String::from_utf8_lossy(m.payload().unwrap_or_default());
                marker = Some(Marker::parse(&text).ok_or_else(|| {
                    Error::External(format!(
                        "kafka {}: bad marker `{text}` in {topic}",
                        self.brokers
                    ))
                })?);
            }
            Ok(())
        })?;
        Ok(marker)
    }

    /// The (epoch, index) tags of `id`'s records in `topic` from `from`
    /// (by partition; the start of a partition it lacks) on, that a
    /// `read_committed` consumer receives.
    pub fn tagged(
        &self,
        topic: &str,
        partitions: usize,
        id: &str,
        from: &BTreeMap<i32, i64>,
    ) -> Result<HashSet<(EventTime, u32)>> {
        let starts: Vec<(i32, Offset)> = (0..partitions as i32)
            .map(|p| {
                (
                    p,
                    from.get(&p)
                        .map_or(Offset::Beginning, |&o| Offset::Offset(o)),
                )
            })
            .collect();
        let mut seen = HashSet::new();
        self.read(topic, &starts, |m| {
            let tag = m
                .headers()
                .and_then(|h| h.iter().find(|h| h.key == TAG).and_then(|h| h.value));
            if let Some(tag) = tag.and_then(|t| std::str::from_utf8(t).ok()) {
                if let Some(found) = parse_tag(tag, id) {
                    seen.insert(found);
                }
            }
            Ok(())
        })?;
        Ok(seen)
    }
}

/// The tag of record `index` of the batch below `epoch`.
pub(super) fn tag(id: &str, epoch: EventTime, index: u32) -> String {
    format!("{id} {epoch} {index}")
}

/// The (epoch, index) of a tag written under `id`.
fn parse_tag(tag: &str, id: &str) -> Option<(EventTime, u32)> {
    let (epoch, index) = tag.strip_prefix(id)?.strip_prefix(' ')?.split_once(' ')?;
    Some((epoch.parse().ok()?, index.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_and_tags_read_back() {
        let marker = Marker {
            epoch: 120_000,
            ends: [(0, 7), (2, 40)].into(),
        };
        assert_eq!(Marker::parse(&marker.encode()), Some(marker));
        let bare = Marker::parse("60000").unwrap();
        assert_eq!((bare.epoch, bare.ends.len()), (60_000, 0));
        assert_eq!(Marker::parse("60000 0:x"), None);
        assert_eq!(Marker::parse(""), None);
        assert_eq!(
            parse_tag(&tag("job-1", 60_000, 3), "job-1"),
            Some((60_000, 3))
        );
        // Another id's tag, even one the id is a prefix of, is not ours.
        assert_eq!(parse_tag(&tag("job-12", 60_000, 3), "job-1"), None);
    }
}
