//! The waiter's side of the hand-over at idle (docs/queue.md, "Hand-over
//! at idle"; the enqueue's side is `hand_over` in `lua/enqueue.lua`).
//!
//! A worker waiting for work registers in `Q:idle` as `INBOX pLEASE_US
//! WORKER` under a deadline on Redis' clock ([`REGISTRATION`] ahead, sent
//! with its `BLPOP`, see wake.rs). An enqueue that hands it a job leaves
//! the entry where it is and pushes the job onto the inbox in the same
//! script. So the registration stands across jobs handed over and across
//! the worker's claims: it is made again only when its deadline comes
//! near ([`REFRESH`]), not at every wait (a command fewer per job handed
//! over), and there is no moment after a job is handed over, or while
//! the worker claims, at which an enqueue finds no one to hand its job
//! to. In return the entry says nothing of what was handed: a worker
//! that stops waiting for long (it is full, it stops, its wait was cut
//! off) leaves `Q:idle` and reads its inbox in one round trip (`ZREM`,
//! `LPOP`). Until Redis answers, the worker does nothing else: a recovery
//! run meanwhile could not see a job handed after it, and a registration
//! left behind could take one that nobody reads.

use super::{ClaimedJob, Queue, QueueError};
use std::time::Duration;

/// How far ahead of the registration's moment its deadline is (Redis'
/// clock). A worker killed while registered is passed over by enqueues
/// from then on: within two seconds.
pub(super) const REGISTRATION: Duration = Duration::from_secs(2);

/// A waiter registers again (its deadline [`REGISTRATION`] on) at the
/// first wait that finds less than this left: once a second at most.
pub(super) const REFRESH: Duration = Duration::from_secs(1);

/// Most entries read from an inbox at once.
const INBOX_READ: usize = 16;

/// A waiter's entry in `Q:idle`: its inbox, its lease (µs) and its worker
/// id (last: an id may hold spaces), as enqueue.lua's `hand_over` reads it.
/// The `p` before the lease says the entry stands until its deadline or
/// until the waiter leaves, and that the worker renews and acks a lease
/// as its entry in `T:leased` (lua/lib.lua, `lease_entry`). An enqueue of
/// a version before 2026-12-05 cannot read it: it takes the entry and
/// hands nothing over (the worker registers again within a second). One
/// with `h` (a worker of the version before) is taken by the enqueue
/// that hands it a job, as before.
pub(super) fn member(inbox: &str, worker: &str, lease: Duration) -> String {
    format!("{inbox} p{} {worker}", lease.as_micros())
}

impl Queue {
    /// The flag `Q:on:MEMBER` a waiter keeps beside its entry `member`,
    /// set with it for [`REGISTRATION`] and deleted when it leaves: an
    /// enqueue that chose this waiter before names the flag in its look
    /// (one `EXISTS` that it makes anyway) and, while it stands, hands the
    /// waiter its job without reading `Q:idle` (enqueue.lua, `hand_over`).
    pub(super) fn waiter_flag(&self, member: &str) -> String {
        format!("{}:on:{member}", self.inner.keys)
    }

    /// Whether enqueues may hand jobs to this handle's waiters: on one
    /// Redis, not on a cluster (where a wait's reply never carries a job).
    pub fn hands_over(&self) -> bool {
        !self.redis.is_cluster()
    }

    /// Take the waiter with `inbox` (and `worker`, `lease` as it
    /// registered) out of `Q:idle`, and read what was handed to it: the
    /// jobs found in its inbox, leased to it. After a wait cut off, a job
    /// may also have gone with the reply it never read: the caller then
    /// hands back what is leased to the worker and unknown to it
    /// ([`Queue::recover`]). An error says nothing: ask again before
    /// anything else (see the module doc). On a cluster nothing is
    /// registered: nothing to leave.
    pub async fn leave_idle(
        &self,
        inbox: &str,
        worker: &str,
        lease: Duration,
    ) -> Result<Vec<ClaimedJob>, QueueError> {
        if self.redis.is_cluster() || worker.is_empty() {
            return Ok(Vec::new());
        }
        self.leave(inbox, &member(inbox, worker, lease)).await
    }

    /// `DEL` the entry's flag, `ZREM` the entry `member` and `LPOP`
    /// `inbox`, in one round trip (in that order: no job is handed over
    /// after the `ZREM`), then `LPOP`
    /// again while a read comes back full; the jobs found. A `Q:idle`
    /// that is not a sorted set (written by hand) holds no entry, and an
    /// inbox no one can read (a key of the wrong type) holds no job: the
    /// caller hands back what is leased to it if unsure, and its next wait
    /// has a new inbox. Any other refusal (`BUSY`, `LOADING`, `READONLY`:
    /// Redis busy or failing over) is an error, asked again: a worker that
    /// took itself for gone would leave a job in its inbox that the
    /// recovery hands back and its next wait runs again.
    pub(super) async fn leave(
        &self,
        inbox: &str,
        member: &str,
    ) -> Result<Vec<ClaimedJob>, QueueError> {
        let mut conn = self.redis.conn();
        self.count_round_trip();
        let replies: redis::RedisResult<Vec<redis::Value>> = redis::pipe()
            .ignore_errors()
            .del(self.waiter_flag(member))
            .zrem(self.key("idle"), member)
            .cmd("LPOP")
            .arg(inbox)
            .arg(INBOX_READ)
            .query_async(&mut conn)
            .await;
        let replies = match replies {
            Ok(replies) => replies,
            Err(e) if refused_for_good(&e) => {
                tracing::warn!("leaving the idle workers: {e}");
                return Ok(Vec::new());
            }
            Err(e) => return Err(self.error("leave the idle workers", e)),
        };
        let mut replies = replies.into_iter();
        for _flag_then_entry in 0..2 {
            if let Some(redis::Value::ServerError(e)) = replies.next() {
                let e = redis::RedisError::from(e);
                if !refused_for_good(&e) {
                    return Err(self.error("leave the idle workers", e));
                }
                // The registration was refused the same way: no enqueue
                // can take it.
                tracing::warn!("leaving the idle workers: {e}");
            }
        }
        let mut entries = self.read_inbox(replies.next())?;
        let mut last = entries.len();
        while last == INBOX_READ {
            self.count_round_trip();
            let more: redis::RedisResult<redis::Value> = redis::cmd("LPOP")
                .arg(inbox)
                .arg(INBOX_READ)
                .query_async(&mut conn)
                .await;
            let more = match more {
                Ok(v) => self.read_inbox(Some(v))?,
                Err(e) => return Err(self.error("read a job handed over", e)),
            };
            last = more.len();
            entries.extend(more);
        }
        let received = std::time::Instant::now();
        entries
            .iter()
            .filter(|e| e.first() == Some(&b'j'))
            .map(|e| super::reply::parse_handed(e, received))
            .collect()
    }

    /// The entries an inbox's `LPOP` returned (none: an inbox of the wrong
    /// type, refused for good).
    fn read_inbox(&self, reply: Option<redis::Value>) -> Result<Vec<Vec<u8>>, QueueError> {
        match reply {
            Some(redis::Value::ServerError(e)) => {
                let e = redis::RedisError::from(e);
                if !refused_for_good(&e) {
                    return Err(self.error("read a job handed over", e));
                }
                tracing::warn!("reading a job handed over: {e}");
                Ok(Vec::new())
            }
            Some(v) => Ok(redis::from_redis_value::<Option<Vec<Vec<u8>>>>(v)
                .map_err(|e| self.error("read a job handed over", redis::RedisError::from(e)))?
                .unwrap_or_default()),
            None => Ok(Vec::new()),
        }
    }

    /// Until when a waiter registered now stays registered, on Redis'
    /// clock (µs): [`REGISTRATION`] on, by this host's clock and the
    /// offset its claims saw.
    pub(super) fn idle_deadline(&self) -> i64 {
        let ahead = i64::try_from(REGISTRATION.as_micros()).unwrap_or(i64::MAX);
        self.redis_wall_clock().saturating_add(ahead)
    }
}

/// A refusal that asking again cannot change: a key of the wrong type
/// (written by hand) or an ACL that forbids the command.
fn refused_for_good(e: &redis::RedisError) -> bool {
    matches!(e.code(), Some("WRONGTYPE" | "NOPERM"))
}
