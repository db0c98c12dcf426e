//! How many jobs a worker may hold at once — claimed and not yet acked: one
//! per job thread, plus as many as the threads get through within
//! a horizon (`--prefetch-horizon`, [`PREFETCH_HORIZON`] by default) at the
//! recent job duration (at most `--prefetch`).
//! Microsecond jobs are claimed hundreds ahead (fewer round trips); jobs of
//! seconds are not claimed ahead at all, so idle workers get them. A job
//! that has run 5 ms (a quarter of the horizon, if less) counts as the
//! average when it is longer: when slow jobs follow fast ones, the worker
//! stops claiming ahead 5 ms after the first one started, not only once
//! one has finished. (Not sooner: on a busy machine a fast job's thread
//! is often off its core for a few milliseconds, and counting those as
//! slow jobs cut the limit from hundreds to a dozen in one claim turn of
//! five of a drain: docs/performance.md, "Claiming further ahead, in
//! bigger claims".) What it claimed ahead before then and has not started
//! within [`stale_after`] goes back to the queue.

use crate::locks::lock;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// A running job longer than the average counts as the average once it
/// has run this long (or a quarter of the horizon, if less): long enough
/// that a fast job whose thread was briefly off its core does not count.
const SLOW_AFTER: Duration = Duration::from_millis(5);

/// How long a claimed job may wait in the worker's local queue before a
/// job thread hands it back instead of running it: a second, or fifty
/// horizons if longer. Jobs are claimed ahead only as far as the threads
/// get through within the horizon at the recent job duration, so a job
/// that waited fifty times that was claimed on a wrong estimate: the jobs
/// behind fast ones turned out slow. Handed back (no attempt spent), an
/// idle worker runs it, instead of it waiting here for this worker's
/// threads.
pub(super) fn stale_after(horizon: Duration) -> Duration {
    horizon.saturating_mul(50).max(Duration::from_secs(1))
}

/// How far ahead of its job threads a worker claims, in time, by default.
pub const PREFETCH_HORIZON: Duration = Duration::from_millis(20);

/// The most jobs a worker claims ahead of its job threads, by default.
/// Jobs of tens of microseconds need hundreds in hand: with fewer, the
/// threads run dry while a claim or an ack is on its way, and claims carry
/// a few jobs each. Drains of `hello` on 2026-12-03 (docs/performance.md,
/// "Claiming further ahead, in bigger claims"): 256 ~40k jobs/s, 1,024
/// with `--batch 256` ~46–48k; 2,048 no more. The horizon still bounds it
/// by time, so slower jobs are not hoarded; what a burst of slow jobs
/// right after fast ones can take is at most this many, and what it has
/// not started within [`stale_after`] goes back to the queue.
pub const DEFAULT_PREFETCH: usize = 1024;

/// The most jobs one claim asks for, by default (`--batch`; acks carry
/// at least 256 whatever it is). Claims of 256 rather than 64 left Redis
/// and the worker ~10% less work per job in the same drains; a claim of
/// 256 `hello` jobs holds Redis for about as long as an ack of 256 does.
pub const DEFAULT_BATCH: usize = 256;

/// How many jobs this worker may hold (claimed, not yet acked): one per job
/// thread plus what the threads get through within `horizon`.
#[derive(Debug)]
pub(super) struct Budget {
    pub concurrency: usize,
    /// Job threads serving now: `concurrency`, less wedged threads the
    /// watchdog could not replace. With none, nothing is claimed.
    pub serving: AtomicUsize,
    pub max_prefetch: usize,
    /// How far ahead in time the threads' work is claimed.
    pub horizon: Duration,
    /// Moving average of a job's duration (µs); 0 until the first job.
    pub avg_job_us: AtomicU64,
    /// Signalled when acks free room.
    pub freed: Notify,
    /// When each running job started, by job thread. (A thread the
    /// watchdog gave up on stays here until it comes back: while it is
    /// wedged, nothing is claimed ahead.)
    pub running: Mutex<Vec<(usize, Instant)>>,
    /// Payload bytes of the jobs claimed and not yet taken by a job thread
    /// (see [`over_bytes`]).
    pub waiting_bytes: AtomicUsize,
}

impl Budget {
    pub fn limit(&self) -> usize {
        // Until a job has run (average 0) nothing is claimed ahead; a job
        // running longer than the average, and than 5 ms (a quarter of
        // the horizon, if less), stands for it.
        let mut avg = self.avg_job_us.load(Ordering::Relaxed);
        if avg > 0 {
            let slow = (self.horizon / 4).min(SLOW_AFTER);
            let slowest = lock(&self.running).iter().map(|(_, at)| at.elapsed()).max();
            let slowest = slowest.filter(|d| *d >= slow);
            let slowest = slowest.map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
            avg = avg.max(slowest);
        }
        let threads = self.concurrency.min(self.serving.load(Ordering::Relaxed));
        if threads == 0 {
            return 0;
        }
        let horizon = u64::try_from(self.horizon.as_micros()).unwrap_or(u64::MAX);
        let ahead = horizon
            .saturating_mul(threads as u64)
            .checked_div(avg)
            .map_or(0, |n| usize::try_from(n).unwrap_or(usize::MAX));
        threads + ahead.min(self.max_prefetch)
    }

    /// `n` job threads serve now; room may have opened.
    pub fn set_serving(&self, n: usize) {
        self.serving.store(n, Ordering::Relaxed);
        self.freed.notify_one();
    }

    /// Job thread `thread` started a job.
    pub fn begin(&self, thread: usize) {
        lock(&self.running).push((thread, Instant::now()));
    }

    /// Job thread `thread` finished its job, which took `took`.
    pub fn end(&self, thread: usize, took: Duration) {
        lock(&self.running).retain(|(t, _)| *t != thread);
        self.record(took);
    }

    /// A job of `bytes` of payload went into the local queue.
    pub fn queued(&self, bytes: usize) {
        self.waiting_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// A job thread took a job of `bytes` of payload off the local queue.
    pub fn taken(&self, bytes: usize) {
        // (Saturating: a count off by a job must not wrap and stop claims.)
        let _ = self
            .waiting_bytes
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |w| {
                Some(w.saturating_sub(bytes))
            });
    }

    pub fn record(&self, took: Duration) {
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX).max(1);
        let old = self.avg_job_us.load(Ordering::Relaxed);
        let new = if old == 0 { us } else { (old * 7 + us) / 8 };
        self.avg_job_us.store(new, Ordering::Relaxed);
    }
}

/// Whether a claim now is worth its round trip: there is `room` for a
/// full one (`batch`, or a quarter of `limit` when that is less), or fewer
/// than that many jobs are `waiting` for a job thread, so that the
/// threads could run dry before the next chance.
///
/// Why: acks free room a few jobs at a time, and claiming whatever room
/// there was made most claims carry a handful of jobs, each paying a
/// script call's fixed cost in Redis and a round trip in the worker (see
/// docs/performance.md, "Claiming further ahead, in bigger claims").
pub(super) fn worth_claiming(room: usize, waiting: usize, limit: usize, batch: usize) -> bool {
    let full = batch.min(limit / 4).max(1);
    room > 0 && (room >= full || waiting < full)
}

/// Whether the jobs waiting for a job thread already hold `claim_bytes`
/// of payloads or more (0: no limit), so that no claim is made until the
/// threads take some. Claims stop at their byte budget, but a worker
/// claiming ahead could still stack up `--prefetch` jobs of megabytes,
/// one claim after another. With nothing waiting a claim is always made:
/// the threads never run dry for it.
pub(super) fn over_bytes(waiting: usize, waiting_bytes: usize, claim_bytes: usize) -> bool {
    claim_bytes > 0 && waiting > 0 && waiting_bytes >= claim_bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The limit of [`budget`]`(took)`.
    fn limit_after(took: Option<Duration>) -> usize {
        budget(took).limit()
    }

    /// A budget of `--concurrency 2 --prefetch 64` whose first finished job
    /// took `took` (`None`: no job has finished yet).
    fn budget(took: Option<Duration>) -> Budget {
        let budget = Budget {
            concurrency: 2,
            serving: AtomicUsize::new(2),
            max_prefetch: 64,
            horizon: PREFETCH_HORIZON,
            avg_job_us: AtomicU64::new(0),
            freed: Notify::new(),
            running: Mutex::default(),
            waiting_bytes: AtomicUsize::new(0),
        };
        if let Some(took) = took {
            budget.record(took);
        }
        budget
    }

    #[test]
    fn claims_ahead_what_the_threads_finish_in_the_horizon() {
        assert_eq!(PREFETCH_HORIZON, Duration::from_millis(20));
        // No duration known yet: one job per thread, nothing ahead.
        assert_eq!(limit_after(None), 2);
        // 1 µs jobs: 2 × 20 ms / 1 µs = 40 000 ahead, capped at --prefetch.
        assert_eq!(limit_after(Some(Duration::from_micros(1))), 2 + 64);
        // Sub-microsecond jobs count as 1 µs, not as "unknown".
        assert_eq!(limit_after(Some(Duration::from_nanos(10))), 2 + 64);
        // 5 ms jobs: 2 × 20 / 5 = 8 ahead.
        assert_eq!(limit_after(Some(Duration::from_millis(5))), 2 + 8);
        // 1 s jobs are not hoarded: 2 × 20 ms / 1 s rounds down to 0 ahead.
        assert_eq!(limit_after(Some(Duration::from_secs(1))), 2);
    }

    #[test]
    fn a_longer_horizon_claims_long_jobs_ahead_too() {
        let budget = Budget {
            concurrency: 1,
            serving: AtomicUsize::new(1),
            max_prefetch: 3,
            horizon: Duration::from_secs(60),
            avg_job_us: AtomicU64::new(0),
            freed: Notify::new(),
            running: Mutex::default(),
            waiting_bytes: AtomicUsize::new(0),
        };
        budget.record(Duration::from_secs(25));
        assert_eq!(budget.limit(), 1 + 2, "60 s / 25 s = 2 ahead");
        budget.avg_job_us.store(1_000, Ordering::Relaxed);
        assert_eq!(budget.limit(), 1 + 3, "capped at --prefetch");
    }

    #[test]
    fn a_job_running_longer_than_the_average_stops_claiming_ahead() {
        let budget = Budget {
            concurrency: 2,
            serving: AtomicUsize::new(2),
            max_prefetch: 256,
            horizon: PREFETCH_HORIZON,
            avg_job_us: AtomicU64::new(0),
            freed: Notify::new(),
            running: Mutex::default(),
            waiting_bytes: AtomicUsize::new(0),
        };
        budget.end(0, Duration::from_micros(30));
        assert_eq!(budget.limit(), 2 + 256, "fast jobs: claimed far ahead");
        // A job whose thread was off its core for 4 ms is not a slow job:
        // under 5 ms, it does not count.
        lock(&budget.running).push((0, Instant::now() - Duration::from_millis(4)));
        assert_eq!(budget.limit(), 2 + 256);
        budget.end(0, Duration::from_micros(30));
        // One that has run 6 ms counts: 2 × 20 ms / 6 ms = 6 ahead.
        lock(&budget.running).push((0, Instant::now() - Duration::from_millis(6)));
        assert_eq!(budget.limit(), 2 + 6);
        budget.end(0, Duration::from_micros(30));
        // A slow job has run 50 ms already: it counts as the average, and
        // 2 × 20 ms / 50 ms leaves nothing to claim ahead.
        lock(&budget.running).push((1, Instant::now() - Duration::from_millis(50)));
        assert_eq!(budget.limit(), 2);
        budget.end(1, Duration::from_millis(60));
        assert!(lock(&budget.running).is_empty());
    }

    #[test]
    fn claims_wait_for_room_for_a_full_batch_while_the_threads_have_work() {
        // --batch 64, 258 jobs allowed in hand.
        assert!(!worth_claiming(0, 0, 258, 64), "no room: never");
        assert!(!worth_claiming(20, 150, 258, 64), "20 of 64 while 150 wait");
        assert!(worth_claiming(64, 150, 258, 64), "a full batch");
        assert!(worth_claiming(20, 10, 258, 64), "the threads near dry");
        // Few jobs allowed (slow jobs): a quarter of the limit is a full
        // claim, and under 8 any room is.
        assert!(worth_claiming(1, 1, 2, 64));
        assert!(
            worth_claiming(1, 2, 4, 64),
            "--prefetch 3: the last one too"
        );
        assert!(!worth_claiming(1, 8, 10, 64) && worth_claiming(2, 8, 10, 64));
        assert!(worth_claiming(1, 0, 1, 64), "one thread, nothing in hand");
    }

    #[test]
    fn claims_stop_while_the_waiting_jobs_hold_the_byte_budget() {
        let mib = 1 << 20;
        assert!(over_bytes(3, 4 * mib, 4 * mib), "at the budget");
        assert!(!over_bytes(3, 4 * mib - 1, 4 * mib), "under it");
        assert!(
            !over_bytes(0, 16 * mib, 4 * mib),
            "nothing waiting: the threads must not run dry"
        );
        assert!(!over_bytes(3, 64 * mib, 0), "0: no byte limit");
        // The count never wraps below zero when a job is taken twice.
        let budget = budget(None);
        budget.queued(10);
        budget.taken(10);
        budget.taken(10);
        assert_eq!(budget.waiting_bytes.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_job_counts_as_slow_after_5_ms_whatever_the_horizon() {
        let budget = Budget {
            concurrency: 1,
            serving: AtomicUsize::new(1),
            max_prefetch: 8,
            horizon: Duration::from_secs(60),
            avg_job_us: AtomicU64::new(0),
            freed: Notify::new(),
            running: Mutex::default(),
            waiting_bytes: AtomicUsize::new(0),
        };
        budget.end(0, Duration::from_millis(1));
        assert_eq!(budget.limit(), 1 + 8);
        // 60 s / 9.9 s = 6 ahead: it counts before 15 s (a quarter of the
        // horizon).
        lock(&budget.running).push((0, Instant::now() - Duration::from_millis(9_900)));
        assert_eq!(budget.limit(), 1 + 6);
        assert_eq!(stale_after(PREFETCH_HORIZON), Duration::from_secs(1));
        assert_eq!(
            stale_after(Duration::from_secs(60)),
            Duration::from_secs(3000)
        );
    }
}
