//! Plugin manifests (`NAME.toml` beside `NAME.wasm`): per-plugin limits,
//! config values and capabilities, picked up by the rescan; a bad manifest
//! never replaces what is serving.

use spool_runtime::queue::{Status, now_us};
use spool_runtime::worker::Registry;
use spool_tests::fleet::{Env, add_plugin};
use std::path::Path;
use std::sync::Arc;

fn serve(env: &Env, dir: &Path) -> (Arc<Registry>, spool_tests::fleet::TestWorker) {
    let config = env.worker_config(dir);
    let registry = Arc::new(
        Registry::new(
            spool_tests::sandbox().clone(),
            dir,
            config.capabilities.clone(),
        )
        .with_limits(config.limits.clone()),
    );
    registry.refresh();
    let worker = env.worker_on(config, Arc::clone(&registry));
    (registry, worker)
}

fn greeting(env: &Env) -> serde_json::Value {
    let record = env.wait(&env.enqueue("introspect", "{}"));
    assert_eq!(record.status, Some(Status::Succeeded), "{record:?}");
    let seen: serde_json::Value = serde_json::from_str(record.output.as_deref().unwrap()).unwrap();
    seen["greeting"].clone()
}

/// Rewrite a manifest so that the rescan sees a change even within the
/// file system's timestamp granularity (the size differs too).
fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

#[test]
fn manifest_config_reaches_the_handler_and_edits_are_picked_up() {
    let env = Env::new("manifest-config");
    let dir = env.subdir("plugins");
    add_plugin(&dir, "introspect", "introspect");
    write(
        &dir.join("introspect.toml"),
        "[config]\ngreeting = \"hi\"\n",
    );
    let (registry, _worker) = serve(&env, &dir);
    assert_eq!(greeting(&env), "hi");

    write(
        &dir.join("introspect.toml"),
        "[config]\ngreeting = \"hello again\"\n",
    );
    env.wait_for("the edited manifest", || greeting(&env) == "hello again");

    // A broken manifest is rejected, named, and the serving settings stay.
    write(
        &dir.join("introspect.toml"),
        // (top level: a key after [config] would be a config value)
        "timeuot = \"1s\"\n[config]\ngreeting = \"x\"\n",
    );
    env.wait_for("the rejection", || !registry.rejected().is_empty());
    let (path, why) = registry.rejected().remove(0);
    assert_eq!(path, dir.join("introspect.wasm"));
    assert!(
        why.contains("introspect.toml") && why.contains("timeuot"),
        "{why}"
    );
    assert_eq!(greeting(&env), "hello again");

    // Removing the manifest serves the plugin without one.
    std::fs::remove_file(dir.join("introspect.toml")).unwrap();
    env.wait_for("the manifest's removal", || greeting(&env).is_null());
}

#[test]
fn manifest_limits_apply_per_plugin() {
    let env = Env::new("manifest-limits");
    let dir = env.subdir("plugins");
    add_plugin(&dir, "spin", "spin");
    write(&dir.join("spin.toml"), "timeout = \"200ms\"\n");
    let (_registry, _worker) = serve(&env, &dir);
    let mut job = env.job("spin", "{}");
    job.max_attempts = 1;
    let started = now_us();
    let record = env.wait(&env.enqueue_job(job));
    assert_eq!(record.status, Some(Status::Dead));
    let error = record.error.unwrap();
    assert_eq!(error["kind"], "timeout");
    assert_eq!(
        error["limit_us"], 200_000,
        "the manifest's deadline, not the worker's 30 s"
    );
    assert!(now_us() - started < 25_000_000);
}

#[test]
fn manifest_capabilities_let_a_plugin_load() {
    let env = Env::new("manifest-caps");
    let dir = env.subdir("plugins");
    add_plugin(&dir, "opens_socket", "opens_socket");
    let (registry, _worker) = serve(&env, &dir);
    assert!(registry.names().is_empty());
    let (_, why) = registry.rejected().remove(0);
    assert!(why.contains("wasi:sockets"), "{why}");

    write(
        &dir.join("opens_socket.toml"),
        "[capabilities]\nnetwork = true\n",
    );
    env.wait_for("the plugin to load", || !registry.names().is_empty());
    assert!(registry.rejected().is_empty());
}
