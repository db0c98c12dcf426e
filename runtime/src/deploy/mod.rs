//! The fleet store: plugin versions kept in Redis, so that every worker on
//! every machine serves the same version and one rollback reaches them all.
//! Knows nothing of wasm or queues: workers validate and compile what it
//! hands them.
//!
//! - [`versions`]: the history, pins, deploys, rollbacks, forgetting;
//! - [`blobs`]: the versions' bytes, a slot per digest;
//! - [`history`]: what serves now, and what a rollback returns to;
//! - [`events`]: the stream workers block on (pin changes, cache purges);
//! - [`reports`]: what each worker says it serves;
//! - [`served`]: those reports and the pins, as rows per version served.
//!
//! # Keys
//!
//! Every key but the bytes starts with `PREFIX:{plugins}` (one Redis
//! Cluster slot, so each script's keys share it); the bytes are
//! `PREFIX:blob:{DIGEST}:NAME`, a slot per digest (see [`blobs`]). The
//! store is per prefix, not per queue: a deploy reaches the workers of
//! every queue.
//!
//! | key | type | what |
//! |---|---|---|
//! | `PREFIX:blob:{DIGEST}:NAME` | string | component bytes, content-addressed |
//! | `…:pinned` | hash | NAME → the version entry every worker serves |
//! | `…:history:NAME` | list | version entries (JSON), newest first, capped |
//! | `…:names` | set | plugins with a history |
//! | `…:events` | stream | an entry per pin change (or result-cache purge); workers block on it |
//! | `…:keep` | string | versions kept per plugin (default 10) |
//! | `…:workers` | zset | worker id → time of its last report (ms) |
//! | `…:worker:ID` | string | the worker's report (JSON), expires |
//!
//! # Pins and directories
//!
//! A deploy or a rollback *pins* a version: every worker serves the pinned
//! version whatever its directory holds, so the fleet agrees. A version a
//! worker loads from its directory is recorded in the history (bytes
//! included, so it can be rolled back to) but pinned nowhere.
//! [`FleetStore::unpin`] hands the plugin back to the directories.

mod blobs;
mod error;
mod events;
mod history;
mod model;
mod reports;
mod served;
mod versions;

pub use error::DeployError;
pub use events::Event;
pub use history::current;
pub use model::{Action, VersionEntry, WedgedJob, WorkerStatus, has_seen};
pub use served::{Served, refusal_tenant, served};
pub use versions::Recorded;

use crate::redis::{AsyncRedis, RedisError};
use std::sync::Arc;
use std::time::Duration;

/// Largest component the store takes (Redis strings go to 512 MiB, but a
/// plugin this size is already a mistake).
pub const MAX_DEPLOY_BYTES: u64 = 64 << 20;

/// Versions kept per plugin unless `PREFIX:{plugins}:keep` says otherwise
/// (`spool plugins --keep-versions`); `put.lua` is told this value.
pub const DEFAULT_KEEP: u32 = 10;

/// How long a worker's report outlives its last refresh.
pub const REPORT_TTL: Duration = Duration::from_secs(30);

/// A handle on the fleet store. Cheap to clone.
#[derive(Clone)]
pub struct FleetStore {
    redis: AsyncRedis,
    /// `PREFIX`, for the bytes' keys.
    prefix: String,
    /// `PREFIX:{plugins}`, every other key's start.
    keys: String,
    scripts: Arc<Scripts>,
}

/// The store's scripts, as source: they run by `EVAL` at most once each
/// ([`AsyncRedis::eval_once`]), since a deploy, a rollback or a forget
/// sent twice would answer for the second send (`unchanged`, `conflict`,
/// nothing to delete) and hide what the first did.
#[derive(Debug)]
struct Scripts {
    put: String,
    unpin: String,
    forget: String,
}

impl Scripts {
    fn load() -> Self {
        const PRELUDE: &str = include_str!("lua/lib.lua");
        let with_prelude = |body: &str| format!("{PRELUDE}\n{body}");
        Scripts {
            put: with_prelude(include_str!("lua/put.lua")),
            unpin: with_prelude(include_str!("lua/unpin.lua")),
            forget: with_prelude(include_str!("lua/forget.lua")),
        }
    }
}

impl std::fmt::Debug for FleetStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FleetStore")
            .field("url", &self.redis.url())
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

impl FleetStore {
    /// Connect to the store under `prefix` at `url`.
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, DeployError> {
        Ok(FleetStore {
            redis: AsyncRedis::open(url).await?,
            prefix: prefix.to_string(),
            keys: format!("{prefix}:{{plugins}}"),
            scripts: Arc::new(Scripts::load()),
        })
    }

    /// The store under `prefix` over a connection opened already (the
    /// HTTP API shares its queue's).
    pub fn over(redis: AsyncRedis, prefix: &str) -> Self {
        FleetStore {
            redis,
            prefix: prefix.to_string(),
            keys: format!("{prefix}:{{plugins}}"),
            scripts: Arc::new(Scripts::load()),
        }
    }

    /// `PREFIX:{plugins}`.
    pub fn key_prefix(&self) -> &str {
        &self.keys
    }

    fn key(&self, suffix: &str) -> String {
        format!("{}:{suffix}", self.keys)
    }

    fn error(&self, op: &'static str, source: redis::RedisError) -> DeployError {
        DeployError::Redis(self.redis.error(op, source))
    }

    fn protocol(op: &'static str, reply: impl std::fmt::Display) -> DeployError {
        DeployError::Redis(RedisError::Protocol {
            op,
            reply: reply.to_string(),
        })
    }
}
