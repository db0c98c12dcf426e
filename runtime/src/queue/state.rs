//! What each tenant has in a queue — queued, grouped, delayed, running,
//! dead, paused, its rate bucket — read by `stats.lua` in the tenant's
//! slot, for `spool tenants list`, `spool stats` and `spool job`.

use super::{Queue, QueueError};
use redis::Value;

/// One tenant's state in one queue.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct TenantState {
    /// The tenant.
    pub tenant: String,
    /// Redis' clock when read (µs).
    pub now_us: u64,
    /// Jobs in its ready lists.
    pub queued: u64,
    /// Jobs waiting in its groups.
    pub grouped: u64,
    /// Jobs waiting for their time (delays, backoffs).
    pub delayed: u64,
    /// Jobs leased (claimed and not yet acked): what its cap counts.
    pub running: u64,
    /// Dead letters now.
    pub dead_letters: u64,
    /// `spool tenants pause`.
    pub paused: bool,
    /// Tokens in its rate bucket when last claimed from (none: unused).
    pub tokens: Option<f64>,
    /// When the bucket was last written (µs).
    pub bucket_at_us: u64,
    /// Jobs that ever succeeded.
    pub succeeded_total: u64,
    /// Jobs that ever died.
    pub dead_total: u64,
    /// Retries scheduled, ever.
    pub retried_total: u64,
    /// Groups with jobs waiting.
    pub groups_waiting: u64,
    /// For the group asked about: jobs holding its slots, jobs waiting,
    /// whether it is paused.
    pub group: Option<GroupState>,
    /// The first lease to expire (µs), if any job runs.
    pub first_lease_us: Option<u64>,
    /// Jobs in its ready lists by priority: high, normal, low (they add
    /// up to `queued`).
    pub ready: [u64; 3],
}

/// One group's state.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct GroupState {
    /// The group.
    pub name: String,
    /// Jobs holding its slots (running, retrying, handed back).
    pub held: u64,
    /// Jobs waiting in it.
    pub waiting: u64,
    /// `spool tenants pause TENANT --group G`.
    pub paused: bool,
}

impl Queue {
    /// Every tenant this queue has seen (announced at least once), by name.
    pub async fn tenants(&self) -> Result<Vec<String>, QueueError> {
        let mut conn = self.redis.conn();
        self.count_round_trip();
        redis::cmd("ZRANGE")
            .arg(self.key("seq"))
            .arg(0)
            .arg(-1)
            .query_async(&mut conn)
            .await
            .map_err(|e| self.error("list tenants", e))
    }

    /// The state of each of `tenants` (with `group` of each, if given), in
    /// one pipeline.
    pub async fn tenant_states(
        &self,
        tenants: &[String],
        group: Option<&str>,
    ) -> Result<Vec<TenantState>, QueueError> {
        if tenants.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = tenants.iter().map(|t| self.tenant_keys(t)).collect();
        let calls: Vec<_> = keys
            .iter()
            .map(|k| {
                let mut inv = self.inner.scripts.stats.key(k);
                inv.arg(group.unwrap_or(""));
                inv
            })
            .collect();
        let replies = self.run_all("read tenant state", &calls).await?;
        tenants
            .iter()
            .zip(replies)
            .map(|(t, reply)| parse_state(t, group, reply))
            .collect()
    }

    /// Every tenant's state, by name.
    pub async fn all_tenant_states(&self) -> Result<Vec<TenantState>, QueueError> {
        let tenants = self.tenants().await?;
        let mut states = Vec::with_capacity(tenants.len());
        for chunk in tenants.chunks(500) {
            states.extend(self.tenant_states(chunk, None).await?);
        }
        Ok(states)
    }
}

fn parse_state(tenant: &str, group: Option<&str>, reply: Value) -> Result<TenantState, QueueError> {
    let bad = |e: redis::ParsingError| QueueError::protocol("read tenant state", e.to_string());
    let items: Vec<Value> = redis::from_redis_value(reply).map_err(bad)?;
    if items.len() < 20 {
        return Err(QueueError::protocol("read tenant state", "a short reply"));
    }
    let n = |i: usize| match &items[i] {
        Value::Int(v) => u64::try_from(*v).unwrap_or(0),
        other => crate::redis::value::text(other.clone())
            .and_then(|t| t.parse().ok())
            .unwrap_or(0),
    };
    let tokens = crate::redis::value::text(items[7].clone()).and_then(|t| t.parse::<f64>().ok());
    Ok(TenantState {
        tenant: tenant.to_string(),
        now_us: n(0),
        queued: n(1),
        grouped: n(2),
        delayed: n(3),
        running: n(4),
        dead_letters: n(5),
        paused: n(6) == 1,
        tokens,
        bucket_at_us: n(8),
        succeeded_total: n(9),
        dead_total: n(10),
        retried_total: n(11),
        groups_waiting: n(12),
        group: group.map(|g| GroupState {
            name: g.to_string(),
            held: n(13),
            waiting: n(14),
            paused: n(15) == 1,
        }),
        first_lease_us: Some(n(16)).filter(|v| *v > 0),
        ready: [n(17), n(18), n(19)],
    })
}
