//! The worker's three Redis loops: claiming (with the idle wait on the wake
//! list and the recovery of lost claim replies), acking (batched, never
//! dropping an outcome Redis has not seen) and renewing leases.

use super::budget::Budget;
use super::{Counters, InFlight, lock};
use crate::queue::{ClaimedJob, Next, Outcome, Queue, QueueError};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

/// Logs an outage once when it starts and once when it ends.
#[derive(Default)]
struct Outage {
    since: Option<Instant>,
    delay: Duration,
}

impl Outage {
    fn failed(&mut self, what: &str, error: &QueueError) -> Duration {
        if self.since.is_none() {
            tracing::warn!("{what}: {error}");
            self.since = Some(Instant::now());
            self.delay = Duration::from_millis(50);
        } else {
            tracing::debug!("{what}: {error}");
            self.delay = (self.delay * 2).min(Duration::from_secs(2));
        }
        self.delay
    }

    fn ok(&mut self, what: &str) {
        if let Some(since) = self.since.take() {
            tracing::warn!(
                "{what}: redis is back after {:.1}s",
                since.elapsed().as_secs_f64()
            );
        }
    }
}

pub(super) async fn claim_loop(
    queue: Queue,
    config: super::WorkerConfig,
    budget: Arc<Budget>,
    in_flight: InFlight,
    jobs: crossbeam_channel::Sender<ClaimedJob>,
    mut stop: watch::Receiver<bool>,
) {
    let mut outage = Outage::default();
    let mut blocking = None;
    let mut lost_claim = false;
    let batch = config.batch.max(1);
    loop {
        if *stop.borrow() {
            return;
        }
        let held = lock(&in_flight).len();
        let limit = budget.limit();
        if held >= limit {
            tokio::select! {
                () = budget.freed.notified() => continue,
                _ = stop.changed() => return,
            }
        }
        let want = (limit - held).min(batch);
        if lost_claim {
            // The last claim failed: it may have been applied with its reply
            // lost. Hand back whatever it leased to us before claiming more.
            let known: Vec<String> = lock(&in_flight).keys().cloned().collect();
            match queue.recover(&config.worker_id, &known).await {
                Ok(released) => {
                    lost_claim = false;
                    if !released.is_empty() {
                        tracing::warn!(
                            jobs = released.len(),
                            "handed back jobs of a claim whose reply was lost"
                        );
                    }
                }
                Err(e) => {
                    let delay = outage.failed("recovering a lost claim", &e);
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        _ = stop.changed() => return,
                    }
                    continue;
                }
            }
        }
        match queue.claim(&config.worker_id, want, config.lease).await {
            Ok(claim) => {
                outage.ok("claim");
                let got = claim.jobs.len();
                for job in claim.jobs {
                    lock(&in_flight).insert(job.id.clone(), job.token.clone());
                    if jobs.send(job).is_err() {
                        return;
                    }
                }
                // Fewer than asked: every list was empty. Block until an
                // enqueue into an empty list pushes the wake token (or the
                // next delayed job is due, or a second passes, so that
                // expired leases are reaped).
                if got < want {
                    let timeout = claim
                        .next_due
                        .map_or(Duration::from_secs(1), |d| d.min(Duration::from_secs(1)))
                        .max(Duration::from_millis(1));
                    if blocking.is_none() {
                        blocking = queue.blocking_connection().await.ok();
                    }
                    let Some(conn) = blocking.as_mut() else {
                        tokio::time::sleep(timeout).await;
                        continue;
                    };
                    // Bounded even if the connection went half-open (no
                    // reply ever comes): then it is rebuilt.
                    let wait = tokio::time::timeout(
                        timeout + Duration::from_secs(2),
                        queue.wait_for_work(conn, timeout),
                    );
                    tokio::select! {
                        r = wait => match r {
                            Ok(Ok(())) => {}
                            // The claim that follows tells whether Redis is
                            // down; this connection is just rebuilt.
                            Ok(Err(e)) => {
                                tracing::debug!("waiting for work: {e}");
                                blocking = None;
                                tokio::time::sleep(Duration::from_millis(50)).await;
                            }
                            Err(_) => blocking = None,
                        },
                        _ = stop.changed() => return,
                    }
                }
            }
            Err(e) => {
                lost_claim = true;
                let delay = outage.failed("claiming jobs", &e);
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    _ = stop.changed() => return,
                }
            }
        }
    }
}

pub(super) async fn ack_loop(
    queue: Queue,
    batch: usize,
    mut outcomes: mpsc::UnboundedReceiver<Outcome>,
    budget: Arc<Budget>,
    in_flight: InFlight,
    counters: Arc<Counters>,
) {
    let mut outage = Outage::default();
    let mut pending = Vec::with_capacity(batch);
    while let Some(first) = outcomes.recv().await {
        pending.push(first);
        while pending.len() < batch {
            match outcomes.try_recv() {
                Ok(o) => pending.push(o),
                Err(_) => break,
            }
        }
        // Keep trying: an outcome is only dropped once Redis has seen it.
        // (If the lease lapses meanwhile, the ack is refused as stale and
        // the job's new attempt decides.)
        let applied = loop {
            match queue.ack(&pending).await {
                Ok(applied) => {
                    outage.ok("acking jobs");
                    break applied;
                }
                Err(e) if e.is_retryable() => {
                    let delay = outage.failed("acking jobs", &e);
                    tokio::time::sleep(delay).await;
                }
                // Redis refused the batch (a bad key, a script error): ack
                // one by one so that one bad job cannot wedge the worker. An
                // outcome Redis refuses alone is dropped; its lease lapses and
                // the job runs again.
                Err(e) => {
                    tracing::error!(
                        "acking {} jobs failed: {e}; acking them one by one",
                        pending.len()
                    );
                    break ack_one_by_one(&queue, &pending).await;
                }
            }
        };
        let mut flight = lock(&in_flight);
        for (outcome, applied) in pending.iter().zip(applied) {
            if flight.get(&outcome.id) == Some(&outcome.token) {
                flight.remove(&outcome.id);
            }
            let counter = if !applied {
                tracing::warn!(job = %outcome.id, "lease was lost before the ack; outcome discarded");
                &counters.stale
            } else {
                match outcome.next {
                    Next::Succeeded => &counters.succeeded,
                    Next::Retry { .. } => &counters.retried,
                    Next::Dead => &counters.dead,
                    Next::Requeue { .. } => &counters.handed_back,
                }
            };
            counter.fetch_add(1, Ordering::Relaxed);
        }
        drop(flight);
        budget.freed.notify_one();
        pending.clear();
    }
}

async fn ack_one_by_one(queue: &Queue, outcomes: &[Outcome]) -> Vec<bool> {
    let mut applied = Vec::with_capacity(outcomes.len());
    for outcome in outcomes {
        let mut delay = Duration::from_millis(50);
        let ok = loop {
            match queue.ack(std::slice::from_ref(outcome)).await {
                Ok(a) => break a.first().copied().unwrap_or(false),
                Err(e) if e.is_retryable() => {
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
                Err(e) => {
                    tracing::error!(job = %outcome.id, "outcome dropped: redis refused it: {e}");
                    break false;
                }
            }
        };
        applied.push(ok);
    }
    applied
}

pub(super) async fn heartbeat_loop(queue: Queue, lease: Duration, in_flight: InFlight) {
    let every = lease / 3;
    let mut outage = Outage::default();
    loop {
        // Keeps renewing during shutdown too, until the worker aborts it.
        tokio::time::sleep(every).await;
        let running: Vec<(String, String)> = lock(&in_flight)
            .iter()
            .map(|(id, token)| (id.clone(), token.clone()))
            .collect();
        for chunk in running.chunks(1000) {
            match queue.heartbeat(chunk, lease).await {
                Ok(renewed) => {
                    outage.ok("renewing leases");
                    for ((id, token), ok) in chunk.iter().zip(renewed) {
                        // Acked since the snapshot: not lost, just done.
                        if !ok && lock(&in_flight).get(id) == Some(token) {
                            tracing::warn!(job = %id, "lease lost; another attempt owns the job now");
                        }
                    }
                }
                Err(e) => {
                    outage.failed("renewing leases", &e);
                }
            }
        }
    }
}
