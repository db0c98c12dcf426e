//! The compiled-artifact cache: a restart with a warm cache compiles
//! nothing; a damaged artifact is compiled again; a cache directory that
//! others could write to is refused.

use spool_runtime::ids::PluginName;
use spool_runtime::plugins::Registry;
use spool_runtime::plugins::{ArtifactCache, ArtifactCacheError, Capabilities, load_cached};
use spool_runtime::sandbox::Limits;
use spool_tests::fleet::{add_plugin, temp_dir};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

fn registry(plugins: &Path, cache: &Path) -> Registry {
    let sandbox = spool_tests::sandbox().clone();
    let cache = ArtifactCache::open(cache, &sandbox).expect("opening the artifact cache");
    let registry =
        Registry::new(sandbox, plugins, Capabilities::default()).with_artifact_cache(cache);
    registry.refresh();
    registry
}

fn from_cache(registry: &Registry) -> Vec<(String, bool)> {
    registry
        .names()
        .iter()
        .map(|n| (n.to_string(), registry.get(n).unwrap().from_cache))
        .collect()
}

fn greet(registry: &Registry, name: &str) -> String {
    let plugin = registry.get(&PluginName::parse(name).unwrap()).unwrap();
    let job = spool_runtime::sandbox::JobInput {
        id: "artifact-test".into(),
        tenant: "default".into(),
        plugin: name.into(),
        attempt: 1,
        content_type: "application/json".into(),
        payload: br#"{"name":"Cache"}"#.to_vec(),
    };
    let run = plugin.run(job, &Limits::default(), Arc::default());
    String::from_utf8(run.result.expect("the job succeeds")).unwrap()
}

#[test]
fn a_restart_with_a_warm_cache_compiles_nothing() {
    let dir = temp_dir("artifacts");
    let (plugins, cache) = (dir.join("plugins"), dir.join("cache"));
    add_plugin(&plugins, "hello", "hello");
    add_plugin(&plugins, "acme/kv", "kv");
    add_plugin(&plugins, "introspect", "introspect");

    let cold = registry(&plugins, &cache);
    assert_eq!(
        from_cache(&cold),
        vec![
            ("acme/kv".into(), false),
            ("default/hello".into(), false),
            ("default/introspect".into(), false)
        ]
    );
    // One artifact per version, named by its digest.
    let mut files: Vec<String> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(files.len(), 3, "{files:?}");
    let hello = cold.get(&PluginName::parse("hello").unwrap()).unwrap();
    assert!(
        files
            .iter()
            .any(|f| f.starts_with(hello.version.as_str()) && f.ends_with(".cwasm"))
    );

    // A new registry (a restarted worker) loads every plugin from the cache.
    let warm = registry(&plugins, &cache);
    assert!(
        from_cache(&warm).iter().all(|(_, cached)| *cached),
        "{:?}",
        from_cache(&warm)
    );
    assert_eq!(greet(&warm, "hello"), r#"{"greeting":"Hello, Cache!"}"#);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_damaged_artifact_is_compiled_again_and_replaced() {
    let dir = temp_dir("artifacts-damaged");
    let (plugins, cache) = (dir.join("plugins"), dir.join("cache"));
    add_plugin(&plugins, "hello", "hello");
    let cold = registry(&plugins, &cache);
    let version = cold
        .get(&PluginName::parse("hello").unwrap())
        .unwrap()
        .version
        .clone();
    let file = ArtifactCache::open(&cache, spool_tests::sandbox())
        .unwrap()
        .path(&version);
    let bytes = std::fs::read(&file).unwrap();
    std::fs::write(&file, &bytes[..bytes.len() / 3]).unwrap();

    let repaired = registry(&plugins, &cache);
    assert_eq!(from_cache(&repaired), vec![("default/hello".into(), false)]);
    assert_eq!(greet(&repaired, "hello"), r#"{"greeting":"Hello, Cache!"}"#);
    assert_eq!(
        std::fs::read(&file).unwrap().len(),
        bytes.len(),
        "the artifact was written again"
    );
    let again = registry(&plugins, &cache);
    assert_eq!(from_cache(&again), vec![("default/hello".into(), true)]);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_cache_directory_others_can_write_is_refused() {
    let dir = temp_dir("artifacts-public");
    let cache = dir.join("cache");
    std::fs::create_dir_all(&cache).unwrap();
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o777)).unwrap();
    match ArtifactCache::open(&cache, spool_tests::sandbox()) {
        Err(ArtifactCacheError::NotPrivate { dir: d, mode, .. }) => {
            assert_eq!(d, cache);
            assert_eq!(mode, 0o777);
        }
        other => panic!("expected NotPrivate, got {other:?}"),
    }
    // A fresh one is created private.
    let fresh = dir.join("fresh");
    ArtifactCache::open(&fresh, spool_tests::sandbox()).unwrap();
    let mode = std::fs::metadata(&fresh).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
    // Loading through the cache validates first: a bad file is still named.
    let bad = dir.join("bad.wasm");
    std::fs::write(&bad, b"not wasm").unwrap();
    let cache = ArtifactCache::open(&fresh, spool_tests::sandbox()).unwrap();
    let err = load_cached(
        spool_tests::sandbox(),
        &bad,
        &Capabilities::default(),
        Some(&cache),
    )
    .unwrap_err();
    assert!(err.to_string().contains("bad.wasm"), "{err}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn an_artifact_of_another_plugin_is_never_run() {
    let dir = temp_dir("artifacts-foreign");
    let (plugins, cache) = (dir.join("plugins"), dir.join("cache"));
    add_plugin(&plugins, "hello", "hello");
    add_plugin(&plugins, "introspect", "introspect");
    let cold = registry(&plugins, &cache);
    let version = |name: &str| {
        cold.get(&PluginName::parse(name).unwrap())
            .unwrap()
            .version
            .clone()
    };
    let opened = ArtifactCache::open(&cache, spool_tests::sandbox()).unwrap();
    // Put introspect's compiled code where hello's belongs.
    std::fs::copy(
        opened.path(&version("introspect")),
        opened.path(&version("hello")),
    )
    .unwrap();
    let warm = registry(&plugins, &cache);
    let hello = warm.get(&PluginName::parse("hello").unwrap()).unwrap();
    assert!(!hello.from_cache, "the swapped artifact was refused");
    assert_eq!(greet(&warm, "hello"), r#"{"greeting":"Hello, Cache!"}"#);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_cache_below_a_directory_others_can_write_is_refused() {
    let dir = temp_dir("artifacts-parent");
    let open = dir.join("open");
    std::fs::create_dir_all(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    match ArtifactCache::open(open.join("cache"), spool_tests::sandbox()) {
        Err(ArtifactCacheError::NotPrivate { dir: d, .. }) => {
            assert_eq!(d, open.canonicalize().unwrap());
        }
        other => panic!("expected NotPrivate for the parent, got {other:?}"),
    }
    // With the sticky bit (like /tmp) others cannot swap our directory.
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o1777)).unwrap();
    ArtifactCache::open(open.join("cache2"), spool_tests::sandbox()).unwrap();
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn opening_the_cache_prunes_unused_and_foreign_engine_artifacts() {
    use std::time::{Duration, SystemTime};
    let dir = temp_dir("artifacts-prune");
    let (plugins, cache) = (dir.join("plugins"), dir.join("cache"));
    add_plugin(&plugins, "hello", "hello");
    add_plugin(&plugins, "introspect", "introspect");
    let first = registry(&plugins, &cache);
    let hello = first.get(&PluginName::parse("hello").unwrap()).unwrap();
    let artifact = |name: &str| {
        std::fs::read_dir(&cache)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.file_name().unwrap().to_string_lossy().starts_with(name))
    };
    let old = |path: &Path, days: u64| {
        let file = std::fs::File::options().append(true).open(path).unwrap();
        let then = SystemTime::now() - Duration::from_secs(days * 24 * 3600);
        file.set_modified(then).unwrap();
    };
    // hello unused for 40 days; an artifact of another engine 2 days old;
    // another engine's artifact of an hour ago stays (a worker with other
    // settings may share the directory).
    old(&artifact(hello.version.as_str()).unwrap(), 40);
    let foreign_old = cache.join(format!("{}-otherengine.cwasm", "a".repeat(64)));
    let foreign_new = cache.join(format!("{}-otherengine.cwasm", "b".repeat(64)));
    std::fs::write(&foreign_old, b"x").unwrap();
    std::fs::write(&foreign_new, b"x").unwrap();
    old(&foreign_old, 2);

    let opened = ArtifactCache::open(&cache, spool_tests::sandbox()).unwrap();
    assert!(
        artifact(hello.version.as_str()).is_none(),
        "unused hello pruned"
    );
    assert!(!foreign_old.exists());
    assert!(foreign_new.exists());
    let introspect = first
        .get(&PluginName::parse("introspect").unwrap())
        .unwrap();
    assert!(opened.get(&introspect.version).is_some(), "recent kept");
    assert_eq!(opened.prune(), 0);
    let _ = std::fs::remove_dir_all(dir);
}
