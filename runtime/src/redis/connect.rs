//! The async connection every Redis user of the runtime shares the shape
//! of: a client, one self-reconnecting multiplexed connection, and blocking
//! connections on demand.

use super::{RedisError, redact};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::sync::Arc;
use std::time::Duration;

/// A client and a self-reconnecting connection to one Redis. Cheap to
/// clone; clones share the connection. Operations during an outage fail
/// with [`RedisError::Unavailable`] and work again once Redis is back.
#[derive(Clone)]
pub struct AsyncRedis {
    /// The URL without its password, for messages.
    shown: Arc<str>,
    client: redis::Client,
    conn: ConnectionManager,
}

impl std::fmt::Debug for AsyncRedis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncRedis")
            .field("url", &self.shown)
            .finish_non_exhaustive()
    }
}

impl AsyncRedis {
    /// Connect to `url`.
    pub async fn open(url: &str) -> Result<Self, RedisError> {
        let shown: Arc<str> = redact(url).into();
        let client = redis::Client::open(url).map_err(|e| RedisError::BadUrl {
            url: shown.to_string(),
            reason: e.to_string(),
        })?;
        let conn = ConnectionManager::new_with_config(client.clone(), manager_config())
            .await
            .map_err(|source| RedisError::classify(&shown, "connect", source))?;
        Ok(AsyncRedis {
            shown,
            client,
            conn,
        })
    }

    /// The shared connection (a clone of the handle; commands multiplex).
    pub fn conn(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// A connection of its own for blocking commands (`BLPOP`, `XREAD
    /// BLOCK`): no response timeout, so callers bound the wait themselves.
    pub async fn blocking(&self) -> Result<ConnectionManager, RedisError> {
        let config = manager_config().set_response_timeout(None);
        ConnectionManager::new_with_config(self.client.clone(), config)
            .await
            .map_err(|source| RedisError::classify(&self.shown, "connect", source))
    }

    /// The URL without its password.
    pub fn url(&self) -> &str {
        &self.shown
    }

    /// Name a failed operation: connection trouble is retryable, the rest
    /// is not.
    pub fn error(&self, op: &'static str, source: redis::RedisError) -> RedisError {
        RedisError::classify(&self.shown, op, source)
    }
}

/// Short reconnect backoff (callers retry on their own too) and a response
/// timeout long enough for a batch of large payloads.
fn manager_config() -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_number_of_retries(2)
        .set_min_delay(Duration::from_millis(50))
        .set_max_delay(Duration::from_secs(1))
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(Duration::from_secs(10)))
}
