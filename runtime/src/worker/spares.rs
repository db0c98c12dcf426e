//! Which job threads take jobs now. A worker starts `--concurrency`
//! threads, but while its jobs are short one of them keeps up with all a
//! Redis can hand out (a no-op job costs its thread ~10 µs, Redis ~13 µs),
//! and every further thread only competes for the cores with the worker's
//! I/O and, on a shared machine, with Redis itself: draining 100,000
//! `hello` jobs on 2 cores with Redis beside the worker, one taking thread
//! was 5–10% faster than two, and used less CPU per job
//! (docs/performance.md, "Threads that rest").
//!
//! So while recent job time is not mostly long ([`SHARE`]), a thread
//! *rests* after a short job (under [`LONG`]) if another thread takes jobs
//! and is between jobs or on one younger than [`LONG`]. A resting thread
//! is *called back* (every [`TICK`], by a small thread of its own) when
//! jobs wait in the local queue and either recent job time is mostly long
//! or every taking thread is held up (on one job for [`HELD`] or more: a
//! slow job, one waiting on the network or a sleep, or a thread the
//! system paused mid-job; within [`HELD`] of a thread going to rest, past
//! [`LONG`] already, as the thread may have rested beside one that had
//! just started a slow job); then as many as jobs wait. Slow work spreads
//! over all the threads within a tick or two of the first slow job being
//! held up; at least one thread always takes jobs, and never more than
//! `--concurrency` jobs run at once.
//!
//! The price: while jobs are shorter than [`LONG`] they run one at a time
//! on a worker, whatever its cores (20,000 to 100,000 a second, about
//! what one Redis hands out); and a job under [`HELD`] among many short
//! ones holds the jobs behind it up to its length while one thread takes
//! jobs.

use crate::locks::{Doze, lock};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::{Duration, Instant};

/// A job this long is not short: five times a no-op job's whole cost on
/// its thread (~10 µs), several times what Redis spends on a job, and
/// under most jobs doing real work.
pub(super) const LONG: Duration = Duration::from_micros(50);

/// A thread on one job this long is held up. Longer than [`LONG`], so that
/// a thread the system merely paused for a moment (common on a busy
/// machine) does not call the others back for a stream of short jobs.
pub(super) const HELD: Duration = Duration::from_millis(5);

/// Recent job time is *mostly long* when long jobs took this share of it
/// or more (1 / `SHARE`): then all threads take jobs. By time, not by
/// count, so that a few slow jobs among many short ones still spread;
/// each job counts for at most [`HELD`] (past it the thread is held up),
/// so one very slow job does not keep all threads busy for long after.
const SHARE: f64 = 4.0;

/// "Recent": each job keeps this part of the job time before it (1/16
/// forgotten a job). A window in wall time (100 ms) was tried: threads the
/// system paused mid-job then kept the share high, and the second thread
/// ran as much as before (docs/performance.md, "Threads that rest").
const KEEP: f64 = 15.0 / 16.0;

/// How often resting threads are considered for a call back.
pub(super) const TICK: Duration = Duration::from_millis(2);

/// How long a resting thread sleeps before it looks whether the queue it
/// serves has closed (a call back wakes it at once).
const NAP: Duration = Duration::from_millis(250);

/// One job thread, as the others see it.
#[derive(Debug, Default)]
pub(super) struct Seat {
    /// Whether it takes jobs (else it rests).
    taking: AtomicBool,
    /// When its current job started ([`Spares::now`]); 0 between jobs.
    busy_since: AtomicU64,
}

impl Seat {
    /// Whether the thread takes jobs now.
    pub fn taking(&self) -> bool {
        self.taking.load(Ordering::Acquire)
    }
}

/// The threads of one pool and how many take jobs.
#[derive(Debug)]
pub(super) struct Spares {
    epoch: Instant,
    seats: Mutex<Vec<Arc<Seat>>>,
    counts: Mutex<Counts>,
    /// `counts.taking`, readable without the lock (the common case: one
    /// taking thread, nothing to decide after each job).
    taking: AtomicUsize,
    /// When a thread last went to rest ([`Spares::now`]; 0: never).
    rested_at: AtomicU64,
    /// Recent job time: long jobs' and all jobs'.
    recent: Mutex<Recent>,
    called: Condvar,
    /// Where the calling thread sleeps while no job runs (woken when one
    /// begins, or a taking thread ends).
    caller: Doze,
}

#[derive(Debug, Default)]
struct Counts {
    taking: usize,
    resting: usize,
    /// Call backs not yet taken up by a resting thread.
    calls: usize,
}

/// What a resting thread wakes to.
pub(super) enum Woken<T> {
    /// It takes jobs again.
    Called,
    /// A job it took while looking whether the queue closed: run it, then
    /// rest on.
    Job(T),
    /// The queue closed: the thread ends.
    Closed,
}

impl Spares {
    pub fn new() -> Arc<Spares> {
        Arc::new(Spares {
            epoch: Instant::now(),
            seats: Mutex::default(),
            counts: Mutex::default(),
            taking: AtomicUsize::new(0),
            rested_at: AtomicU64::new(0),
            recent: Mutex::default(),
            called: Condvar::new(),
            caller: Doze::default(),
        })
    }

    /// Microseconds on this pool's clock, never 0.
    fn now(&self) -> u64 {
        self.at(Instant::now())
    }

    /// `t` on this pool's clock (µs, never 0).
    fn at(&self, t: Instant) -> u64 {
        u64::try_from(t.saturating_duration_since(self.epoch).as_micros())
            .unwrap_or(u64::MAX)
            .max(1)
    }

    /// A new thread's seat: taking jobs if no thread does, else resting.
    pub fn seat(&self) -> Arc<Seat> {
        let seat = Arc::new(Seat::default());
        let mut counts = lock(&self.counts);
        if counts.taking == 0 {
            self.take_up(&mut counts, &seat);
        } else {
            counts.resting += 1;
        }
        lock(&self.seats).push(Arc::clone(&seat));
        seat
    }

    fn take_up(&self, counts: &mut Counts, seat: &Seat) {
        counts.taking += 1;
        self.taking.store(counts.taking, Ordering::Release);
        seat.taking.store(true, Ordering::Release);
    }

    /// The thread of `seat` ends.
    pub fn leave(&self, seat: &Arc<Seat>) {
        let mut counts = lock(&self.counts);
        if seat.taking.swap(false, Ordering::AcqRel) {
            counts.taking -= 1;
            self.taking.store(counts.taking, Ordering::SeqCst);
        } else {
            counts.resting = counts.resting.saturating_sub(1);
        }
        lock(&self.seats).retain(|s| !Arc::ptr_eq(s, seat));
        drop(counts);
        // (No taking thread may be left: the caller calls one back.)
        self.caller.wake();
    }

    /// The thread of `seat` started a job at `started` (the instant the
    /// thread already took for the job's duration: no second clock read).
    pub fn begin(&self, seat: &Seat, started: Instant) {
        // (Sequentially consistent, for the dozing caller: see `Doze`.)
        seat.busy_since.store(self.at(started), Ordering::SeqCst);
        self.caller.wake();
    }

    /// Whether a call back may come due: a taking thread is on a job (it
    /// may be held up), or no thread takes jobs. While neither, jobs that
    /// arrive are taken by a taking thread between jobs, and the caller
    /// sleeps.
    fn watching(&self) -> bool {
        self.taking.load(Ordering::SeqCst) == 0
            || lock(&self.seats)
                .iter()
                // (`busy_since` first: once its store is seen, so is the
                // `taking` its thread set before it.)
                .any(|s| s.busy_since.load(Ordering::SeqCst) != 0 && s.taking())
    }

    /// The thread of `seat` is done with a job that took `took`: whether it
    /// rests now. It does when the job was short, recent job time is not
    /// mostly long, and another thread takes jobs that is between jobs or
    /// on a job younger than [`LONG`].
    pub fn end(&self, seat: &Seat, took: Duration) -> bool {
        seat.busy_since.store(0, Ordering::Release);
        let mostly = self.note(took);
        // (A resting thread also runs a job it finds when it looks whether
        // the queue closed: it rests on.)
        if mostly || took >= LONG || !seat.taking() || self.taking.load(Ordering::Acquire) <= 1 {
            return false;
        }
        let mut counts = lock(&self.counts);
        let now = self.now();
        // Rest only beside a thread that is between jobs or on a fresh
        // one: one on a job past LONG may be on a slow one.
        let others_busy = lock(&self.seats)
            .iter()
            .filter(|s| !std::ptr::eq(s.as_ref(), seat) && s.taking())
            .all(|s| self.on_for(s, now, LONG));
        if counts.taking <= 1 || others_busy {
            return false;
        }
        counts.taking -= 1;
        counts.resting += 1;
        self.rested_at.store(now, Ordering::Release);
        self.taking.store(counts.taking, Ordering::Release);
        seat.taking.store(false, Ordering::Release);
        true
    }

    /// Count a job of `took` into the recent job time: whether that is now
    /// mostly long.
    fn note(&self, took: Duration) -> bool {
        let mut recent = lock(&self.recent);
        recent.add(took);
        recent.mostly_long()
    }

    /// Whether recent job time is mostly long.
    fn mostly(&self) -> bool {
        lock(&self.recent).mostly_long()
    }

    /// Whether the thread of `seat` is on a job `age` old or older.
    fn on_for(&self, seat: &Seat, now: u64, age: Duration) -> bool {
        let since = seat.busy_since.load(Ordering::Acquire);
        since != 0 && now.saturating_sub(since) >= age.as_micros() as u64
    }

    /// Rest until called back. Every [`NAP`] the thread looks at the queue
    /// with `poll` (a non-blocking receive): a job is run at once, a closed
    /// queue ends the thread.
    pub fn rest<T>(&self, seat: &Seat, mut poll: impl FnMut() -> Poll<T>) -> Woken<T> {
        let mut counts = lock(&self.counts);
        loop {
            if counts.calls > 0 {
                counts.calls -= 1;
                counts.resting -= 1;
                self.take_up(&mut counts, seat);
                return Woken::Called;
            }
            let (again, waited) = self
                .called
                .wait_timeout(counts, NAP)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            counts = again;
            if waited.timed_out() && counts.calls == 0 {
                drop(counts);
                match poll() {
                    Poll::Job(job) => return Woken::Job(job),
                    Poll::Closed => return Woken::Closed,
                    Poll::Empty => {}
                }
                counts = lock(&self.counts);
            }
        }
    }

    /// Call resting threads back, as many as `waiting` jobs wait, when
    /// recent job time is mostly long or every taking thread is held up
    /// (or none takes jobs); within [`HELD`] of a thread going to rest,
    /// already when every taking thread is on a job past [`LONG`]. How
    /// many were called.
    pub fn call_back(&self, waiting: usize) -> usize {
        if waiting == 0 {
            return 0;
        }
        let mut counts = lock(&self.counts);
        let idle = counts.resting.saturating_sub(counts.calls);
        if idle == 0 {
            return 0;
        }
        let called = idle.min(waiting);
        let calls = if self.mostly() {
            called
        } else {
            // A thread that went to rest beside one that had just started
            // a job: if that job turned out slow (past LONG), the rest was
            // a mistake, undone at this tick rather than after HELD.
            let now = self.now();
            let rested = self.rested_at.load(Ordering::Acquire);
            let lately = rested != 0 && now.saturating_sub(rested) < HELD.as_micros() as u64;
            let age = if lately { LONG } else { HELD };
            let held = lock(&self.seats)
                .iter()
                .filter(|s| s.taking())
                .all(|s| self.on_for(s, now, age));
            if held { called } else { 0 }
        };
        counts.calls += calls;
        for _ in 0..calls {
            self.called.notify_one();
        }
        calls
    }

    /// Start the thread that calls resting threads back, every [`TICK`]
    /// while a job runs (else it dozes, for up to [`NAP`] at a time), while
    /// `waiting` can be asked (it gives `None` once the pool is gone).
    pub fn start_caller(self: &Arc<Self>, waiting: impl Fn() -> Option<usize> + Send + 'static) {
        let spares: Weak<Spares> = Arc::downgrade(self);
        let started = std::thread::Builder::new()
            .name("spool-spares".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(TICK);
                    let (Some(spares), Some(waiting)) = (spares.upgrade(), waiting()) else {
                        break;
                    };
                    if spares.watching() {
                        spares.call_back(waiting);
                    } else {
                        spares.caller.sleep(NAP, || spares.watching());
                    }
                }
            });
        if let Err(e) = started {
            // The threads still serve: one takes jobs; the others, resting,
            // run what they find when they look at the queue (every NAP).
            tracing::error!("could not start the thread that calls job threads back: {e}");
        }
    }
}

/// Job time, in ns, decaying a job at a time ([`KEEP`]).
#[derive(Debug, Default)]
struct Recent {
    long: f64,
    all: f64,
}

impl Recent {
    /// Add a job of `took`.
    fn add(&mut self, took: Duration) {
        let ns = took.min(HELD).as_nanos() as f64;
        self.long = self.long * KEEP + if took >= LONG { ns } else { 0.0 };
        self.all = self.all * KEEP + ns;
    }

    /// Whether long jobs took [`SHARE`]'s part of it or more.
    fn mostly_long(&self) -> bool {
        self.all > 0.0 && self.long * SHARE >= self.all
    }
}

/// A non-blocking look at the queue.
pub(super) enum Poll<T> {
    Job(T),
    Empty,
    Closed,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `seat`'s thread on a job since the pool's start, [`HELD`] ago.
    fn held_up(seat: &Seat) {
        seat.busy_since.store(1, Ordering::Release);
        std::thread::sleep(HELD);
    }

    #[test]
    fn the_first_thread_takes_jobs_and_the_others_rest() {
        let spares = Spares::new();
        let (a, b, c) = (spares.seat(), spares.seat(), spares.seat());
        assert!(a.taking());
        assert!(!b.taking() && !c.taking());
    }

    #[test]
    fn the_caller_watches_only_while_a_taking_thread_is_on_a_job() {
        let spares = Spares::new();
        let (a, b) = (spares.seat(), spares.seat());
        assert!(!spares.watching(), "idle: the caller dozes");
        spares.begin(&a, Instant::now());
        assert!(spares.watching(), "a job may turn out held up");
        spares.end(&a, Duration::from_micros(5));
        assert!(!spares.watching());
        // A resting thread's job (found when it looked at the queue)
        // calls nobody back.
        spares.begin(&b, Instant::now());
        assert!(!spares.watching());
        spares.end(&b, Duration::from_micros(5));
        // No thread taking jobs: one must be called back.
        spares.leave(&a);
        assert!(spares.watching());
    }

    #[test]
    fn a_resting_thread_is_called_back_only_while_jobs_wait_behind_a_held_up_one() {
        let spares = Spares::new();
        let (a, _b) = (spares.seat(), spares.seat());
        assert_eq!(spares.call_back(5), 0, "a is between jobs");
        spares.begin(&a, Instant::now());
        assert_eq!(spares.call_back(5), 0, "a's job has just started");
        held_up(&a);
        assert_eq!(spares.call_back(0), 0, "no job waits");
        assert_eq!(spares.call_back(5), 1);
        assert_eq!(
            spares.call_back(5),
            0,
            "the one resting thread is called already"
        );
    }

    #[test]
    fn a_called_thread_takes_jobs_and_rests_again_after_a_short_one() {
        let spares = Spares::new();
        let (a, b) = (spares.seat(), spares.seat());
        for _ in 0..100 {
            assert!(!spares.end(&a, Duration::from_micros(5)), "a alone");
        }
        held_up(&a);
        assert_eq!(spares.call_back(1), 1);
        let woken = spares.rest(&b, || Poll::<()>::Empty);
        assert!(matches!(woken, Woken::Called) && b.taking());
        // While a is held up, b keeps taking jobs, short or not.
        spares.begin(&b, Instant::now());
        assert!(!spares.end(&b, Duration::from_micros(5)));
        // Once a is between jobs, a short job sends b back to rest; a never
        // rests, being the only one left taking jobs.
        a.busy_since.store(0, Ordering::Release); // a is between jobs
        spares.begin(&b, Instant::now());
        assert!(spares.end(&b, Duration::from_micros(5)));
        assert!(!b.taking());
        spares.begin(&a, Instant::now());
        assert!(!spares.end(&a, Duration::from_micros(5)));
        assert!(a.taking());
    }

    #[test]
    fn while_most_jobs_are_long_every_thread_takes_them() {
        let spares = Spares::new();
        let seats: Vec<_> = (0..4).map(|_| spares.seat()).collect();
        for _ in 0..32 {
            spares.begin(&seats[0], Instant::now());
            spares.end(&seats[0], LONG);
        }
        assert_eq!(spares.call_back(2), 2, "as many as jobs wait");
        assert_eq!(spares.call_back(9), 1, "the last one resting");
        for seat in &seats[1..] {
            assert!(matches!(
                spares.rest(seat, || Poll::<()>::Empty),
                Woken::Called
            ));
        }
        // A short job among long ones sends no thread to rest.
        spares.begin(&seats[1], Instant::now());
        assert!(!spares.end(&seats[1], Duration::from_micros(5)));
        assert!(seats.iter().all(|s| s.taking()));
    }

    #[test]
    fn a_few_slow_jobs_among_many_short_ones_make_the_time_mostly_long() {
        let spares = Spares::new();
        let seats: Vec<_> = (0..2).map(|_| spares.seat()).collect();
        for i in 0..200 {
            let took = if i % 20 == 0 {
                Duration::from_millis(4)
            } else {
                Duration::from_micros(10)
            };
            spares.end(&seats[0], took);
        }
        // One job in 20 took 4 ms: 95% of the time.
        assert!(spares.mostly());
        assert_eq!(spares.call_back(1), 1);
        // A rare job paused past LONG among short ones is not enough.
        let spares = Spares::new();
        let seat = spares.seat();
        for i in 0..1000 {
            let took = Duration::from_micros(if i % 300 == 0 { 200 } else { 10 });
            spares.end(&seat, took);
        }
        assert!(!spares.mostly());
    }

    #[test]
    fn a_thread_after_a_long_job_keeps_taking_jobs() {
        let spares = Spares::new();
        let (a, b) = (spares.seat(), spares.seat());
        held_up(&a);
        assert_eq!(spares.call_back(1), 1);
        assert!(matches!(
            spares.rest(&b, || Poll::<()>::Empty),
            Woken::Called
        ));
        assert!(!spares.end(&a, LONG), "a long job");
        spares.begin(&b, Instant::now());
        assert!(!spares.end(&b, LONG));
        assert!(a.taking() && b.taking());
    }

    #[test]
    fn a_resting_thread_runs_what_it_finds_and_ends_with_the_queue() {
        let spares = Spares::new();
        let (_a, b) = (spares.seat(), spares.seat());
        assert!(matches!(spares.rest(&b, || Poll::Job(7)), Woken::Job(7)));
        assert!(matches!(
            spares.rest(&b, || Poll::<()>::Closed),
            Woken::Closed
        ));
        assert!(!b.taking());
    }

    #[test]
    fn a_job_a_resting_thread_found_leaves_the_counts_as_they_were() {
        let spares = Spares::new();
        let (a, b, c) = (spares.seat(), spares.seat(), spares.seat());
        held_up(&a);
        assert_eq!(spares.call_back(1), 1);
        assert!(matches!(
            spares.rest(&b, || Poll::<()>::Empty),
            Woken::Called
        ));
        a.busy_since.store(0, Ordering::Release);
        assert!(matches!(spares.rest(&c, || Poll::Job(())), Woken::Job(())));
        spares.begin(&c, Instant::now());
        assert!(!spares.end(&c, Duration::from_micros(5)), "c rests already");
        assert!(a.taking() && b.taking() && !c.taking());
        assert_eq!(spares.taking.load(Ordering::Acquire), 2);
        let counts = lock(&spares.counts);
        assert_eq!((counts.taking, counts.resting), (2, 1));
    }

    #[test]
    fn a_thread_that_rested_beside_a_job_turning_slow_is_called_back_at_the_next_tick() {
        let spares = Spares::new();
        let (a, b, c) = (spares.seat(), spares.seat(), spares.seat());
        held_up(&a);
        assert_eq!(spares.call_back(5), 2, "both resting threads, at once");
        for seat in [&b, &c] {
            assert!(matches!(
                spares.rest(seat, || Poll::<()>::Empty),
                Woken::Called
            ));
        }
        // a is back between jobs; b and c go to rest as c starts a job.
        a.busy_since.store(0, Ordering::Release);
        spares.begin(&c, Instant::now());
        assert!(
            spares.end(&b, Duration::from_micros(5)),
            "b rests beside a fresh job"
        );
        spares.begin(&a, Instant::now());
        assert!(spares.end(&a, Duration::from_micros(5)), "a too");
        // c's job turns out slow: past LONG, well before HELD.
        std::thread::sleep(LONG);
        assert_eq!(spares.call_back(1), 1);
        // Long after the last rest, only HELD calls back.
        let spares = Spares::new();
        let (a, _b) = (spares.seat(), spares.seat());
        spares.begin(&a, Instant::now());
        std::thread::sleep(LONG);
        assert_eq!(spares.call_back(1), 0, "nobody rested lately");
    }

    #[test]
    fn when_the_taking_thread_ends_a_resting_one_is_called_back() {
        let spares = Spares::new();
        let (a, b) = (spares.seat(), spares.seat());
        spares.leave(&a);
        assert_eq!(spares.call_back(1), 1);
        assert!(matches!(
            spares.rest(&b, || Poll::<()>::Empty),
            Woken::Called
        ));
        assert!(b.taking());
    }
}
