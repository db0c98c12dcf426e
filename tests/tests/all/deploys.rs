//! Fleet deploys through Redis: `spool plugins deploy | rollback | unpin |
//! history | list` against real `spool worker` processes (and in-process
//! workers), each with its own plugins directory, as on separate machines.

use crate::SPOOL;
use crate::command::{fails_with, succeeds, text};
use spool_runtime::deploy::{FleetStore, WorkerStatus};
use spool_runtime::ids::Version;
use spool_tests::fleet::Env;
use spool_tests::variant;
use std::path::PathBuf;

/// `spool ARGS` against the test's Redis; `plugins` commands wait up to
/// two minutes for the workers (debug builds compile slowly on a busy
/// machine; the command returns as soon as every worker confirms).
fn spool(env: &Env, args: &[&str]) -> std::process::Output {
    let mut all = args.to_vec();
    if matches!(args.get(1), Some(&("deploy" | "rollback" | "unpin"))) {
        all.extend(["--wait", "120s"]);
    }
    crate::command::spool(env, &all)
}

fn digest(bytes: &[u8]) -> String {
    Version::of(bytes).as_str().to_string()
}

fn short(digest: &str) -> &str {
    &digest[..12]
}

fn workers(env: &Env, store: &FleetStore) -> Vec<WorkerStatus> {
    env.rt.block_on(store.workers()).expect("worker reports")
}

/// Wait until `n` workers report serving `plugin` at `version`.
fn wait_serving(env: &Env, store: &FleetStore, n: usize, plugin: &str, version: &str) {
    env.wait_for(
        &format!("{n} workers serving {plugin} {}", short(version)),
        || {
            workers(env, store)
                .iter()
                .filter(|w| {
                    w.plugins
                        .iter()
                        .any(|p| p.name == plugin && p.version.as_str() == version)
                })
                .count()
                == n
        },
    );
}

/// A plugins directory holding `bytes` as `hello.wasm`.
fn plugins_with(env: &Env, label: &str, bytes: &[u8]) -> PathBuf {
    let dir = env.subdir(label);
    std::fs::write(dir.join("hello.wasm"), bytes).unwrap();
    dir
}

/// A component file outside any plugins directory.
fn file(env: &Env, name: &str, bytes: &[u8]) -> String {
    let path = env.subdir("builds").join(name);
    std::fs::write(&path, bytes).unwrap();
    path.display().to_string()
}

/// `spool plugins deploy` of `bytes` (written to a file first) as `name`.
fn deploy_as(env: &Env, bytes: &[u8], name: &str) -> std::process::Output {
    let path = file(env, &format!("{}.wasm", digest(bytes)), bytes);
    spool(env, &["plugins", "deploy", &path, "--as", name])
}

/// The versions `n` new hello jobs ran on.
fn versions_of_jobs(env: &Env, n: usize) -> std::collections::BTreeSet<String> {
    let ids: Vec<String> = (0..n)
        .map(|i| env.enqueue("hello", &format!(r#"{{"name":"n{i}"}}"#)))
        .collect();
    ids.iter()
        .map(|id| env.wait(id).version.expect("a version in the record"))
        .collect()
}

fn one(version: &str) -> std::collections::BTreeSet<String> {
    [version.to_string()].into()
}

#[test]
fn a_deploy_and_a_rollback_reach_every_worker_of_the_fleet() {
    let env = Env::new("fleet-deploy");
    let (v0, v1) = (variant("hello", 0), variant("hello", 1));
    let (d0, d1) = (digest(&v0), digest(&v1));
    let store = env.fleet_store();
    // Two workers with their own directories, as on two machines.
    let _w1 = env.worker_process(SPOOL, &plugins_with(&env, "a", &v0), &["--id", "w1"]);
    let _w2 = env.worker_process(SPOOL, &plugins_with(&env, "b", &v0), &["--id", "w2"]);
    wait_serving(&env, &store, 2, "default/hello", &d0);

    let out = spool(
        &env,
        &[
            "plugins",
            "deploy",
            &file(&env, "hello-1.wasm", &v1),
            "--as",
            "hello",
        ],
    );
    succeeds(&out);
    let said = text(&out.stdout);
    assert!(
        said.contains(&format!("default/hello: deployed {}", short(&d1))),
        "{said}"
    );
    assert!(
        said.contains(&format!("2 of 2 workers serve {}", short(&d1))),
        "{said}"
    );
    assert_eq!(versions_of_jobs(&env, 20), one(&d1));

    let out = spool(&env, &["plugins", "rollback", "hello"]);
    succeeds(&out);
    let said = text(&out.stdout);
    assert!(
        said.contains(&format!(
            "rolled back from {} to {}",
            short(&d1),
            short(&d0)
        )),
        "{said}"
    );
    assert!(
        said.contains(&format!("2 of 2 workers serve {}", short(&d0))),
        "{said}"
    );
    assert_eq!(versions_of_jobs(&env, 20), one(&d0));

    // The history: the rollback, the deploy, the directory version (recorded
    // once although two workers loaded it).
    let out = spool(&env, &["plugins", "history", "hello", "--json"]);
    let history: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let entries: Vec<(&str, &str)> = history["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["action"].as_str().unwrap(), e["digest"].as_str().unwrap()))
        .collect();
    assert_eq!(
        entries,
        [
            ("rollback", d0.as_str()),
            ("deploy", &d1),
            ("directory", &d0)
        ]
    );
    assert_eq!(history["current"], d0.as_str());

    // `list` shows one version on both workers, pinned.
    let out = spool(&env, &["plugins", "list", "--json"]);
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = list["plugins"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{list}");
    assert_eq!(rows[0]["version"], d0.as_str());
    assert_eq!(rows[0]["source"], "deployed");
    assert_eq!(rows[0]["sdk"], "0.1.0");
    assert_eq!(rows[0]["workers"], serde_json::json!(["w1", "w2"]));
    let plain = text(&spool(&env, &["plugins", "list"]).stdout);
    assert!(plain.contains("default/hello"), "{plain}");
    assert!(plain.contains("2 of 2"), "{plain}");
}

#[test]
fn a_worker_that_starts_later_serves_the_pinned_version_from_its_first_job() {
    let env = Env::new("fleet-late");
    let (v0, v1) = (variant("hello", 0), variant("hello", 1));
    let out = spool(
        &env,
        &[
            "plugins",
            "deploy",
            &file(&env, "hello-1.wasm", &v1),
            "--as",
            "hello",
        ],
    );
    succeeds(&out);
    assert!(text(&out.stdout).contains("no worker is running"));
    // Queued before any worker exists; the worker's directory has v0.
    let id = env.enqueue("hello", r#"{"name":"early"}"#);
    let _worker = env.worker_process(SPOOL, &plugins_with(&env, "late", &v0), &[]);
    assert_eq!(env.wait(&id).version.as_deref(), Some(digest(&v1).as_str()));
}

#[test]
fn a_version_a_worker_refuses_never_replaces_the_one_serving() {
    let env = Env::new("fleet-refused");
    let (v0, v1) = (variant("hello", 0), variant("hello", 1));
    let store = env.fleet_store();
    let _worker = env.worker_process(SPOOL, &plugins_with(&env, "a", &v0), &["--id", "w1"]);
    wait_serving(&env, &store, 1, "default/hello", &digest(&v0));
    let manifest = env.subdir("builds").join("big.toml");
    std::fs::write(&manifest, "memory = \"1GiB\"\n").unwrap();
    let out = spool(
        &env,
        &[
            "plugins",
            "deploy",
            &file(&env, "hello-1.wasm", &v1),
            "--as",
            "hello",
            "--manifest",
            manifest.to_str().unwrap(),
        ],
    );
    fails_with(&out, 1, "worker w1 refused it");
    fails_with(&out, 1, "is above this worker's limit");
    assert_eq!(versions_of_jobs(&env, 5), one(&digest(&v0)));
    let out = spool(&env, &["plugins", "list", "--json"]);
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let refused = &list["rejected"][0];
    assert_eq!(refused["worker"], "w1");
    assert_eq!(
        refused["path"],
        format!("redis:default/hello@{}", short(&digest(&v1)))
    );
}

#[test]
fn bad_deploys_and_rollbacks_say_what_is_wrong() {
    let env = Env::new("fleet-bad");
    let not_wasm = file(&env, "notes.wasm", b"hello, world");
    fails_with(
        &spool(&env, &["plugins", "deploy", &not_wasm, "--as", "hello"]),
        2,
        "not deployed: plugin",
    );
    let missing = env.dir.join("missing.wasm");
    fails_with(
        &spool(
            &env,
            &[
                "plugins",
                "deploy",
                missing.to_str().unwrap(),
                "--as",
                "hello",
            ],
        ),
        2,
        "missing.wasm",
    );
    let good = file(&env, "hello.wasm", &variant("hello", 0));
    fails_with(
        &spool(&env, &["plugins", "deploy", &good, "--as", "a/b/c"]),
        2,
        "invalid plugin name",
    );
    fails_with(
        &spool(&env, &["plugins", "rollback", "acme/nothing"]),
        1,
        "plugin acme/nothing has no recorded versions",
    );
    let out = spool(&env, &["plugins", "deploy", &good, "--as", "hello"]);
    succeeds(&out);
    // The same file again changes nothing.
    let out = spool(&env, &["plugins", "deploy", &good, "--as", "hello"]);
    succeeds(&out);
    assert!(text(&out.stdout).contains("is deployed already"));
    let store = env.fleet_store();
    let name = spool_runtime::ids::PluginName::parse("hello").unwrap();
    assert_eq!(env.rt.block_on(store.history(&name)).unwrap().len(), 1);
    fails_with(
        &spool(&env, &["plugins", "rollback", "hello"]),
        1,
        "no version before",
    );
    fails_with(
        &spool(&env, &["plugins", "rollback", "hello", "--to", "ffff"]),
        1,
        "no version ffff in its history",
    );
    // Redis down: retryable, named.
    let out = crate::command::spool_in(
        &env.dir,
        &["plugins", "list", "--redis", "redis://127.0.0.1:1"],
    );
    fails_with(&out, 75, "redis://127.0.0.1:1");
    // Too big for the store: refused before anything is sent.
    let big = vec![0u8; usize::try_from(spool_runtime::deploy::MAX_DEPLOY_BYTES).unwrap() + 1];
    let refused = env
        .rt
        .block_on(store.deploy(&name, &big, None, None, "test"));
    assert!(
        matches!(
            refused,
            Err(spool_runtime::deploy::DeployError::TooLarge { .. })
        ),
        "{refused:?}"
    );
}

#[test]
fn the_history_keeps_the_last_versions_and_drops_the_bytes_of_older_ones() {
    let env = Env::new("fleet-keep");
    let versions: Vec<Vec<u8>> = (0..5).map(|n| variant("hello", n)).collect();
    for (n, v) in versions.iter().enumerate() {
        let path = file(&env, &format!("hello-{n}.wasm"), v);
        let out = spool(
            &env,
            &[
                "plugins",
                "deploy",
                &path,
                "--as",
                "acme/hello",
                "--keep-versions",
                "3",
            ],
        );
        succeeds(&out);
    }
    let store = env.fleet_store();
    let name = spool_runtime::ids::PluginName::parse("acme/hello").unwrap();
    let history = env.rt.block_on(store.history(&name)).unwrap();
    let kept: Vec<String> = history.iter().map(|e| e.digest.to_string()).collect();
    let newest: Vec<String> = versions.iter().rev().take(3).map(|v| digest(v)).collect();
    assert_eq!(kept, newest);
    // The kept versions' bytes stay; the dropped ones' expire within the
    // hour (a deploy of that version racing the trim still finds them).
    let mut redis = env.redis_conn();
    let ttl_of = |redis: &mut spool_runtime::redis::SyncConn, v: &[u8]| -> i64 {
        let key = format!("spool:blob:{{{}}}:acme/hello", digest(v));
        redis::cmd("TTL").arg(&key).query(redis).unwrap()
    };
    for (n, v) in versions.iter().enumerate() {
        let ttl = ttl_of(&mut redis, v);
        if n >= 2 {
            assert_eq!(ttl, -1, "bytes of kept version {n} expire");
        } else {
            assert!(
                (1..=3600).contains(&ttl),
                "bytes of dropped version {n}: TTL {ttl}"
            );
        }
    }
    fails_with(
        &spool(
            &env,
            &[
                "plugins",
                "rollback",
                "acme/hello",
                "--to",
                &digest(&versions[0]),
            ],
        ),
        1,
        "no version",
    );
    // A plugin no longer used is forgotten with its bytes, once unpinned.
    fails_with(
        &spool(&env, &["plugins", "forget", "acme/hello"]),
        1,
        "unpin acme/hello` first",
    );
    let out = spool(&env, &["plugins", "unpin", "acme/hello"]);
    succeeds(&out);
    let out = spool(&env, &["plugins", "forget", "acme/hello"]);
    let said = text(&out.stdout);
    assert!(said.contains("with the bytes of 3 versions"), "{said}");
    assert!(env.rt.block_on(store.history(&name)).unwrap().is_empty());
    for (n, v) in versions.iter().enumerate() {
        let ttl = ttl_of(&mut redis, v);
        assert!(
            n < 2 && ttl > 0 || ttl == -2,
            "bytes of version {n} after forget: TTL {ttl}"
        );
    }
}

#[test]
fn a_pin_whose_bytes_are_gone_is_refused_and_named() {
    let env = Env::new("fleet-gone");
    let (v0, v1) = (variant("hello", 0), variant("hello", 1));
    succeeds(&deploy_as(&env, &v1, "hello"));
    // Someone deletes the stored bytes; then a worker starts.
    let key = format!("spool:blob:{{{}}}:default/hello", digest(&v1));
    let _: () = redis::cmd("DEL")
        .arg(&key)
        .query(&mut env.redis_conn())
        .unwrap();
    let _worker = env.worker_process(SPOOL, &plugins_with(&env, "a", &v0), &["--id", "w1"]);
    // It serves its directory's version and says why not the pin.
    assert_eq!(versions_of_jobs(&env, 3), one(&digest(&v0)));
    let store = env.fleet_store();
    env.wait_for("the refusal in the report", || {
        workers(&env, &store).iter().any(|w| {
            w.rejected
                .iter()
                .any(|r| r.why.contains("no longer stored"))
        })
    });
    // A rollback to the directory version (its bytes are kept) fixes it.
    let d0 = digest(&v0);
    let out = spool(&env, &["plugins", "rollback", "hello", "--to", &d0[..8]]);
    succeeds(&out);
    let said = text(&out.stdout);
    assert!(said.contains("1 of 1 workers serve"), "{said}");
    env.wait_for("the refusal cleared", || {
        workers(&env, &store).iter().all(|w| w.rejected.is_empty())
    });
}

#[test]
fn directory_versions_are_recorded_and_a_pin_wins_over_the_directory_until_unpinned() {
    let env = Env::new("fleet-directory");
    let (v0, v1) = (variant("hello", 0), variant("hello", 1));
    let (d0, d1) = (digest(&v0), digest(&v1));
    let dir = plugins_with(&env, "plugins", &v0);
    let store = env.fleet_store();
    let name = spool_runtime::ids::PluginName::parse("hello").unwrap();
    // Two workers on the same directory record its version once.
    let (_r1, _w1) = env.serve_dir(&dir, |_| {});
    let (_r2, _w2) = env.serve_dir(&dir, |_| {});
    wait_serving(&env, &store, 2, "default/hello", &d0);
    env.wait_for("the directory version in the history", || {
        !env.rt.block_on(store.history(&name)).unwrap().is_empty()
    });

    let tmp = dir.join(".hello.wasm.tmp");
    std::fs::write(&tmp, &v1).unwrap();
    std::fs::rename(&tmp, dir.join("hello.wasm")).unwrap();
    wait_serving(&env, &store, 2, "default/hello", &d1);
    env.wait_for("the new directory version in the history", || {
        env.rt.block_on(store.history(&name)).unwrap().len() == 2
    });
    let history = env.rt.block_on(store.history(&name)).unwrap();
    let recorded: Vec<&str> = history.iter().map(|e| e.digest.as_str()).collect();
    assert_eq!(recorded, [d1.as_str(), d0.as_str()]);

    // Roll back to the old file's version: it serves although the
    // directory holds the new file.
    let out = spool(&env, &["plugins", "rollback", "hello"]);
    succeeds(&out);
    assert!(text(&out.stdout).contains(&format!("2 of 2 workers serve {}", short(&d0))));
    assert_eq!(versions_of_jobs(&env, 5), one(&d0));
    let plain = text(&spool(&env, &["plugins", "list"]).stdout);
    assert!(plain.contains("the pinned version wins"), "{plain}");

    let out = spool(&env, &["plugins", "unpin", "hello"]);
    succeeds(&out);
    assert!(text(&out.stdout).contains("2 of 2 workers serve their directory's file"));
    assert_eq!(versions_of_jobs(&env, 5), one(&d1));
}

#[test]
fn a_deploy_and_a_rollback_reach_a_worker_through_its_event_stream_alone() {
    // One server: the test finds the worker's blocked reader in its one
    // `CLIENT LIST`.
    let env = Env::standalone("fleet-events");
    let (v0, v1) = (variant("hello", 0), variant("hello", 1));
    let (d0, d1) = (digest(&v0), digest(&v1));
    let store = env.fleet_store();
    // The safety nets slowed down or off: the periodic resync every hour,
    // no directory rescan. Only the worker's blocking read of the fleet
    // store's events can bring it a deploy within the commands' wait.
    let dir = plugins_with(&env, "events", &v0);
    let (_registry, worker) = env.serve_dir(&dir, |c| {
        c.fleet_resync = std::time::Duration::from_secs(3600);
        c.rescan = None;
    });
    wait_serving(&env, &store, 1, "default/hello", &d0);
    // A reconnection reads the pins whole too: the same blocked reader
    // must be there after the deploy and the rollback.
    // (Its first read follows its first report: wait for it.)
    env.wait_for("the worker's blocked XREAD", || {
        xread_clients(&env).len() == 1
    });
    let reader = xread_clients(&env);
    let built = file(&env, "hello-1.wasm", &v1);
    let out = spool(&env, &["plugins", "deploy", &built, "--as", "hello"]);
    succeeds(&out);
    assert!(
        text(&out.stdout).contains(&format!("1 of 1 workers serve {}", short(&d1))),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(versions_of_jobs(&env, 5), one(&d1));
    succeeds(&spool(&env, &["plugins", "rollback", "hello"]));
    assert_eq!(versions_of_jobs(&env, 5), one(&d0));
    assert_eq!(xread_clients(&env), reader, "the worker reconnected");
    worker.stop();
}

/// The ids of the Redis clients whose last command was XREAD (a worker's
/// fleet follower blocks on the store's events with it).
fn xread_clients(env: &Env) -> Vec<String> {
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query(&mut env.redis_conn())
        .unwrap();
    list.lines()
        .filter(|line| line.contains(" cmd=xread "))
        .filter_map(|line| line.split(' ').find_map(|f| f.strip_prefix("id=")))
        .map(str::to_string)
        .collect()
}

#[test]
fn a_worker_that_does_not_answer_in_time_makes_deploy_exit_75() {
    let env = Env::new("fleet-late");
    let (v0, v1) = (variant("hello", 0), variant("hello", 1));
    let (d0, d1) = (digest(&v0), digest(&v1));
    let store = env.fleet_store();
    let worker = env.worker_process(SPOOL, &plugins_with(&env, "late", &v0), &["--id", "w1"]);
    wait_serving(&env, &store, 1, "default/hello", &d0);
    // Frozen: its report stays fresh for 30 s, but it cannot load the pin.
    worker.signal("STOP");
    let built = file(&env, "hello-1.wasm", &v1);
    let out = crate::command::spool(
        &env,
        &["plugins", "deploy", &built, "--as", "hello", "--wait", "1s"],
    );
    worker.signal("CONT");
    fails_with(
        &out,
        75,
        &format!(
            "spool: worker w1 still serves {} (directory); it may still be compiling",
            short(&d0)
        ),
    );
    assert!(
        text(&out.stdout).contains(&format!("0 of 1 workers serve {}", short(&d1))),
        "{}",
        text(&out.stdout)
    );
    // The pin stands: the worker serves it once it runs again.
    wait_serving(&env, &store, 1, "default/hello", &d1);
}

#[test]
fn rollbacks_walk_back_through_the_history_and_never_return() {
    let env = Env::new("fleet-rollbacks");
    let versions: Vec<Vec<u8>> = (0..4).map(|n| variant("hello", n)).collect();
    let d: Vec<String> = versions.iter().map(|v| digest(v)).collect();
    let current = || -> String {
        let out = spool(&env, &["plugins", "history", "hello", "--json"]);
        let history: serde_json::Value = serde_json::from_str(&succeeds(&out)).unwrap();
        history["current"].as_str().unwrap_or_default().to_string()
    };
    // No worker runs: each command pins and says nobody had to confirm.
    for (n, bytes) in versions[..3].iter().enumerate() {
        let built = file(&env, &format!("hello-{n}.wasm"), bytes);
        succeeds(&spool(
            &env,
            &["plugins", "deploy", &built, "--as", "hello"],
        ));
    }
    assert_eq!(current(), d[2]);
    for (from, to) in [(2, 1), (1, 0)] {
        let out = spool(&env, &["plugins", "rollback", "hello"]);
        assert!(
            succeeds(&out).contains(&format!(
                "rolled back from {} to {}",
                short(&d[from]),
                short(&d[to])
            )),
            "{}",
            text(&out.stdout)
        );
        assert_eq!(current(), d[to]);
    }
    fails_with(
        &spool(&env, &["plugins", "rollback", "hello"]),
        1,
        &format!("no version before {}", short(&d[0])),
    );
    // A new deploy, then a rollback: back to v0, never to v1 or v2, which
    // were rolled back from.
    let built = file(&env, "hello-3.wasm", &versions[3]);
    succeeds(&spool(
        &env,
        &["plugins", "deploy", &built, "--as", "hello"],
    ));
    succeeds(&spool(&env, &["plugins", "rollback", "hello"]));
    assert_eq!(current(), d[0]);
}

#[test]
fn a_rollback_that_finds_the_pin_changed_exits_75_and_changes_nothing() {
    let env = Env::new("fleet-conflict");
    let store = env.fleet_store();
    let name = spool_runtime::ids::PluginName::parse("hello").unwrap();
    // Two versions workers loaded from their directories: the newer one
    // is current, the rollback's target is the older one.
    for n in 0..2 {
        let bytes = variant("hello", n);
        let recorded = store.record_directory(&name, &bytes, None, None, "w");
        env.rt.block_on(recorded).unwrap();
    }
    // Another deploy lands between the command's look at the pin and its
    // write: stood in for by a pin entry the command cannot read (so it
    // believes nothing is pinned) while the script sees a digest.
    let other = "f".repeat(64);
    let _: () = redis::cmd("HSET")
        .arg("spool:{plugins}:pinned")
        .arg("default/hello")
        .arg(format!(r#"{{"digest":"{other}"}}"#))
        .query(&mut env.redis_conn())
        .unwrap();
    fails_with(
        &spool(&env, &["plugins", "rollback", "hello"]),
        75,
        "its pinned version changed while rolling back (another deploy or rollback)",
    );
    let pinned: String = redis::cmd("HGET")
        .arg("spool:{plugins}:pinned")
        .arg("default/hello")
        .query(&mut env.redis_conn())
        .unwrap();
    assert!(
        pinned.contains(&other),
        "the rollback changed the pin: {pinned}"
    );
}

#[test]
fn unreadable_pin_entries_are_skipped_and_deploys_still_reach_the_worker() {
    let env = Env::new("fleet-bad-pins");
    let (v0, v1) = (variant("hello", 0), variant("hello", 1));
    let _: () = redis::cmd("HSET")
        .arg("spool:{plugins}:pinned")
        .arg("default/other")
        .arg(r#"{"digest":"zz","at_us":1,"action":"deploy","by":"x"}"#)
        .arg("evil\u{1b}[31m/x")
        .arg("not json")
        .query(&mut env.redis_conn())
        .unwrap();
    let store = env.fleet_store();
    let (_registry, _worker) = env.serve_dir(&plugins_with(&env, "plugins", &v0), |_| {});
    wait_serving(&env, &store, 1, "default/hello", &digest(&v0));
    let out = spool(
        &env,
        &[
            "plugins",
            "deploy",
            &file(&env, "hello-1.wasm", &v1),
            "--as",
            "hello",
        ],
    );
    assert!(
        text(&out.stdout).contains("1 of 1 workers serve"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(versions_of_jobs(&env, 3), one(&digest(&v1)));
    let listed = succeeds(&spool(&env, &["plugins", "list"]));
    assert!(!listed.contains('\u{1b}'), "{listed}");
}

#[test]
fn a_worker_claims_nothing_before_its_first_sync_with_the_fleet_store() {
    let env = Env::new("fleet-first-sync");
    // A fleet store the worker cannot read (a key of the wrong type) until
    // the operator repairs it.
    let _: () = redis::cmd("SET")
        .arg("spool:{plugins}:pinned")
        .arg("broken")
        .query(&mut env.redis_conn())
        .unwrap();
    let id = env.enqueue("hello", r#"{"name":"early"}"#);
    let dir = plugins_with(&env, "plugins", &variant("hello", 0));
    let (_registry, _worker) = env.serve_dir(&dir, |_| {});
    // The worker retries the store (every 100 ms to 5 s) and claims nothing.
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert_eq!(
        env.record(&id).status,
        Some(spool_runtime::queue::Status::Queued)
    );
    let _: () = redis::cmd("DEL")
        .arg("spool:{plugins}:pinned")
        .query(&mut env.redis_conn())
        .unwrap();
    assert_eq!(
        env.wait(&id).status,
        Some(spool_runtime::queue::Status::Succeeded)
    );
    // Told to, a worker claims after a while without it.
    let _: () = redis::cmd("SET")
        .arg("spool:{plugins}:pinned")
        .arg("broken")
        .query(&mut env.redis_conn())
        .unwrap();
    let late = env.enqueue("other", r#"{"name":"late"}"#);
    let dir = env.subdir("other");
    std::fs::write(dir.join("other.wasm"), variant("hello", 0)).unwrap();
    let (_r, _w) = env.serve_dir(&dir, |c| {
        c.fleet_sync_wait = Some(std::time::Duration::from_millis(200));
    });
    assert_eq!(
        env.wait(&late).status,
        Some(spool_runtime::queue::Status::Succeeded)
    );
}

#[test]
fn bytes_stored_under_the_earlier_key_are_still_served_and_forgotten() {
    let env = Env::new("fleet-legacy-blob");
    let v1 = variant("hello", 1);
    succeeds(&deploy_as(&env, &v1, "hello"));
    // As a store written before the bytes got a slot per digest.
    let mut redis = env.redis_conn();
    let new = format!("spool:blob:{{{}}}:default/hello", digest(&v1));
    let old = format!("spool:{{plugins}}:blob:default/hello:{}", digest(&v1));
    let _: () = redis::cmd("DEL").arg(&new).query(&mut redis).unwrap();
    let _: () = redis::cmd("SET")
        .arg(&old)
        .arg(&v1)
        .query(&mut redis)
        .unwrap();
    let v0 = variant("hello", 0);
    let _worker = env.worker_process(SPOOL, &plugins_with(&env, "a", &v0), &["--id", "w1"]);
    assert_eq!(versions_of_jobs(&env, 2), one(&digest(&v1)));
    // A rollback to it copies the bytes under their own key for good
    // (a trim deletes the earlier key inside its script).
    succeeds(&deploy_as(&env, &variant("hello", 2), "hello"));
    let to = digest(&v1);
    succeeds(&spool(
        &env,
        &["plugins", "rollback", "hello", "--to", &to[..12]],
    ));
    let ttl: i64 = redis::cmd("TTL").arg(&new).query(&mut redis).unwrap();
    assert_eq!(
        ttl, -1,
        "the rolled-back version's bytes under their own key"
    );
    env.wait_for("jobs on the rolled-back version", || {
        versions_of_jobs(&env, 1) == one(&digest(&v1))
    });
    succeeds(&spool(&env, &["plugins", "unpin", "hello"]));
    let out = spool(&env, &["plugins", "forget", "hello"]);
    succeeds(&out);
    let exists: bool = redis::cmd("EXISTS").arg(&old).query(&mut redis).unwrap();
    assert!(!exists, "the earlier key outlived forget");
}
