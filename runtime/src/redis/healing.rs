//! A Redis Cluster connection that opens itself anew after it lost every
//! node.
//!
//! The `redis` crate's async cluster connection heals one node that went
//! away, but once every node was gone at once (a whole cluster restarted)
//! it can stay in a state where each command fails with "No connections
//! found" long after the cluster is back (redis-rs #2277 and #2278 describe
//! the mass-failure case). A worker whose shared connection was in that
//! state claimed nothing for good: its jobs stayed queued. So every cluster
//! connection of ours is this handle: when its commands fail at the
//! connection level and none has succeeded for [`QUIET`], it opens a fresh
//! connection from the same client in the background, and later commands
//! use it. The failed command's error is still returned: every caller
//! retries on its own, and a command that may have run is never sent again
//! here.
//!
//! What does not renew: one master down while the others answer (their
//! successes show the connection works; the client's own reconnects and
//! a failover handle that node), an error of a command sent on a
//! connection that was already replaced, and a handle no one holds any
//! more. Renewals that do not help back off, from [`RENEW_EVERY`] to
//! [`RENEW_AT_MOST`].

use redis::cluster::{ClusterClient, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisError, RedisFuture, Value};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// The least time between two renewals of one connection.
pub const RENEW_EVERY: Duration = Duration::from_secs(1);
/// The most: renewals that did not help double the wait up to this.
pub const RENEW_AT_MOST: Duration = Duration::from_secs(30);
/// How long without a single successful command before a connection
/// error renews the connection.
pub const QUIET: Duration = Duration::from_secs(1);

/// A cluster connection that renews itself (see the module doc). Cheap to
/// clone; clones share the connection and its renewals.
#[derive(Clone)]
pub struct HealingCluster {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for HealingCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HealingCluster").finish_non_exhaustive()
    }
}

struct Shared {
    client: ClusterClient,
    /// The settings it was opened with (a blocking connection's response
    /// timeout), kept for the renewals.
    config: Option<ClusterConfig>,
    /// The connection, and its generation (one more per renewal).
    conn: Mutex<(u64, ClusterConnection)>,
    /// A renewal is under way.
    renewing: AtomicBool,
    /// When the next renewal may start, the wait after it, and when the
    /// last one started (ms since `born`).
    next: Mutex<(Instant, Duration, u64)>,
    /// When a command last succeeded, in ms since `born`.
    last_ok_ms: AtomicU64,
    born: Instant,
}

impl Shared {
    fn quiet_for(&self) -> Duration {
        let quiet = self
            .now_ms()
            .saturating_sub(self.last_ok_ms.load(Ordering::Relaxed));
        Duration::from_millis(quiet)
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.born.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn succeeded(&self) {
        self.last_ok_ms.store(self.now_ms(), Ordering::Relaxed);
    }
}

/// Clears `renewing` however the renewal ends (a panic or a cancelled
/// task included), so that the handle can renew again. Weak: a renewal
/// keeps no connection alive that every handle dropped.
struct Renewing(Weak<Shared>);

impl Drop for Renewing {
    fn drop(&mut self) {
        if let Some(shared) = self.0.upgrade() {
            shared.renewing.store(false, Ordering::Release);
        }
    }
}

impl HealingCluster {
    /// Open a connection of `client` (with `config` if given).
    pub async fn open(
        client: ClusterClient,
        config: Option<ClusterConfig>,
    ) -> redis::RedisResult<Self> {
        let conn = connect(&client, config.clone()).await?;
        Ok(HealingCluster {
            shared: Arc::new(Shared {
                client,
                config,
                conn: Mutex::new((0, conn)),
                renewing: AtomicBool::new(false),
                next: Mutex::new((Instant::now(), RENEW_EVERY, 0)),
                last_ok_ms: AtomicU64::new(0),
                born: Instant::now(),
            }),
        })
    }

    /// The connection commands go over now, and its generation (for
    /// [`HealingCluster::after`]).
    pub fn current(&self) -> (u64, ClusterConnection) {
        crate::locks::lock(&self.shared.conn).clone()
    }

    /// After `reply` of a command sent on generation `generation`: note a
    /// success, or renew the connection in the background if the
    /// connection failed (see the module doc for when it does not).
    pub fn after<T>(&self, generation: u64, reply: &redis::RedisResult<T>) {
        let Err(e) = reply else {
            return self.shared.succeeded();
        };
        if !lost_connection(e)
            || self.shared.quiet_for() < QUIET
            || crate::locks::lock(&self.shared.conn).0 != generation
            || tokio::runtime::Handle::try_current().is_err()
        {
            return;
        }
        {
            let mut next = crate::locks::lock(&self.shared.next);
            if Instant::now() < next.0 || self.shared.renewing.swap(true, Ordering::AcqRel) {
                return;
            }
            // A command succeeded since the last renewal: that one helped,
            // and this outage starts again from the shortest wait.
            let now_ms = self.shared.now_ms();
            let helped = self.shared.last_ok_ms.load(Ordering::Relaxed) > next.2;
            let wait = if helped { RENEW_EVERY } else { next.1 };
            *next = (Instant::now() + wait, (wait * 2).min(RENEW_AT_MOST), now_ms);
        }
        let opener = (self.shared.client.clone(), self.shared.config.clone());
        let renewing = Renewing(Arc::downgrade(&self.shared));
        tokio::spawn(renew(opener, generation, renewing));
    }

    /// Send one packed command.
    pub fn command<'a>(&'a self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            use redis::aio::ConnectionLike;
            let (generation, mut conn) = self.current();
            let reply = conn.req_packed_command(cmd).await;
            self.after(generation, &reply);
            reply
        })
    }

    /// Send `count` commands of a pipeline from `offset`.
    pub fn commands<'a>(
        &'a self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            use redis::aio::ConnectionLike;
            let (generation, mut conn) = self.current();
            let reply = conn.req_packed_commands(pipeline, offset, count).await;
            self.after(generation, &reply);
            reply
        })
    }
}

/// Open a fresh connection in place of generation `replacing`, unless
/// every handle is gone by then or another renewal replaced it first.
/// `guard` clears the `renewing` flag when this ends. Bounded: a node that
/// accepts connections but never answers cannot hold the renewal.
async fn renew(
    (client, config): (ClusterClient, Option<ClusterConfig>),
    replacing: u64,
    guard: Renewing,
) {
    let opened = tokio::time::timeout(RENEW_AT_MOST, connect(&client, config)).await;
    let Some(shared) = guard.0.upgrade() else {
        return;
    };
    match opened {
        Ok(Ok(fresh)) => {
            let mut conn = crate::locks::lock(&shared.conn);
            if conn.0 == replacing {
                *conn = (replacing + 1, fresh);
                tracing::debug!("opened the cluster connection anew after a lost connection");
            }
        }
        Ok(Err(e)) => tracing::debug!("opening the cluster connection anew: {e}"),
        Err(_) => tracing::debug!(
            "opening the cluster connection anew: no answer within {RENEW_AT_MOST:?}"
        ),
    }
    drop(guard);
}

async fn connect(
    client: &ClusterClient,
    config: Option<ClusterConfig>,
) -> redis::RedisResult<ClusterConnection> {
    match config {
        Some(config) => client.get_async_connection_with_config(config).await,
        None => client.get_async_connection().await,
    }
}

/// Whether `e` says the connection failed (not Redis refusing a command,
/// nor a slot moving or a failover under way, which the client handles).
pub(crate) fn lost_connection(e: &RedisError) -> bool {
    e.kind() == redis::ErrorKind::ClusterConnectionNotFound
        || e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_failed_connection_asks_for_a_renewal() {
        let not_found = RedisError::from((
            redis::ErrorKind::ClusterConnectionNotFound,
            "No connections found",
        ));
        assert!(lost_connection(&not_found));
        let refused = RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert!(lost_connection(&refused));
        let wrong_type = RedisError::from((redis::ErrorKind::Client, "wrong type"));
        assert!(!lost_connection(&wrong_type));
    }
}
