//! The key prefix of a bench on someone's `--redis` server: one of its
//! own, so that the run's keys meet no other keys there, and as long as
//! the default `spool`, so that they cost Redis what a deployment's do.
//!
//! Why the length matters: every command on a job hashes and compares
//! its key, and the record stores nothing else per job as often. A
//! 38-byte prefix (`spool-bench-ULID`, used before 2026-12-04) cost Redis
//! ~1.3 µs per job more than a deployment's 5 bytes, and the record 32
//! bytes (docs/performance.md, "The bench's keys on a `--redis` server").
//! Five bytes leave room for 32⁴ prefixes, not for a ULID: so the bench
//! checks that the keys its counts and its workers depend on do not exist
//! yet, takes the prefix with a `SET NX` (two benches started together
//! cannot both get it), and draws again otherwise. The prefix starts with
//! `~`, which no word does, so a deployment's own prefix (`batch`,
//! `bench`) is not among the draws.

use crate::queue::{Queue, QueueConfig, QueueError};
use crate::redis::Batch;

/// Draws before the bench gives up (each is a one-in-a-million chance
/// of meeting another bench's keys on a busy server).
const TRIES: usize = 20;

/// How long the key that takes a prefix lives: a bench takes minutes; a
/// crashed one's prefix is free again after a day (unless its other keys
/// are still there, which the checks find).
const TAKEN_S: u64 = 86_400;

/// `~` and four random characters of a ULID's random part: five bytes,
/// as `spool`.
fn candidate() -> String {
    let random = ulid::Ulid::new().to_string().to_ascii_lowercase();
    format!("~{}", &random[random.len() - 4..])
}

/// The keys of `config` (its prefix the one drawn) whose presence would
/// spoil a run: the queue's (its workers wait and register there), and
/// each tenant's counters and lists, which the bench reads and drains.
fn keys_that_matter(config: &QueueConfig, tenants: &[String]) -> Vec<String> {
    let queue = config.key_prefix();
    let mut keys: Vec<String> = ["seq", "ready", "timers", "wake", "idle"]
        .iter()
        .map(|k| format!("{queue}:{k}"))
        .collect();
    for tenant in tenants {
        let t = crate::queue::tenant_keys(&config.prefix, &config.queue, tenant);
        for suffix in [
            "stats",
            "recent",
            "kept",
            "ready:normal",
            "leased",
            "leases",
            "delayed",
        ] {
            keys.push(format!("{t}:{suffix}"));
        }
    }
    keys
}

/// The key that says a bench holds `prefix`.
fn taken_key(prefix: &str) -> String {
    format!("{prefix}:bench")
}

/// The first of `keys` that exists, if any.
async fn first_existing(queue: &Queue, keys: &[String]) -> Result<Option<String>, QueueError> {
    let mut batch = Batch::new();
    for key in keys {
        batch.add(key, redis::cmd("EXISTS").arg(key).clone());
    }
    let found = batch
        .run(queue.redis())
        .await
        .map_err(|e| queue.redis().error("look for the bench's keys", e))?;
    Ok(keys
        .iter()
        .zip(&found)
        .find(|(_, v)| **v != redis::Value::Int(0))
        .map(|(key, _)| key.clone()))
}

/// Take `prefix` for this run: false if another bench holds it.
async fn take(queue: &Queue, prefix: &str) -> Result<bool, QueueError> {
    let key = taken_key(prefix);
    let mut batch = Batch::new();
    let set = redis::cmd("SET")
        .arg(&key)
        .arg(ulid::Ulid::new().to_string())
        .arg("NX")
        .arg("EX")
        .arg(TAKEN_S)
        .clone();
    batch.add(&key, set);
    let reply = batch
        .run(queue.redis())
        .await
        .map_err(|e| queue.redis().error("take the bench's key prefix", e))?;
    Ok(!matches!(reply.first(), None | Some(redis::Value::Nil)))
}

/// A connection to `config`'s server under a prefix of the bench's own
/// (set in `config`), under which none of `tenants`' keys exist yet.
pub(super) async fn connect_unused(
    config: &mut QueueConfig,
    tenants: &[String],
) -> Result<Queue, QueueError> {
    let mut last = String::new();
    for _ in 0..TRIES {
        config.prefix = candidate();
        let queue = Queue::connect(config.clone()).await?;
        match first_existing(&queue, &keys_that_matter(config, tenants)).await? {
            None if take(&queue, &config.prefix).await? => return Ok(queue),
            None => last = taken_key(&config.prefix),
            Some(key) => last = key,
        }
    }
    Err(QueueError::BadConfig {
        reason: format!(
            "{TRIES} random key prefixes for the bench were all in use on {} (the last: key {last} exists); \
             give the bench a server of its own, or an empty database (--redis redis://HOST:PORT/N)",
            crate::redis::redact(&config.url)
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_is_as_long_as_the_default_and_differs_between_runs() {
        let drawn: std::collections::HashSet<String> = (0..50).map(|_| candidate()).collect();
        assert!(
            drawn
                .iter()
                .all(|p| p.len() == "spool".len() && p.starts_with('~'))
        );
        assert!(drawn.iter().all(|p| crate::queue::check_prefix(p).is_ok()));
        assert!(drawn.len() > 40, "{drawn:?}");
    }

    #[test]
    fn the_keys_looked_at_are_the_queues_and_each_tenants() {
        let mut config = QueueConfig::new("redis://127.0.0.1:1");
        config.prefix = "~1234".into();
        let keys = keys_that_matter(&config, &["t0".into(), "t1".into()]);
        let queue = &config.queue;
        assert!(
            keys.contains(&format!("~1234:{{{queue}}}:idle")),
            "{keys:?}"
        );
        assert!(
            keys.contains(&format!("~1234:{{{queue}/t1}}:stats")),
            "{keys:?}"
        );
        assert_eq!(keys.len(), 5 + 2 * 7);
    }
}
