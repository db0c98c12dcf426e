//! Handlers that try to reach outside the sandbox get nothing.

use super::{output_json, run};
use spool_runtime::plugins::{self, Capabilities, LoadError};
use spool_runtime::sandbox::Limits;
use std::sync::Arc;

#[test]
fn host_files_are_not_reachable() {
    let out = output_json(&run("reads_file", "{}"));
    assert!(
        out["etc_passwd"].as_str().unwrap().starts_with("denied:"),
        "{out}"
    );
    assert!(
        out["root_dir"].as_str().unwrap().starts_with("denied:"),
        "{out}"
    );
}

#[test]
fn host_environment_is_empty() {
    let out = output_json(&run("reads_env", "{}"));
    assert_eq!(out, serde_json::json!({"vars": [], "path": null}));
}

#[test]
fn socket_import_is_rejected_at_load_time() {
    let path = spool_tests::plugin_path("opens_socket");
    let error = plugins::load(spool_tests::sandbox(), &path, &Capabilities::default()).unwrap_err();
    match error {
        LoadError::ForbiddenImport {
            import,
            path: named,
            ..
        } => {
            assert!(import.starts_with("wasi:sockets/"), "{import}");
            assert_eq!(named, path);
        }
        other => panic!("expected a forbidden import, got {other}"),
    }
}

#[test]
fn with_the_network_capability_connections_are_still_refused() {
    // A real listener on loopback: the guest must not reach it.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let path = spool_tests::plugin_path("opens_socket");
    let plugin = plugins::load(
        spool_tests::sandbox(),
        &path,
        &Capabilities { network: true },
    )
    .unwrap();
    let job = super::json_job(&format!(r#"{{"addr":"{addr}"}}"#));
    let run = plugin.run(job, &Limits::default(), Arc::default());
    let out = output_json(&run);
    assert!(out["denied"].is_string(), "{out}");
    listener.set_nonblocking(true).unwrap();
    assert!(
        listener.accept().is_err(),
        "the guest connected to the host"
    );
}
