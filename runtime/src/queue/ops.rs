//! The queue's operations on jobs in flight — enqueue, claim, ack,
//! recover, heartbeat and the idle wait — one Redis round trip each (a
//! script call or a pipeline), counted in [`Queue::round_trips`].

use super::chunk::chunks;
use super::model::{NewJob, Next, Outcome};
use super::reply::{Claim, parse_claim};
use super::{Queue, QueueError};
use crate::locks::lock;
use crate::tenants::{Limit, Limits, TenantStore};
use redis::{AsyncCommands, Value};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How long tenant limits read for enqueues are used before they are read
/// again: a changed quota reaches a long-running enqueuer within a second.
pub const LIMITS_FRESH: Duration = Duration::from_secs(1);

/// An outcome with the record fields it writes, encoded once.
type Encoded<'a> = (&'a Outcome, Vec<(&'static str, Vec<u8>)>);

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

    pub(super) fn ttl_args(&self) -> [u64; 3] {
        let c = &self.inner.config;
        [
            c.record_ttl.as_secs().max(1),
            c.dead_ttl.as_secs().max(1),
            c.dead_cap.max(1),
        ]
    }

    /// Enqueue one job; one round trip.
    pub async fn enqueue(&self, job: &NewJob) -> Result<Enqueued, QueueError> {
        let mut done = self.enqueue_many(std::slice::from_ref(job)).await?;
        done.pop()
            .ok_or_else(|| QueueError::protocol("enqueue", "no id"))
    }

    /// Enqueue many jobs: one script call (one round trip) per 200 jobs or
    /// 4 MiB of payload.
    ///
    /// Each job is checked against its tenant's `max-payload` and
    /// `max-attempts` quotas in the script, before anything is stored: a job
    /// over one fails its chunk with [`QueueError::OverQuota`] (earlier
    /// chunks of a batch over 200 jobs stay enqueued).
    pub async fn enqueue_many(&self, jobs: &[NewJob]) -> Result<Vec<Enqueued>, QueueError> {
        let limits = self.tenant_limits(jobs).await?;
        let mut done = Vec::with_capacity(jobs.len());
        let mut start = 0;
        for chunk in chunks(jobs, 200, 4 << 20, |job| job.payload.len()) {
            let mut inv = self.inner.scripts.enqueue.key(&self.inner.keys);
            inv.arg(self.inner.config.record_ttl.as_secs().max(1));
            for job in chunk {
                let quota = &limits[job.plugin.tenant.as_str()];
                inv.arg(ulid::Ulid::new().to_string())
                    .arg(idempotency_key(job))
                    .arg(u64::try_from(job.delay.as_micros()).unwrap_or(u64::MAX))
                    .arg(job.priority.as_str())
                    .arg(quota.get(Limit::MaxPayload))
                    .arg(quota.get(Limit::MaxAttempts))
                    .arg(4 + usize::from(job.wait) + usize::from(job.no_cache))
                    .arg("plugin")
                    .arg(job.plugin.to_string())
                    .arg("payload")
                    .arg(job.payload.as_slice())
                    .arg("content_type")
                    .arg(&job.content_type)
                    .arg("max_attempts")
                    .arg(job.max_attempts);
                if job.wait {
                    inv.arg("wait").arg(1);
                }
                if job.no_cache {
                    inv.arg("no_cache").arg(1);
                }
            }
            let mut conn = self.redis.conn();
            self.count_round_trip();
            let reply: Vec<(String, i64)> = inv.invoke_async(&mut conn).await.map_err(|e| {
                over_quota(&e, &jobs[start..]).unwrap_or_else(|| self.error("enqueue", e))
            })?;
            start += chunk.len();
            done.extend(reply.into_iter().map(|(id, created)| Enqueued {
                id,
                created: created == 1,
            }));
        }
        Ok(done)
    }

    /// The effective limits of every tenant in `jobs`: those read within
    /// [`LIMITS_FRESH`] from memory, the rest in one round trip.
    async fn tenant_limits<'j>(
        &self,
        jobs: &'j [NewJob],
    ) -> Result<HashMap<&'j str, Limits>, QueueError> {
        let mut tenants: Vec<&str> = jobs.iter().map(|j| j.plugin.tenant.as_str()).collect();
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

    /// Claim up to `max` jobs for `worker` under a lease of `lease`. Also
    /// promotes due delayed jobs and requeues expired leases.
    pub async fn claim(
        &self,
        worker: &str,
        max: usize,
        lease: Duration,
    ) -> Result<Claim, QueueError> {
        self.claim_backing_off(worker, max, lease, Duration::from_secs(1))
            .await
    }

    /// [`Queue::claim`], where a job whose lease expired (found on the way)
    /// waits `backoff · 2^(attempt-1)` (at most 10 min) before it runs
    /// again, as a retry does; a worker passes its `--backoff`.
    pub async fn claim_backing_off(
        &self,
        worker: &str,
        max: usize,
        lease: Duration,
        backoff: Duration,
    ) -> Result<Claim, QueueError> {
        let [ttl, dead_ttl, cap] = self.ttl_args();
        let mut conn = self.redis.conn();
        self.count_round_trip();
        let reply: Value = self
            .inner
            .scripts
            .claim
            .key(&self.inner.keys)
            .arg(ttl)
            .arg(dead_ttl)
            .arg(cap)
            .arg(worker)
            .arg(max)
            .arg(u64::try_from(lease.as_micros()).unwrap_or(u64::MAX))
            .arg(u64::try_from(backoff.as_micros()).unwrap_or(u64::MAX))
            .invoke_async(&mut conn)
            .await
            .map_err(|e| self.error("claim", e))?;
        // Redis read its clock before its reply arrived, so `received` is
        // no earlier than `claimed_us`: times derived from it never run
        // ahead of Redis' (a start can never come after its finish).
        let received = Instant::now();
        parse_claim(reply, received)
    }

    /// Record outcomes; returns, per outcome, whether it was applied (false:
    /// the lease was lost and a newer attempt owns the job).
    ///
    /// One script call per 500 outcomes or 4 MiB of fields, so that a batch
    /// of large outputs never outgrows the response timeout.
    pub async fn ack(&self, outcomes: &[Outcome]) -> Result<Vec<bool>, QueueError> {
        let encoded: Vec<Encoded<'_>> = outcomes.iter().map(|o| (o, o.record.fields())).collect();
        let size = |(_, fields): &Encoded<'_>| fields.iter().map(|(_, v)| v.len()).sum();
        let mut applied = Vec::with_capacity(outcomes.len());
        for chunk in chunks(&encoded, 500, 4 << 20, size) {
            applied.extend(self.ack_chunk(chunk).await?);
        }
        Ok(applied)
    }

    async fn ack_chunk(&self, outcomes: &[Encoded<'_>]) -> Result<Vec<bool>, QueueError> {
        let [ttl, dead_ttl, cap] = self.ttl_args();
        let mut inv = self.inner.scripts.ack.key(&self.inner.keys);
        inv.arg(ttl).arg(dead_ttl).arg(cap);
        for (o, fields) in outcomes {
            let (name, delay) = match o.next {
                Next::Succeeded => ("succeeded", Duration::ZERO),
                Next::Retry { delay } => ("retrying", delay),
                Next::Dead => ("dead", Duration::ZERO),
                Next::Requeue { delay } => ("requeue", delay),
                Next::Wedged { backoff } => ("wedged", backoff),
            };
            let at = u64::try_from(delay.as_micros()).unwrap_or(u64::MAX);
            inv.arg(&o.id)
                .arg(&o.token)
                .arg(name)
                .arg(at)
                .arg(u8::from(o.wait))
                .arg(fields.len());
            for (field, value) in fields {
                inv.arg(*field).arg(value.as_slice());
            }
        }
        let mut conn = self.redis.conn();
        self.count_round_trip();
        let applied: Vec<i64> = inv
            .invoke_async(&mut conn)
            .await
            .map_err(|e| self.error("ack", e))?;
        Ok(applied.into_iter().map(|a| a == 1).collect())
    }

    /// Hand back jobs leased to `worker` that it does not know it holds
    /// (`known`): a claim whose reply was lost. Returns their ids.
    pub async fn recover(&self, worker: &str, known: &[String]) -> Result<Vec<String>, QueueError> {
        let mut conn = self.redis.conn();
        self.count_round_trip();
        self.inner
            .scripts
            .recover
            .key(&self.inner.keys)
            .arg(worker)
            .arg(known)
            .invoke_async(&mut conn)
            .await
            .map_err(|e| self.error("recover lost claims", e))
    }

    /// Renew the leases of running jobs (`(id, token)` pairs); returns, per
    /// job, whether the lease is still ours.
    pub async fn heartbeat(
        &self,
        running: &[(String, String)],
        lease: Duration,
    ) -> Result<Vec<bool>, QueueError> {
        if running.is_empty() {
            return Ok(Vec::new());
        }
        let mut inv = self.inner.scripts.heartbeat.key(&self.inner.keys);
        inv.arg(u64::try_from(lease.as_micros()).unwrap_or(u64::MAX));
        for (id, token) in running {
            inv.arg(id).arg(token);
        }
        let mut conn = self.redis.conn();
        self.count_round_trip();
        let renewed: Vec<i64> = inv
            .invoke_async(&mut conn)
            .await
            .map_err(|e| self.error("heartbeat", e))?;
        Ok(renewed.into_iter().map(|r| r == 1).collect())
    }

    /// Block on `conn` until an enqueue wakes us or `timeout` passes.
    pub async fn wait_for_work(
        &self,
        conn: &mut redis::aio::ConnectionManager,
        timeout: Duration,
    ) -> Result<(), QueueError> {
        self.count_round_trip();
        let _: Option<(String, String)> = conn
            .blpop(self.key("wake"), timeout.as_secs_f64().max(0.01))
            .await
            .map_err(|e| self.error("wait for work", e))?;
        Ok(())
    }
}

/// The idempotency key as stored, scoped by the job's tenant
/// (`TENANT:KEY`), so that one tenant's key never answers another's
/// enqueue with its job (and, with `--wait`, its output); empty for none.
fn idempotency_key(job: &NewJob) -> String {
    job.idempotency_key
        .as_deref()
        .map(|key| format!("{}:{key}", job.plugin.tenant))
        .unwrap_or_default()
}

/// The quota error `enqueue.lua` gives (`QUOTA index limit value quota`),
/// for the job it names among `jobs` (the chunk's and those after it).
fn over_quota(e: &redis::RedisError, jobs: &[NewJob]) -> Option<QueueError> {
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
