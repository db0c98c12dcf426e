//! Poison-tolerant locking. A thread that panicked while holding a lock
//! (a host bug caught by the job thread's `catch_unwind`) leaves data that
//! is still consistent for every use here: each critical section is a
//! single insert, remove or read. So a poisoned lock is used as is rather
//! than taking the whole worker down with it.
//!
//! Also [`Doze`], built on it: a polling thread that sleeps while there
//! is nothing to poll for.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

/// Lock `m`, poisoned or not.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Read-lock `l`, poisoned or not.
pub fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Write-lock `l`, poisoned or not.
pub fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Where a thread that polls (every 2 ms, say) while there is something
/// to watch sleeps while there is not, woken by whoever makes work for it:
/// the sandbox's epoch ticker while no job runs, the thread that calls
/// resting job threads back while no job runs. An idle worker whose two
/// pollers never slept woke 1,000 times a second for nothing, ~1.5% of a
/// core per worker process (0.2% with both dozing).
///
/// No wake-up is lost: a sleeper counts itself in before it looks once
/// more whether there is work, and a waker makes its work seen before it
/// looks whether anyone sleeps (both sequentially consistent), so at least
/// one of them sees the other. Several may sleep in one bed (each engine's
/// epoch ticker in one process): a wake wakes them all.
#[derive(Debug, Default)]
pub struct Doze {
    /// How many sleep (or are about to): a waker that sees none need not
    /// take the lock, the common case on every job.
    sleepers: AtomicUsize,
    /// Wakes so far: a sleeper sleeps until it changes.
    wakes: Mutex<u64>,
    woken: Condvar,
}

impl Doze {
    /// A bed nobody sleeps in (for a `static`).
    pub const fn new() -> Doze {
        Doze {
            sleepers: AtomicUsize::new(0),
            wakes: Mutex::new(0),
            woken: Condvar::new(),
        }
    }

    /// Wake whoever sleeps here. Call it after making the work that
    /// `busy` (of [`Doze::sleep`]) sees, with a sequentially consistent
    /// write.
    pub fn wake(&self) {
        if self.sleepers.load(Ordering::SeqCst) > 0 {
            *lock(&self.wakes) += 1;
            self.woken.notify_all();
        }
    }

    /// Sleep until [`Doze::wake`] or for `most`, unless `busy()` says there
    /// is work (asked once counted in).
    pub fn sleep(&self, most: Duration, busy: impl Fn() -> bool) {
        let wakes = lock(&self.wakes);
        self.sleepers.fetch_add(1, Ordering::SeqCst);
        if !busy() {
            let seen = *wakes;
            let _slept = self
                .woken
                .wait_timeout_while(wakes, most, |now| *now == seen)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        self.sleepers.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;
    use std::thread::JoinHandle;
    use std::time::Instant;

    /// A thread that sleeps in `doze` for at most `most` until `work`;
    /// it answers how long it slept.
    fn sleeper(doze: &Arc<Doze>, work: &Arc<AtomicBool>, most: Duration) -> JoinHandle<Duration> {
        let (doze, work) = (Arc::clone(doze), Arc::clone(work));
        std::thread::spawn(move || {
            let started = Instant::now();
            doze.sleep(most, || work.load(Ordering::SeqCst));
            started.elapsed()
        })
    }

    /// Make the work, wake, and see `long` up well before its minute.
    fn work_wakes(doze: &Doze, work: &AtomicBool, long: JoinHandle<Duration>) {
        std::thread::sleep(Duration::from_millis(20));
        work.store(true, Ordering::SeqCst);
        doze.wake();
        let slept = long.join().unwrap();
        assert!(
            slept < Duration::from_secs(30),
            "woken, not timed out: {slept:?}"
        );
    }

    #[test]
    fn a_sleeper_wakes_when_work_is_made_not_at_its_timeout() {
        let (doze, work) = (Arc::new(Doze::new()), Arc::new(AtomicBool::new(false)));
        // Whether the waker comes before the sleeper lies down or after,
        // the sleeper is up long before its minute.
        let long = sleeper(&doze, &work, Duration::from_secs(60));
        work_wakes(&doze, &work, long);
    }

    #[test]
    fn a_sleeper_with_work_does_not_sleep() {
        let doze = Doze::new();
        let started = Instant::now();
        doze.sleep(Duration::from_secs(60), || true);
        assert!(started.elapsed() < Duration::from_secs(30));
        // And a wake with nobody asleep takes nothing.
        doze.wake();
        assert_eq!(*lock(&doze.wakes), 0);
        assert_eq!(doze.sleepers.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn one_wake_wakes_every_sleeper_even_after_another_napped() {
        let (doze, work) = (Arc::new(Doze::new()), Arc::new(AtomicBool::new(false)));
        // One sleeps long; another takes a short nap and is up again
        // before the work comes: the first must still be woken.
        let long = sleeper(&doze, &work, Duration::from_secs(60));
        let nap = sleeper(&doze, &work, Duration::from_millis(5));
        assert!(nap.join().unwrap() < Duration::from_secs(30));
        work_wakes(&doze, &work, long);
    }
}
