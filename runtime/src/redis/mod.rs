//! The Redis base layer: connections (async and blocking), URL redaction,
//! error classification and reply decoding. Imports no other Spool module:
//! the queue, the fleet store, the result cache and the key-value store all
//! stand on it, and on nothing of each other.
//!
//! - [`AsyncRedis`]: a self-reconnecting async connection plus the client
//!   to open blocking ones (no response timeout) for `BLPOP`/`XREAD`, to
//!   one server or a Redis Cluster ([`Target`], [`Conn`]); [`Node`] for
//!   what must visit every master.
//! - [`SyncRedis`]: a small pool of blocking connections for code on the
//!   worker's job threads (host calls, the result cache).
//! - [`RedisError`]: what went wrong and [`RedisError::is_retryable`].
//! - [`value`]: reply values → bytes and text.
//! - [`ledger`]: exact per-tenant byte and key accounting for quotas.
//! - [`server`]: a private `redis-server` for `spool dev`, `spool bench`
//!   and the tests; [`RedisCluster`], a private cluster of them.

mod batch;
mod cluster_admin;
mod cluster_server;
mod conn;
mod connect;
mod error;
mod healing;
pub mod ledger;
mod nodes;
mod served;
pub mod server;
mod sync;
mod target;
pub mod value;

pub use batch::Batch;
pub use cluster_server::{ClusterShape, PrivateRedis, RedisCluster};
pub use conn::{Conn, SyncConn};
pub use connect::AsyncRedis;
pub use error::RedisError;
pub(crate) use error::is_connection_trouble;
pub use nodes::Node;
pub(crate) use served::not_served;
pub use served::{send_until_served, send_until_served_with};
pub use server::{RedisServer, RedisServerError};
pub use sync::SyncRedis;
pub use target::Target;

/// A script with `prelude` (shared helpers, each script's KEYS/ARGV
/// conventions) in front of `body`. `EVALSHA` falls back to loading it
/// when Redis answers `NOSCRIPT` (after a restart).
pub fn script_with_prelude(prelude: &str, body: &str) -> ::redis::Script {
    ::redis::Script::new(&format!("{prelude}\n{body}"))
}

/// The URL with any password replaced by `***`, for messages and logs.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    match rest.split_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            format!("{scheme}://{user}:***@{host}")
        }
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(
            redact("redis://:hunter2@db:6379/0"),
            "redis://:***@db:6379/0"
        );
        assert_eq!(redact("rediss://app:hunter2@db"), "rediss://app:***@db");
        assert_eq!(redact("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
    }
}
