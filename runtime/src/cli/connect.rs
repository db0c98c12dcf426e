//! Options every queue command shares (`--redis`, `--prefix`, TTLs) and the
//! small async runtime the commands run on.

use crate::config::parse_duration;
use crate::queue::{Durability, Queue, QueueConfig, QueueError};
use std::path::Path;
use std::time::Duration;

/// Where `spool dev` writes the URL of its private Redis, so that other
/// commands run in the same directory find it.
pub(crate) const DEV_URL_FILE: &str = ".spool/redis.url";

#[derive(Debug, Clone, clap::Args)]
pub(crate) struct RedisArgs {
    /// Redis URL [default: $SPOOL_REDIS, else the Redis of a `spool dev`
    /// running in this directory, else redis://127.0.0.1:6379]. For a
    /// Redis Cluster, any node's URL, or several:
    /// redis://[:PASSWORD@]HOST:PORT,HOST:PORT,…
    #[arg(long, env = "SPOOL_REDIS", global = true)]
    pub redis: Option<String>,

    /// First part of every Redis key.
    #[arg(long, env = "SPOOL_PREFIX", default_value = "spool", global = true, value_parser = parse_prefix)]
    pub prefix: String,

    /// Queue name: the Redis Cluster hash tag of every key of the queue
    /// (`PREFIX:{QUEUE}:…`). Workers serve one queue.
    #[arg(long, env = "SPOOL_QUEUE", default_value = "default", global = true, value_parser = parse_queue)]
    pub queue: String,

    /// How long finished job records are kept.
    #[arg(long, env = "SPOOL_RECORD_TTL", default_value = "24h", value_parser = parse_duration, global = true)]
    pub record_ttl: Duration,

    /// How long dead-lettered job records are kept.
    #[arg(long, env = "SPOOL_DEAD_TTL", default_value = "7d", value_parser = parse_duration, global = true)]
    pub dead_ttl: Duration,

    /// Most dead letters kept; the oldest are dropped beyond it.
    #[arg(long, env = "SPOOL_DEAD_CAP", default_value_t = 10_000, global = true)]
    pub dead_cap: u64,

    /// Succeeded job records kept per tenant (the newest; older ones are
    /// deleted in batches once a tenth more, at most 100, have piled up),
    /// or `all` to keep every one for --record-ttl.
    #[arg(long, env = "SPOOL_KEEP_SUCCEEDED", default_value = "1000", value_parser = parse_keep, global = true)]
    pub keep_succeeded: Keep,

    /// When an enqueue or a finished job counts as done: `master` (once
    /// the master has it; a failover can lose it) or `replicated` (once a
    /// replica has it too, `WAIT`; a failover to it keeps it).
    #[arg(long, env = "SPOOL_DURABILITY", default_value = "master", value_parser = parse_durability, global = true)]
    pub durability: Durability,
}

fn parse_durability(text: &str) -> Result<Durability, String> {
    match text {
        "master" => Ok(Durability::Master),
        "replicated" => Ok(Durability::Replicated(1)),
        _ => Err(format!("expected `master` or `replicated`; got `{text}`")),
    }
}

/// `--keep-succeeded`: a count of at least 1, or every record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Keep(pub Option<u64>);

fn parse_keep(text: &str) -> Result<Keep, String> {
    if text == "all" {
        return Ok(Keep(None));
    }
    match text.parse::<u64>() {
        Ok(n) if n >= 1 => Ok(Keep(Some(n))),
        _ => Err(format!(
            "expected a number of records of at least 1, or `all`; got `{text}`"
        )),
    }
}

impl RedisArgs {
    /// The queue settings these options name.
    pub fn queue_config(&self) -> QueueConfig {
        // SPOOL_REDIS= (set but empty) means "not set".
        let given = self.redis.clone().filter(|u| !u.trim().is_empty());
        let url = given.unwrap_or_else(|| {
            std::fs::read_to_string(Path::new(DEV_URL_FILE))
                .map(|s| s.trim().to_string())
                .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_string())
        });
        QueueConfig {
            prefix: self.prefix.clone(),
            queue: self.queue.clone(),
            record_ttl: self.record_ttl,
            dead_ttl: self.dead_ttl,
            dead_cap: self.dead_cap,
            keep_succeeded: self.keep_succeeded.0,
            durability: self.durability,
            ..QueueConfig::new(url)
        }
    }

    /// Connect to the queue.
    pub async fn connect(&self) -> Result<Queue, QueueError> {
        Queue::connect(self.queue_config()).await
    }
}

fn parse_queue(text: &str) -> Result<String, String> {
    crate::queue::check_queue(text).map(|()| text.to_string())
}

fn parse_prefix(text: &str) -> Result<String, String> {
    crate::queue::check_prefix(text).map(|()| text.to_string())
}

/// Blocking connections to the queue's Redis, for commands that read or
/// write outside the queue (cache, tenants); a bad URL is a usage error,
/// said here.
pub(crate) fn sync_redis(config: &QueueConfig) -> Result<crate::redis::SyncRedis, u8> {
    crate::redis::SyncRedis::new(&config.url).map_err(|e| {
        eprintln!("spool: {e}");
        super::exit::USAGE
    })
}

/// A single-threaded runtime: the commands do little but wait on Redis.
pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("building the tokio runtime")
}

/// A future that resolves on SIGINT (Ctrl-C) or SIGTERM, caught from this
/// call on: a signal that arrives while the worker is still starting
/// (compiling plugins can take seconds) is kept and stops it as soon as it
/// runs, instead of killing the process by default action and leaving,
/// say, `spool dev`'s Redis behind. Poll it on `rt`.
pub(crate) fn stop_signal(rt: &tokio::runtime::Runtime) -> impl Future<Output = ()> + use<> {
    use tokio::signal::unix::{Signal, SignalKind, signal};
    let _inside = rt.enter();
    let (int, term) = (
        signal(SignalKind::interrupt()).ok(),
        signal(SignalKind::terminate()).ok(),
    );
    async fn received(signal: Option<Signal>) {
        match signal {
            Some(mut s) => {
                s.recv().await;
            }
            None => std::future::pending().await,
        }
    }
    async move {
        tokio::select! {
            () = received(int) => {}
            () = received(term) => {}
        }
    }
}

/// Print an error with its retry hint, return the matching exit code.
pub(crate) fn fail(error: &QueueError) -> u8 {
    eprintln!("spool: {error}");
    if error.is_retryable() {
        super::exit::RETRYABLE
    } else {
        super::exit::FAILED
    }
}

#[cfg(test)]
mod keep_tests {
    use super::*;

    #[test]
    fn keep_succeeded_is_a_count_of_at_least_one_or_all() {
        assert_eq!(parse_keep("all"), Ok(Keep(None)));
        assert_eq!(parse_keep("1000"), Ok(Keep(Some(1000))));
        for bad in ["0", "-1", "many", ""] {
            let e = parse_keep(bad).unwrap_err();
            assert!(e.contains(&format!("`{bad}`")), "{e}");
        }
    }
}
