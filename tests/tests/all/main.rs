//! Spool's end-to-end tests: one binary, one module per topic. Every test
//! runs real components built from `plugins/` by `tests/build.rs`.
//!
//! The rules the suite keeps (issue 10):
//! - a promise in the README or docs/ comes with a test that asserts the
//!   documented value (message, exit code, count, attempts), never only "ok";
//! - every wait has a deadline and fails saying what it saw;
//! - timing is decided by conditions, not sleeps, and no assertion is on
//!   speed (that is for `spool bench` and criterion);
//! - the `spool` binary runs without the caller's `SPOOL_*` settings
//!   (`command::spool_command`).

mod api;
mod api_admin;
mod api_bodies;
mod api_events;
mod api_matrix;
mod api_plugins;
mod api_tls;
mod artifacts;
mod cache;
mod cli;
mod cluster;
mod command;
mod dashboard;
mod deploys;
mod fairness;
mod faults;
mod handover;
mod hostile;
mod http;
mod limits;
mod linger;
mod loading;
mod manifests;
mod metrics;
mod plugins;
mod queue;
mod queue_cli;
mod quotas;
mod reliability;
mod reused_ids;
mod scripts;
mod sdk;
mod tenants;

/// The `spool` binary built from runtime/src/main.rs.
const SPOOL: &str = env!("CARGO_BIN_EXE_spool-under-test");

use spool_runtime::sandbox::{JobInput, JobRun, Limits};
use std::sync::Arc;

/// A job with a JSON payload, as `spool call` would make it.
fn json_job(payload: &str) -> JobInput {
    job("application/json", payload.as_bytes().to_vec())
}

fn job(content_type: &str, payload: Vec<u8>) -> JobInput {
    JobInput {
        id: "test-job".into(),
        tenant: "acme".into(),
        plugin: "fixture".into(),
        attempt: 1,
        content_type: content_type.into(),
        payload,
    }
}

/// Run `payload` on the named plugin with default limits and no config.
fn run(plugin: &str, payload: &str) -> JobRun {
    run_with(plugin, json_job(payload), &Limits::default(), &[])
}

fn run_with(plugin: &str, job: JobInput, limits: &Limits, config: &[(&str, &str)]) -> JobRun {
    let config = Arc::new(
        config
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    );
    spool_tests::plugin(plugin).run(job, limits, config)
}

/// The output of a successful run as JSON; panics with the failure otherwise.
fn output_json(run: &JobRun) -> serde_json::Value {
    match &run.result {
        Ok(bytes) => serde_json::from_slice(bytes).expect("output is JSON"),
        Err(failure) => panic!("expected success, got {failure:?}"),
    }
}
