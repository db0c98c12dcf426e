//! A small pool of blocking Redis connections, for code that runs on the
//! worker's job threads (host calls, the result cache) rather than on the
//! async runtime: a thread takes an idle connection, uses it, and puts it
//! back. On a Redis Cluster each pooled connection is a cluster
//! connection (one socket per node, routed per command).

use super::conn::SyncConn;
use super::target::{Target, says_cluster};
use super::{RedisError, redact};
use crate::locks::lock;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// Blocking connections to one Redis, reused across calls.
pub struct SyncRedis {
    /// The URL without its password, for messages.
    shown: String,
    /// The URL, or the cluster's seed nodes.
    target: Target,
    /// How to open a connection, settled by the first one: a single URL
    /// may turn out to be a cluster node.
    opener: OnceLock<Opener>,
    idle: Mutex<Vec<SyncConn>>,
}

enum Opener {
    Single(redis::Client),
    Cluster(Box<redis::cluster::ClusterClient>),
}

/// Read and write timeout of a pooled connection.
const TIMEOUT: Duration = Duration::from_secs(2);

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
        let bad = |e: redis::RedisError| RedisError::BadUrl {
            url: shown.clone(),
            reason: e.to_string(),
        };
        let target = Target::parse(url)?;
        let opener = OnceLock::new();
        match &target {
            Target::One(one) => {
                redis::Client::open(one.as_str()).map_err(bad)?;
            }
            Target::Seeds(seeds) => {
                let client = cluster_client(seeds).map_err(bad)?;
                let _ = opener.set(Opener::Cluster(Box::new(client)));
            }
        }
        Ok(SyncRedis {
            shown,
            target,
            opener,
            idle: Mutex::new(Vec::new()),
        })
    }

    /// The URL without its password.
    pub fn url(&self) -> &str {
        &self.shown
    }

    /// A new connection of its own, outside the pool (for tools and tests
    /// that hold one).
    pub fn connection(&self) -> redis::RedisResult<SyncConn> {
        self.connect()
    }

    fn connect(&self) -> redis::RedisResult<SyncConn> {
        match self.opener.get() {
            Some(Opener::Single(client)) => single(client),
            Some(Opener::Cluster(client)) => cluster(client),
            None => self.first_connect(),
        }
    }

    /// The first connection of a single URL: a plain one, unless the
    /// server says it is a cluster node.
    fn first_connect(&self) -> redis::RedisResult<SyncConn> {
        let Target::One(url) = &self.target else {
            unreachable!("seed lists set their opener in new()")
        };
        let client = redis::Client::open(url.as_str())?;
        let mut conn = single(&client)?;
        let info: redis::RedisResult<String> = redis::cmd("INFO").arg("cluster").query(&mut conn);
        if !info.is_ok_and(|i| says_cluster(&i)) {
            let _ = self.opener.set(Opener::Single(client));
            return Ok(conn);
        }
        let client = cluster_client(std::slice::from_ref(url))?;
        let conn = cluster(&client)?;
        let _ = self.opener.set(Opener::Cluster(Box::new(client)));
        Ok(conn)
    }

    /// An idle connection (false) or a new one (true).
    fn take(&self) -> redis::RedisResult<(SyncConn, bool)> {
        let pooled = lock(&self.idle).pop();
        match pooled {
            Some(conn) => Ok((conn, false)),
            None => Ok((self.connect()?, true)),
        }
    }

    /// Keep `conn` for the next call if it served `result` well.
    fn give_back<T>(&self, conn: SyncConn, result: redis::RedisResult<T>) -> redis::RedisResult<T> {
        if result.is_ok() {
            lock(&self.idle).push(conn);
        }
        result
    }

    /// Run `f` on a pooled connection, once: for commands that must not be
    /// sent twice (a retry after a lost reply would apply them twice).
    pub fn once<T>(
        &self,
        f: impl FnOnce(&mut SyncConn) -> redis::RedisResult<T>,
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
        f: impl Fn(&mut SyncConn) -> redis::RedisResult<T>,
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

fn single(client: &redis::Client) -> redis::RedisResult<SyncConn> {
    let conn = client.get_connection_with_timeout(TIMEOUT)?;
    let _ = conn.set_read_timeout(Some(TIMEOUT));
    let _ = conn.set_write_timeout(Some(TIMEOUT));
    Ok(SyncConn::Single(conn))
}

fn cluster(client: &redis::cluster::ClusterClient) -> redis::RedisResult<SyncConn> {
    Ok(SyncConn::Cluster(Box::new(client.get_connection()?)))
}

fn cluster_client(seeds: &[String]) -> redis::RedisResult<redis::cluster::ClusterClient> {
    super::connect::cluster_builder(seeds, Some(TIMEOUT)).build()
}

impl SyncRedis {
    /// Every key matching `pattern`, a batch (one `SCAN` call) at a time,
    /// on every master of a cluster (each master's own `SCAN` cursor).
    pub fn scan(
        &self,
        pattern: &str,
        count: usize,
        mut each: impl FnMut(Vec<String>) -> redis::RedisResult<()>,
    ) -> redis::RedisResult<()> {
        use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
        let (mut conn, _) = self.take()?;
        let masters: Vec<Option<(String, u16)>> = match &mut conn {
            SyncConn::Single(_) => vec![None],
            SyncConn::Cluster(c) => {
                let slots = redis::ConnectionLike::req_command(
                    &mut **c,
                    &redis::cmd("CLUSTER").arg("SLOTS").clone(),
                )?;
                super::nodes::master_addrs(slots)
                    .into_iter()
                    .map(Some)
                    .collect()
            }
        };
        for master in masters {
            let mut cursor = 0u64;
            loop {
                let mut cmd = redis::cmd("SCAN");
                cmd.arg(cursor)
                    .arg("MATCH")
                    .arg(pattern)
                    .arg("COUNT")
                    .arg(count);
                let reply = match (&mut conn, &master) {
                    (SyncConn::Cluster(c), Some((host, port))) => {
                        let to = SingleNodeRoutingInfo::ByAddress {
                            host: host.clone(),
                            port: *port,
                        };
                        c.route_command(&cmd, RoutingInfo::SingleNode(to))
                    }
                    (conn, _) => redis::ConnectionLike::req_command(conn, &cmd),
                };
                let (next, keys): (u64, Vec<String>) = redis::from_redis_value(reply?)?;
                each(keys)?;
                cursor = next;
                if cursor == 0 {
                    break;
                }
            }
        }
        self.give_back(conn, Ok(()))
    }
}
