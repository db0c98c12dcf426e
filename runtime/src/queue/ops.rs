//! The queue's operations on jobs in flight — enqueue, claim, ack,
//! recover, heartbeat and the idle wait — one Redis round trip each (a
//! script call or a pipeline), counted in [`Queue::round_trips`].

use super::announce::Announce;
use super::chunk::chunks;
use super::clock::redis_now;
use super::model::{
    DEFAULT_CONTENT_TYPE, DEFAULT_MAX_ATTEMPTS, NewJob, Next, Outcome, Priority, Seen,
};
use super::totals::{Answer, Counted};
use super::{Queue, QueueError};
use crate::locks::lock;
use crate::tenants::{Limit, Limits, TenantStore};
use redis::Value;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How long tenant limits read for enqueues are used before they are read
/// again: a changed quota reaches a long-running enqueuer within a second.
pub const LIMITS_FRESH: Duration = Duration::from_secs(1);

/// How old a view of a tenant's limits may be for an ack to wait for
/// company ([`Queue::ack_may_wait`]).
const LINGER_LIMITS_FRESH: Duration = Duration::from_secs(10);

/// How often a worker's acks refresh the expiry of a tenant's kept list
/// (ack.lua's `KEPT_MARGIN_S`, thirty days, must stay above it).
const KEPT_REFRESH: Duration = Duration::from_secs(60);

/// The result of an enqueue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enqueued {
    /// The job's id.
    pub id: String,
    /// False when an idempotency key named an existing job (whose id this is).
    pub created: bool,
}

impl Queue {
    pub(super) fn key(&self, suffix: &str) -> String {
        format!("{}:{suffix}", self.inner.keys)
    }

    /// `PREFIX:{QUEUE/TENANT}`, the start of every key of `tenant`'s jobs.
    pub fn tenant_keys(&self, tenant: &str) -> String {
        let c = &self.inner.config;
        super::names::tenant_keys(&c.prefix, &c.queue, tenant)
    }

    pub(super) fn ttl_args(&self) -> [u64; 3] {
        let c = &self.inner.config;
        [
            c.record_ttl.as_secs().max(1),
            c.dead_ttl.as_secs().max(1),
            c.dead_cap.max(1),
        ]
    }

    /// Enqueue one job; one round trip, two when its tenant had no work.
    pub async fn enqueue(&self, job: &NewJob) -> Result<Enqueued, QueueError> {
        let mut done = self.enqueue_many(std::slice::from_ref(job)).await?;
        done.pop()
            .ok_or_else(|| QueueError::protocol("enqueue", "no id"))
    }

    /// Enqueue many jobs: one script call per tenant and 200 jobs or 4 MiB
    /// of payload, all in one pipeline (one round trip), then one call that
    /// announces the tenants that had no work before (see `announce.rs`).
    ///
    /// Each job is checked against its tenant's `max-payload` quota here,
    /// before anything is sent (a job over it fails the whole batch with
    /// [`QueueError::OverQuota`]), and again by the script, atomically with
    /// the store (a quota lowered within the last second refuses that
    /// script call alone); `max_attempts` over the tenant's `max-attempts`
    /// is lowered to it.
    pub async fn enqueue_many(&self, jobs: &[NewJob]) -> Result<Vec<Enqueued>, QueueError> {
        for job in jobs {
            if let Some(group) = &job.group {
                super::names::check_group(group)
                    .map_err(|reason| QueueError::Invalid { reason })?;
            }
            super::names::check_content_type(&job.content_type)
                .map_err(|reason| QueueError::Invalid { reason })?;
        }
        let limits = self
            .tenant_limits(jobs.iter().map(|j| j.plugin.tenant.as_str()))
            .await?;
        over_max_payload(jobs, &limits)?;
        let parts = script_calls(jobs);
        let keys: Vec<String> = parts.iter().map(|(t, _)| self.tenant_keys(t)).collect();
        // Not on a cluster, the queue's own prefix goes along: each call
        // announces its tenant itself (one round trip, not two).
        let queue_keys = (!self.redis.is_cluster()).then(|| self.inner.keys.as_str());
        if queue_keys.is_none() {
            let tenants: Vec<&str> = parts.iter().map(|(t, _)| *t).collect();
            self.register(&tenants).await?;
        }
        let calls = self.enqueue_calls(jobs, &parts, &keys, queue_keys, &limits);
        let sent = super::clock::Sent::now();
        let replies = self.run_raw("enqueue", &calls).await?;
        let (done, heard, refused) = self.gather_enqueued(&parts, replies, jobs, sent);
        // Announce what was stored, even when a call was refused. A failed
        // announcement does not fail the enqueue (the jobs are stored; a
        // retry would enqueue them twice): the sweep finds them.
        self.announce_or_warn(&heard, "enqueue").await;
        if let Some(e) = refused {
            return Err(e);
        }
        done.into_iter()
            .map(|e| e.ok_or_else(|| QueueError::protocol("enqueue", "a job without an id")))
            .collect()
    }

    /// One `enqueue.lua` call per part of `jobs` (a tenant's, under its
    /// key prefix in `keys`), with the queue's prefix where it may go
    /// (`queue_keys`: not on a cluster), and `Q:idle` where a lone job may
    /// be handed over.
    fn enqueue_calls(
        &self,
        jobs: &[NewJob],
        parts: &[(&str, Vec<usize>)],
        keys: &[String],
        queue_keys: Option<&str>,
        limits: &HashMap<&str, Limits>,
    ) -> Vec<super::scripts::Call<'_>> {
        let ttl = self.inner.config.record_ttl.as_secs().max(1);
        let idle = self.key("idle");
        // The flag of the waiter this handle's last hand-over chose: while
        // it stands, the script takes that waiter without reading `Q:idle`.
        let waiter = lock(&self.inner.waiter).clone();
        // Redis' clock as this handle knows it (enqueue.lua's `ARGV[4]`;
        // none: the script reads it, and its reply is the next reading).
        // Not on a cluster: each master has a clock of its own.
        let clock = queue_keys.and_then(|_| self.inner.enqueue_clock.estimate());
        parts
            .iter()
            .zip(keys)
            .map(|((tenant, indices), keys)| {
                let mut inv = match queue_keys {
                    Some(queue) if may_hand_over(indices, jobs, &limits[tenant]) => {
                        let mut all = vec![keys.as_str(), queue, idle.as_str()];
                        all.extend(waiter.as_deref());
                        self.inner.scripts.enqueue.key(&all)
                    }
                    Some(queue) => self.inner.scripts.enqueue.key(&[keys.as_str(), queue]),
                    None => self.inner.scripts.enqueue.key(keys),
                };
                let quota = &limits[tenant];
                inv.arg(ttl)
                    .arg(quota.get(Limit::MaxPayload))
                    .arg(quota.get(Limit::MaxAttempts))
                    .moment_arg(clock);
                for &i in indices {
                    push_job(&mut inv, &jobs[i], quota);
                }
                inv
            })
            .collect()
    }

    /// The replies of [`Queue::enqueue_many`]'s calls (sent at `sent`):
    /// each job's id, what to announce, and the first refusal. A reply's
    /// reading of Redis' clock is noted for the enqueues that follow.
    fn gather_enqueued(
        &self,
        parts: &[(&str, Vec<usize>)],
        replies: Vec<redis::RedisResult<Value>>,
        jobs: &[NewJob],
        sent: super::clock::Sent,
    ) -> (Vec<Option<Enqueued>>, Vec<Announce>, Option<QueueError>) {
        let mut done: Vec<Option<Enqueued>> = vec![None; jobs.len()];
        let (mut heard, mut refused) = (Vec::new(), None);
        for ((tenant, indices), reply) in parts.iter().zip(replies) {
            match self.enqueued(tenant, reply, indices, jobs) {
                Ok(CallReply {
                    announce,
                    read,
                    ids,
                    handed,
                }) => {
                    self.inner.enqueue_clock.note(read, sent);
                    self.note_waiter(handed, indices.len());
                    // An idempotency key that named a stored job: this may
                    // be the retry of a call whose reply was lost (or not
                    // confirmed by a replica) after it stored the job and
                    // marked the tenant as announced, and so before anyone
                    // announced it. Announce it again (idempotent).
                    let repeat = ids.iter().any(|e| !e.created);
                    heard.extend(announce.or_else(|| repeat.then(|| Announce::nudge(tenant))));
                    for (&i, e) in indices.iter().zip(ids) {
                        done[i] = Some(e);
                    }
                }
                Err(e) => {
                    // Applied with its reply lost (or not confirmed), or
                    // stopped part way by a key of the wrong type after
                    // storing the jobs before it: announce in case it
                    // stored some (a visit that finds nothing costs one
                    // claim call). A quota's refusal stored nothing.
                    if !matches!(e, QueueError::OverQuota { .. }) {
                        heard.push(Announce::nudge(tenant));
                    }
                    refused = refused.or(Some(e));
                }
            }
        }
        (done, heard, refused)
    }

    /// Keep the waiter flag a call's reply named (`handed`: its job was
    /// handed over, and to whom, '' for the waiter this handle sent), or
    /// forget it when the reply says so ('-': jobs wait unread in that
    /// waiter's inbox) or when a lone job was not handed over (its waiter
    /// may be gone): the next call reads `Q:idle`.
    fn note_waiter(&self, handed: Option<String>, jobs: usize) {
        let mut waiter = lock(&self.inner.waiter);
        match handed.as_deref() {
            Some("") => {}
            Some("-") => *waiter = None,
            Some(_) => *waiter = handed,
            None if jobs == 1 => *waiter = None,
            None => {}
        }
    }

    /// One enqueue call's reply: what to announce, Redis' clock as the
    /// script read it (0: it used the one sent), the jobs' ids, and for a
    /// job handed over the flag of its waiter (see enqueue.lua's header).
    fn enqueued(
        &self,
        tenant: &str,
        reply: redis::RedisResult<Value>,
        indices: &[usize],
        jobs: &[NewJob],
    ) -> Result<CallReply, QueueError> {
        let mine: Vec<&NewJob> = indices.iter().map(|&i| &jobs[i]).collect();
        let reply =
            reply.map_err(|e| over_quota(&e, &mine).unwrap_or_else(|| self.error("enqueue", e)))?;
        let (heard, mut rest) = Announce::split(tenant, reply, "enqueue")?;
        if rest.is_empty() {
            return Err(QueueError::protocol("enqueue", "no clock in the reply"));
        }
        let read: u64 = redis::from_redis_value(rest.remove(0))
            .map_err(|e| QueueError::protocol("enqueue", format!("its clock: {e}")))?;
        let handed = match rest.len() % 2 {
            1 => Some(
                redis::from_redis_value::<String>(rest.pop().unwrap_or(Value::Nil))
                    .map_err(|e| QueueError::protocol("enqueue", format!("its waiter: {e}")))?,
            ),
            _ => None,
        };
        let pairs: Vec<(String, i64)> = redis::from_redis_value(Value::Array(rest))
            .map_err(|e| QueueError::protocol("enqueue", e.to_string()))?;
        let ids = pairs
            .into_iter()
            .map(|(id, created)| Enqueued {
                id,
                created: created == 1,
            })
            .collect();
        Ok(CallReply {
            announce: heard,
            read,
            ids,
            handed,
        })
    }

    /// Whether `tenant` had no concurrency cap when this handle read its
    /// limits, within [`LIMITS_FRESH`] (a worker's claim of the job being
    /// acked read them then): its ack need not look whether the freed
    /// lease makes it claimable (ack.lua, `ARGV[5]`). So only a cap set
    /// (or lifted) within about a second can be missed, and then the
    /// tenant waits at most claim.lua's `CAP_LOOK_US`. Not read lately:
    /// false, and the ack looks.
    fn known_uncapped(&self, tenant: &str) -> bool {
        self.known_uncapped_within(tenant, LIMITS_FRESH)
    }

    /// Whether `tenant` had no concurrency cap when this handle last read
    /// its limits, within `fresh`.
    fn known_uncapped_within(&self, tenant: &str, fresh: Duration) -> bool {
        lock(&self.inner.limits)
            .get(tenant)
            .is_some_and(|(at, l)| at.elapsed() < fresh && l.get(Limit::Concurrency) == 0)
    }

    /// Whether `outcome`'s ack may wait a few milliseconds for others to
    /// share its script call (a worker's `--ack-linger`): a success no
    /// client waits for, of a job outside any group, of a tenant known to
    /// have no concurrency cap. Its ack then frees nothing another job
    /// waits for: no done notice, no group slot, no slot under a cap.
    /// (Known within [`LINGER_LIMITS_FRESH`]: acks read a tenant's limits
    /// again once they are a second old, so a view is older only after a
    /// quiet spell; a cap set within it costs the tenant's next job the
    /// wait, a few milliseconds, at most.)
    pub fn ack_may_wait(&self, outcome: &Outcome) -> bool {
        outcome.next == Next::Succeeded
            && !outcome.wait
            && outcome.seen.as_ref().is_some_and(|s| s.group.is_none())
            && self.known_uncapped_within(&outcome.tenant, LINGER_LIMITS_FRESH)
    }

    /// Per ack call (`order`: its tenant and outcomes), whether it asks
    /// the script to refresh the expiry of the tenant's kept list: the
    /// first call of a tenant this handle has not refreshed for
    /// [`KEPT_REFRESH`] (ack.lua, `keep_newest`). So while this worker acks
    /// a tenant's jobs the list's expiry is never more than that behind
    /// the newest record it lists (the script adds a margin above it), at
    /// one `PTTL` a minute (and a `PEXPIRE` when it is short), not an
    /// `EXPIRE` per job.
    fn kept_refresh(&self, keep: u64, order: &[(&str, Vec<usize>)]) -> Vec<bool> {
        let mut done = lock(&self.inner.kept_refreshed);
        if done.len() >= 10_000 {
            done.clear();
        }
        let mut asked = std::collections::HashSet::new();
        order
            .iter()
            .map(|(tenant, _)| {
                keep > 0
                    && asked.insert(*tenant)
                    && done
                        .get(*tenant)
                        .is_none_or(|at| at.elapsed() >= KEPT_REFRESH)
            })
            .collect()
    }

    /// Of an ack call's tenants (`order`), those whose limits this handle
    /// read more than [`LIMITS_FRESH`] ago (or never) without a concurrency
    /// cap, and acked within it: [`Queue::ack`] reads them again beside
    /// its calls. A worker fed by hand-overs at idle claims nothing, and
    /// no claim reads them: without this its view went stale a second
    /// after its last claim, and every ack after it paid the look that
    /// [`Queue::known_uncapped`] spares (an `EXISTS` per idle job, against
    /// one look and two `HGETALL`s a second). Only while acks come closer
    /// than the view lasts: acks further apart would each read it for
    /// none after them to use. Under load the claims read it first; a
    /// tenant with a cap is looked at anyway.
    fn limits_to_refresh<'o>(&self, order: &[(&'o str, Vec<usize>)]) -> Vec<&'o str> {
        // (No hand-over on a cluster, and the limits live on another
        // node there: an ack would wait on it for nothing.)
        if self.redis.is_cluster() {
            return Vec::new();
        }
        let mut acked = lock(&self.inner.acked);
        if acked.len() >= 10_000 {
            acked.clear();
        }
        let known = lock(&self.inner.limits);
        let mut stale = Vec::new();
        for (tenant, _) in order {
            let recent = acked
                .insert((*tenant).to_string(), Instant::now())
                .is_some_and(|at| at.elapsed() < LIMITS_FRESH);
            let aged = known.get(*tenant).is_none_or(|(at, l)| {
                at.elapsed() >= LIMITS_FRESH && l.get(Limit::Concurrency) == 0
            });
            if recent && aged && !stale.contains(tenant) {
                stale.push(*tenant);
            }
        }
        stale
    }

    /// Read `tenants`' limits again (see [`Queue::limits_to_refresh`]); a
    /// failure only leaves the view to age (the acks then look).
    async fn refresh_limits(&self, tenants: Vec<&str>) {
        if tenants.is_empty() {
            return;
        }
        if let Err(e) = self.tenant_limits(tenants.into_iter()).await {
            tracing::debug!("ack: tenant limits not read again ({e}); acks will look");
        }
    }

    /// The effective limits of each of `tenants`: those read within
    /// [`LIMITS_FRESH`] from memory, the rest in one round trip.
    pub(crate) async fn tenant_limits<'j>(
        &self,
        tenants: impl Iterator<Item = &'j str>,
    ) -> Result<HashMap<&'j str, Limits>, QueueError> {
        let mut tenants: Vec<&str> = tenants.collect();
        tenants.sort_unstable();
        tenants.dedup();
        let mut found = HashMap::new();
        {
            let known = lock(&self.inner.limits);
            tenants.retain(|t| match known.get(*t) {
                Some((at, limits)) if at.elapsed() < LIMITS_FRESH => {
                    found.insert(*t, limits.clone());
                    false
                }
                _ => true,
            });
        }
        if tenants.is_empty() {
            return Ok(found);
        }
        let mut conn = self.redis.conn();
        self.count_round_trip();
        let limits = TenantStore::new(&self.inner.config.prefix)
            .read_async(&mut conn, &tenants)
            .await
            .map_err(|e| self.error("read tenant limits", e))?;
        let mut known = lock(&self.inner.limits);
        if known.len() >= 10_000 {
            known.clear();
        }
        for (tenant, limits) in tenants.into_iter().zip(limits) {
            known.insert(tenant.to_string(), (Instant::now(), limits.clone()));
            found.insert(tenant, limits);
        }
        Ok(found)
    }

    /// Record outcomes; returns, per outcome, whether it was applied (false:
    /// the lease was lost and a newer attempt owns the job).
    ///
    /// One script call per tenant and 500 outcomes or 4 MiB of fields (so
    /// that a batch of large outputs never outgrows the response timeout),
    /// all in one pipeline; then one call that announces tenants whose
    /// freed slots or requeued jobs make them worth a visit.
    pub async fn ack(&self, outcomes: &[Outcome]) -> Result<Vec<bool>, QueueError> {
        // (fields, value bytes) of each outcome, worked out once.
        let counts: Vec<(usize, usize)> = outcomes.iter().map(|o| o.record.counts()).collect();
        let size = |&i: &usize| -> usize { counts[i].1 };
        let keep = self.inner.config.keep_succeeded.unwrap_or(0);
        // (tenant, positions) per script call: one tenant's outcomes, at
        // most 500 or 4 MiB of fields. Positions, not copies: outputs can
        // be large.
        let mut order: Vec<(&str, Vec<usize>)> = Vec::new();
        for (tenant, indices) in by_tenant_of(outcomes, |o| o.tenant.as_str()) {
            for chunk in chunks(&indices, 500, 4 << 20, size) {
                order.push((tenant, chunk.to_vec()));
            }
        }
        let keys: Vec<String> = order.iter().map(|(t, _)| self.tenant_keys(t)).collect();
        let refresh = self.kept_refresh(keep, &order);
        let sent = Instant::now();
        let fixed = AckArgs {
            ttl_args: self.ttl_args(),
            keep,
            wall: self.redis_wall_clock(),
        };
        let calls: Vec<_> = order
            .iter()
            .zip(&keys)
            .zip(&refresh)
            .map(|(((tenant, indices), keys), &refresh)| {
                let mut inv = self.ack_call(keys, tenant, &fixed, refresh, || {
                    indices.iter().map(|&i| &outcomes[i])
                });
                for &i in indices {
                    push_outcome(&mut inv, &outcomes[i], counts[i].0);
                }
                inv
            })
            .collect();
        let counted = Counted::new(self, outcomes);
        let stale = self.limits_to_refresh(&order);
        let (replies, ()) = tokio::join!(self.run_calls("ack", &calls), self.refresh_limits(stale));
        // (Lost: dropping `counted` remembers its successes, unsure.)
        let read = read_acks(outcomes, &order, replies?);
        counted.settle(&read.answers);
        self.kept_refreshed(&order, outcomes, &read.newly, &refresh, sent);
        self.announce_or_warn(&read.heard, "ack").await;
        // Another tenant's outcomes were applied: acking them again one by
        // one (the caller's fallback) is recognised as a repeat.
        match read.refused {
            Some(e) => Err(e),
            None => Ok(read.applied),
        }
    }

    /// An ack call of `tenant` (its keys `keys`) with its fixed arguments
    /// (ack.lua's `ARGV[1..8]`), before its outcomes; `outcomes` are those
    /// it will carry (for the clock it sends).
    fn ack_call<'o, I: Iterator<Item = &'o Outcome>>(
        &self,
        keys: &str,
        tenant: &str,
        fixed: &AckArgs,
        refresh: bool,
        outcomes: impl FnOnce() -> I,
    ) -> super::scripts::Call<'_> {
        let [ttl, dead_ttl, cap] = fixed.ttl_args;
        let mut inv = self.inner.scripts.ack.key(keys);
        inv.arg(ttl)
            .arg(dead_ttl)
            .arg(cap)
            .arg(fixed.keep)
            .arg(u8::from(self.known_uncapped(tenant)))
            .moment_arg(redis_now(outcomes(), fixed.wall))
            .arg(u8::from(refresh))
            .arg(
                self.inner
                    .lease_us
                    .load(std::sync::atomic::Ordering::Relaxed),
            );
        inv
    }

    /// This host's clock plus Redis' offset from it as the last claim or
    /// pick saw it (µs): Redis' clock now, as this host would say.
    pub(super) fn redis_wall_clock(&self) -> i64 {
        let offset = self
            .inner
            .clock_offset_us
            .load(std::sync::atomic::Ordering::Relaxed);
        i64::try_from(crate::ids::now_us())
            .unwrap_or(i64::MAX)
            .saturating_add(offset)
    }

    /// Note the tenants whose kept list an ack call (`order`) refreshed
    /// as asked (`refresh`), at `sent`, the moment before they were sent
    /// (see [`Queue::kept_refresh`]): those where the call listed a
    /// success it recorded (`newly`), so that the list was there to
    /// refresh (the script refreshes after its push). Otherwise the next
    /// call asks again.
    fn kept_refreshed(
        &self,
        order: &[(&str, Vec<usize>)],
        outcomes: &[Outcome],
        newly: &[bool],
        refresh: &[bool],
        sent: Instant,
    ) {
        let mut done = lock(&self.inner.kept_refreshed);
        for ((tenant, indices), refresh) in order.iter().zip(refresh) {
            if *refresh && indices.iter().any(|&i| newly[i] && listed(&outcomes[i])) {
                done.insert(tenant.to_string(), sent);
            }
        }
    }

    /// Hand back jobs leased to `worker` that it does not know it holds
    /// (`known`: (tenant, id) pairs), in every tenant of the queue (a lost
    /// claim reply is rare; a claim only visits registered tenants).
    /// Returns the ids handed back.
    pub async fn recover(
        &self,
        worker: &str,
        known: &[(String, String)],
    ) -> Result<Vec<String>, QueueError> {
        let tenants = self.tenants().await?;
        self.recover_tenants(worker, &tenants, known).await
    }

    /// [`Queue::recover`] in `tenants` only (those whose claim replies
    /// could not be read, [`super::Claim::unsure`]).
    pub async fn recover_tenants(
        &self,
        worker: &str,
        tenants: &[String],
        known: &[(String, String)],
    ) -> Result<Vec<String>, QueueError> {
        let keys: Vec<String> = tenants.iter().map(|t| self.tenant_keys(t)).collect();
        let calls: Vec<_> = tenants
            .iter()
            .zip(&keys)
            .map(|(tenant, keys)| {
                let mut inv = self.inner.scripts.recover.key(keys);
                inv.arg(worker);
                for (t, id) in known {
                    if t == tenant {
                        inv.arg(id);
                    }
                }
                inv
            })
            .collect();
        if calls.is_empty() {
            return Ok(Vec::new());
        }
        let replies = self.run_calls("recover lost claims", &calls).await?;
        let (mut released, mut heard) = (Vec::new(), Vec::new());
        for (tenant, reply) in tenants.iter().zip(replies) {
            let split = reply.and_then(|reply| Announce::split(tenant, reply, "recover"));
            match split {
                Ok((announce, rest)) => {
                    heard.extend(announce);
                    released.extend(rest.into_iter().filter_map(crate::redis::value::text));
                }
                // One tenant's broken keys must not stop every claim: its
                // lost jobs come back when their leases lapse.
                Err(e) => tracing::warn!(tenant = %tenant, "recover: tenant skipped: {e}"),
            }
        }
        self.announce_or_warn(&heard, "recover").await;
        Ok(released)
    }

    /// Renew the leases of running jobs (`(tenant, id, token)`); returns,
    /// per job, whether the lease is still ours. One pipeline.
    pub async fn heartbeat(
        &self,
        running: &[(String, String, String)],
        lease: Duration,
    ) -> Result<Vec<bool>, QueueError> {
        if running.is_empty() {
            return Ok(Vec::new());
        }
        let groups = by_tenant_of(running, |(t, _, _)| t.as_str());
        let keys: Vec<String> = groups.iter().map(|(t, _)| self.tenant_keys(t)).collect();
        let calls: Vec<_> = groups
            .iter()
            .zip(&keys)
            .map(|((_, indices), keys)| {
                let mut inv = self.inner.scripts.heartbeat.key(keys);
                inv.arg(u64::try_from(lease.as_micros()).unwrap_or(u64::MAX));
                for &i in indices {
                    inv.arg(&running[i].1).arg(&running[i].2);
                }
                inv
            })
            .collect();
        let replies = self.run_calls("heartbeat", &calls).await?;
        let mut renewed = vec![false; running.len()];
        for ((tenant, indices), reply) in groups.iter().zip(replies) {
            let reply = reply.and_then(|r| {
                redis::from_redis_value::<Vec<i64>>(r)
                    .map_err(|e| QueueError::protocol("heartbeat", e.to_string()))
            });
            match reply {
                Ok(reply) => {
                    for (&i, r) in indices.iter().zip(reply) {
                        renewed[i] = r == 1;
                    }
                }
                Err(e) => tracing::warn!(tenant = %tenant, "heartbeat: leases not renewed: {e}"),
            }
        }
        Ok(renewed)
    }
}

/// Positions of `items` by tenant, tenants in order of first appearance.
pub(super) fn by_tenant_of<T>(items: &[T], tenant: impl Fn(&T) -> &str) -> Vec<(&str, Vec<usize>)> {
    let mut groups: Vec<(&str, Vec<usize>)> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let t = tenant(item);
        match groups.iter_mut().find(|(g, _)| *g == t) {
            Some((_, v)) => v.push(i),
            None => groups.push((t, vec![i])),
        }
    }
    groups
}

fn by_tenant(jobs: &[NewJob]) -> Vec<(&str, Vec<usize>)> {
    by_tenant_of(jobs, |j| j.plugin.tenant.as_str())
}

/// The enqueue's script calls: (tenant, the jobs' positions) per call,
/// one tenant and at most 200 jobs or 4 MiB of payload each.
fn script_calls(jobs: &[NewJob]) -> Vec<(&str, Vec<usize>)> {
    let mut parts = Vec::new();
    for (tenant, indices) in by_tenant(jobs) {
        let mut start = 0;
        for chunk in chunks(&indices, 200, 4 << 20, |&i| jobs[i].payload.len()) {
            parts.push((tenant, indices[start..start + chunk.len()].to_vec()));
            start += chunk.len();
        }
    }
    parts
}

/// Whether an enqueue call of the jobs at `indices` may hand its job to
/// an idle worker (enqueue.lua, `hand_over`; docs/queue.md, "Hand-over at
/// idle"): one job, due now, of no group, without an idempotency key, of a
/// tenant whose limits, as this handle read them, set no concurrency cap
/// and no rate (a claim would count those; the script does not).
fn may_hand_over(indices: &[usize], jobs: &[NewJob], limits: &Limits) -> bool {
    let [i] = indices else { return false };
    let job = &jobs[*i];
    job.delay.is_zero()
        && job.group.is_none()
        && job.idempotency_key.is_none()
        && limits.get(Limit::Concurrency) == 0
        && limits.get(Limit::Rate) == 0
}

/// One job's arguments of `enqueue.lua`. Envelope fields at their
/// documented default (`content_type` JSON, `max_attempts` 5 within the
/// tenant's quota) are left out: every reader applies the default, and a
/// smaller record stays in Redis' compact hash encoding.
fn push_job(inv: &mut super::scripts::Call<'_>, job: &NewJob, quota: &Limits) {
    let max_attempts_quota = quota.get(Limit::MaxAttempts);
    let default_type = job.content_type == DEFAULT_CONTENT_TYPE;
    let default_attempts = job.max_attempts == DEFAULT_MAX_ATTEMPTS
        && (max_attempts_quota == 0 || max_attempts_quota >= u64::from(DEFAULT_MAX_ATTEMPTS));
    let optional = [!default_type, !default_attempts, job.wait, job.no_cache];
    inv.arg(ulid::Ulid::new().to_string());
    // enqueue.lua's `opts`: '' for the plain job (no key, due now,
    // priority normal, no group), which then leaves out those four.
    if job.idempotency_key.is_none()
        && job.delay.is_zero()
        && job.priority == Priority::Normal
        && job.group.is_none()
    {
        inv.arg("");
    } else {
        inv.arg("+")
            .arg(job.idempotency_key.as_deref().unwrap_or(""))
            .arg(u64::try_from(job.delay.as_micros()).unwrap_or(u64::MAX))
            .arg(job.priority.as_str())
            .arg(job.group.as_deref().unwrap_or(""));
    }
    inv.arg(optional.iter().filter(|o| **o).count())
        .arg(job.plugin.to_string())
        .arg(job.payload.as_slice());
    if !default_type {
        inv.arg("content_type").arg(&job.content_type);
    }
    if !default_attempts {
        inv.arg("max_attempts").arg(job.max_attempts);
    }
    if job.wait {
        inv.arg("wait").arg(1);
    }
    if job.no_cache {
        inv.arg("no_cache").arg(1);
    }
}

/// What the ack calls answered, per outcome and in all.
struct AckReplies {
    /// Whether each outcome is recorded (now, or by an earlier call).
    applied: Vec<bool>,
    /// Whether each was recorded by this call (not a repeat).
    newly: Vec<bool>,
    /// What to announce in the queue's slot.
    heard: Vec<Announce>,
    /// A call Redis refused, if any.
    refused: Option<QueueError>,
    /// What became of each, for the queue's totals.
    answers: Vec<Answer>,
}

/// Read the replies of the ack calls `order` ((tenant, outcome positions)
/// per call) for `outcomes`.
fn read_acks(
    outcomes: &[Outcome],
    order: &[(&str, Vec<usize>)],
    replies: Vec<Result<Value, QueueError>>,
) -> AckReplies {
    let mut out = AckReplies {
        applied: vec![false; outcomes.len()],
        newly: vec![false; outcomes.len()],
        heard: Vec::new(),
        refused: None,
        answers: outcomes.iter().map(|_| Answer::Lost).collect(),
    };
    for ((tenant, indices), reply) in order.iter().zip(replies) {
        match reply.and_then(|reply| Announce::split(tenant, reply, "ack")) {
            Ok((announce, rest)) => {
                out.heard.extend(announce);
                for (&i, value) in indices.iter().zip(rest) {
                    out.applied[i] = matches!(value, Value::Int(1 | 2));
                    out.newly[i] = value == Value::Int(1);
                    out.answers[i] = match value {
                        Value::Int(1) => Answer::First,
                        Value::Int(2) => Answer::Repeat,
                        _ => Answer::Stale,
                    };
                }
            }
            Err(e) => out.refused = Some(e),
        }
    }
    out
}

/// Whether the ack script puts `o`, once recorded, in its tenant's kept
/// list, as far as the worker knows: a success no client waits for, of a
/// job the claim saw without an idempotency key (ack.lua, `succeeded`).
fn listed(o: &Outcome) -> bool {
    o.next == Next::Succeeded && !o.wait && matches!(o.seen, Some(Seen { idem: false, .. }))
}

/// An ack call's arguments that are the same for every tenant.
struct AckArgs {
    /// Record TTL, dead TTL, dead cap ([`Queue::ttl_args`]).
    ttl_args: [u64; 3],
    /// Succeeded records kept per tenant (0: all).
    keep: u64,
    /// Redis' clock as this host would say ([`Queue::redis_wall_clock`]).
    wall: i64,
}

/// One outcome's arguments of `ack.lua`; `nfields` is how many fields its
/// record update writes ([`super::RecordUpdate::counts`]).
fn push_outcome(inv: &mut super::scripts::Call<'_>, o: &Outcome, nfields: usize) {
    let (letter, delay) = match o.next {
        Next::Succeeded => ('s', None),
        Next::Retry { delay } => ('r', Some(delay)),
        Next::Dead => ('d', None),
        Next::Requeue { delay } => ('q', Some(delay)),
        Next::Wedged { backoff } => ('w', Some(backoff)),
    };
    // `plain` (ack.lua's header): the claim saw no group and no
    // idempotency key, so the ack need not look for them.
    let plain = matches!(
        o.seen,
        Some(Seen {
            group: None,
            idem: false
        })
    );
    inv.arg(&o.id)
        .arg(&o.token)
        .arg(ack_head(letter, o.wait, plain, nfields));
    if let Some(delay) = delay {
        inv.arg(u64::try_from(delay.as_micros()).unwrap_or(u64::MAX));
    }
    o.record.each_field(|field, value| {
        inv.arg(field).arg(value);
    });
}

/// An outcome's `head` in `ack.lua`: its letter, wait, plain and how many
/// fields follow, in one argument (`s016`).
fn ack_head(letter: char, wait: bool, plain: bool, nfields: usize) -> String {
    format!("{letter}{}{}{nfields}", u8::from(wait), u8::from(plain))
}

/// The first job over its tenant's `max-payload` (as last read), if any.
fn over_max_payload(jobs: &[NewJob], limits: &HashMap<&str, Limits>) -> Result<(), QueueError> {
    for job in jobs {
        let tenant = job.plugin.tenant.as_str();
        let quota = limits.get(tenant).map_or(0, |l| l.get(Limit::MaxPayload));
        if quota > 0 && job.payload.len() as u64 > quota {
            return Err(QueueError::OverQuota {
                tenant: tenant.to_string(),
                limit: Limit::MaxPayload,
                value: job.payload.len() as u64,
                quota,
            });
        }
    }
    Ok(())
}

/// The quota error `enqueue.lua` gives (`QUOTA index limit value quota`),
/// for the job it names among `jobs` (the chunk's and those after it).
fn over_quota(e: &redis::RedisError, jobs: &[&NewJob]) -> Option<QueueError> {
    if e.code() != Some("QUOTA") {
        return None;
    }
    let mut words = e.detail()?.split_whitespace();
    let index: usize = words.next()?.parse().ok()?;
    let limit = Limit::named(words.next()?)?;
    let value = words.next()?.parse().ok()?;
    let quota = words.next()?.parse().ok()?;
    Some(QueueError::OverQuota {
        tenant: jobs.get(index)?.plugin.tenant.clone(),
        limit,
        value,
        quota,
    })
}

/// ack.lua's `KEPT_MARGIN_S`: how long a kept list outlives the records
/// it lists (for the tests of what depends on it).
#[cfg(test)]
pub(crate) fn kept_margin_s() -> u64 {
    include_str!("lua/ack.lua")
        .lines()
        .find_map(|l| l.strip_prefix("local KEPT_MARGIN_S = "))
        .and_then(|v| v.trim().parse().ok())
        .expect("KEPT_MARGIN_S in ack.lua")
}

/// One enqueue call's reply (see [`Queue::enqueued`]).
struct CallReply {
    /// What to announce in the queue's slot.
    announce: Option<Announce>,
    /// Redis' clock as the script read it (0: it used the one sent).
    read: u64,
    /// The jobs' ids.
    ids: Vec<Enqueued>,
    /// For a job handed over, its waiter's flag ('' for the one sent,
    /// '-' to forget it).
    handed: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kept_lists_margin_covers_a_workers_refresh_period() {
        let margin = kept_margin_s();
        // A refresh a period ago, and an ack's call that takes a while.
        assert!(
            Duration::from_secs(margin) >= KEPT_REFRESH * 2,
            "{margin} s"
        );
    }
}
