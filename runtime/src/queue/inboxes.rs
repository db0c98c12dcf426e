//! Idle waiters' own lists, registered in `Q:inboxes` so that a worker
//! can delete those of waiters that are gone (docs/queue.md, "Hand-over
//! at idle", step 5).
//!
//! An enqueue hands a job to an idle waiter by pushing it onto the
//! waiter's own list (wake.rs, idle.rs). A worker killed right then
//! leaves the job's copy (its payload too) in that list; the job itself
//! is leased and runs again when its lease lapses. An enqueue used to set
//! the list to expire, a command per job handed over. Now each waiter
//! registers its list, scored by until when (µs, Redis' clock) it may
//! hold a job there unread, and a worker deletes the lists whose
//! registration lapsed (`lua/ring/reap.lua`). An enqueue sets no expiry on
//! a list named `Q:wake:r:…`, which only registered waiters use.

use super::{Queue, QueueError};
use crate::redis::{Conn, is_connection_trouble};
use std::time::Duration;

/// How long past a wait's deadline a waiter's list stays registered. A
/// live waiter reads its list within its wait's reply, or leaves `Q:idle`
/// after a cut-off wait and reads it then (idle.rs): a minute covers both,
/// and a host clock somewhat off.
const GRACE: Duration = Duration::from_secs(60);

/// How often a waiter renews its registration, at most: on the first wait
/// whose deadline plus [`GRACE`] is this much past it (a command per ten
/// seconds of waits, not per wait).
const RENEW: Duration = Duration::from_secs(10);

/// How far past a wait's deadline the registration Redis confirmed before
/// the wait must reach for the waiter to enter `Q:idle` at all. The
/// renewal in the wait's own pipeline may be refused while the entry in
/// `Q:idle` is made (each command of a pipeline stands alone): so a wait
/// after half a minute without waits renews and takes no job; the next
/// may. (A job handed to a list the reap does not know of would stay
/// there for good if its worker died.)
const NEEDED: Duration = Duration::from_secs(30);

/// Most calls of `reap.lua` per turn (each takes 1,000 registrations at
/// most).
const REAP_CALLS: usize = 20;

/// How long `d` is, in µs.
fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// A `ZADD`'s answer: how many members it added, or why Redis refused it.
pub(super) fn answer_of(v: redis::Value) -> Result<i64, String> {
    match v {
        redis::Value::Int(n) => Ok(n),
        redis::Value::ServerError(e) => Err(e.to_string()),
        other => Err(format!("unexpected answer {other:?}")),
    }
}

/// A waiter's registration, as Redis last confirmed it.
#[derive(Debug, Default)]
pub(super) struct Registration {
    /// Until when (µs, Redis' clock) the list is registered (0: not yet).
    until: i64,
    /// Redis refused the last renewal (said once, not at every wait).
    refused: bool,
}

impl Registration {
    /// For a wait until `deadline`: the time to renew the registration to
    /// in the wait's pipeline, if due, and whether the waiter may enter
    /// `Q:idle` (see [`NEEDED`]).
    pub(super) fn plan(&self, deadline: i64) -> (Option<i64>, bool) {
        let covered = deadline.saturating_add(micros(GRACE));
        let renew = (self.until < covered.saturating_sub(micros(RENEW))).then_some(covered);
        (renew, self.until >= deadline.saturating_add(micros(NEEDED)))
    }
}

impl Queue {
    /// Register `inbox`, a new waiter's list, on `conn` (its blocking
    /// connection, not yet waiting), with room for a first wait of up to
    /// half a minute. A refusal is noted in `reg` (no job is then handed
    /// to the waiter); a connection in trouble is an error.
    pub(super) async fn register_inbox(
        &self,
        conn: &mut Conn,
        inbox: &str,
        reg: &mut Registration,
    ) -> Result<(), QueueError> {
        let until = self
            .redis_wall_clock()
            .saturating_add(micros(GRACE + NEEDED));
        self.count_round_trip();
        let answer: redis::RedisResult<redis::Value> = redis::cmd("ZADD")
            .arg(self.key("inboxes"))
            .arg(until)
            .arg(inbox)
            .query_async(conn)
            .await;
        match answer {
            Err(e) if is_connection_trouble(&e) => {
                return Err(self.error("register an idle waiter's list", e));
            }
            Err(e) => self.renewed(reg, inbox, until, Some(Err(e.to_string()))),
            Ok(v) => self.renewed(reg, inbox, until, Some(answer_of(v))),
        }
        Ok(())
    }

    /// Note in `reg` Redis' answer to the registration of `inbox` until
    /// `until` (none: not answered, and the wait's error says why).
    pub(super) fn renewed(
        &self,
        reg: &mut Registration,
        inbox: &str,
        until: i64,
        answer: Option<Result<i64, String>>,
    ) {
        match answer {
            Some(Ok(added)) => {
                // Added, not renewed, while the last one should still
                // stand: Redis lost it (a flush, a failover that dropped
                // the newest writes). A job handed over meanwhile to a
                // worker that died is left in its list.
                if added == 1 && reg.until > self.redis_wall_clock() {
                    tracing::warn!(
                        inbox,
                        "the idle waiter's registration in Q:inboxes was gone before its time; made again"
                    );
                }
                reg.until = until;
                reg.refused = false;
            }
            Some(Err(e)) => {
                if !reg.refused {
                    tracing::warn!(
                        inbox,
                        "Redis refused the idle waiter's registration in Q:inboxes ({e}): no job is handed to it until one is made"
                    );
                }
                reg.refused = true;
            }
            None => {}
        }
    }

    /// Delete the lists of waiters whose registration lapsed
    /// (`lua/ring/reap.lua`), if no other worker did within `every` (a
    /// lock `Q:reap` of its own, not the sweep's: workers of an older
    /// version, which never reap, may hold that one for long); how many
    /// lapsed. Calls follow while one takes its most, up to
    /// [`REAP_CALLS`], so that a fleet whose connections come and go fast
    /// is kept up with. Nothing on a cluster, where no waiter registers.
    pub async fn reap_inboxes(&self, worker: &str, every: Duration) -> Result<i64, QueueError> {
        if self.redis.is_cluster()
            || !self
                .take_turn("reap", worker, every, "take the reap's lock")
                .await?
        {
            return Ok(0);
        }
        let call = self.inner.scripts.reap.key(&self.inner.keys);
        let mut reaped = 0;
        for _ in 0..REAP_CALLS {
            let mut replies = self
                .run_calls(
                    "delete the lists of idle waiters gone",
                    std::slice::from_ref(&call),
                )
                .await?;
            let n = match replies.pop() {
                Some(Ok(redis::Value::Int(n))) => n,
                Some(Err(e)) => return Err(e),
                _ => 0,
            };
            reaped += n;
            if n < 1000 {
                break;
            }
        }
        Ok(reaped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000;

    #[test]
    fn a_registration_is_renewed_every_ten_seconds_of_waits_and_must_stand_first() {
        let now = 1_000 * S;
        // Never registered: renew, and take no job this wait.
        let fresh = Registration::default();
        assert_eq!(fresh.plan(now + 2 * S), (Some(now + 62 * S), false));
        // Made with the connection (90 s): the first waits take jobs and
        // renew nothing.
        let made = Registration {
            until: now + 90 * S,
            refused: false,
        };
        assert_eq!(made.plan(now + 2 * S), (None, true));
        // Forty-odd seconds on: renewed in the wait's pipeline, and
        // standing long enough for this wait.
        assert_eq!(made.plan(now + 41 * S), (Some(now + 101 * S), true));
        // After more than half a minute without waits: renewed, no job.
        assert_eq!(made.plan(now + 61 * S), (Some(now + 121 * S), false));
    }
}
