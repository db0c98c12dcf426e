//! A bad plugin file gets an error that names the file and the reason.

use spool_runtime::ids::Version;
use spool_runtime::plugins::{self, Capabilities, LoadError};
use spool_runtime::sandbox::CompileError;
use std::path::{Path, PathBuf};

fn load(path: &Path) -> Result<plugins::Plugin, LoadError> {
    plugins::load(spool_tests::sandbox(), path, &Capabilities::default())
}

/// Write `bytes` to a fresh temporary file named `name`.
fn temp_file(name: &str, bytes: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("spool-loading-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn missing_file() {
    let path = PathBuf::from("/nonexistent/plugin.wasm");
    let error = load(&path).unwrap_err();
    assert!(matches!(&error, LoadError::NotFound { path: p } if *p == path));
    assert_eq!(
        error.to_string(),
        "plugin /nonexistent/plugin.wasm: no such file"
    );
}

#[test]
fn empty_file() {
    let path = temp_file("empty.wasm", b"");
    assert!(matches!(load(&path).unwrap_err(), LoadError::Empty { .. }));
}

#[test]
fn not_wasm() {
    let path = temp_file("notes.wasm", b"hello, I am text");
    match load(&path).unwrap_err() {
        LoadError::NotWasm { found, .. } => assert_eq!(found, "hello, I"),
        other => panic!("expected not-wasm, got {other}"),
    }
}

#[test]
fn core_module_instead_of_component() {
    let module = wat::parse_str("(module (func (export \"handle\")))").unwrap();
    let path = temp_file("core.wasm", &module);
    assert!(matches!(
        load(&path).unwrap_err(),
        LoadError::CoreModule { .. }
    ));
}

#[test]
fn truncated_component() {
    let bytes = std::fs::read(spool_tests::plugin_path("hello")).unwrap();
    let path = temp_file("truncated.wasm", &bytes[..bytes.len() / 2]);
    let error = load(&path).unwrap_err();
    assert!(matches!(error, LoadError::Malformed { .. }), "{error}");
    assert!(error.to_string().contains("truncated.wasm"));
}

#[test]
fn random_bytes_after_the_magic() {
    let mut bytes = b"\0asm\x0d\0\x01\0".to_vec();
    let mut x: u32 = 0x9e37_79b9;
    for _ in 0..4096 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        bytes.push(x as u8);
    }
    let path = temp_file("random.wasm", &bytes);
    assert!(matches!(
        load(&path).unwrap_err(),
        LoadError::Malformed { .. }
    ));
}

#[test]
fn wrong_world() {
    let error = load(&spool_tests::plugin_path("wrong_world")).unwrap_err();
    match &error {
        LoadError::Compile {
            source: CompileError::WrongWorld { reason },
            ..
        } => {
            assert!(reason.contains("handle"), "{reason}");
        }
        other => panic!("expected wrong world, got {other}"),
    }
}

#[test]
fn import_the_host_does_not_provide() {
    match load(&spool_tests::plugin_path("unknown_import")).unwrap_err() {
        LoadError::UnknownImport { import, .. } => assert_eq!(import, "secrets"),
        other => panic!("expected an unknown import, got {other}"),
    }
}

#[test]
fn incompatible_sdk_version() {
    match load(&spool_tests::plugin_path("old_sdk")).unwrap_err() {
        LoadError::IncompatibleSdk {
            found, supported, ..
        } => {
            assert_eq!(found, "0.0.9");
            assert_eq!(supported, "0.1.x");
        }
        other => panic!("expected an incompatible SDK, got {other}"),
    }
}

#[test]
fn version_is_the_blake3_digest_of_the_bytes() {
    let path = spool_tests::plugin_path("hello");
    let plugin = spool_tests::plugin("hello");
    assert_eq!(plugin.version, Version::of(&std::fs::read(path).unwrap()));
    assert_eq!(plugin.version.as_str().len(), 64);
}

/// A component that instantiates `module` (core module text) `n` times.
fn instances_of(module: &str, n: usize) -> Vec<u8> {
    let instances: String = (0..n)
        .map(|i| format!("(core instance $i{i} (instantiate $m))"))
        .collect();
    wat::parse_str(format!("(component (core module $m {module}) {instances})")).unwrap()
}

#[test]
fn a_component_with_too_many_memories_tables_or_instances_is_refused() {
    // Each of its memories would get the whole memory cap, and each takes
    // a pool slot: refused when the plugin loads, naming the count.
    for (name, bytes, says) in [
        (
            "memories.wasm",
            instances_of("(memory 1)", 3),
            "3 Wasm linear memories, which exceeds the configured maximum of 2",
        ),
        (
            "tables.wasm",
            instances_of("(table 1 funcref)", 5),
            "5 tables, which exceeds the configured maximum of 4",
        ),
        (
            "instances.wasm",
            instances_of("", 9),
            "9 core module instances, which exceeds the configured maximum of 8",
        ),
    ] {
        let path = temp_file(name, &bytes);
        let error = load(&path).unwrap_err().to_string();
        assert!(error.contains(says), "{name}: {error}");
        assert!(error.contains(name), "the file is named: {error}");
    }
    // At the limits, the counts themselves are no reason to refuse (it
    // fails later, for not implementing the world).
    let path = temp_file("two-memories.wasm", &instances_of("(memory 1)", 2));
    let error = load(&path).unwrap_err().to_string();
    assert!(!error.contains("exceeds the configured maximum"), "{error}");
}
