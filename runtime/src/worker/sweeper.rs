//! The worker's share of the queue's sweep ([`crate::queue::Queue::sweep`]):
//! at start (so jobs enqueued under an older Spool's keys run after an
//! upgrade) and every [`SWEEP_EVERY`] after, one worker of the fleet finds
//! work whose announcement was lost.

use crate::queue::Queue;
use std::time::Duration;

/// How often some worker of the fleet sweeps (each takes a lock for it).
pub const SWEEP_EVERY: Duration = Duration::from_secs(10);

/// Start the worker's sweeps.
pub(super) fn spawn(queue: &Queue, worker: &str, backoff: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(sweep_loop(queue.clone(), worker.to_string(), backoff))
}

async fn sweep_loop(queue: Queue, worker: String, backoff: Duration) {
    let mut every = tokio::time::interval(SWEEP_EVERY);
    let mut failing = false;
    loop {
        every.tick().await;
        match queue.sweep(&worker, SWEEP_EVERY, backoff).await {
            Ok(swept) => {
                if failing {
                    tracing::warn!("sweeping the queue works again");
                }
                failing = false;
                if let Some(swept) = swept {
                    tracing::debug!(?swept, "swept the queue");
                }
            }
            // Said once per failing streak: Redis being away is reported
            // by the claim loop too.
            Err(e) if !failing => {
                failing = true;
                tracing::warn!("sweeping the queue: {e}");
            }
            Err(e) => tracing::debug!("sweeping the queue: {e}"),
        }
        // Quiet tenants' counts of successes (queue/fold.rs): at most once
        // an hour in the fleet, under a lock of its own (after the sweep:
        // the first, at start, finds work an older Spool left).
        match queue.fold_counts(&worker).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(successes = n, "folded quiet tenants' listed successes"),
            Err(e) => tracing::debug!("folding quiet tenants' listed successes: {e}"),
        }
    }
}
