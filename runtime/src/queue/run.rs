//! The record's `run` field: when the latest attempt started, how long its
//! sandbox took, and how many host calls it made, in one value
//! (`1796176057692665 34 11 1`).
//!
//! Why one field and not `started_us`, `timings` and `host_calls` (what
//! records written before 2026-12-04's twelfth session hold, and what
//! readers still read): every field an ack writes costs Redis a search of
//! the record and an insert, and two arguments of the script call, about
//! 4,000 instructions a field (docs/performance.md, "Fewer fields per
//! record"). As text of four numbers the value stays under the 64 bytes
//! that keep a record in Redis' compact encoding at any size (logs.rs
//! says why that matters), where the JSON of all three would not.

use std::fmt::Write;

/// What the `run` field holds: `STARTED_US INSTANTIATE_US RUN_US
/// HOST_CALLS`, each `-` when the attempt has none (a cache hit ran no
/// sandbox; a job refused before it ran made no calls).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunField {
    /// When a job thread started the attempt (µs, Redis' clock).
    pub started_us: Option<u64>,
    /// The sandbox's instantiate and run times (µs), when it ran.
    pub sandbox_us: Option<(u64, u64)>,
    /// Calls the guest made to `spool:job` imports, and its outbound HTTP
    /// requests.
    pub host_calls: Option<u64>,
}

impl RunField {
    /// The field's value.
    pub fn stored(&self, out: &mut Vec<u8>) {
        fn part(text: &mut String, n: Option<u64>) {
            match n {
                Some(n) => {
                    let _ = write!(text, "{n}");
                }
                None => text.push('-'),
            }
        }
        let mut text = String::with_capacity(40);
        part(&mut text, self.started_us);
        text.push(' ');
        part(&mut text, self.sandbox_us.map(|s| s.0));
        text.push(' ');
        part(&mut text, self.sandbox_us.map(|s| s.1));
        text.push(' ');
        part(&mut text, self.host_calls);
        out.clear();
        out.extend_from_slice(text.as_bytes());
    }

    /// Read a stored value; parts that are not numbers read as none.
    pub fn parse(text: &str) -> RunField {
        let mut parts = text.split(' ').map(|p| p.parse::<u64>().ok());
        let mut next = || parts.next().flatten();
        let (started_us, instantiate, run, host_calls) = (next(), next(), next(), next());
        RunField {
            started_us,
            sandbox_us: instantiate.zip(run),
            host_calls,
        }
    }

    /// A record's `run` value, if it holds the latest attempt: a record
    /// can also hold `started_us` (with `host_calls` and `timings`),
    /// written by workers before this field, and holds both while workers
    /// of both versions share a Redis (an older worker's attempt after a
    /// newer one's leaves `run` as it was). The later start is the latest
    /// attempt; `None` means the older fields are.
    pub fn latest(run: Option<&str>, older_started_us: Option<u64>) -> Option<RunField> {
        run.map(RunField::parse)
            .filter(|run| run.started_us >= older_started_us)
    }

    /// The sandbox times as `spool job` and the API show them (the
    /// `timings` field of older records): `{"instantiate": µs, "run": µs}`.
    pub fn timings(&self) -> Option<serde_json::Value> {
        self.sandbox_us
            .map(|(i, r)| serde_json::json!({ "instantiate": i, "run": r }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_round_trips_through_its_field_and_stays_short() {
        let full = RunField {
            started_us: Some(1_796_176_057_692_665),
            sandbox_us: Some((34, 11)),
            host_calls: Some(1),
        };
        let mut out = Vec::new();
        full.stored(&mut out);
        assert_eq!(out, b"1796176057692665 34 11 1");
        assert_eq!(RunField::parse(std::str::from_utf8(&out).unwrap()), full);
        assert_eq!(
            full.timings(),
            Some(serde_json::json!({"instantiate": 34, "run": 11}))
        );
        // A cache hit: no sandbox, no calls.
        let hit = RunField {
            sandbox_us: None,
            host_calls: Some(0),
            ..full
        };
        hit.stored(&mut out);
        assert_eq!(out, b"1796176057692665 - - 0");
        assert_eq!(RunField::parse("1796176057692665 - - 0"), hit);
        assert_eq!(hit.timings(), None);
        // Parts far past any real run still keep the value within the 64
        // bytes of Redis' compact encoding.
        let big = RunField {
            started_us: Some(9_999_999_999_999_999),
            sandbox_us: Some((999_999_999_999, 999_999_999_999)),
            host_calls: Some(999_999_999_999),
        };
        big.stored(&mut out);
        assert!(out.len() <= 64, "{}", out.len());
        // Garbage written by hand reads as nothing, not as an error.
        assert_eq!(RunField::parse("x y"), RunField::default());
        // Beside an older worker's `started_us`, the later start counts.
        assert_eq!(
            RunField::latest(Some("9 - - -"), Some(5))
                .unwrap()
                .started_us,
            Some(9)
        );
        assert_eq!(RunField::latest(Some("4 1 1 8"), Some(5)), None);
        assert_eq!(RunField::latest(None, Some(5)), None);
    }
}
