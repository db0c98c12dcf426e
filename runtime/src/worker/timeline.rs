//! Per-minute counters for the dashboard's charts
//! ([`crate::metrics::timeline`]): every [`EVERY`] the worker adds what its
//! jobs did since the last flush to the current minute's hash of each
//! tenant, in one pipeline.

use crate::ids::now_us;
use crate::metrics::Metrics;
use crate::metrics::timeline::{KEEP, Snapshot, delta, key, minute_of};
use crate::queue::Queue;
use std::sync::Arc;
use std::time::Duration;

/// How often counts reach Redis (what a stopping worker did in its last
/// period is not charted).
pub(crate) const EVERY: Duration = Duration::from_secs(5);

/// Flush until the worker aborts the task.
pub(super) async fn timeline_loop(queue: Queue, metrics: Arc<Metrics>) {
    let prefix = queue.config().prefix.clone();
    let mut flushed = Snapshot::default();
    loop {
        tokio::time::sleep(EVERY).await;
        let now = metrics.snapshot();
        let changes = delta(&flushed, &now);
        if changes.is_empty() {
            continue;
        }
        let minute = minute_of(now_us());
        // One pipeline per tenant's slot on a cluster.
        let mut batch = crate::redis::Batch::new();
        for ((tenant, plugin), counts) in &changes {
            let k = key(&prefix, tenant, minute);
            for (field, n) in counts.fields(plugin) {
                batch.add(&k, redis::cmd("HINCRBY").arg(&k).arg(field).arg(n).clone());
            }
            batch.add(&k, redis::cmd("EXPIRE").arg(&k).arg(KEEP.as_secs()).clone());
        }
        match batch.run(queue.redis()).await {
            // Only what reached Redis counts as flushed: after an outage the
            // next flush carries it (into a later minute).
            Ok(_) => flushed = now,
            Err(e) => tracing::debug!("per-minute counters not written: {e}"),
        }
    }
}
