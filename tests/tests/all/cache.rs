//! The result cache end to end: real workers, real Redis, the `introspect`
//! fixture with a `[cache] ttl` manifest. Its output names the job that ran
//! the handler (`id`), so the outputs of identical jobs tell how many times
//! the handler really ran.

use crate::SPOOL;
use crate::command::{fails_with, spool, succeeds, text};
use spool_runtime::queue::{JobRecord, Status};
use spool_tests::fleet::{Env, add_plugin};
use spool_tests::variant;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// A plugins directory with `introspect` as each of `names`, cacheable
/// for `ttl`.
pub(crate) fn cacheable(env: &Env, names: &[&str], ttl: &str) -> PathBuf {
    let dir = env.subdir("plugins");
    for name in names {
        add_plugin(&dir, name, "introspect");
        let wasm = match name.split_once('/') {
            Some((tenant, plugin)) => dir.join(tenant).join(format!("{plugin}.wasm")),
            None => dir.join(format!("{name}.wasm")),
        };
        std::fs::write(
            wasm.with_extension("toml"),
            format!("[cache]\nttl = \"{ttl}\"\n"),
        )
        .unwrap();
    }
    dir
}

/// Run one job to its end.
pub(crate) fn run(env: &Env, plugin: &str, payload: &str) -> JobRecord {
    let record = env.wait(&env.enqueue(plugin, payload));
    assert_eq!(record.status, Some(Status::Succeeded), "{record:?}");
    record
}

/// The job whose handler run produced this record's output.
pub(crate) fn computed_by(record: &JobRecord) -> String {
    let seen: serde_json::Value = serde_json::from_str(record.output.as_deref().unwrap()).unwrap();
    seen["id"].as_str().unwrap().to_string()
}

pub(crate) fn cache_of(record: &JobRecord) -> &str {
    record.cache.as_deref().unwrap_or("none")
}

/// Result entries in Redis.
fn entries(env: &Env) -> BTreeSet<String> {
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("spool:{cache:*}:r:*")
        .query(&mut env.redis_conn())
        .unwrap();
    keys.into_iter().collect()
}

#[test]
fn an_identical_job_is_answered_from_memory_then_from_redis() {
    let env = Env::new("cache-hit");
    let dir = cacheable(&env, &["introspect"], "1h");
    let (_registry, worker) = env.serve_dir(&dir, |_| {});
    let first = run(&env, "introspect", r#"{"echo":1}"#);
    assert_eq!(cache_of(&first), "miss");
    assert_eq!(computed_by(&first), first.id);
    let key = first.cache_key.clone().expect("a cache key in the record");
    assert_eq!(key.len(), 64);

    let second = run(&env, "introspect", r#"{"echo":1}"#);
    assert_eq!(cache_of(&second), "hit-memory");
    assert_eq!(second.output, first.output, "the first job's output");
    assert_eq!(second.cache_job.as_deref(), Some(first.id.as_str()));
    assert_eq!(second.cache_key.as_deref(), Some(key.as_str()));
    assert_eq!(second.host_calls, Some(0), "nothing ran");

    // Another input is other work.
    let other = run(&env, "introspect", r#"{"echo":2}"#);
    assert_eq!(cache_of(&other), "miss");

    // A new worker has nothing in memory: Redis answers.
    drop(worker);
    let (_registry, _worker) = env.serve_dir(&dir, |_| {});
    let third = run(&env, "introspect", r#"{"echo":1}"#);
    assert_eq!(cache_of(&third), "hit-redis");
    assert_eq!(computed_by(&third), first.id);

    let plain = text(&spool(&env, &["job", &third.id]).stdout);
    assert!(
        plain.contains(&format!(
            "cache      hit-redis (key {key}, computed by job {})",
            first.id
        )),
        "{plain}"
    );
}

#[test]
fn a_new_plugin_version_and_another_config_miss() {
    let env = Env::new("cache-version");
    let dir = cacheable(&env, &["introspect"], "1h");
    let (registry, _worker) = env.serve_dir(&dir, |_| {});
    let before = run(&env, "introspect", "{}");
    assert_eq!(cache_of(&run(&env, "introspect", "{}")), "hit-memory");

    let tmp = dir.join(".introspect.tmp");
    std::fs::write(&tmp, variant("introspect", 1)).unwrap();
    std::fs::rename(&tmp, dir.join("introspect.wasm")).unwrap();
    let name = spool_runtime::ids::PluginName::parse("introspect").unwrap();
    env.wait_for("the new version", || {
        registry
            .get(&name)
            .is_some_and(|p| Some(p.version.as_str()) != before.version.as_deref())
    });
    let after = run(&env, "introspect", "{}");
    assert_eq!(cache_of(&after), "miss");
    assert_eq!(computed_by(&after), after.id);

    // Config values are part of the work too.
    std::fs::write(
        dir.join("introspect.toml"),
        "[cache]\nttl = \"1h\"\n\n[config]\ngreeting = \"hi\"\n",
    )
    .unwrap();
    env.wait_for("the new config", || {
        let r = run(&env, "introspect", "{}");
        serde_json::from_str::<serde_json::Value>(r.output.as_deref().unwrap()).unwrap()["greeting"]
            == "hi"
    });
}

#[test]
fn failures_are_never_cached_and_uncacheable_plugins_say_off() {
    let env = Env::new("cache-errors");
    let dir = cacheable(&env, &["introspect"], "1h");
    add_plugin(&dir, "plain", "introspect"); // no manifest: not cacheable
    let (_registry, _worker) = env.serve_dir(&dir, |_| {});
    for _ in 0..2 {
        let mut job = env.job("introspect", r#"{"fail":"fatal"}"#);
        job.max_attempts = 1;
        let record = env.wait(&env.enqueue_job(job));
        assert_eq!(record.status, Some(Status::Dead));
        assert_eq!(cache_of(&record), "miss", "the handler ran both times");
    }
    let plain = run(&env, "plain", "{}");
    assert_eq!(cache_of(&plain), "off");
    assert_eq!(cache_of(&run(&env, "plain", "{}")), "off");
    assert!(entries(&env).is_empty(), "{:?}", entries(&env));
}

#[test]
fn a_bypass_job_runs_and_refreshes_the_entry() {
    let env = Env::new("cache-bypass");
    let dir = cacheable(&env, &["introspect"], "1h");
    let (_registry, _worker) = env.serve_dir(&dir, |_| {});
    let first = run(&env, "introspect", "{}");
    let out = spool(
        &env,
        &[
            "enqueue",
            "introspect",
            "--input",
            "{}",
            "--no-cache",
            "--wait",
            "--json",
        ],
    );
    succeeds(&out);
    let bypass: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(bypass["cache"], "bypass");
    let bypass_id = bypass["id"].as_str().unwrap().to_string();
    assert_ne!(bypass_id, first.id);
    // The fresh result replaced the cached one.
    let after = run(&env, "introspect", "{}");
    assert_eq!(cache_of(&after), "hit-memory");
    assert_eq!(computed_by(&after), bypass_id);
}

#[test]
fn the_same_input_under_two_tenants_is_two_entries() {
    let env = Env::new("cache-tenants");
    let dir = cacheable(&env, &["acme/introspect", "beta/introspect"], "1h");
    let (_registry, _worker) = env.serve_dir(&dir, |_| {});
    let acme = run(&env, "acme/introspect", r#"{"echo":"same"}"#);
    let beta = run(&env, "beta/introspect", r#"{"echo":"same"}"#);
    assert_eq!((cache_of(&acme), cache_of(&beta)), ("miss", "miss"));
    assert_eq!(computed_by(&beta), beta.id);
    let keys = entries(&env);
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert!(
        keys.iter()
            .any(|k| k.starts_with("spool:{cache:acme}:r:introspect:"))
    );
    assert!(
        keys.iter()
            .any(|k| k.starts_with("spool:{cache:beta}:r:introspect:"))
    );
}

#[test]
fn entries_expire_with_the_plugins_ttl() {
    let env = Env::new("cache-ttl");
    let dir = cacheable(&env, &["introspect"], "3s");
    let (_registry, _worker) = env.serve_dir(&dir, |_| {});
    let first = run(&env, "introspect", "{}");
    assert_eq!(cache_of(&first), "miss");
    let ttl: i64 = redis::cmd("PTTL")
        .arg(entries(&env).iter().next().expect("the entry"))
        .query(&mut env.redis_conn())
        .unwrap();
    assert!((1..=3000).contains(&ttl), "Redis TTL {ttl} ms");
    std::thread::sleep(std::time::Duration::from_millis(3300));
    let later = run(&env, "introspect", "{}");
    assert_eq!(cache_of(&later), "miss", "expired in memory and in Redis");
    assert_eq!(computed_by(&later), later.id);
}

/// Which of `jobs` (plugin, payload) are answered by the cache now.
fn hits(env: &Env, jobs: &[(&str, &str)]) -> Vec<bool> {
    jobs.iter()
        .map(|(plugin, payload)| cache_of(&run(env, plugin, payload)).starts_with("hit"))
        .collect()
}

fn purge(env: &Env, args: &[&str]) -> String {
    let mut all = vec!["cache", "purge"];
    all.extend(args);
    let out = spool(env, &all);
    succeeds(&out);
    let said = text(&out.stdout);
    assert!(
        said.contains("1 of 1 workers dropped them from memory"),
        "{said}"
    );
    said
}

#[test]
fn each_purge_removes_only_what_it_names_from_redis_and_from_memory() {
    let env = Env::new("cache-purge");
    let dir = cacheable(
        &env,
        &["acme/introspect", "beta/introspect", "acme/other"],
        "1h",
    );
    let (registry, _worker) = env.serve_dir(&dir, |_| {});
    let jobs = [
        ("acme/introspect", r#"{"echo":"a"}"#),
        ("acme/introspect", r#"{"echo":"b"}"#),
        ("beta/introspect", r#"{"echo":"a"}"#),
        ("acme/other", r#"{"echo":"a"}"#),
    ];
    let fill = |env: &Env| {
        for (plugin, payload) in &jobs {
            run(env, plugin, payload);
        }
    };
    fill(&env);
    assert_eq!(hits(&env, &jobs), [true; 4]);

    // --key: one entry.
    let key = run(&env, jobs[1].0, jobs[1].1).cache_key.unwrap();
    assert!(purge(&env, &["--key", &key]).starts_with("purged 1 cached results"));
    assert_eq!(hits(&env, &jobs), [true, false, true, true]);

    // --plugin: that plugin only (of that tenant).
    assert!(purge(&env, &["--plugin", "beta/introspect"]).starts_with("purged 1 "));
    assert_eq!(hits(&env, &jobs), [true, true, false, true]);

    // --version: acme/other gets a version of its own first.
    let name = spool_runtime::ids::PluginName::parse("acme/introspect").unwrap();
    let version = registry.get(&name).unwrap().version.clone();
    std::fs::write(dir.join("acme/other.wasm"), variant("introspect", 7)).unwrap();
    let other = spool_runtime::ids::PluginName::parse("acme/other").unwrap();
    env.wait_for("acme/other's new version", || {
        registry.get(&other).is_some_and(|p| p.version != version)
    });
    fill(&env);
    // Every entry of that digest (acme/introspect, beta/introspect and
    // acme/other's old version all run these bytes), none of another.
    assert!(purge(&env, &["--version", version.as_str()]).starts_with("purged 4 "));
    assert_eq!(hits(&env, &jobs), [false, false, false, true]);

    // --tenant: everything of acme, nothing of beta.
    let said = purge(&env, &["--tenant", "acme"]);
    assert!(said.starts_with("purged 3 "), "{said}");
    assert_eq!(hits(&env, &jobs), [false, false, true, false]);

    // Stats: entries, bytes and hits per plugin.
    let out = spool(&env, &["cache", "stats", "--json"]);
    let stats: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let beta = stats
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["plugin"] == "beta/introspect")
        .unwrap();
    assert_eq!(beta["entries"], 1);
    assert!(beta["bytes"].as_u64().unwrap() > 50);
    assert!(beta["hit_memory"].as_u64().unwrap() >= 2, "{beta}");
    assert!(beta["miss"].as_u64().unwrap() >= 2, "{beta}");
    assert!(beta["hit_ratio"].as_f64().unwrap() > 0.0);

    // Purges that name nothing, or something malformed, are refused.
    fails_with(&spool(&env, &["cache", "purge"]), 2, "or --all");
    fails_with(
        &spool(&env, &["cache", "purge", "--version", "abc"]),
        2,
        "expected 64 hex digits",
    );
    fails_with(
        &spool(
            &env,
            &["cache", "purge", "--plugin", "acme/x", "--tenant", "beta"],
        ),
        2,
        "is not in --tenant beta",
    );
    assert!(purge(&env, &["--all"]).starts_with("purged 4 "));
    assert!(entries(&env).is_empty());
}

#[test]
fn identical_jobs_at_once_on_one_worker_run_the_handler_once() {
    let env = Env::new("cache-flight");
    let dir = cacheable(&env, &["introspect"], "1h");
    let (_registry, _worker) = env.serve_dir(&dir, |c| c.concurrency = 4);
    let jobs: Vec<_> = (0..8)
        .map(|_| env.job("introspect", r#"{"sleep_ms":300}"#))
        .collect();
    let ids = env.rt.block_on(env.queue.enqueue_many(&jobs)).unwrap();
    let records: Vec<JobRecord> = ids.iter().map(|e| env.wait(&e.id)).collect();
    let runs: BTreeSet<String> = records.iter().map(computed_by).collect();
    assert_eq!(runs.len(), 1, "the handler ran for {runs:?}");
    let statuses: Vec<&str> = records.iter().map(cache_of).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == "miss").count(),
        1,
        "{statuses:?}"
    );
}

#[test]
fn identical_jobs_on_two_workers_run_the_handler_once() {
    let env = Env::new("cache-flight-fleet");
    let dir = cacheable(&env, &["introspect"], "1h");
    // Two worker processes, one job thread each and no claiming ahead, so
    // each takes one of the two jobs.
    let args = ["--concurrency", "1", "--prefetch", "0"];
    let w1 = env.worker_process(SPOOL, &dir, &args);
    let w2 = env.worker_process(SPOOL, &dir, &args);
    // Both up (they report once connected) before the jobs arrive.
    let store = env.fleet_store();
    env.wait_for("both workers", || {
        env.rt.block_on(store.workers()).unwrap().len() == 2
    });
    let jobs: Vec<_> = (0..2)
        .map(|_| env.job("introspect", r#"{"sleep_ms":2000}"#))
        .collect();
    let ids = env.rt.block_on(env.queue.enqueue_many(&jobs)).unwrap();
    let records: Vec<JobRecord> = ids.iter().map(|e| env.wait(&e.id)).collect();
    let workers: BTreeSet<_> = records.iter().map(|r| r.worker.clone()).collect();
    assert_eq!(workers.len(), 2, "each worker took one: {records:?}");
    // The two were in flight at once (else the second is a plain hit and
    // single flight was never tested): each started before the other ended.
    let (a, b) = (&records[0], &records[1]);
    assert!(
        a.started_us < b.finished_us && b.started_us < a.finished_us,
        "the jobs did not overlap: {records:?}"
    );
    let runs: BTreeSet<String> = records.iter().map(computed_by).collect();
    assert_eq!(runs.len(), 1, "the handler ran for {runs:?}");
    let mut statuses: Vec<&str> = records.iter().map(cache_of).collect();
    statuses.sort_unstable();
    assert_eq!(statuses, ["hit-redis", "miss"]);
    // The worker warned that this cacheable plugin imports key-value.
    let said = w1.stderr() + &w2.stderr();
    assert!(said.contains("results are cached"), "{said}");
    assert!(said.contains("spool:job/kv"), "{said}");
}

#[test]
fn bench_shows_that_hits_instantiate_nothing() {
    let env = Env::new("cache-bench");
    let plugins = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/plugins");
    let out = spool(
        &env,
        &[
            "bench",
            "--plugins",
            plugins.to_str().unwrap(),
            "--plugin",
            "hello",
            "--jobs",
            "300",
            "--cache-ttl",
            "1h",
            "--json",
        ],
    );
    succeeds(&out);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["instances"], 1, "{report}");
    assert_eq!(report["cache"]["miss"], 1, "{report}");
    let hits = report["cache"]["hit-memory"].as_u64().unwrap_or(0)
        + report["cache"]["hit-redis"].as_u64().unwrap_or(0);
    assert_eq!(hits, 299, "{report}");
}

#[test]
fn a_purge_exits_75_when_redis_or_a_worker_does_not_answer() {
    let env = Env::new("cache-purge-75");
    let out = crate::command::spool_in(
        &env.dir,
        &["cache", "purge", "--all", "--redis", "redis://127.0.0.1:1"],
    );
    fails_with(
        &out,
        75,
        "spool: the purge stopped after 0 deletions: redis at redis://127.0.0.1:1 is unavailable",
    );
    assert!(text(&out.stderr).contains("retrying later can help"));
    // A frozen worker cannot drop the entries from its memory in time.
    let dir = env.plugins_dir(&[("hello", "hello")]);
    let worker = env.worker_process(SPOOL, &dir, &["--id", "w1"]);
    let store = env.fleet_store();
    env.wait_for("the worker's first report", || {
        env.rt
            .block_on(store.workers())
            .is_ok_and(|w| w.iter().any(|w| w.worker == "w1"))
    });
    worker.signal("STOP");
    let out = spool(&env, &["cache", "purge", "--all", "--wait", "1s"]);
    worker.signal("CONT");
    fails_with(&out, 75, "spool: worker w1 has not read the purge");
    assert!(
        text(&out.stdout).contains("purged 0 cached results"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn worker_flags_turn_the_result_cache_or_its_memory_tier_off() {
    let env = Env::new("cache-flags");
    let dir = cacheable(&env, &["introspect"], "1h");
    let mut worker = env.worker_process(SPOOL, &dir, &["--no-result-cache"]);
    let said: Vec<String> = (0..2)
        .map(|_| cache_of(&run(&env, "introspect", "{}")).to_string())
        .collect();
    assert_eq!(said, ["off", "off"], "--no-result-cache");
    assert!(entries(&env).is_empty(), "{:?}", entries(&env));
    worker.kill();
    // No memory tier: every repeat is answered from Redis.
    let _worker = env.worker_process(SPOOL, &dir, &["--cache-memory", "0"]);
    let said: Vec<String> = (0..3)
        .map(|_| cache_of(&run(&env, "introspect", "{}")).to_string())
        .collect();
    assert_eq!(said, ["miss", "hit-redis", "hit-redis"], "--cache-memory 0");
}
