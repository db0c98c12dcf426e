//! The key-value store in Redis, with the tenants' quotas.

use super::{KeyValue, KvError, check};
use crate::redis::ledger::{self, Usage};
use crate::redis::{SyncRedis, script_with_prelude};
use crate::tenants::{Directory, Limit, Limits};
use redis::Value;
use std::sync::Arc;
use std::time::Duration;

/// Keys in Redis, on the blocking connection pool host calls use (they run
/// on the worker's job threads, outside the async runtime).
pub struct RedisKv {
    redis: Arc<SyncRedis>,
    prefix: String,
    limits: Arc<Directory>,
    set: redis::Script,
    delete: redis::Script,
}

impl std::fmt::Debug for RedisKv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisKv")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// The ledger base of `tenant`'s store: `PREFIX:{kv:TENANT}`.
fn base(prefix: &str, tenant: &str) -> String {
    format!("{prefix}:{{kv:{tenant}}}")
}

/// What `tenant`'s store holds now (for `spool tenants show`).
pub fn usage(
    conn: &mut crate::redis::SyncConn,
    prefix: &str,
    tenant: &str,
) -> redis::RedisResult<Usage> {
    ledger::read(conn, &base(prefix, tenant))
}

impl RedisKv {
    /// Keys go under `prefix` (e.g. `spool`) in the Redis at `url`, within
    /// the tenants' limits stored there.
    pub fn new(url: &str, prefix: &str) -> Result<Self, KvError> {
        let redis = Arc::new(SyncRedis::new(url).map_err(|e| KvError::Unavailable(e.to_string()))?);
        let limits = Arc::new(Directory::new(Arc::clone(&redis), prefix));
        Ok(RedisKv {
            redis,
            prefix: prefix.to_string(),
            limits,
            set: script_with_prelude(ledger::LUA, include_str!("lua/set.lua")),
            delete: script_with_prelude(ledger::LUA, include_str!("lua/delete.lua")),
        })
    }

    /// The Redis key of `key` for `tenant`.
    pub fn redis_key(&self, tenant: &str, key: &str) -> String {
        format!("{}:{key}", base(&self.prefix, tenant))
    }

    fn with_connection<T>(
        &self,
        f: impl Fn(&mut crate::redis::SyncConn) -> redis::RedisResult<T>,
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
        let limits = self.limits.limits(tenant);
        let ttl_ms = ttl.map_or(0, |t| {
            u64::try_from(t.as_millis()).unwrap_or(u64::MAX).max(1)
        });
        let reply: Vec<Value> = self.with_connection(|c| {
            self.set
                .key(base(&self.prefix, tenant))
                .key(self.redis_key(tenant, key))
                .arg(value)
                .arg(ttl_ms)
                .arg(limits.get(Limit::KvBytes))
                .arg(limits.get(Limit::KvKeys))
                .arg(limits.get(Limit::KvWrites))
                .invoke(c)
        })?;
        verdict(tenant, &limits, &reply).map(|_| ())
    }

    fn delete(&self, tenant: &str, key: &str) -> Result<bool, KvError> {
        check(key, None)?;
        let limits = self.limits.limits(tenant);
        let reply: Vec<Value> = self.with_connection(|c| {
            self.delete
                .key(base(&self.prefix, tenant))
                .key(self.redis_key(tenant, key))
                .arg(limits.get(Limit::KvWrites))
                .invoke(c)
        })?;
        verdict(tenant, &limits, &reply).map(|n| n == 1)
    }
}

/// A script's reply as a result: `ok` (with the number after it, if any)
/// or the quota it hit, in words a handler author can act on.
fn verdict(tenant: &str, limits: &Limits, reply: &[Value]) -> Result<i64, KvError> {
    let int = |i: usize| match reply.get(i) {
        Some(Value::Int(n)) => u64::try_from(*n).unwrap_or(0),
        _ => 0,
    };
    let word = match reply.first() {
        Some(Value::BulkString(b)) => b.as_slice(),
        Some(Value::SimpleString(s)) => s.as_bytes(),
        _ => b"",
    };
    let (limit, reached) = match word {
        b"ok" => return Ok(int(1) as i64),
        b"rate" => {
            return Err(KvError::Unavailable(format!(
                "quota: tenant {tenant} made {} key-value writes this second, its kv-writes limit is {}/s; retry in a second",
                int(1),
                limits.get(Limit::KvWrites)
            )));
        }
        b"bytes" => (Limit::KvBytes, Limit::KvBytes.show(int(1))),
        b"keys" => (Limit::KvKeys, format!("{} keys", int(1))),
        other => {
            return Err(KvError::Unavailable(format!(
                "unexpected reply {:?} from the key-value script",
                String::from_utf8_lossy(other)
            )));
        }
    };
    Err(KvError::Invalid(format!(
        "quota: tenant {tenant}'s key-value store would hold {reached}, over its {} quota of {}; nothing was written (delete keys, or the operator raises it: spool tenants set {tenant} --{} …)",
        limit.name(),
        limit.show(int(2)),
        limit.name()
    )))
}
