//! The tenant-scoped key-value store behind the `spool:job/kv` import.
//!
//! The sandbox calls a [`KeyValue`] with the tenant of the running job; the
//! guest only names keys. [`RedisKv`] stores them at
//! `PREFIX:{kv:TENANT}:KEY` — the tenant is the hash tag, and a guest cannot
//! choose it, so no key of one tenant is reachable from another's plugins.
//! [`MemoryKv`] serves `spool call`.

use crate::sync_redis::SyncRedis;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Longest key, in bytes.
pub const MAX_KEY: usize = 512;
/// Largest value, in bytes.
pub const MAX_VALUE: usize = 1 << 20;

/// Why a key-value call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KvError {
    /// The key or value breaks a limit.
    #[error("{0}")]
    Invalid(String),
    /// The backing store is unreachable.
    #[error("{0}")]
    Unavailable(String),
}

/// A store of keys per tenant.
pub trait KeyValue: Send + Sync {
    /// The value of `key` for `tenant`.
    fn get(&self, tenant: &str, key: &str) -> Result<Option<Vec<u8>>, KvError>;
    /// Set `key` for `tenant`, expiring after `ttl` when given.
    fn set(
        &self,
        tenant: &str,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<(), KvError>;
    /// Delete `key` for `tenant`; true when it existed.
    fn delete(&self, tenant: &str, key: &str) -> Result<bool, KvError>;
}

/// Check a key (and value) against the limits.
pub fn check(key: &str, value: Option<&[u8]>) -> Result<(), KvError> {
    if key.is_empty() || key.len() > MAX_KEY {
        return Err(KvError::Invalid(format!(
            "key of {} bytes: expected 1 to {MAX_KEY} bytes",
            key.len()
        )));
    }
    if let Some(value) = value
        && value.len() > MAX_VALUE
    {
        return Err(KvError::Invalid(format!(
            "value of {} bytes for key {key:?}: the limit is {MAX_VALUE} bytes",
            value.len()
        )));
    }
    Ok(())
}

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
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
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
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.insert(
            (tenant.to_string(), key.to_string()),
            (value.to_vec(), ttl.map(|t| Instant::now() + t)),
        );
        Ok(())
    }

    fn delete(&self, tenant: &str, key: &str) -> Result<bool, KvError> {
        check(key, None)?;
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
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
            redis: SyncRedis::new(url).map_err(KvError::Unavailable)?,
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
