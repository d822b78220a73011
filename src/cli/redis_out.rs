//! `--redis`: the bundled jobs' results in Redis, one value per minute or
//! hour plus the latest, each with a TTL, so nothing grows without bound.

use std::cell::Cell;
use std::time::Duration;

use clap::Args;
use keyflow::dataflow::sink::{RedisConfig, RedisSink};
use keyflow::jobs::anomaly::AnomalyHour;
use keyflow::jobs::trending::TrendingMinute;

use super::run_args::parse_duration;

/// Where results go in Redis.
#[derive(Debug, Clone, Args)]
pub struct RedisArgs {
    /// Also write each result to Redis, `redis://HOST:PORT/DB`: trending
    /// minutes under `{prefix}:trending:minute:{t}` and
    /// `{prefix}:trending:latest`, anomaly hours under
    /// `{prefix}:anomaly:{day}:{hour}` and `{prefix}:anomaly:latest`.
    #[arg(long, value_name = "URL")]
    pub redis: Option<String>,
    /// The first part of every key.
    #[arg(long, default_value = "keyflow", value_name = "PREFIX")]
    pub redis_prefix: String,
    /// How long each value lives in Redis.
    #[arg(long, default_value = "2h", value_parser = parse_duration, value_name = "DURATION")]
    pub redis_ttl: Duration,
}

impl RedisArgs {
    /// The sink configuration, checked; `None` without `--redis`.
    pub fn config(&self) -> anyhow::Result<Option<RedisConfig>> {
        let Some(url) = &self.redis else {
            return Ok(None);
        };
        if self.redis_prefix.is_empty()
            || self
                .redis_prefix
                .chars()
                .any(|c| c.is_whitespace() || c.is_control())
        {
            anyhow::bail!(
                "--redis-prefix `{}` must be non-empty, without spaces",
                self.redis_prefix
            );
        }
        if self.redis_ttl.is_zero() {
            anyhow::bail!("--redis-ttl 0s: values would expire at once");
        }
        let mut config = RedisConfig::new(url)?;
        config.prefix = self.redis_prefix.clone();
        config.ttl = Some(self.redis_ttl);
        Ok(Some(config))
    }
}

fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

/// Each minute's line (as `--out` writes it) under its minute, and as the
/// latest while it is the newest minute (a late update of an older minute
/// leaves the latest alone).
pub fn trending_sink(config: RedisConfig) -> keyflow::dataflow::Result<RedisSink<TrendingMinute>> {
    let newest = Cell::new(None::<u64>);
    RedisSink::new(config, move |_, minute: &TrendingMinute| {
        let line = json(minute);
        let mut entries = vec![(
            vec!["trending".into(), "minute".into(), minute.t.to_string()],
            line.clone(),
        )];
        if newest.get().is_none_or(|t| minute.t >= t) {
            newest.set(Some(minute.t));
            entries.push((vec!["trending".into(), "latest".into()], line));
        }
        entries
    })
}

/// Each scored hour's line under its day and hour, and as the latest.
pub fn anomaly_sink(config: RedisConfig) -> keyflow::dataflow::Result<RedisSink<AnomalyHour>> {
    RedisSink::new(config, move |_, hour: &AnomalyHour| {
        let line = json(hour);
        vec![
            (
                vec!["anomaly".into(), hour.day.clone(), hour.hour.to_string()],
                line.clone(),
            ),
            (vec!["anomaly".into(), "latest".into()], line),
        ]
    })
}
