//! The Redis a test runs against: one `redis-server`, or with
//! `SPOOL_TEST_REDIS=cluster` in the environment a private Redis Cluster
//! (3 masters, 1 replica each, a short `cluster-node-timeout`), so that the
//! same queue tests prove the same behaviour on both.

use spool_runtime::redis::{ClusterShape, RedisCluster, RedisServer, RedisServerError};
use std::path::Path;
use std::time::Duration;

/// Whether this test run is against a cluster (`SPOOL_TEST_REDIS=cluster`).
pub fn cluster_run() -> bool {
    std::env::var("SPOOL_TEST_REDIS").is_ok_and(|v| v == "cluster")
}

/// The shape of a test cluster: failover within ~2–4 s of a master's death
/// (not shorter: an fsync stall on a busy 2-core machine must not look
/// like a dead master).
pub fn test_shape() -> ClusterShape {
    ClusterShape::three_by_one(Duration::from_millis(2000), "always")
}

/// A test's Redis.
#[derive(Debug)]
pub enum TestRedis {
    /// One server.
    One(RedisServer),
    /// A cluster.
    Cluster(RedisCluster),
}

impl TestRedis {
    /// Start one server, or a cluster on a cluster run, under `dir`.
    pub fn start(dir: &Path) -> Result<Self, RedisServerError> {
        if cluster_run() {
            RedisCluster::start(dir, test_shape()).map(TestRedis::Cluster)
        } else {
            RedisServer::start(dir, "always").map(TestRedis::One)
        }
    }

    /// The URL for `--redis` (a seed list on a cluster).
    pub fn url(&self) -> String {
        match self {
            TestRedis::One(s) => s.url(),
            TestRedis::Cluster(c) => c.url(),
        }
    }

    /// Whether this is a cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self, TestRedis::Cluster(_))
    }

    /// The port of the server, or of the cluster's first node.
    pub fn port(&self) -> u16 {
        match self {
            TestRedis::One(s) => s.port(),
            TestRedis::Cluster(c) => c.nodes()[0].port(),
        }
    }

    /// The cluster, for tests about clusters.
    pub fn cluster(&mut self) -> &mut RedisCluster {
        match self {
            TestRedis::Cluster(c) => c,
            TestRedis::One(_) => panic!("this test needs a cluster (SPOOL_TEST_REDIS=cluster)"),
        }
    }

    /// Shut down cleanly (every node of a cluster).
    pub fn stop(&mut self) {
        match self {
            TestRedis::One(s) => s.stop(),
            TestRedis::Cluster(c) => c.stop_all(),
        }
    }

    /// Kill at once (SIGKILL; every node of a cluster).
    pub fn kill(&mut self) {
        match self {
            TestRedis::One(s) => s.kill(),
            TestRedis::Cluster(c) => c.kill_all(),
        }
    }

    /// Start again on the same ports and data (a cluster's nodes find each
    /// other again from their `nodes.conf`), and wait until it serves.
    pub fn restart(&mut self) -> Result<(), RedisServerError> {
        match self {
            TestRedis::One(s) => s.restart(),
            TestRedis::Cluster(c) => c.restart_all(),
        }
    }
}

/// The text of a node-wide reply (`INFO`, `CLIENT LIST`): one server's
/// string, or on a cluster every node's, one after another (the cluster
/// client answers those with a map of node to text).
pub fn every_node_text(reply: redis::Value) -> String {
    match reply {
        redis::Value::Map(nodes) => nodes
            .into_iter()
            .map(|(_, text)| every_node_text(text))
            .collect::<Vec<_>>()
            .join("\n"),
        redis::Value::BulkString(b) => String::from_utf8_lossy(&b).into_owned(),
        redis::Value::VerbatimString { text, .. } => text,
        redis::Value::SimpleString(s) => s,
        _ => String::new(),
    }
}
