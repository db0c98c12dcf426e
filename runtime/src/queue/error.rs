//! What can go wrong talking to the queue. Each variant names the value
//! involved and [`QueueError::is_retryable`] says whether trying again can
//! help.

/// A queue operation failed.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// Redis could not be reached or dropped the connection.
    #[error("redis at {url} is unavailable ({source}); retrying later can help")]
    Unavailable {
        /// The Redis URL (without password).
        url: String,
        /// The client's error.
        source: redis::RedisError,
    },
    /// Redis answered with an error.
    #[error("redis at {url} refused {op}: {source}")]
    Redis {
        /// The Redis URL.
        url: String,
        /// What was attempted.
        op: &'static str,
        /// The server's error.
        source: redis::RedisError,
    },
    /// The Redis URL is not one the client accepts.
    #[error("invalid redis url {url:?}: {reason}; expected redis://HOST[:PORT][/DB]")]
    BadUrl {
        /// The URL as given.
        url: String,
        /// Why it was rejected.
        reason: String,
    },
    /// A script answered with something it never returns.
    #[error("unexpected reply from redis to {op}: {reply}")]
    Protocol {
        /// What was attempted.
        op: &'static str,
        /// The reply, shortened.
        reply: String,
    },
    /// No job with this id (never enqueued, or its record expired).
    #[error("job {id} not found: never enqueued, or its record expired")]
    NotFound {
        /// The job id.
        id: String,
    },
    /// A plugin name that is not `name` or `tenant/name`.
    #[error("invalid plugin name {name:?}: {reason}")]
    BadPluginName {
        /// The name as given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
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
        matches!(
            self,
            QueueError::Unavailable { .. } | QueueError::WaitTimeout { .. }
        )
    }
}
