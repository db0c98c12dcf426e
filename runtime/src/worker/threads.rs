//! The job threads: each takes claimed jobs from the local queue, runs them
//! through the [`Executor`] and sends the outcome to the acker. A panic in
//! the host is caught and turned into a retryable outcome, so it neither
//! strands the job (its lease would be renewed forever) nor kills the
//! thread.

use super::execute::Executor;
use super::{Shared, WorkerConfig};
use crate::queue::{ClaimedJob, ErrorRecord, Field, Next, Outcome};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Start `config.concurrency` job threads.
pub(super) fn spawn(
    config: &WorkerConfig,
    executor: &Arc<Executor>,
    jobs: &crossbeam_channel::Receiver<ClaimedJob>,
    outcomes: &mpsc::UnboundedSender<Outcome>,
    shared: &Shared,
) {
    for n in 0..config.concurrency.max(1) {
        let executor = Arc::clone(executor);
        let jobs = jobs.clone();
        let outcomes = outcomes.clone();
        let stopping = Arc::clone(&shared.stopping);
        let budget = Arc::clone(&shared.budget);
        std::thread::Builder::new()
            .name(format!("spool-job-{n}"))
            .spawn(move || {
                for job in jobs {
                    let outcome = if stopping.load(Ordering::Acquire) {
                        hand_back(&job.id, &job.token, job.wait)
                    } else {
                        let started = Instant::now();
                        let outcome = run_caught(&executor, job);
                        budget.record(started.elapsed());
                        outcome
                    };
                    if outcomes.send(outcome).is_err() {
                        break;
                    }
                }
            })
            .expect("spawning a job thread");
    }
}

/// Run one job; a panic in the host becomes a retryable outcome.
fn run_caught(executor: &Executor, job: ClaimedJob) -> Outcome {
    let (id, token, wait) = (job.id.clone(), job.token.clone(), job.wait);
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| executor.execute(job)))
        .unwrap_or_else(|panic| host_panic(id, token, wait, &panic))
}

/// Give a job back without spending its attempt (shutdown).
pub(super) fn hand_back(id: &str, token: &str, wait: bool) -> Outcome {
    let next = Next::Requeue {
        delay: Duration::ZERO,
    };
    Outcome::new(id, token, wait, next)
}

/// The outcome of an attempt during which the host itself panicked: retried
/// like any host failure.
fn host_panic(
    id: String,
    token: String,
    wait: bool,
    panic: &Box<dyn std::any::Any + Send>,
) -> Outcome {
    let message = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("unknown panic");
    tracing::error!(job = %id, "the host panicked running a job: {message}");
    let message = format!("the host panicked running this job: {message}");
    let next = Next::Retry {
        delay: Duration::from_secs(1),
    };
    let mut outcome = Outcome::new(id, token, wait, next);
    outcome.record.error = Field::Set(ErrorRecord::new("host", message, true));
    outcome
}
