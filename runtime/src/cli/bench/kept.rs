//! Each tenant's kept list (`T:kept`) filled to its cap before the run, so
//! that the run's acks trim the oldest succeeded records (in batches of a
//! tenth of the cap) as a deployment's acks do once a tenant has run
//! `--keep-succeeded` jobs
//! (docs/performance.md, "Keeping records bounded"). Without it the
//! bench measured a setting no deployment runs by default: every record
//! kept, no trim. The run's own records stay readable for the report: the
//! cap is the run's jobs, and the trims take the placeholders pushed here
//! (one-field succeeded records, deleted as a trim deletes a real one).

use crate::queue::{Queue, QueueError};
use crate::redis::Batch;

/// How long a placeholder lives if the run stops before trimming it.
const PLACEHOLDER_TTL_S: u64 = 3600;

/// Placeholders pushed per pipeline.
const CHUNK: u64 = 1000;

/// Push `count` placeholder ids, each with its record, onto each of
/// `tenants`' kept lists.
pub(super) async fn fill(queue: &Queue, tenants: &[String], count: u64) -> Result<(), QueueError> {
    for tenant in tenants {
        let prefix = queue.tenant_keys(tenant);
        let list = format!("{prefix}:kept");
        let mut first = 0;
        while first < count {
            let end = (first + CHUNK).min(count);
            let ids: Vec<String> = (first..end).map(|k| format!("bench-kept-{k}")).collect();
            let mut batch = Batch::new();
            for id in &ids {
                let key = format!("{prefix}:job:{id}");
                let record = redis::cmd("HSET")
                    .arg(&key)
                    .arg("status")
                    .arg("succeeded")
                    .clone();
                batch.add(&key, record);
                batch.add(
                    &key,
                    redis::cmd("EXPIRE")
                        .arg(&key)
                        .arg(PLACEHOLDER_TTL_S)
                        .clone(),
                );
            }
            batch.add(&list, redis::cmd("LPUSH").arg(&list).arg(&ids).clone());
            batch.add(
                &list,
                redis::cmd("EXPIRE")
                    .arg(&list)
                    .arg(PLACEHOLDER_TTL_S)
                    .clone(),
            );
            batch
                .run(queue.redis())
                .await
                .map_err(|e| queue.redis().error("fill the kept lists", e))?;
            first = end;
        }
    }
    Ok(())
}
