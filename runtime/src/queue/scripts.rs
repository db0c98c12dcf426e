//! The queue's Lua scripts, each loaded once with the shared prelude
//! (`lua/lib.lua`) in front.

use crate::redis::script_with_prelude;
use redis::Script;

const PRELUDE: &str = include_str!("lua/lib.lua");

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
}

impl Scripts {
    pub fn load() -> Self {
        let with_prelude = |body| script_with_prelude(PRELUDE, body);
        Scripts {
            enqueue: with_prelude(include_str!("lua/enqueue.lua")),
            claim: with_prelude(include_str!("lua/claim.lua")),
            ack: with_prelude(include_str!("lua/ack.lua")),
            heartbeat: with_prelude(include_str!("lua/heartbeat.lua")),
            dead_retry: with_prelude(include_str!("lua/dead_retry.lua")),
            dead_purge: with_prelude(include_str!("lua/dead_purge.lua")),
            recover: with_prelude(include_str!("lua/recover.lua")),
        }
    }
}
