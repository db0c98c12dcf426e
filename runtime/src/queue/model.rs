//! The queue's data: plugin names, priorities, statuses, what a worker
//! claims and reports, and the job record `spool job` shows.
//!
//! The envelope a job is stored as (a Redis hash at `PREFIX:{QUEUE}:job:ID`)
//! is documented field by field in `docs/queue.md`; [`JobRecord`] reads it
//! back.

use super::error::QueueError;
use serde::Serialize;
use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

/// A plugin's full name: `tenant/name`. `name` alone means tenant `default`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct PluginName {
    /// The owning tenant.
    pub tenant: String,
    /// The plugin within the tenant.
    pub name: String,
}

/// The tenant a plugin name without a `/` belongs to.
pub const DEFAULT_TENANT: &str = "default";

impl PluginName {
    /// Parse `name` or `tenant/name`. Both parts are 1–64 characters of
    /// `[A-Za-z0-9_.-]`, so they are safe in Redis keys and file paths.
    pub fn parse(text: &str) -> Result<Self, QueueError> {
        let bad = |reason| QueueError::BadPluginName {
            name: text.to_string(),
            reason,
        };
        let (tenant, name) = match text.split_once('/') {
            Some((tenant, name)) => (tenant, name),
            None => (DEFAULT_TENANT, text),
        };
        for part in [tenant, name] {
            if part.is_empty() || part.len() > 64 {
                return Err(bad("expected NAME or TENANT/NAME, each 1-64 characters"));
            }
            if !part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
                || part.starts_with('.')
            {
                return Err(bad(
                    "only letters, digits, '_', '-' and '.' are allowed (not leading '.')",
                ));
            }
        }
        Ok(PluginName {
            tenant: tenant.to_string(),
            name: name.to_string(),
        })
    }
}

impl fmt::Display for PluginName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.tenant, self.name)
    }
}

/// How a job shares workers with others (see `claim.lua`: 6:3:1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    /// Six of every ten claims prefer high.
    High,
    /// Three of every ten claims prefer normal.
    #[default]
    Normal,
    /// One of every ten claims prefers low: never starved.
    Low,
}

impl Priority {
    /// The name used in keys and the envelope.
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::High => "high",
            Priority::Normal => "normal",
            Priority::Low => "low",
        }
    }
}

impl FromStr for Priority {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "high" => Ok(Priority::High),
            "normal" => Ok(Priority::Normal),
            "low" => Ok(Priority::Low),
            _ => Err(format!(
                "invalid priority {text:?}: expected high, normal or low"
            )),
        }
    }
}

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Waiting in a ready list.
    Queued,
    /// Waiting for its `--delay`/`--at` time (or a plugin to be loaded).
    Delayed,
    /// Claimed by a worker under a lease.
    Running,
    /// Finished with output.
    Succeeded,
    /// Failed with a retryable error; waiting for its backoff to pass.
    Retrying,
    /// In the dead letters: failed for good, or out of attempts.
    Dead,
}

impl Status {
    /// Parse the envelope's `status` field.
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "queued" => Status::Queued,
            "delayed" => Status::Delayed,
            "running" => Status::Running,
            "succeeded" => Status::Succeeded,
            "retrying" => Status::Retrying,
            "dead" => Status::Dead,
            _ => return None,
        })
    }

    /// Whether the job will not run again by itself.
    pub fn is_terminal(self) -> bool {
        matches!(self, Status::Succeeded | Status::Dead)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = serde_json::to_value(self).ok();
        f.write_str(text.as_ref().and_then(|v| v.as_str()).unwrap_or("?"))
    }
}

/// A job to enqueue.
#[derive(Debug, Clone)]
pub struct NewJob {
    /// The plugin to run it.
    pub plugin: PluginName,
    /// The input bytes.
    pub payload: Vec<u8>,
    /// MIME type of the payload.
    pub content_type: String,
    /// How it shares workers.
    pub priority: Priority,
    /// Attempts before it goes to the dead letters (retryable failures).
    pub max_attempts: u32,
    /// Run no earlier than this long after Redis receives the job (measured
    /// on Redis' clock, like every queue timestamp); zero = now.
    pub delay: std::time::Duration,
    /// Enqueueing twice with the same key yields one job (for the record TTL).
    pub idempotency_key: Option<String>,
    /// Push a completion notice for `enqueue --wait`.
    pub wait: bool,
    /// Skip the result-cache lookup (a fresh success is still stored):
    /// envelope field `no_cache` = `1`.
    pub no_cache: bool,
}

impl NewJob {
    /// A job with default settings: JSON, normal priority, 5 attempts, now.
    pub fn new(plugin: PluginName, payload: impl Into<Vec<u8>>) -> Self {
        NewJob {
            plugin,
            payload: payload.into(),
            content_type: "application/json".to_string(),
            priority: Priority::Normal,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            delay: std::time::Duration::ZERO,
            idempotency_key: None,
            wait: false,
            no_cache: false,
        }
    }
}

/// Attempts a job gets unless it says otherwise.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;

/// A job as a worker claimed it: the envelope plus this attempt's fencing
/// token. Fields are raw: the worker validates them, so a malformed
/// envelope becomes a dead letter that names the bad field.
#[derive(Debug, Clone)]
pub struct ClaimedJob {
    /// Job id.
    pub id: String,
    /// Fencing token of this attempt: acks must present it.
    pub token: String,
    /// 1-based attempt number.
    pub attempt: u32,
    /// `plugin` field, if present.
    pub plugin: Option<String>,
    /// `content_type` field, if present.
    pub content_type: Option<String>,
    /// `payload` field (empty when absent).
    pub payload: Vec<u8>,
    /// `max_attempts` field, if present.
    pub max_attempts: Option<String>,
    /// `enqueued_us` field, if present.
    pub enqueued_us: Option<u64>,
    /// Whether a client waits for the result.
    pub wait: bool,
    /// `priority` field, if present.
    pub priority: Option<String>,
    /// Since when the job has waited for its plugin to be loaded (set at its
    /// first hand-back for that reason, µs, Redis' clock).
    pub waiting_since_us: Option<u64>,
    /// The envelope asks to skip the result-cache lookup (`no_cache`).
    pub no_cache: bool,
    /// When it was claimed (µs, Redis' clock).
    pub claimed_us: u64,
    /// When the claim's reply arrived here (no earlier than `claimed_us`):
    /// places the moment a job thread starts the job on Redis' clock, as a
    /// lower bound.
    pub received: std::time::Instant,
}

/// What became of one claimed attempt.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Job id.
    pub id: String,
    /// The attempt's fencing token.
    pub token: String,
    /// Whether a client waits (passed through from the claim).
    pub wait: bool,
    /// Where the job goes next.
    pub next: Next,
    /// Fields to store on the record (output, error, logs, version, …).
    pub fields: Vec<(&'static str, Vec<u8>)>,
}

/// Where a job goes after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Done, with output.
    Succeeded,
    /// Retry after this backoff (counted on Redis' clock).
    Retry {
        /// How long from the ack.
        delay: std::time::Duration,
    },
    /// To the dead letters.
    Dead,
    /// Hand back without spending the attempt, runnable after this delay
    /// (zero = now).
    Requeue {
        /// How long from the ack.
        delay: std::time::Duration,
    },
}

/// A job record as `spool job` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct JobRecord {
    /// Job id.
    pub id: String,
    /// `tenant/name` as enqueued.
    pub plugin: String,
    /// Current status.
    pub status: Option<Status>,
    /// Attempts started so far.
    pub attempts: u32,
    /// Attempts allowed.
    pub max_attempts: Option<u32>,
    /// Priority.
    pub priority: Option<String>,
    /// MIME type of the payload.
    pub content_type: Option<String>,
    /// Payload size in bytes.
    pub payload_bytes: usize,
    /// When it was enqueued (µs since the epoch).
    pub enqueued_us: Option<u64>,
    /// When it is due, for delayed jobs.
    pub run_at_us: Option<u64>,
    /// When a worker claimed the latest attempt.
    pub claimed_us: Option<u64>,
    /// When a job thread started the latest attempt (after any wait in the
    /// worker's local queue).
    pub started_us: Option<u64>,
    /// When the latest attempt finished.
    pub finished_us: Option<u64>,
    /// The worker of the latest attempt.
    pub worker: Option<String>,
    /// Digest of the plugin version the latest attempt ran on.
    pub version: Option<String>,
    /// Calls the guest made to `spool:job` host imports in the latest attempt.
    pub host_calls: Option<u64>,
    /// Sandbox timings of the latest attempt (µs).
    pub timings: Option<serde_json::Value>,
    /// The output, as text when it is UTF-8 (else see `output_base64`).
    pub output: Option<String>,
    /// The output in base64 when it is not UTF-8.
    pub output_base64: Option<String>,
    /// The last error (a JSON object with `kind` and details).
    pub error: Option<serde_json::Value>,
    /// Guest log lines of the latest attempt (capped).
    pub logs: Option<serde_json::Value>,
    /// What the result cache did for the latest attempt: `hit-memory`,
    /// `hit-redis`, `miss`, `bypass` or `off`.
    pub cache: Option<String>,
    /// On a cache hit: the job whose run computed the output.
    pub cache_job: Option<String>,
    /// The result-cache key of the work (for `spool cache purge --key`).
    pub cache_key: Option<String>,
    /// Seconds until the record expires; none while the job is live.
    pub ttl_seconds: Option<i64>,
    #[serde(skip)]
    pub(crate) output_bytes: Option<Vec<u8>>,
}

impl JobRecord {
    /// Build from the hash's fields.
    pub(crate) fn from_hash(id: &str, mut h: HashMap<String, Vec<u8>>, ttl: i64) -> Self {
        let mut text = |k: &str| {
            h.remove(k)
                .map(|v| String::from_utf8_lossy(&v).into_owned())
        };
        let plugin = text("plugin").unwrap_or_default();
        let status = text("status").and_then(|s| Status::parse(&s));
        let attempts = text("attempt").and_then(|s| s.parse().ok()).unwrap_or(0);
        let max_attempts = text("max_attempts").and_then(|s| s.parse().ok());
        let priority = text("priority");
        let content_type = text("content_type");
        let num = |v: Option<String>| v.and_then(|s| s.parse().ok());
        let enqueued_us = num(text("enqueued_us"));
        let run_at_us = num(text("run_at_us"));
        let claimed_us = num(text("claimed_us"));
        let started_us = num(text("started_us"));
        let finished_us = num(text("finished_us"));
        let worker = text("worker");
        let version = text("version");
        let host_calls = num(text("host_calls"));
        let cache = text("cache");
        let cache_job = text("cache_job").filter(|j| !j.is_empty());
        let cache_key = text("cache_key").filter(|k| !k.is_empty());
        let json = |v: Option<String>| v.and_then(|s| serde_json::from_str(&s).ok());
        let timings = json(text("timings"));
        let error = json(text("error"));
        let logs = json(text("logs"));
        let payload_bytes = h.get("payload").map_or(0, Vec::len);
        let output_bytes = h.remove("output");
        let (output, output_base64) = match &output_bytes {
            None => (None, None),
            Some(bytes) => match std::str::from_utf8(bytes) {
                Ok(s) => (Some(s.to_string()), None),
                Err(_) => {
                    use base64::Engine as _;
                    (
                        None,
                        Some(base64::engine::general_purpose::STANDARD.encode(bytes)),
                    )
                }
            },
        };
        JobRecord {
            id: id.to_string(),
            plugin,
            status,
            attempts,
            max_attempts,
            priority,
            content_type,
            payload_bytes,
            enqueued_us,
            run_at_us,
            claimed_us,
            started_us,
            finished_us,
            worker,
            version,
            host_calls,
            timings,
            output,
            output_base64,
            error,
            logs,
            cache,
            cache_job,
            cache_key,
            ttl_seconds: (ttl >= 0).then_some(ttl),
            output_bytes,
        }
    }

    /// The raw output bytes, if the job succeeded.
    pub fn output_bytes(&self) -> Option<&[u8]> {
        self.output_bytes.as_deref()
    }
}

/// Microseconds since the Unix epoch, by this machine's clock.
pub fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}
