//! A graceful stop: no new claims; claimed jobs no thread has started go
//! back at once; running jobs get the grace period, then go back too; the
//! acker gets a last moment to write every outcome; then the tasks stop.

use super::threads::hand_back;
use super::{Shared, Tasks, WorkerConfig};
use crate::cache::ResultCache;
use crate::locks::lock;
use crate::queue::{ClaimedJob, Outcome};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

/// Stop: tell the job threads (`shared.stopping`) and the tasks (`stop`),
/// then drain.
pub(super) async fn drain(
    config: &WorkerConfig,
    stop: &watch::Sender<bool>,
    tasks: Tasks,
    unstarted: crossbeam_channel::Receiver<ClaimedJob>,
    outcomes: mpsc::UnboundedSender<Outcome>,
    shared: &Shared,
    cache: Option<Arc<ResultCache>>,
) {
    // Draining: no longer ready for new work.
    config.metrics.set_ready(false);
    tracing::info!(worker = %config.worker_id, "stopping: no new claims; letting running jobs finish");
    shared.stopping.store(true, Ordering::Release);
    let _ = stop.send(true);
    let _ = tasks.claimer.await;
    while let Ok(job) = unstarted.try_recv() {
        let _ = outcomes.send(hand_back(&job.tenant, &job.id, &job.token, job.wait));
    }
    drop(unstarted);
    // Wait for running jobs (and the hand-back of unstarted ones) to be acked.
    if !acked_within(shared, config.grace).await {
        let left: Vec<((String, String), String)> = lock(&shared.in_flight)
            .iter()
            .map(|(key, token)| (key.clone(), token.clone()))
            .collect();
        if !left.is_empty() {
            tracing::warn!(
                jobs = left.len(),
                "grace period over; handing back jobs that are still running"
            );
            for ((tenant, id), token) in &left {
                let _ = outcomes.send(hand_back(tenant, id, token, false));
            }
            acked_within(shared, Duration::from_secs(10)).await;
        }
    }
    drop(outcomes);
    if let Some(fleet) = tasks.fleet {
        // It withdraws this worker's report on its way out.
        let _ = tokio::time::timeout(Duration::from_secs(2), fleet).await;
    }
    tasks.watchdog.abort();
    tasks.sweeper.abort();
    tasks.heartbeat.abort();
    tasks.acker.abort();
    if let Some(counting) = tasks.counting {
        counting.abort();
    }
    if let Some(cache) = cache {
        let _ = tokio::task::spawn_blocking(move || cache.flush_counts()).await;
    }
    if let Some(rescan) = tasks.rescan {
        rescan.abort();
    }
}

/// Wait up to `limit` for every claimed job to be acked; whether they were.
async fn acked_within(shared: &Shared, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if lock(&shared.in_flight).is_empty() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
