//! Tenants' quotas: fleet-wide defaults and per-tenant overrides, kept in
//! Redis so that every worker and client enforces the same numbers, and
//! changed with `spool tenants set` without a restart.
//!
//! - [`limits`]: what can be limited ([`Limit`]), the built-in defaults,
//!   and one tenant's effective [`Limits`] with where each value came from.
//! - [`store`]: the Redis keys (`PREFIX:{tenants}:defaults`,
//!   `PREFIX:{tenants}:t:TENANT`), reading and writing them.
//! - [`directory`]: a short-lived cache of effective limits for the
//!   worker's job threads, so that a host call does not read Redis twice.
//!
//! Where each limit is enforced: key-value bytes, keys and writes per
//! second in the key-value store's scripts (atomically with the write),
//! result-cache bytes in the cache's store script, the largest payload and
//! `max_attempts` in `enqueue.lua` (before anything is stored) and again by
//! the worker for jobs written with plain commands.

pub mod directory;
pub mod limits;
pub mod store;

pub use directory::Directory;
pub use limits::{Limit, Limits, Source};
pub use store::TenantStore;
