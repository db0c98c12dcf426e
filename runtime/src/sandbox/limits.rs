//! Per-job limits and the resource limiter that enforces the memory cap.

use std::time::Duration;

/// The hard limits one job runs under. Every field has a default that is
/// safe for a shared worker; `spool call --timeout/--memory` and plugin
/// manifests override them per job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Wall-clock deadline for the whole call, enforced by epoch interruption.
    pub timeout: Duration,
    /// Largest linear memory (bytes) the guest may grow to.
    pub memory: u64,
    /// Largest payload (bytes) accepted before the guest is even instantiated.
    pub max_input: usize,
    /// Largest output (bytes) a handler may return.
    pub max_output: usize,
    /// Most log lines kept per job (guest logs and captured stdout/stderr).
    pub max_log_lines: usize,
    /// Most log bytes kept per job, across all lines.
    pub max_log_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            timeout: Duration::from_secs(30),
            memory: 64 * 1024 * 1024,
            max_input: 16 * 1024 * 1024,
            max_output: 16 * 1024 * 1024,
            max_log_lines: 1000,
            max_log_bytes: 64 * 1024,
        }
    }
}

/// Enforces [`Limits::memory`] on one store and remembers a refusal, so that
/// the resulting trap is reported as a memory-limit error rather than a
/// generic one.
#[derive(Debug)]
pub(crate) struct JobLimiter {
    memory: usize,
    /// The largest growth that was refused, in bytes.
    pub(crate) refused: Option<usize>,
}

impl JobLimiter {
    pub(crate) fn new(memory: u64) -> Self {
        JobLimiter {
            memory: usize::try_from(memory).unwrap_or(usize::MAX),
            refused: None,
        }
    }
}

/// A growth past the job's memory cap. Returned as the trap's error so the
/// guest stops at once instead of limping on after a failed `memory.grow`.
#[derive(Debug, thiserror::Error)]
#[error("memory limit: the job asked for {requested} bytes of linear memory; the limit is {limit}")]
pub(crate) struct MemoryLimitHit {
    pub(crate) requested: usize,
    pub(crate) limit: usize,
}

impl wasmtime::ResourceLimiter for JobLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory {
            self.refused = Some(desired);
            return Err(wasmtime::Error::new(MemoryLimitHit {
                requested: desired,
                limit: self.memory,
            }));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Tables hold function references; 100k entries is far beyond what
        // a real handler uses and keeps a hostile one from eating the pool.
        Ok(desired <= 100_000)
    }
}
