//! The worker's share of the queue's upkeep: at start (so jobs enqueued
//! under an older Spool's keys run after an upgrade) and every
//! [`SWEEP_EVERY`] after, one worker of the fleet sweeps
//! ([`crate::queue::Queue::sweep`]: work whose announcement was lost);
//! one deletes the lists of idle waiters gone
//! ([`crate::queue::Queue::reap_inboxes`]); and once an hour one folds
//! quiet tenants' listed successes into their counters
//! ([`crate::queue::Queue::fold_counts`]). Each takes a lock of its own,
//! so that workers of an older version, which know only the sweep, never
//! hold up the others.

use crate::queue::{Queue, QueueError};
use std::time::Duration;

/// How often some worker of the fleet sweeps (each takes a lock for it).
pub const SWEEP_EVERY: Duration = Duration::from_secs(10);

/// Start the worker's sweeps.
pub(super) fn spawn(queue: &Queue, worker: &str, backoff: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(sweep_loop(queue.clone(), worker.to_string(), backoff))
}

/// One upkeep step's failures, said once per failing streak (Redis being
/// away is reported by the claim loop too), and its recovery.
struct Streak {
    what: &'static str,
    failing: bool,
}

impl Streak {
    fn new(what: &'static str) -> Streak {
        Streak {
            what,
            failing: false,
        }
    }

    fn heard<T>(&mut self, result: Result<T, QueueError>) -> Option<T> {
        match result {
            Ok(v) => {
                if self.failing {
                    tracing::warn!("{} works again", self.what);
                }
                self.failing = false;
                Some(v)
            }
            Err(e) if !self.failing => {
                self.failing = true;
                tracing::warn!("{}: {e}", self.what);
                None
            }
            Err(e) => {
                tracing::debug!("{}: {e}", self.what);
                None
            }
        }
    }
}

async fn sweep_loop(queue: Queue, worker: String, backoff: Duration) {
    let mut every = tokio::time::interval(SWEEP_EVERY);
    let mut sweeps = Streak::new("sweeping the queue");
    let mut reaps = Streak::new("deleting the lists of idle waiters gone");
    let mut folds = Streak::new("folding quiet tenants' listed successes");
    loop {
        every.tick().await;
        if let Some(Some(swept)) = sweeps.heard(queue.sweep(&worker, SWEEP_EVERY, backoff).await) {
            tracing::debug!(?swept, "swept the queue");
        }
        if let Some(n) = reaps.heard(queue.reap_inboxes(&worker, SWEEP_EVERY).await)
            && n > 0
        {
            tracing::debug!(lists = n, "deleted the lists of idle waiters gone");
        }
        // (After the sweep: the first, at start, finds work an older
        // Spool left.)
        if let Some(n) = folds.heard(queue.fold_counts(&worker).await)
            && n > 0
        {
            tracing::debug!(successes = n, "folded quiet tenants' listed successes");
        }
    }
}
