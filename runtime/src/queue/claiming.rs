//! Claiming: pick the tenants with work (the queue's slot), share the
//! claim's slots between them by the worker's rotation and their weights,
//! claim from each tenant's slot (one pipeline, which also carries the
//! next claim's pick), then tell the queue's slot which tenants ran out.
//! One round trip under load when nothing changes hands, whatever the
//! number of tenants.

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
pub(super) struct Picked {
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
        let wake = self.inner.wake_next.swap(false, Ordering::Relaxed);
        let lease_us = u64::try_from(lease.as_micros()).unwrap_or(u64::MAX);
        self.inner.lease_us.store(lease_us, Ordering::Relaxed);
        let hinted = self.hinted(max);
        let max = hinted.as_ref().map_or(max, |_| Rotation::one_turn(max));
        let picked = match hinted.or_else(|| self.cached_pick(max)) {
            Some(picked) => picked,
            None => {
                let (cursor, inclusive) = self.rotation_start();
                self.pick(&cursor, inclusive, Rotation::visits(max), wake)
                    .await?
            }
        };
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
        let shares = self.shares(&picked.tenants, &limits, max);
        // The next claim's pick rides along with this claim (one round
        // trip, not two): it starts where this claim's turns ended.
        let next = (max > 0).then(|| {
            let (cursor, inclusive) = self.rotation_start();
            (cursor, inclusive, Rotation::visits(max), wake)
        });
        let (claimed, fresh) = self
            .claim_shares(
                worker,
                &shares,
                &limits,
                (lease, backoff),
                picked.now_us,
                next,
            )
            .await?;
        if let Some(fresh) = fresh {
            self.keep_next_pick(&mut claim, fresh, &claimed);
        }
        let cut = claimed.iter().any(|(_, c)| c.cut);
        self.gather(&mut claim, claimed).await;
        // A full claim with work left (or one its byte budget cut short):
        // the next pick wakes an idle worker for the rest (no extra round
        // trip now).
        if max > 0 && (claim.jobs.len() >= max || cut) && claim.more {
            self.inner.wake_next.store(true, Ordering::Relaxed);
        }
        Ok(claim)
    }

    /// The pick that rode along with a claim: whether work remains, and
    /// the next claim's tenants. On a cluster it ran before the tenants
    /// this claim found dry leave the ready set (`gather` settles them);
    /// on one server they left in the claim's own call. Either way they
    /// are not more work, and the next claim need not visit them. (If one
    /// came back meanwhile, its enqueue woke a worker for it.)
    fn keep_next_pick(
        &self,
        claim: &mut Claim,
        mut fresh: Picked,
        claimed: &[(String, TenantClaim)],
    ) {
        fresh
            .tenants
            .retain(|t| !claimed.iter().any(|(c, tc)| c == t && tc.leave.is_some()));
        claim.next_due = fresh.next_timer;
        claim.more |= !fresh.tenants.is_empty();
        *lock(&self.inner.next_pick) = Some((Instant::now(), fresh));
    }

    /// Each picked tenant's slots of a claim of `max` (by the rotation and
    /// the weights); for `max` 0, none for each: the claims only tend them
    /// (due jobs, expired leases).
    fn shares(
        &self,
        tenants: &[String],
        limits: &std::collections::HashMap<&str, Limits>,
        max: usize,
    ) -> Vec<(String, usize)> {
        if max == 0 {
            return tenants.iter().map(|t| (t.clone(), 0)).collect();
        }
        let weight = |t: &str| limits.get(t).map_or(1, |l| l.get(Limit::Weight));
        lock(&self.inner.rotation).allot(tenants, weight, max)
    }

    /// Where this handle's rotation stands, for a pick.
    fn rotation_start(&self) -> (String, bool) {
        let rotation = lock(&self.inner.rotation);
        let (cursor, inclusive) = rotation.start();
        (cursor.to_string(), inclusive)
    }

    /// The tenant the last wake token named, as a pick of it alone: an idle
    /// worker woken for a tenant's first job claims it in one round trip,
    /// not two. (If another worker was quicker, the claim finds nothing and
    /// the pick riding along with it says where to go next.) The claim then
    /// gives it one turn ([`Rotation::one_turn`]), not the whole claim.
    fn hinted(&self, max: usize) -> Option<Picked> {
        let tenant = lock(&self.inner.hint).take()?;
        // Redis' clock, as the last pick read it (quarantine timers are
        // on it), not this host's.
        let offset = self.inner.clock_offset_us.load(Ordering::Relaxed);
        (max > 0).then(|| Picked {
            now_us: crate::ids::now_us().saturating_add_signed(offset),
            tenants: vec![tenant],
            next_timer: None,
        })
    }

    /// The pick that rode along with the last claim, if it is recent enough
    /// to stand for the queue now (under load claims follow each other
    /// within milliseconds; a tenant that came since waits one claim).
    fn cached_pick(&self, max: usize) -> Option<Picked> {
        let cached = lock(&self.inner.next_pick).take()?;
        let (at, picked) = cached;
        (max > 0 && at.elapsed() < PICK_FRESH && !picked.tenants.is_empty()).then_some(picked)
    }

    /// Collect the tenants' claims into `claim`; take out of the ready set
    /// the tenants that ran out, announce those that came back.
    async fn gather(&self, claim: &mut Claim, claimed: Vec<(String, TenantClaim)>) {
        let (mut heard, mut leaving) = (Vec::new(), Vec::new());
        for (tenant, claimed) in claimed {
            claim.more |= claimed.leave.is_none();
            if claimed.unsure {
                claim.unsure.push(tenant);
            }
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
            // (Not one the claim took out itself: nothing to write.)
            leaving.extend(claimed.leave.filter(|l| !l.settled));
        }
        // The jobs are leased to us whatever happens now: a failure here
        // costs a tenant a wasted visit or, at worst, its work waits for
        // the sweep. A worker does it in the background: its jobs need not
        // wait for that round trip.
        if leaving.is_empty() && heard.is_empty() {
            return;
        }
        let queue = self.clone();
        let tidy = async move {
            if let Err(e) = queue.settle(&leaving).await {
                tracing::warn!("claim: {e}");
            }
            if let Err(e) = queue.announce(&heard).await {
                tracing::warn!("claim: {e}");
            }
        };
        if self.background_settle {
            tokio::spawn(tidy);
        } else {
            tidy.await;
        }
    }

    /// Claims of this handle return before they tidy the queue's ready set
    /// (take out the tenants they found dry, announce those that came
    /// back): a worker's jobs start one round trip sooner. Both are
    /// idempotent and ordered by sequence numbers, so a claim that runs
    /// before they land sees at worst a tenant it need not visit.
    #[must_use]
    pub fn settling_in_background(mut self) -> Self {
        self.background_settle = true;
        self
    }

    /// Claims of this handle take at most `bytes` of job records (their
    /// envelopes, payloads included) in all, split evenly between the
    /// tenants a claim visits; a tenant's first job is taken whatever its
    /// size. 0: no limit but `max`.
    #[must_use]
    pub fn with_claim_bytes(mut self, bytes: usize) -> Self {
        self.claim_bytes = bytes;
        self
    }

    /// `pick.lua`: move due timers, read the next tenants of the rotation.
    async fn pick(
        &self,
        cursor: &str,
        inclusive: bool,
        k: usize,
        wake: bool,
    ) -> Result<Picked, QueueError> {
        let call = self.pick_call(cursor, inclusive, k, wake);
        let reply = self
            .run_all("pick tenants", std::slice::from_ref(&call))
            .await?;
        let picked = parse_pick(reply.into_iter().next().unwrap_or(Value::Nil))?;
        let local = i64::try_from(crate::ids::now_us()).unwrap_or(i64::MAX);
        let redis = i64::try_from(picked.now_us).unwrap_or(i64::MAX);
        self.inner
            .clock_offset_us
            .store(redis.saturating_sub(local), Ordering::Relaxed);
        Ok(picked)
    }

    fn pick_call(
        &self,
        cursor: &str,
        inclusive: bool,
        k: usize,
        wake: bool,
    ) -> super::scripts::Call<'_> {
        let mut inv = self.inner.scripts.pick.key(&self.inner.keys);
        inv.arg(cursor)
            .arg(u8::from(inclusive))
            .arg(k)
            .arg(u8::from(wake));
        inv
    }

    /// A claim of the tenant whose keys are `keys`, its arguments to come.
    /// Not on a cluster, the queue's own prefix goes along: a tenant the
    /// claim finds dry leaves the ready set in that call (no settle).
    fn claim_call(&self, keys: &str) -> super::scripts::Call<'_> {
        if self.redis.is_cluster() {
            self.inner.scripts.claim.key(keys)
        } else {
            self.inner
                .scripts
                .claim
                .key(&[keys, self.inner.keys.as_str()])
        }
    }

    /// Add the next claim's pick to a claim's `calls`: on one server as
    /// the last claim's `ARGV[13..16]` (claim.lua makes it at its end, one
    /// script call less), else as a call of its own after them. True when
    /// it went inside the last claim.
    fn add_pick<'a>(
        &'a self,
        calls: &mut Vec<super::scripts::Call<'a>>,
        next: Option<&(String, bool, usize, bool)>,
    ) -> bool {
        let Some((cursor, inclusive, k, wake)) = next else {
            return false;
        };
        match calls.last_mut().filter(|_| !self.redis.is_cluster()) {
            Some(last) => {
                last.arg(cursor.as_str())
                    .arg(u8::from(*inclusive))
                    .arg(*k)
                    .arg(u8::from(*wake));
                true
            }
            None => {
                calls.push(self.pick_call(cursor, *inclusive, *k, *wake));
                false
            }
        }
    }

    /// Redis' clock less this host's (`wall` when the replies came), as
    /// the first readable of `claimed` read it: the acks check the clock
    /// they send against it (ops.rs, `redis_now`).
    fn note_clock(&self, claimed: &[(String, TenantClaim)], wall: u64) {
        if let Some((_, c)) = claimed.iter().find(|(_, c)| !c.unsure && c.now_us > 0) {
            let redis = i64::try_from(c.now_us).unwrap_or(i64::MAX);
            let local = i64::try_from(wall).unwrap_or(i64::MAX);
            self.inner
                .clock_offset_us
                .store(redis.saturating_sub(local), Ordering::Relaxed);
        }
    }

    /// One claim script call per tenant share, in one pipeline.
    async fn claim_shares(
        &self,
        worker: &str,
        shares: &[(String, usize)],
        limits: &std::collections::HashMap<&str, Limits>,
        (lease, backoff): (Duration, Duration),
        now_us: u64,
        next: Option<(String, bool, usize, bool)>,
    ) -> Result<(Vec<(String, TenantClaim)>, Option<Picked>), QueueError> {
        let [ttl, dead_ttl, cap] = self.ttl_args();
        let keys: Vec<String> = shares.iter().map(|(t, _)| self.tenant_keys(t)).collect();
        let budget = match self.claim_bytes {
            0 => 0,
            all => (all / shares.len().max(1)).max(1),
        };
        let calls: Vec<_> = shares
            .iter()
            .zip(&keys)
            .map(|((tenant, n), keys)| {
                let l = limits.get(tenant.as_str()).cloned().unwrap_or_default();
                let mut inv = self.claim_call(keys);
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
                    .arg(l.get(Limit::GroupConcurrency))
                    .arg(budget);
                inv
            })
            .collect();
        let mut calls = calls;
        let inside = self.add_pick(&mut calls, next.as_ref());
        let mut replies = self.run_calls("claim", &calls).await?;
        // Redis read its clock before its reply arrived, so `received` is
        // no earlier than `claimed_us`: times derived from it never run
        // ahead of Redis' (a start can never come after its finish).
        let received = Instant::now();
        let wall = crate::ids::now_us();
        let fresh = next.and_then(|_| ridden_pick(&mut replies, inside));
        let claimed: Vec<_> = shares
            .iter()
            .zip(replies)
            .map(|((tenant, _), reply)| {
                let claim = reply
                    .and_then(|r| parse_claim(tenant, r, received))
                    .unwrap_or_else(|e| quarantined(tenant, &e, now_us));
                (tenant.clone(), claim)
            })
            .collect();
        self.note_clock(&claimed, wall);
        Ok((claimed, fresh))
    }
}

/// The pick that rode along with a claim's `replies`: inside the last
/// claim's reply, or (`inside` false) the last reply of its own, taken
/// off. A failed pick only costs the next claim a pick of its own.
fn ridden_pick(replies: &mut Vec<Result<Value, QueueError>>, inside: bool) -> Option<Picked> {
    if inside {
        replies
            .last_mut()
            .and_then(|r| r.as_mut().ok())
            .and_then(take_pick)
    } else {
        replies.pop().and_then(|r| r.and_then(parse_pick).ok())
    }
}

/// Redis refused one tenant's claim (a key of the wrong type written by
/// hand, say), or its reply could not be read. The others' claims stand;
/// this tenant leaves the ready set whatever was announced since, and is
/// tried again after [`QUARANTINE`]. Part of it may have been applied (a
/// script stops at an error, it does not roll back; an unreadable reply
/// was applied whole): the claim is `unsure`, so that the worker hands
/// back what it leased without knowing.
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
            settled: false,
        }),
        unsure: true,
        cut: false,
    }
}

/// Decode `{now_us, next_timer_us, tenant...}` of `pick.lua`.
fn parse_pick(reply: Value) -> Result<Picked, QueueError> {
    let items: Vec<Value> = redis::from_redis_value(reply)
        .map_err(|e| QueueError::protocol("pick tenants", e.to_string()))?;
    let mut items = items.into_iter();
    let (Some(Value::Int(now)), Some(Value::Int(next))) = (items.next(), items.next()) else {
        return Err(QueueError::protocol("pick tenants", "no times"));
    };
    Ok(Picked {
        now_us: now.unsigned_abs(),
        tenants: items.filter_map(crate::redis::value::text).collect(),
        next_timer: (next >= 0).then(|| Duration::from_micros(next.unsigned_abs())),
    })
}

/// The pick a claim made in its own call (its reply's eighth value),
/// taken out of the reply, which is then as any other claim's.
fn take_pick(reply: &mut Value) -> Option<Picked> {
    match reply {
        Value::Array(items) if items.len() == 8 => items.pop().and_then(|p| parse_pick(p).ok()),
        _ => None,
    }
}

/// How long a pick that rode along with a claim stands for the queue.
const PICK_FRESH: Duration = Duration::from_millis(20);

/// How long a tenant whose claim Redis refused is left out.
const QUARANTINE: Duration = Duration::from_secs(10);

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}
