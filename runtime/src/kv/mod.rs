//! The tenant-scoped key-value stores behind the `spool:job/kv` import.
//!
//! The sandbox defines the [`KeyValue`] trait, checks keys and values
//! against its limits, and calls the store with the tenant of the running
//! job; the guest only names keys. The stores check the limits again, for
//! embedders that call them directly.
//!
//! - [`RedisKv`] (`in_redis.rs`) stores them at `PREFIX:{kv:TENANT}:KEY` —
//!   the tenant is the hash tag, and a guest cannot choose it, so no key of
//!   one tenant is reachable from another's plugins. Writes go through
//!   scripts (`lua/`) that check the tenant's quotas (bytes, keys, writes
//!   per second) and account for them in the same atomic step.
//! - [`MemoryKv`] serves `spool call` (one process, no quotas).

mod in_redis;

use crate::locks::lock;
pub use crate::sandbox::kv::{KeyValue, KvError, MAX_KEY, MAX_VALUE, check};
pub use in_redis::{RedisKv, usage};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// `(tenant, key)` → `(value, expires at)`.
type Entries = HashMap<(String, String), (Vec<u8>, Option<Instant>)>;

/// Keys in process memory, for `spool call`.
#[derive(Debug, Default)]
pub struct MemoryKv {
    entries: Mutex<Entries>,
}

impl KeyValue for MemoryKv {
    fn get(&self, tenant: &str, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        check(key, None)?;
        let entries = lock(&self.entries);
        Ok(entries
            .get(&(tenant.to_string(), key.to_string()))
            .filter(|(_, expires)| expires.is_none_or(|at| at > Instant::now()))
            .map(|(value, _)| value.clone()))
    }

    fn set(
        &self,
        tenant: &str,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<(), KvError> {
        check(key, Some(value))?;
        let mut entries = lock(&self.entries);
        entries.insert(
            (tenant.to_string(), key.to_string()),
            (value.to_vec(), ttl.map(|t| Instant::now() + t)),
        );
        Ok(())
    }

    fn delete(&self, tenant: &str, key: &str) -> Result<bool, KvError> {
        check(key, None)?;
        let mut entries = lock(&self.entries);
        Ok(entries
            .remove(&(tenant.to_string(), key.to_string()))
            .is_some())
    }
}
