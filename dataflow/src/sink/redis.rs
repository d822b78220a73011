//! A Redis sink: each record becomes string values under keys the job
//! chooses, set with a TTL, so that nothing in Redis grows without bound
//! and a rerun (after a restore) writes the same values again.

use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::sink::Sink;
use crate::time::EventTime;

/// Where and how a [`RedisSink`] writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisConfig {
    /// `redis://HOST:PORT/DB`.
    pub url: String,
    /// Every key starts with `{prefix}:`.
    pub prefix: String,
    /// Every value expires after this long; `None` keeps it.
    pub ttl: Option<Duration>,
    /// How long to keep retrying a write while the server cannot be
    /// reached, with back-off, before the job fails.
    pub retry_for: Duration,
}

impl RedisConfig {
    /// A configuration for `url` with prefix `keyflow`, a 2-hour TTL and a
    /// minute of retries; the URL is checked.
    ///
    /// ```
    /// use keyflow_dataflow::sink::RedisConfig;
    /// assert!(RedisConfig::new("redis://127.0.0.1:6379/0").is_ok());
    /// assert!(RedisConfig::new("http://x").is_err());
    /// ```
    pub fn new(url: &str) -> Result<Self> {
        redis::Client::open(url).map_err(|e| Error::Config(format!("--redis {url}: {e}")))?;
        Ok(RedisConfig {
            url: url.to_string(),
            prefix: "keyflow".to_string(),
            ttl: Some(Duration::from_secs(2 * 3600)),
            retry_for: Duration::from_secs(60),
        })
    }

    /// The full key for `parts`: `{prefix}:{parts joined by :}`.
    pub fn key(&self, parts: &[&str]) -> String {
        let mut key = self.prefix.clone();
        for p in parts {
            key.push(':');
            key.push_str(p);
        }
        key
    }
}

/// One connection that reconnects, with back-off, when the server goes
/// away, for up to the configured time.
pub struct RedisConnection {
    config: RedisConfig,
    client: redis::Client,
    connection: Option<redis::Connection>,
    /// Pipelines sent again after a connection error, in all.
    resent: u64,
}

impl RedisConnection {
    /// Opens a client for `config` (connecting lazily).
    pub fn new(config: RedisConfig) -> Result<Self> {
        let client = redis::Client::open(config.url.as_str())
            .map_err(|e| Error::Config(format!("--redis {}: {e}", config.url)))?;
        Ok(RedisConnection {
            config,
            client,
            connection: None,
            resent: 0,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &RedisConfig {
        &self.config
    }

    /// How many times [`RedisConnection::run`] has sent a pipeline again
    /// after a connection error. A caller whose command is not idempotent
    /// (`XREADGROUP >`, which the server may have carried out before the
    /// connection went) compares it before and after.
    pub fn resent(&self) -> u64 {
        self.resent
    }

    /// Runs `pipeline`, reconnecting and retrying on connection errors;
    /// a command error (the server refused what was sent) is not retried.
    pub fn run<T: redis::FromRedisValue>(&mut self, pipeline: &redis::Pipeline) -> Result<T> {
        let start = Instant::now();
        let mut pause = Duration::from_millis(50);
        loop {
            let outcome = match self.connection.as_mut() {
                Some(c) => pipeline.query::<T>(c),
                None => match self
                    .client
                    .get_connection_with_timeout(Duration::from_secs(5))
                {
                    Ok(c) => {
                        self.connection = Some(c);
                        continue;
                    }
                    Err(e) => Err(e),
                },
            };
            match outcome {
                Ok(value) => return Ok(value),
                Err(e) if is_transient(&e) && start.elapsed() < self.config.retry_for => {
                    if self.connection.take().is_some() || pause == Duration::from_millis(50) {
                        tracing::warn!("redis {}: {e}; retrying", self.config.url);
                    }
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_secs(2));
                    self.resent += 1;
                }
                Err(e) => {
                    self.connection = None;
                    return Err(Error::External(format!(
                        "redis {}: {e}{}",
                        self.config.url,
                        if is_transient(&e) {
                            format!(
                                " (gave up after retrying for {})",
                                humantime::format_duration(self.config.retry_for)
                            )
                        } else {
                            String::new()
                        }
                    )));
                }
            }
        }
    }
}

fn is_transient(e: &redis::RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_refusal()
        || e.is_connection_dropped()
        || e.is_timeout()
        || matches!(
            e.kind(),
            redis::ErrorKind::TryAgain | redis::ErrorKind::BusyLoadingError
        )
}

/// What a record becomes in Redis: `(key parts, value)` pairs, each set
/// under `{prefix}:{parts}` with the TTL, in order.
pub type RedisEntries<T> = dyn Fn(EventTime, &T) -> Vec<(Vec<String>, String)> + Send;

/// A [`Sink`] that sets each record's entries (see [`RedisEntries`]) in one
/// pipeline per event time, retrying with back-off while the server is
/// unreachable. Writes are idempotent, so the default commit point (none)
/// suffices for checkpoints: a restored run rewrites the same values.
///
/// ```no_run
/// use keyflow_dataflow::sink::{RedisConfig, RedisSink};
/// let config = RedisConfig::new("redis://127.0.0.1:6379/0").unwrap();
/// let sink = RedisSink::new(config, |t, count: &u64| {
///     vec![(vec!["count".to_string(), t.to_string()], count.to_string())]
/// });
/// ```
pub struct RedisSink<T> {
    connection: RedisConnection,
    entries: Box<RedisEntries<T>>,
}

impl<T> RedisSink<T> {
    /// A sink writing `entries` of each record under `config`.
    pub fn new(
        config: RedisConfig,
        entries: impl Fn(EventTime, &T) -> Vec<(Vec<String>, String)> + Send + 'static,
    ) -> Result<Self> {
        Ok(RedisSink {
            connection: RedisConnection::new(config)?,
            entries: Box::new(entries),
        })
    }
}

impl<T: 'static> Sink<T> for RedisSink<T> {
    fn write(&mut self, _time: EventTime, records: &[(EventTime, T)]) -> Result<()> {
        let config = self.connection.config().clone();
        let mut pipeline = redis::pipe();
        let mut any = false;
        for (ts, record) in records {
            for (parts, value) in (self.entries)(*ts, record) {
                let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
                let key = config.key(&parts);
                match config.ttl {
                    Some(ttl) => pipeline
                        .cmd("SET")
                        .arg(key)
                        .arg(value)
                        .arg("PX")
                        .arg(ttl.as_millis().max(1) as u64)
                        .ignore(),
                    None => pipeline.cmd("SET").arg(key).arg(value).ignore(),
                };
                any = true;
            }
        }
        if any {
            self.connection.run::<()>(&pipeline)?;
        }
        Ok(())
    }
}
