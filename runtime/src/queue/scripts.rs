//! The queue's Lua scripts, each loaded once with its prelude in front:
//! the tenant-slot scripts with `lua/lib.lua`, the queue-slot scripts that
//! keep the set of tenants with work with `lua/ring/prelude.lua`.

use crate::redis::script_with_prelude;
use redis::Script;

const PRELUDE: &str = include_str!("lua/lib.lua");
const RING_PRELUDE: &str = include_str!("lua/ring/prelude.lua");

/// Every script the queue runs.
#[derive(Debug)]
pub(crate) struct Scripts {
    pub enqueue: Script,
    pub claim: Script,
    pub ack: Script,
    pub heartbeat: Script,
    pub dead_retry: Script,
    pub dead_purge: Script,
    pub recover: Script,
    pub control: Script,
    pub stats: Script,
    pub adopt: Script,
    pub announce: Script,
    pub settle: Script,
    pub pick: Script,
}

impl Scripts {
    pub fn load() -> Self {
        let with_prelude = |body| script_with_prelude(PRELUDE, body);
        let ring = |body| script_with_prelude(RING_PRELUDE, body);
        Scripts {
            enqueue: with_prelude(include_str!("lua/enqueue.lua")),
            claim: with_prelude(include_str!("lua/claim.lua")),
            ack: with_prelude(include_str!("lua/ack.lua")),
            heartbeat: with_prelude(include_str!("lua/heartbeat.lua")),
            dead_retry: with_prelude(include_str!("lua/dead_retry.lua")),
            dead_purge: with_prelude(include_str!("lua/dead_purge.lua")),
            recover: with_prelude(include_str!("lua/recover.lua")),
            control: with_prelude(include_str!("lua/control.lua")),
            stats: with_prelude(include_str!("lua/stats.lua")),
            adopt: with_prelude(include_str!("lua/adopt.lua")),
            announce: ring(include_str!("lua/ring/announce.lua")),
            settle: ring(include_str!("lua/ring/settle.lua")),
            pick: ring(include_str!("lua/ring/pick.lua")),
        }
    }
}
