//! What can go wrong with a queue operation. Redis trouble is a
//! [`RedisError`] (it names the URL and says whether retrying helps); the
//! rest names the job. [`QueueError::is_retryable`] says whether trying
//! again can help.

use crate::redis::RedisError;
use crate::tenants::Limit;

/// A queue operation failed.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// Redis is unreachable, refused the command, answered oddly, or the
    /// URL is bad.
    #[error(transparent)]
    Redis(#[from] RedisError),
    /// The queue name or key prefix is not allowed.
    #[error("{reason}")]
    BadConfig {
        /// What is wrong, naming the value.
        reason: String,
    },
    /// A request names something the queue cannot take (a group name
    /// with forbidden characters, say); nothing was changed.
    #[error("{reason}")]
    Invalid {
        /// What is wrong, naming the value.
        reason: String,
    },
    /// No job with this id (never enqueued, or its record expired).
    #[error("job {id} not found: never enqueued, or its record expired")]
    NotFound {
        /// The job id.
        id: String,
    },
    /// A job breaks its tenant's quota (`max-payload`, `max-attempts`);
    /// nothing of its batch was enqueued.
    #[error("tenant {tenant}: {} is over its {} quota of {}; nothing was enqueued (the operator can raise it: spool tenants set {tenant} --{} …)", shown_value(*limit, *value), limit.name(), limit.show(*quota), limit.name())]
    OverQuota {
        /// The job's tenant.
        tenant: String,
        /// The quota.
        limit: Limit,
        /// What the job asked for.
        value: u64,
        /// The quota's value.
        quota: u64,
    },
    /// `--wait` ran out of time; the job is still queued or running.
    #[error("job {id} did not finish within {}s; it is still {status}{}; it stays on the queue", waited.as_secs_f64(), last_error.as_ref().map(|e| format!(" (last error: {e})")).unwrap_or_default())]
    WaitTimeout {
        /// The job id.
        id: String,
        /// How long we waited.
        waited: std::time::Duration,
        /// Its status when we gave up.
        status: String,
        /// The error of its latest attempt, if any.
        last_error: Option<String>,
    },
}

impl QueueError {
    /// Whether the same operation may succeed later.
    pub fn is_retryable(&self) -> bool {
        match self {
            QueueError::Redis(e) => e.is_retryable(),
            QueueError::WaitTimeout { .. } => true,
            QueueError::NotFound { .. }
            | QueueError::OverQuota { .. }
            | QueueError::BadConfig { .. }
            | QueueError::Invalid { .. } => false,
        }
    }

    /// A reply a script never gives.
    pub(crate) fn protocol(op: &'static str, reply: impl Into<String>) -> Self {
        QueueError::Redis(RedisError::Protocol {
            op,
            reply: reply.into(),
        })
    }
}

/// What a job asked for, in the quota's words.
fn shown_value(limit: Limit, value: u64) -> String {
    match limit {
        Limit::MaxPayload => format!("a payload of {}", limit.show(value)),
        Limit::MaxAttempts => format!("max_attempts {value}"),
        other => format!("{} {}", other.name(), other.show(value)),
    }
}
