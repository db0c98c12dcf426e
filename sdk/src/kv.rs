//! A key-value store private to the job's tenant. On a worker it lives in
//! Redis; under `spool call` it lives in memory for the one call.
//!
//! The host scopes every key to the tenant of the running job, so a plugin
//! cannot reach another tenant's keys whatever key it names. Keys are 1–512
//! bytes, values up to 1 MiB.
//!
//! Errors convert into [`JobError`] with `?`: an unavailable store is
//! retryable, a key or value over the limits is fatal.

use crate::JobError;
use crate::bindings::spool::job::kv;
use std::fmt;
use std::time::Duration;

/// Why a key-value call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvError {
    /// The key or value breaks a limit; retrying cannot help.
    Invalid(String),
    /// The store could not be reached; a retry may help.
    Unavailable(String),
}

impl fmt::Display for KvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KvError::Invalid(m) => write!(f, "key-value: {m}"),
            KvError::Unavailable(m) => write!(f, "key-value store unavailable: {m}"),
        }
    }
}

impl std::error::Error for KvError {}

impl From<kv::KvError> for KvError {
    fn from(e: kv::KvError) -> Self {
        match e {
            kv::KvError::Invalid(m) => KvError::Invalid(m),
            kv::KvError::Unavailable(m) => KvError::Unavailable(m),
        }
    }
}

impl From<KvError> for JobError {
    fn from(e: KvError) -> Self {
        match &e {
            KvError::Invalid(_) => JobError::fatal(e.to_string()),
            KvError::Unavailable(_) => JobError::retryable(e.to_string()),
        }
    }
}

/// The value under `key`, or `None`.
pub fn get(key: &str) -> Result<Option<Vec<u8>>, KvError> {
    kv::get(key).map_err(Into::into)
}

/// Store `value` under `key`, kept until deleted.
pub fn set(key: &str, value: &[u8]) -> Result<(), KvError> {
    kv::set(key, value, None).map_err(Into::into)
}

/// Store `value` under `key` for `ttl` (whole seconds, at least one).
pub fn set_with_ttl(key: &str, value: &[u8], ttl: Duration) -> Result<(), KvError> {
    let secs = u32::try_from(ttl.as_secs()).unwrap_or(u32::MAX).max(1);
    kv::set(key, value, Some(secs)).map_err(Into::into)
}

/// Remove `key`; `true` when it existed.
pub fn delete(key: &str) -> Result<bool, KvError> {
    kv::delete(key).map_err(Into::into)
}
