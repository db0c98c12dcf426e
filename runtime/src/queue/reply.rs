//! The claim script's reply → [`Claim`]. Jobs are decoded by the field
//! names the script sends with them (`FIELDS` in `claim.lua`), so the two
//! sides cannot disagree on an order.

use super::QueueError;
use super::model::ClaimedJob;
use crate::redis::value::{bytes, int_or_text, text};
use redis::Value;
use std::time::{Duration, Instant};

/// The result of a claim.
#[derive(Debug)]
pub struct Claim {
    /// Jobs now leased to the caller.
    pub jobs: Vec<ClaimedJob>,
    /// Time until the next delayed job is due, if any.
    pub next_due: Option<Duration>,
}

fn bad(what: &str) -> QueueError {
    QueueError::protocol("claim", what)
}

/// Decode `{next_due_us, now_us, FIELDS, job...}`; `received` is when the
/// reply arrived (see [`ClaimedJob::received`]).
pub(crate) fn parse_claim(reply: Value, received: Instant) -> Result<Claim, QueueError> {
    let Value::Array(items) = reply else {
        return Err(bad("not an array"));
    };
    let mut items = items.into_iter();
    let next_due = match items.next() {
        Some(Value::Int(us)) if us >= 0 => Some(Duration::from_micros(us.unsigned_abs())),
        Some(Value::Int(_)) => None,
        _ => return Err(bad("no next-due time")),
    };
    let claimed_us = match items.next() {
        Some(Value::Int(us)) => us.unsigned_abs(),
        _ => return Err(bad("no time")),
    };
    let names: Vec<String> = match items.next() {
        Some(Value::Array(names)) => names.into_iter().filter_map(text).collect(),
        _ => return Err(bad("no field names")),
    };
    let jobs = items
        .map(|item| job(item, &names, claimed_us, received))
        .collect::<Result<_, _>>()?;
    Ok(Claim { jobs, next_due })
}

/// One job: `{id, token, attempt, value per name}`.
fn job(
    item: Value,
    names: &[String],
    claimed_us: u64,
    received: Instant,
) -> Result<ClaimedJob, QueueError> {
    let Value::Array(values) = item else {
        return Err(bad("job is not an array"));
    };
    if values.len() != 3 + names.len() {
        return Err(bad("job has the wrong number of fields"));
    }
    let mut values = values.into_iter();
    let mut next = || values.next().unwrap_or(Value::Nil);
    let id = bytes(next()).ok_or_else(|| bad("job without id"))?;
    let token = int_or_text(next()).ok_or_else(|| bad("job without token"))?;
    let attempt = int_or_text(next())
        .and_then(|a| a.parse().ok())
        .unwrap_or(1);
    let mut job = ClaimedJob {
        id: String::from_utf8_lossy(&id).into_owned(),
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
        claimed_us,
        received,
    };
    for (name, value) in names.iter().zip(values) {
        match name.as_str() {
            "payload" => job.payload = bytes(value).unwrap_or_default(),
            "plugin" => job.plugin = text(value),
            "content_type" => job.content_type = text(value),
            "max_attempts" => job.max_attempts = text(value),
            "enqueued_us" => job.enqueued_us = text(value).and_then(|s| s.parse().ok()),
            "wait" => job.wait = text(value).is_some_and(|w| w == "1"),
            "priority" => job.priority = text(value),
            "waiting_since_us" => job.waiting_since_us = text(value).and_then(|s| s.parse().ok()),
            "no_cache" => job.no_cache = text(value).is_some_and(|v| v == "1"),
            // A field a newer script sends and this worker does not know.
            _ => {}
        }
    }
    Ok(job)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(text: &str) -> Value {
        Value::BulkString(text.as_bytes().to_vec())
    }

    #[test]
    fn jobs_are_decoded_by_the_names_the_script_sends() {
        let names = Value::Array(vec![s("wait"), s("plugin"), s("future"), s("payload")]);
        let job = Value::Array(vec![
            s("01J"),
            Value::Int(3),
            Value::Int(2),
            s("1"),
            s("acme/x"),
            s("?"),
            s("{}"),
        ]);
        let claim = parse_claim(
            Value::Array(vec![Value::Int(-1), Value::Int(42), names, job]),
            Instant::now(),
        )
        .unwrap();
        assert_eq!(claim.next_due, None);
        let job = &claim.jobs[0];
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
        let names = Value::Array(vec![s("plugin"), s("payload")]);
        let short = Value::Array(vec![s("01J"), Value::Int(1), Value::Int(1), s("x")]);
        let reply = Value::Array(vec![Value::Int(5), Value::Int(1), names, short]);
        assert!(matches!(
            parse_claim(reply, Instant::now()),
            Err(QueueError::Redis(crate::redis::RedisError::Protocol {
                op: "claim",
                ..
            }))
        ));
    }
}
