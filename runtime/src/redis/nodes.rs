//! The masters of a cluster, each addressable on its own, for the few
//! operations that are about a whole server rather than one key (`INFO`
//! for `spool bench`; the blocking pool's `SCAN` in redis/sync.rs reads
//! the same `CLUSTER SLOTS` through [`master_addrs`]). On a standalone
//! server there is one "master", the server.

use super::conn::Conn;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{Cmd, FromRedisValue, RedisResult, Value};

/// One master, to send commands to directly.
#[derive(Clone)]
pub struct Node {
    conn: Conn,
    /// `HOST:PORT` on a cluster; none for a standalone server.
    addr: Option<(String, u16)>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Node({})", self.name())
    }
}

impl Node {
    /// `HOST:PORT` of a cluster master, `server` otherwise.
    pub fn name(&self) -> String {
        match &self.addr {
            Some((host, port)) => format!("{host}:{port}"),
            None => "server".to_string(),
        }
    }

    /// Run `cmd` on this node (a keyed command must be about a key this
    /// node serves, or it answers `MOVED`).
    pub async fn query<T: FromRedisValue>(&mut self, cmd: &Cmd) -> RedisResult<T> {
        match (&mut self.conn, &self.addr) {
            (Conn::Cluster(c), Some((host, port))) => {
                let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                    host: host.clone(),
                    port: *port,
                });
                let (generation, mut conn) = c.current();
                let reply = conn.route_command(cmd.clone(), routing).await;
                c.after(generation, &reply);
                let value = reply?;
                Ok(redis::from_redis_value(value)?)
            }
            (conn, _) => cmd.query_async(conn).await,
        }
    }
}

/// The masters behind `conn`: from `CLUSTER SLOTS` on a cluster (each
/// range's first node is its master), the one server otherwise.
pub(crate) async fn masters(conn: &Conn) -> RedisResult<Vec<Node>> {
    let Conn::Cluster(cluster) = conn else {
        return Ok(vec![Node {
            conn: conn.clone(),
            addr: None,
        }]);
    };
    let mut c = Conn::Cluster(cluster.clone());
    let slots: Value = redis::cmd("CLUSTER")
        .arg("SLOTS")
        .query_async(&mut c)
        .await?;
    Ok(master_addrs(slots)
        .into_iter()
        .map(|addr| Node {
            conn: conn.clone(),
            addr: Some(addr),
        })
        .collect())
}

/// Each distinct master of a `CLUSTER SLOTS` reply, in slot order.
pub(crate) fn master_addrs(slots: Value) -> Vec<(String, u16)> {
    let mut out: Vec<(String, u16)> = Vec::new();
    for (_, _, host, port) in slot_ranges(slots) {
        if !out.iter().any(|(h, p)| *h == host && *p == port) {
            out.push((host, port));
        }
    }
    out
}

/// The ranges of a `CLUSTER SLOTS` reply (`[[start, end, [host, port, id,
/// …], replica…], …]`) as `(first slot, last slot, master host, master
/// port)`; a range it cannot read is left out.
pub(crate) fn slot_ranges(slots: Value) -> Vec<(u16, u16, String, u16)> {
    let Value::Array(ranges) = slots else {
        return Vec::new();
    };
    let int = |v: Value| match v {
        Value::Int(n) => u16::try_from(n).ok(),
        _ => None,
    };
    let mut out = Vec::new();
    for range in ranges {
        let Value::Array(parts) = range else { continue };
        let mut parts = parts.into_iter();
        let (first, last) = (parts.next().and_then(int), parts.next().and_then(int));
        let Some(Value::Array(master)) = parts.next() else {
            continue;
        };
        let mut it = master.into_iter();
        let host = it.next().and_then(super::value::text);
        let port = it.next().and_then(int);
        if let (Some(first), Some(last), Some(host), Some(port)) = (first, last, host, port) {
            out.push((first, last, host, port));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(host: &str, port: i64) -> Value {
        Value::Array(vec![
            Value::BulkString(host.as_bytes().to_vec()),
            Value::Int(port),
            Value::BulkString(b"id".to_vec()),
        ])
    }

    #[test]
    fn each_master_once_in_slot_order() {
        let range =
            |a, b, m: Value, r: Value| Value::Array(vec![Value::Int(a), Value::Int(b), m, r]);
        let slots = Value::Array(vec![
            range(0, 5460, node("127.0.0.1", 7000), node("127.0.0.1", 7003)),
            range(
                5461,
                10922,
                node("127.0.0.1", 7001),
                node("127.0.0.1", 7004),
            ),
            range(
                10923,
                12000,
                node("127.0.0.1", 7002),
                node("127.0.0.1", 7005),
            ),
            range(
                12001,
                16383,
                node("127.0.0.1", 7002),
                node("127.0.0.1", 7005),
            ),
        ]);
        assert_eq!(
            master_addrs(slots),
            vec![
                ("127.0.0.1".to_string(), 7000),
                ("127.0.0.1".to_string(), 7001),
                ("127.0.0.1".to_string(), 7002),
            ]
        );
    }
}
