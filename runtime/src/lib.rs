//! Spool's host runtime.
//!
//! # Layout
//!
//! From the ground up; each module imports only from the ones above it in
//! this list (`scripts/check-layout.py` keeps it so):
//!
//! - [`ids`]: plugin names, version digests, the clock. Imports nothing.
//! - [`locks`]: poison-tolerant locking. Imports nothing.
//! - [`metrics`]: a worker's counters and histograms, rendered for
//!   Prometheus. Imports only [`locks`].
//! - [`redis`]: connections (async and blocking), URL redaction, error
//!   classification, reply decoding, a private `redis-server`.
//! - [`sandbox`]: the only module that touches wasmtime. Engine, limits,
//!   per-job stores, host imports (it defines the key-value trait they
//!   call), trap → error mapping. No Redis.
//! - [`tenants`]: the tenants' quotas in Redis (fleet defaults, per-tenant
//!   overrides) and a short-lived cache of them for the job threads.
//! - [`kv`]: the tenant-scoped key-value stores behind the `kv` import.
//! - [`plugins`]: read, hash, validate and compile a plugin through the
//!   sandbox; the registry of loaded versions, the directory scan and
//!   watcher, the artifact cache. Knows nothing of queues.
//! - [`deploy`]: the fleet store in Redis — plugin versions, history,
//!   pins (deploy, rollback), events and worker reports. Knows nothing of
//!   wasm or queues.
//! - [`cache`]: the content-hash result cache — key recipe, a memory tier
//!   in front of Redis, single flight, purges, counters. Knows nothing of
//!   wasm or queues.
//! - [`queue`]: the Redis job queue — keys, Lua scripts, enqueue, claim,
//!   ack, leases, delays, dead letters, records. Knows nothing of wasm.
//! - [`tokens`]: tenant tokens for the HTTP API — hashed in Redis, with
//!   scopes, expiry and revocation.
//! - [`worker`]: the only place that joins queue, plugins, cache and
//!   sandbox: claim → run → ack, with heartbeats and a graceful stop.
//! - [`api`]: `spool serve`, the HTTP front door: tenant tokens checked on
//!   every route, the same library calls as the CLI.
//! - [`cli`] and [`config`]: the `spool` command and its parsed, validated
//!   settings. Nothing else sees raw arguments.

pub mod api;
pub mod cache;
pub mod cli;
pub mod config;
pub mod deploy;
pub mod ids;
pub mod kv;
pub mod locks;
pub mod metrics;
pub mod plugins;
pub mod queue;
pub mod redis;
pub mod sandbox;
pub mod tenants;
pub mod tokens;
pub mod worker;
