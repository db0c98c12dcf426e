//! The queue's totals over all its tenants (`PREFIX:{QUEUE}:stats`, field
//! `succeeded`, as before fair share, so that scripts watching a whole
//! queue keep working). The ack scripts cannot write the queue's slot (a
//! script writes one slot of a cluster), so a worker adds its successes
//! itself, [`TOTALS_EVERY`] at a time: one `HINCRBY` per ack call was a
//! command of an idle job's ~20 (docs/performance.md, "Fewer commands
//! per idle job"). The tenants' own counters are the record; this total
//! is a convenience.
//!
//! A success counts once its ack's answer says it was recorded for the
//! first time. A send whose answers were lost (the reply, or the send
//! itself, dropped at a worker's stop) remembers its successes: when
//! they are sent again, a repeat (recorded by the lost send) counts, as
//! a first record does. So a lost reply or an outage that fails every
//! send counts a job neither twice nor not at all, as long as the worker
//! sends it again; a worker that stops without sending it again, or is
//! killed before it added what it holds, leaves the total short by those.

use super::Queue;
use super::model::{Next, Outcome};
use crate::locks::lock;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How long successes wait in a handle at least before
/// [`Queue::flush_totals`] adds them to the queue's totals, as they do
/// while the handle acks [`TOTALS_BATCH`] successes in that time or more.
/// Short: whoever watches the total (`run.sh` in ../shared/bench/peers
/// times a drain by it) sees the end of a burst that late.
pub const TOTALS_EVERY: Duration = Duration::from_millis(20);

/// How many successes a flush waits for, up to [`TOTALS_QUIET`], at a
/// rate too low to bring them within [`TOTALS_EVERY`]: every 20 ms was a
/// command per four jobs at 200 jobs a second, a fiftieth of an idle
/// job's commands (docs/performance.md, "The waiter's flag").
const TOTALS_BATCH: u32 = 50;

/// The longest a success waits in a handle (at a low rate; or the first
/// after a quiet spell, which the last flush's rate does not foresee).
pub const TOTALS_QUIET: Duration = Duration::from_secs(1);

/// The longest wait between flushes while Redis refuses them (doubling
/// from [`TOTALS_EVERY`]).
const TOTALS_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// The most successes of lost answers a handle remembers, and for how
/// long: past either they are forgotten (a repeat of one is then not
/// counted).
const UNSURE_MAX: usize = 100_000;
const UNSURE_FOR: Duration = Duration::from_secs(600);

/// A handle's part of the queue's totals.
pub(super) struct Totals {
    /// Successes not yet added in Redis.
    pending: i64,
    /// A flush is on its way.
    flushing: bool,
    /// The wait before the next flush: [`next_wait`] of the last one,
    /// longer while Redis refuses them.
    wait: Duration,
    /// When the first success of those pending came.
    first: Option<Instant>,
    /// The last flush was refused unrun: no early flush until one is
    /// made ([`TOTALS_BACKOFF_MAX`]).
    backing_off: bool,
    /// Wakes a flush that waits once [`TOTALS_BATCH`] successes are
    /// pending: a burst after a quiet spell is not held for the quiet
    /// spell's wait.
    enough: std::sync::Arc<tokio::sync::Notify>,
    /// Successes (tenant, id, token) of sends whose answers were lost,
    /// and since when.
    unsure: HashMap<(String, String, String), Instant>,
}

impl Default for Totals {
    fn default() -> Self {
        Totals {
            pending: 0,
            flushing: false,
            wait: TOTALS_EVERY,
            first: None,
            backing_off: false,
            enough: std::sync::Arc::default(),
            unsure: HashMap::new(),
        }
    }
}

/// The wait before the next flush, from the last: it carried `carried`
/// successes, acked within `window` (from the first of them to the
/// flush), after a wait of `before`. As long as [`TOTALS_BATCH`] took at
/// that rate, within [`TOTALS_EVERY`] and [`TOTALS_QUIET`], and at most
/// twice `before`: the few stragglers at the end of a drain must not
/// hold its last successes back for a second (`run.sh` times the drain
/// by the total), so the wait grows over a few flushes. (A burst that
/// comes during a long wait wakes the flush early: [`Totals::enough`].)
fn next_wait(window: Duration, carried: i64, before: Duration) -> Duration {
    let carried = u32::try_from(carried.max(1)).unwrap_or(u32::MAX);
    window
        .checked_mul(TOTALS_BATCH)
        .map_or(TOTALS_QUIET, |d| d / carried)
        .min(before.saturating_mul(2))
        .clamp(TOTALS_EVERY, TOTALS_QUIET)
}

/// What became of one outcome of an ack send.
pub(super) enum Answer {
    /// Recorded by this send.
    First,
    /// Recorded already, by an earlier send (its reply lost).
    Repeat,
    /// Refused as stale: a newer attempt owns the job.
    Stale,
    /// No answer: the call's reply was lost, or Redis refused the call.
    Lost,
}

fn key(o: &Outcome) -> (String, String, String) {
    (o.tenant.clone(), o.id.clone(), o.token.clone())
}

impl Totals {
    /// Forget successes of lost answers older than [`UNSURE_FOR`]: once
    /// per send that lost some, not per success (a pass over them all).
    fn forget_old(&mut self) {
        if !self.unsure.is_empty() {
            self.unsure.retain(|_, at| at.elapsed() < UNSURE_FOR);
        }
    }

    /// What a success (`key`) adds to the totals, by its `answer`.
    fn settle(&mut self, key: impl FnOnce() -> (String, String, String), answer: &Answer) -> i64 {
        // The common case, a first record with nothing lost before: no
        // key made (three copies per job, in a worker's busiest loop).
        if matches!(answer, Answer::First) && self.unsure.is_empty() {
            return 1;
        }
        let key = key();
        let was_unsure = self.unsure.remove(&key).is_some();
        match answer {
            // Recorded now; or before, by a send whose answer was lost.
            Answer::First => 1,
            Answer::Repeat if was_unsure => 1,
            // Counted by the earlier send already; or not recorded.
            Answer::Repeat | Answer::Stale => 0,
            Answer::Lost => {
                if self.unsure.len() >= UNSURE_MAX {
                    self.unsure.clear();
                }
                self.unsure.insert(key, Instant::now());
                0
            }
        }
    }
}

impl Queue {
    /// Count a send of `outcomes` by what became of each (`answers`, in
    /// the same order; all [`Answer::Lost`] when the whole send failed).
    fn count_answers(&self, outcomes: &[Outcome], answers: &[Answer]) {
        let delta = {
            let mut totals = lock(&self.inner.totals);
            if answers.iter().any(|a| matches!(a, Answer::Lost)) {
                totals.forget_old();
            }
            outcomes
                .iter()
                .zip(answers)
                .filter(|(o, _)| o.next == Next::Succeeded)
                .map(|(o, answer)| totals.settle(|| key(o), answer))
                .sum()
        };
        self.add_totals(delta);
    }

    /// Hold `delta` successes for the queue's totals, and see that they
    /// are added after the handle's wait (outside a runtime, as when an
    /// ack is dropped at the end of one, they wait for the next flush).
    fn add_totals(&self, delta: i64) {
        let mut totals = lock(&self.inner.totals);
        totals.pending += delta;
        if totals.pending == 0 {
            return;
        }
        let first = *totals.first.get_or_insert_with(Instant::now);
        // Enough for a flush (once, as the pending count reaches it): the
        // one that waits (or the one spawned below) goes early, unless
        // Redis refuses them (the backoff's wait holds then).
        let batch = i64::from(TOTALS_BATCH);
        if totals.pending >= batch && totals.pending - delta < batch && !totals.backing_off {
            totals.enough.notify_one();
        }
        if totals.flushing {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        totals.flushing = true;
        let enough = std::sync::Arc::clone(&totals.enough);
        let mut flush = Flush(self.clone(), false);
        runtime.spawn(async move {
            // The wait as the flush before left it: one on its way now
            // sets it when its answer comes.
            let wait = {
                let _after = flush.0.inner.totals_flush.lock().await;
                lock(&flush.0.inner.totals).wait
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                // Enough for a flush: no sooner than TOTALS_EVERY after
                // the first of them.
                () = enough.notified() => {
                    tokio::time::sleep_until((first + TOTALS_EVERY).into()).await;
                }
            }
            flush.0.flush_totals().await;
            flush.ran();
        });
    }

    /// Add the successes this handle holds to the queue's totals now (a
    /// worker does at its stop, after a flush on its way, if any), and
    /// return how many it could not add. Sent once (never again by a
    /// cluster client after a dropped connection), and again only while
    /// Redis says it did not run it (a refused connection, a slot moving
    /// or loading): then held for the next flush, later each time. Any
    /// other failure is logged and leaves the totals that far off.
    pub async fn flush_totals(&self) -> i64 {
        let _one_at_a_time = self.inner.totals_flush.lock().await;
        let (delta, first) = {
            let mut totals = lock(&self.inner.totals);
            totals.flushing = false;
            (std::mem::take(&mut totals.pending), totals.first.take())
        };
        if delta == 0 {
            return 0;
        }
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        pipe.cmd("HINCRBY")
            .arg(self.key("stats"))
            .arg("succeeded")
            .arg(delta);
        let mut conn = self.redis.once_conn();
        let sent = crate::redis::send_until_served(&mut conn, &pipe).await;
        let failed = match sent {
            Ok(mut replies) => replies.pop().and_then(Result::err),
            Err(e) => Some(e),
        };
        let wait = match failed {
            None => {
                let window = first.map_or(Duration::ZERO, |at| at.elapsed());
                next_wait(window, delta, lock(&self.inner.totals).wait)
            }
            Some(e) if e.is_connection_refusal() || crate::redis::not_served(&e) => {
                let mut totals = lock(&self.inner.totals);
                totals.wait = (totals.wait * 2).min(TOTALS_BACKOFF_MAX);
                totals.backing_off = true;
                drop(totals);
                self.add_totals(delta);
                return delta;
            }
            Some(e) => {
                tracing::warn!(
                    "ack: the queue's totals were not updated ({}): they are {delta} off",
                    self.error("add to the queue's totals", e)
                );
                TOTALS_EVERY
            }
        };
        let mut totals = lock(&self.inner.totals);
        totals.wait = wait;
        totals.backing_off = false;
        0
    }
}

/// A flush on its way, and whether it ran: if its task is dropped before
/// (its runtime ended), the handle no longer waits for it.
struct Flush(Queue, bool);

impl Flush {
    fn ran(&mut self) {
        self.1 = true;
    }
}

impl Drop for Flush {
    fn drop(&mut self) {
        if !self.1 {
            lock(&self.0.inner.totals).flushing = false;
        }
    }
}

/// An ack send, settled as [`Answer::Lost`] if it is dropped before its
/// answers (a worker's acker aborted at its stop): its successes are
/// remembered, and count if they are sent again.
pub(super) struct Counted<'a> {
    queue: &'a Queue,
    outcomes: &'a [Outcome],
    settled: bool,
}

impl<'a> Counted<'a> {
    /// A send of `outcomes` about to go.
    pub(super) fn new(queue: &'a Queue, outcomes: &'a [Outcome]) -> Self {
        Counted {
            queue,
            outcomes,
            settled: false,
        }
    }

    /// Count the send by its answers.
    pub(super) fn settle(mut self, answers: &[Answer]) {
        self.settled = true;
        self.queue.count_answers(self.outcomes, answers);
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        if !self.settled {
            let lost: Vec<Answer> = self.outcomes.iter().map(|_| Answer::Lost).collect();
            self.queue.count_answers(self.outcomes, &lost);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(id: &str) -> (String, String, String) {
        ("acme".into(), id.into(), "7".into())
    }

    /// Each success is counted once over its sends, whatever became of
    /// their replies: it counts when an answer says it was recorded, by
    /// this send or by one whose answer was lost.
    #[test]
    fn a_success_counts_once_over_lost_replies_and_repeats() {
        let mut t = Totals::default();
        // Recorded by its first send.
        assert_eq!(t.settle(|| k("a"), &Answer::First), 1);
        // Sent again after its reply came (a fallback): not again.
        assert_eq!(t.settle(|| k("a"), &Answer::Repeat), 0);
        // A reply lost, then the send again finds it recorded: once.
        assert_eq!(t.settle(|| k("b"), &Answer::Lost), 0);
        assert_eq!(t.settle(|| k("b"), &Answer::Repeat), 1);
        // And a third send of it counts nothing more.
        assert_eq!(t.settle(|| k("b"), &Answer::Repeat), 0);
        // Lost twice (an outage), then recorded by the send after: once.
        assert_eq!(t.settle(|| k("c"), &Answer::Lost), 0);
        assert_eq!(t.settle(|| k("c"), &Answer::Lost), 0);
        assert_eq!(t.settle(|| k("c"), &Answer::First), 1);
        // Stale: never.
        assert_eq!(t.settle(|| k("d"), &Answer::Lost), 0);
        assert_eq!(t.settle(|| k("d"), &Answer::Stale), 0);
        assert!(t.unsure.is_empty());
    }

    /// A flush waits for about fifty successes at the rate the last one
    /// saw, within 20 ms and a second.
    #[test]
    fn a_flush_waits_longer_the_lower_the_rate() {
        let ms = Duration::from_millis;
        // A drain (a thousand in 20 ms): every 20 ms, so that its end is
        // seen that late.
        assert_eq!(next_wait(ms(20), 1_000, ms(20)), TOTALS_EVERY);
        // 200 jobs a second: fifty take 250 ms.
        assert_eq!(next_wait(ms(1_000), 200, ms(500)), ms(250));
        // One success (a quiet spell): a second at most.
        assert_eq!(next_wait(ms(250), 1, ms(800)), TOTALS_QUIET);
        assert_eq!(next_wait(Duration::MAX, 0, Duration::MAX), TOTALS_QUIET);
        // A drain's last few: twice the wait before, not a second.
        assert_eq!(next_wait(ms(20), 2, ms(20)), ms(40));
        assert_eq!(next_wait(ms(40), 1, ms(40)), ms(80));
    }
}
