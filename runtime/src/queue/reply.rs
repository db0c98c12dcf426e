//! The claim script's reply → [`Claim`]. Jobs are decoded by the field
//! names the script sends with them (`FIELDS` in `claim.lua`), so the two
//! sides cannot disagree on an order. Today's script sends each job's
//! whole record as one value, `record` (name, value pairs); the envelope
//! fields may also come as values of their own (an older script).

use super::QueueError;
use super::announce::{Announce, Leave};
use super::model::{ClaimedJob, Seen};
use super::msgpack::Item;
use crate::redis::value::text;
use redis::Value;
use std::time::{Duration, Instant};

/// The result of a claim.
#[derive(Debug, Default)]
pub struct Claim {
    /// Jobs now leased to the caller.
    pub jobs: Vec<ClaimedJob>,
    /// Time until some tenant's timer is due (a delayed job, a lease, a
    /// rate limit), if any.
    pub next_due: Option<Duration>,
    /// Some tenant visited still has claimable work: claim again before
    /// waiting, even if this claim got fewer jobs than it asked for.
    pub more: bool,
    /// Tenants whose replies could not be read: their claims may have leased jobs
    /// to the caller that it never learned of. Run [`super::Queue::recover`]
    /// before claiming again ([`super::Queue::recover_tenants`] with these
    /// tenants), so that they are handed back now rather than when their
    /// leases lapse (which would cost them an attempt).
    pub unsure: Vec<String>,
}

/// What one tenant's claim script answered.
#[derive(Debug)]
pub(crate) struct TenantClaim {
    /// Redis' clock when the claim ran (µs).
    pub now_us: u64,
    pub jobs: Vec<ClaimedJob>,
    pub announce: Option<Announce>,
    pub leave: Option<Leave>,
    /// The reply could not be read (see [`Claim::unsure`]).
    pub unsure: bool,
    /// The byte budget ended the claim before its share: work is left.
    pub cut: bool,
}

/// `leave_seq` of a claim that took its tenant out of the queue's ready
/// set itself (claim.lua, on one server).
const SETTLED: i64 = -2;

fn bad(what: &str) -> QueueError {
    QueueError::protocol("claim", what)
}

/// Decode `{now_us, announce_seq, leave_seq, timer_us, cut, FIELDS, JOBS}`
/// (JOBS packed as MessagePack, or the jobs as arrays)
/// of `tenant`'s claim; `received` is when the reply arrived (see
/// [`ClaimedJob::received`]).
pub(crate) fn parse_claim(
    tenant: &str,
    reply: Value,
    received: Instant,
) -> Result<TenantClaim, QueueError> {
    let Value::Array(items) = reply else {
        return Err(bad("not an array"));
    };
    let mut items = items.into_iter();
    let mut int = |what| match items.next() {
        Some(Value::Int(n)) => Ok(n),
        _ => Err(bad(what)),
    };
    let claimed_us = int("no time")?.unsigned_abs();
    let seq = int("no announcement")?;
    let leave = int("no leave")?;
    let timer = int("no timer")?;
    let cut = int("no cut flag")? == 1;
    let names: Vec<String> = match items.next() {
        Some(Value::Array(names)) => names.into_iter().filter_map(text).collect(),
        _ => return Err(bad("no field names")),
    };
    check_names(&names)?;
    let rest: Vec<Value> = items.collect();
    // The jobs packed in one string (claim.lua); as plain arrays, too.
    // Either way they are read in place: only the envelope is copied.
    let jobs: Vec<Item<'_>> = match rest.as_slice() {
        [Value::BulkString(packed)] => match super::msgpack::decode(packed) {
            Ok(Item::Array(jobs)) => jobs,
            Ok(_) => return Err(bad("packed jobs are not an array")),
            Err(e) => return Err(bad(&format!("packed jobs: {e}"))),
        },
        plain => plain.iter().map(Item::of).collect(),
    };
    let jobs = jobs
        .into_iter()
        .map(|item| job(tenant, item, &names, claimed_us, received))
        .collect::<Result<_, _>>()?;
    Ok(TenantClaim {
        now_us: claimed_us,
        jobs,
        // A claim announces only a tenant that has work now.
        announce: (seq > 0).then(|| Announce {
            tenant: tenant.to_string(),
            seq,
            timer: 0,
            ready: true,
        }),
        unsure: false,
        cut,
        leave: (leave >= 0 || leave == SETTLED).then(|| Leave {
            tenant: tenant.to_string(),
            seq: leave,
            timer,
            settled: leave == SETTLED,
        }),
    })
}

/// A job an enqueue handed to this worker while it waited (enqueue.lua,
/// `hand_over`): `j` + MessagePack `{tenant, now_us, job}`, the job as a
/// claim's reply carries one, with `fresh` and `record`. Leased to the
/// worker as a claim leases it.
pub(crate) fn parse_handed(entry: &[u8], received: Instant) -> Result<ClaimedJob, QueueError> {
    let bad = |what: &str| QueueError::protocol("hand-over", what);
    let packed = entry
        .strip_prefix(b"j")
        .ok_or_else(|| bad("not a job entry"))?;
    let items = match super::msgpack::decode(packed) {
        Ok(Item::Array(items)) => items,
        Ok(_) => return Err(bad("not an array")),
        Err(e) => return Err(bad(&format!("packed job: {e}"))),
    };
    let [tenant, now, item]: [Item<'_>; 3] = items
        .try_into()
        .map_err(|_| bad("not {tenant, now, job}"))?;
    let tenant = tenant.text().ok_or_else(|| bad("no tenant"))?;
    let now_us = now
        .int_or_text()
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| bad("no time"))?;
    let names = ["fresh".to_string(), "record".to_string()];
    job(&tenant, item, &names, now_us, received)
}

/// The envelope fields every claimed job carries (a newer script may send
/// more).
const REQUIRED: [&str; 9] = [
    "plugin",
    "content_type",
    "payload",
    "max_attempts",
    "enqueued_us",
    "wait",
    "priority",
    "waiting_since_us",
    "no_cache",
];

/// Each required name once, none twice: a script that drops or repeats a
/// field is a protocol error, not jobs with a field silently missing.
/// `record` carries every field of the record, so it stands for all.
fn check_names(names: &[String]) -> Result<(), QueueError> {
    for (i, name) in names.iter().enumerate() {
        if names[..i].contains(name) {
            return Err(QueueError::protocol(
                "claim",
                format!("field {name:?} sent twice"),
            ));
        }
    }
    if names.iter().any(|n| n == "record") {
        return Ok(());
    }
    match REQUIRED.iter().find(|r| !names.iter().any(|n| n == *r)) {
        Some(missing) => Err(QueueError::protocol(
            "claim",
            format!("no field {missing:?}"),
        )),
        None => Ok(()),
    }
}

/// One job: `{id, token, attempt, value per name}`.
fn job(
    tenant: &str,
    item: Item<'_>,
    names: &[String],
    claimed_us: u64,
    received: Instant,
) -> Result<ClaimedJob, QueueError> {
    let Item::Array(values) = item else {
        return Err(bad("job is not an array"));
    };
    if values.len() != 3 + names.len() {
        return Err(bad("job has the wrong number of fields"));
    }
    let mut values = values.into_iter();
    let mut next = || values.next().unwrap_or(Item::Nil);
    let id = next().text().ok_or_else(|| bad("job without id"))?;
    let token = next()
        .int_or_text()
        .ok_or_else(|| bad("job without token"))?;
    let attempt = next()
        .int_or_text()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1);
    let mut job = ClaimedJob {
        tenant: tenant.to_string(),
        id,
        token,
        attempt,
        plugin: None,
        content_type: None,
        payload: Vec::new(),
        max_attempts: None,
        enqueued_us: None,
        wait: false,
        priority: None,
        waiting_since_us: None,
        no_cache: false,
        fresh: false,
        seen: None,
        claimed_us,
        received,
    };
    for (name, value) in names.iter().zip(values) {
        match name.as_str() {
            "fresh" => job.fresh = value.bytes() == Some(b"1"),
            "record" => record(&mut job, value)?,
            name => envelope(&mut job, name, value),
        }
    }
    Ok(job)
}

/// The envelope fields of `job`'s record, sent as name, value pairs.
fn record(job: &mut ClaimedJob, pairs: Item<'_>) -> Result<(), QueueError> {
    let Item::Array(pairs) = pairs else {
        return Err(bad("job record is not an array"));
    };
    // The whole record, or its envelope: no group and no key in it means
    // the job has neither.
    job.seen = Some(Seen::default());
    let mut pairs = pairs.into_iter();
    while let (Some(name), Some(value)) = (pairs.next(), pairs.next()) {
        if let Some(name) = name.bytes() {
            envelope(job, &String::from_utf8_lossy(name), value);
        }
    }
    Ok(())
}

/// Set envelope field `name` of `job`; any other name (a record's
/// `attempt` or `output`, or a field a newer script sends) is not the
/// envelope's and is left alone.
fn envelope(job: &mut ClaimedJob, name: &str, value: Item<'_>) {
    let number = |v: Item<'_>| std::str::from_utf8(v.bytes()?).ok()?.parse().ok();
    match name {
        "payload" => job.payload = value.bytes().unwrap_or_default().to_vec(),
        "plugin" => job.plugin = value.text(),
        "content_type" => job.content_type = value.text(),
        "max_attempts" => job.max_attempts = value.text(),
        "enqueued_us" => job.enqueued_us = number(value),
        "wait" => job.wait = value.bytes() == Some(b"1"),
        "priority" => job.priority = value.text(),
        "waiting_since_us" => job.waiting_since_us = number(value),
        "no_cache" => job.no_cache = value.bytes() == Some(b"1"),
        // (Only a record carries these: see `job`.)
        "group" => {
            if let Some(seen) = &mut job.seen {
                seen.group = value.text().filter(|g| !g.is_empty());
            }
        }
        "idem" => {
            if let Some(seen) = &mut job.seen {
                seen.idem = true;
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(text: &str) -> Value {
        Value::BulkString(text.as_bytes().to_vec())
    }

    fn claim(names: &[&str], jobs: Vec<Value>) -> Result<TenantClaim, QueueError> {
        let mut reply = vec![
            Value::Int(42),
            Value::Int(0),
            Value::Int(-1),
            Value::Int(0),
            Value::Int(0),
        ];
        reply.push(Value::Array(names.iter().map(|n| s(n)).collect()));
        reply.extend(jobs);
        parse_claim("acme", Value::Array(reply), Instant::now())
    }

    #[test]
    fn jobs_are_decoded_by_the_names_the_script_sends() {
        // Any order, and a field this decoder does not know ("future").
        let mut order: Vec<&str> = REQUIRED.iter().rev().copied().collect();
        order.insert(3, "future");
        let value = |n: &str| match n {
            "wait" => s("1"),
            "plugin" => s("acme/x"),
            "payload" => s("{}"),
            "future" => s("?"),
            _ => Value::Nil,
        };
        let mut job = vec![s("01J"), Value::Int(3), Value::Int(2)];
        job.extend(order.iter().map(|n| value(n)));
        let claim = claim(&order, vec![Value::Array(job)]).unwrap();
        assert!(claim.announce.is_none() && claim.leave.is_none());
        let job = &claim.jobs[0];
        assert_eq!(job.tenant, "acme");
        assert_eq!(
            (job.id.as_str(), job.token.as_str(), job.attempt),
            ("01J", "3", 2)
        );
        assert_eq!(job.plugin.as_deref(), Some("acme/x"));
        assert_eq!(job.payload, b"{}");
        assert!(job.wait);
        assert_eq!(job.claimed_us, 42);
        assert!(job.content_type.is_none() && !job.no_cache);
    }

    #[test]
    fn a_job_with_a_missing_value_is_a_protocol_error() {
        let short = Value::Array(vec![s("01J"), Value::Int(1), Value::Int(1), s("x")]);
        let e = claim(&REQUIRED, vec![short]).unwrap_err();
        assert!(matches!(
            e,
            QueueError::Redis(crate::redis::RedisError::Protocol { op: "claim", .. })
        ));
    }

    #[test]
    fn a_record_carries_the_envelope_and_its_other_fields_are_left_alone() {
        // A retried job's record: the last attempt's token and attempt
        // must not stand for the claim's own.
        let record = [
            "status", "queued", "plugin", "acme/x", "attempt", "7", "token", "9",
        ]
        .into_iter()
        .chain(["payload", "{}", "wait", "1", "priority", "high"])
        .map(s)
        .collect();
        let job = vec![
            s("01J"),
            Value::Int(3),
            Value::Int(2),
            s("0"),
            Value::Array(record),
        ];
        let claimed = claim(&["fresh", "record"], vec![Value::Array(job)]).unwrap();
        let job = &claimed.jobs[0];
        assert_eq!((job.token.as_str(), job.attempt), ("3", 2));
        assert_eq!(job.plugin.as_deref(), Some("acme/x"));
        assert_eq!(job.payload, b"{}");
        assert_eq!(job.priority.as_deref(), Some("high"));
        assert!(job.wait && !job.fresh);
        let flat = vec![s("01J"), Value::Int(3), Value::Int(2), s("1"), s("x")];
        let e = claim(&["fresh", "record"], vec![Value::Array(flat)]).unwrap_err();
        assert!(e.to_string().contains("record is not an array"), "{e}");
    }

    #[test]
    fn the_ack_learns_a_jobs_group_and_idempotency_key_from_its_claim() {
        let job = |record: &[&str]| {
            let record = record.iter().map(|v| s(v)).collect();
            let job = vec![s("01J"), Value::Int(3), Value::Int(1), s("1")];
            let job = job.into_iter().chain([Value::Array(record)]).collect();
            let claimed = claim(&["fresh", "record"], vec![Value::Array(job)]).unwrap();
            claimed.jobs[0].outcome(crate::queue::Next::Succeeded).seen
        };
        let plain = Seen {
            group: None,
            idem: false,
        };
        assert_eq!(job(&["plugin", "acme/x", "group", ""]), Some(plain));
        // The group the claim took it from comes last, and wins; `idem`
        // counts whatever its value (as the ack script reads it).
        let grouped = job(&["group", "old", "idem", "", "group", "g"]).unwrap();
        assert_eq!((grouped.group.as_deref(), grouped.idem), (Some("g"), true));
        // Without a record the worker cannot tell: the ack reads them.
        let mut fields = vec![s("01J"), Value::Int(3), Value::Int(1)];
        fields.extend(REQUIRED.iter().map(|_| s("")));
        let claimed = claim(&REQUIRED, vec![Value::Array(fields)]).unwrap();
        assert_eq!(claimed.jobs[0].outcome(crate::queue::Next::Dead).seen, None);
    }

    #[test]
    fn the_claim_script_sends_the_names_this_decoder_reads() {
        let script = include_str!("lua/claim.lua");
        assert!(script.contains("local FIELDS = { 'fresh', 'record' }"));
        assert!(script.contains("local out = { now, 0, -1, 0, 0, FIELDS }"));
    }

    #[test]
    fn a_reply_missing_or_repeating_a_field_name_is_a_protocol_error() {
        let mut missing: Vec<&str> = REQUIRED.to_vec();
        missing.retain(|n| *n != "payload");
        let e = claim(&missing, Vec::new()).unwrap_err();
        assert!(e.to_string().contains("no field \"payload\""), "{e}");
        let mut twice: Vec<&str> = REQUIRED.to_vec();
        twice.push("plugin");
        let e = claim(&twice, Vec::new()).unwrap_err();
        assert!(e.to_string().contains("sent twice"), "{e}");
        assert!(claim(&REQUIRED, Vec::new()).unwrap().jobs.is_empty());
    }
}
