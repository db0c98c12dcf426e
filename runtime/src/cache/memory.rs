//! The in-process tier: recent results in this worker's memory, bounded in
//! bytes, each expiring when its Redis entry does. A hit here costs no
//! Redis round trip and no sandbox.

use super::key::EntryKey;
use super::purge::Scope;
use moka::sync::Cache;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One cached result.
#[derive(Debug)]
pub(crate) struct Cached {
    pub key: EntryKey,
    pub output: Arc<Vec<u8>>,
    /// The job that computed it.
    pub job: String,
    expires: Instant,
}

impl Cached {
    pub fn new(key: EntryKey, output: Arc<Vec<u8>>, job: String, ttl: Duration) -> Self {
        let now = Instant::now();
        Cached {
            key,
            output,
            job,
            // (Manifests cap the TTL at a year; never overflow anyway.)
            expires: now.checked_add(ttl).unwrap_or(now + MAX_TTL),
        }
    }

    /// Time left to live.
    pub fn ttl(&self) -> Duration {
        self.expires.saturating_duration_since(Instant::now())
    }
}

struct UntilExpiry;

impl moka::Expiry<EntryKey, Arc<Cached>> for UntilExpiry {
    fn expire_after_create(
        &self,
        _key: &EntryKey,
        value: &Arc<Cached>,
        created_at: Instant,
    ) -> Option<Duration> {
        Some(value.expires.saturating_duration_since(created_at))
    }

    /// A replaced entry lives as long as the new value says.
    fn expire_after_update(
        &self,
        _key: &EntryKey,
        value: &Arc<Cached>,
        updated_at: Instant,
        _duration_until_expiry: Option<Duration>,
    ) -> Option<Duration> {
        Some(value.expires.saturating_duration_since(updated_at))
    }
}

/// Longest time an entry stays in memory.
const MAX_TTL: Duration = Duration::from_secs(365 * 24 * 3600);

/// Results by key, at most a number of bytes.
pub(crate) struct MemoryTier {
    cache: Cache<EntryKey, Arc<Cached>>,
}

impl MemoryTier {
    /// A tier holding at most `bytes` of outputs (and their keys).
    pub fn new(bytes: u64) -> Self {
        let cache = Cache::builder()
            .max_capacity(bytes)
            .weigher(|k: &EntryKey, v: &Arc<Cached>| {
                let size =
                    v.output.len() + k.hash.len() + k.version.as_str().len() + v.job.len() + 64;
                u32::try_from(size).unwrap_or(u32::MAX)
            })
            .expire_after(UntilExpiry)
            .support_invalidation_closures()
            .build();
        MemoryTier { cache }
    }

    pub fn get(&self, key: &EntryKey) -> Option<Arc<Cached>> {
        self.cache.get(key)
    }

    pub fn insert(&self, cached: Arc<Cached>) {
        self.cache.insert(cached.key.clone(), cached);
    }

    /// Drop every entry `scope` names; none is returned from now on.
    pub fn invalidate(&self, scope: &Scope) {
        let scope = scope.clone();
        if self
            .cache
            .invalidate_entries_if(move |k, _| scope.matches(k))
            .is_err()
        {
            self.cache.invalidate_all();
        }
    }

    /// Entries and bytes held (approximate until pending work is done).
    pub fn size(&self) -> (u64, u64) {
        self.cache.run_pending_tasks();
        (self.cache.entry_count(), self.cache.weighted_size())
    }
}

impl std::fmt::Debug for MemoryTier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryTier").finish_non_exhaustive()
    }
}
