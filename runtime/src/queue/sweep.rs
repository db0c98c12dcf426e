//! The safety net beside the "has work" protocol: once in a while one
//! worker of the fleet (whoever takes the sweep's lock) visits every
//! tenant outside the ready set, so that work whose announcement was lost
//! (a client that crashed between its two transactions) is found within a
//! sweep's period, and moves jobs left under the keys of the layout before
//! fair share into their tenants' slots.

use super::announce::{Announce, Leave};
use super::reply::parse_claim;
use super::{Queue, QueueError};
use crate::tenants::Limit;
use std::time::{Duration, Instant};

/// What a sweep did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Swept {
    /// Tenants visited.
    pub visited: usize,
    /// Tenants found with work but outside the ready set, now announced.
    pub found: usize,
    /// Jobs moved from the old keys.
    pub migrated: u64,
}

/// How long a turn taken every `every` holds its lock: a tenth less (a
/// second at most). Each worker tries once per `every` by its own timer;
/// a lock of `every` itself was often still held when the same worker's
/// next try came a few milliseconds early (its last `SET` took longer to
/// arrive than this one), so the turn was skipped and came every two
/// periods, not one: a sweep every 20 s, not 10.
fn turn_hold(every: Duration) -> Duration {
    every.saturating_sub((every / 10).min(Duration::from_secs(1)))
}

impl Queue {
    /// Drop the `Q:idle` entries of waiters a minute past their deadline
    /// (wake.rs): a worker killed while it waited leaves its entry, which
    /// no enqueue takes while live workers register above it.
    async fn prune_idle(&self) -> Result<(), QueueError> {
        let before = self.redis_wall_clock().saturating_sub(60_000_000);
        redis::cmd("ZREMRANGEBYSCORE")
            .arg(self.key("idle"))
            .arg("-inf")
            .arg(format!("({before}"))
            .query_async::<()>(&mut self.redis.conn())
            .await
            .map_err(|e| self.error("prune the idle workers", e))
    }

    /// Whether `worker` takes the fleet's turn at `what` (a lock `Q:WHAT`
    /// in the queue's slot, held for a little less than `every`, see
    /// [`turn_hold`]): false when another worker took it within that
    /// time. `op` names the step in an error.
    pub(super) async fn take_turn(
        &self,
        what: &'static str,
        worker: &str,
        every: Duration,
        op: &'static str,
    ) -> Result<bool, QueueError> {
        self.count_round_trip();
        let took: Option<String> = redis::cmd("SET")
            .arg(self.key(what))
            .arg(worker)
            .arg("NX")
            .arg("PX")
            .arg(
                u64::try_from(turn_hold(every).as_millis())
                    .unwrap_or(u64::MAX)
                    .max(1),
            )
            .query_async(&mut self.redis.conn())
            .await
            .map_err(|e| self.error(op, e))?;
        Ok(took.is_some())
    }

    /// Sweep, if no other worker did within `every` (a lock in the queue's
    /// slot); `None` when another one did. Leases found expired on the way
    /// back off from `backoff`, as in the worker's claims.
    pub async fn sweep(
        &self,
        worker: &str,
        every: Duration,
        backoff: Duration,
    ) -> Result<Option<Swept>, QueueError> {
        if !self
            .take_turn("sweep", worker, every, "take the sweep lock")
            .await?
        {
            return Ok(None);
        }
        let mut swept = Swept::default();
        if let Err(e) = self.prune_idle().await {
            tracing::warn!("sweep: dropping idle workers that are gone: {e}");
        }
        // A migration that fails (an old key no one can read) must not stop
        // the rest of the sweep.
        match self.migrate_left().await {
            Ok(n) => swept.migrated = n,
            Err(e) => tracing::warn!("sweep: moving jobs from an older Spool's keys: {e}"),
        }
        let outside = self.tenants_outside().await?;
        for chunk in outside.chunks(200) {
            let (visited, found) = self.probe(worker, chunk, backoff).await?;
            swept.visited += visited;
            swept.found += found;
        }
        if swept.found > 0 {
            tracing::warn!(
                tenants = swept.found,
                "found tenants with work that no one announced (a client stopped between its two transactions?); they are served now"
            );
        }
        Ok(Some(swept))
    }

    /// Move jobs left under the old keys, saying so when there were any.
    async fn migrate_left(&self) -> Result<u64, QueueError> {
        if self.legacy_jobs().await? == 0 {
            return Ok(0);
        }
        let started = Instant::now();
        let moved = self.migrate_legacy(|_| {}).await?;
        tracing::warn!(
            jobs = moved,
            "moved jobs enqueued under the keys of an older Spool into their tenants' queues in {:.1}s",
            started.elapsed().as_secs_f64()
        );
        Ok(moved)
    }

    /// Registered tenants not in the ready set.
    async fn tenants_outside(&self) -> Result<Vec<String>, QueueError> {
        let mut conn = self.redis.conn();
        self.count_round_trip();
        let (all, ready): (Vec<String>, Vec<String>) = redis::pipe()
            .zrange(self.key("seq"), 0, -1)
            .zrange(self.key("ready"), 0, -1)
            .query_async(&mut conn)
            .await
            .map_err(|e| self.error("list tenants", e))?;
        let ready: std::collections::HashSet<String> = ready.into_iter().collect();
        Ok(all.into_iter().filter(|t| !ready.contains(t)).collect())
    }

    /// Visit `tenants` with claims of nothing (which promote, reap and
    /// report); announce those with work, set the others' timers.
    async fn probe(
        &self,
        worker: &str,
        tenants: &[String],
        backoff: Duration,
    ) -> Result<(usize, usize), QueueError> {
        let [ttl, dead_ttl, cap] = self.ttl_args();
        let limits = self
            .tenant_limits(tenants.iter().map(String::as_str))
            .await?;
        let keys: Vec<String> = tenants.iter().map(|t| self.tenant_keys(t)).collect();
        let backoff = u64::try_from(backoff.as_micros()).unwrap_or(u64::MAX);
        let calls: Vec<_> = tenants
            .iter()
            .zip(&keys)
            .map(|(t, k)| {
                let l = limits.get(t.as_str()).cloned().unwrap_or_default();
                let mut inv = self.inner.scripts.claim.key(k);
                inv.arg(ttl).arg(dead_ttl).arg(cap).arg(worker).arg(0);
                inv.arg(10_000_000).arg(backoff);
                for limit in [
                    Limit::Concurrency,
                    Limit::Rate,
                    Limit::Burst,
                    Limit::GroupConcurrency,
                ] {
                    inv.arg(l.get(limit));
                }
                inv
            })
            .collect();
        let replies = self.run_calls("sweep tenants", &calls).await?;
        let received = Instant::now();
        let (mut heard, mut leaving) = (Vec::new(), Vec::<Leave>::new());
        for (tenant, reply) in tenants.iter().zip(replies) {
            let claimed = match reply.and_then(|r| parse_claim(tenant, r, received)) {
                Ok(claimed) => claimed,
                Err(e) => {
                    tracing::warn!(tenant = %tenant, "sweep: tenant skipped: {e}");
                    continue;
                }
            };
            match (claimed.leave, claimed.announce) {
                (Some(leave), _) => leaving.push(leave),
                (None, announce) => heard.push(announce.unwrap_or(Announce {
                    tenant: tenant.clone(),
                    seq: 1,
                    timer: 0,
                    ready: true,
                })),
            }
        }
        self.settle(&leaving).await?;
        self.announce(&heard).await?;
        Ok((tenants.len(), heard.len()))
    }
}

#[cfg(test)]
mod tests {
    use super::turn_hold;
    use std::time::Duration;

    /// A turn's lock is gone before the next try one period later, even
    /// one that comes early by a round trip or two.
    #[test]
    fn a_turn_lock_ends_before_the_next_period() {
        assert_eq!(turn_hold(Duration::from_secs(10)), Duration::from_secs(9));
        assert_eq!(turn_hold(Duration::from_secs(60)), Duration::from_secs(59));
        assert_eq!(
            turn_hold(Duration::from_millis(100)),
            Duration::from_millis(90)
        );
        assert_eq!(turn_hold(Duration::ZERO), Duration::ZERO);
    }
}
