//! `webhook`: POST the job's JSON event to a URL, signed, so that the
//! receiver can tell it came from you and was not changed on the way.
//!
//! Configured in its manifest:
//!
//! ```toml
//! [config]
//! url = "https://hooks.example.com/spool"   # where events go
//! secret = "…"                              # the key both sides share
//!
//! [http]
//! allow = ["https://hooks.example.com"]
//! ```
//!
//! Each delivery carries:
//! - `x-spool-signature: sha256=<hex>`: HMAC-SHA256 of the exact body
//!   bytes under `secret`; the receiver computes the same over the body it
//!   got and compares (in constant time);
//! - `x-spool-delivery: <job id>`: the same on every retry of one job, so
//!   the receiver can drop a delivery it already took.
//!
//! A 2xx answer is a success; a 5xx, a 429, a timeout or a refused
//! connection is retried (with the queue's backoff); any other answer is a
//! fatal error naming the status.

use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;
use spool_sdk::{Job, JobError, config, handler, http};

#[derive(Serialize)]
struct Delivered {
    status: u16,
    delivery: String,
}

#[handler(bytes)]
fn webhook(event: Vec<u8>, job: &Job) -> Result<Vec<u8>, JobError> {
    serde_json::from_slice::<serde_json::Value>(&event)
        .map_err(|e| JobError::invalid_input("$", "a JSON event", e.to_string()))?;
    let url = required("url")?;
    let secret = required("secret")?;
    let response = http::Request::post(&url)
        .header("content-type", "application/json")
        .header(
            "x-spool-signature",
            format!("sha256={}", sign(secret.as_bytes(), &event)),
        )
        .header("x-spool-delivery", &job.id)
        .body(event)
        .send()?
        .error_for_status()?;
    let done = Delivered {
        status: response.status,
        delivery: job.id.clone(),
    };
    serde_json::to_vec(&done).map_err(|e| JobError::fatal(e.to_string()))
}

/// A config value the plugin cannot run without.
fn required(key: &str) -> Result<String, JobError> {
    config::get(key).ok_or_else(|| {
        JobError::fatal(format!(
            "config.{key} is not set; set it in the plugin's manifest ([config] {key} = \"...\")"
        ))
    })
}

/// Lowercase hex of HMAC-SHA256(`key`, `body`).
fn sign(key: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(body);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
