//! Cache counters: what each plugin's jobs got from the cache. Job threads
//! count in memory; the worker flushes the counts to Redis every second
//! (`PREFIX:{cache}:stats`, fields `TENANT/PLUGIN:STATUS`), so a hit from
//! memory costs no round trip.

use super::CacheStatus;
use crate::locks::lock;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Mutex;

/// Counts by plugin and status, not yet flushed.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pending: Mutex<BTreeMap<(String, CacheStatus), u64>>,
}

impl Counters {
    pub fn count(&self, plugin: String, status: CacheStatus) {
        *lock(&self.pending).entry((plugin, status)).or_default() += 1;
    }

    /// Take the counts to flush.
    pub fn take(&self) -> BTreeMap<(String, CacheStatus), u64> {
        std::mem::take(&mut *lock(&self.pending))
    }

    /// Put back counts whose flush failed.
    pub fn restore(&self, counts: BTreeMap<(String, CacheStatus), u64>) {
        let mut pending = lock(&self.pending);
        for (k, n) in counts {
            *pending.entry(k).or_default() += n;
        }
    }
}

/// One plugin's cache figures, as `spool cache stats` shows them.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct PluginStats {
    /// `tenant/plugin`.
    pub plugin: String,
    /// Entries in Redis now.
    pub entries: u64,
    /// Bytes of their outputs.
    pub bytes: u64,
    /// Jobs answered from a worker's memory.
    pub hit_memory: u64,
    /// Jobs answered from Redis.
    pub hit_redis: u64,
    /// Jobs that ran the handler (successes were stored).
    pub miss: u64,
    /// Jobs that asked to skip the cache.
    pub bypass: u64,
}

impl PluginStats {
    /// Hits over hits and misses; none before any lookup.
    pub fn hit_ratio(&self) -> Option<f64> {
        let hits = self.hit_memory + self.hit_redis;
        let total = hits + self.miss;
        (total > 0).then(|| hits as f64 / total as f64)
    }

    pub(crate) fn add(&mut self, status: CacheStatus, n: u64) {
        match status {
            CacheStatus::HitMemory => self.hit_memory += n,
            CacheStatus::HitRedis => self.hit_redis += n,
            CacheStatus::Miss => self.miss += n,
            CacheStatus::Bypass => self.bypass += n,
            CacheStatus::Off => {}
        }
    }
}

/// The counters alone (entries and bytes left 0: no `SCAN`) of the
/// plugins `keep` (given `tenant/plugin`) accepts.
pub fn counters(
    redis: &crate::redis::SyncRedis,
    prefix: &str,
    keep: impl Fn(&str) -> bool,
) -> redis::RedisResult<Vec<PluginStats>> {
    Ok(counted(redis, prefix, keep)?
        .into_iter()
        .map(|(plugin, s)| PluginStats { plugin, ..s })
        .collect())
}

fn counted(
    redis: &crate::redis::SyncRedis,
    prefix: &str,
    keep: impl Fn(&str) -> bool,
) -> redis::RedisResult<BTreeMap<String, PluginStats>> {
    let mut by_plugin: BTreeMap<String, PluginStats> = BTreeMap::new();
    let counters: BTreeMap<String, u64> = redis.with_connection(|c| {
        redis::cmd("HGETALL")
            .arg(format!("{prefix}:{{cache}}:stats"))
            .query(c)
    })?;
    for (field, n) in counters {
        if let Some((plugin, status)) = field.rsplit_once(':')
            && let Some(status) = CacheStatus::parse(status)
            && keep(plugin)
        {
            let entry = by_plugin.entry(plugin.to_string()).or_default();
            entry.add(status, n);
        }
    }
    Ok(by_plugin)
}

/// Every plugin's figures under `prefix`: the counters, and the entries and
/// bytes now in Redis (a `SCAN`; `progress` gets the keys seen so far).
pub fn read(
    redis: &crate::redis::SyncRedis,
    prefix: &str,
    mut progress: impl FnMut(u64),
) -> redis::RedisResult<Vec<PluginStats>> {
    let mut by_plugin = counted(redis, prefix, |_| true)?;
    let mut seen = 0u64;
    super::purge::scan(redis, &super::Scope::default().pattern(prefix), |keys| {
        let entries: Vec<(String, super::EntryKey)> = keys
            .into_iter()
            .filter_map(|k| super::purge::parse_key(prefix, &k).map(|e| (k, e)))
            .collect();
        if !entries.is_empty() {
            let mut batch = crate::redis::Batch::new();
            for (k, _) in &entries {
                batch.add(k, redis::cmd("HSTRLEN").arg(k).arg("out").clone());
            }
            let sizes: Vec<u64> =
                redis::from_redis_value(redis::Value::Array(batch.run_blocking(redis)?))?;
            for ((_, e), size) in entries.iter().zip(sizes) {
                let s = by_plugin.entry(e.plugin_name()).or_default();
                s.entries += 1;
                s.bytes += size;
            }
        }
        seen += entries.len() as u64;
        progress(seen);
        Ok(())
    })?;
    Ok(by_plugin
        .into_iter()
        .map(|(plugin, s)| PluginStats { plugin, ..s })
        .collect())
}
