//! Spool's host runtime.
//!
//! # Layout
//!
//! - [`sandbox`]: the only module that touches wasmtime. Engine, limits,
//!   per-job stores, host imports, trap → error mapping.
//! - [`plugins`]: read a plugin file, hash it, validate it (component, SDK
//!   version, allowed imports) and compile it through the sandbox.
//! - [`queue`]: the Redis job queue — keys, Lua scripts, enqueue, claim,
//!   ack, leases, delays, dead letters, records. Knows nothing of wasm.
//! - [`deploy`]: the fleet store in Redis — plugin versions, history,
//!   pins (deploy, rollback) and worker reports. Knows nothing of wasm.
//! - [`cache`]: the content-hash result cache — key recipe, a memory tier
//!   in front of Redis, single flight, purges, counters. Knows nothing of
//!   wasm or queues.
//! - [`worker`]: the only place that joins queue, plugins and sandbox:
//!   claim → run → ack, with heartbeats and a graceful stop.
//! - [`kv`]: the tenant-scoped key-value store behind the `kv` import.
//! - [`redis_server`]: a private `redis-server` for `spool dev`, `spool
//!   bench` and the tests.
//! - [`cli`] and [`config`]: the `spool` command and its parsed, validated
//!   settings. Nothing else sees raw arguments.

pub mod cache;
pub mod cli;
pub mod config;
pub mod deploy;
pub mod kv;
pub mod plugins;
pub mod queue;
pub mod redis_server;
pub mod sandbox;
pub mod sync_redis;
pub mod worker;
