//! The set of tenants with work, kept in the queue's own slot
//! (`lua/ring/`): tenant scripts say what to announce there or take out,
//! and these calls write it. See docs/queue.md, "Fair share", for why no
//! wake-up is lost between the two slots.

use super::{Queue, QueueError};
use crate::locks::lock;
use redis::Value;

/// Tenants a handle remembers as registered (see [`Queue::register`]).
const REGISTERED_MAX: usize = 100_000;

/// The operation name of [`Queue::register`]'s call.
pub(crate) const REGISTER: &str = "register tenants";

/// What one tenant script asked to write into the queue's slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Announce {
    /// The tenant.
    pub tenant: String,
    /// > 0: the sequence number to record (only upwards).
    pub seq: i64,
    /// > 0: visit the tenant at this time (µs, Redis' clock).
    pub timer: i64,
    /// The tenant has claimable work now: into the ready set.
    pub ready: bool,
}

impl Announce {
    /// "`tenant` may have work now", with no sequence number: names the
    /// tenant in `Q:seq` if it is not there, puts it in the ready set and
    /// wakes a worker. For when an enqueue's reply is missing.
    pub fn nudge(tenant: &str) -> Announce {
        Announce {
            tenant: tenant.to_string(),
            seq: 0,
            timer: 0,
            ready: true,
        }
    }

    /// Split a tenant script's reply `{announce_seq, timer_us, ready,
    /// rest...}`: the announcement (if any) and the rest.
    pub fn split(
        tenant: &str,
        reply: Value,
        op: &'static str,
    ) -> Result<(Option<Announce>, Vec<Value>), QueueError> {
        let reply: Vec<Value> =
            redis::from_redis_value(reply).map_err(|e| QueueError::protocol(op, e.to_string()))?;
        let mut items = reply.into_iter();
        let (Some(Value::Int(seq)), Some(Value::Int(timer)), Some(Value::Int(ready))) =
            (items.next(), items.next(), items.next())
        else {
            return Err(QueueError::protocol(op, "no announcement in the reply"));
        };
        let heard = (seq > 0 || timer > 0 || ready == 1).then(|| Announce {
            tenant: tenant.to_string(),
            seq,
            timer,
            ready: ready == 1,
        });
        Ok((heard, items.collect()))
    }
}

/// A tenant a claim found without claimable work: it leaves the ready set
/// under `seq`, with a timer if given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Leave {
    pub tenant: String,
    pub seq: i64,
    pub timer: i64,
    /// The claim took the tenant out itself (on one server it writes the
    /// queue's slot in the same call): nothing is left to settle.
    pub settled: bool,
}

impl Queue {
    /// Write announcements into the queue's slot (one round trip; none
    /// when there is nothing to say). Retried while Redis is away: a
    /// tenant script already stored the work, and a lost announcement would
    /// leave it unclaimed until the next sweep.
    pub(crate) async fn announce(&self, heard: &[Announce]) -> Result<(), QueueError> {
        self.announce_as("announce tenants", heard).await
    }

    /// [`Queue::announce`] under the name `op` (which decides, with the
    /// queue's durability, whether replicas must confirm it).
    async fn announce_as(&self, op: &'static str, heard: &[Announce]) -> Result<(), QueueError> {
        if heard.is_empty() {
            return Ok(());
        }
        let mut inv = self.inner.scripts.announce.key(&self.inner.keys);
        for a in heard {
            inv.arg(&a.tenant)
                .arg(a.seq)
                .arg(a.timer)
                .arg(u8::from(a.ready));
        }
        self.ring_call(op, &inv).await
    }

    /// Name `tenants` in `Q:seq` (if they are not there) before their
    /// jobs go into their own slots, where the queue's slot is written by
    /// another call (on a cluster, and when moving old keys). The sweep
    /// visits only tenants named there, and for 30 s an enqueue that finds
    /// the tenant's "has work" mark (`T:in`) announces nothing: a first
    /// announcement lost between the two calls (a client killed, a
    /// failover) would otherwise leave the tenant's jobs unseen until an
    /// enqueue after the mark expired. Once per tenant for this handle; a
    /// failure stores nothing (a retry helps once Redis answers).
    pub(crate) async fn register(&self, tenants: &[&str]) -> Result<(), QueueError> {
        let new: Vec<Announce> = {
            let known = lock(&self.inner.registered);
            let mut new: Vec<&str> = tenants
                .iter()
                .copied()
                .filter(|t| !known.contains(*t))
                .collect();
            new.sort_unstable();
            new.dedup();
            new.into_iter()
                .map(|t| Announce {
                    tenant: t.to_string(),
                    seq: 0,
                    timer: 0,
                    ready: false,
                })
                .collect()
        };
        if new.is_empty() {
            return Ok(());
        }
        // (Confirmed by replicas as an enqueue is, under replicated
        // durability: a failover must not lose it with the announcement.)
        self.announce_as(REGISTER, &new).await?;
        let mut known = lock(&self.inner.registered);
        // (A bound on a long-lived handle's memory: forgetting costs one
        // more registration per tenant.)
        if known.len() > REGISTERED_MAX {
            known.clear();
        }
        known.extend(new.into_iter().map(|a| a.tenant));
        Ok(())
    }

    /// [`Queue::announce`] after a change that is already stored: a failure
    /// is logged, not returned (the caller's retry would repeat the change;
    /// the sweep finds the work within its period).
    pub(crate) async fn announce_or_warn(&self, heard: &[Announce], op: &str) {
        if let Err(e) = self.announce(heard).await {
            tracing::warn!(
                "{op}: stored, but the queue was not told ({e}); the sweep will find it"
            );
        }
    }

    /// Take tenants out of the ready set (see [`Leave`]).
    pub(crate) async fn settle(&self, leaving: &[Leave]) -> Result<(), QueueError> {
        if leaving.iter().all(|l| l.settled) {
            return Ok(());
        }
        let mut inv = self.inner.scripts.settle.key(&self.inner.keys);
        for l in leaving.iter().filter(|l| !l.settled) {
            inv.arg(&l.tenant).arg(l.seq).arg(l.timer);
        }
        self.ring_call("settle tenants", &inv).await
    }

    /// One call into the queue's slot, tried again for a few seconds while
    /// Redis is away (both writes are idempotent).
    async fn ring_call(
        &self,
        op: &'static str,
        inv: &super::scripts::Call<'_>,
    ) -> Result<(), QueueError> {
        let mut delay = std::time::Duration::from_millis(20);
        loop {
            let reply = self.run_calls(op, std::slice::from_ref(inv)).await;
            match reply.and_then(|mut r| r.pop().unwrap_or(Ok(Value::Nil))) {
                Ok(_) => return Ok(()),
                Err(e) => {
                    if !e.is_retryable() || delay > std::time::Duration::from_secs(2) {
                        return Err(e);
                    }
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
            }
        }
    }
}
