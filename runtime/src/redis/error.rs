//! What can go wrong talking to Redis, and whether trying again can help.
//! Every variant names the (redacted) URL or the operation.

/// A Redis operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RedisError {
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
    Refused {
        /// The Redis URL (without password).
        url: String,
        /// What was attempted.
        op: &'static str,
        /// The server's error.
        source: redis::RedisError,
    },
    /// The Redis URL is not one the client accepts.
    #[error("invalid redis url {url:?}: {reason}; expected redis://HOST[:PORT][/DB]")]
    BadUrl {
        /// The URL as given (without password).
        url: String,
        /// Why it was rejected.
        reason: String,
    },
    /// A script or command answered with something it never returns.
    #[error("unexpected reply from redis to {op}: {reply}")]
    Protocol {
        /// What was attempted.
        op: &'static str,
        /// The reply, shortened.
        reply: String,
    },
}

impl RedisError {
    /// Connection trouble is retryable ([`RedisError::Unavailable`]); a
    /// wrong password, a refused command or a bad reply is not.
    pub fn classify(url: &str, op: &'static str, source: redis::RedisError) -> Self {
        let auth = source.kind() == redis::ErrorKind::AuthenticationFailed;
        if !auth && is_connection_trouble(&source) {
            RedisError::Unavailable {
                url: url.to_string(),
                source,
            }
        } else {
            RedisError::Refused {
                url: url.to_string(),
                op,
                source,
            }
        }
    }

    /// The same error, as retryable: for a caller that knows the server
    /// answered before, so a refusal now (too many clients, `LOADING`
    /// after a restart) is passing.
    #[must_use]
    pub fn as_unavailable(self) -> Self {
        match self {
            RedisError::Refused { url, source, .. } => RedisError::Unavailable { url, source },
            other => other,
        }
    }

    /// Whether the same operation may succeed later.
    pub fn is_retryable(&self) -> bool {
        matches!(self, RedisError::Unavailable { .. })
    }
}

/// The connection (not the command) failed, or the server is passing
/// through a state that ends by itself: a retry can help. On a cluster that
/// is a failover or a slot migration still under way when the client's own
/// retries ran out (`CLUSTERDOWN`, `TRYAGAIN`, `MASTERDOWN`, `READONLY`
/// from a demoted master, a redirect loop), and on any server `LOADING`.
pub(crate) fn is_connection_trouble(e: &redis::RedisError) -> bool {
    use redis::{ErrorKind, ServerErrorKind as S};
    let passing = matches!(
        e.kind(),
        ErrorKind::Server(
            S::ClusterDown
                | S::TryAgain
                | S::MasterDown
                | S::ReadOnly
                | S::BusyLoading
                | S::Moved
                | S::Ask
        ) | ErrorKind::ClusterConnectionNotFound
    );
    passing
        || e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
}
