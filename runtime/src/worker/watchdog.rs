//! The watchdog behind the sandbox's deadline: a job thread whose sandbox
//! run has not come back by its deadline plus a grace is given up on. The
//! job's lease is released to the queue as a `wedged` ending (counted like
//! an expired lease: back off, and after a few such endings dead-lettered
//! as `worker-crash`), a new thread takes the wedged one's place (up to
//! `--concurrency` wedged at once), and the worker says so in its log and
//! in its fleet report, so that capacity is never lost in silence.
//!
//! The deadline already stops a guest in wasm and in every wait it can make
//! through WASI (`sandbox/deadline.rs`); what is left is a host call that
//! does not return (a bug, a store that hangs). The wedged thread is not
//! killed (threads cannot be): when it does come back, its late outcome is
//! sent like any other (fencing decides whether it still applies), and the
//! thread serves again if the pool is short of threads, else it ends.

use super::budget::Budget;
use crate::deploy::WedgedJob;
use crate::ids::now_us;
use crate::locks::lock;
use crate::queue::{ClaimedJob, Next, Outcome};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often the watchdog looks.
pub(super) const EVERY: Duration = Duration::from_millis(250);

/// The job a thread is on.
#[derive(Debug, Clone)]
struct Current {
    tenant: String,
    id: String,
    token: String,
    wait: bool,
    plugin: String,
    /// When the thread took it (µs since the epoch, for reports).
    since_us: u64,
    /// While its sandbox run is under way: when the thread is wedged.
    wedged_after: Option<Instant>,
}

/// One job thread, as the watchdog sees it.
#[derive(Debug, Default)]
pub(crate) struct Slot {
    current: Mutex<Option<Current>>,
    /// The watchdog gave up on this thread: it ends after its job.
    abandoned: AtomicBool,
}

impl Slot {
    /// The thread took `job`.
    pub(super) fn begin(&self, job: &ClaimedJob) {
        *lock(&self.current) = Some(Current {
            tenant: job.tenant.clone(),
            id: job.id.clone(),
            token: job.token.clone(),
            wait: job.wait,
            plugin: job.plugin.clone().unwrap_or_default(),
            since_us: now_us(),
            wedged_after: None,
        });
    }

    /// The sandbox run starts, under `timeout`: the thread is wedged if it
    /// is not back `timeout + grace` from now. Disarmed when the guard
    /// drops.
    pub(crate) fn arm(&self, timeout: Duration, grace: Duration) -> Armed<'_> {
        if let Some(current) = lock(&self.current).as_mut() {
            current.wedged_after = Instant::now().checked_add(timeout.saturating_add(grace));
        }
        Armed(self)
    }
}

/// A job thread's slot and the worker's grace, for the code that starts
/// sandbox runs.
#[derive(Clone, Copy)]
pub(crate) struct Watched<'a> {
    pub slot: &'a Slot,
    pub grace: Duration,
}

impl Watched<'_> {
    /// See [`Slot::arm`].
    pub fn arm(&self, timeout: Duration) -> Armed<'_> {
        self.slot.arm(timeout, self.grace)
    }
}

/// Disarms a [`Slot`] when the sandbox run is back.
pub(crate) struct Armed<'a>(&'a Slot);

impl Drop for Armed<'_> {
    fn drop(&mut self) {
        if let Some(current) = lock(&self.0.current).as_mut() {
            current.wedged_after = None;
        }
    }
}

/// Threads by state.
#[derive(Debug, Default)]
struct Counts {
    serving: usize,
    wedged: usize,
}

/// What the watchdog decided about one wedged thread.
pub(super) struct GivenUp {
    /// The job's ending, for the acker.
    pub outcome: Outcome,
    /// The slot of the thread to start in its place, counted as serving
    /// already (none: as many threads as the pool serves with are wedged;
    /// the worker runs short).
    pub replacement: Option<Arc<Slot>>,
}

/// Every job thread's slot, and how many serve or are wedged.
#[derive(Debug)]
pub(crate) struct Watch {
    slots: Mutex<Vec<Arc<Slot>>>,
    /// Changed together with a slot's `abandoned`, under this lock.
    counts: Mutex<Counts>,
    /// How many threads serve (`--concurrency`).
    target: usize,
    /// Told how many threads serve: the claim loop claims for those only.
    budget: Arc<Budget>,
}

impl Watch {
    /// A watch over a pool of `target` serving threads, keeping `budget`
    /// told how many serve.
    pub fn new(target: usize, budget: Arc<Budget>) -> Self {
        Watch {
            slots: Mutex::default(),
            counts: Mutex::default(),
            target,
            budget,
        }
    }

    /// Threads serving now.
    pub fn serving(&self) -> usize {
        lock(&self.counts).serving
    }

    /// A slot for a new (serving) job thread.
    pub(super) fn slot(&self) -> Arc<Slot> {
        let mut counts = lock(&self.counts);
        self.add_slot(&mut counts)
    }

    /// Count one more serving thread and register its slot, under the
    /// counts lock (so that a wedged thread coming back at the same moment
    /// sees the pool full).
    fn add_slot(&self, counts: &mut Counts) -> Arc<Slot> {
        let slot = Arc::new(Slot::default());
        counts.serving += 1;
        self.budget.set_serving(counts.serving);
        lock(&self.slots).push(Arc::clone(&slot));
        slot
    }

    /// The thread of `slot` is done with its job: whether it serves on. A
    /// thread the watchdog gave up on serves again only if the pool is
    /// short of threads; otherwise it should end.
    pub(super) fn end(&self, slot: &Slot) -> bool {
        let mut counts = lock(&self.counts);
        *lock(&slot.current) = None;
        if !slot.abandoned.swap(false, Ordering::AcqRel) {
            return true;
        }
        counts.wedged -= 1;
        if counts.serving < self.target {
            counts.serving += 1;
            self.budget.set_serving(counts.serving);
            true
        } else {
            false
        }
    }

    /// Forget the slot of a thread that ended (`serving`: it ended while
    /// counted as serving, at shutdown).
    pub(super) fn remove(&self, slot: &Arc<Slot>, serving: bool) {
        if serving {
            let mut counts = lock(&self.counts);
            counts.serving = counts.serving.saturating_sub(1);
            self.budget.set_serving(counts.serving);
        }
        lock(&self.slots).retain(|s| !Arc::ptr_eq(s, slot));
    }

    /// Give up on every thread wedged at `now` (each once): their jobs'
    /// endings, and whether to start a thread in each one's place.
    pub(super) fn sweep(&self, now: Instant, backoff: Duration) -> Vec<GivenUp> {
        let slots = lock(&self.slots).clone();
        let mut given_up = Vec::new();
        for slot in slots {
            let mut counts = lock(&self.counts);
            let current = lock(&slot.current).clone();
            let Some(current) = current else { continue };
            let late = current.wedged_after.is_some_and(|at| now >= at);
            if !late || slot.abandoned.swap(true, Ordering::AcqRel) {
                continue;
            }
            counts.serving -= 1;
            counts.wedged += 1;
            self.budget.set_serving(counts.serving);
            let replace = counts.wedged <= self.target;
            let replacement = replace.then(|| self.add_slot(&mut counts));
            tracing::error!(
                job = %current.id,
                plugin = %current.plugin.escape_debug(),
                wedged = counts.wedged,
                serving = counts.serving,
                "a job thread is wedged past its deadline and grace; its job goes back to the queue{}",
                if replace { ", and a new thread takes its place" } else { "; as many threads are wedged as the worker serves with, so no new one starts: this worker runs short until they come back" }
            );
            given_up.push(GivenUp {
                outcome: Outcome::new(
                    current.tenant,
                    current.id,
                    current.token,
                    current.wait,
                    Next::Wedged { backoff },
                ),
                replacement,
            });
        }
        given_up
    }

    /// The jobs of threads given up on that are still not back, for the
    /// worker's health report.
    pub fn wedged(&self) -> Vec<WedgedJob> {
        lock(&self.slots)
            .iter()
            .filter(|s| s.abandoned.load(Ordering::Acquire))
            .filter_map(|s| lock(&s.current).clone())
            .map(|c| WedgedJob {
                job: c.id,
                plugin: c.plugin,
                since_us: c.since_us,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watch(target: usize) -> Watch {
        let budget = Budget {
            concurrency: target,
            serving: std::sync::atomic::AtomicUsize::new(0),
            max_prefetch: 0,
            horizon: Duration::ZERO,
            avg_job_us: std::sync::atomic::AtomicU64::new(0),
            freed: tokio::sync::Notify::new(),
            running: std::sync::Mutex::default(),
            waiting_bytes: std::sync::atomic::AtomicUsize::new(0),
        };
        Watch::new(target, Arc::new(budget))
    }

    fn job(id: &str) -> ClaimedJob {
        ClaimedJob {
            tenant: "acme".into(),
            id: id.into(),
            token: "7".into(),
            attempt: 1,
            plugin: Some("acme/kv".into()),
            content_type: None,
            payload: Vec::new(),
            max_attempts: None,
            enqueued_us: None,
            wait: false,
            priority: None,
            waiting_since_us: None,
            no_cache: false,
            fresh: false,
            seen: None,
            claimed_us: 0,
            received: Instant::now(),
        }
    }

    #[test]
    fn only_an_armed_run_past_its_deadline_and_grace_is_given_up_on_once() {
        let watch = watch(3);
        let (idle, busy, wedged) = (watch.slot(), watch.slot(), watch.slot());
        let _ = idle;
        busy.begin(&job("busy"));
        wedged.begin(&job("stuck"));
        let armed = wedged.arm(Duration::ZERO, Duration::ZERO);
        // Taken but not yet in the sandbox (a cache wait): never wedged.
        let later = Instant::now() + Duration::from_secs(3600);
        let given_up = watch.sweep(later, Duration::from_secs(1));
        assert_eq!(given_up.len(), 1);
        let outcome = &given_up[0].outcome;
        assert_eq!(
            (outcome.id.as_str(), outcome.token.as_str()),
            ("stuck", "7")
        );
        assert_eq!(
            outcome.next,
            Next::Wedged {
                backoff: Duration::from_secs(1)
            }
        );
        assert!(given_up[0].replacement.is_some());
        assert!(
            watch.sweep(later, Duration::from_secs(1)).is_empty(),
            "once"
        );
        assert_eq!(watch.wedged().len(), 1);
        assert_eq!(watch.wedged()[0].job, "stuck");
        // The replacement is counted already: the wedged thread comes back
        // to a full pool and ends.
        drop(armed);
        assert!(!watch.end(&wedged));
        assert!(watch.end(&busy));
        assert!(watch.wedged().is_empty());
    }

    #[test]
    fn a_thread_back_to_a_short_pool_serves_again_and_wedges_beyond_the_pool_are_not_replaced() {
        let watch = watch(1);
        let first = watch.slot();
        first.begin(&job("a"));
        let armed = first.arm(Duration::ZERO, Duration::ZERO);
        let later = Instant::now() + Duration::from_secs(1);
        let second = watch.sweep(later, Duration::ZERO).remove(0).replacement;
        let second = second.expect("one wedged of one is replaced");
        assert_eq!(watch.serving(), 1);
        second.begin(&job("b"));
        let armed2 = second.arm(Duration::ZERO, Duration::ZERO);
        let given_up = watch.sweep(later, Duration::ZERO);
        assert!(given_up[0].replacement.is_none(), "two wedged of one");
        assert_eq!(
            watch.budget.limit(),
            0,
            "no thread serves: nothing is claimed"
        );
        drop(armed);
        assert!(
            watch.end(&first),
            "the pool has no serving thread: it serves again"
        );
        assert_eq!(watch.budget.limit(), 1);
        drop(armed2);
        assert!(!watch.end(&second), "the pool is full again: it ends");
    }

    #[test]
    fn a_run_back_in_time_is_not_wedged() {
        let watch = watch(1);
        let slot = watch.slot();
        slot.begin(&job("quick"));
        drop(slot.arm(Duration::ZERO, Duration::ZERO));
        assert!(
            watch
                .sweep(Instant::now() + Duration::from_secs(60), Duration::ZERO)
                .is_empty()
        );
        assert!(watch.end(&slot));
    }
}
