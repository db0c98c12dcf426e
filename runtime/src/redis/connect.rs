//! The async connection every Redis user of the runtime shares the shape
//! of: a client, one self-reconnecting multiplexed connection, and blocking
//! connections on demand, to one server or to a Redis Cluster.

use super::conn::Conn;
use super::healing::HealingCluster;
use super::nodes::Node;
use super::target::{Target, says_cluster};
use super::{RedisError, redact};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use std::sync::Arc;
use std::time::Duration;

/// A client and a self-reconnecting connection to one Redis or one
/// cluster. Cheap to clone; clones share the connection. Operations during
/// an outage (or a failover) fail with [`RedisError::Unavailable`] and work
/// again once Redis is back.
#[derive(Clone)]
pub struct AsyncRedis {
    /// The URL without its password, for messages.
    shown: Arc<str>,
    opener: Opener,
    conn: Conn,
    /// [`AsyncRedis::once_conn`].
    once: Conn,
}

/// What opens more connections like [`AsyncRedis::conn`].
#[derive(Clone)]
enum Opener {
    Single(redis::Client),
    Cluster(Box<ClusterClient>),
}

impl std::fmt::Debug for AsyncRedis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncRedis")
            .field("url", &self.shown)
            .field("cluster", &self.is_cluster())
            .finish_non_exhaustive()
    }
}

impl AsyncRedis {
    /// Connect to `url`: one server, a comma-separated list of cluster
    /// nodes, or any one node of a cluster (asked with `INFO cluster`).
    pub async fn open(url: &str) -> Result<Self, RedisError> {
        let shown: Arc<str> = redact(url).into();
        let bad = |reason: String| RedisError::BadUrl {
            url: shown.to_string(),
            reason,
        };
        let seeds = match Target::parse(url)? {
            Target::Seeds(seeds) => seeds,
            Target::One(one) => {
                let client = redis::Client::open(one.as_str()).map_err(|e| bad(e.to_string()))?;
                let mut conn = ConnectionManager::new_with_config(client.clone(), manager_config())
                    .await
                    .map_err(|source| RedisError::classify(&shown, "connect", source))?;
                if !in_cluster_mode(&mut conn).await {
                    let (opener, conn) = (Opener::Single(client), Conn::Single(conn));
                    return Ok(AsyncRedis {
                        shown,
                        opener,
                        once: conn.clone(),
                        conn,
                    });
                }
                vec![one]
            }
        };
        let client = cluster_builder(&seeds, Some(RESPONSE_TIMEOUT))
            .build()
            .map_err(|e| bad(e.to_string()))?;
        let once = cluster_builder(&seeds, Some(RESPONSE_TIMEOUT))
            .retries(0)
            .build()
            .map_err(|e| bad(e.to_string()))?;
        let once_conn = cluster_connection(once, &shown).await?;
        let conn = cluster_connection(client.clone(), &shown).await?;
        Ok(AsyncRedis {
            shown,
            opener: Opener::Cluster(Box::new(client)),
            conn,
            once: once_conn,
        })
    }

    /// The shared connection (a clone of the handle; commands multiplex).
    pub fn conn(&self) -> Conn {
        self.conn.clone()
    }

    /// A connection whose commands the client never sends twice: on a
    /// cluster, one whose client retries nothing (it still learns where
    /// slots moved), for the queue's scripts, which must not run twice
    /// when a connection drops after they ran. The caller sends again what
    /// Redis refused unrun. On one server, the shared connection (its
    /// client never sends a command twice).
    pub fn once_conn(&self) -> Conn {
        self.once.clone()
    }

    /// Whether this is a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self.opener, Opener::Cluster(_))
    }

    /// A connection of its own for blocking commands (`BLPOP`, `XREAD
    /// BLOCK`): no response timeout on one server, so callers bound the
    /// wait themselves. (On a cluster the per-node timeout is an hour, but
    /// the client's overall timeout, [`RESPONSE_TIMEOUT`], still ends any
    /// command: every blocking call of ours blocks for less.) Its own
    /// sockets, because a blocked command holds up everything queued
    /// behind it on a multiplexed one.
    pub async fn blocking(&self) -> Result<Conn, RedisError> {
        let fail = |source| RedisError::classify(&self.shown, "connect", source);
        match &self.opener {
            Opener::Single(client) => {
                let config = manager_config().set_response_timeout(None);
                ConnectionManager::new_with_config(client.clone(), config)
                    .await
                    .map(Conn::Single)
                    .map_err(fail)
            }
            Opener::Cluster(client) => {
                let config = redis::cluster::ClusterConfig::new()
                    .set_response_timeout(Duration::from_secs(3600));
                HealingCluster::open((**client).clone(), Some(config))
                    .await
                    .map(Conn::Cluster)
                    .map_err(fail)
            }
        }
    }

    /// The masters: one [`Node`] per shard (the server itself when not a
    /// cluster), for what must visit every one (`SCAN`, `INFO`, purges).
    pub async fn masters(&self) -> Result<Vec<Node>, RedisError> {
        super::nodes::masters(&self.conn)
            .await
            .map_err(|source| self.error("list the cluster's masters", source))
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

async fn cluster_connection(client: ClusterClient, shown: &str) -> Result<Conn, RedisError> {
    HealingCluster::open(client, None)
        .await
        .map(Conn::Cluster)
        .map_err(|source| RedisError::classify(shown, "connect", source))
}

/// Whether the server behind `conn` runs in cluster mode. A server that
/// refuses `INFO` (an ACL) is taken as standalone: a cluster node then
/// answers `MOVED`, which names the problem.
async fn in_cluster_mode(conn: &mut ConnectionManager) -> bool {
    redis::cmd("INFO")
        .arg("cluster")
        .query_async::<String>(conn)
        .await
        .is_ok_and(|info| says_cluster(&info))
}

/// How long a reply may take: long enough for a batch of large payloads.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);

/// Short reconnect backoff (callers retry on their own too) and a response
/// timeout long enough for a batch of large payloads.
fn manager_config() -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_number_of_retries(2)
        .set_min_delay(Duration::from_millis(50))
        .set_max_delay(Duration::from_secs(1))
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(RESPONSE_TIMEOUT.into())
}

/// The cluster client's settings. `MOVED` and `ASK` are followed at once;
/// `TRYAGAIN`, `CLUSTERDOWN`, `MASTERDOWN` and lost connections are retried
/// up to 10 times with a jittered backoff from 10 ms doubling to 1 s (about
/// 5 s in all): a failover with a short `cluster-node-timeout` or a slot
/// migration completes within it; a longer outage surfaces as
/// [`RedisError::Unavailable`], which every caller retries on its own.
pub(crate) fn cluster_builder(
    seeds: &[String],
    response: Option<Duration>,
) -> ClusterClientBuilder {
    let mut builder = ClusterClient::builder(seeds.iter().map(String::as_str))
        .retries(10)
        .min_retry_wait(10)
        .max_retry_wait(1000)
        .retry_wait_formula(10, 2)
        .connection_timeout(Duration::from_secs(2));
    if let Some(response) = response {
        builder = builder.response_timeout(response);
    }
    builder
}
