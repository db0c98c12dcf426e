//! How long a lone ack waits for company. At a moderate rate (a job every
//! few milliseconds) each success went to Redis in a script call of its
//! own: the call, the lease's fence, the kept list's push, beside the
//! record's two writes. Two successes in one call share the first three,
//! a command and a half per job fewer (docs/performance.md, "Acks that
//! wait for company"). So a success waits for its tenant's next outcome
//! (an ack call carries one tenant's) about one and a half times the
//! recent gap between them, and goes with it the moment it comes.
//!
//! It waits only where nothing else waits for it ([`Queue::ack_may_wait`]:
//! no client waiting for the result, no group slot or concurrency cap
//! freed by it), while the worker has room for two more jobs beside it
//! (a worker that fills up leaves the idle workers, and the next job
//! would go the longer way), never once the worker stops, and only while
//! the tenant's outcomes come that often: where the wait would be longer
//! than `--ack-linger` (by default below about 150 jobs a second of the
//! tenant on this worker), it would cost more latency than it saves. The
//! run's own times are in the record (`run`); what the wait moves is
//! when the outcome is recorded (`finished_us`), by that wait at most.
//!
//! [`Queue::ack_may_wait`]: crate::queue::Queue::ack_may_wait

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The longest a lone success waits for another outcome by default:
/// enough for jobs about 200 a second (a gap of 5 ms) to pair up.
pub const ACK_LINGER: Duration = Duration::from_millis(10);

/// The longest `--ack-linger` taken: a second (a wait is also at most a
/// third of the lease: `AckSettings::of` in loops.rs).
pub const ACK_LINGER_MAX: Duration = Duration::from_secs(1);

/// Tenants whose pace the acker keeps; past it, it starts again.
const TENANTS_MAX: usize = 10_000;

/// How one tenant's outcomes came.
#[derive(Debug, Clone, Copy)]
struct Pace {
    /// When its last outcome came.
    last: Instant,
    /// The gap before it.
    gap: Option<Duration>,
    /// The recent gap between its outcomes (a moving average of gaps
    /// counted as twice the linger at most, so that it comes down within
    /// a few outcomes after a quiet spell).
    average: Option<Duration>,
}

/// The acker's view of how outcomes come, per tenant: an ack call carries
/// one tenant's outcomes (`Queue::ack`), so only the same tenant's next
/// outcome shares a lone one's call.
#[derive(Debug)]
pub(super) struct Linger {
    /// The longest a lone outcome waits (zero: never).
    most: Duration,
    tenants: HashMap<String, Pace>,
}

impl Linger {
    pub(super) fn new(most: Duration) -> Self {
        Linger {
            most,
            tenants: HashMap::new(),
        }
    }

    /// An outcome of `tenant` came `at`.
    pub(super) fn came(&mut self, tenant: &str, at: Instant) {
        if self.most.is_zero() {
            return;
        }
        let cap = self.most.saturating_mul(2);
        if let Some(pace) = self.tenants.get_mut(tenant) {
            let gap = at.saturating_duration_since(pace.last);
            let sample = gap.min(cap);
            pace.average = Some(pace.average.map_or(sample, |a| (a * 3 + sample) / 4));
            pace.gap = Some(gap);
            pace.last = at;
            return;
        }
        if self.tenants.len() >= TENANTS_MAX {
            self.tenants.clear();
        }
        let pace = Pace {
            last: at,
            gap: None,
            average: None,
        };
        self.tenants.insert(tenant.to_string(), pace);
    }

    /// How long a batch of one outcome of `tenant` waits for another of
    /// the same tenant: `may_wait` from the queue (nothing waits for it),
    /// `room` whether the worker has room for another job beside it.
    /// Half as long again as the tenant's recent gap between outcomes, so
    /// that the next one usually comes in time, and a wait costs a job
    /// about what the rate leaves between two; none where that is longer
    /// than the linger, nor after a gap longer than it (the first job
    /// after a quiet spell, which nothing follows). `None`: send it now.
    pub(super) fn wait(&self, tenant: &str, may_wait: bool, room: bool) -> Option<Duration> {
        if self.most.is_zero() || !may_wait || !room {
            return None;
        }
        let pace = self.tenants.get(tenant)?;
        if pace.gap? > self.most {
            return None;
        }
        let wait = pace.average? * 3 / 2;
        (wait <= self.most).then_some(wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A lone success waits about one and a half of its tenant's gaps,
    /// only while that is within the linger, and never when something
    /// waits for it or the worker is full.
    #[test]
    fn a_lone_ack_waits_only_when_another_is_likely_soon() {
        let ms = Duration::from_millis;
        let t0 = Instant::now();
        let mut linger = Linger::new(ms(10));
        // The first outcome: no rate seen yet.
        linger.came("a", t0);
        assert_eq!(linger.wait("a", true, true), None);
        // 200 a second: waits 7.5 ms.
        linger.came("a", t0 + ms(5));
        assert_eq!(
            linger.wait("a", true, true),
            Some(Duration::from_micros(7_500))
        );
        // Not for a result a client waits for, nor without room.
        assert_eq!(linger.wait("a", false, true), None);
        assert_eq!(linger.wait("a", true, false), None);
        // Another tenant's pace is its own.
        linger.came("b", t0 + ms(6));
        assert_eq!(linger.wait("b", true, true), None);
        // Slower: 9 ms apart brings the average to 6 ms, whose wait (9 ms)
        // is within the linger; 20 ms apart, past it.
        linger.came("a", t0 + ms(14));
        assert_eq!(
            linger.wait("a", true, true),
            Some(Duration::from_micros(9_000))
        );
        linger.came("a", t0 + ms(34));
        assert_eq!(linger.wait("a", true, true), None);
        // At 2,000 a second, then a quiet spell: the first outcome after
        // it does not wait, though the average is still low; a few at
        // that rate again and it does.
        let mut at = t0 + ms(100);
        for _ in 0..20 {
            at += Duration::from_micros(500);
            linger.came("a", at);
        }
        assert!(linger.wait("a", true, true).is_some());
        at += ms(60_000);
        linger.came("a", at);
        assert_eq!(linger.wait("a", true, true), None);
        for _ in 0..6 {
            at += Duration::from_micros(500);
            linger.came("a", at);
        }
        assert!(linger.wait("a", true, true).is_some_and(|w| w < ms(5)));
        // Off.
        let mut off = Linger::new(Duration::ZERO);
        off.came("a", t0);
        off.came("a", t0 + ms(1));
        assert_eq!(off.wait("a", true, true), None);
    }
}
