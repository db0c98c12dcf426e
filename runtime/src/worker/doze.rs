//! A thread that polls (every 2 ms, say) while there is something to
//! watch, and sleeps while there is not, woken by whoever makes work for
//! it. The thread that calls resting job threads back
//! ([`super::spares`]) dozes while no job runs: an idle worker that polled
//! anyway woke 500 times a second for nothing, ~1% of a core per worker
//! process.
//!
//! No wake-up is lost: the sleeper marks itself asleep before it looks
//! once more whether there is work, and the waker marks the work before
//! it looks whether the sleeper is asleep (both sequentially consistent),
//! so at least one of them sees the other.

use crate::locks::lock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

/// One sleeper's bed.
#[derive(Debug, Default)]
pub(super) struct Doze {
    /// Whether the sleeper sleeps (or is about to): a waker that sees
    /// `false` need not take the lock, the common case on every job.
    asleep: AtomicBool,
    lock: Mutex<()>,
    woken: Condvar,
}

impl Doze {
    /// Wake the sleeper if it sleeps. Call it after making the work that
    /// `busy` (of [`Doze::sleep`]) sees.
    pub fn wake(&self) {
        if self.asleep.load(Ordering::SeqCst) {
            let _held = lock(&self.lock);
            self.asleep.store(false, Ordering::SeqCst);
            self.woken.notify_one();
        }
    }

    /// Sleep until [`Doze::wake`] or for `most`, unless `busy()` says there
    /// is work (asked once marked asleep).
    pub fn sleep(&self, most: Duration, busy: impl Fn() -> bool) {
        let held = lock(&self.lock);
        self.asleep.store(true, Ordering::SeqCst);
        if !busy() {
            let _slept = self
                .woken
                .wait_timeout_while(held, most, |_| self.asleep.load(Ordering::SeqCst))
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        self.asleep.store(false, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;
    use std::time::Instant;

    #[test]
    fn a_sleeper_wakes_when_work_is_made_not_at_its_timeout() {
        let doze = Arc::new(Doze::default());
        let work = Arc::new(AtomicBool::new(false));
        let sleeper = {
            let (doze, work) = (Arc::clone(&doze), Arc::clone(&work));
            std::thread::spawn(move || {
                let started = Instant::now();
                doze.sleep(Duration::from_secs(60), || work.load(Ordering::SeqCst));
                started.elapsed()
            })
        };
        // Whether the waker comes before the sleeper lies down or after,
        // the sleeper is up long before its minute.
        std::thread::sleep(Duration::from_millis(20));
        work.store(true, Ordering::SeqCst);
        doze.wake();
        let slept = sleeper.join().unwrap();
        assert!(
            slept < Duration::from_secs(30),
            "woken, not timed out: {slept:?}"
        );
    }

    #[test]
    fn a_sleeper_with_work_does_not_sleep() {
        let doze = Doze::default();
        let started = Instant::now();
        doze.sleep(Duration::from_secs(60), || true);
        assert!(started.elapsed() < Duration::from_secs(30));
        // And a wake with nobody asleep takes nothing.
        doze.wake();
        assert!(!doze.asleep.load(Ordering::SeqCst));
    }
}
