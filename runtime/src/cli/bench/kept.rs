//! Each tenant's kept list (`T:recent`) filled to its cap before the run, so
//! that the run's acks trim the oldest succeeded records (in batches of a
//! tenth of the cap) as a deployment's acks do once a tenant has run
//! `--keep-succeeded` jobs
//! (docs/performance.md, "Keeping records bounded"). Without it the
//! bench measured a setting no deployment runs by default: every record
//! kept, no trim. The run's own records stay readable for the report: the
//! cap is the run's jobs, and the trims take the placeholders pushed here
//! (one-field succeeded records, deleted as a trim deletes a real one).

use super::BenchArgs;
use crate::queue::{Queue, QueueError};
use crate::redis::Batch;

/// How long a placeholder lives if the run stops before trimming it.
const PLACEHOLDER_TTL_S: u64 = 3600;

/// How long the filled list lives: as an ack sets it, the records' TTL and
/// ack.lua's `KEPT_MARGIN_S` (thirty days). A shorter one would have the
/// run's workers fold it into the counters at once (queue/fold.rs folds a
/// list within 29 days of its expiry), and the run's acks trim nothing.
const LIST_TTL_S: u64 = PLACEHOLDER_TTL_S + 30 * 86_400;

/// Placeholders pushed per pipeline.
const CHUNK: u64 = 1000;

/// The run's cap on succeeded records kept per tenant: a tenant's share of
/// the run's jobs (round-robin), so the report can read every job's
/// record back. Also how many placeholders each tenant's list starts with,
/// each of which its counter counts as a success (the list is the count
/// of what it holds: ack.lua, keep_newest).
pub(super) fn cap(args: &BenchArgs) -> u64 {
    let tenants = args.tenants.max(1) as usize;
    args.jobs.max(1).div_ceil(tenants) as u64
}

/// Push `count` placeholder ids, each with its record, onto each of
/// `tenants`' kept lists.
pub(super) async fn fill(queue: &Queue, tenants: &[String], count: u64) -> Result<(), QueueError> {
    for tenant in tenants {
        let prefix = queue.tenant_keys(tenant);
        let list = format!("{prefix}:recent");
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
                redis::cmd("EXPIRE").arg(&list).arg(LIST_TTL_S).clone(),
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

/// Delete each of `tenants`' lists once the run is over, on someone's
/// `--redis` server: they live thirty days past their records (they hold
/// counts, queue/fold.rs), and no worker under the run's prefix will fold
/// them. (Best effort: a failure is logged.)
pub(super) async fn drop_lists(queue: &Queue, tenants: &[String]) {
    let mut batch = Batch::new();
    for tenant in tenants {
        let list = format!("{}:recent", queue.tenant_keys(tenant));
        batch.add(&list, redis::cmd("UNLINK").arg(&list).clone());
    }
    if let Err(e) = batch.run(queue.redis()).await {
        tracing::warn!("bench: deleting the run's lists of succeeded ids: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_filled_list_lives_as_an_acks_does() {
        let margin = crate::queue::kept_margin_s();
        assert_eq!(LIST_TTL_S, PLACEHOLDER_TTL_S + margin);
    }
}
