//! The waiter's side of the hand-over at idle (docs/queue.md, "Hand-over
//! at idle"; the enqueue's side is `hand_over` in `lua/enqueue.lua`).
//!
//! A worker waiting for work registers in `Q:idle` as `INBOX hLEASE_US
//! WORKER` under a deadline on Redis' clock (sent with its `BLPOP`, see
//! wake.rs). An enqueue that hands it a job takes the entry (`ZPOPMAX`)
//! and pushes the job onto the inbox in the same script. So after any wait
//! that did not itself return the job, the waiter must know which of the
//! two happened before it claims, recovers or stops: `ZREM` of its entry
//! answers it (1: still there, nothing was handed; 0: taken, the job is in
//! the inbox). Until Redis answers, the worker does nothing else: a
//! recovery run meanwhile could not see a job handed after it, and a
//! registration left behind could take one that nobody reads.

use super::{ClaimedJob, Queue, QueueError};
use crate::redis::is_connection_trouble;
use std::time::Duration;

/// How long past its wait a waiter stays in `Q:idle`: the round trip that
/// takes it out, with room for a slow one. A worker killed while it waits
/// is passed over by enqueues from then on.
const IDLE_SLACK: Duration = Duration::from_secs(1);

/// Most entries read from an inbox at once (one is the rule: an entry per
/// registration).
const INBOX_READ: usize = 16;

/// A waiter's entry in `Q:idle`: its inbox, its lease (µs) and its worker
/// id (last: an id may hold spaces), as enqueue.lua's `hand_over` reads it.
/// The `h` before the lease says the worker renews and acks a lease as its
/// entry in `T:leased` (lua/lib.lua, `lease_entry`): an enqueue of the
/// version before, which would lease it in `T:leases`, reads no such entry
/// and hands it nothing.
pub(super) fn member(inbox: &str, worker: &str, lease: Duration) -> String {
    format!("{inbox} h{} {worker}", lease.as_micros())
}

impl Queue {
    /// Take the waiter with `inbox` (and `worker`, `lease` as it
    /// registered) out of `Q:idle` after a wait cut off. `None`: it was
    /// still there (or never registered: a cluster), so nothing was handed
    /// to it. `Some`: an enqueue took its entry, and these are the jobs
    /// read from its inbox, leased to it; none means the job went with
    /// the reply the cut-off wait never read (or the entry had expired
    /// and was dropped): hand back what is leased to the worker and
    /// unknown to it ([`Queue::recover`]). An error says nothing: ask
    /// again before anything else (see the module doc).
    pub async fn leave_idle(
        &self,
        inbox: &str,
        worker: &str,
        lease: Duration,
    ) -> Result<Option<Vec<ClaimedJob>>, QueueError> {
        if self.redis.is_cluster() || worker.is_empty() {
            return Ok(None);
        }
        let (left, jobs) = self.leave(inbox, &member(inbox, worker, lease)).await?;
        Ok((!left).then_some(jobs))
    }

    /// `ZREM` the entry `member`; whether it was there, and, when it was
    /// not, the jobs in `inbox`. A `Q:idle` that is not a sorted set
    /// (written by hand) holds no entry, and no enqueue can take one.
    pub(super) async fn leave(
        &self,
        inbox: &str,
        member: &str,
    ) -> Result<(bool, Vec<ClaimedJob>), QueueError> {
        let mut conn = self.redis.conn();
        self.count_round_trip();
        let removed: redis::RedisResult<i64> = redis::cmd("ZREM")
            .arg(self.key("idle"))
            .arg(member)
            .query_async(&mut conn)
            .await;
        match removed {
            Ok(1) => return Ok((true, Vec::new())),
            Ok(_) => {}
            // Refused for good (`WRONGTYPE`, `NOPERM`): the registration was
            // refused the same way, and no enqueue can take it.
            Err(e) if !is_connection_trouble(&e) => {
                tracing::warn!("leaving the idle workers: {e}");
                return Ok((true, Vec::new()));
            }
            Err(e) => return Err(self.error("leave the idle workers", e)),
        }
        self.count_round_trip();
        let entries: Option<Vec<Vec<u8>>> = match redis::cmd("LPOP")
            .arg(inbox)
            .arg(INBOX_READ)
            .query_async(&mut conn)
            .await
        {
            Ok(entries) => entries,
            // An inbox no one can read (a key of the wrong type written by
            // hand): nothing found, so the caller hands back what is leased
            // to it; its next wait has a new inbox.
            Err(e) if !is_connection_trouble(&e) => {
                tracing::warn!("reading a job handed over: {e}");
                None
            }
            Err(e) => return Err(self.error("read a job handed over", e)),
        };
        let received = std::time::Instant::now();
        let jobs = entries
            .unwrap_or_default()
            .iter()
            .filter(|e| e.first() == Some(&b'j'))
            .map(|e| super::reply::parse_handed(e, received))
            .collect::<Result<_, _>>()?;
        Ok((false, jobs))
    }

    /// Until when a waiter registered now waits, on Redis' clock (µs): the
    /// wait and [`IDLE_SLACK`], by this host's clock and the offset its
    /// claims saw.
    pub(super) fn idle_deadline(&self, timeout: Duration) -> i64 {
        let wait = i64::try_from((timeout + IDLE_SLACK).as_micros()).unwrap_or(i64::MAX);
        self.redis_wall_clock().saturating_add(wait)
    }
}
