//! What a worker counts for Prometheus (`spool worker --metrics ADDR`,
//! `GET /metrics`): jobs by tenant, plugin and outcome; run and
//! instantiate time histograms; cache lookups by tier; jobs in flight;
//! readiness. Kept in memory, rendered as Prometheus text on a scrape.
//!
//! Labels are tenants and plugins, never job ids; at most
//! [`MAX_SERIES`] (tenant, plugin) pairs are kept apart, the rest count
//! under `plugin="other"`, so a flood of plugin names cannot grow a
//! worker's memory or a scrape without bound.

pub(crate) mod render;
pub mod timeline;

use crate::locks::lock;
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

pub use render::render;

/// Most (tenant, plugin) label pairs kept apart.
pub const MAX_SERIES: usize = 1_000;

/// Upper bounds of the time histograms' buckets, in seconds.
pub const BUCKETS: [f64; 16] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.05, 0.25, 1.0, 2.5, 5.0,
    10.0, 30.0, 60.0,
];

/// How an attempt ended, as the worker decided it (before the ack).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ended {
    /// Succeeded (ran, or answered by the cache).
    Succeeded,
    /// Failed; to be retried.
    Retried,
    /// Failed for good, or refused: to the dead letters.
    Dead,
    /// Handed back unspent (the plugin is not loaded here).
    HandedBack,
}

impl Ended {
    const ALL: [Ended; 4] = [
        Ended::Succeeded,
        Ended::Retried,
        Ended::Dead,
        Ended::HandedBack,
    ];

    fn name(self) -> &'static str {
        match self {
            Ended::Succeeded => "succeeded",
            Ended::Retried => "retried",
            Ended::Dead => "dead",
            Ended::HandedBack => "handed_back",
        }
    }
}

/// A histogram of durations: a count per bucket of [`BUCKETS`] (not
/// cumulative; the render adds them up), plus `+Inf`, and the sum.
#[derive(Debug, Clone, Default)]
pub struct Histogram {
    counts: [u64; BUCKETS.len() + 1],
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, d: Duration) {
        let s = d.as_secs_f64();
        let at = BUCKETS
            .iter()
            .position(|b| s <= *b)
            .unwrap_or(BUCKETS.len());
        self.counts[at] += 1;
        self.sum += s;
    }
}

/// One (tenant, plugin)'s numbers.
#[derive(Debug, Clone, Default)]
struct Series {
    ended: [u64; Ended::ALL.len()],
    run: Histogram,
    instantiate: Histogram,
}

/// A worker's metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    /// tenant → plugin → numbers.
    series: Mutex<HashMap<String, HashMap<String, Series>>>,
    /// (tenant, plugin) pairs in `series`.
    kept: AtomicU64,
    /// Cache lookups by what the cache did (`hit-memory`, `miss`, …).
    cache: Mutex<HashMap<String, u64>>,
    /// Plugins' outbound HTTP requests by outcome: a status class
    /// (`2xx` … `5xx`) or the wasi:http error code.
    http: Mutex<HashMap<String, u64>>,
    /// Outcomes Redis refused because the lease had been lost.
    stale: AtomicU64,
    /// Jobs released because their thread wedged past deadline and grace.
    wedged: AtomicU64,
    /// Claimed, not yet acked.
    in_flight: AtomicU64,
    /// Jobs an enqueue handed to this worker while it waited (no claim).
    handed_over: AtomicU64,
    /// Serving: synced with the fleet store, plugins loaded, not draining.
    ready: AtomicBool,
    /// Leases found lost by a renewal (another attempt owns the job).
    leases_lost: AtomicU64,
    /// Redis operations of the worker's loops that failed.
    redis_errors: AtomicU64,
    /// Outages that ended (Redis answering again after failures).
    redis_recoveries: AtomicU64,
    /// Plugin versions served and versions refused, at the last report.
    plugins_served: AtomicU64,
    plugins_refused: AtomicU64,
    /// Plugin versions that began to serve: new names, and new versions of
    /// names served before (swaps), as the reports saw them.
    plugin_loads: AtomicU64,
    plugin_swaps: AtomicU64,
    /// Job threads in a sandbox run (or a cache lookup) now.
    slots_busy: AtomicU64,
}

/// A job thread's slot in use while this lives.
#[derive(Debug)]
pub struct Busy<'a>(&'a AtomicU64);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Metrics {
    /// An attempt of `tenant`'s `plugin` ended as `ended`; `timings`
    /// (instantiate, run) when the sandbox ran it.
    pub fn ended(
        &self,
        tenant: &str,
        plugin: &str,
        ended: Ended,
        timings: Option<(Duration, Duration)>,
    ) {
        let mut series = lock(&self.series);
        // Found without building a key: this runs once per job.
        let known = series
            .get(tenant)
            .is_some_and(|plugins| plugins.contains_key(plugin));
        let plugin = if known || self.kept.load(Ordering::Relaxed) < MAX_SERIES as u64 {
            plugin
        } else {
            "other"
        };
        if !series.get(tenant).is_some_and(|p| p.contains_key(plugin)) {
            self.kept.fetch_add(1, Ordering::Relaxed);
            series
                .entry(tenant.to_string())
                .or_default()
                .insert(plugin.to_string(), Series::default());
        }
        let Some(s) = series.get_mut(tenant).and_then(|p| p.get_mut(plugin)) else {
            return;
        };
        s.ended[Ended::ALL.iter().position(|e| *e == ended).unwrap_or(0)] += 1;
        if let Some((instantiate, run)) = timings {
            s.instantiate.observe(instantiate);
            s.run.observe(run);
        }
    }

    /// The result cache answered a lookup as `tier`.
    pub fn cache(&self, tier: &str) {
        let mut cache = lock(&self.cache);
        // The tiers are the cache's own few names.
        // Found by &str: no string is made once a tier is known.
        if let Some(n) = cache.get_mut(tier) {
            *n += 1;
        } else if cache.len() < 16 {
            cache.insert(tier.to_string(), 1);
        }
    }

    /// A job's outbound requests ended as `outcomes` (a status class or
    /// an error code each: the host's own few names).
    pub fn http<'a>(&self, outcomes: impl IntoIterator<Item = &'a str>) {
        let mut http = lock(&self.http);
        for outcome in outcomes {
            if let Some(n) = http.get_mut(outcome) {
                *n += 1;
            } else if http.len() < 64 {
                http.insert(outcome.to_string(), 1);
            }
        }
    }

    /// An outcome was refused: the lease had been lost.
    pub fn stale(&self) {
        self.stale.fetch_add(1, Ordering::Relaxed);
    }

    /// A job was released because its thread wedged.
    pub fn wedged(&self) {
        self.wedged.fetch_add(1, Ordering::Relaxed);
    }

    /// An enqueue handed this worker a job while it waited for work.
    pub fn handed_over(&self) {
        self.handed_over.fetch_add(1, Ordering::Relaxed);
    }

    /// Jobs claimed and not yet acked, now.
    pub fn set_in_flight(&self, n: usize) {
        self.in_flight.store(n as u64, Ordering::Relaxed);
    }

    /// A renewal found a lease lost.
    pub fn lease_lost(&self) {
        self.leases_lost.fetch_add(1, Ordering::Relaxed);
    }

    /// A Redis operation failed (`recovered`: false), or Redis answers
    /// again after an outage (true).
    pub fn redis(&self, recovered: bool) {
        let c = if recovered {
            &self.redis_recoveries
        } else {
            &self.redis_errors
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// A job thread takes its slot until the guard drops.
    pub fn busy(&self) -> Busy<'_> {
        self.slots_busy.fetch_add(1, Ordering::Relaxed);
        Busy(&self.slots_busy)
    }

    /// Versions began to serve since the last report: `loads` in all, of
    /// which `swaps` replaced another version of the same plugin.
    pub fn plugins_changed(&self, loads: usize, swaps: usize) {
        self.plugin_loads.fetch_add(loads as u64, Ordering::Relaxed);
        self.plugin_swaps.fetch_add(swaps as u64, Ordering::Relaxed);
    }

    /// Versions served and refused now.
    pub fn set_plugins(&self, served: usize, refused: usize) {
        self.plugins_served.store(served as u64, Ordering::Relaxed);
        self.plugins_refused
            .store(refused as u64, Ordering::Relaxed);
    }

    /// Jobs claimed and not yet acked, as last set.
    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Whether the worker serves (for `/readyz`).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    /// See [`Metrics::set_ready`].
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// Every (tenant, plugin)'s counts so far, for the per-minute
    /// counters ([`timeline`]).
    pub fn snapshot(&self) -> timeline::Snapshot {
        lock(&self.series)
            .iter()
            .flat_map(|(t, plugins)| {
                plugins
                    .iter()
                    .map(move |(p, s)| ((t.clone(), p.clone()), timeline::counts_of(s)))
            })
            .collect()
    }

    /// Attempts of `tenant`'s `plugin` that ended as `ended` so far.
    pub fn count(&self, tenant: &str, plugin: &str, ended: Ended) -> u64 {
        let series = lock(&self.series);
        let at = Ended::ALL.iter().position(|e| *e == ended).unwrap_or(0);
        series
            .get(tenant)
            .and_then(|p| p.get(plugin))
            .map_or(0, |s| s.ended[at])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_beyond_the_cap_count_as_other() {
        let m = Metrics::default();
        for i in 0..MAX_SERIES + 5 {
            m.ended("acme", &format!("p{i}"), Ended::Succeeded, None);
        }
        assert_eq!(lock(&m.series)["acme"].len(), MAX_SERIES + 1);
        assert_eq!(m.count("acme", "other", Ended::Succeeded), 5);
    }

    #[test]
    fn a_duration_lands_in_the_first_bucket_that_holds_it() {
        let mut h = Histogram::default();
        h.observe(Duration::from_micros(70));
        h.observe(Duration::from_secs(61));
        assert_eq!(h.counts[1], 1);
        assert_eq!(h.counts[BUCKETS.len()], 1);
    }
}
