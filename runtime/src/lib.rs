//! Spool's host runtime.
//!
//! # Layout
//!
//! - [`sandbox`]: the only module that touches wasmtime. Engine, limits,
//!   per-job stores, host imports, trap → error mapping.
//! - [`plugins`]: read a plugin file, hash it, validate it (component, SDK
//!   version, allowed imports) and compile it through the sandbox.
//! - [`cli`] and [`config`]: the `spool` command and its parsed, validated
//!   settings. Nothing else sees raw arguments.

pub mod cli;
pub mod config;
pub mod kv;
pub mod plugins;
pub mod queue;
pub mod redis_server;
pub mod sandbox;
pub mod worker;
