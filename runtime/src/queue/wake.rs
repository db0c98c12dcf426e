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
/// own list (`Q:wake:RANDOM`, in the queue's slot): its host timer's
/// tokens, and the jobs handed to it at idle.
#[derive(Debug)]
pub struct WakeWait {
    conn: Conn,
    own: String,
}

impl WakeWait {
    /// The waiter's own list, its inbox for jobs handed over.
    pub fn inbox(&self) -> &str {
        &self.own
    }
}

/// How a wait for work ended.
#[derive(Debug)]
pub struct Woke {
    /// Jobs an enqueue handed to the waiter, leased to it as a claim
    /// leases them.
    pub jobs: Vec<ClaimedJob>,
    /// Something else ended the wait too (a wake token, the timer, the
    /// timeout): claim next. False when the wait's reply was a job
    /// handed over: the worker may wait again at once.
    pub claim: bool,
    /// An enqueue took the waiter's registration, but no job was found:
    /// hand back what is leased to the worker and unknown to it
    /// ([`Queue::recover`]), in case a job went astray.
    pub lost: bool,
}

/// What a wait's `BLPOP` popped: the list, and the value (a wake token,
/// the host timer's `1`, or a job handed over, which is not text).
type Popped = (String, Vec<u8>);

/// How long a waiter's own list lives after its last token (a worker
/// that died leaves nothing behind for long).
const OWN_LIST_TTL_MS: u64 = 60_000;

impl Queue {
    /// A connection to wait for work on, with a new own list of its own
    /// (a connection Redis still holds blocked on an older one, after a
    /// cut this side saw first, must not take a job meant for this one).
    pub async fn wake_waiter(&self) -> Result<WakeWait, QueueError> {
        let conn = self.blocking_connection().await?;
        let own = self.key(&format!("wake:{}", ulid::Ulid::new()));
        Ok(WakeWait { conn, own })
    }

    /// Block until an enqueue wakes us or `timeout` passes (by this host's
    /// clock, see the module doc). With `idle` (a worker id and its lease),
    /// the waiter registers in `Q:idle` for the wait (one Redis only), so
    /// that an enqueue may hand it a job (docs/queue.md, "Hand-over at
    /// idle", and idle.rs). An error may leave it registered, or a job
    /// handed to it unread: the caller then runs [`Queue::leave_idle`]
    /// until it answers, before anything else.
    pub async fn wait_for_work(
        &self,
        wait: &mut WakeWait,
        timeout: Duration,
        idle: Option<(&str, Duration)>,
    ) -> Result<Woke, QueueError> {
        self.count_round_trip();
        let member = idle
            .filter(|(worker, _)| !self.redis.is_cluster() && !worker.is_empty())
            .map(|(worker, lease)| super::idle::member(&wait.own, worker, lease));
        let register = member.as_deref().map(|m| (m, self.idle_deadline(timeout)));
        let (registered, reply, nudged) = self.blpop_until(wait, timeout, register).await;
        // (A registration Redis refused, over `maxmemory` say, left nothing
        // to take back.)
        let member = member.filter(|_| registered);
        let token = reply.map_err(|e| self.error("wait for work", e))?;
        let received = std::time::Instant::now();
        let from_own = token.as_ref().is_some_and(|(list, _)| *list == wait.own);
        let mut woke = Woke {
            jobs: Vec::new(),
            claim: true,
            lost: false,
        };
        match (&token, &member) {
            (Some((_, entry)), _) if from_own && entry.first() == Some(&b'j') => {
                // Handed over: the enqueue took this waiter out of `Q:idle`.
                woke.jobs.push(super::reply::parse_handed(entry, received)?);
                woke.claim = false;
            }
            (_, Some(member)) => {
                let (left, jobs) = self.leave(&wait.own, member).await?;
                // No enqueue can hand us a job now: a stale nudge may go.
                if left && nudged && !from_own {
                    self.drop_nudge(wait).await;
                }
                // Taken with nothing in the inbox: an expired entry dropped,
                // or a job gone where this wait cannot see it.
                woke.lost = !left && jobs.is_empty();
                woke.jobs = jobs;
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
        Ok(woke)
    }

    /// Delete the waiter's own list: a nudge left there would end the
    /// next wait at once. (Only when no enqueue can push a job there.)
    async fn drop_nudge(&self, wait: &WakeWait) {
        let _: redis::RedisResult<()> = redis::cmd("DEL")
            .arg(&wait.own)
            .query_async(&mut self.redis.conn())
            .await;
    }

    /// `BLPOP` the wake list and the own list, ended by a token on the own
    /// list if this host's timer fires first: whether the registration
    /// (`register`: the `Q:idle` entry and its deadline, sent in the same
    /// pipeline just before the `BLPOP`) was made, the reply, and whether
    /// the timer fired.
    async fn blpop_until(
        &self,
        wait: &mut WakeWait,
        timeout: Duration,
        register: Option<(&str, i64)>,
    ) -> (bool, redis::RedisResult<Option<Popped>>, bool) {
        let lists = [self.key("wake"), wait.own.clone()];
        let own = wait.own.clone();
        let mut pipe = redis::pipe();
        // Each command's own answer: a refused registration must not hide
        // what the `BLPOP` popped.
        pipe.ignore_errors();
        if let Some((member, deadline)) = register {
            pipe.zadd(self.key("idle"), member, deadline);
        }
        pipe.blpop(&lists, timeout.as_secs_f64().max(0.01));
        let registering = register.is_some();
        let blpop = async {
            if registering {
                let reply: redis::RedisResult<(
                    redis::RedisResult<i64>,
                    redis::RedisResult<Option<Popped>>,
                )> = pipe.query_async(&mut wait.conn).await;
                match reply {
                    Ok((added, popped)) => (added.is_ok(), popped),
                    // Nothing came back: it may have been made.
                    Err(e) => (true, Err(e)),
                }
            } else {
                let reply: redis::RedisResult<(redis::RedisResult<Option<Popped>>,)> =
                    pipe.query_async(&mut wait.conn).await;
                (false, reply.and_then(|(popped,)| popped))
            }
        };
        tokio::pin!(blpop);
        tokio::select! {
            (registered, reply) = &mut blpop => (registered, reply, false),
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
                let (registered, reply) = blpop.await;
                (registered, reply, true)
            }
        }
    }
}
