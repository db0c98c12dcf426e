//! A small pool of blocking Redis connections, for code that runs on the
//! worker's job threads (host calls, the result cache) rather than on the
//! async runtime: a thread takes an idle connection, uses it, and puts it
//! back.

use super::{RedisError, redact};
use crate::locks::lock;
use std::sync::Mutex;
use std::time::Duration;

/// Blocking connections to one Redis, reused across calls.
pub struct SyncRedis {
    /// The URL without its password, for messages.
    shown: String,
    client: redis::Client,
    idle: Mutex<Vec<redis::Connection>>,
}

impl std::fmt::Debug for SyncRedis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncRedis").finish_non_exhaustive()
    }
}

impl SyncRedis {
    /// A pool for `url`; connects on first use. The error names the URL
    /// (without its password).
    pub fn new(url: &str) -> Result<Self, RedisError> {
        let shown = redact(url);
        let client = redis::Client::open(url).map_err(|e| RedisError::BadUrl {
            url: shown.clone(),
            reason: e.to_string(),
        })?;
        Ok(SyncRedis {
            shown,
            client,
            idle: Mutex::new(Vec::new()),
        })
    }

    /// The URL without its password.
    pub fn url(&self) -> &str {
        &self.shown
    }

    fn connect(&self) -> redis::RedisResult<redis::Connection> {
        let conn = self
            .client
            .get_connection_with_timeout(Duration::from_secs(2))?;
        let timeout = Some(Duration::from_secs(2));
        let _ = conn.set_read_timeout(timeout);
        let _ = conn.set_write_timeout(timeout);
        Ok(conn)
    }

    /// An idle connection (false) or a new one (true).
    fn take(&self) -> redis::RedisResult<(redis::Connection, bool)> {
        let pooled = lock(&self.idle).pop();
        match pooled {
            Some(conn) => Ok((conn, false)),
            None => Ok((self.connect()?, true)),
        }
    }

    /// Keep `conn` for the next call if it served `result` well.
    fn give_back<T>(
        &self,
        conn: redis::Connection,
        result: redis::RedisResult<T>,
    ) -> redis::RedisResult<T> {
        if result.is_ok() {
            lock(&self.idle).push(conn);
        }
        result
    }

    /// Run `f` on a pooled connection, once: for commands that must not be
    /// sent twice (a retry after a lost reply would apply them twice).
    pub fn once<T>(
        &self,
        f: impl FnOnce(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> redis::RedisResult<T> {
        let (mut conn, _) = self.take()?;
        let result = f(&mut conn);
        self.give_back(conn, result)
    }

    /// Run `f` on a pooled connection. A pooled connection may have died
    /// with a Redis restart: on a connection error, `f` gets one more try on
    /// a fresh one.
    pub fn with_connection<T>(
        &self,
        f: impl Fn(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> redis::RedisResult<T> {
        let (mut conn, fresh) = self.take()?;
        let mut result = f(&mut conn);
        if !fresh
            && let Err(e) = &result
            && (e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal())
        {
            conn = self.connect()?;
            result = f(&mut conn);
        }
        self.give_back(conn, result)
    }
}
