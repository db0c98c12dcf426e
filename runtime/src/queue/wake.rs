//! An idle worker's wait for work: `BLPOP` on the queue's wake list, ended
//! on time by this host's clock.
//!
//! Redis times out a blocked client only when its event loop runs, and an
//! idle server runs it `hz` times a second (10 by default): a `BLPOP` of
//! 45 ms on a quiet server returns after up to 100 ms. A worker waiting for
//! a timer (a rate refilling, a delayed job due) then starts its job late,
//! and a tenant limited to 20 jobs a second got 18. On a cluster the queue's
//! own slot is often on a quiet master while the tenants' are busy, so it
//! showed there first. So each wait blocks on two lists, the queue's wake
//! list and one of the waiter's own (same slot), and keeps its own timer:
//! when that fires first, the waiter pushes a token onto its own list
//! over the shared connection, which ends the wait at once. Its reply is
//! still read, so a wake token popped at that moment is never lost. (No
//! `CLIENT UNBLOCK`: it needs an admin ACL, and client ids repeat after a
//! restart or on another node.)

use super::{ClaimedJob, Queue, QueueError};
use crate::redis::Conn;
use std::time::Duration;

/// A blocking connection for [`Queue::wait_for_work`], and the waiter's
/// own list (`Q:wake:RANDOM`, in the queue's slot).
#[derive(Debug)]
pub struct WakeWait {
    conn: Conn,
    own: String,
}

/// What a wait's `BLPOP` popped: the list, and the value (a wake token,
/// the host timer's `1`, or a job handed over, which is not text).
type Popped = (String, Vec<u8>);

/// How long a waiter's own list lives after its last token (a worker
/// that died leaves nothing behind for long).
const OWN_LIST_TTL_MS: u64 = 60_000;

impl Queue {
    /// A connection to wait for work on.
    pub async fn wake_waiter(&self) -> Result<WakeWait, QueueError> {
        let conn = self.blocking_connection().await?;
        let own = self.key(&format!("wake:{}", ulid::Ulid::new()));
        Ok(WakeWait { conn, own })
    }

    /// Block until an enqueue wakes us or `timeout` passes (by this host's
    /// clock, see the module doc). With `idle` (a worker id and its lease),
    /// the waiter registers in `Q:idle` for the wait (one Redis only), so
    /// that an enqueue may hand it a job (docs/queue.md, "Hand-over at
    /// idle"): the jobs it was handed, leased to it as a claim leases them.
    /// An error may leave a job handed to it and unread: the caller then
    /// runs [`Queue::leave_idle`], or hands back what it holds unknown
    /// ([`Queue::recover`]).
    pub async fn wait_for_work(
        &self,
        wait: &mut WakeWait,
        timeout: Duration,
        idle: Option<(&str, Duration)>,
    ) -> Result<Vec<ClaimedJob>, QueueError> {
        self.count_round_trip();
        let member = idle
            .filter(|_| !self.redis.is_cluster())
            .map(|(worker, lease)| idle_member(wait, worker, lease));
        let register = member.as_deref().map(|m| (m, self.idle_deadline(timeout)));
        let (reply, nudged) = self.blpop_until(wait, timeout, register).await;
        let token = reply.map_err(|e| self.error("wait for work", e))?;
        let received = std::time::Instant::now();
        let from_own = token.as_ref().is_some_and(|(list, _)| *list == wait.own);
        let mut jobs = Vec::new();
        match (&token, &member) {
            (Some((_, entry)), _) if from_own && entry.first() == Some(&b'j') => {
                // Handed over: the enqueue took this waiter out of `Q:idle`.
                jobs.push(super::reply::parse_handed(entry, received)?);
            }
            (_, Some(member)) => {
                jobs = self.leave(wait, member, nudged && !from_own).await?;
            }
            _ if nudged && !from_own => self.drop_nudge(wait).await,
            _ => {}
        }
        // `t:TENANT` names a tenant with work (ring/prelude.lua): the next
        // claim visits it without a pick.
        let tenant = token.filter(|_| !from_own).and_then(|(_, t)| {
            t.strip_prefix(b"t:")
                .map(|t| String::from_utf8_lossy(t).into_owned())
        });
        *crate::locks::lock(&self.inner.hint) = tenant;
        Ok(jobs)
    }

    /// Take the waiter out of `Q:idle` after a wait that ended without a
    /// job: if an enqueue took it out first, its job is in the inbox
    /// (the enqueue's `ZPOPMAX` and push are one script), and is read
    /// here. `drop_nudge`: the host timer's token may wait in the inbox.
    async fn leave(
        &self,
        wait: &WakeWait,
        member: &str,
        drop_nudge: bool,
    ) -> Result<Vec<ClaimedJob>, QueueError> {
        let mut conn = self.redis.conn();
        self.count_round_trip();
        let removed: i64 = redis::cmd("ZREM")
            .arg(self.key("idle"))
            .arg(member)
            .query_async(&mut conn)
            .await
            .map_err(|e| self.error("leave the idle workers", e))?;
        if removed == 1 {
            // No enqueue can hand us a job now: a stale nudge may go.
            if drop_nudge {
                self.drop_nudge(wait).await;
            }
            return Ok(Vec::new());
        }
        let entries: Option<Vec<Vec<u8>>> = redis::cmd("LPOP")
            .arg(&wait.own)
            .arg(16)
            .query_async(&mut conn)
            .await
            .map_err(|e| self.error("read a job handed over", e))?;
        let received = std::time::Instant::now();
        entries
            .unwrap_or_default()
            .iter()
            .filter(|e| e.first() == Some(&b'j'))
            .map(|e| super::reply::parse_handed(e, received))
            .collect()
    }

    /// After a wait cut off (an error, the stop signal): take the waiter
    /// out of `Q:idle`. True when no job can have been handed to it (it
    /// was still there, or never registered); false when one may sit
    /// unread in its inbox, leased to it: the caller hands it back with
    /// [`Queue::recover`].
    pub async fn leave_idle(&self, wait: &WakeWait, worker: &str, lease: Duration) -> bool {
        if self.redis.is_cluster() {
            return true;
        }
        self.count_round_trip();
        let removed: redis::RedisResult<i64> = redis::cmd("ZREM")
            .arg(self.key("idle"))
            .arg(idle_member(wait, worker, lease))
            .query_async(&mut self.redis.conn())
            .await;
        match removed {
            Ok(n) => n == 1,
            // Refused by Redis (`Q:idle` is not a sorted set, written by
            // hand): no enqueue could take an entry from it either.
            Err(e) if e.code().is_some() => true,
            Err(_) => false,
        }
    }

    /// Delete the waiter's own list: a nudge left there would end the
    /// next wait at once. (Only when no enqueue can push a job there.)
    async fn drop_nudge(&self, wait: &WakeWait) {
        let _: redis::RedisResult<()> = redis::cmd("DEL")
            .arg(&wait.own)
            .query_async(&mut self.redis.conn())
            .await;
    }

    /// Until when a waiter registered now waits, on Redis' clock (µs): the
    /// wait and a second. A worker killed while it waits is passed over
    /// by enqueues from then on.
    fn idle_deadline(&self, timeout: Duration) -> i64 {
        let offset = self
            .inner
            .clock_offset_us
            .load(std::sync::atomic::Ordering::Relaxed);
        let wait = i64::try_from((timeout + IDLE_SLACK).as_micros()).unwrap_or(i64::MAX);
        i64::try_from(crate::ids::now_us())
            .unwrap_or(i64::MAX)
            .saturating_add(offset)
            .saturating_add(wait)
    }

    /// `BLPOP` the wake list and the own list, ended by a token on the own
    /// list if this host's timer fires first; the reply, and whether the
    /// timer fired. `register`: the `Q:idle` entry and its deadline, sent
    /// in the same pipeline, just before the `BLPOP`.
    async fn blpop_until(
        &self,
        wait: &mut WakeWait,
        timeout: Duration,
        register: Option<(&str, i64)>,
    ) -> (redis::RedisResult<Option<Popped>>, bool) {
        let lists = [self.key("wake"), wait.own.clone()];
        let own = wait.own.clone();
        let mut pipe = redis::pipe();
        if let Some((member, deadline)) = register {
            pipe.zadd(self.key("idle"), member, deadline).ignore();
        }
        pipe.blpop(&lists, timeout.as_secs_f64().max(0.01));
        let blpop = async {
            let reply: redis::RedisResult<(Option<Popped>,)> =
                pipe.query_async(&mut wait.conn).await;
            reply.map(|(r,)| r)
        };
        tokio::pin!(blpop);
        tokio::select! {
            reply = &mut blpop => (reply, false),
            () = tokio::time::sleep(timeout + Duration::from_millis(2)) => {
                let nudge: redis::RedisResult<()> = redis::pipe()
                    .lpush(&own, 1)
                    .ignore()
                    .pexpire(&own, OWN_LIST_TTL_MS as i64)
                    .ignore()
                    .query_async(&mut self.redis.conn())
                    .await;
                if nudge.is_err() {
                    // Redis' own timeout ends the wait.
                    tracing::debug!("could not end an idle wait on time: {nudge:?}");
                }
                // Read the reply even so: a token popped just now is ours.
                (blpop.await, true)
            }
        }
    }
}

/// A waiter's entry in `Q:idle`: its inbox, its lease (µs) and its worker
/// id (last: an id may hold spaces), as enqueue.lua's `hand_over` reads it.
fn idle_member(wait: &WakeWait, worker: &str, lease: Duration) -> String {
    format!("{} {} {worker}", wait.own, lease.as_micros())
}

/// How long past its wait a waiter stays in `Q:idle`: the round trip that
/// takes it out, with room for a slow one.
const IDLE_SLACK: Duration = Duration::from_secs(1);
