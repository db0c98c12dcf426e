//! A private Redis Cluster of child processes, for `spool dev --cluster`,
//! `spool bench` and the tests: `masters` masters with `replicas` replicas
//! each, every node a [`RedisServer`] on a free loopback port (and a free
//! cluster bus port: the default port + 10000 may fall in the kernel's
//! ephemeral range) with its own data directory, joined by plain cluster
//! commands ([`cluster_admin::join`]) so that `redis-server` alone is
//! needed and one master is a cluster too.

use super::cluster_admin;
use super::server::{RedisServer, RedisServerError, free_port};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A running cluster we started. Dropping it kills every node.
#[derive(Debug)]
pub struct RedisCluster {
    /// The nodes, masters first as created (a failover may swap roles).
    nodes: Vec<RedisServer>,
    /// Each node's cluster bus port, in `nodes`' order.
    buses: Vec<u16>,
    masters: usize,
}

/// A private Redis that `spool dev` or `spool bench` started: one server
/// or a cluster.
#[derive(Debug)]
pub enum PrivateRedis {
    /// One `redis-server`.
    One(RedisServer),
    /// A cluster of them.
    Cluster(RedisCluster),
}

impl PrivateRedis {
    /// The URL for `--redis` (a seed list for a cluster).
    pub fn url(&self) -> String {
        match self {
            PrivateRedis::One(s) => s.url(),
            PrivateRedis::Cluster(c) => c.url(),
        }
    }

    /// Shut it down: one server cleanly, a cluster's nodes by dropping it.
    pub fn stop(self) {
        match self {
            PrivateRedis::One(mut s) => s.stop(),
            PrivateRedis::Cluster(c) => drop(c),
        }
    }
}

/// How the cluster is laid out.
#[derive(Debug, Clone, Copy)]
pub struct ClusterShape {
    /// Masters (at least 1).
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

    /// `masters` masters and no replicas: what `spool bench` measures
    /// scaling on (a replica would only add its own CPU to the machine).
    pub fn masters_only(masters: usize, node_timeout: Duration, fsync: &'static str) -> Self {
        ClusterShape {
            masters,
            replicas: 0,
            node_timeout,
            fsync,
        }
    }
}

impl RedisCluster {
    /// Start the nodes under `dir` (one subdirectory each), join them, and
    /// wait until every node says `cluster_state:ok`.
    pub fn start(dir: &Path, shape: ClusterShape) -> Result<Self, RedisServerError> {
        let masters = shape.masters.max(1);
        let count = masters * (1 + shape.replicas);
        let mut nodes = Vec::with_capacity(count);
        let mut buses = Vec::with_capacity(count);
        for i in 0..count {
            let bus = free_port();
            let node_dir = dir.join(format!("node-{i}"));
            nodes.push(RedisServer::start_with(
                &node_dir,
                shape.fsync,
                &node_args(shape.node_timeout, bus),
            )?);
            buses.push(bus);
        }
        let cluster = RedisCluster {
            nodes,
            buses,
            masters,
        };
        let joined: Vec<(&RedisServer, u16)> = cluster
            .nodes
            .iter()
            .zip(cluster.buses.iter().copied())
            .collect();
        cluster_admin::join(&joined, masters).map_err(|reason| {
            cluster.failed(
                format!("joining the nodes failed: {reason}"),
                &cluster.nodes[0].dir().join("redis.log"),
            )
        })?;
        cluster.wait_ok(Duration::from_secs(30))?;
        Ok(cluster)
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

    /// Move `slot` and its keys to the master on node `to`, while clients
    /// keep running, `batch` keys per `MIGRATE` (see
    /// [`cluster_admin::move_slot`]). Returns how many keys moved; 0 when
    /// `to` already serves it.
    pub fn move_slot(&self, slot: u16, to: usize, batch: usize) -> Result<usize, String> {
        let target = &self.nodes[to];
        let map = cluster_admin::slot_map(target)?;
        let owner = map
            .iter()
            .find(|(first, last, _)| (*first..=*last).contains(&slot))
            .map(|(_, _, port)| *port)
            .ok_or_else(|| format!("no master serves slot {slot}"))?;
        if owner == target.port() {
            return Ok(0);
        }
        let by_port = |port: u16| self.nodes.iter().find(|n| n.port() == port);
        let from =
            by_port(owner).ok_or_else(|| format!("slot {slot}: owner :{owner} is not ours"))?;
        let mut masters: Vec<&RedisServer> =
            map.iter().filter_map(|(_, _, p)| by_port(*p)).collect();
        masters.push(target);
        masters.dedup_by_key(|n| n.port());
        cluster_admin::move_slot(slot, from, target, &masters, batch)
    }

    /// How many masters the cluster was created with.
    pub fn masters(&self) -> usize {
        self.masters
    }
}

/// The `redis-server` arguments of a cluster node with bus port `bus`.
fn node_args(node_timeout: Duration, bus: u16) -> Vec<String> {
    [
        "--cluster-enabled",
        "yes",
        "--cluster-config-file",
        "nodes.conf",
        "--cluster-port",
        &bus.to_string(),
        // A node learns its own address from the first node that meets
        // it; a one-master cluster meets no one, and would tell clients
        // its slots are at ":PORT".
        "--cluster-announce-ip",
        "127.0.0.1",
        "--cluster-node-timeout",
        &node_timeout.as_millis().to_string(),
        // A replica may take over however long ago it last heard its
        // master: in a small cluster losing a master must not stop it.
        "--cluster-replica-validity-factor",
        "0",
    ]
    .map(String::from)
    .to_vec()
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
