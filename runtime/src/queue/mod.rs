//! The Redis job queue: keys, Lua scripts, and the operations on them —
//! enqueue, claim, ack, heartbeat, delay, dead letters, records. Knows
//! nothing of wasm.
//!
//! # Keys
//!
//! Every key starts with `PREFIX:{QUEUE}` (default `spool:{default}`): the
//! braces are a Redis Cluster hash tag, so each script's keys share one slot.
//!
//! | key | type | what |
//! |---|---|---|
//! | `…:job:ID` | hash | the envelope and the record of job ID |
//! | `…:ready:high` / `normal` / `low` | list | ids ready to run (LPUSH in, RPOP out) |
//! | `…:delayed` | zset | ids by due time (µs): `--delay`, `--at`, retry backoff |
//! | `…:leases` | zset | running ids by lease expiry (µs) |
//! | `…:dead` | zset | dead-letter ids by time of death, capped |
//! | `…:wake` | list | at most one token; idle workers block on it |
//! | `…:done:ID` | list | completion notice for `enqueue --wait` |
//! | `…:idem:KEY` | string | idempotency key → job id |
//! | `…:stats` | hash | counters: succeeded, dead, retried |
//!
//! # Delivery
//!
//! At least once. `claim.lua` pops ids, bumps each job's fencing `token` and
//! `attempt`, and records a lease; the worker renews leases with
//! `heartbeat.lua`; `ack.lua` applies an outcome only under the same token
//! while the job is still `running`. Any claim first requeues jobs whose
//! lease expired and promotes due delayed jobs, so no scheduler process is
//! needed and a killed worker's jobs run again once its leases lapse.

mod error;
mod model;
mod ops;
mod scripts;

pub use error::QueueError;
pub use model::{
    ClaimedJob, DEFAULT_MAX_ATTEMPTS, DEFAULT_TENANT, JobRecord, NewJob, Next, Outcome, PluginName,
    Priority, Status, now_us,
};
pub use ops::{Claim, DeadEntry, Enqueued, JobTimes, QueueStats};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use scripts::Scripts;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Settings shared by everything that talks to one queue.
#[derive(Debug, Clone)]
pub struct QueueConfig {
    /// Redis URL, e.g. `redis://127.0.0.1:6379`.
    pub url: String,
    /// First part of every key.
    pub prefix: String,
    /// Queue name: the hash tag of every key.
    pub queue: String,
    /// TTL of finished job records.
    pub record_ttl: Duration,
    /// TTL of dead-lettered job records.
    pub dead_ttl: Duration,
    /// Most dead letters kept; the oldest are dropped beyond it.
    pub dead_cap: u64,
}

impl QueueConfig {
    /// Defaults for `url`: prefix `spool`, queue `default`, records kept 24 h,
    /// dead letters 7 days and at most 10,000.
    pub fn new(url: impl Into<String>) -> Self {
        QueueConfig {
            url: url.into(),
            prefix: "spool".to_string(),
            queue: "default".to_string(),
            record_ttl: Duration::from_secs(24 * 3600),
            dead_ttl: Duration::from_secs(7 * 24 * 3600),
            dead_cap: 10_000,
        }
    }

    /// `PREFIX:{QUEUE}`, the start of every key of this queue.
    pub fn key_prefix(&self) -> String {
        format!("{}:{{{}}}", self.prefix, self.queue)
    }
}

/// A handle on one queue. Cheap to clone; clones share the connection.
#[derive(Clone)]
pub struct Queue {
    inner: Arc<Inner>,
    conn: ConnectionManager,
}

struct Inner {
    config: QueueConfig,
    client: redis::Client,
    keys: String,
    scripts: Scripts,
    round_trips: AtomicU64,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("url", &redact(&self.inner.config.url))
            .field("keys", &self.inner.keys)
            .finish()
    }
}

impl Queue {
    /// Connect. The connection reconnects by itself after Redis restarts;
    /// operations in between fail with [`QueueError::Unavailable`].
    pub async fn connect(config: QueueConfig) -> Result<Self, QueueError> {
        let (client, conn) = open(&config.url).await?;
        Ok(Queue {
            inner: Arc::new(Inner {
                keys: config.key_prefix(),
                config,
                client,
                scripts: Scripts::load(),
                round_trips: AtomicU64::new(0),
            }),
            conn,
        })
    }

    /// The settings this queue was opened with.
    pub fn config(&self) -> &QueueConfig {
        &self.inner.config
    }

    /// `PREFIX:{QUEUE}`.
    pub fn key_prefix(&self) -> &str {
        &self.inner.keys
    }

    /// Round trips to Redis made through this handle and its clones.
    pub fn round_trips(&self) -> u64 {
        self.inner.round_trips.load(Ordering::Relaxed)
    }

    /// A connection for blocking commands: no response timeout.
    pub(crate) async fn blocking_connection(&self) -> Result<ConnectionManager, QueueError> {
        let config = manager_config().set_response_timeout(None);
        ConnectionManager::new_with_config(self.inner.client.clone(), config)
            .await
            .map_err(|source| self.unavailable(source))
    }

    pub(crate) fn count_round_trip(&self) {
        self.inner.round_trips.fetch_add(1, Ordering::Relaxed);
    }

    /// Map a client error: connection trouble is retryable, the rest is not.
    pub(crate) fn error(&self, op: &'static str, source: redis::RedisError) -> QueueError {
        classify(&redact(&self.inner.config.url), op, source)
    }

    fn unavailable(&self, source: redis::RedisError) -> QueueError {
        QueueError::Unavailable {
            url: redact(&self.inner.config.url),
            source,
        }
    }
}

/// A client for `url` and a self-reconnecting connection to it.
pub(crate) async fn open(url: &str) -> Result<(redis::Client, ConnectionManager), QueueError> {
    let shown = redact(url);
    let client = redis::Client::open(url).map_err(|e| QueueError::BadUrl {
        url: shown.clone(),
        reason: e.to_string(),
    })?;
    let conn = ConnectionManager::new_with_config(client.clone(), manager_config())
        .await
        .map_err(|source| classify(&shown, "connect", source))?;
    Ok((client, conn))
}

/// A connection for blocking commands on `client`: no response timeout.
pub(crate) async fn open_blocking(
    client: &redis::Client,
    url: &str,
) -> Result<ConnectionManager, QueueError> {
    let config = manager_config().set_response_timeout(None);
    ConnectionManager::new_with_config(client.clone(), config)
        .await
        .map_err(|source| classify(&redact(url), "connect", source))
}

/// Connection trouble is retryable ([`QueueError::Unavailable`]); a wrong
/// password, a refused command or a bad reply is not.
pub(crate) fn classify(url: &str, op: &'static str, source: redis::RedisError) -> QueueError {
    let auth = source.kind() == redis::ErrorKind::AuthenticationFailed;
    if !auth
        && (source.is_io_error()
            || source.is_connection_dropped()
            || source.is_connection_refusal()
            || source.is_timeout())
    {
        QueueError::Unavailable {
            url: url.to_string(),
            source,
        }
    } else {
        QueueError::Redis {
            url: url.to_string(),
            op,
            source,
        }
    }
}

/// The URL with any password replaced by `***`, for messages and logs.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    match rest.split_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            format!("{scheme}://{user}:***@{host}")
        }
        None => url.to_string(),
    }
}

/// Short reconnect backoff (a worker retries on its own too) and a response
/// timeout long enough for a batch of large payloads.
fn manager_config() -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_number_of_retries(2)
        .set_min_delay(Duration::from_millis(50))
        .set_max_delay(Duration::from_secs(1))
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(Duration::from_secs(10)))
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(
            redact("redis://:hunter2@db:6379/0"),
            "redis://:***@db:6379/0"
        );
        assert_eq!(redact("rediss://app:hunter2@db"), "rediss://app:***@db");
        assert_eq!(redact("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
    }
}
