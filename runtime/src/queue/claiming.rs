//! Claiming: pick the tenants with work (the queue's slot), share the
//! claim's slots between them by the worker's rotation and their weights,
//! claim from each tenant's slot (one pipeline), then tell the queue's
//! slot which tenants ran out. Three round trips under load (fewer when
//! nothing changes hands), whatever the number of tenants.

use super::announce::Leave;
use super::reply::{Claim, TenantClaim, parse_claim};
use super::rotation::Rotation;
use super::{Queue, QueueError};
use crate::locks::lock;
use crate::tenants::{Limit, Limits};
use redis::Value;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// What `pick.lua` answered.
struct Picked {
    /// Redis' clock (µs).
    now_us: u64,
    tenants: Vec<String>,
    next_timer: Option<Duration>,
}

impl Queue {
    /// Claim up to `max` jobs for `worker` under a lease of `lease`. Also
    /// promotes due delayed jobs and backs off expired leases of the
    /// tenants it visits.
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
    ///
    /// Tenants share the claim by turns (this handle's rotation, weighted
    /// by each tenant's `weight`); each tenant's claim applies its cap, rate
    /// and groups atomically in its own slot.
    pub async fn claim_backing_off(
        &self,
        worker: &str,
        max: usize,
        lease: Duration,
        backoff: Duration,
    ) -> Result<Claim, QueueError> {
        let (cursor, inclusive) = {
            let rotation = lock(&self.inner.rotation);
            let (c, i) = rotation.start();
            (c.to_string(), i)
        };
        let wake = self.inner.wake_next.swap(false, Ordering::Relaxed);
        let picked = self
            .pick(&cursor, inclusive, Rotation::visits(max), wake)
            .await?;
        let mut claim = Claim {
            next_due: picked.next_timer,
            ..Claim::default()
        };
        if picked.tenants.is_empty() {
            return Ok(claim);
        }
        let limits = self
            .tenant_limits(picked.tenants.iter().map(String::as_str))
            .await?;
        let shares = if max == 0 {
            // Claim nothing, but tend each tenant picked (due jobs, expired
            // leases).
            picked.tenants.iter().map(|t| (t.clone(), 0)).collect()
        } else {
            lock(&self.inner.rotation).allot(
                &picked.tenants,
                |t| limits.get(t).map_or(1, |l| l.get(Limit::Weight)),
                max,
            )
        };
        let claimed = self
            .claim_shares(worker, &shares, &limits, (lease, backoff), picked.now_us)
            .await?;
        self.gather(&mut claim, claimed).await;
        // A full claim with work left: the next pick wakes an idle worker
        // for the rest (no extra round trip now).
        if max > 0 && claim.jobs.len() >= max && claim.more {
            self.inner.wake_next.store(true, Ordering::Relaxed);
        }
        Ok(claim)
    }

    /// Collect the tenants' claims into `claim`; take out of the ready set
    /// the tenants that ran out, announce those that came back.
    async fn gather(&self, claim: &mut Claim, claimed: Vec<(String, TenantClaim)>) {
        let (mut heard, mut leaving) = (Vec::new(), Vec::new());
        for (_tenant, claimed) in claimed {
            claim.more |= claimed.leave.is_none();
            // A timer this claim set (a rate refilling, a lease expiring)
            // may be due before any the pick saw: wake for it.
            if let Some(leave) = claimed.leave.as_ref().filter(|l| l.timer > 0) {
                let due = Duration::from_micros(
                    u64::try_from(leave.timer)
                        .unwrap_or(0)
                        .saturating_sub(claimed.now_us),
                );
                claim.next_due = Some(claim.next_due.map_or(due, |d| d.min(due)));
            }
            claim.jobs.extend(claimed.jobs);
            heard.extend(claimed.announce);
            leaving.extend(claimed.leave);
        }
        // The jobs are leased to us whatever happens now: a failure here
        // costs a tenant a wasted visit or, at worst, its work waits for
        // the sweep.
        if let Err(e) = self.settle(&leaving).await {
            tracing::warn!("claim: {e}");
        }
        if let Err(e) = self.announce(&heard).await {
            tracing::warn!("claim: {e}");
        }
    }

    /// `pick.lua`: move due timers, read the next tenants of the rotation.
    async fn pick(
        &self,
        cursor: &str,
        inclusive: bool,
        k: usize,
        wake: bool,
    ) -> Result<Picked, QueueError> {
        let mut conn = self.redis.conn();
        self.count_round_trip();
        let reply: Vec<Value> = self
            .inner
            .scripts
            .pick
            .key(&self.inner.keys)
            .arg(cursor)
            .arg(u8::from(inclusive))
            .arg(k)
            .arg(u8::from(wake))
            .invoke_async(&mut conn)
            .await
            .map_err(|e| self.error("pick tenants", e))?;
        let mut items = reply.into_iter();
        let (Some(Value::Int(now)), Some(Value::Int(next))) = (items.next(), items.next()) else {
            return Err(QueueError::protocol("pick tenants", "no times"));
        };
        Ok(Picked {
            now_us: now.unsigned_abs(),
            tenants: items.filter_map(crate::redis::value::text).collect(),
            next_timer: (next >= 0).then(|| Duration::from_micros(next.unsigned_abs())),
        })
    }

    /// One claim script call per tenant share, in one pipeline.
    async fn claim_shares(
        &self,
        worker: &str,
        shares: &[(String, usize)],
        limits: &std::collections::HashMap<&str, Limits>,
        (lease, backoff): (Duration, Duration),
        now_us: u64,
    ) -> Result<Vec<(String, TenantClaim)>, QueueError> {
        let [ttl, dead_ttl, cap] = self.ttl_args();
        let keys: Vec<String> = shares.iter().map(|(t, _)| self.tenant_keys(t)).collect();
        let calls: Vec<_> = shares
            .iter()
            .zip(&keys)
            .map(|((tenant, n), keys)| {
                let l = limits.get(tenant.as_str()).cloned().unwrap_or_default();
                let mut inv = self.inner.scripts.claim.key(keys);
                inv.arg(ttl)
                    .arg(dead_ttl)
                    .arg(cap)
                    .arg(worker)
                    .arg(*n)
                    .arg(micros(lease))
                    .arg(micros(backoff))
                    .arg(l.get(Limit::Concurrency))
                    .arg(l.get(Limit::Rate))
                    .arg(l.get(Limit::Burst))
                    .arg(l.get(Limit::GroupConcurrency));
                inv
            })
            .collect();
        let replies = self.run_calls("claim", &calls).await?;
        // Redis read its clock before its reply arrived, so `received` is
        // no earlier than `claimed_us`: times derived from it never run
        // ahead of Redis' (a start can never come after its finish).
        let received = Instant::now();
        let claimed = shares.iter().zip(replies).map(|((tenant, _), reply)| {
            let claim = reply
                .and_then(|r| parse_claim(tenant, r, received))
                .unwrap_or_else(|e| quarantined(tenant, &e, now_us));
            (tenant.clone(), claim)
        });
        Ok(claimed.collect())
    }
}

/// Redis refused one tenant's claim (a key of the wrong type written by
/// hand, say): nothing of it was applied. The others' claims stand; this
/// tenant leaves the ready set whatever was announced since, and is tried
/// again after [`QUARANTINE`].
fn quarantined(tenant: &str, e: &QueueError, now_us: u64) -> TenantClaim {
    tracing::warn!(
        tenant = %tenant,
        "claim: the tenant's queue refused the claim ({e}); trying it again in {}s",
        QUARANTINE.as_secs()
    );
    TenantClaim {
        now_us,
        jobs: Vec::new(),
        announce: None,
        leave: Some(Leave {
            tenant: tenant.to_string(),
            seq: i64::MAX,
            timer: i64::try_from(now_us + micros(QUARANTINE)).unwrap_or(i64::MAX),
        }),
    }
}

/// How long a tenant whose claim Redis refused is left out.
const QUARANTINE: Duration = Duration::from_secs(10);

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}
