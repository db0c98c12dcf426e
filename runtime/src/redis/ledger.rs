//! Exact per-tenant accounting of the bytes and keys a tenant holds in one
//! hash slot (its key-value store, its cached results), kept by the Lua
//! scripts that write those keys so that a quota is checked in the same
//! atomic step as the write. The Lua side is [`LUA`] (`ledger.lua`, a
//! prelude); this side reads a ledger for `spool tenants show`.

/// The ledger's Lua helpers, to put in front of a script that writes keys
/// it counts (see `ledger.lua` for the keys and their types).
pub const LUA: &str = include_str!("ledger.lua");

/// What a ledger charges now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Bytes: key lengths plus value lengths.
    pub bytes: u64,
    /// Keys.
    pub keys: u64,
}

/// Read the ledger under `base` (e.g. `spool:{kv:acme}`). Keys that expired
/// since the last write are still counted until a write sweeps them.
pub fn read(conn: &mut super::SyncConn, base: &str) -> redis::RedisResult<Usage> {
    // A ledger key of the wrong type answers an error in its place and
    // reads as empty; the next write resets it (ledger_guard).
    let (bytes, keys): (redis::RedisResult<Option<i64>>, redis::RedisResult<i64>) = redis::pipe()
        .ignore_errors()
        .cmd("HGET")
        .arg(format!("{base}#usage"))
        .arg("bytes")
        .cmd("HLEN")
        .arg(format!("{base}#sizes"))
        .query(conn)?;
    let positive = |n: i64| u64::try_from(n).unwrap_or(0);
    Ok(Usage {
        bytes: positive(bytes.ok().flatten().unwrap_or(0)),
        keys: positive(keys.unwrap_or(0)),
    })
}
