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

use super::inboxes::{Registration, answer_of};
use super::{ClaimedJob, Queue, QueueError};
use crate::redis::Conn;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// A blocking connection for [`Queue::wait_for_work`], and the waiter's
/// own list (`Q:wake:r:RANDOM`, in the queue's slot): its host timer's
/// tokens, and the jobs handed to it at idle.
#[derive(Debug)]
pub struct WakeWait {
    conn: Conn,
    own: String,
    /// The own list's registration in `Q:inboxes`.
    registration: Registration,
    /// Until when (µs, Redis' clock) the waiter's entry in `Q:idle` stands,
    /// if it made one and has not left since (idle.rs).
    idle_until: Option<i64>,
    /// How many jobs handed over the next wait may read at once (its
    /// worker's room): more than one, and the wait is a `BLMPOP` that
    /// reads the wake list, then the inbox (see [`WakeWait::read_up_to`]).
    read: usize,
}

impl WakeWait {
    /// The waiter's own list, its inbox for jobs handed over.
    pub fn inbox(&self) -> &str {
        &self.own
    }

    /// Whether the waiter may be registered in `Q:idle`: an enqueue may
    /// hand it a job until it leaves ([`Queue::leave_idle`]).
    pub fn registered(&self) -> bool {
        self.idle_until.is_some()
    }

    /// The waiter left `Q:idle`.
    pub fn left(&mut self) {
        self.idle_until = None;
    }

    /// Let the next waits read up to `n` jobs handed over in one reply
    /// (at most [`READ_MAX`]; 1, the default, reads one a wait): a
    /// `BLMPOP` of the wake list, then the inbox. A worker
    /// that reads one job per round trip falls behind an enqueuer that
    /// sends a few thousand a second: its inbox fills to the sixteen
    /// unread that enqueues allow, and the jobs after go the normal way,
    /// a claim and about four more commands each (docs/performance.md,
    /// "The waiter's flag").
    pub fn read_up_to(&mut self, n: usize) {
        self.read = n.clamp(1, READ_MAX);
    }
}

/// The most entries a wait reads from its inbox at once: as many as an
/// inbox may hold unread (enqueue.lua's `UNREAD`).
const READ_MAX: usize = 16;

/// How a wait for work ended.
#[derive(Debug)]
pub struct Woke {
    /// Jobs an enqueue handed to the waiter, leased to it as a claim
    /// leases them.
    pub jobs: Vec<ClaimedJob>,
    /// Something else ended the wait (a wake token, the timer, the
    /// timeout): claim next. False when the wait's reply was a job
    /// handed over: the worker may wait again at once. Either way the
    /// waiter stays registered in `Q:idle` (idle.rs).
    pub claim: bool,
}

/// What a wait popped: the list, and the values (a wake token, the host
/// timer's `1`, or jobs handed over, which are not text). One value but
/// from a `BLMPOP` of the own list.
type Popped = (String, Vec<Vec<u8>>);

/// How long a waiter's own list lives after its last token (a worker
/// that died leaves nothing behind for long).
const OWN_LIST_TTL_MS: u64 = 60_000;

/// The token this host's timer pushes onto the waiter's own list.
const NUDGE: &str = "1";

/// What the pipeline of [`Queue::blpop_until`] got back.
struct Blpopped {
    /// The `Q:idle` entry was made (or may have been: no answer).
    registered: bool,
    /// The answer to the renewal of the `Q:inboxes` entry, if sent and
    /// answered (see [`answer_of`]).
    renewed: Option<Result<i64, String>>,
    reply: redis::RedisResult<Option<Popped>>,
    /// This host's timer ended the wait.
    nudged: bool,
    /// The wait was a `BLMPOP` (see [`WakeWait::read_up_to`]).
    many: bool,
}

impl Blpopped {
    /// The pipeline's answers, each command's own (`ignore_errors`): the
    /// renewal's if `renewing`, the entry's and its flag's if `registering`,
    /// the `BLPOP`'s.
    fn read(
        reply: redis::RedisResult<Vec<redis::Value>>,
        renewing: bool,
        registering: bool,
    ) -> Blpopped {
        let mut replies = match reply {
            Ok(replies) => replies.into_iter(),
            // Nothing came back: the entry may have been made.
            Err(e) => {
                return Blpopped {
                    registered: registering,
                    renewed: None,
                    reply: Err(e),
                    nudged: false,
                    many: false,
                };
            }
        };
        let renewed = renewing.then(|| replies.next()).flatten().map(answer_of);
        let registered = registering
            && replies
                .next()
                .is_some_and(|v| !matches!(v, redis::Value::ServerError(_)));
        // (The flag's answer: a flag refused leaves the entry to be found
        // in `Q:idle`.)
        if registering {
            replies.next();
        }
        let reply = match replies.next() {
            None => Ok(None),
            Some(redis::Value::ServerError(e)) => Err(redis::RedisError::from(e)),
            Some(v) => popped(v),
        };
        Blpopped {
            registered,
            renewed,
            reply,
            nudged: false,
            many: false,
        }
    }
}

/// A `BLPOP`'s reply (`[list, value]`) or a `BLMPOP`'s (`[list, [value,
/// ...]]`), or none (the timeout).
fn popped(v: redis::Value) -> redis::RedisResult<Option<Popped>> {
    let Some((list, value)) = redis::from_redis_value::<Option<(String, redis::Value)>>(v)? else {
        return Ok(None);
    };
    let values = match value {
        redis::Value::Array(_) => redis::from_redis_value(value)?,
        one => vec![redis::from_redis_value(one)?],
    };
    Ok(Some((list, values)))
}

/// A `BLMPOP` that Redis does not know (before 7.0) or forbids (an ACL):
/// the waits go back to `BLPOP`.
fn no_blmpop(e: &redis::RedisError) -> bool {
    e.code() == Some("NOPERM")
        || (e.code() == Some("ERR") && e.to_string().contains("unknown command"))
}

impl Queue {
    /// A connection to wait for work on, with a new own list of its own
    /// (a connection Redis still holds blocked on an older one, after a
    /// cut this side saw first, must not take a job meant for this one).
    /// On one Redis the list is registered in `Q:inboxes` at once (see
    /// `inboxes.rs`), so that its first wait may take a job.
    pub async fn wake_waiter(&self) -> Result<WakeWait, QueueError> {
        let conn = self.blocking_connection().await?;
        // `r:` tells an enqueue that the list is registered in
        // `Q:inboxes` (inboxes.rs): it need not set it to expire.
        let own = self.key(&format!("wake:r:{}", ulid::Ulid::new()));
        let mut wait = WakeWait {
            conn,
            own,
            registration: Registration::default(),
            idle_until: None,
            read: 1,
        };
        if !self.redis.is_cluster() {
            self.register_inbox(&mut wait.conn, &wait.own, &mut wait.registration)
                .await?;
        }
        Ok(wait)
    }

    /// Block until an enqueue wakes us or `timeout` passes (by this host's
    /// clock, see the module doc). With `idle` (a worker id and its lease),
    /// the waiter is registered in `Q:idle` (one Redis only), so that an
    /// enqueue may hand it a job (docs/queue.md, "Hand-over at idle", and
    /// idle.rs): the entry is made, or made again, in the wait's pipeline
    /// when it has less than [`super::idle::REFRESH`] left, and it stands
    /// after the wait, until the caller leaves ([`Queue::leave_idle`]). An
    /// error may leave a job handed to it unread: the caller then leaves
    /// until Redis answers, before anything else.
    pub async fn wait_for_work(
        &self,
        wait: &mut WakeWait,
        timeout: Duration,
        idle: Option<(&str, Duration)>,
    ) -> Result<Woke, QueueError> {
        self.count_round_trip();
        let idle = idle.filter(|(worker, _)| !self.redis.is_cluster() && !worker.is_empty());
        let deadline = self.idle_deadline();
        // Due with less than REFRESH left, or with more than a new one
        // would have (this host's clock, or its offset from Redis', moved
        // since: an enqueue drops an entry far ahead, and the worker
        // would not know).
        let refresh = i64::try_from(super::idle::REFRESH.as_micros()).unwrap_or(i64::MAX);
        let due = wait.idle_until.is_none_or(|until| {
            let left = until - self.redis_wall_clock();
            left < refresh || until > deadline
        });
        let idle = idle.filter(|_| due);
        // The own list's registration in `Q:inboxes` is renewed before the
        // entry in `Q:idle` is made (same pipeline, in order), and the
        // entry made only if the registration stands (inboxes.rs).
        let (renew, eligible) = wait.registration.plan(deadline);
        let renew = renew.filter(|_| idle.is_some());
        let member = idle
            .filter(|_| eligible)
            .map(|(worker, lease)| super::idle::member(&wait.own, worker, lease));
        let register = member.as_deref().map(|m| (m, deadline));
        let Blpopped {
            registered,
            renewed,
            reply,
            nudged,
            ..
        } = self.pop_or_fall_back(wait, timeout, register, renew).await;
        if let Some(until) = renew {
            self.renewed(&mut wait.registration, &wait.own, until, renewed);
        }
        // (A registration Redis refused, over `maxmemory` say, is not
        // made; one whose answer was lost may be.)
        if member.is_some() && registered {
            wait.idle_until = Some(deadline);
        }
        let token = reply.map_err(|e| self.error("wait for work", e))?;
        let from_own = token.as_ref().is_some_and(|(list, _)| *list == wait.own);
        let woke = self.woke(wait, token.as_ref(), from_own, nudged).await?;
        // `t:TENANT` names a tenant with work (ring/prelude.lua): the next
        // claim visits it without a pick.
        let tenant = token.filter(|_| !from_own).and_then(|(_, t)| {
            t.first()?
                .strip_prefix(b"t:")
                .map(|t| String::from_utf8_lossy(t).into_owned())
        });
        *crate::locks::lock(&self.inner.hint) = tenant;
        Ok(woke)
    }

    /// Add the wait's pop of the wake list and `wait`'s own list to
    /// `pipe`; whether it is a `BLMPOP` (see [`WakeWait::read_up_to`]).
    fn pop_command(&self, pipe: &mut redis::Pipeline, wait: &WakeWait, timeout: Duration) -> bool {
        let wake = self.key("wake");
        let seconds = timeout.as_secs_f64().max(0.01);
        let many = wait.read > 1 && !self.inner.no_blmpop.load(Ordering::Relaxed);
        if many {
            // The wake list first, as `BLPOP` reads them: a wake token
            // (work announced, a delayed job due) is not left behind jobs
            // that keep coming to the inbox. At most one token waits there
            // (ring/prelude.lua); the inbox's jobs, leased to this worker,
            // are read as many at once as it has room for.
            pipe.cmd("BLMPOP")
                .arg(seconds)
                .arg(2)
                .arg(&wake)
                .arg(&wait.own)
                .arg("LEFT")
                .arg("COUNT")
                .arg(wait.read);
        } else {
            pipe.blpop(&[wake, wait.own.clone()], seconds);
        }
        many
    }

    /// [`Queue::blpop_until`]; where Redis refused its `BLMPOP`, waits go
    /// back to `BLPOP`, this one at once (its registration was made
    /// before, in the refused pipeline).
    async fn pop_or_fall_back(
        &self,
        wait: &mut WakeWait,
        timeout: Duration,
        register: Option<(&str, i64)>,
        renew: Option<i64>,
    ) -> Blpopped {
        let popped = self.blpop_until(wait, timeout, register, renew).await;
        match &popped.reply {
            Err(e) if popped.many && no_blmpop(e) => {
                if !self.inner.no_blmpop.swap(true, Ordering::Relaxed) {
                    tracing::warn!("redis refused BLMPOP ({e}): idle waits read one job at a time");
                }
                let again = self.blpop_until(wait, timeout, None, None).await;
                Blpopped {
                    reply: again.reply,
                    nudged: again.nudged,
                    ..popped
                }
            }
            _ => popped,
        }
    }

    /// How a wait ended, from what its `BLPOP` popped (`token`, from the
    /// waiter's own list if `from_own`): a job handed over, or anything
    /// else (the waiter stays registered: idle.rs).
    async fn woke(
        &self,
        wait: &WakeWait,
        token: Option<&Popped>,
        from_own: bool,
        nudged: bool,
    ) -> Result<Woke, QueueError> {
        let received = std::time::Instant::now();
        let mut woke = Woke {
            jobs: Vec::new(),
            claim: true,
        };
        match token {
            Some((_, entries)) if from_own => {
                for entry in entries {
                    if entry.first() == Some(&b'j') {
                        woke.jobs.push(super::reply::parse_handed(entry, received)?);
                    }
                }
                // Only jobs: wait again. The host timer's token among them:
                // claim, as it asks.
                woke.claim = woke.jobs.len() < entries.len();
            }
            _ if nudged => self.drop_nudge(wait).await,
            _ => {}
        }
        Ok(woke)
    }

    /// Take this host's timer's token out of the waiter's own list, where
    /// the wait ended otherwise: left there, it would end the next wait at
    /// once. (`LREM` of the token, not `DEL`: an enqueue may have pushed a
    /// job there meanwhile.)
    async fn drop_nudge(&self, wait: &WakeWait) {
        let _: redis::RedisResult<()> = redis::cmd("LREM")
            .arg(&wait.own)
            .arg(0)
            .arg(NUDGE)
            .query_async(&mut self.redis.conn())
            .await;
    }

    /// `BLPOP` the wake list and the own list, ended by a token on the own
    /// list if this host's timer fires first. Sent in the same pipeline
    /// just before the `BLPOP`: the own list's registration in
    /// `Q:inboxes` until `renew`, then the `Q:idle` entry and its deadline
    /// (`register`).
    async fn blpop_until(
        &self,
        wait: &mut WakeWait,
        timeout: Duration,
        register: Option<(&str, i64)>,
        renew: Option<i64>,
    ) -> Blpopped {
        let own = wait.own.clone();
        let mut pipe = redis::pipe();
        // Each command's own answer: a refused registration must not hide
        // what the `BLPOP` popped.
        pipe.ignore_errors();
        if let Some(until) = renew {
            pipe.zadd(self.key("inboxes"), &own, until);
        }
        if let Some((member, deadline)) = register {
            pipe.zadd(self.key("idle"), member, deadline);
            // Its flag, for the enqueuer that chose it to take it again
            // without reading `Q:idle` (idle.rs, `flag`).
            pipe.cmd("SET")
                .arg(self.waiter_flag(member))
                .arg(1)
                .arg("PX")
                .arg(super::idle::REGISTRATION.as_millis() as u64);
        }
        let many = self.pop_command(&mut pipe, wait, timeout);
        let (renewing, registering) = (renew.is_some(), register.is_some());
        let blpop = async {
            let reply: redis::RedisResult<Vec<redis::Value>> =
                pipe.query_async(&mut wait.conn).await;
            Blpopped {
                many,
                ..Blpopped::read(reply, renewing, registering)
            }
        };
        tokio::pin!(blpop);
        tokio::select! {
            done = &mut blpop => done,
            () = tokio::time::sleep(timeout + Duration::from_millis(2)) => {
                let nudge: redis::RedisResult<()> = redis::pipe()
                    .lpush(&own, NUDGE)
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
                Blpopped {
                    nudged: true,
                    ..blpop.await
                }
            }
        }
    }
}
