//! `spool --api URL --token T enqueue PLUGIN …`: the same command through
//! `spool serve` (the payload as the body of `POST /v1/jobs?plugin=…`, the
//! options in the query; `--wait` through `GET /v1/jobs/ID/wait`), with
//! the same output and exit codes as against Redis.

use super::api_client::{Answer, Api, Unreached};
use super::call::read_input;
use super::enqueue::EnqueueArgs;
use super::exit;
use super::shown::shown;
use std::time::{Duration, Instant};

/// Percent-encode a query value.
fn enc(v: &str) -> String {
    let mut out = String::new();
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The query of a raw enqueue for `args`.
fn query(args: &EnqueueArgs, delay: Duration) -> String {
    let mut q = format!(
        "plugin={}&priority={}&max_attempts={}",
        enc(&args.plugin),
        args.priority.as_str(),
        args.max_attempts
    );
    if !delay.is_zero() {
        q.push_str(&format!("&delay={}ms", delay.as_millis()));
    }
    for (k, v) in [
        ("idempotency_key", &args.idempotency_key),
        ("group", &args.group),
    ] {
        if let Some(v) = v {
            q.push_str(&format!("&{k}={}", enc(v)));
        }
    }
    if args.no_cache {
        q.push_str("&no_cache=true");
    }
    if args.wait.is_some() {
        q.push_str("&wait=true");
    }
    q
}

/// What a refused request means for the exit code.
fn refused(a: &Answer) -> u8 {
    eprintln!("spool: {} (HTTP {})", shown(&a.message()), a.status);
    if a.retryable() {
        exit::RETRYABLE
    } else if matches!(a.status, 400 | 401 | 403 | 404 | 413) {
        exit::USAGE
    } else {
        exit::FAILED
    }
}

fn unreached(e: &Unreached) -> u8 {
    eprintln!(
        "spool: the API did not answer: {}; retrying later can help",
        e.0
    );
    exit::RETRYABLE
}

pub(crate) fn run(args: &EnqueueArgs, api: &Api) -> u8 {
    let delay = super::enqueue::delay_of(args);
    if args.bulk.is_some() {
        eprintln!(
            "spool: --bulk does not go through --api yet; send the lines to POST /v1/jobs/batch (Content-Type: application/x-ndjson)"
        );
        return exit::USAGE;
    }
    let (payload, guessed) = match read_input(args.input.as_deref().unwrap_or_default()) {
        Ok(i) => i,
        Err(message) => {
            eprintln!("spool: {message}");
            return exit::USAGE;
        }
    };
    let ct = args.content_type.clone().unwrap_or(guessed);
    if ct.chars().any(char::is_control) {
        eprintln!("spool: --content-type: control characters are not allowed");
        return exit::USAGE;
    }
    let path = format!("/v1/jobs?{}", query(args, delay));
    let made = match api.send("POST", &path, &ct, &payload, Duration::from_secs(60)) {
        Ok(a) if a.status == 200 || a.status == 201 => a.json(),
        Ok(a) => return refused(&a),
        Err(e) => return unreached(&e),
    };
    let Some(id) = made["id"].as_str().map(str::to_string) else {
        eprintln!("spool: the API's answer named no job id; the job may have been enqueued");
        return exit::RETRYABLE;
    };
    if made["created"] == false {
        eprintln!(
            "spool: idempotency key {:?} already names job {id}; nothing new was enqueued",
            args.idempotency_key.as_deref().unwrap_or_default()
        );
    }
    let Some(timeout) = args.wait else {
        if args.json {
            println!(
                "{}",
                serde_json::json!({"id": id, "created": made["created"]})
            );
        } else {
            println!("{}", shown(&id));
        }
        return exit::OK;
    };
    let code = wait(args, api, &id, timeout);
    if code == exit::USAGE || code == exit::RETRYABLE {
        // The job is queued whatever went wrong with the wait.
        eprintln!(
            "spool: job {} was enqueued; GET /v1/jobs/{} shows it",
            shown(&id),
            shown(&id)
        );
    }
    code
}

/// Wait (a minute at a time, as the API allows) until the job ends or
/// `timeout` passes; print its output or why it has none.
fn wait(args: &EnqueueArgs, api: &Api, id: &str, timeout: Duration) -> u8 {
    let until = Instant::now() + timeout;
    loop {
        let left = until.saturating_duration_since(Instant::now());
        let step = left
            .min(Duration::from_secs(60))
            .max(Duration::from_secs(1));
        let path = format!("/v1/jobs/{}/wait?timeout={}s", enc(id), step.as_secs());
        let answer = match api.send(
            "GET",
            &path,
            "application/json",
            b"",
            step + Duration::from_secs(30),
        ) {
            Ok(a) => a,
            Err(e) => return unreached(&e),
        };
        match answer.status {
            200 if answer.json()["status"].is_string() => return finished(args, &answer.json()),
            200 => return unreached(&Unreached("the API's answer held no record".into())),
            202 if Instant::now() >= until => {
                let status = answer.json()["status"]
                    .as_str()
                    .unwrap_or("unknown")
                    .to_string();
                eprintln!(
                    "spool: job {} did not finish within {}; it is {}",
                    shown(id),
                    humantime::format_duration(timeout),
                    shown(&status)
                );
                return exit::RETRYABLE;
            }
            202 => {}
            _ => return refused(&answer),
        }
    }
}

fn finished(args: &EnqueueArgs, record: &serde_json::Value) -> u8 {
    if args.json {
        println!("{record}");
    } else if let Some(out) = record["output"].as_str() {
        // As the Redis path prints it: control characters escaped on a
        // terminal, where a missing newline is added.
        if super::shown::write_output(out.as_bytes()) && !out.ends_with('\n') {
            println!();
        }
    } else if let Some(b64) = record["output_base64"].as_str() {
        use base64::Engine as _;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap_or_default();
        if super::shown::write_output(&bytes) && bytes.last() != Some(&b'\n') {
            println!();
        }
    } else {
        let why = record["error"]["message"]
            .as_str()
            .unwrap_or("no error recorded");
        eprintln!(
            "spool: job {} is {}: {}",
            shown(record["id"].as_str().unwrap_or("?")),
            shown(record["status"].as_str().unwrap_or("?")),
            shown(why)
        );
    }
    if record["status"] == "succeeded" {
        exit::OK
    } else {
        exit::FAILED
    }
}
