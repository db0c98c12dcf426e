//! The tenant-scoped key-value stores behind the `spool:job/kv` import.
//!
//! The sandbox defines the [`KeyValue`] trait, checks keys and values
//! against its limits, and calls the store with the tenant of the running
//! job; the guest only names keys. The stores check the limits again, for
//! embedders that call them directly. [`RedisKv`] stores them at
//! `PREFIX:{kv:TENANT}:KEY` — the tenant is the hash tag, and a guest cannot
//! choose it, so no key of one tenant is reachable from another's plugins.
//! [`MemoryKv`] serves `spool call`.

use crate::locks::lock;
use crate::redis::SyncRedis;
pub use crate::sandbox::kv::{KeyValue, KvError, MAX_KEY, MAX_VALUE, check};
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

/// Keys in Redis, on the blocking connection pool host calls use (they run
/// on the worker's job threads, outside the async runtime).
pub struct RedisKv {
    redis: SyncRedis,
    prefix: String,
}

impl std::fmt::Debug for RedisKv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisKv")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisKv {
    /// Keys go under `prefix` (e.g. `spool`).
    pub fn new(url: &str, prefix: &str) -> Result<Self, KvError> {
        Ok(RedisKv {
            redis: SyncRedis::new(url).map_err(|e| KvError::Unavailable(e.to_string()))?,
            prefix: prefix.to_string(),
        })
    }

    /// The Redis key of `key` for `tenant`.
    pub fn redis_key(&self, tenant: &str, key: &str) -> String {
        format!("{}:{{kv:{tenant}}}:{key}", self.prefix)
    }

    fn with_connection<T>(
        &self,
        f: impl Fn(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> Result<T, KvError> {
        self.redis
            .with_connection(f)
            .map_err(|e| KvError::Unavailable(e.to_string()))
    }
}

impl KeyValue for RedisKv {
    fn get(&self, tenant: &str, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        check(key, None)?;
        let rkey = self.redis_key(tenant, key);
        self.with_connection(|c| redis::cmd("GET").arg(&rkey).query(c))
    }

    fn set(
        &self,
        tenant: &str,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<(), KvError> {
        check(key, Some(value))?;
        let rkey = self.redis_key(tenant, key);
        self.with_connection(|c| {
            let mut cmd = redis::cmd("SET");
            cmd.arg(&rkey).arg(value);
            if let Some(ttl) = ttl {
                cmd.arg("EX").arg(ttl.as_secs().max(1));
            }
            cmd.query(c)
        })
    }

    fn delete(&self, tenant: &str, key: &str) -> Result<bool, KvError> {
        check(key, None)?;
        let rkey = self.redis_key(tenant, key);
        let removed: i64 = self.with_connection(|c| redis::cmd("DEL").arg(&rkey).query(c))?;
        Ok(removed == 1)
    }
}
