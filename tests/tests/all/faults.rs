//! Faults and edge cases that the README and docs/cache.md promise to
//! survive: a single-flight lock left by a dead worker, Redis errors inside
//! the result cache, a reconnection that must empty the memory tier,
//! damaged or planted compiled artifacts, an unreachable key-value store, a
//! component without the SDK's custom section, a manifest that asks for
//! more memory than the worker's `--memory`, and a plugins directory that
//! cannot be read.

use crate::SPOOL;
use crate::cache::{cache_of, computed_by, run};
use crate::command::{spool, spool_command, succeeds};
use spool_runtime::cache::EntryKey;
use spool_runtime::deploy::{FleetStore, WorkerStatus};
use spool_runtime::ids::{Version, now_us};
use spool_runtime::kv::{KeyValue, RedisKv};
use spool_runtime::plugins::{self, ArtifactCache, Capabilities, Plugin, load_cached};
use spool_runtime::queue::{JobRecord, Status};
use spool_runtime::sandbox::{JobFailure, JobServices, Limits};
use spool_tests::fleet::{Env, add_plugin, temp_dir};
use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

/// The queue's (and so the result cache's) default key prefix.
const PREFIX: &str = "spool";

/// A plugins directory with `introspect` as `default/introspect` and
/// `manifest` beside it.
fn introspect_dir(env: &Env, manifest: &str) -> PathBuf {
    let dir = env.subdir("plugins");
    add_plugin(&dir, "introspect", "introspect");
    std::fs::write(dir.join("introspect.toml"), manifest).unwrap();
    dir
}

/// The result-cache key a worker computes for a JSON job on
/// `default/introspect` (no `[config]` in its manifest): the same recipe
/// as `runtime/src/worker/cached.rs`.
fn introspect_key(payload: &str) -> EntryKey {
    let bytes = std::fs::read(spool_tests::plugin_path("introspect")).unwrap();
    EntryKey::new(
        "default",
        "introspect",
        &Version::of(&bytes),
        "application/json",
        &BTreeMap::new(),
        payload.as_bytes(),
    )
}

/// Worker `id`'s latest report, if it has one (and Redis answers).
fn report_of(env: &Env, store: &FleetStore, id: &str) -> Option<WorkerStatus> {
    env.rt
        .block_on(store.workers())
        .ok()?
        .into_iter()
        .find(|w| w.worker == id)
}

#[test]
fn a_lock_left_by_a_dead_worker_is_waited_out_for_the_timeout_plus_2_s_then_the_job_computes() {
    let env = Env::new("faults-dead-lock");
    let dir = introspect_dir(&env, "timeout = \"1s\"\n\n[cache]\nttl = \"1h\"\n");
    let payload = r#"{"echo":"orphan"}"#;
    let key = introspect_key(payload);
    let (entry, lock) = (key.redis_key(PREFIX, 'r'), key.redis_key(PREFIX, 'l'));
    // A worker took the lock for this work and died. Its lock outlives
    // every wait of this test (5 min): a job that waited for it to expire,
    // instead of for its own timeout plus 2 s, would time the test out.
    let holder = "dead-worker:00000000deadbeef";
    let mut conn = env.redis_conn();
    let _: () = redis::cmd("SET")
        .arg(&lock)
        .arg(holder)
        .arg("PX")
        .arg(300_000)
        .query(&mut conn)
        .unwrap();

    let (_registry, _worker) = env.serve_dir(&dir, |_| {});
    let record = run(&env, "introspect", payload);
    assert_eq!(
        record.cache_key.as_deref(),
        Some(key.hash.as_str()),
        "the worker's key is the one this test locked"
    );
    assert_eq!(cache_of(&record), "miss");
    assert_eq!(computed_by(&record), record.id, "it ran the handler itself");
    // docs/cache.md: it polls until the wait ends (the job's timeout, 1 s,
    // plus 2 s), then computes. The poll stops when its next step (at most
    // 50 ms) would pass the wait, so 2.95 s at the least; 2.9 s leaves room
    // for the clocks of the record's two timestamps.
    let waited = record
        .finished_us
        .unwrap()
        .saturating_sub(record.enqueued_us.unwrap());
    assert!(
        waited >= 2_900_000,
        "finished {waited} µs after it was enqueued: it did not wait for the lock"
    );
    // And no longer than that: the plugin's 1 s, not the worker's default
    // 30 s, sets the wait (15 s leaves room for a busy machine).
    assert!(
        waited < 15_000_000,
        "waited {waited} µs: not the plugin's timeout plus 2 s"
    );
    // Its success is stored for the next identical job, and the dead
    // holder's lock is left alone (only its owner releases a lock).
    let job: Option<String> = redis::cmd("HGET")
        .arg(&entry)
        .arg("job")
        .query(&mut conn)
        .unwrap();
    assert_eq!(
        job.as_deref(),
        Some(record.id.as_str()),
        "the entry {entry}"
    );
    let still: Option<String> = redis::cmd("GET").arg(&lock).query(&mut conn).unwrap();
    assert_eq!(still.as_deref(), Some(holder));
}

#[test]
fn redis_errors_in_the_result_cache_never_fail_a_job() {
    let env = Env::new("faults-cache-errors");
    let dir = introspect_dir(&env, "[cache]\nttl = \"1h\"\n");
    // The lock key of each job's work holds a list: lookup.lua's `GET` of
    // the lock fails with WRONGTYPE (its `SET NX` just finds the key taken),
    // and so does store.lua's. The entry key is left alone: lookup.lua reads
    // it under pcall, so a bad entry alone would not be an error.
    let payloads = [r#"{"echo":"a"}"#, r#"{"echo":"b"}"#];
    let mut conn = env.redis_conn();
    for payload in payloads {
        let lock = introspect_key(payload).redis_key(PREFIX, 'l');
        let _: i64 = redis::cmd("RPUSH")
            .arg(&lock)
            .arg("not a lock")
            .query(&mut conn)
            .unwrap();
    }
    let worker = env.worker_process(SPOOL, &dir, &["--id", "w1"]);
    for payload in payloads {
        let record = run(&env, "introspect", payload);
        assert_eq!(cache_of(&record), "miss", "the handler ran: {record:?}");
        assert_eq!(computed_by(&record), record.id);
        assert_eq!(
            record.cache_key.as_deref(),
            Some(introspect_key(payload).hash.as_str())
        );
        let seen: serde_json::Value =
            serde_json::from_str(record.output.as_deref().unwrap()).unwrap();
        let sent: serde_json::Value = serde_json::from_str(payload).unwrap();
        assert_eq!(seen["echo"], sent["echo"], "the handler's own output");
    }
    // "The worker logs them once": two jobs, four failed scripts, no
    // lookup answered in between, one warning.
    let said = worker.stderr();
    let warning = format!("result cache: redis at {} failed", env.redis.url());
    assert_eq!(said.matches(&warning).count(), 1, "{said}");
    assert!(said.contains("WRONGTYPE"), "{said}");
    assert!(
        said.contains("running jobs without the cache until it answers"),
        "{said}"
    );
}

#[test]
fn a_worker_that_reconnects_to_redis_empties_its_memory_tier() {
    // One server: `CLIENT KILL` there drops the follower's connection for
    // it to see (a cluster client reconnects to a node by itself).
    let env = Env::standalone("faults-reconnect");
    let dir = introspect_dir(&env, "[cache]\nttl = \"1h\"\n");
    let (_registry, _worker) = env.serve_dir(&dir, |c| {
        c.worker_id = "w-mem".into();
        // No periodic report: after the connections are killed below, only
        // the fleet follower's reconnection publishes a new one.
        c.fleet_resync = Duration::from_secs(3600);
    });
    // The first connection empties the memory tier too (then reports):
    // fill it only after that.
    let store = env.fleet_store();
    env.wait_for("w-mem's first report", || {
        report_of(&env, &store, "w-mem").is_some()
    });
    let payload = r#"{"echo":"remembered"}"#;
    let first = run(&env, "introspect", payload);
    assert_eq!(cache_of(&first), "miss");
    assert_eq!(cache_of(&run(&env, "introspect", payload)), "hit-memory");

    // Only the memory tier holds the result now.
    let entry = introspect_key(payload).redis_key(PREFIX, 'r');
    let removed: i64 = redis::cmd("DEL")
        .arg(&entry)
        .query(&mut env.redis_conn())
        .unwrap();
    assert_eq!(removed, 1, "the entry {entry}");
    let held = run(&env, "introspect", payload);
    assert_eq!(cache_of(&held), "hit-memory");
    assert_eq!(computed_by(&held), first.id);

    // Drop every client's connection (this one's aside): the worker's
    // fleet follower, blocked reading events, sees its connection fail.
    let killed_at = now_us();
    let killed: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("normal")
        .query(&mut env.redis_conn())
        .unwrap();
    assert!(killed > 0, "no connection was killed");
    // The test's own queue handle lost its connection too.
    env.wait_for("the test's queue connection", || {
        env.rt.block_on(env.queue.stats()).is_ok()
    });
    // A reconnection empties the memory tier, then reports.
    env.wait_for("w-mem to reconnect and report", || {
        report_of(&env, &store, "w-mem").is_some_and(|w| w.reported_us > killed_at)
    });
    let after = run(&env, "introspect", payload);
    assert_eq!(
        cache_of(&after),
        "miss",
        "the memory tier still answered after the reconnection: {after:?}"
    );
    assert_eq!(computed_by(&after), after.id);
}

/// Bytes before the code in an artifact file (runtime/src/plugins/
/// artifacts.rs): the magic line, the 64-hex-digit plugin digest, the
/// 32-byte blake3 hash of the code.
const MAGIC: &[u8] = b"spool-artifact-1\n";
const ARTIFACT_HEADER: usize = MAGIC.len() + 64 + 32;

/// Load `hello` through `cache` and run a job on it.
fn hello_through(cache: &ArtifactCache) -> Plugin {
    let plugin = load_cached(
        spool_tests::sandbox(),
        &spool_tests::plugin_path("hello"),
        &Capabilities::default(),
        Some(cache),
    )
    .unwrap_or_else(|e| panic!("loading hello: {e}"));
    let run = plugin.run(
        crate::json_job(r#"{"name":"Cache"}"#),
        &Limits::default(),
        Arc::default(),
    );
    let output = run
        .result
        .unwrap_or_else(|f| panic!("the job failed: {f:?}"));
    assert_eq!(output, br#"{"greeting":"Hello, Cache!"}"#.to_vec());
    plugin
}

/// A fresh artifact cache holding hello's artifact: (the test's directory,
/// the cache, the artifact file).
fn warm_hello_cache(label: &str) -> (PathBuf, ArtifactCache, PathBuf) {
    let dir = temp_dir(label);
    let cache = ArtifactCache::open(dir.join("cache"), spool_tests::sandbox())
        .expect("opening the artifact cache");
    assert!(!hello_through(&cache).from_cache, "a cold cache compiles");
    assert!(
        hello_through(&cache).from_cache,
        "then it keeps the artifact"
    );
    let version = Version::of(&std::fs::read(spool_tests::plugin_path("hello")).unwrap());
    let file = cache.path(&version);
    let bytes = std::fs::read(&file).unwrap();
    assert!(bytes.starts_with(MAGIC), "the artifact's magic line");
    assert_eq!(
        &bytes[MAGIC.len()..MAGIC.len() + 64],
        version.as_str().as_bytes(),
        "the artifact names its plugin's digest"
    );
    (dir, cache, file)
}

#[test]
fn an_artifact_with_one_flipped_byte_is_compiled_again_and_replaced() {
    let (dir, cache, file) = warm_hello_cache("faults-artifact-flip");
    let mut damaged = std::fs::read(&file).unwrap();
    assert!(damaged.len() > ARTIFACT_HEADER, "{} bytes", damaged.len());
    // One bit, in the middle of the code (the header is intact).
    let at = ARTIFACT_HEADER + (damaged.len() - ARTIFACT_HEADER) / 2;
    damaged[at] ^= 0x01;
    std::fs::write(&file, &damaged).unwrap();

    assert!(
        !hello_through(&cache).from_cache,
        "the damaged code was run"
    );
    let rewritten = std::fs::read(&file).unwrap();
    assert!(
        rewritten != damaged,
        "the damaged artifact was not replaced"
    );
    assert!(hello_through(&cache).from_cache, "the replacement is used");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn an_artifact_that_is_a_symlink_is_not_followed() {
    let (dir, cache, file) = warm_hello_cache("faults-artifact-symlink");
    // A sound artifact (ours, 0600, one link) outside the cache, and a
    // symlink to it where hello's artifact belongs.
    let elsewhere = dir.join("elsewhere.cwasm");
    std::fs::rename(&file, &elsewhere).unwrap();
    let target = std::fs::read(&elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &file).unwrap();

    assert!(
        !hello_through(&cache).from_cache,
        "the symlink was followed"
    );
    let meta = std::fs::symlink_metadata(&file).unwrap();
    assert!(
        meta.file_type().is_file(),
        "the symlink was not replaced by a regular file: {:?}",
        meta.file_type()
    );
    assert!(
        std::fs::read(&elsewhere).unwrap() == target,
        "the symlink's target was written to"
    );
    assert!(hello_through(&cache).from_cache, "the replacement is used");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn an_artifact_others_can_write_is_refused_and_rewritten_private() {
    let (dir, cache, file) = warm_hello_cache("faults-artifact-mode");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o666)).unwrap();

    assert!(
        !hello_through(&cache).from_cache,
        "an artifact others could have written was run"
    );
    let mode = std::fs::symlink_metadata(&file)
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600, "rewritten with mode {mode:o}");
    assert!(hello_through(&cache).from_cache, "the replacement is used");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn an_unreachable_key_value_store_is_a_retryable_error_for_the_guest() {
    // Nothing listens on port 1: every call is refused.
    let kv: Arc<dyn KeyValue> =
        Arc::new(RedisKv::new("redis://127.0.0.1:1", PREFIX).expect("a well-formed URL"));
    let services = JobServices {
        config: Arc::default(),
        kv: Some(kv),
        ..JobServices::default()
    };
    let plugin = spool_tests::plugin("kv");
    for input in [
        r#"{"op":"get","key":"k"}"#,
        r#"{"op":"set","key":"k","value":"v"}"#,
        r#"{"op":"delete","key":"k"}"#,
    ] {
        let run = plugin.run_with(crate::json_job(input), &Limits::default(), &services);
        assert_eq!(run.host_calls, 1, "{input}: one key-value call");
        let failure = match run.result {
            Err(failure) => failure,
            Ok(output) => panic!(
                "{input}: succeeded with {}",
                String::from_utf8_lossy(&output)
            ),
        };
        assert!(failure.is_retryable(), "{input}: {failure:?}");
        let JobFailure::Retryable { message } = &failure else {
            panic!("{input}: expected the guest's retryable error, got {failure:?}");
        };
        // The SDK's text (sdk/src/kv.rs), then the store's reason: the
        // store was asked, this is not the host without a store.
        assert!(
            message.starts_with("key-value store unavailable: "),
            "{input}: {message}"
        );
        assert_ne!(
            message, "key-value store unavailable: this host has no key-value store",
            "{input}"
        );
    }
}

#[test]
fn a_key_value_store_that_never_answers_is_a_retryable_error_not_a_hang() {
    // Connections are accepted (by the kernel's backlog) and never answered.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("redis://{}", silent.local_addr().unwrap());
    let kv: Arc<dyn KeyValue> = Arc::new(RedisKv::new(&url, PREFIX).unwrap());
    let services = JobServices {
        config: Arc::default(),
        kv: Some(kv),
        ..JobServices::default()
    };
    let started = std::time::Instant::now();
    let run = spool_tests::plugin("kv").run_with(
        crate::json_job(r#"{"op":"get","key":"k"}"#),
        &Limits::default(),
        &services,
    );
    let took = started.elapsed();
    assert!(
        matches!(&run.result, Err(JobFailure::Retryable { message })
            if message.starts_with("key-value store unavailable: ")),
        "{:?}",
        run.result
    );
    // Its timeouts (2 s to connect, 2 s per reply), far inside the job's
    // 30 s deadline; the bound leaves room for a busy machine.
    assert!(took < Duration::from_secs(15), "the call took {took:?}");
    drop(silent);
}

#[test]
fn a_component_without_the_sdk_section_is_accepted_if_it_implements_the_world() {
    let mut bytes = std::fs::read(spool_tests::plugin_path("hello")).unwrap();
    let section = plugins::inspect::SDK_SECTION.as_bytes();
    let other = b"other-custom-sect";
    assert_eq!(section.len(), other.len());
    let found: Vec<usize> = bytes
        .windows(section.len())
        .enumerate()
        .filter(|(_, w)| *w == section)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(found.len(), 1, "occurrences of the section name: {found:?}");
    // Same length: the section (and every size around it) stays valid; it
    // just has another name now.
    bytes[found[0]..found[0] + other.len()].copy_from_slice(other);
    let dir = temp_dir("faults-no-sdk");
    let path = dir.join("anonymous.wasm");
    std::fs::write(&path, &bytes).unwrap();

    assert_eq!(
        spool_tests::plugin("hello").sdk_version.as_deref(),
        Some("0.1.0"),
        "the fixture as built names its SDK"
    );
    let plugin = plugins::load(spool_tests::sandbox(), &path, &Capabilities::default())
        .unwrap_or_else(|e| panic!("a component without the section was refused: {e}"));
    assert_eq!(plugin.sdk_version, None);
    assert_eq!(plugin.version, Version::of(&bytes));
    let run = plugin.run(
        crate::json_job(r#"{"name":"X"}"#),
        &Limits::default(),
        Arc::default(),
    );
    let output = run
        .result
        .unwrap_or_else(|f| panic!("the job failed: {f:?}"));
    assert_eq!(
        String::from_utf8(output).unwrap(),
        r#"{"greeting":"Hello, X!"}"#
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_manifest_asking_for_more_memory_than_the_workers_limit_is_rejected_by_name() {
    // README: "`memory` may not exceed the worker's `--memory` (its pool
    // slots are that size); a manifest asking for more is rejected."
    let env = Env::new("faults-memory");
    let dir = env.subdir("plugins");
    add_plugin(&dir, "hello", "hello");
    std::fs::write(dir.join("hello.toml"), "memory = \"64MiB\"\n").unwrap();
    let worker = env.worker_process(SPOOL, &dir, &["--memory", "32MiB", "--id", "w1"]);
    let store = env.fleet_store();
    env.wait_for("w1 to report the refusal", || {
        report_of(&env, &store, "w1").is_some_and(|w| !w.rejected.is_empty())
    });
    let why = format!(
        "manifest {}: memory: 67108864 bytes is above this worker's limit of 33554432 bytes (--memory)",
        dir.join("hello.toml").display()
    );
    let out = spool(&env, &["plugins", "list", "--json"]);
    let list: serde_json::Value = serde_json::from_str(&succeeds(&out)).unwrap();
    assert_eq!(
        list["rejected"],
        serde_json::json!([{
            "worker": "w1",
            "path": dir.join("hello.wasm").display().to_string(),
            "why": why.as_str(),
        }]),
        "{list}"
    );
    let w1 = report_of(&env, &store, "w1").unwrap();
    assert!(w1.plugins.is_empty(), "w1 serves {:?}", w1.plugins);
    let said = worker.stderr();
    assert!(said.contains(&why), "{said}");

    // Its jobs wait for a worker that has the plugin; no attempt is spent.
    let id = env.enqueue("hello", r#"{"name":"X"}"#);
    let waiting = env.wait_until(&id, |r| r.error.is_some());
    let error = waiting.error.as_ref().unwrap();
    assert_eq!(
        error["message"],
        "plugin default/hello is not loaded on worker w1"
    );
    assert_eq!(error["kind"], "plugin-not-loaded");
    assert_eq!(waiting.attempts, 0, "{waiting:?}");
    assert_ne!(waiting.status, Some(Status::Succeeded));
}

/// The uid and gid of `nobody`, whom the worker below runs as when the
/// tests run as root (root reads a directory whatever its mode).
const NOBODY: u32 = 65534;

fn running_as_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// The real uid of process `pid` (`Uid:` in /proc/PID/status).
fn uid_of(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A `spool worker` child process; SIGKILLed when dropped.
#[derive(Debug)]
struct Spawned {
    child: std::process::Child,
    log: PathBuf,
}

impl Spawned {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `spool worker` on `dir` as worker `id`, as `nobody` when we are root.
fn worker_as_nobody(env: &Env, dir: &Path, id: &str, root: bool) -> Spawned {
    use std::os::unix::process::CommandExt as _;
    let url = env.redis.url();
    let plugins = dir.display().to_string();
    let log = env.dir.join(format!("worker-{id}.log"));
    let mut command = spool_command(
        &env.dir,
        &[
            "worker",
            "--redis",
            &url,
            "--plugins",
            &plugins,
            "--lease",
            "1s",
            "--backoff",
            "20ms",
            "--concurrency",
            "2",
            // No directory of ours it could write to: compile every start.
            "--no-artifact-cache",
            "--id",
            id,
        ],
    );
    command
        .env("SPOOL_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("worker log file"));
    if root {
        command.uid(NOBODY).gid(NOBODY);
    }
    let child = command.spawn().expect("starting spool worker");
    Spawned { child, log }
}

/// Poll `id`'s record (at most 60 s) until `done`; fail with the worker's
/// log otherwise.
fn wait_with_log(
    env: &Env,
    id: &str,
    worker: &Spawned,
    done: impl Fn(&JobRecord) -> bool,
) -> JobRecord {
    let deadline = std::time::Instant::now() + spool_tests::fleet::WAIT;
    while std::time::Instant::now() < deadline {
        if let Ok(record) = env.rt.block_on(env.queue.record(id))
            && done(&record)
        {
            return record;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!(
        "job {id} did not reach the expected state: {:?}\nworker log:\n{}",
        env.rt.block_on(env.queue.record(id)),
        worker.log()
    );
}

fn finished(record: &JobRecord) -> bool {
    record.status.is_some_and(Status::is_terminal)
}

#[test]
fn a_plugins_directory_that_cannot_be_read_is_not_taken_for_a_deletion() {
    // README: "a directory that cannot be read is not taken for a
    // deletion". The tests run as root, and root lists a directory of mode
    // 000 anyway; so the worker here is a real `spool worker` process that
    // runs as `nobody` (when the tests run as another user, as that user),
    // for which listing `acme/` fails with EACCES (not NotFound).
    let env = Env::new("faults-unreadable");
    let dir = env.subdir("plugins");
    add_plugin(&dir, "acme/hello", "hello");
    let tenant = dir.join("acme");
    let root = running_as_root();
    if root {
        // nobody must reach and list the plugins directory (copied plugin
        // files keep the fixtures' 0644).
        let parent = env.dir.parent().unwrap();
        let mode = std::fs::metadata(parent).unwrap().permissions().mode();
        set_mode(parent, (mode & 0o7777) | 0o005);
        for path in [&env.dir, &dir, &tenant] {
            set_mode(path, 0o755);
        }
    }
    let worker = worker_as_nobody(&env, &dir, "w-locked", root);
    if root {
        assert_eq!(
            uid_of(worker.child.id()),
            Some(NOBODY),
            "the worker does not run as nobody"
        );
    }
    let id = env.enqueue("acme/hello", r#"{"name":"Before"}"#);
    let before = wait_with_log(&env, &id, &worker, finished);
    assert_eq!(
        before.output.as_deref(),
        Some(r#"{"greeting":"Hello, Before!"}"#),
        "{before:?}"
    );

    set_mode(&tenant, 0o000);
    // A plugin added after the chmod is served only by a rescan that
    // listed the directory after it, and so also failed to list acme/.
    add_plugin(&dir, "marker", "hello");
    let id = env.enqueue("marker", r#"{"name":"Marker"}"#);
    let marker = wait_with_log(&env, &id, &worker, finished);
    assert_eq!(marker.status, Some(Status::Succeeded), "{marker:?}");
    let id = env.enqueue("acme/hello", r#"{"name":"Locked"}"#);
    let during = wait_with_log(&env, &id, &worker, finished);
    assert_eq!(
        (during.status, during.attempts, during.output.as_deref()),
        (
            Some(Status::Succeeded),
            1,
            Some(r#"{"greeting":"Hello, Locked!"}"#)
        ),
        "acme/hello was dropped while acme/ could not be read"
    );

    // Whereas a directory that is really gone is a deletion.
    set_mode(&tenant, 0o755);
    std::fs::remove_dir_all(&tenant).unwrap();
    let store = env.fleet_store();
    env.wait_for("w-locked to drop acme/hello", || {
        report_of(&env, &store, "w-locked").is_some_and(|w| {
            w.plugins.iter().any(|p| p.name == "default/marker")
                && !w.plugins.iter().any(|p| p.name == "acme/hello")
        })
    });
    let id = env.enqueue("acme/hello", r#"{"name":"After"}"#);
    let gone = wait_with_log(&env, &id, &worker, |r| r.error.is_some());
    assert_eq!(
        gone.error.as_ref().unwrap()["message"],
        "plugin acme/hello is not loaded on worker w-locked"
    );
    assert_eq!(gone.attempts, 0, "{gone:?}");
}
