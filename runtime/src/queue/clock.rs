//! Redis' clock as a queue handle knows it, so that a script can be sent
//! the time instead of reading it (`TIME` is a command of its own, one of
//! an idle job's few: docs/performance.md, "What ten commands per idle job
//! takes").
//!
//! Every queue timestamp is on Redis' clock. A script reads it with
//! `TIME`, unless its caller sends a reading (`now_from` in lib.lua): a
//! time a script read (an ack's: its claim's; an enqueue's: an earlier
//! enqueue's) plus the time since its reply came, by this host's monotonic
//! clock. So a reading is behind Redis' clock by the reply's trip, never
//! ahead: a job's `enqueued_us` may be up to a round trip before the
//! moment Redis stored it, never after a time Redis reads later. An
//! enqueue's reading whose round trip took longer than [`READING_TRIP`]
//! is not used, nor one held across connection trouble (a call sent
//! while the connection is made again waits for it). (Behind the clock it
//! was read from: a failover to a host whose clock is behind, or a step
//! back of Redis' clock, can put it ahead by that much, and one whose
//! clock is ahead put it behind, until the reading is [`READING_FRESH`]
//! old.) An estimate goes with a call's first try only (a call sent again
//! after the library or a script was loaded: queue/scripts.rs,
//! `Call::moment_arg`), and not on a cluster, where each master has a
//! clock of its own.
//!
//! A reading is sent only while it agrees with this host's wall clock plus
//! the offset seen then, within [`CLOCKS_AGREE`]: the monotonic clock
//! stops while a host is suspended, and an estimate a day behind would set
//! expiries that have passed.

use super::model::{Next, Outcome};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How far an estimate of Redis' clock may be from this host's clock plus
/// the offset it saw, before the script reads `TIME` instead (µs).
pub(super) const CLOCKS_AGREE: i64 = 1_000_000;

/// How long an enqueue's reading of Redis' clock is used: enqueues read
/// `TIME` again once that long has passed (one in a thousand at 200 jobs a
/// second), so that the monotonic clock's drift never adds up.
pub(super) const READING_FRESH: Duration = Duration::from_secs(5);

/// The longest round trip of an enqueue whose reading of Redis' clock is
/// used: how far behind Redis' an estimate from it may run, besides the
/// next call's own trip.
pub(super) const READING_TRIP: Duration = Duration::from_millis(20);

/// Redis' clock now (µs), as the claims of `outcomes` read it, for their
/// ack (`ARGV[6]` of ack.lua): the latest of their claims' times plus the
/// time since each reply came. `None`, for the script to read its clock,
/// unless every outcome is a success from a claim (a retry's due time and
/// a dead letter's place are Redis' own), and unless it is more than
/// [`CLOCKS_AGREE`] off `wall` (this host's clock plus Redis' offset from
/// it, µs).
pub(super) fn redis_now<'o>(outcomes: impl Iterator<Item = &'o Outcome>, wall: i64) -> Option<u64> {
    let mut now = None;
    for o in outcomes {
        match (o.next, o.clock) {
            (Next::Succeeded, Some((claimed_us, received))) if claimed_us > 0 => {
                let since = u64::try_from(received.elapsed().as_micros()).unwrap_or(u64::MAX);
                let at = claimed_us.saturating_add(since);
                now = Some(now.map_or(at, |n: u64| n.max(at)));
            }
            _ => return None,
        }
    }
    now.filter(|&n| agrees(n, wall))
}

fn agrees(estimate: u64, wall: i64) -> bool {
    (i64::try_from(estimate).unwrap_or(i64::MAX) - wall).abs() <= CLOCKS_AGREE
}

/// One reading of Redis' clock that an enqueue took.
#[derive(Debug, Clone, Copy)]
struct Reading {
    /// Redis' clock as the script read it (µs).
    redis_us: u64,
    /// When its reply came.
    at: Instant,
    /// Redis' clock less this host's wall clock then (µs).
    offset_us: i64,
}

/// A moment (an enqueue's send, its reply) by this host's monotonic and
/// wall clocks (µs).
#[derive(Debug, Clone, Copy)]
pub(super) struct Sent {
    at: Instant,
    wall_us: u64,
}

impl Sent {
    /// Now.
    pub(super) fn now() -> Self {
        Sent {
            at: Instant::now(),
            wall_us: crate::ids::now_us(),
        }
    }
}

/// The last reading of Redis' clock an enqueue of this handle took, for
/// the enqueues after it (enqueue.lua, `ARGV[4]`).
#[derive(Debug, Default)]
pub(super) struct EnqueueClock(Mutex<Option<Reading>>);

impl EnqueueClock {
    /// Redis' clock now (µs), to send with an enqueue; `None` when this
    /// handle has no reading within [`READING_FRESH`] or it disagrees with
    /// this host's wall clock: the script reads `TIME`, and its reply is
    /// the next reading.
    pub(super) fn estimate(&self) -> Option<u64> {
        self.estimate_at(Sent::now())
    }

    fn estimate_at(&self, now: Sent) -> Option<u64> {
        let r = (*crate::locks::lock(&self.0))?;
        let since = now.at.saturating_duration_since(r.at);
        if since > READING_FRESH {
            return None;
        }
        let estimate = r
            .redis_us
            .saturating_add(u64::try_from(since.as_micros()).unwrap_or(u64::MAX));
        let wall = i64::try_from(now.wall_us)
            .unwrap_or(i64::MAX)
            .saturating_add(r.offset_us);
        agrees(estimate, wall).then_some(estimate)
    }

    /// Drop the reading held: the next enqueue reads `TIME`.
    pub(super) fn forget(&self) {
        *crate::locks::lock(&self.0) = None;
    }

    /// Note Redis' clock as an enqueue script read it (`redis_us`; 0: it
    /// used the one it was sent, which is no new reading), its call sent
    /// at `sent` and its reply come now.
    pub(super) fn note(&self, redis_us: u64, sent: Sent) {
        self.note_at(redis_us, sent, Sent::now());
    }

    fn note_at(&self, redis_us: u64, sent: Sent, came: Sent) {
        if redis_us == 0 || came.at.saturating_duration_since(sent.at) > READING_TRIP {
            return;
        }
        let mut held = crate::locks::lock(&self.0);
        // Enqueues in flight together may come back out of order: the
        // reading that says the later time now is kept (both are behind
        // Redis' clock), so that a handle's times never go back; unless
        // the one held is stale or no longer agrees with the wall clock
        // (which stepped).
        if let Some(r) = *held {
            let since = came.at.saturating_duration_since(r.at);
            let micros = u64::try_from(since.as_micros()).unwrap_or(u64::MAX);
            let then = r.redis_us.saturating_add(micros);
            let wall = i64::try_from(came.wall_us)
                .unwrap_or(i64::MAX)
                .saturating_add(r.offset_us);
            if since <= READING_FRESH && then >= redis_us && agrees(then, wall) {
                return;
            }
        }
        let offset_us = i64::try_from(redis_us)
            .unwrap_or(i64::MAX)
            .saturating_sub(i64::try_from(came.wall_us).unwrap_or(i64::MAX));
        *held = Some(Reading {
            redis_us,
            at: came.at,
            offset_us,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn success(claimed_us: u64, received: Instant) -> Outcome {
        let mut o = Outcome::new("t", "1", "1", false, Next::Succeeded);
        o.clock = Some((claimed_us, received));
        o
    }

    #[test]
    fn an_ack_sends_its_claims_clock_only_when_it_agrees_with_this_hosts() {
        let start = 1_800_000_000_000_000u64;
        let at = Instant::now();
        let both = [success(start, at), success(start + 5, at)];
        let wall = i64::try_from(start).unwrap();
        let sent = redis_now(both.iter(), wall).unwrap();
        assert!((start + 5..start + 5 + 1_000_000).contains(&sent), "{sent}");
        // A host suspended for a day: its monotonic clock stood still.
        assert_eq!(redis_now(both.iter(), wall + 86_400_000_000), None);
        // Anything but a success, or a job never claimed: Redis' own clock.
        let retry = Outcome::new("t", "2", "1", false, Next::Dead);
        assert_eq!(redis_now([&both[0], &retry].into_iter(), wall), None);
        let unclaimed = success(0, at);
        assert_eq!(redis_now(std::iter::once(&unclaimed), 0), None);
    }

    #[test]
    fn an_enqueue_sends_a_fresh_reading_that_agrees_with_this_hosts_clock() {
        let clock = EnqueueClock::default();
        let at = Instant::now();
        let wall_us = 1_800_000_000_000_000u64;
        let later = |ms: u64, wall_ms: u64| Sent {
            at: at + Duration::from_millis(ms),
            wall_us: wall_us + wall_ms * 1000,
        };
        assert_eq!(clock.estimate_at(later(0, 0)), None, "no reading yet: TIME");
        // Redis' clock 3 s ahead of this host's, read by a call sent at 0
        // whose reply came 1 ms later: 100 ms after that, Redis' clock is
        // that much further (or a little more: the reply's trip).
        let redis = wall_us + 3_000_000 + 500;
        clock.note_at(redis, later(0, 0), later(1, 1));
        assert_eq!(clock.estimate_at(later(101, 101)), Some(redis + 100_000));
        // The script used what it was sent: no new reading.
        clock.note_at(0, later(101, 101), later(102, 102));
        assert_eq!(clock.estimate_at(later(201, 201)), Some(redis + 200_000));
        // A host suspended for an hour: its wall clock moved on, the
        // monotonic one did not.
        assert_eq!(clock.estimate_at(later(201, 3_600_000)), None);
        // A reading older than READING_FRESH is not used.
        let fresh = READING_FRESH.as_millis() as u64;
        assert_eq!(clock.estimate_at(later(fresh + 2, fresh + 2)), None);
        // A reading that came back after a later one says less: the later
        // is kept.
        clock.note_at(redis + 100_000, later(150, 150), later(151, 151));
        assert_eq!(clock.estimate_at(later(201, 201)), Some(redis + 200_000));
        // Unless this host's wall clock stepped since: the new one is.
        clock.note_at(redis + 100_000, later(150, 9_000), later(151, 9_001));
        assert_eq!(clock.estimate_at(later(201, 9_051)), Some(redis + 150_000));
        // Connection trouble drops it.
        clock.forget();
        assert_eq!(clock.estimate_at(later(201, 9_051)), None);
        // Nor one whose round trip was slow: it could be that far behind.
        let other = EnqueueClock::default();
        let slow = READING_TRIP.as_millis() as u64 + 1;
        other.note_at(redis, later(0, 0), later(slow, slow));
        assert_eq!(other.estimate_at(later(slow + 1, slow + 1)), None);
    }
}
