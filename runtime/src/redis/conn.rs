//! One connection type for a standalone Redis and a Redis Cluster, async
//! ([`Conn`]) and blocking ([`SyncConn`]), so that the queue, the fleet
//! store, the cache and the key-value store are written once. Both send
//! commands and pipelines unchanged; on a cluster a command goes to the
//! master of its first key's slot (a script's, of its first `KEYS` entry)
//! and a pipeline to the slot of its keyed commands, which must all share
//! one slot: every multi-key operation of ours keeps its keys under one
//! `{hash tag}` for that reason (docs/queue.md, "Keys").
//!
//! The cluster client follows `MOVED` and `ASK`, and retries `TRYAGAIN`
//! and `CLUSTERDOWN` with a bounded backoff (see [`super::connect`]), so a
//! slot migration or a failover shows up as latency, not as errors.

use super::healing::HealingCluster;
use redis::aio::ConnectionManager;
use redis::cluster::ClusterConnection as SyncCluster;
use redis::{Cmd, Pipeline, RedisFuture, RedisResult, Value};

/// An async connection to one server or to a cluster. Cheap to clone;
/// clones multiplex over the same sockets.
#[derive(Clone)]
pub enum Conn {
    /// A standalone server (or one node reached without cluster mode).
    Single(ConnectionManager),
    /// A Redis Cluster: one connection per node, routed per command, opened
    /// anew after every node was lost ([`HealingCluster`]).
    Cluster(HealingCluster),
}

impl redis::aio::ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.current().1.get_db(),
        }
    }
}

/// A blocking connection to one server or to a cluster.
pub enum SyncConn {
    /// A standalone server.
    Single(redis::Connection),
    /// A Redis Cluster.
    Cluster(Box<SyncCluster>),
}

impl redis::ConnectionLike for SyncConn {
    fn req_packed_command(&mut self, cmd: &[u8]) -> RedisResult<Value> {
        match self {
            SyncConn::Single(c) => c.req_packed_command(cmd),
            SyncConn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    /// On a cluster, a transaction (`MULTI`…`EXEC`, one slot) goes whole
    /// to its slot's master; any other pipeline goes one command at a
    /// time, each to its own key's master. The blocking cluster client
    /// would fail a whole pipeline for one command's error (a key of the
    /// wrong type), where a server answers that error in its place; the
    /// pipelines sent this way are short (a read of two or three keys).
    fn req_packed_commands(
        &mut self,
        cmd: &[u8],
        offset: usize,
        count: usize,
    ) -> RedisResult<Vec<Value>> {
        match self {
            SyncConn::Single(c) => c.req_packed_commands(cmd, offset, count),
            SyncConn::Cluster(c) if offset > 0 => c.req_packed_commands(cmd, offset, count),
            SyncConn::Cluster(c) => one_by_one(c, cmd, count),
        }
    }

    fn req_command(&mut self, cmd: &Cmd) -> RedisResult<Value> {
        match self {
            SyncConn::Single(c) => c.req_command(cmd),
            SyncConn::Cluster(c) => c.req_command(cmd),
        }
    }

    fn supports_pipelining(&self) -> bool {
        true
    }

    fn get_db(&self) -> i64 {
        match self {
            SyncConn::Single(c) => c.get_db(),
            SyncConn::Cluster(c) => c.get_db(),
        }
    }

    fn check_connection(&mut self) -> bool {
        match self {
            SyncConn::Single(c) => c.check_connection(),
            SyncConn::Cluster(c) => c.check_connection(),
        }
    }

    fn is_open(&self) -> bool {
        match self {
            SyncConn::Single(c) => c.is_open(),
            SyncConn::Cluster(c) => c.is_open(),
        }
    }
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Conn::Single(_) => "Conn::Single",
            Conn::Cluster(_) => "Conn::Cluster",
        })
    }
}

impl std::fmt::Debug for SyncConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SyncConn::Single(_) => "SyncConn::Single",
            SyncConn::Cluster(_) => "SyncConn::Cluster",
        })
    }
}

/// Send the `count` packed commands of `packed` one at a time; a command's
/// own error (not a redirection, which the client follows, nor a lost
/// connection) is its reply, as in a pipeline.
fn one_by_one(conn: &mut SyncCluster, packed: &[u8], count: usize) -> RedisResult<Vec<Value>> {
    use redis::ConnectionLike;
    let mut replies = Vec::with_capacity(count);
    let mut rest = packed;
    for _ in 0..count {
        let len = packed_len(rest)?;
        let (one, tail) = rest.split_at(len);
        rest = tail;
        match conn.req_packed_command(one) {
            Ok(value) => replies.push(value),
            Err(e) => match (e.code(), e.is_io_error() || e.is_connection_dropped()) {
                (Some(code), false) => {
                    let line = format!("-{code} {}\r\n", e.detail().unwrap_or_default());
                    replies.push(redis::Parser::new().parse_value(line.as_bytes())?);
                }
                _ => return Err(e),
            },
        }
    }
    Ok(replies)
}

/// Length in bytes of the first packed command (a RESP array of bulk
/// strings) of `bytes`.
fn packed_len(bytes: &[u8]) -> RedisResult<usize> {
    let bad = || redis::RedisError::from((redis::ErrorKind::Client, "malformed packed command"));
    let line_end = |from: usize| -> RedisResult<usize> {
        bytes[from..]
            .windows(2)
            .position(|w| w == b"\r\n")
            .map(|p| from + p)
            .ok_or_else(bad)
    };
    let number = |from: usize, to: usize| -> RedisResult<usize> {
        std::str::from_utf8(&bytes[from..to])
            .ok()
            .and_then(|n| n.parse().ok())
            .ok_or_else(bad)
    };
    if bytes.first() != Some(&b'*') {
        return Err(bad());
    }
    let end = line_end(1)?;
    let items = number(1, end)?;
    let mut at = end + 2;
    for _ in 0..items {
        if bytes.get(at) != Some(&b'$') {
            return Err(bad());
        }
        let end = line_end(at + 1)?;
        at = end + 2 + number(at + 1, end)? + 2;
    }
    if at > bytes.len() {
        return Err(bad());
    }
    Ok(at)
}

#[cfg(test)]
mod tests {
    use super::packed_len;

    #[test]
    fn packed_commands_split_where_each_ends() {
        let mut pipe = redis::pipe();
        pipe.cmd("HGET").arg("k").arg("f\r\nx").cmd("PING");
        let packed = pipe.get_packed_pipeline();
        let first = packed_len(&packed).unwrap();
        assert_eq!(
            &packed[..first],
            &redis::cmd("HGET")
                .arg("k")
                .arg("f\r\nx")
                .get_packed_command()[..]
        );
        assert_eq!(packed_len(&packed[first..]).unwrap(), packed.len() - first);
        assert!(packed_len(b"*1\r\n$10\r\nab\r\n").is_err());
    }
}
