//! A Redis Cluster connection that opens itself anew after it lost every
//! node.
//!
//! The `redis` crate's async cluster connection heals one node that went
//! away, but once every node was gone at once (a whole cluster restarted)
//! it can stay in a state where each command fails with "No connections
//! found" long after the cluster is back (redis-rs #2277 and #2278 describe
//! the mass-failure case). A worker whose shared connection was in that
//! state claimed nothing for good: its jobs stayed queued. So every cluster
//! connection of ours is this handle: on a connection-level failure it
//! opens a fresh connection from the same client in the background (at
//! most once per [`RENEW_EVERY`]) and later commands use it. The failed
//! command's error is still returned: every caller retries on its own, and
//! a command that may have run is never sent again here.

use redis::cluster::{ClusterClient, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisError, RedisFuture, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The least time between two renewals of one connection: an outage does
/// not turn every failed command into a new set of sockets.
pub const RENEW_EVERY: Duration = Duration::from_secs(1);

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
    /// The settings it was opened with (a blocking connection's longer
    /// response timeout), kept for the renewals.
    config: Option<ClusterConfig>,
    conn: Mutex<ClusterConnection>,
    /// A renewal is under way.
    renewing: AtomicBool,
    /// When the last renewal started.
    last: Mutex<Option<Instant>>,
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
                conn: Mutex::new(conn),
                renewing: AtomicBool::new(false),
                last: Mutex::new(None),
            }),
        })
    }

    /// The connection commands go over now.
    pub fn current(&self) -> ClusterConnection {
        crate::locks::lock(&self.shared.conn).clone()
    }

    /// After `e`: if the connection itself failed, renew it in the
    /// background (unless a renewal is under way or was started less than
    /// [`RENEW_EVERY`] ago).
    pub fn heal_after(&self, e: &RedisError) {
        if !lost_connection(e) || tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        {
            let mut last = crate::locks::lock(&self.shared.last);
            if last.is_some_and(|at| at.elapsed() < RENEW_EVERY) {
                return;
            }
            if self.shared.renewing.swap(true, Ordering::AcqRel) {
                return;
            }
            *last = Some(Instant::now());
        }
        let shared = Arc::clone(&self.shared);
        tokio::spawn(async move {
            match connect(&shared.client, shared.config.clone()).await {
                Ok(fresh) => {
                    *crate::locks::lock(&shared.conn) = fresh;
                    tracing::debug!("opened the cluster connection anew after a lost connection");
                }
                Err(e) => tracing::debug!("opening the cluster connection anew: {e}"),
            }
            shared.renewing.store(false, Ordering::Release);
        });
    }

    /// Send one packed command.
    pub fn command<'a>(&'a self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            use redis::aio::ConnectionLike;
            let mut conn = self.current();
            let reply = conn.req_packed_command(cmd).await;
            if let Err(e) = &reply {
                self.heal_after(e);
            }
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
            let mut conn = self.current();
            let reply = conn.req_packed_commands(pipeline, offset, count).await;
            if let Err(e) = &reply {
                self.heal_after(e);
            }
            reply
        })
    }
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
