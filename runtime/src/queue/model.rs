//! The queue's data: priorities, statuses, what a client enqueues and what
//! a worker claims and reports. The job record itself is in
//! [`super::record`].

use super::record::RecordUpdate;
use crate::ids::PluginName;
use serde::Serialize;
use std::str::FromStr;

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
    /// The job's group within its tenant: jobs of one group start one at a
    /// time (the tenant's `group-concurrency`), in enqueue order. Checked
    /// by [`super::check_group`].
    pub group: Option<String>,
}

impl NewJob {
    /// A job with default settings: JSON, normal priority, 5 attempts, now.
    pub fn new(plugin: PluginName, payload: impl Into<Vec<u8>>) -> Self {
        NewJob {
            plugin,
            payload: payload.into(),
            content_type: DEFAULT_CONTENT_TYPE.to_string(),
            priority: Priority::Normal,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            delay: std::time::Duration::ZERO,
            idempotency_key: None,
            wait: false,
            no_cache: false,
            group: None,
        }
    }
}

/// Attempts a job gets unless it says otherwise.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;

/// The payload's MIME type unless the envelope says otherwise.
pub const DEFAULT_CONTENT_TYPE: &str = "application/json";

/// A job as a worker claimed it: the envelope plus this attempt's fencing
/// token. Fields are raw: the worker validates them, so a malformed
/// envelope becomes a dead letter that names the bad field.
#[derive(Debug, Clone)]
pub struct ClaimedJob {
    /// The tenant whose queue it was claimed from (its keys' slot). The
    /// worker refuses a job whose plugin belongs to another tenant.
    pub tenant: String,
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
    /// The record holds nothing an earlier attempt or hand-back wrote
    /// (`fresh` in the claim's reply): the outcome need not clear fields.
    pub fresh: bool,
    /// What the ack needs of the record, as the claim saw it; `None` when
    /// the claim sent no record (the ack then reads it itself).
    pub seen: Option<Seen>,
    /// When it was claimed (µs, Redis' clock).
    pub claimed_us: u64,
    /// When the claim's reply arrived here (no earlier than `claimed_us`):
    /// places the moment a job thread starts the job on Redis' clock, as a
    /// lower bound.
    pub received: std::time::Instant,
}

impl ClaimedJob {
    /// An outcome for this attempt (same tenant, id, token, `wait` and
    /// what the claim saw).
    pub fn outcome(&self, next: Next) -> Outcome {
        let mut outcome = Outcome::new(&self.tenant, &self.id, &self.token, self.wait, next);
        outcome.record.fresh = self.fresh;
        outcome.seen = self.seen.clone();
        outcome.clock = Some((self.claimed_us, self.received));
        outcome
    }
}

/// What a claim saw in a job's record that the job's ack needs, handed to
/// the ack so that it need not read it back: every field an ack reads
/// costs Redis a pass over the record, and a field the record lacks (most
/// jobs have neither of these) a pass over all of it. Neither changes
/// while the job runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Seen {
    /// The group whose slot the job holds (`group`), if any.
    pub group: Option<String>,
    /// Enqueued under an idempotency key (`idem`, any value, as the ack
    /// script reads it): its record stays for the whole TTL, out of the
    /// succeeded-record cap.
    pub idem: bool,
}

/// What became of one claimed attempt.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The tenant whose queue holds the job.
    pub tenant: String,
    /// Job id.
    pub id: String,
    /// The attempt's fencing token.
    pub token: String,
    /// Whether a client waits (passed through from the claim).
    pub wait: bool,
    /// Where the job goes next.
    pub next: Next,
    /// What it writes into the job's record.
    pub record: RecordUpdate,
    /// What the claim saw of the record; `None` (an outcome not made from
    /// a claimed job): the ack reads it from the record.
    pub seen: Option<Seen>,
    /// Redis' clock as the claim read it, and when its reply arrived: the
    /// ack of successes tells Redis the time from it (claimed + elapsed,
    /// behind Redis by the reply's trip), so that the script need not ask
    /// (`TIME`).
    /// `None`: the script reads its clock.
    pub clock: Option<(u64, std::time::Instant)>,
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
    /// The worker gave up on the job thread running it (wedged past its
    /// deadline and grace): handled like an expired lease — the attempt
    /// counts, the job backs off from `backoff` (doubling per attempt), and
    /// after a few such endings it is dead-lettered as `worker-crash`.
    Wedged {
        /// The backoff base (the worker's `--backoff`).
        backoff: std::time::Duration,
    },
}

impl Outcome {
    /// An outcome that writes nothing but its `next` (and what the ack
    /// itself records: status, times).
    pub fn new(
        tenant: impl Into<String>,
        id: impl Into<String>,
        token: impl Into<String>,
        wait: bool,
        next: Next,
    ) -> Self {
        Outcome {
            tenant: tenant.into(),
            id: id.into(),
            token: token.into(),
            wait,
            next,
            record: RecordUpdate::default(),
            seen: None,
            clock: None,
        }
    }
}
