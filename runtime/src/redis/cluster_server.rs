//! A private Redis Cluster of child processes, for `spool dev --cluster`
//! and the tests: `masters` masters with
//! `replicas` replicas each, every node a [`RedisServer`] on a free
//! loopback port with its own data directory, joined by
//! `redis-cli --cluster create` (which ships with `redis-server`).

use super::server::{RedisServer, RedisServerError};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A running cluster we started. Dropping it kills every node.
#[derive(Debug)]
pub struct RedisCluster {
    /// The nodes, masters first as created (a failover may swap roles).
    nodes: Vec<RedisServer>,
    masters: usize,
}

/// How the cluster is laid out.
#[derive(Debug, Clone, Copy)]
pub struct ClusterShape {
    /// Masters (at least 3: `redis-cli --cluster create` wants 3).
    pub masters: usize,
    /// Replicas per master.
    pub replicas: usize,
    /// `cluster-node-timeout`: how long a master may be silent before its
    /// replica takes over (Redis' default is 15 s; tests use ~1 s).
    pub node_timeout: Duration,
    /// `appendfsync` of every node.
    pub fsync: &'static str,
}

impl ClusterShape {
    /// 3 masters, 1 replica each: the smallest cluster that survives
    /// losing a master.
    pub fn three_by_one(node_timeout: Duration, fsync: &'static str) -> Self {
        ClusterShape {
            masters: 3,
            replicas: 1,
            node_timeout,
            fsync,
        }
    }
}

impl RedisCluster {
    /// Start the nodes under `dir` (one subdirectory each), join them, and
    /// wait until every node says `cluster_state:ok`.
    pub fn start(dir: &Path, shape: ClusterShape) -> Result<Self, RedisServerError> {
        let extra = [
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-node-timeout",
            &shape.node_timeout.as_millis().to_string(),
            // A replica may take over however long ago it last heard its
            // master: in a small cluster losing a master must not stop it.
            "--cluster-replica-validity-factor",
            "0",
        ]
        .map(String::from);
        let count = shape.masters * (1 + shape.replicas);
        let mut nodes = Vec::with_capacity(count);
        for i in 0..count {
            let node_dir = dir.join(format!("node-{i}"));
            nodes.push(RedisServer::start_with(&node_dir, shape.fsync, &extra)?);
        }
        let cluster = RedisCluster {
            nodes,
            masters: shape.masters,
        };
        cluster.create(shape.replicas)?;
        cluster.wait_ok(Duration::from_secs(30))?;
        Ok(cluster)
    }

    /// `redis-cli --cluster create … --cluster-replicas N --cluster-yes`.
    fn create(&self, replicas: usize) -> Result<(), RedisServerError> {
        let log = self.nodes[0].dir().join("cluster-create.log");
        let out = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(self.nodes.iter().map(|n| format!("127.0.0.1:{}", n.port())))
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| self.failed(format!("redis-cli could not run: {e}"), &log))?;
        let _ = std::fs::write(&log, [&out.stdout[..], &out.stderr[..]].concat());
        if !out.status.success() {
            return Err(self.failed(
                format!("redis-cli --cluster create exited with {}", out.status),
                &log,
            ));
        }
        Ok(())
    }

    /// Wait until every running node reports `cluster_state:ok` and
    /// knows every other node.
    pub fn wait_ok(&self, limit: Duration) -> Result<(), RedisServerError> {
        let started = Instant::now();
        while started.elapsed() < limit {
            if self
                .nodes
                .iter()
                .filter(|n| n.pid().is_some())
                .all(|n| node_ok(n, self.nodes.len()))
            {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let log = self.nodes[0].dir().join("redis.log");
        Err(self.failed(format!("the cluster was not ok within {limit:?}"), &log))
    }

    fn failed(&self, reason: String, log: &Path) -> RedisServerError {
        RedisServerError::DidNotStart {
            port: self.nodes[0].port(),
            reason,
            log: PathBuf::from(log),
        }
    }

    /// The seed list for `--redis`: every master that was created, as
    /// `redis://127.0.0.1:P1,127.0.0.1:P2,…`.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self.nodes[..self.masters]
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port()))
            .collect();
        format!("redis://{}", hosts.join(","))
    }

    /// Every node, masters (as created) first.
    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }

    /// Node `i`, to kill or restart.
    pub fn node_mut(&mut self, i: usize) -> &mut RedisServer {
        &mut self.nodes[i]
    }

    /// Shut every node down cleanly.
    pub fn stop_all(&mut self) {
        self.nodes.iter_mut().for_each(RedisServer::stop);
    }

    /// Kill every node at once (SIGKILL).
    pub fn kill_all(&mut self) {
        self.nodes.iter_mut().for_each(RedisServer::kill);
    }

    /// Start every node again on its port and data (each finds the others
    /// from its `nodes.conf`), and wait until the cluster is ok.
    pub fn restart_all(&mut self) -> Result<(), RedisServerError> {
        self.stop_all();
        for node in &mut self.nodes {
            node.restart()?;
        }
        self.wait_ok(Duration::from_secs(30))
    }

    /// How many masters the cluster was created with.
    pub fn masters(&self) -> usize {
        self.masters
    }
}

/// Whether `node` answers `cluster_state:ok` and lists `total` nodes.
fn node_ok(node: &RedisServer, total: usize) -> bool {
    let Ok(client) = redis::Client::open(node.url()) else {
        return false;
    };
    let Ok(mut conn) = client.get_connection_with_timeout(Duration::from_millis(300)) else {
        return false;
    };
    let info: String = redis::cmd("CLUSTER")
        .arg("INFO")
        .query(&mut conn)
        .unwrap_or_default();
    let known = info
        .lines()
        .find_map(|l| l.trim().strip_prefix("cluster_known_nodes:"))
        .and_then(|n| n.parse::<usize>().ok());
    info.lines().any(|l| l.trim() == "cluster_state:ok") && known == Some(total)
}
