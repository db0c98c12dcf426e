//! Shared helpers of Spool's end-to-end tests: where the plugins built from
//! `plugins/` are, and one sandbox per test binary.

pub mod backend;
pub mod fleet;
pub mod proxy;
pub mod webdriver;

use spool_runtime::plugins::{self, Capabilities, Plugin};
use spool_runtime::sandbox::{Sandbox, SandboxConfig};
use std::path::PathBuf;
use std::sync::OnceLock;

/// Clear the settings exported in the shell that runs the tests
/// (`SPOOL_QUEUE`, `SPOOL_TIMEOUT`, a cache directory…) from a `spool`
/// command: they must not change what a test sees.
pub fn without_user_settings(command: &mut std::process::Command) -> &mut std::process::Command {
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("SPOOL_") || name == "XDG_CACHE_HOME" {
            command.env_remove(name);
        }
    }
    command
}

/// Path of the component built from `plugins/` (crate name with `_`).
pub fn plugin_path(name: &str) -> PathBuf {
    PathBuf::from(env!("SPOOL_TEST_PLUGINS")).join(format!("{name}.wasm"))
}

/// The sandbox shared by a test binary: building engines is not free, and a
/// worker shares one too.
pub fn sandbox() -> &'static Sandbox {
    static SANDBOX: OnceLock<Sandbox> = OnceLock::new();
    SANDBOX.get_or_init(|| Sandbox::new(SandboxConfig::default()).expect("building the sandbox"))
}

/// Load a built plugin with default capabilities, compiled once per test
/// binary (compiling in a debug build is the slow part of these tests).
pub fn plugin(name: &str) -> Plugin {
    use std::collections::HashMap;
    use std::sync::Mutex;
    static CACHE: OnceLock<Mutex<HashMap<String, Plugin>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(plugin) = cache.lock().unwrap().get(name) {
        return plugin.clone();
    }
    let plugin = plugins::load(sandbox(), &plugin_path(name), &Capabilities::default())
        .unwrap_or_else(|e| panic!("loading fixture {name}: {e}"));
    cache
        .lock()
        .unwrap()
        .insert(name.to_string(), plugin.clone());
    plugin
}

/// A fixture with a custom section appended: the same handler, another digest.
pub fn variant(fixture: &str, n: u32) -> Vec<u8> {
    let mut bytes = std::fs::read(plugin_path(fixture)).unwrap();
    let body = [&[7u8][..], b"variant", n.to_string().as_bytes()].concat();
    bytes.push(0); // custom section id
    bytes.push(u8::try_from(body.len()).unwrap()); // LEB128 of a small length
    bytes.extend_from_slice(&body);
    bytes
}
