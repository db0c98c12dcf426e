//! Per-minute counters in Redis, for the dashboard's charts without a
//! Prometheus: each worker adds what its jobs did since its last flush to
//! the hash of the current minute, per tenant, and the API sums the last
//! hour. This module is the pure part: key and field names, the deltas
//! between two snapshots of [`super::Metrics`], and percentiles from the
//! summed buckets. The I/O is the worker's (`worker/timeline.rs`) and the
//! API's (`api/timeline.rs`).
//!
//! `PREFIX:{stats:TENANT}:m:MINUTE` (MINUTE = Unix time / 60 s) is a hash
//! with, per plugin name, fields `NAME|ok`, `NAME|retried`, `NAME|dead`
//! (attempts ended so), `NAME|bI` (attempts whose run time fell in bucket
//! I of [`super::BUCKETS`], I = 16 for beyond the last) and `NAME|sum_us`.
//! Each hash expires [`KEEP`] after its last write.

use super::{BUCKETS, Ended, Series};
use std::collections::HashMap;
use std::time::Duration;

/// How long a minute's counters are kept.
pub const KEEP: Duration = Duration::from_secs(2 * 3600);

/// Buckets per histogram: [`BUCKETS`] and one beyond.
pub const NBUCKETS: usize = BUCKETS.len() + 1;

/// The hash of `tenant`'s minute `minute` under `prefix`.
pub fn key(prefix: &str, tenant: &str, minute: u64) -> String {
    format!("{prefix}:{{stats:{tenant}}}:m:{minute}")
}

/// The minute (Unix time / 60 s) of `unix_us`.
pub fn minute_of(unix_us: u64) -> u64 {
    unix_us / 60_000_000
}

/// What one (tenant, plugin) did in a period.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counts {
    /// Attempts that succeeded, were retried, died.
    pub ok: u64,
    /// Attempts that failed and will be retried.
    pub retried: u64,
    /// Attempts that failed for good.
    pub dead: u64,
    /// Run times by bucket.
    pub buckets: [u64; NBUCKETS],
    /// Run time in all, µs.
    pub sum_us: u64,
}

impl Counts {
    /// Nothing happened.
    pub fn is_empty(&self) -> bool {
        *self == Counts::default()
    }

    /// The `(field, increment)` pairs of these counts for plugin `name`
    /// (zeros left out).
    pub fn fields(&self, name: &str) -> Vec<(String, u64)> {
        let mut out = vec![
            (format!("{name}|ok"), self.ok),
            (format!("{name}|retried"), self.retried),
            (format!("{name}|dead"), self.dead),
            (format!("{name}|sum_us"), self.sum_us),
        ];
        for (i, n) in self.buckets.iter().enumerate() {
            out.push((format!("{name}|b{i}"), *n));
        }
        out.retain(|(_, n)| *n > 0);
        out
    }

    /// Add one hash's `field = value` to the counts of its plugin in
    /// `into` (fields that do not parse are skipped).
    pub fn add_field(into: &mut HashMap<String, Counts>, field: &str, value: u64) {
        let Some((name, what)) = field.rsplit_once('|') else {
            return;
        };
        let c = into.entry(name.to_string()).or_default();
        match what {
            "ok" => c.ok += value,
            "retried" => c.retried += value,
            "dead" => c.dead += value,
            "sum_us" => c.sum_us += value,
            b => {
                if let Some(i) = b.strip_prefix('b').and_then(|i| i.parse::<usize>().ok())
                    && i < NBUCKETS
                {
                    c.buckets[i] += value;
                }
            }
        }
    }

    /// Add `other` to these counts.
    pub fn add(&mut self, other: &Counts) {
        self.ok += other.ok;
        self.retried += other.retried;
        self.dead += other.dead;
        self.sum_us += other.sum_us;
        for (a, b) in self.buckets.iter_mut().zip(other.buckets) {
            *a += b;
        }
    }

    /// The run time under which a share `q` (0..1) of the runs fell, in
    /// seconds, interpolated within its bucket as Prometheus'
    /// `histogram_quantile` does; none without runs.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total: u64 = self.buckets.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = q * total as f64;
        let mut seen = 0u64;
        for (i, n) in self.buckets.iter().enumerate() {
            if *n > 0 && (seen + n) as f64 >= rank {
                let low = if i == 0 { 0.0 } else { BUCKETS[i - 1] };
                // Beyond the last bound: say the last bound, as Prometheus.
                let Some(high) = BUCKETS.get(i) else {
                    return Some(BUCKETS[BUCKETS.len() - 1]);
                };
                let within = (rank - seen as f64) / *n as f64;
                return Some(low + (high - low) * within.clamp(0.0, 1.0));
            }
            seen += n;
        }
        Some(BUCKETS[BUCKETS.len() - 1])
    }
}

/// One (tenant, plugin)'s counts so far, as a worker's metrics hold them.
pub type Snapshot = HashMap<(String, String), Counts>;

pub(super) fn counts_of(s: &Series) -> Counts {
    let at = |e: Ended| s.ended[Ended::ALL.iter().position(|x| *x == e).unwrap_or(0)];
    Counts {
        ok: at(Ended::Succeeded),
        retried: at(Ended::Retried),
        dead: at(Ended::Dead),
        buckets: s.run.counts,
        sum_us: (s.run.sum * 1e6) as u64,
    }
}

/// What happened between snapshot `before` and `now`, per (tenant,
/// plugin); pairs with nothing new are left out.
pub fn delta(before: &Snapshot, now: &Snapshot) -> Vec<((String, String), Counts)> {
    let mut out = Vec::new();
    for (k, c) in now {
        let b = before.get(k).cloned().unwrap_or_default();
        let mut d = Counts {
            ok: c.ok.saturating_sub(b.ok),
            retried: c.retried.saturating_sub(b.retried),
            dead: c.dead.saturating_sub(b.dead),
            sum_us: c.sum_us.saturating_sub(b.sum_us),
            ..Counts::default()
        };
        for i in 0..NBUCKETS {
            d.buckets[i] = c.buckets[i].saturating_sub(b.buckets[i]);
        }
        if !d.is_empty() {
            out.push((k.clone(), d));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_come_from_the_buckets() {
        let mut c = Counts::default();
        // 90 runs in (0.5 ms, 1 ms], 10 in (5 ms, 10 ms].
        c.buckets[4] = 90;
        c.buckets[7] = 10;
        let p50 = c.quantile(0.5).unwrap();
        assert!((0.0005..=0.001).contains(&p50), "{p50}");
        let p99 = c.quantile(0.99).unwrap();
        assert!((0.005..=0.01).contains(&p99), "{p99}");
        assert_eq!(Counts::default().quantile(0.5), None);
    }

    #[test]
    fn fields_read_back_into_the_same_counts() {
        let mut c = Counts {
            ok: 3,
            dead: 1,
            sum_us: 700,
            ..Counts::default()
        };
        c.buckets[2] = 4;
        let mut back = HashMap::new();
        for (f, v) in c.fields("acme/a|b") {
            Counts::add_field(&mut back, &f, v);
        }
        assert_eq!(back["acme/a|b"], c);
    }

    #[test]
    fn a_delta_holds_only_what_changed() {
        let k = ("acme".to_string(), "p".to_string());
        let before: Snapshot = [(
            k.clone(),
            Counts {
                ok: 2,
                ..Counts::default()
            },
        )]
        .into();
        let now: Snapshot = [(
            k.clone(),
            Counts {
                ok: 5,
                ..Counts::default()
            },
        )]
        .into();
        assert_eq!(
            delta(&before, &now),
            [(
                k.clone(),
                Counts {
                    ok: 3,
                    ..Counts::default()
                }
            )]
        );
        assert!(delta(&now, &now).is_empty());
    }
}
