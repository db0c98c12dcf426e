//! The key-value capability as the sandbox sees it: a trait the host side
//! of the `spool:job/kv` import calls with the running job's tenant, and
//! the limits it enforces before any store is asked. The stores themselves
//! (Redis, process memory) live outside the sandbox, in [`crate::kv`], so
//! the sandbox depends on no database.

use std::time::Duration;

/// Longest key, in bytes.
pub const MAX_KEY: usize = 512;
/// Largest value, in bytes.
pub const MAX_VALUE: usize = 1 << 20;

/// Why a key-value call failed; the guest sees the same two cases.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KvError {
    /// The key or value breaks a limit: retrying the same call cannot help.
    #[error("{0}")]
    Invalid(String),
    /// The backing store is unreachable: a later retry may succeed.
    #[error("{0}")]
    Unavailable(String),
}

/// A store of keys per tenant. The sandbox has checked the key and value
/// against [`MAX_KEY`] and [`MAX_VALUE`] before any call.
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
