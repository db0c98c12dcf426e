//! The Redis job queue: keys, Lua scripts, and the operations on them —
//! enqueue, claim, ack, heartbeat, delay, dead letters, records, fair share
//! between tenants. Knows nothing of wasm.
//!
//! # Keys
//!
//! Each tenant's jobs in a queue live in a hash slot of their own,
//! `PREFIX:{QUEUE/TENANT}` (written `T`); the queue keeps the set of tenants
//! with work in its slot, `PREFIX:{QUEUE}` (written `Q`). No script touches
//! two slots, so a Redis Cluster can spread tenants over its nodes.
//!
//! | key | type | what |
//! |---|---|---|
//! | `T:job:ID` | hash | the envelope and the record of job ID |
//! | `T:ready:high` / `normal` / `low` | list | ids ready to run (LPUSH in, RPOP out) |
//! | `T:group:G`, `T:groups`, `T:held:G`, `T:gpaused` | list, zset, set, set | groups: waiting jobs in order, the groups' rotation, the jobs holding a group's slots, paused groups |
//! | `T:delayed` | zset | ids by due time (µs): `--delay`, `--at`, retry backoff |
//! | `T:leases` | zset | running ids by lease expiry (µs); its size is what the tenant's cap counts |
//! | `T:recent` | list | succeeded ids, newest at the head, capped (`--keep-succeeded`, trimmed a tenth at a time): older records are deleted; each entry is a success not yet in `T:stats` (see [`fold`]) |
//! | `T:kept` | list | the same, of workers before 2026-12-05 (whose acks also count each success in `T:stats`) |
//! | `Q:sweep`, `Q:reap`, `Q:fold` | strings | the fleet's turns at the sweep, at deleting gone waiters' inboxes and at folding quiet tenants' counts (one worker each at a time) |
//! | `T:dead` | zset | dead-letter ids by time of death, capped |
//! | `T:bucket`, `T:paused`, `T:in`, `T:timer` | | rate-limit tokens, a pause, the "has work" bookkeeping |
//! | `T:done:ID` | list | completion notice for `enqueue --wait` |
//! | `T:idem:KEY` | string | idempotency key → job id |
//! | `T:stats` | hash | counters: succeeded, dead, retried; `rr`, `seq` |
//! | `Q:ready`, `Q:timers`, `Q:seq` | zsets | tenants to visit now, tenants to visit later, every tenant's last announcement |
//! | `Q:wake` | list | at most one token (`t:TENANT` or `1`); idle workers block on it |
//! | `Q:wake:r:W`, `Q:idle`, `Q:inboxes` | list, zsets | an idle waiter's own list (its timer's tokens, jobs handed to it), the waiters registered for a hand-over (see [`idle`]) and every own list, until when its waiter may leave a job there unread (the sweep deletes it after: `lua/ring/reap.lua`) |
//!
//! # Delivery
//!
//! At least once. `claim.lua` pops ids, bumps each job's fencing `token` and
//! `attempt`, and records a lease; the worker renews leases with
//! `heartbeat.lua`; `ack.lua` applies an outcome only under the same token
//! while the job is still `running`. Any claim first requeues jobs whose
//! lease expired and promotes due delayed jobs of the tenant it visits, so
//! no scheduler process is needed and a killed worker's jobs run again once
//! its leases lapse.
//!
//! # Fair share
//!
//! [`announce`]: how a tenant enters and leaves the set of tenants with
//! work; [`rotation`]: how a worker's claims take turns between them;
//! `claim.lua`: caps, rates and groups, atomically in the tenant's slot.

mod announce;
mod cancel;
mod chunk;
mod claiming;
mod clock;
mod error;
mod fold;
mod idle;
mod inboxes;
mod loading;
mod logs;
mod migrate;
mod model;
mod msgpack;
mod names;
mod ops;
mod pause;
mod pipeline;
mod progress;
mod recent;
mod record;
mod records;
mod reply;
mod rotation;
mod run;
mod scripts;
mod state;
mod sweep;
mod totals;
mod wake;
mod why;

pub use cancel::Cancelled;
pub use error::QueueError;
pub use model::{
    ClaimedJob, DEFAULT_CONTENT_TYPE, DEFAULT_MAX_ATTEMPTS, NewJob, Next, Outcome, Priority, Seen,
};
pub use names::{check_group, check_prefix, check_queue, tenant_keys};
#[cfg(test)]
pub(crate) use ops::kept_margin_s;
pub use ops::{Enqueued, LIMITS_FRESH};
pub use progress::ProgressReport;
pub use recent::JobSummary;
pub use record::{ErrorRecord, Field, JobRecord, Json, RecordUpdate, Status, cache_status};
pub use records::{DeadEntry, Glance, QueueStats};
pub use reply::Claim;
pub use run::RunField;
pub use state::{GroupState, TenantState};
pub use sweep::Swept;
pub use totals::TOTALS_EVERY;
pub use wake::{WakeWait, Woke};

use crate::redis::Conn;
use crate::redis::{AsyncRedis, RedisError};
use scripts::Scripts;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Settings shared by everything that talks to one queue.
#[derive(Debug, Clone)]
pub struct QueueConfig {
    /// Redis URL, e.g. `redis://127.0.0.1:6379`.
    pub url: String,
    /// First part of every key.
    pub prefix: String,
    /// Queue name: the hash tag of every key.
    pub queue: String,
    /// TTL of finished job records.
    pub record_ttl: Duration,
    /// TTL of dead-lettered job records.
    pub dead_ttl: Duration,
    /// Most dead letters kept; the oldest are dropped beyond it.
    pub dead_cap: u64,
    /// Succeeded records kept per tenant; the oldest are deleted beyond
    /// it, in batches once a tenth more (at most 100) piled up (ack.lua,
    /// `keep_newest`; `None`: only `record_ttl` limits them).
    pub keep_succeeded: Option<u64>,
    /// When an enqueue or an ack counts as done: once the master has it,
    /// or once a replica has it too (docs/queue.md, "Durability").
    pub durability: Durability,
}

/// When Redis' answer to a write is enough.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// The master applied it (Redis' own default): a failover before the
    /// master sent it to its replica loses it.
    #[default]
    Master,
    /// The master applied it and at least this many replicas confirmed it
    /// (`WAIT`, within [`REPLICA_WAIT`]): a failover to one of them keeps
    /// it. Not confirmed in time is a retryable error, and the write may
    /// or may not survive a failover.
    Replicated(u32),
}

/// How long an enqueue or an ack waits for its replicas
/// ([`Durability::Replicated`]).
pub const REPLICA_WAIT: Duration = Duration::from_secs(2);

/// Succeeded records kept per tenant by default: at 10,000 jobs/s a record
/// TTL alone would keep hundreds of millions.
pub const DEFAULT_KEEP_SUCCEEDED: u64 = 1_000;

impl QueueConfig {
    /// Defaults for `url`: prefix `spool`, queue `default`, records kept 24 h
    /// and at most 1,000 succeeded ones per tenant, dead letters 7 days and
    /// at most 10,000.
    pub fn new(url: impl Into<String>) -> Self {
        QueueConfig {
            url: url.into(),
            prefix: "spool".to_string(),
            queue: "default".to_string(),
            record_ttl: Duration::from_secs(24 * 3600),
            dead_ttl: Duration::from_secs(7 * 24 * 3600),
            dead_cap: 10_000,
            keep_succeeded: Some(DEFAULT_KEEP_SUCCEEDED),
            durability: Durability::Master,
        }
    }

    /// `PREFIX:{QUEUE}`, the start of the queue's own keys (the set of
    /// tenants with work); each tenant's jobs are under
    /// [`tenant_keys`]`(prefix, queue, tenant)`.
    pub fn key_prefix(&self) -> String {
        format!("{}:{{{}}}", self.prefix, self.queue)
    }
}

/// A handle on one queue. Cheap to clone; clones share the connection.
#[derive(Clone)]
pub struct Queue {
    inner: Arc<Inner>,
    redis: AsyncRedis,
    /// This handle's claims tidy the ready set after they return, in the
    /// background ([`Queue::settling_in_background`]; a worker's do).
    background_settle: bool,
    /// The most bytes of records one claim takes ([`Queue::with_claim_bytes`]).
    claim_bytes: usize,
}

/// The most bytes of job records one claim takes by default: a claim of
/// `hello` jobs (~300 bytes each) never comes near it, a claim of jobs
/// with megabyte payloads stops after a few. Redis builds a claim's reply
/// in its own memory, a few times its size while the call runs.
pub const DEFAULT_CLAIM_BYTES: usize = 4 << 20;

struct Inner {
    config: QueueConfig,
    keys: String,
    scripts: &'static Scripts,
    /// Redis refused the function library (no `FUNCTION` before 7.0, or an
    /// ACL): the scripts go as `EVALSHA` (queue/scripts.rs).
    eval_only: std::sync::atomic::AtomicBool,
    /// Redis refused `BLMPOP` (before 7.0, or an ACL): idle waits read one
    /// job handed over at a time (queue/wake.rs).
    no_blmpop: std::sync::atomic::AtomicBool,
    /// When this handle last loaded the library: pipelines that found it
    /// missing before then do not load it again.
    library_loaded: tokio::sync::Mutex<Option<std::time::Instant>>,
    round_trips: AtomicU64,
    /// Tenants' limits read for enqueues, for [`ops::LIMITS_FRESH`]: a
    /// client enqueueing one job at a time pays no extra round trip.
    limits: std::sync::Mutex<
        std::collections::HashMap<String, (std::time::Instant, crate::tenants::Limits)>,
    >,
    /// This handle's turns between tenants (a worker claims through one).
    rotation: std::sync::Mutex<rotation::Rotation>,
    /// The last claim was full and left work: the next pick wakes an idle
    /// worker for it.
    wake_next: std::sync::atomic::AtomicBool,
    /// The pick that rode along with the last claim, and when.
    next_pick: std::sync::Mutex<Option<(std::time::Instant, claiming::Picked)>>,
    /// The tenant the wake token that ended this handle's last wait named:
    /// the next claim visits it without a pick.
    hint: std::sync::Mutex<Option<String>>,
    /// The flag (`Q:on:MEMBER`) of the idle waiter this handle's last
    /// enqueue handed a job to: its next lone job goes to that waiter
    /// while the flag stands (enqueue.lua, `hand_over`).
    waiter: std::sync::Mutex<Option<String>>,
    /// Redis' clock less this host's (µs), as the last pick saw it.
    clock_offset_us: std::sync::atomic::AtomicI64,
    /// The lease of this handle's last claim (µs; 0 before any): how long
    /// an ack refused part-way gives its jobs' leases back for (ack.lua,
    /// `ARGV[8]`).
    lease_us: AtomicU64,
    /// Redis' clock as this handle's last enqueue that read it saw it, for
    /// the enqueues after it (see [`clock`]).
    enqueue_clock: clock::EnqueueClock,
    /// Tenants this handle named in `Q:seq` (see [`Queue::register`]).
    registered: std::sync::Mutex<std::collections::HashSet<String>>,
    /// When this handle's acks last refreshed each tenant's kept list's
    /// expiry (ack.lua `ARGV[7]`; see `Queue::kept_refresh`).
    kept_refreshed: std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>,
    /// This handle's part of the queue's totals (queue/totals.rs).
    totals: std::sync::Mutex<totals::Totals>,
    /// Held while a flush of them is on its way, so that a worker's last
    /// flush waits for it.
    totals_flush: tokio::sync::Mutex<()>,
    /// When this handle last acked each tenant (see
    /// `Queue::limits_to_refresh`).
    acked: std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("url", &self.redis.url())
            .field("keys", &self.inner.keys)
            .finish()
    }
}

impl Queue {
    /// Connect. The connection reconnects by itself after Redis restarts;
    /// operations in between fail with a retryable [`crate::redis::RedisError::Unavailable`].
    pub async fn connect(config: QueueConfig) -> Result<Self, QueueError> {
        check_queue(&config.queue)
            .and_then(|()| check_prefix(&config.prefix))
            .map_err(|reason| QueueError::BadConfig { reason })?;
        let redis = AsyncRedis::open(&config.url).await?;
        Ok(Queue {
            inner: Arc::new(Inner {
                keys: config.key_prefix(),
                config,
                scripts: Scripts::get(),
                eval_only: std::sync::atomic::AtomicBool::new(false),
                no_blmpop: std::sync::atomic::AtomicBool::new(false),
                library_loaded: tokio::sync::Mutex::new(None),
                round_trips: AtomicU64::new(0),
                limits: std::sync::Mutex::default(),
                rotation: std::sync::Mutex::default(),
                wake_next: std::sync::atomic::AtomicBool::new(false),
                next_pick: std::sync::Mutex::default(),
                hint: std::sync::Mutex::default(),
                waiter: std::sync::Mutex::default(),
                clock_offset_us: std::sync::atomic::AtomicI64::new(0),
                lease_us: AtomicU64::new(0),
                enqueue_clock: clock::EnqueueClock::default(),
                registered: std::sync::Mutex::default(),
                kept_refreshed: std::sync::Mutex::default(),
                totals: std::sync::Mutex::default(),
                totals_flush: tokio::sync::Mutex::new(()),
                acked: std::sync::Mutex::default(),
            }),
            redis,
            background_settle: false,
            claim_bytes: DEFAULT_CLAIM_BYTES,
        })
    }

    /// The settings this queue was opened with.
    pub fn config(&self) -> &QueueConfig {
        &self.inner.config
    }

    /// `PREFIX:{QUEUE}`: the queue's own keys.
    pub fn key_prefix(&self) -> &str {
        &self.inner.keys
    }

    /// The connection this queue uses (for read-only queries of tools such
    /// as `spool bench`; queue state changes go through the scripts).
    pub fn redis(&self) -> &AsyncRedis {
        &self.redis
    }

    /// Round trips to Redis made through this handle and its clones.
    pub fn round_trips(&self) -> u64 {
        self.inner.round_trips.load(Ordering::Relaxed)
    }

    /// Count one round trip made on this queue's behalf.
    pub fn count_round_trip(&self) {
        self.inner.round_trips.fetch_add(1, Ordering::Relaxed);
    }

    /// A connection for blocking commands: no response timeout. Failing
    /// to open one to the server this queue already reached is retryable.
    pub(crate) async fn blocking_connection(&self) -> Result<Conn, QueueError> {
        Ok(self
            .redis
            .blocking()
            .await
            .map_err(RedisError::as_unavailable)?)
    }

    /// Name a failed operation (connection trouble is retryable). After
    /// connection trouble the enqueues' reading of Redis' clock is
    /// dropped: a call sent while the connection is made again waits for
    /// it, and a reading sent then would be that much old (queue/clock.rs).
    pub(crate) fn error(&self, op: &'static str, source: redis::RedisError) -> QueueError {
        if crate::redis::is_connection_trouble(&source) {
            self.inner.enqueue_clock.forget();
        }
        QueueError::Redis(self.redis.error(op, source))
    }
}
