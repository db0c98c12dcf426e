//! Cluster administration by plain commands, the way `redis-cli --cluster`
//! does it, so that a private cluster needs `redis-server` alone and may
//! have any number of masters (`redis-cli --cluster create` refuses fewer
//! than 3, and `spool bench` measures 1, 2 and 3):
//!
//! - [`join`]: give each master its share of the 16384 slots and its own
//!   config epoch, introduce every node to the first (`CLUSTER MEET`, with
//!   the bus port, which is not port + 10000 here), and make the rest
//!   replicas;
//! - [`move_slot`]: migrate one slot's keys from one master to another
//!   while clients keep running (`SETSLOT … IMPORTING/MIGRATING`,
//!   `MIGRATE`, `SETSLOT … NODE`), as a reshard does.

use super::server::RedisServer;
use std::time::{Duration, Instant};

/// Every slot of a cluster.
pub const SLOTS: u16 = 16384;

/// How long gossip may take to introduce every node to every other.
const GOSSIP: Duration = Duration::from_secs(30);

fn conn(node: &RedisServer) -> Result<redis::Connection, String> {
    redis::Client::open(node.url())
        .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(2)))
        .map_err(|e| format!("node 127.0.0.1:{} does not answer: {e}", node.port()))
}

fn run<T: redis::FromRedisValue>(
    node: &RedisServer,
    cmd: &mut redis::Cmd,
    what: &str,
) -> Result<T, String> {
    cmd.query(&mut conn(node)?)
        .map_err(|e| format!("{what} on 127.0.0.1:{} failed: {e}", node.port()))
}

/// The slots master `i` of `masters` serves: an even share, in order.
pub fn share(i: usize, masters: usize) -> std::ops::Range<u16> {
    let slots = usize::from(SLOTS);
    let at = |k: usize| u16::try_from(k * slots / masters).unwrap_or(SLOTS);
    at(i)..at(i + 1)
}

/// Join `nodes` into one cluster: the first `masters` serve the slots, the
/// rest replicate them in turn (node `masters + k` follows master
/// `k % masters`). Each node must run with `cluster-enabled yes` and know
/// no other node yet.
pub fn join(nodes: &[(&RedisServer, u16)], masters: usize) -> Result<(), String> {
    let ids = nodes
        .iter()
        .map(|(n, _)| run(n, redis::cmd("CLUSTER").arg("MYID"), "CLUSTER MYID"))
        .collect::<Result<Vec<String>, _>>()?;
    for (i, (node, _)) in nodes.iter().enumerate().take(masters) {
        // Distinct epochs before meeting: otherwise the nodes settle
        // their collisions one by one, which takes seconds.
        run::<()>(
            node,
            redis::cmd("CLUSTER").arg("SET-CONFIG-EPOCH").arg(i + 1),
            "CLUSTER SET-CONFIG-EPOCH",
        )?;
        let mut add = redis::cmd("CLUSTER");
        add.arg("ADDSLOTS");
        for slot in share(i, masters) {
            add.arg(slot);
        }
        run::<()>(node, &mut add, "CLUSTER ADDSLOTS")?;
    }
    let (first, _) = nodes[0];
    for (node, bus) in &nodes[1..] {
        let mut meet = redis::cmd("CLUSTER");
        meet.arg("MEET").arg("127.0.0.1").arg(node.port()).arg(*bus);
        run::<()>(first, &mut meet, "CLUSTER MEET")?;
    }
    for (k, (node, _)) in nodes.iter().enumerate().skip(masters) {
        let master = &ids[(k - masters) % masters];
        until(GOSSIP, || {
            run::<()>(
                node,
                redis::cmd("CLUSTER").arg("REPLICATE").arg(master),
                "CLUSTER REPLICATE",
            )
        })?;
    }
    Ok(())
}

/// Call `step` until it succeeds or `limit` passes; the last error then.
fn until<T>(limit: Duration, mut step: impl FnMut() -> Result<T, String>) -> Result<T, String> {
    let started = Instant::now();
    loop {
        match step() {
            Ok(done) => return Ok(done),
            Err(e) if started.elapsed() >= limit => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// Who serves what, as `node` sees it: `(first slot, last slot, master
/// port)` for every range of `CLUSTER SLOTS`.
pub fn slot_map(node: &RedisServer) -> Result<Vec<(u16, u16, u16)>, String> {
    let slots: redis::Value = run(node, redis::cmd("CLUSTER").arg("SLOTS"), "CLUSTER SLOTS")?;
    Ok(super::nodes::slot_ranges(slots)
        .into_iter()
        .map(|(first, last, _, port)| (first, last, port))
        .collect())
}

/// Move `slot` with its keys from master `from` to master `to`, `batch`
/// keys per `MIGRATE`, while clients keep using it: during the move the
/// source answers `ASK` for keys it no longer has and the target serves
/// them to clients that say `ASKING`; at the end every master is told the
/// new owner, and clients get `MOVED`. `every` are all the masters (each
/// must learn the owner). Returns how many keys moved.
pub fn move_slot(
    slot: u16,
    from: &RedisServer,
    to: &RedisServer,
    every: &[&RedisServer],
    batch: usize,
) -> Result<usize, String> {
    let id = |n: &RedisServer| run::<String>(n, redis::cmd("CLUSTER").arg("MYID"), "CLUSTER MYID");
    let (from_id, to_id) = (id(from)?, id(to)?);
    let setslot = |n: &RedisServer, state: &str, node: &str| {
        run::<()>(
            n,
            redis::cmd("CLUSTER")
                .arg("SETSLOT")
                .arg(slot)
                .arg(state)
                .arg(node),
            "CLUSTER SETSLOT",
        )
    };
    setslot(to, "IMPORTING", &from_id)?;
    setslot(from, "MIGRATING", &to_id)?;
    let mut moved = 0;
    loop {
        let keys: Vec<Vec<u8>> = run(
            from,
            redis::cmd("CLUSTER")
                .arg("GETKEYSINSLOT")
                .arg(slot)
                .arg(batch),
            "CLUSTER GETKEYSINSLOT",
        )?;
        if keys.is_empty() {
            break;
        }
        let mut migrate = redis::cmd("MIGRATE");
        migrate
            .arg("127.0.0.1")
            .arg(to.port())
            .arg("")
            .arg(0)
            .arg(5000)
            .arg("KEYS")
            .arg(&keys);
        run::<()>(from, &mut migrate, "MIGRATE")?;
        moved += keys.len();
    }
    // The target first, so that it owns the slot before the source points
    // clients at it.
    setslot(to, "NODE", &to_id)?;
    setslot(from, "NODE", &to_id)?;
    for node in every {
        setslot(node, "NODE", &to_id)?;
    }
    Ok(moved)
}

#[cfg(test)]
mod tests {
    use super::{SLOTS, share};

    #[test]
    fn shares_cover_every_slot_once() {
        for masters in 1..=5 {
            let mut next = 0;
            for i in 0..masters {
                let r = share(i, masters);
                assert_eq!(r.start, next, "{masters} masters: share {i}");
                assert!(r.end > r.start);
                next = r.end;
            }
            assert_eq!(next, SLOTS, "{masters} masters");
        }
    }
}
