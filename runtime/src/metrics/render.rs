//! The Prometheus text format (version 0.0.4) of [`super::Metrics`].

use super::{BUCKETS, Ended, Histogram, Metrics};
use crate::locks::lock;
use std::fmt::Write as _;
use std::sync::atomic::Ordering;

/// A label value as the format wants it: `\`, `"` and newlines escaped.
pub(crate) fn esc(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn histogram(out: &mut String, name: &str, labels: &str, h: &Histogram) {
    let mut total = 0;
    for (i, bound) in BUCKETS.iter().enumerate() {
        total += h.counts[i];
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{bound}\"}} {total}");
    }
    total += h.counts[BUCKETS.len()];
    let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {total}");
    let _ = writeln!(out, "{name}_sum{{{labels}}} {}", h.sum);
    let _ = writeln!(out, "{name}_count{{{labels}}} {total}");
}

/// Every metric of `m`, as a scrape answers them.
pub fn render(m: &Metrics) -> String {
    let mut out = String::new();
    let series: std::collections::BTreeMap<(String, String), super::Series> = lock(&m.series)
        .iter()
        .flat_map(|(t, plugins)| {
            plugins
                .iter()
                .map(move |(p, s)| ((t.clone(), p.clone()), s.clone()))
        })
        .collect();
    let keys: Vec<_> = series.keys().cloned().collect();
    out.push_str("# HELP spool_jobs_total Attempts the job threads finished, by tenant, plugin (unloaded: not served here) and outcome.\n# TYPE spool_jobs_total counter\n");
    for k in &keys {
        let labels = format!("tenant=\"{}\",plugin=\"{}\"", esc(&k.0), esc(&k.1));
        for (i, e) in Ended::ALL.iter().enumerate() {
            let _ = writeln!(
                out,
                "spool_jobs_total{{{labels},outcome=\"{}\"}} {}",
                e.name(),
                series[k].ended[i]
            );
        }
    }
    for (name, help, pick) in [
        (
            "spool_job_run_seconds",
            "Time in the handler, per attempt the sandbox ran.",
            0,
        ),
        (
            "spool_job_instantiate_seconds",
            "Time to create the store and instantiate, per attempt.",
            1,
        ),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for k in &keys {
            let labels = format!("tenant=\"{}\",plugin=\"{}\"", esc(&k.0), esc(&k.1));
            let s = &series[k];
            histogram(
                &mut out,
                name,
                &labels,
                if pick == 0 { &s.run } else { &s.instantiate },
            );
        }
    }
    gauges(m, &mut out);
    out
}

/// The cache counters, stale outcomes, jobs in flight and readiness.
fn gauges(m: &Metrics, out: &mut String) {
    let cache = lock(&m.cache).clone();
    labelled(
        out,
        "spool_cache_lookups_total",
        "Result-cache lookups by what the cache did.",
        "tier",
        cache,
    );
    let http = lock(&m.http).clone();
    let help = "Plugins' outbound HTTP requests by outcome: status class or wasi:http error code.";
    labelled(out, "spool_http_requests_total", help, "outcome", http);
    let single = singles(m);
    for (name, kind, help, value) in single {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    }
}

/// A counter with one label, a series per value, in label order.
fn labelled(
    out: &mut String,
    name: &str,
    help: &str,
    label: &str,
    counts: std::collections::HashMap<String, u64>,
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
    let mut counts: Vec<_> = counts.into_iter().collect();
    counts.sort();
    for (value, n) in counts {
        let _ = writeln!(out, "{name}{{{label}=\"{}\"}} {n}", esc(&value));
    }
}

/// The series of one value each: (name, type, help, value).
fn singles(m: &Metrics) -> [(&'static str, &'static str, &'static str, u64); 13] {
    [
        (
            "spool_stale_outcomes_total",
            "counter",
            "Outcomes refused because the lease had been lost.",
            m.stale.load(Ordering::Relaxed),
        ),
        (
            "spool_jobs_wedged_total",
            "counter",
            "Jobs released because their thread wedged past deadline and grace.",
            m.wedged.load(Ordering::Relaxed),
        ),
        (
            "spool_jobs_handed_over_total",
            "counter",
            "Jobs an enqueue handed to this worker while it waited for work (no claim).",
            m.handed_over.load(Ordering::Relaxed),
        ),
        (
            "spool_jobs_in_flight",
            "gauge",
            "Jobs claimed and not yet acked.",
            m.in_flight.load(Ordering::Relaxed),
        ),
        (
            "spool_leases_lost_total",
            "counter",
            "Leases a renewal found lost: another attempt owns the job.",
            m.leases_lost.load(Ordering::Relaxed),
        ),
        (
            "spool_redis_errors_total",
            "counter",
            "Redis operations of the worker that failed (each retried).",
            m.redis_errors.load(Ordering::Relaxed),
        ),
        (
            "spool_redis_recoveries_total",
            "counter",
            "Outages that ended: Redis answered again after failures.",
            m.redis_recoveries.load(Ordering::Relaxed),
        ),
        (
            "spool_plugins_served",
            "gauge",
            "Plugin versions this worker serves.",
            m.plugins_served.load(Ordering::Relaxed),
        ),
        (
            "spool_plugin_loads_total",
            "counter",
            "Plugin versions that began to serve (as the reports every few seconds saw them).",
            m.plugin_loads.load(Ordering::Relaxed),
        ),
        (
            "spool_plugin_swaps_total",
            "counter",
            "Loads that replaced another version of the same plugin (hot reloads, deploys, rollbacks).",
            m.plugin_swaps.load(Ordering::Relaxed),
        ),
        (
            "spool_job_slots_busy",
            "gauge",
            "Job threads running a job now (of --concurrency).",
            m.slots_busy.load(Ordering::Relaxed),
        ),
        (
            "spool_plugins_refused",
            "gauge",
            "Plugin files or deployed versions this worker refused (the version before stays).",
            m.plugins_refused.load(Ordering::Relaxed),
        ),
        (
            "spool_worker_ready",
            "gauge",
            "1 while the worker serves (synced, plugins loaded, not draining).",
            u64::from(m.is_ready()),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn buckets_are_cumulative_and_labels_escaped() {
        let m = Metrics::default();
        let t = Some((Duration::from_micros(30), Duration::from_millis(2)));
        m.ended("ac\"me", "hello", Ended::Succeeded, t);
        m.ended("ac\"me", "hello", Ended::Dead, None);
        let text = render(&m);
        assert!(
            text.contains(
                r#"spool_jobs_total{tenant="ac\"me",plugin="hello",outcome="succeeded"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"spool_job_run_seconds_bucket{tenant="ac\"me",plugin="hello",le="0.0025"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"spool_job_run_seconds_bucket{tenant="ac\"me",plugin="hello",le="0.001"} 0"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"spool_job_run_seconds_count{tenant="ac\"me",plugin="hello"} 1"#),
            "{text}"
        );
    }
}
