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
    /// Most key-value calls per job: each is a round trip to a store other
    /// tenants share, so a job gets a budget, not only a deadline.
    pub max_kv_calls: u64,
    /// Most key-value bytes (keys and values, read and written) per job.
    pub max_kv_bytes: u64,
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
            max_kv_calls: 10_000,
            max_kv_bytes: 64 * 1024 * 1024,
        }
    }
}

/// Enforces [`Limits::memory`] on one store, summed over all the job's
/// linear memories (a component may define more than one), and remembers
/// a refusal, so that the resulting trap is reported as a memory-limit
/// error rather than a generic one.
#[derive(Debug)]
pub(crate) struct JobLimiter {
    memory: usize,
    /// Bytes of all the store's memories together.
    used: usize,
    /// The largest growth that was refused, in bytes.
    pub(crate) refused: Option<usize>,
}

impl JobLimiter {
    pub(crate) fn new(memory: u64) -> Self {
        JobLimiter {
            memory: usize::try_from(memory).unwrap_or(usize::MAX),
            used: 0,
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
    /// Called for a memory's creation too (`current` 0).
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = (self.used - current.min(self.used)).saturating_add(desired);
        if total > self.memory {
            self.refused = Some(total);
            return Err(wasmtime::Error::new(MemoryLimitHit {
                requested: total,
                limit: self.memory,
            }));
        }
        self.used = total;
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

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::ResourceLimiter as _;

    const MIB: usize = 1 << 20;

    #[test]
    fn the_memory_cap_is_for_all_the_jobs_memories_together() {
        let mut limiter = JobLimiter::new(64 << 20);
        // Two memories created and grown: 40 + 20 MiB fit in 64.
        assert!(limiter.memory_growing(0, 40 * MIB, None).unwrap());
        assert!(limiter.memory_growing(0, 20 * MIB, None).unwrap());
        // The second grows by 5 MiB: 65 MiB in all, refused.
        let refused = limiter.memory_growing(20 * MIB, 25 * MIB, None);
        let hit = refused.unwrap_err();
        let hit = hit.downcast_ref::<MemoryLimitHit>().unwrap();
        assert_eq!((hit.requested, hit.limit), (65 * MIB, 64 * MIB));
        assert_eq!(limiter.refused, Some(65 * MIB));
        // Growing by 4 MiB instead fits exactly.
        assert!(limiter.memory_growing(20 * MIB, 24 * MIB, None).unwrap());
    }
}
