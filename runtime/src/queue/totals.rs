//! The queue's totals over all its tenants (`PREFIX:{QUEUE}:stats`, field
//! `succeeded`, as before fair share, so that scripts watching a whole
//! queue keep working). The ack scripts cannot write the queue's slot (a
//! script writes one slot of a cluster), so a worker adds its successes
//! itself, [`TOTALS_EVERY`] at a time: one `HINCRBY` per ack call was a
//! command of an idle job's ~20 (docs/performance.md, "Fewer commands
//! per idle job"). The tenants' own counters are the record; this total
//! is a convenience, and a worker killed with `kill -9` loses what it had
//! not added yet.
//!
//! An ack send counts its successes before it goes ([`Counted`]); its
//! replies then take back what was not recorded for the first time. A
//! send whose replies were lost (or that was dropped unanswered) takes
//! its successes back and remembers them: when they are sent again, a
//! repeat (recorded by the lost send) counts, as a first record does. So
//! neither a lost reply nor an outage that fails every send counts a job
//! twice or not at all, as long as the worker sends again.

use super::Queue;
use super::model::{Next, Outcome};
use crate::locks::lock;
use std::collections::HashSet;
use std::time::Duration;

/// How long successes wait in a handle before [`Queue::flush_totals`]
/// adds them to the queue's totals. Short: whoever watches the total
/// (`run.sh` in ../shared/bench/peers times a drain by it) sees it that
/// late. At 200 jobs a second, one command per four jobs or so.
pub const TOTALS_EVERY: Duration = Duration::from_millis(20);

/// The most successes of lost replies a handle remembers; past it they
/// are forgotten (a repeat of one is then not counted).
const UNSURE_MAX: usize = 100_000;

/// A handle's part of the queue's totals.
#[derive(Default)]
pub(super) struct Totals {
    /// Successes not yet added in Redis.
    pending: i64,
    /// A flush is on its way.
    flushing: bool,
    /// Successes (tenant, id, token) of sends whose replies were lost.
    unsure: HashSet<(String, String, String)>,
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
    /// What to add for a success (`key`) that a send counted, by its
    /// `answer`: 0 to keep the count, -1 to take it back.
    fn settle(&mut self, key: impl FnOnce() -> (String, String, String), answer: &Answer) -> i64 {
        // The common case, a first record with nothing lost before: no
        // key made (three copies per job, in a worker's busiest loop).
        if matches!(answer, Answer::First) && self.unsure.is_empty() {
            return 0;
        }
        let key = key();
        let was_unsure = self.unsure.remove(&key);
        match answer {
            // Recorded now; or before, by a send whose count was taken
            // back when its reply was lost.
            Answer::First => 0,
            Answer::Repeat if was_unsure => 0,
            // Counted by the earlier send already; or not recorded.
            Answer::Repeat | Answer::Stale => -1,
            Answer::Lost => {
                if self.unsure.len() >= UNSURE_MAX {
                    self.unsure.clear();
                }
                self.unsure.insert(key);
                -1
            }
        }
    }
}

impl Queue {
    /// Count the successes among `outcomes`, an ack send about to go.
    fn count_sent(&self, outcomes: &[Outcome]) {
        let n = outcomes
            .iter()
            .filter(|o| o.next == Next::Succeeded)
            .count();
        self.add_totals(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// Settle the count of a send of `outcomes` by what became of each
    /// (`answers`, in the same order; all [`Answer::Lost`] when the whole
    /// send failed).
    fn count_answers(&self, outcomes: &[Outcome], answers: &[Answer]) {
        let delta = {
            let mut totals = lock(&self.inner.totals);
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
    /// are added within [`TOTALS_EVERY`] (outside a runtime, as when an
    /// ack is dropped at the end of one, they wait for the next flush).
    fn add_totals(&self, delta: i64) {
        if delta == 0 {
            return;
        }
        let mut totals = lock(&self.inner.totals);
        totals.pending += delta;
        if totals.flushing {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        totals.flushing = true;
        let queue = self.clone();
        runtime.spawn(async move {
            tokio::time::sleep(TOTALS_EVERY).await;
            queue.flush_totals().await;
        });
    }

    /// Add the successes this handle holds to the queue's totals now (a
    /// worker does at its stop, after a flush on its way, if any). Sent
    /// once (never again by a cluster client after a dropped connection);
    /// a refused connection leaves them held for the next flush, any
    /// other failure is logged and leaves the totals that far off.
    pub async fn flush_totals(&self) {
        let _one_at_a_time = self.inner.totals_flush.lock().await;
        let delta = {
            let mut totals = lock(&self.inner.totals);
            totals.flushing = false;
            std::mem::take(&mut totals.pending)
        };
        if delta == 0 {
            return;
        }
        let mut conn = self.redis.once_conn();
        let added: Result<i64, redis::RedisError> = redis::cmd("HINCRBY")
            .arg(self.key("stats"))
            .arg("succeeded")
            .arg(delta)
            .query_async(&mut conn)
            .await;
        match added {
            Ok(_) => {}
            Err(e) if e.is_connection_refusal() => self.add_totals(delta),
            Err(e) => tracing::warn!(
                "ack: the queue's totals were not updated ({}): they are {delta} off",
                self.error("add to the queue's totals", e)
            ),
        }
    }
}

/// An ack send's count, settled as [`Answer::Lost`] if the send is
/// dropped before its answers (a worker's acker aborted at its stop):
/// what may not have reached Redis is not added.
pub(super) struct Counted<'a> {
    queue: &'a Queue,
    outcomes: &'a [Outcome],
    settled: bool,
}

impl<'a> Counted<'a> {
    /// Count `outcomes`' successes for a send about to go
    /// ([`Queue::count_sent`]).
    pub(super) fn new(queue: &'a Queue, outcomes: &'a [Outcome]) -> Self {
        queue.count_sent(outcomes);
        Counted {
            queue,
            outcomes,
            settled: false,
        }
    }

    /// Settle the count by the send's answers ([`Queue::count_answers`]).
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
    /// their replies: a send counts it, and its answer keeps or takes
    /// back that count.
    #[test]
    fn a_success_counts_once_over_lost_replies_and_repeats() {
        let mut t = Totals::default();
        // Recorded by its first send: kept.
        assert_eq!(1 + t.settle(|| k("a"), &Answer::First), 1);
        // Sent again after its reply came (a fallback): not again.
        assert_eq!(1 + t.settle(|| k("a"), &Answer::Repeat), 0);
        // A reply lost, then the send again finds it recorded: once.
        assert_eq!(1 + t.settle(|| k("b"), &Answer::Lost), 0);
        assert_eq!(1 + t.settle(|| k("b"), &Answer::Repeat), 1);
        // And a third send of it counts nothing more.
        assert_eq!(1 + t.settle(|| k("b"), &Answer::Repeat), 0);
        // Lost twice (an outage), then recorded by the send after: once.
        assert_eq!(1 + t.settle(|| k("c"), &Answer::Lost), 0);
        assert_eq!(1 + t.settle(|| k("c"), &Answer::Lost), 0);
        assert_eq!(1 + t.settle(|| k("c"), &Answer::First), 1);
        // Stale: never.
        assert_eq!(1 + t.settle(|| k("d"), &Answer::Lost), 0);
        assert_eq!(1 + t.settle(|| k("d"), &Answer::Stale), 0);
        assert!(t.unsure.is_empty());
    }
}
