//! The job threads: each takes claimed jobs from the local queue, runs them
//! through the [`Executor`] and sends the outcome to the acker. A panic in
//! the host is caught and turned into a retryable outcome, so it neither
//! strands the job (its lease would be renewed forever) nor kills the
//! thread.

use super::budget::Budget;
use super::execute::Executor;
use super::spares::{Poll, Spares, Woken};
use super::watchdog::{Slot, Watch};
use super::{Shared, WorkerConfig};
use crate::queue::{ClaimedJob, DEFAULT_MAX_ATTEMPTS, ErrorRecord, Field, Next, Outcome};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// What every job thread needs; kept so that the watchdog can start a
/// thread in place of a wedged one.
pub(super) struct Pool {
    pub executor: Arc<Executor>,
    pub jobs: crossbeam_channel::Receiver<ClaimedJob>,
    pub outcomes: mpsc::UnboundedSender<Outcome>,
    pub stopping: Arc<AtomicBool>,
    pub budget: Arc<Budget>,
    pub watch: Arc<Watch>,
    /// A job that waited this long in the local queue is handed back
    /// rather than run (see [`super::budget::stale_after`]).
    pub stale_after: Duration,
    /// Threads started so far, for their names.
    pub started: AtomicUsize,
    /// Which of the threads take jobs now.
    pub spares: Arc<Spares>,
}

impl Pool {
    /// Start `config.concurrency` job threads taking jobs from `jobs` and
    /// sending outcomes to `outcomes`.
    pub fn start(
        config: &WorkerConfig,
        executor: Arc<Executor>,
        jobs: &crossbeam_channel::Receiver<ClaimedJob>,
        outcomes: &mpsc::UnboundedSender<Outcome>,
        shared: &Shared,
    ) -> Arc<Pool> {
        let pool = Arc::new(Pool {
            executor,
            jobs: jobs.clone(),
            outcomes: outcomes.clone(),
            stopping: Arc::clone(&shared.stopping),
            budget: Arc::clone(&shared.budget),
            watch: Arc::clone(&shared.watch),
            stale_after: super::budget::stale_after(config.prefetch_horizon),
            started: AtomicUsize::new(0),
            spares: Spares::new(),
        });
        for _ in 0..config.concurrency.max(1) {
            pool.start_thread(pool.watch.slot());
        }
        pool
    }

    /// The next job for the thread of `seat`: taken from the queue while
    /// it takes jobs, else after it rests ([`Spares`]). `None`: the queue
    /// closed.
    fn next(&self, seat: &super::spares::Seat) -> Option<ClaimedJob> {
        loop {
            if seat.taking() {
                return self.jobs.recv().ok();
            }
            let poll = || match self.jobs.try_recv() {
                Ok(job) => Poll::Job(job),
                Err(crossbeam_channel::TryRecvError::Empty) => Poll::Empty,
                Err(crossbeam_channel::TryRecvError::Disconnected) => Poll::Closed,
            };
            match self.spares.rest(seat, poll) {
                Woken::Called => {}
                Woken::Job(job) => return Some(job),
                Woken::Closed => return None,
            }
        }
    }

    /// Start a job thread on `slot` (counted as serving already). It ends
    /// when the job channel closes, or when it comes back from a job the
    /// watchdog gave up on and the pool has its threads. A thread the
    /// system refuses is logged and uncounted: the worker runs short
    /// rather than stop.
    pub fn start_thread(self: &Arc<Self>, slot: Arc<Slot>) {
        let pool = Arc::clone(self);
        let n = self.started.fetch_add(1, Ordering::Relaxed);
        if n == 1 {
            // A second thread (a `--concurrency` over 1, or one in a
            // wedged thread's place): resting threads need calling back.
            let weak = Arc::downgrade(self);
            self.spares
                .start_caller(move || weak.upgrade().map(|pool| pool.jobs.len()));
        }
        let mine = Arc::clone(&slot);
        let started = std::thread::Builder::new()
            .name(format!("spool-job-{n}"))
            .spawn(move || {
                let mut serving = true;
                let seat = pool.spares.seat();
                while let Some(job) = pool.next(&seat) {
                    pool.budget.taken(job.payload.len());
                    // Stopping, or claimed ahead long ago (the jobs turned
                    // out slower than the ones before): back to the queue,
                    // attempt unspent, where an idle worker can take it.
                    let stale = job.received.elapsed() > pool.stale_after;
                    let outcome = if stale || pool.stopping.load(Ordering::Acquire) {
                        hand_back(&job.tenant, &job.id, &job.token, job.wait)
                    } else {
                        slot.begin(&job);
                        let started = Instant::now();
                        pool.budget.begin(n);
                        pool.spares.begin(&seat, started);
                        let outcome = run_caught(&pool.executor, job, &slot);
                        let took = started.elapsed();
                        pool.budget.end(n, took);
                        pool.spares.end(&seat, took);
                        outcome
                    };
                    serving = pool.watch.end(&slot);
                    if pool.outcomes.send(outcome).is_err() || !serving {
                        break;
                    }
                }
                pool.spares.leave(&seat);
                pool.watch.remove(&slot, serving);
            });
        if let Err(e) = started {
            tracing::error!("could not start a job thread: {e}; this worker runs short");
            self.watch.remove(&mine, true);
        }
    }
}

/// Run one job; a panic in the host becomes a retryable outcome.
fn run_caught(executor: &Executor, job: ClaimedJob, slot: &Slot) -> Outcome {
    let (tenant, id, token, wait) = (
        job.tenant.clone(),
        job.id.clone(),
        job.token.clone(),
        job.wait,
    );
    let (plugin, this) = (job.plugin.clone(), job.attempt);
    let most = job
        .max_attempts
        .as_deref()
        .and_then(|m| m.parse().ok())
        .unwrap_or(DEFAULT_MAX_ATTEMPTS);
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| executor.execute(job, slot)))
        .unwrap_or_else(|panic| {
            // Within the tenant's max-attempts quota, as any retry.
            let most = executor.attempts_within_quota(plugin.as_deref(), most);
            host_panic((tenant, id, token), wait, Attempts { this, most }, &panic)
        })
}

/// The attempt a job is on, and how many it may have.
#[derive(Clone, Copy)]
struct Attempts {
    this: u32,
    most: u32,
}

/// Give a job back without spending its attempt (shutdown).
pub(super) fn hand_back(tenant: &str, id: &str, token: &str, wait: bool) -> Outcome {
    let next = Next::Requeue {
        delay: Duration::ZERO,
    };
    Outcome::new(tenant, id, token, wait, next)
}

/// The outcome of an attempt during which the host itself panicked: retried
/// like any host failure, within the job's attempts (a job that panics the
/// host every time must not be retried forever).
fn host_panic(
    (tenant, id, token): (String, String, String),
    wait: bool,
    attempts: Attempts,
    panic: &Box<dyn std::any::Any + Send>,
) -> Outcome {
    let message = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("unknown panic");
    tracing::error!(job = %id, "the host panicked running a job: {message}");
    let message = format!("the host panicked running this job: {message}");
    let Attempts { this, most } = attempts;
    let mut error = ErrorRecord::new("host", message, true);
    error.attempt = Some(this);
    let next = if this < most {
        Next::Retry {
            delay: Duration::from_secs(1),
        }
    } else {
        error.exhausted = Some(format!("gave up after {this} of {most} attempts"));
        Next::Dead
    };
    let mut outcome = Outcome::new(tenant, id, token, wait, next);
    outcome.record.error = Field::Set(error);
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    fn after_panic(this: u32, most: u32) -> Outcome {
        let panic: Box<dyn std::any::Any + Send> = Box::new("boom");
        host_panic(
            ("acme".into(), "j".into(), "t".into()),
            false,
            Attempts { this, most },
            &panic,
        )
    }

    #[test]
    fn a_host_panic_is_retried_within_the_jobs_attempts_only() {
        let retried = after_panic(1, 3);
        assert_eq!(
            retried.next,
            Next::Retry {
                delay: Duration::from_secs(1)
            }
        );
        let dead = after_panic(3, 3);
        assert_eq!(dead.next, Next::Dead);
        let Field::Set(error) = &dead.record.error else {
            panic!("no error recorded");
        };
        assert_eq!(
            (
                error.kind.as_str(),
                error.attempt,
                error.exhausted.as_deref()
            ),
            ("host", Some(3), Some("gave up after 3 of 3 attempts"))
        );
        assert!(error.message.ends_with("boom"), "{}", error.message);
    }
}
