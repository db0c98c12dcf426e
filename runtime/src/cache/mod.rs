//! The content-hash result cache: identical work done once. Knows nothing
//! of wasm or queues; the worker asks it before running a job and tells it
//! the result after.
//!
//! # Tiers
//!
//! 1. This worker's memory ([`memory`]): bounded in bytes, no round trip.
//! 2. Redis, shared by all workers, each entry with its plugin's TTL:
//!
//! | key | type | what |
//! |---|---|---|
//! | `PREFIX:{cache:TENANT}:r:PLUGIN:VERSION:HASH` | hash | `out` (the output), `job` (the job that computed it), `at` (µs) |
//! | `PREFIX:{cache:TENANT}:l:PLUGIN:VERSION:HASH` | string | single-flight lock: who computes it now (expires) |
//! | `PREFIX:{cache}:stats` | hash | counters `TENANT/PLUGIN:STATUS` |
//!
//! `HASH` is [`key::EntryKey`]'s recipe (see [`key`]). The tenant is the
//! hash tag: a tenant's entries share a slot, tenants spread over a Cluster.
//!
//! # Single flight
//!
//! Identical jobs in flight on one worker run once ([`flight`]); across
//! workers, the first to miss takes a short-lived lock in Redis (for the
//! job's timeout and a margin) and the others poll for its result, for the
//! job's timeout plus 2 s (at most 60 s), then compute themselves. Redis
//! trouble never fails a job: the cache is skipped.

mod flight;
pub mod key;
mod memory;
pub mod purge;
mod stats;

pub use key::{EntryKey, WORLD};
pub use purge::Scope;
pub use purge::purge;
pub use stats::{PluginStats, counters as read_counters, read as read_stats};

use crate::ids::now_us;
use crate::redis::ledger::{self, Usage};
use crate::redis::value::bytes_ref;
use crate::redis::{RedisError, SyncRedis};
use crate::tenants::{Directory, Limit};
use flight::{Flights, Leader, Role};
use memory::{Cached, MemoryTier};
use redis::Value;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// What the cache did for one job (the job record's `cache` field).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CacheStatus {
    /// Answered from this worker's memory (or by an identical job that ran
    /// on this worker at the same time).
    HitMemory,
    /// Answered from Redis.
    HitRedis,
    /// The handler ran (a success was stored).
    Miss,
    /// The job asked to skip the lookup; a success was stored.
    Bypass,
    /// The plugin's manifest declares no cache.
    Off,
}

impl CacheStatus {
    /// `hit-memory`, `hit-redis`, `miss`, `bypass` or `off`.
    pub fn as_str(self) -> &'static str {
        match self {
            CacheStatus::HitMemory => "hit-memory",
            CacheStatus::HitRedis => "hit-redis",
            CacheStatus::Miss => "miss",
            CacheStatus::Bypass => "bypass",
            CacheStatus::Off => "off",
        }
    }

    /// The status named `text`.
    pub fn parse(text: &str) -> Option<Self> {
        [
            CacheStatus::HitMemory,
            CacheStatus::HitRedis,
            CacheStatus::Miss,
            CacheStatus::Bypass,
            CacheStatus::Off,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }
}

/// A cached result.
#[derive(Debug, Clone)]
pub struct Hit {
    /// The output.
    pub output: Arc<Vec<u8>>,
    /// The job that computed it.
    pub job: String,
    /// Which tier answered.
    pub status: CacheStatus,
}

/// What [`ResultCache::lookup`] found.
#[derive(Debug)]
pub enum Lookup<'a> {
    /// The result.
    Hit(Hit),
    /// Run the handler, then [`Ticket::finish`].
    Compute(Ticket<'a>),
}

/// The right (and duty) to compute one result: [`Ticket::finish`] stores a
/// success, releases the single-flight lock and wakes identical jobs
/// waiting here. Dropped unfinished (a failure, a panic), it releases them
/// with no result.
#[derive(Debug)]
pub struct Ticket<'a> {
    cache: &'a ResultCache,
    key: EntryKey,
    leader: Option<Leader>,
    /// The lock owner, when this worker holds the Redis lock.
    lock: Option<String>,
}

impl Ticket<'_> {
    /// Store `output` (computed by job `job`) for `ttl`, or nothing.
    pub fn finish(mut self, result: Option<(Vec<u8>, String, Duration)>) {
        let cached = result.map(|(output, job, ttl)| {
            Arc::new(Cached::new(self.key.clone(), Arc::new(output), job, ttl))
        });
        self.cache
            .store(&self.key, cached.as_deref(), self.lock.take());
        if let (Some(memory), Some(cached)) = (&self.cache.memory, &cached) {
            memory.insert(Arc::clone(cached));
        }
        if let Some(leader) = self.leader.take() {
            leader.finish(cached);
        }
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if let Some(owner) = self.lock.take() {
            self.cache.store(&self.key, None, Some(owner));
        }
    }
}

/// Settings of a worker's cache.
#[derive(Debug, Clone)]
pub struct CacheConfig {
    /// Redis URL.
    pub url: String,
    /// First part of every key.
    pub prefix: String,
    /// Most bytes of results kept in this worker's memory (0: none).
    pub memory_bytes: u64,
    /// Names the holder of single-flight locks.
    pub owner: String,
}

/// Both tiers, single flight and the counters.
pub struct ResultCache {
    prefix: String,
    redis: Arc<SyncRedis>,
    /// The tenants' `cache-bytes` quotas.
    limits: Directory,
    /// The minute a store over its tenant's quota was last logged, per
    /// tenant: at most one line a minute each.
    quota_logged: std::sync::Mutex<std::collections::HashMap<String, u64>>,
    memory: Option<MemoryTier>,
    flights: Arc<Flights>,
    counters: stats::Counters,
    owner: String,
    lookup: redis::Script,
    store: redis::Script,
    /// Redis trouble was logged; log again only after it recovered.
    warned: AtomicBool,
    /// Purges applied to the memory tier so far.
    purges: AtomicU64,
}

impl std::fmt::Debug for ResultCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResultCache")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl ResultCache {
    /// A cache over the Redis at `config.url`.
    pub fn new(config: &CacheConfig) -> Result<Self, RedisError> {
        let redis = Arc::new(SyncRedis::new(&config.url)?);
        Ok(ResultCache {
            prefix: config.prefix.clone(),
            limits: Directory::new(Arc::clone(&redis), &config.prefix),
            quota_logged: std::sync::Mutex::default(),
            redis,
            memory: (config.memory_bytes > 0).then(|| MemoryTier::new(config.memory_bytes)),
            flights: Arc::default(),
            counters: stats::Counters::default(),
            owner: config.owner.clone(),
            lookup: redis::Script::new(include_str!("lua/lookup.lua")),
            store: crate::redis::script_with_prelude(
                crate::redis::ledger::LUA,
                include_str!("lua/store.lua"),
            ),
            warned: AtomicBool::new(false),
            purges: AtomicU64::new(0),
        })
    }

    /// The result for `key`, or a ticket to compute it. Waits at most
    /// `wait` for another worker computing the same result (an identical job
    /// on this worker is followed to its end: it is bounded by its own wait
    /// and deadline). On a miss, other workers wait on this one for at most
    /// `lock_for`.
    pub fn lookup(&self, key: &EntryKey, wait: Duration, lock_for: Duration) -> Lookup<'_> {
        let leader = loop {
            if let Some(hit) = self.memory_hit(key) {
                return Lookup::Hit(hit);
            }
            match self.flights.join(key) {
                Role::Leader(leader) => break leader,
                Role::Follower(flight) => {
                    if let Some(cached) = flight.wait_done() {
                        return Lookup::Hit(hit(&cached, CacheStatus::HitMemory));
                    }
                    // The leader failed: try again (perhaps as the leader).
                }
            }
        };
        let started = Instant::now();
        let lock_ms = u64::try_from(lock_for.as_millis()).unwrap_or(u64::MAX);
        let owner = format!("{}:{:016x}", self.owner, fastrand::u64(..));
        let mut delay = Duration::from_millis(5);
        loop {
            // A purge that lands while Redis answers must not be undone by
            // putting what it removed back into memory.
            let purges = self.purges.load(Ordering::Acquire);
            match self.redis_lookup(key, &owner, lock_ms) {
                Ok(Found::Hit(cached)) => {
                    let cached = Arc::new(cached);
                    if let Some(memory) = &self.memory
                        && self.purges.load(Ordering::Acquire) == purges
                    {
                        memory.insert(Arc::clone(&cached));
                    }
                    let hit = hit(&cached, CacheStatus::HitRedis);
                    leader.finish(Some(cached));
                    return Lookup::Hit(hit);
                }
                Ok(Found::Claimed) => {
                    return Lookup::Compute(self.ticket(key, Some(leader), Some(owner)));
                }
                Ok(Found::Busy) if started.elapsed() + delay < wait => {
                    std::thread::sleep(delay);
                    delay = (delay * 2).min(Duration::from_millis(50));
                }
                Ok(Found::Busy) => {
                    return Lookup::Compute(self.ticket(key, Some(leader), None));
                }
                Err(e) => {
                    self.trouble(&e);
                    return Lookup::Compute(self.ticket(key, Some(leader), None));
                }
            }
        }
    }

    /// Store a result computed without a lookup (a `bypass` job).
    pub fn put(&self, key: &EntryKey, output: &[u8], job: &str, ttl: Duration) {
        self.ticket(key, None, None)
            .finish(Some((output.to_vec(), job.to_string(), ttl)));
    }

    /// Count one job's status for `spool cache stats`.
    pub fn count(&self, plugin: String, status: CacheStatus) {
        self.counters.count(plugin, status);
    }

    /// Send the counts to Redis (the worker calls this every second).
    pub fn flush_counts(&self) {
        let counts = self.counters.take();
        if counts.is_empty() {
            return;
        }
        let key = format!("{}:{{cache}}:stats", self.prefix);
        // Once, not retried: a retry after a lost reply would count twice.
        let sent = self.redis.once(|c| {
            let mut pipe = redis::pipe();
            for ((plugin, status), n) in &counts {
                pipe.hincr(&key, format!("{plugin}:{}", status.as_str()), *n)
                    .ignore();
            }
            pipe.query::<()>(c)
        });
        if let Err(e) = sent {
            self.trouble(&e);
            // Put back only what surely never reached Redis.
            if e.is_connection_refusal() {
                self.counters.restore(counts);
            }
        }
    }

    /// Drop what `scope` names from this worker's memory.
    pub fn invalidate(&self, scope: &Scope) {
        self.purges.fetch_add(1, Ordering::AcqRel);
        if let Some(memory) = &self.memory {
            memory.invalidate(scope);
        }
    }

    /// Entries and bytes in this worker's memory.
    pub fn memory_size(&self) -> (u64, u64) {
        self.memory.as_ref().map_or((0, 0), MemoryTier::size)
    }

    fn memory_hit(&self, key: &EntryKey) -> Option<Hit> {
        let cached = self.memory.as_ref()?.get(key)?;
        Some(hit(&cached, CacheStatus::HitMemory))
    }

    fn ticket(&self, key: &EntryKey, leader: Option<Leader>, lock: Option<String>) -> Ticket<'_> {
        Ticket {
            cache: self,
            key: key.clone(),
            leader,
            lock,
        }
    }

    /// Store `cached` in Redis (if any) and release the lock `owner` holds
    /// (if any), in one round trip.
    fn store(&self, key: &EntryKey, cached: Option<&Cached>, owner: Option<String>) {
        if cached.is_none() && owner.is_none() {
            return;
        }
        let ttl_ms = cached.map_or(0, |c| {
            u64::try_from(c.ttl().as_millis())
                .unwrap_or(u64::MAX)
                .max(1)
        });
        let quota = self.limits.limits(&key.tenant).get(Limit::CacheBytes);
        let stored = self.redis.with_connection(|c| {
            self.store
                .key(key.redis_key(&self.prefix, 'r'))
                .key(key.redis_key(&self.prefix, 'l'))
                .key(ledger_base(&self.prefix, &key.tenant))
                .arg(cached.map_or(&[][..], |c| c.output.as_slice()))
                .arg(cached.map_or("", |c| c.job.as_str()))
                .arg(now_us())
                .arg(ttl_ms)
                .arg(owner.as_deref().unwrap_or(""))
                .arg(quota)
                .invoke::<i64>(c)
        });
        match stored {
            Err(e) => self.trouble(&e),
            Ok(0) => self.over_quota(key, quota),
            Ok(_) => {}
        }
    }

    /// A result was not stored: its tenant is at its `cache-bytes` quota.
    fn over_quota(&self, key: &EntryKey, quota: u64) {
        let minute = now_us() / 60_000_000;
        let fresh = {
            let mut logged = crate::locks::lock(&self.quota_logged);
            if logged.len() >= 10_000 {
                logged.clear();
            }
            logged.insert(key.tenant.clone(), minute) != Some(minute)
        };
        if fresh {
            tracing::warn!(
                tenant = %key.tenant,
                "tenant {} is at its cache-bytes quota of {}: new results are not cached until entries expire (spool cache purge --tenant {}, or spool tenants set {} --cache-bytes …)",
                key.tenant,
                Limit::CacheBytes.show(quota),
                key.tenant,
                key.tenant
            );
        }
    }

    fn redis_lookup(&self, key: &EntryKey, owner: &str, lock_ms: u64) -> redis::RedisResult<Found> {
        let reply: Vec<Value> = self.redis.with_connection(|c| {
            self.lookup
                .key(key.redis_key(&self.prefix, 'r'))
                .key(key.redis_key(&self.prefix, 'l'))
                .arg(owner)
                .arg(lock_ms.max(1))
                .invoke(c)
        })?;
        self.warned.store(false, Ordering::Relaxed);
        Ok(match bytes_ref(reply.first()).unwrap_or_default() {
            b"hit" => {
                let output = bytes_ref(reply.get(1)).unwrap_or_default().to_vec();
                let job = String::from_utf8_lossy(bytes_ref(reply.get(2)).unwrap_or_default())
                    .into_owned();
                let ttl = match reply.get(3) {
                    Some(Value::Int(ms)) if *ms > 0 => Duration::from_millis(ms.unsigned_abs()),
                    _ => Duration::from_secs(1),
                };
                Found::Hit(Cached::new(key.clone(), Arc::new(output), job, ttl))
            }
            b"busy" => Found::Busy,
            _ => Found::Claimed,
        })
    }

    fn trouble(&self, e: &redis::RedisError) {
        if !self.warned.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "result cache: redis at {} failed ({e}); running jobs without the cache until it answers",
                self.redis.url()
            );
        }
    }
}

enum Found {
    Hit(Cached),
    Claimed,
    Busy,
}

fn hit(cached: &Arc<Cached>, status: CacheStatus) -> Hit {
    Hit {
        output: Arc::clone(&cached.output),
        job: cached.job.clone(),
        status,
    }
}

/// The ledger of `tenant`'s cached results: `PREFIX:{cache:TENANT}` (the
/// entries are `PREFIX:{cache:TENANT}:r:…`).
pub(crate) fn ledger_base(prefix: &str, tenant: &str) -> String {
    format!("{prefix}:{{cache:{tenant}}}")
}

/// What `tenant`'s cached results hold in Redis now (for `spool tenants
/// show`).
pub fn usage(
    conn: &mut crate::redis::SyncConn,
    prefix: &str,
    tenant: &str,
) -> redis::RedisResult<Usage> {
    ledger::read(conn, &ledger_base(prefix, tenant))
}
