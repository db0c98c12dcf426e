//! Why a queued job has not started: the tenant is paused or at its cap,
//! its rate ran out, its group is busy or paused — or it is simply in line.
//! Read for `spool job`, from the tenant's state and settings.

use super::record::{JobRecord, Status};
use super::state::TenantState;
use super::{Queue, QueueError};
use crate::tenants::{Limit, Limits};

impl Queue {
    /// Fill in `record.waiting` for a queued or delayed job of `tenant`.
    pub async fn why_waiting(
        &self,
        tenant: &str,
        record: &mut JobRecord,
    ) -> Result<(), QueueError> {
        if !matches!(
            record.status,
            Some(Status::Queued | Status::Delayed | Status::Retrying)
        ) {
            return Ok(());
        }
        let state = self
            .tenant_states(&[tenant.to_string()], record.group.as_deref())
            .await?
            .pop()
            .unwrap_or_default();
        let limits = self
            .tenant_limits(std::iter::once(tenant))
            .await?
            .remove(tenant)
            .unwrap_or_default();
        record.waiting = Some(reason(tenant, record, &state, &limits));
        Ok(())
    }
}

/// The first thing that holds the job back, in the order a claim checks.
pub(crate) fn reason(tenant: &str, record: &JobRecord, s: &TenantState, l: &Limits) -> String {
    if let (Some(Status::Delayed | Status::Retrying), Some(at)) = (record.status, record.run_at_us)
        && at > s.now_us
    {
        return format!("due in {:.1}s", (at - s.now_us) as f64 / 1e6);
    }
    if s.paused {
        return format!("paused: tenant {tenant} is paused (spool tenants resume {tenant})");
    }
    let cap = l.get(Limit::Concurrency);
    if cap > 0 && s.running >= cap {
        return format!("tenant at concurrency cap {}/{cap}", s.running);
    }
    let rate = l.get(Limit::Rate);
    if rate > 0
        && let Some(tokens) = s.tokens
    {
        let refilled =
            tokens + s.now_us.saturating_sub(s.bucket_at_us) as f64 * rate as f64 / 3.6e9;
        if refilled < 1.0 {
            let wait_us = ((1.0 - refilled) * 3.6e9 / rate as f64).ceil() as u64;
            let at = std::time::UNIX_EPOCH + std::time::Duration::from_micros(s.now_us + wait_us);
            let until = humantime::format_rfc3339_millis(at);
            return format!("rate limited until {until} ({})", Limit::Rate.show(rate));
        }
    }
    if let Some(g) = &s.group {
        if g.paused {
            return format!(
                "group {} is paused (spool tenants resume {tenant} --group {})",
                g.name, g.name
            );
        }
        let most = l.get(Limit::GroupConcurrency);
        if record.attempts == 0 && most > 0 && g.held >= most {
            return format!(
                "group busy: {} of group {}'s jobs hold its {most} slot(s); {} wait in it",
                g.held, g.name, g.waiting
            );
        }
    }
    format!(
        "in line: {} jobs of tenant {tenant} queued, {} running",
        s.queued + s.grouped,
        s.running
    )
}
