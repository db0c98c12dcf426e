//! A job through the result cache: a cacheable plugin's job is looked up
//! first (memory, then Redis, with single flight) and runs only on a miss;
//! a success is stored with the plugin's TTL. Errors are never cached.

use super::watchdog::Watched;
use crate::cache::{CacheStatus, EntryKey, Hit, Lookup, ResultCache};
use crate::plugins::{Plugin, Settings};
use crate::sandbox::{JobInput, JobRun, JobServices};
use std::time::Duration;

/// How one job was answered.
pub(crate) enum Answer {
    /// The handler ran (with the cache key, when the plugin is cacheable).
    Ran(JobRun, CacheStatus, Option<String>),
    /// The cache answered the key; nothing was instantiated.
    Hit(Hit, String),
}

/// Longest wait for an identical job that is computing the same result.
const MAX_WAIT: Duration = Duration::from_secs(60);

/// Answer `input` on `plugin`, through `cache` when the plugin's manifest
/// declares a cache TTL. `no_cache` skips the lookup (the job asked to).
pub(crate) fn answer(
    cache: Option<&ResultCache>,
    plugin: &Plugin,
    settings: &Settings,
    services: &JobServices,
    input: JobInput,
    no_cache: bool,
    watched: Watched<'_>,
) -> Answer {
    // Every sandbox run is watched: a thread not back by its deadline and
    // grace is given up on (`watchdog.rs`).
    let run = |input: JobInput| {
        let _armed = watched.arm(settings.limits.timeout);
        plugin.run_with(input, &settings.limits, services)
    };
    let (Some(cache), Some(ttl)) = (cache, settings.cache_ttl) else {
        let run = run(input);
        return Answer::Ran(run, CacheStatus::Off, None);
    };
    let key = EntryKey::new(
        &input.tenant,
        &input.plugin,
        &plugin.version,
        &input.content_type,
        &settings.config,
        &input.payload,
    );
    let name = format!("{}/{}", input.tenant, input.plugin);
    let job = input.id.clone();
    if no_cache {
        let run = run(input);
        if let Ok(output) = &run.result {
            cache.put(&key, output, &job, ttl);
        }
        cache.count(name, CacheStatus::Bypass);
        return Answer::Ran(run, CacheStatus::Bypass, Some(key.hash));
    }
    let timeout = settings.limits.timeout;
    let wait = timeout.saturating_add(Duration::from_secs(2)).min(MAX_WAIT);
    let lock_for = timeout.saturating_add(Duration::from_secs(5));
    match cache.lookup(&key, wait, lock_for) {
        Lookup::Hit(hit) => {
            cache.count(name, hit.status);
            Answer::Hit(hit, key.hash)
        }
        Lookup::Compute(ticket) => {
            let run = run(input);
            let stored = run.result.as_ref().ok().map(|o| (o.clone(), job, ttl));
            ticket.finish(stored);
            cache.count(name, CacheStatus::Miss);
            Answer::Ran(run, CacheStatus::Miss, Some(key.hash))
        }
    }
}
