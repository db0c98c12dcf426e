//! Effective limits for code on the worker's job threads (host calls, the
//! cache's store), read from Redis at most once per tenant per
//! [`FRESH`]: a changed limit reaches every worker within that time, and a
//! busy tenant costs no extra round trip per call.

use super::limits::Limits;
use super::store::TenantStore;
use crate::locks::lock;
use crate::redis::SyncRedis;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a read stays fresh.
pub const FRESH: Duration = Duration::from_secs(2);

/// Most tenants remembered at once.
const MAX_KNOWN: usize = 10_000;

/// Tenants' effective limits, cached briefly.
pub struct Directory {
    redis: Arc<SyncRedis>,
    store: TenantStore,
    known: Mutex<HashMap<String, (Instant, Limits)>>,
}

impl std::fmt::Debug for Directory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Directory").finish_non_exhaustive()
    }
}

impl Directory {
    /// Limits under `prefix`, read through `redis`.
    pub fn new(redis: Arc<SyncRedis>, prefix: &str) -> Self {
        Directory {
            redis,
            store: TenantStore::new(prefix),
            known: Mutex::new(HashMap::new()),
        }
    }

    /// `tenant`'s limits. When Redis cannot be read, the last values read
    /// (or the built-in defaults): enforcement never stops, and the write
    /// the limit guards will meet the same unreachable Redis anyway.
    pub fn limits(&self, tenant: &str) -> Limits {
        if let Some((at, limits)) = lock(&self.known).get(tenant)
            && at.elapsed() < FRESH
        {
            return limits.clone();
        }
        let read = self
            .redis
            .with_connection(|c| self.store.read(c, &[tenant]));
        let mut known = lock(&self.known);
        // Tenant names come from job envelopes: keep the map bounded.
        if known.len() >= MAX_KNOWN {
            known.clear();
        }
        match read.map(|mut v| v.pop()) {
            Ok(Some(limits)) => {
                known.insert(tenant.to_string(), (Instant::now(), limits.clone()));
                limits
            }
            Ok(None) | Err(_) => known
                .get(tenant)
                .map(|(_, l)| l.clone())
                .unwrap_or_default(),
        }
    }
}
