//! The key prefix of a bench on someone's `--redis` server: one of its
//! own, so that the run's keys meet no other keys there, and as long as
//! the default `spool`, so that they cost Redis what a deployment's do.
//!
//! Why the length matters: every command on a job hashes and compares
//! its key, and the record stores nothing else per job as often. A
//! 38-byte prefix (`spool-bench-ULID`, used before 2026-12-04) cost Redis
//! ~1 µs per job more than a deployment's 5 bytes, and the record 32
//! bytes (docs/performance.md, "The bench's keys on a `--redis` server").
//! Five bytes leave room for 32⁴ prefixes, not for a ULID: so the bench
//! checks that the keys its counts depend on do not exist yet, and draws
//! again if they do.

use crate::queue::{Queue, QueueConfig, QueueError};
use crate::redis::Batch;

/// Draws before the bench gives up (each is a one-in-a-million chance
/// of meeting another bench's keys on a busy server).
const TRIES: usize = 20;

/// `b` and four random characters of a ULID's random part: five bytes,
/// as `spool`.
fn candidate() -> String {
    let random = ulid::Ulid::new().to_string().to_ascii_lowercase();
    format!("b{}", &random[random.len() - 4..])
}

/// The keys of `config` (its prefix the one drawn) whose presence would
/// spoil a run: the counters the bench waits on, the lists it fills and
/// drains.
fn keys_that_matter(config: &QueueConfig, tenants: &[String]) -> Vec<String> {
    let queue = config.key_prefix();
    let mut keys = vec![format!("{queue}:seq"), format!("{queue}:ready")];
    for tenant in tenants {
        let t = crate::queue::tenant_keys(&config.prefix, &config.queue, tenant);
        for suffix in ["stats", "kept", "ready:normal", "leases", "delayed"] {
            keys.push(format!("{t}:{suffix}"));
        }
    }
    keys
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
        let keys = keys_that_matter(config, tenants);
        let mut batch = Batch::new();
        for key in &keys {
            batch.add(key, redis::cmd("EXISTS").arg(key).clone());
        }
        let found = batch
            .run(queue.redis())
            .await
            .map_err(|e| queue.redis().error("look for the bench's keys", e))?;
        match keys
            .iter()
            .zip(&found)
            .find(|(_, v)| **v != redis::Value::Int(0))
        {
            None => return Ok(queue),
            Some((key, _)) => last = key.clone(),
        }
    }
    Err(QueueError::BadConfig {
        reason: format!(
            "{TRIES} random key prefixes for the bench were all in use on {} (the last: key {last} exists); \
             delete the keys of earlier benches (`redis-cli --scan --pattern 'b????:*'`) or give the bench a server of its own",
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
                .all(|p| p.len() == "spool".len() && p.starts_with('b'))
        );
        assert!(drawn.len() > 40, "{drawn:?}");
    }

    #[test]
    fn the_keys_looked_at_are_the_queues_and_each_tenants() {
        let mut config = QueueConfig::new("redis://127.0.0.1:1");
        config.prefix = "b1234".into();
        let keys = keys_that_matter(&config, &["t0".into(), "t1".into()]);
        let queue = &config.queue;
        assert!(keys.contains(&format!("b1234:{{{queue}}}:seq")), "{keys:?}");
        assert!(
            keys.contains(&format!("b1234:{{{queue}/t1}}:stats")),
            "{keys:?}"
        );
        assert_eq!(keys.len(), 2 + 2 * 5);
    }
}
