//! Plugin manifests (`NAME.toml` beside `NAME.wasm`): per-plugin limits,
//! config values and capabilities, picked up by the rescan; a bad manifest
//! never replaces what is serving.

use spool_runtime::ids::now_us;
use spool_runtime::queue::Status;
use spool_tests::fleet::{Env, add_plugin};
use spool_tests::variant;
use std::path::Path;

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
    let (registry, _worker) = env.serve_dir(&dir, |_| {});
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
    let (_registry, _worker) = env.serve_dir(&dir, |_| {});
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
    let (registry, _worker) = env.serve_dir(&dir, |_| {});
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

#[test]
fn versions_swap_under_load_and_every_job_names_the_one_it_ran_on() {
    const BATCH: usize = 150; // ~10 ms each on two threads: ~0.75 s of work
    let env = Env::new("swap");
    let dir = env.subdir("plugins");
    let versions: Vec<Vec<u8>> = (0..6).map(|n| variant("introspect", n)).collect();
    let digests: Vec<String> = versions
        .iter()
        .map(|v| spool_runtime::ids::Version::of(v).as_str().to_string())
        .collect();
    let file = dir.join("introspect.wasm");
    std::fs::write(&file, &versions[0]).unwrap();
    let (registry, _worker) = env.serve_dir(&dir, |_| {});
    let name = spool_runtime::ids::PluginName::parse("introspect").unwrap();
    // Batch n is enqueued once version n serves, and the next swap waits
    // only until the batch's first job has finished (so it ran on version
    // n): the rest of the batch is queued or running while the file is
    // replaced again.
    let mut batches: Vec<Vec<String>> = Vec::new();
    for (n, version) in versions.iter().enumerate() {
        if n > 0 {
            let tmp = dir.join(".introspect.wasm.tmp");
            std::fs::write(&tmp, version).unwrap();
            std::fs::rename(&tmp, &file).unwrap();
        }
        env.wait_for("the swap", || {
            registry
                .get(&name)
                .is_some_and(|p| p.version.as_str() == digests[n])
        });
        let jobs: Vec<_> = (0..BATCH)
            .map(|i| {
                let echo = n * BATCH + i;
                let mut job = env.job("introspect", &format!(r#"{{"sleep_ms":10,"echo":{echo}}}"#));
                job.max_attempts = 1; // a failure caused by a swap would show as dead
                job
            })
            .collect();
        let ids: Vec<String> = env.enqueue_all(&jobs);
        env.wait_until(&ids[0], |r| r.started_us.is_some());
        batches.push(ids);
    }
    let total = u64::try_from(versions.len() * BATCH).unwrap();
    let stats = env.wait_finished(total);
    assert_eq!((stats.succeeded_total, stats.dead_total), (total, 0));
    let mut used = std::collections::BTreeSet::new();
    for (n, ids) in batches.iter().enumerate() {
        for (i, id) in ids.iter().enumerate() {
            let record = env.record(id);
            let seen: serde_json::Value =
                serde_json::from_str(record.output.as_deref().unwrap()).unwrap();
            assert_eq!(seen["echo"], n * BATCH + i);
            let version = record.version.expect("every record names its version");
            let ran_on = digests
                .iter()
                .position(|d| *d == version)
                .unwrap_or_else(|| panic!("{version} is not a deployed digest"));
            // Enqueued while version n served: never an older version.
            assert!(ran_on >= n, "job {id} of batch {n} ran on version {ran_on}");
            used.insert(ran_on);
        }
    }
    // Each batch's first job finished before the next swap.
    assert_eq!(used.len(), versions.len(), "versions that served: {used:?}");
}

#[test]
fn a_half_written_file_never_replaces_the_serving_version() {
    use std::io::Write;
    let env = Env::new("half-written");
    let dir = env.subdir("plugins");
    let (v0, v1) = (variant("introspect", 0), variant("introspect", 1));
    let digest = |v: &[u8]| spool_runtime::ids::Version::of(v).as_str().to_string();
    let file = dir.join("introspect.wasm");
    std::fs::write(&file, &v0).unwrap();
    let (registry, _worker) = env.serve_dir(&dir, |_| {});
    let version_of_a_job = || env.wait(&env.enqueue("introspect", "{}")).version.unwrap();
    assert_eq!(version_of_a_job(), digest(&v0));

    // Overwrite in place, stopping half-way for a while.
    let mut out = std::fs::File::create(&file).unwrap();
    out.write_all(&v1[..v1.len() / 2]).unwrap();
    out.sync_all().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(700));
    assert_eq!(
        version_of_a_job(),
        digest(&v0),
        "the old version keeps serving"
    );
    out.write_all(&v1[v1.len() / 2..]).unwrap();
    out.sync_all().unwrap();
    drop(out);
    env.wait_for("the completed file to serve", || {
        registry
            .get(&spool_runtime::ids::PluginName::parse("introspect").unwrap())
            .is_some_and(|p| p.version.as_str() == digest(&v1))
    });
    assert_eq!(version_of_a_job(), digest(&v1));
    assert!(registry.rejected().is_empty(), "{:?}", registry.rejected());
}

#[test]
fn the_directory_is_read_carefully() {
    let env = Env::new("careful");
    let dir = env.subdir("plugins");
    let (v0, v1) = (variant("introspect", 0), variant("introspect", 1));
    let digest = |v: &[u8]| spool_runtime::ids::Version::of(v).as_str().to_string();
    let file = dir.join("introspect.wasm");
    std::fs::write(&file, &v0).unwrap();
    let (registry, _worker) = env.serve_dir(&dir, |_| {});
    let serving = || {
        registry
            .get(&spool_runtime::ids::PluginName::parse("introspect").unwrap())
            .map(|p| p.version.to_string())
    };
    // Same size, same modification time, another file (cp -p, rsync -a).
    let mtime = std::fs::metadata(&file).unwrap().modified().unwrap();
    let tmp = dir.join(".next");
    std::fs::write(&tmp, &v1).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&tmp)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    assert_eq!(v0.len(), v1.len());
    std::fs::rename(&tmp, &file).unwrap();
    env.wait_for("the replaced file to serve", || {
        serving() == Some(digest(&v1))
    });

    // The same name twice: both are named, the serving version stays.
    std::fs::create_dir_all(dir.join("default")).unwrap();
    std::fs::write(dir.join("default/introspect.wasm"), &v0).unwrap();
    env.wait_for("the conflict", || registry.rejected().len() == 2);
    assert!(
        registry.rejected()[0].1.contains("is defined twice"),
        "{:?}",
        registry.rejected()
    );
    assert_eq!(serving(), Some(digest(&v1)));
    std::fs::remove_file(dir.join("default/introspect.wasm")).unwrap();
    env.wait_for("the conflict to clear", || registry.rejected().is_empty());

    // A FIFO where a manifest belongs neither hangs nor stops the worker.
    let fifo = dir.join("introspect.toml");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    env.wait_for("the FIFO to be refused", || {
        registry
            .rejected()
            .iter()
            .any(|(_, why)| why.contains("not a regular file"))
    });
    std::fs::remove_file(&fifo).unwrap();
    env.wait_for("the plugin without it", || registry.rejected().is_empty());
    assert_eq!(
        env.wait(&env.enqueue("introspect", "{}")).status,
        Some(Status::Succeeded)
    );
}

#[test]
fn revoking_a_capability_stops_the_plugin() {
    let env = Env::new("revoke");
    let dir = env.subdir("plugins");
    add_plugin(&dir, "opens_socket", "opens_socket");
    write(
        &dir.join("opens_socket.toml"),
        "[capabilities]\nnetwork = true\n",
    );
    let (registry, _worker) = env.serve_dir(&dir, |_| {});
    assert_eq!(registry.names().len(), 1);
    write(
        &dir.join("opens_socket.toml"),
        "[capabilities]\nnetwork = false\n",
    );
    // It stops serving, then the refusal is recorded (two steps of the
    // rescan): wait for both.
    env.wait_for("the plugin to stop and be refused", || {
        registry.names().is_empty() && !registry.rejected().is_empty()
    });
    assert!(registry.rejected()[0].1.contains("wasi:sockets"));
}

#[test]
fn a_dropped_in_file_is_served_by_the_watcher_alone() {
    let env = Env::new("watcher");
    let dir = env.subdir("plugins");
    add_plugin(&dir, "hello", "hello");
    // The periodic rescan is an hour away: only file-system events can
    // make the new plugin serve (a broken watcher fails this test).
    let (registry, _worker) = env.serve_dir(&dir, |c| {
        c.rescan = Some(std::time::Duration::from_secs(3600));
    });
    // A finished job proves the worker's tasks, the watcher among them, run.
    let first = env.wait(&env.enqueue("hello", r#"{"name":"W"}"#));
    assert_eq!(first.status, Some(Status::Succeeded));
    // Written under another name, then renamed in: the way deploy tools do.
    let tmp = dir.join("introspect.partial");
    std::fs::copy(spool_tests::plugin_path("introspect"), &tmp).unwrap();
    std::fs::rename(&tmp, dir.join("introspect.wasm")).unwrap();
    let name = spool_runtime::ids::PluginName::parse("introspect").unwrap();
    env.wait_for("the watcher to load introspect", || {
        registry.get(&name).is_some()
    });
    let job = env.wait(&env.enqueue("introspect", r#"{"echo":"watched"}"#));
    assert_eq!(job.status, Some(Status::Succeeded), "{job:?}");
    // And a removal is seen the same way.
    std::fs::remove_file(dir.join("hello.wasm")).unwrap();
    let hello = spool_runtime::ids::PluginName::parse("hello").unwrap();
    env.wait_for("the watcher to drop hello", || {
        registry.get(&hello).is_none()
    });
}

#[test]
fn a_file_being_written_is_left_to_settle_before_it_is_judged() {
    use std::io::Write;
    use std::time::{Duration, Instant};
    let env = Env::new("settle");
    let dir = env.subdir("plugins");
    let (v0, v1) = (variant("introspect", 0), variant("introspect", 1));
    let digest = |v: &[u8]| spool_runtime::ids::Version::of(v).as_str().to_string();
    let name = spool_runtime::ids::PluginName::parse("introspect").unwrap();
    let file = dir.join("introspect.wasm");
    std::fs::write(&file, &v0).unwrap();
    // The periodic rescan an hour away: the watcher's events, which come
    // with every write, are the only trigger.
    let (registry, _worker) = env.serve_dir(&dir, |c| {
        c.rescan = Some(Duration::from_secs(3600));
    });
    assert_eq!(
        env.wait(&env.enqueue("introspect", "{}")).version.unwrap(),
        digest(&v0)
    );
    let serving = || registry.get(&name).map(|p| p.version.as_str().to_string());
    // Overwrite in place in 50 steps, 10 ms apart: never left alone for
    // the 100 ms settle time, so no partial file may be judged. The writes
    // outlast the watcher's debounce (at most 250 ms), so it is the
    // settle check, not the debounce, that protects the file. A step
    // this machine delays past 90 ms makes the attempt inconclusive (a
    // partial file may then rightly be judged, and rejected): try again.
    for attempt in 1..=5 {
        let (mut judged, mut longest) = (Vec::new(), Duration::ZERO);
        let mut out = std::fs::File::create(&file).unwrap();
        let mut last = Instant::now();
        for chunk in v1.chunks(v1.len().div_ceil(50)) {
            std::thread::sleep(Duration::from_millis(10));
            out.write_all(chunk).unwrap();
            longest = longest.max(last.elapsed());
            last = Instant::now();
            judged.extend(registry.rejected());
            assert_eq!(serving(), Some(digest(&v0)), "a partial file replaced v0");
        }
        drop(out);
        if judged.is_empty() {
            env.wait_for("the settled file to serve", || {
                serving() == Some(digest(&v1))
            });
            assert!(registry.rejected().is_empty(), "{:?}", registry.rejected());
            return;
        }
        assert!(
            longest >= Duration::from_millis(90),
            "a partial file was judged though no step waited 90 ms ({longest:?}): {judged:?}"
        );
        eprintln!("attempt {attempt}: a step took {longest:?}; writing again");
        std::fs::write(&file, &v0).unwrap();
        env.wait_for("v0 to serve again", || {
            serving() == Some(digest(&v0)) && registry.rejected().is_empty()
        });
    }
    panic!("five attempts in a row had a step delayed past 90 ms");
}

#[test]
fn a_deleted_plugin_hands_its_jobs_back_until_the_file_returns() {
    let env = Env::new("deleted");
    let dir = env.subdir("plugins");
    add_plugin(&dir, "hello", "hello");
    let (registry, _worker) = env.serve_dir(&dir, |c| c.worker_id = "w-del".into());
    let first = env.wait(&env.enqueue("hello", r#"{"name":"A"}"#));
    assert_eq!(first.status, Some(Status::Succeeded));
    std::fs::remove_file(dir.join("hello.wasm")).unwrap();
    let hello = spool_runtime::ids::PluginName::parse("hello").unwrap();
    env.wait_for("hello to be dropped", || registry.get(&hello).is_none());
    let id = env.enqueue("hello", r#"{"name":"B"}"#);
    let waiting = env.wait_until(&id, |r| r.error.is_some());
    assert_eq!(
        waiting.error.as_ref().unwrap()["message"],
        "plugin default/hello is not loaded on worker w-del"
    );
    assert_eq!(waiting.attempts, 0, "handing back spends no attempt");
    add_plugin(&dir, "hello", "hello");
    let record = env.wait(&id);
    assert_eq!(
        (record.status, record.attempts, record.output.as_deref()),
        (
            Some(Status::Succeeded),
            1,
            Some(r#"{"greeting":"Hello, B!"}"#)
        )
    );
}

#[test]
fn nothing_outside_the_plugins_directory_is_read_and_no_refusal_quotes_a_file() {
    let env = Env::new("beneath");
    let dir = env.subdir("plugins");
    let outside = env.subdir("outside");
    std::fs::write(outside.join("secret.toml"), "SECRET-TOKEN-1 = \n").unwrap();
    std::fs::write(outside.join("valid.wasm"), variant("hello", 0)).unwrap();
    add_plugin(&dir, "hello", "hello");
    // A manifest and a plugin that are symlinks out of the directory.
    std::os::unix::fs::symlink(outside.join("secret.toml"), dir.join("hello.toml")).unwrap();
    std::os::unix::fs::symlink(outside.join("valid.wasm"), dir.join("stolen.wasm")).unwrap();
    // A manifest in the directory that is not TOML.
    add_plugin(&dir, "markdown", "hello");
    write(
        &dir.join("markdown.toml"),
        "timeout = \"5s\"\nSECRET-LINE-2 here\n",
    );
    // A symlink that stays inside is followed as before.
    std::os::unix::fs::symlink("hello.wasm", dir.join("alias.wasm")).unwrap();
    let (registry, _worker) = env.serve_dir(&dir, |_| {});
    let names: Vec<String> = registry.names().iter().map(ToString::to_string).collect();
    assert_eq!(
        names,
        vec!["default/alias".to_string()],
        "{:?}",
        registry.rejected()
    );
    let rejected = registry.rejected();
    assert_eq!(rejected.len(), 3, "{rejected:?}");
    for (path, why) in &rejected {
        assert!(!why.contains("SECRET"), "{}: {why}", path.display());
    }
    let why = |name: &str| {
        rejected
            .iter()
            .find(|(p, _)| p.file_name().is_some_and(|f| f == name))
            .map(|(_, w)| w.clone())
            .unwrap_or_else(|| panic!("no refusal of {name}: {rejected:?}"))
    };
    // Refusals are listed by plugin file.
    let hello = why("hello.wasm");
    assert!(
        hello.contains("hello.toml: could not read it: it leads outside"),
        "{hello}"
    );
    let stolen = why("stolen.wasm");
    assert!(stolen.contains("leads outside"), "{stolen}");
    let markdown = why("markdown.wasm");
    assert!(
        markdown.contains("not a valid manifest at line 2, column"),
        "{markdown}"
    );
}
