//! Waits and event streams under way: at most `--max-waits` per server,
//! and at most a quarter of them per tenant, so one tenant's clients
//! (or ones that left without closing) cannot take every slot.

use super::{ApiError, AppState};
use crate::locks::lock;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::OwnedSemaphorePermit;

/// Slots in use per tenant.
#[derive(Debug, Default)]
pub struct PerTenant {
    used: Mutex<HashMap<String, usize>>,
    /// Most one tenant may hold.
    pub cap: usize,
}

/// A tenant's slot; given back when dropped.
#[derive(Debug)]
pub struct TenantSlot {
    owner: Arc<PerTenant>,
    tenant: String,
}

impl Drop for TenantSlot {
    fn drop(&mut self) {
        let mut used = lock(&self.owner.used);
        if let Some(n) = used.get_mut(&self.tenant) {
            *n -= 1;
            if *n == 0 {
                used.remove(&self.tenant);
            }
        }
    }
}

impl PerTenant {
    /// At most `cap` slots per tenant (at least 1).
    pub fn new(cap: usize) -> Self {
        PerTenant {
            used: Mutex::default(),
            cap: cap.max(1),
        }
    }

    fn take(self: &Arc<Self>, tenant: &str) -> Option<TenantSlot> {
        let mut used = lock(&self.used);
        let n = used.entry(tenant.to_string()).or_default();
        if *n >= self.cap {
            return None;
        }
        *n += 1;
        Some(TenantSlot {
            owner: Arc::clone(self),
            tenant: tenant.to_string(),
        })
    }
}

/// Both slots a wait or a stream of `tenant`'s holds while it lasts.
pub type WaitSlot = (OwnedSemaphorePermit, TenantSlot);

impl AppState {
    /// A slot for a wait or a stream of `tenant`'s job, or 503 `busy`.
    pub fn wait_slot(&self, tenant: &str) -> Result<WaitSlot, ApiError> {
        let Ok(permit) = self.waits.clone().try_acquire_owned() else {
            return Err(ApiError::busy(
                "too many waits and streams in progress on this server; try again shortly",
                Duration::from_secs(1),
            ));
        };
        let Some(slot) = self.per_tenant.take(tenant) else {
            return Err(ApiError::busy(
                format!(
                    "tenant {tenant} has {} waits and streams in progress on this server, its most; try again shortly",
                    self.per_tenant.cap
                ),
                Duration::from_secs(1),
            ));
        };
        Ok((permit, slot))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenant_holds_at_most_its_cap_and_gets_slots_back() {
        let slots = Arc::new(PerTenant::new(2));
        let a = slots.take("acme").unwrap();
        let _b = slots.take("acme").unwrap();
        assert!(slots.take("acme").is_none());
        assert!(
            slots.take("beta").is_some(),
            "another tenant is not held up"
        );
        drop(a);
        assert!(slots.take("acme").is_some());
    }
}
