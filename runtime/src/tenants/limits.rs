//! What a tenant can be limited in, the built-in defaults, and one
//! tenant's effective limits.

use crate::config::parse_size;

/// One quota. `0` stored for any of them means "no limit".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Limit {
    /// Bytes in the tenant's key-value store (keys plus values).
    KvBytes,
    /// Keys in the tenant's key-value store.
    KvKeys,
    /// Key-value writes (set, delete) per second, fleet-wide.
    KvWrites,
    /// Bytes of the tenant's cached results in Redis.
    CacheBytes,
    /// The largest payload `enqueue` accepts.
    MaxPayload,
    /// The largest `max_attempts` a job may ask for.
    MaxAttempts,
    /// The tenant's share of workers beside other tenants with work
    /// (round-robin, `weight` turns each).
    Weight,
    /// Most of the tenant's jobs leased at once, fleet-wide (per queue).
    Concurrency,
    /// Most jobs started per hour, fleet-wide (per queue); written as
    /// `50/s`, `600/m` or `100/h`.
    Rate,
    /// Jobs the rate limit lets start at once after a pause (0: a tenth of
    /// a second's rate, at least 1).
    Burst,
    /// Jobs of one group leased at once (1: one at a time, in order).
    GroupConcurrency,
}

/// How a limit's values read and print.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    Bytes,
    Count,
    PerSecond,
    /// Jobs per hour, written per second, minute or hour.
    Rate,
}

impl Limit {
    /// Every limit, in the order `spool tenants show` prints them.
    pub const ALL: [Limit; 11] = [
        Limit::KvBytes,
        Limit::KvKeys,
        Limit::KvWrites,
        Limit::CacheBytes,
        Limit::MaxPayload,
        Limit::MaxAttempts,
        Limit::Weight,
        Limit::Concurrency,
        Limit::Rate,
        Limit::Burst,
        Limit::GroupConcurrency,
    ];

    /// The name in Redis, in `spool tenants set --NAME` and in errors.
    pub fn name(self) -> &'static str {
        match self {
            Limit::KvBytes => "kv-bytes",
            Limit::KvKeys => "kv-keys",
            Limit::KvWrites => "kv-writes",
            Limit::CacheBytes => "cache-bytes",
            Limit::MaxPayload => "max-payload",
            Limit::MaxAttempts => "max-attempts",
            Limit::Weight => "weight",
            Limit::Concurrency => "concurrency",
            Limit::Rate => "rate",
            Limit::Burst => "burst",
            Limit::GroupConcurrency => "group-concurrency",
        }
    }

    /// Whether this is a scheduling setting (fair share, caps, rates,
    /// groups) rather than a quota on stored data.
    pub fn schedules(self) -> bool {
        matches!(
            self,
            Limit::Weight
                | Limit::Concurrency
                | Limit::Rate
                | Limit::Burst
                | Limit::GroupConcurrency
        )
    }

    /// The limit named `name`.
    pub fn named(name: &str) -> Option<Limit> {
        Limit::ALL.into_iter().find(|l| l.name() == name)
    }

    /// The default when neither the fleet nor the tenant sets one. Large
    /// enough for honest work, small enough that one tenant cannot fill a
    /// shared Redis: 64 MiB and 100,000 keys of key-value data, 1,000
    /// writes a second, 256 MiB of cached results, 16 MiB payloads (the
    /// worker's default input cap) and 25 attempts. Scheduling: weight 1
    /// (plain round-robin), no cap, no rate (burst: automatic), and one
    /// job of a group at a time.
    pub fn builtin(self) -> u64 {
        match self {
            Limit::KvBytes => 64 << 20,
            Limit::KvKeys => 100_000,
            Limit::KvWrites => 1_000,
            Limit::CacheBytes => 256 << 20,
            Limit::MaxPayload => 16 << 20,
            Limit::MaxAttempts => 25,
            Limit::Weight | Limit::GroupConcurrency => 1,
            Limit::Concurrency | Limit::Rate | Limit::Burst => 0,
        }
    }

    fn unit(self) -> Unit {
        match self {
            Limit::KvBytes | Limit::CacheBytes | Limit::MaxPayload => Unit::Bytes,
            Limit::KvKeys
            | Limit::MaxAttempts
            | Limit::Weight
            | Limit::Concurrency
            | Limit::Burst
            | Limit::GroupConcurrency => Unit::Count,
            Limit::KvWrites => Unit::PerSecond,
            Limit::Rate => Unit::Rate,
        }
    }

    /// Whether `unlimited` (stored as 0) means anything for this limit: a
    /// weight of nothing or an unlimited burst do not.
    fn may_be_unlimited(self) -> bool {
        !matches!(self, Limit::Weight | Limit::Burst)
    }

    /// Parse a value as the operator writes it: `64MiB` for sizes, `500`
    /// or `500/s` for writes per second, `unlimited` for no limit.
    pub fn parse(self, text: &str) -> Result<u64, String> {
        let text = text.trim();
        if text == "unlimited" && self.may_be_unlimited() {
            return Ok(0);
        }
        if text == "auto" && self == Limit::Burst {
            return Ok(0);
        }
        let number = match self.unit() {
            Unit::Bytes => parse_size(text)?,
            Unit::Count => text.parse::<u32>().map(u64::from).map_err(|_| {
                format!(
                    "invalid {} {text:?}: expected a whole number up to {} or unlimited",
                    self.name(),
                    u32::MAX
                )
            })?,
            Unit::PerSecond => text
                .strip_suffix("/s")
                .unwrap_or(text)
                .parse::<u64>()
                .map_err(|_| {
                    format!("invalid {} {text:?}: expected writes per second such as 500/s, or unlimited", self.name())
                })?,
            Unit::Rate => parse_rate(text)?,
        };
        if number == 0 {
            let or = match self {
                Limit::Burst => " (or auto)",
                Limit::Weight => "",
                _ => " (or unlimited)",
            };
            return Err(format!(
                "invalid {} {text:?}: expected more than 0{or}",
                self.name()
            ));
        }
        Ok(number)
    }

    /// A value as `spool tenants show` prints it.
    pub fn show(self, value: u64) -> String {
        if value == 0 {
            return if self == Limit::Burst {
                "auto"
            } else {
                "unlimited"
            }
            .to_string();
        }
        match self.unit() {
            Unit::Bytes => show_bytes(value),
            Unit::Count => value.to_string(),
            Unit::PerSecond => format!("{value}/s"),
            Unit::Rate => show_rate(value),
        }
    }
}

/// A rate as jobs per hour: `50/s`, `600/m`, `100/h` (a bare number is
/// per second). Whole numbers only, so that every worker computes the
/// same bucket.
fn parse_rate(text: &str) -> Result<u64, String> {
    let (number, per) = match text.split_once('/') {
        Some((n, "s")) => (n, 3600),
        Some((n, "m")) => (n, 60),
        Some((n, "h")) => (n, 1),
        Some(_) => (text, 0),
        None => (text, 3600),
    };
    number
        .trim()
        .parse::<u64>()
        .ok()
        .filter(|_| per > 0)
        .and_then(|n| n.checked_mul(per))
        .filter(|n| *n <= 1 << 40)
        .ok_or_else(|| {
            format!(
                "invalid rate {text:?}: expected jobs per second, minute or hour such as 50/s, 600/m or 100/h (a whole number), or unlimited"
            )
        })
}

/// Jobs per hour in the largest unit that shows it whole.
fn show_rate(per_hour: u64) -> String {
    if per_hour.is_multiple_of(3600) {
        format!("{}/s", per_hour / 3600)
    } else if per_hour.is_multiple_of(60) {
        format!("{}/m", per_hour / 60)
    } else {
        format!("{per_hour}/h")
    }
}

/// `1536` → `1.5 KiB`; exact values below 1 KiB.
pub fn show_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    let text = format!("{value:.1}");
    format!("{} {}", text.trim_end_matches(".0"), UNITS[unit])
}

/// Where an effective value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Source {
    /// [`Limit::builtin`].
    #[default]
    BuiltIn,
    /// `spool tenants set --defaults`.
    Fleet,
    /// `spool tenants set TENANT`.
    Tenant,
}

impl Source {
    /// How `spool tenants show` names it.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::BuiltIn => "built-in",
            Source::Fleet => "fleet default",
            Source::Tenant => "tenant",
        }
    }
}

/// One tenant's effective limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    values: [(u64, Source); Limit::ALL.len()],
    /// The hosts the tenant's plugins may call at most, whatever their
    /// manifests grant (`spool tenants set --http-allow`), as written;
    /// none: no ceiling, the manifests decide.
    pub http_allow: Option<(Vec<String>, Source)>,
}

/// The field of a tenant's (or the fleet's) hash that holds its
/// `http-allow` ceiling: a JSON array of rules.
pub const HTTP_ALLOW_FIELD: &str = "http-allow";

impl Default for Limits {
    fn default() -> Self {
        Limits {
            values: Limit::ALL.map(|l| (l.builtin(), Source::BuiltIn)),
            http_allow: None,
        }
    }
}

impl Limits {
    /// The value of `limit` (0: no limit).
    pub fn get(&self, limit: Limit) -> u64 {
        self.values[index(limit)].0
    }

    /// Where the value of `limit` came from.
    pub fn source(&self, limit: Limit) -> Source {
        self.values[index(limit)].1
    }

    /// Set `limit` from `source`.
    pub fn set(&mut self, limit: Limit, value: u64, source: Source) {
        self.values[index(limit)] = (value, source);
    }

    /// Whether `value` is over `limit` (never when it is unlimited).
    pub fn exceeds(&self, limit: Limit, value: u64) -> bool {
        let max = self.get(limit);
        max > 0 && value > max
    }

    /// `{NAME: {"value", "from", "used"?}}` for every limit, as `spool
    /// tenants show --json` and `GET /v1/tenants/{tenant}` answer it;
    /// `used` gives the usage shown beside a limit that has one.
    pub fn to_json(&self, used: impl Fn(Limit) -> Option<u64>) -> serde_json::Value {
        let quotas: serde_json::Map<String, serde_json::Value> = Limit::ALL
            .iter()
            .map(|l| {
                let mut entry = serde_json::json!({
                    "value": self.get(*l),
                    "from": self.source(*l).as_str(),
                });
                if let Some(n) = used(*l) {
                    entry["used"] = n.into();
                }
                (l.name().to_string(), entry)
            })
            .collect();
        let mut quotas = quotas;
        let (rules, from) = match &self.http_allow {
            Some((rules, source)) => (serde_json::json!(rules), source.as_str()),
            None => (serde_json::Value::Null, Source::BuiltIn.as_str()),
        };
        quotas.insert(
            HTTP_ALLOW_FIELD.to_string(),
            serde_json::json!({"value": rules, "from": from}),
        );
        serde_json::Value::Object(quotas)
    }
}

fn index(limit: Limit) -> usize {
    Limit::ALL
        .iter()
        .position(|l| *l == limit)
        .expect("ALL lists every limit")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_parse_as_operators_write_them_and_print_back() {
        assert_eq!(Limit::KvBytes.parse("10MiB"), Ok(10 << 20));
        assert_eq!(Limit::KvWrites.parse("50/s"), Ok(50));
        assert_eq!(Limit::KvWrites.parse("50"), Ok(50));
        assert_eq!(Limit::MaxAttempts.parse("unlimited"), Ok(0));
        assert!(
            Limit::MaxAttempts
                .parse("0")
                .unwrap_err()
                .contains("more than 0")
        );
        assert!(Limit::KvKeys.parse("many").unwrap_err().contains("kv-keys"));
        assert!(Limit::CacheBytes.parse("5 parsecs").is_err());
        assert_eq!(Limit::KvBytes.show(10 << 20), "10 MiB");
        assert_eq!(Limit::KvWrites.show(50), "50/s");
        assert_eq!(Limit::KvKeys.show(0), "unlimited");
        assert_eq!(show_bytes(1536), "1.5 KiB");
        assert_eq!(show_bytes(100), "100 B");
        assert_eq!(Limit::Rate.parse("20/s"), Ok(72_000));
        assert_eq!(Limit::Rate.parse("600/m"), Ok(36_000));
        assert_eq!(Limit::Rate.parse("7/h"), Ok(7));
        assert_eq!(Limit::Rate.parse("5"), Ok(18_000));
        assert_eq!(Limit::Rate.show(72_000), "20/s");
        assert_eq!(Limit::Rate.show(36_000), "10/s");
        assert_eq!(Limit::Rate.show(60), "1/m");
        assert_eq!(Limit::Rate.show(7), "7/h");
        for bad in ["-5/s", "5/d", "1.5/s", "fast", "0/s"] {
            let e = Limit::Rate.parse(bad).unwrap_err();
            assert!(e.contains(&format!("{bad:?}")), "{e}");
        }
        assert!(Limit::Weight.parse("unlimited").is_err());
        assert!(Limit::Weight.parse("-1").unwrap_err().contains("weight"));
        assert_eq!(Limit::Burst.parse("auto"), Ok(0));
        assert_eq!(Limit::Burst.show(0), "auto");
        assert_eq!(Limit::Concurrency.parse("unlimited"), Ok(0));
        assert_eq!(Limit::GroupConcurrency.builtin(), 1);
        for limit in Limit::ALL {
            assert_eq!(Limit::named(limit.name()), Some(limit));
        }
    }

    #[test]
    fn limits_start_built_in_and_unlimited_never_exceeds() {
        let mut limits = Limits::default();
        assert_eq!(limits.get(Limit::MaxAttempts), 25);
        assert_eq!(limits.source(Limit::MaxAttempts), Source::BuiltIn);
        assert!(limits.exceeds(Limit::MaxAttempts, 26));
        assert!(!limits.exceeds(Limit::MaxAttempts, 25));
        limits.set(Limit::MaxAttempts, 0, Source::Tenant);
        assert!(!limits.exceeds(Limit::MaxAttempts, u64::MAX));
        assert_eq!(limits.source(Limit::MaxAttempts), Source::Tenant);
    }
}
