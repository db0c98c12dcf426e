//! Redis Cluster (issue 16): tenants' queues spread over the masters of a
//! real local cluster (3 masters, 3 replicas), one worker serves them all,
//! and the operations about the whole fleet (job lookups, tenant lists,
//! cache stats and purges, dead letters) visit every master; plugin bytes
//! spread by digest; a slot moves under load and a master dies under load
//! without losing a job. The rest of
//! the queue's behaviour runs on a cluster too: the queue topics again
//! with `SPOOL_TEST_REDIS=cluster` (scripts/test.sh).

use crate::cache::cacheable;
use crate::command::{spool, text};
use spool_runtime::ids::{PluginName, Version};
use spool_runtime::queue::{Durability, NewJob, Queue, QueueConfig, Status};
use spool_tests::fleet::Env;
use spool_tests::variant;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const TENANTS: [&str; 8] = ["t0", "t1", "t2", "t3", "t4", "t5", "t6", "t7"];

/// For each master (by port), how many keys match `pattern` there: read
/// from each node directly, as an operator would with `redis-cli -p`.
fn keys_per_master(env: &mut Env, pattern: &str) -> BTreeMap<u16, usize> {
    let mut found = BTreeMap::new();
    // A killed node is skipped: its replica serves its slots now.
    for node in env
        .redis
        .cluster()
        .nodes()
        .iter()
        .filter(|n| n.pid().is_some())
    {
        let mut conn = redis::Client::open(node.url())
            .and_then(|c| c.get_connection())
            .expect("a direct connection to a node");
        let role: Vec<redis::Value> = redis::cmd("ROLE").query(&mut conn).unwrap();
        let master = matches!(role.first(), Some(redis::Value::BulkString(r)) if r == b"master");
        if !master {
            continue;
        }
        let keys: Vec<String> = redis::cmd("KEYS").arg(pattern).query(&mut conn).unwrap();
        found.insert(node.port(), keys.len());
    }
    found
}

fn hello_of_every_tenant() -> Vec<(String, &'static str)> {
    TENANTS
        .iter()
        .map(|t| (format!("{t}/hello"), "hello"))
        .collect()
}

#[test]
fn tenants_spread_over_the_masters_and_one_worker_serves_them_all() {
    let mut env = Env::on_cluster("cluster-spread");
    let plugins = hello_of_every_tenant();
    let plugins: Vec<(&str, &str)> = plugins.iter().map(|(n, f)| (n.as_str(), *f)).collect();
    let _worker = env.worker(&plugins, |_| {});
    // One batch over every tenant: one script call per tenant, each on its
    // tenant's master.
    let jobs: Vec<NewJob> = TENANTS
        .iter()
        .flat_map(|t| {
            (0..5).map(move |i| {
                NewJob::new(
                    PluginName::parse(&format!("{t}/hello")).unwrap(),
                    format!(r#"{{"name":"{t}-{i}"}}"#).as_bytes(),
                )
            })
        })
        .collect();
    let enqueued = env
        .rt
        .block_on(env.queue.enqueue_many(&jobs))
        .expect("a batch over eight tenants");
    assert_eq!(enqueued.len(), 40);
    for (job, done) in jobs.iter().zip(&enqueued) {
        let record = env.wait(&done.id);
        assert_eq!(record.status, Some(Status::Succeeded), "{record:?}");
        let name = String::from_utf8_lossy(&job.payload).to_string();
        let name = name
            .trim_start_matches(r#"{"name":""#)
            .trim_end_matches(r#""}"#);
        assert_eq!(
            record.output.as_deref(),
            Some(format!(r#"{{"greeting":"Hello, {name}!"}}"#).as_str())
        );
    }
    let records = keys_per_master(&mut env, "spool:{default/t*}:job:*");
    assert_eq!(records.values().sum::<usize>(), 40, "{records:?}");
    let holding = records.values().filter(|n| **n > 0).count();
    assert!(
        holding >= 2,
        "the tenants' records sit on one master: {records:?}"
    );
}

#[test]
fn fleet_wide_reads_and_purges_visit_every_master() {
    let mut env = Env::on_cluster("cluster-fleet");
    let names: Vec<String> = TENANTS.iter().map(|t| format!("{t}/introspect")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let dir = cacheable(&env, &names, "1h");
    let (_registry, _worker) = env.serve_dir(&dir, |_| {});
    let ids: Vec<String> = names.iter().map(|p| env.enqueue(p, "{}")).collect();
    for id in &ids {
        assert_eq!(env.wait(id).status, Some(Status::Succeeded));
    }

    // `spool job` finds each job whichever master holds it.
    for (id, tenant) in ids.iter().zip(TENANTS) {
        let out = spool(&env, &["job", id, "--json"]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let record: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(record["plugin"], format!("{tenant}/introspect"));
    }
    // `spool tenants list` names every tenant.
    let out = spool(&env, &["tenants", "list"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let listed = text(&out.stdout);
    for tenant in TENANTS {
        assert!(
            listed.contains(&format!("\n{tenant} ")),
            "{tenant} missing:\n{listed}"
        );
    }

    // The cache's entries are spread too; stats count them all and a purge
    // leaves none on any master.
    let entries = keys_per_master(&mut env, "spool:{cache:*}:r:*");
    assert_eq!(entries.values().sum::<usize>(), 8, "{entries:?}");
    assert!(
        entries.values().filter(|n| **n > 0).count() >= 2,
        "{entries:?}"
    );
    let out = spool(&env, &["cache", "stats", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stats: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let counted: u64 = stats
        .as_array()
        .expect("one row per plugin")
        .iter()
        .map(|row| row["entries"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(counted, 8, "{stats}");
    let out = spool(&env, &["cache", "purge", "--all"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let left = keys_per_master(&mut env, "spool:{cache:*}:r:*");
    assert_eq!(left.values().sum::<usize>(), 0, "{left:?}");
}

#[test]
fn plugin_bytes_spread_by_digest_and_deploys_work_across_slots() {
    let mut env = Env::on_cluster("cluster-deploys");
    let builds = env.subdir("builds");
    let digest = |bytes: &[u8]| Version::of(bytes).as_str().to_string();
    // Eight tenants' plugins, each its own bytes.
    let versions: Vec<Vec<u8>> = (0..8).map(|n| variant("hello", n)).collect();
    for (tenant, bytes) in TENANTS.iter().zip(&versions) {
        let path = builds.join(format!("{tenant}.wasm"));
        std::fs::write(&path, bytes).unwrap();
        let name = format!("{tenant}/hello");
        let path = path.display().to_string();
        let out = spool(&env, &["plugins", "deploy", &path, "--as", &name]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    }
    let blobs = keys_per_master(&mut env, "spool:blob:*");
    assert_eq!(blobs.values().sum::<usize>(), 8, "{blobs:?}");
    let holding = blobs.values().filter(|n| **n > 0).count();
    assert!(holding > 1, "every plugin's bytes on one master: {blobs:?}");
    // A worker serves the pinned bytes over its directory's, records its
    // directory's version (bytes and all), and a rollback to that works.
    let dir = env.plugins_dir(&[("t0/hello", "hello")]);
    let original = std::fs::read(dir.join("t0/hello.wasm")).unwrap();
    let (_registry, _worker) = env.serve_dir(&dir, |_| {});
    let ran_on = |env: &Env| {
        let id = env.enqueue("t0/hello", r#"{"name":"Ada"}"#);
        env.wait(&id).version.expect("a version in the record")
    };
    assert_eq!(ran_on(&env), digest(&versions[0]));
    let store = env.fleet_store();
    let name = PluginName::parse("t0/hello").unwrap();
    env.wait_for("the directory version in the history", || {
        let history = env.rt.block_on(store.history(&name)).unwrap();
        history
            .iter()
            .any(|e| e.digest.as_str() == digest(&original))
    });
    let out = spool(
        &env,
        &[
            "plugins",
            "rollback",
            "t0/hello",
            "--to",
            &digest(&original)[..12],
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    env.wait_for("jobs on the directory version", || {
        ran_on(&env) == digest(&original)
    });
    // Forgetting a plugin deletes its bytes wherever they are.
    for step in [
        ["plugins", "unpin", "t0/hello"],
        ["plugins", "forget", "t0/hello"],
    ] {
        let out = spool(&env, &step);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    }
    let left = keys_per_master(&mut env, "spool:blob:*:t0/hello");
    assert_eq!(left.values().sum::<usize>(), 0, "{left:?}");
    let others = keys_per_master(&mut env, "spool:blob:*");
    assert_eq!(others.values().sum::<usize>(), 7, "{others:?}");
}

/// The master (its index among the cluster's nodes) holding `key` now,
/// asked of each master directly.
fn master_of(env: &mut Env, key: &str) -> usize {
    let nodes = env.redis.cluster().nodes();
    for (i, node) in nodes.iter().enumerate() {
        let Ok(mut conn) = redis::Client::open(node.url()).and_then(|c| c.get_connection()) else {
            continue;
        };
        let owns: redis::RedisResult<i64> = redis::cmd("EXISTS").arg(key).query(&mut conn);
        if owns == Ok(1) {
            return i;
        }
    }
    panic!("no master holds {key}");
}

#[test]
fn a_killed_master_fails_over_and_no_acknowledged_job_is_lost() {
    let mut env = Env::on_cluster("cluster-failover");
    let config = QueueConfig {
        durability: Durability::Replicated(1),
        ..env.queue_config()
    };
    let queue = env
        .rt
        .block_on(Queue::connect(config.clone()))
        .expect("a queue handle that waits for a replica");
    let _worker = env.worker(&[("acme/hello", "hello")], |c| c.queue = config.clone());
    let mut acknowledged: Vec<String> = (0..100)
        .map(|i| enqueue(&env.rt, &queue, i, &mut || {}).0)
        .collect();
    let stats = format!("{}:stats", env.tenant_keys("acme"));
    let victim = master_of(&mut env, &stats);
    let heir = replica_of(&mut env, victim);
    env.redis.cluster().node_mut(victim).kill();
    let killed_at = Instant::now();
    // Once the replica has taken over, it has no replica of its own:
    // `replicated` confirms nothing until one is back. The killed node is
    // brought back then, as a supervisor would, and rejoins as a replica.
    let mut promoted_after = None;
    let mut longest = Duration::ZERO;
    for i in 100..300 {
        let (id, took) = enqueue(&env.rt, &queue, i, &mut || {
            if promoted_after.is_none() && role(&env.redis, heir) == "master" {
                promoted_after = Some(killed_at.elapsed());
                env.redis
                    .cluster()
                    .node_mut(victim)
                    .restart()
                    .expect("restarting the killed node");
            }
        });
        longest = longest.max(took);
        acknowledged.push(id);
    }
    eprintln!(
        "failover: replica promoted {promoted_after:?} after the kill; enqueues acknowledged again {longest:?} after it"
    );
    for id in &acknowledged {
        let record = env.wait(id);
        assert_eq!(record.status, Some(Status::Succeeded), "{record:?}");
    }
    // Each acknowledged job once: 300 distinct ids, 300 successes.
    let distinct: std::collections::BTreeSet<&String> = acknowledged.iter().collect();
    assert_eq!(distinct.len(), 300);
    let records = keys_per_master(&mut env, "spool:{default/acme}:job:*");
    assert_eq!(records.values().sum::<usize>(), 300, "{records:?}");
}

#[test]
fn a_slot_migrated_under_load_loses_no_job_and_fails_none() {
    let mut env = Env::on_cluster("cluster-migrate");
    let queue = env.other_queue();
    let _worker = env.worker(&[("acme/hello", "hello")], |_| {});
    // Keys in the slot before the move, so that MIGRATE has work to do
    // while jobs keep arriving and finishing.
    let mut acknowledged: Vec<String> = (0..200)
        .map(|i| enqueue(&env.rt, &queue, i, &mut || {}).0)
        .collect();
    let stats = format!("{}:stats", env.tenant_keys("acme"));
    let from = master_of(&mut env, &stats);
    let to = (from + 1) % env.redis.cluster().masters();
    let slot = keyslot(&mut env, &stats);
    let spool_tests::backend::TestRedis::Cluster(cluster) = &env.redis else {
        panic!("a cluster test");
    };
    let (moved, during) = std::thread::scope(|scope| {
        // A few keys per MIGRATE, so that the move spans many enqueues,
        // claims and acks.
        let mover = scope.spawn(|| cluster.move_slot(slot, to, 5));
        let mut during = 0;
        while !mover.is_finished() {
            acknowledged.push(enqueue(&env.rt, &queue, 200 + during, &mut || {}).0);
            during += 1;
        }
        // And some after, once clients have learned the new owner.
        for i in 0..100 {
            acknowledged.push(enqueue(&env.rt, &queue, 200 + during + i, &mut || {}).0);
        }
        (mover.join().expect("the mover thread"), during)
    });
    let moved = moved.expect("moving the tenant's slot");
    eprintln!(
        "slot {slot}: {moved} keys moved from node {from} to {to}; {during} enqueues during the move"
    );
    assert!(moved >= 200, "the tenant's records moved: {moved}");
    assert_eq!(master_of(&mut env, &stats), to, "the slot's new owner");
    for id in &acknowledged {
        let record = env.wait(id);
        assert_eq!(record.status, Some(Status::Succeeded), "{record:?}");
        // A redirection is never a failed attempt.
        assert_eq!(record.attempts, 1, "{record:?}");
    }
    let distinct: std::collections::BTreeSet<&String> = acknowledged.iter().collect();
    assert_eq!(distinct.len(), acknowledged.len());
    let records = keys_per_master(&mut env, "spool:{default/acme}:job:*");
    assert_eq!(
        records.values().sum::<usize>(),
        acknowledged.len(),
        "{records:?}"
    );
}

/// The hash slot of `key`, as the cluster computes it.
fn keyslot(env: &mut Env, key: &str) -> u16 {
    let node = &env.redis.cluster().nodes()[0];
    let mut conn = redis::Client::open(node.url())
        .and_then(|c| c.get_connection())
        .expect("a direct connection to a node");
    redis::cmd("CLUSTER")
        .arg("KEYSLOT")
        .arg(key)
        .query(&mut conn)
        .expect("CLUSTER KEYSLOT")
}

/// The role (`master`, `slave`) node `i` reports, `down` if it does not
/// answer.
fn role(redis: &spool_tests::backend::TestRedis, i: usize) -> String {
    let spool_tests::backend::TestRedis::Cluster(cluster) = redis else {
        panic!("a cluster test");
    };
    let node = &cluster.nodes()[i];
    redis::Client::open(node.url())
        .and_then(|c| c.get_connection_with_timeout(Duration::from_millis(300)))
        .and_then(|mut c| redis::cmd("ROLE").query::<Vec<redis::Value>>(&mut c))
        .ok()
        .and_then(|r| r.into_iter().next())
        .and_then(|v| match v {
            redis::Value::BulkString(b) => Some(String::from_utf8_lossy(&b).into_owned()),
            _ => None,
        })
        .unwrap_or_else(|| "down".to_string())
}

/// The node replicating master `victim`.
fn replica_of(env: &mut Env, victim: usize) -> usize {
    let cluster = env.redis.cluster();
    let port = i64::from(cluster.nodes()[victim].port());
    for (i, node) in cluster.nodes().iter().enumerate() {
        let mut conn = redis::Client::open(node.url())
            .and_then(|c| c.get_connection())
            .expect("a direct connection to a node");
        let r: Vec<redis::Value> = redis::cmd("ROLE").query(&mut conn).unwrap();
        // A replica answers ["slave", master host, master port, …].
        if matches!(r.get(2), Some(redis::Value::Int(p)) if *p == port) {
            return i;
        }
    }
    panic!("no replica of node {victim}");
}

/// Enqueue job `i` with an idempotency key, retrying what is retryable
/// until it is acknowledged (at most 60 s; `between` runs before each
/// retry): what a careful client does through a failover. Its id, and how
/// long that took.
fn enqueue(
    rt: &tokio::runtime::Runtime,
    queue: &Queue,
    i: usize,
    between: &mut dyn FnMut(),
) -> (String, Duration) {
    let started = Instant::now();
    let mut job = NewJob::new(
        PluginName::parse("acme/hello").unwrap(),
        format!(r#"{{"name":"n{i}"}}"#).as_bytes(),
    );
    job.idempotency_key = Some(format!("job-{i}"));
    loop {
        match rt.block_on(queue.enqueue(&job)) {
            Ok(done) => return (done.id, started.elapsed()),
            Err(e) if e.is_retryable() && started.elapsed() < Duration::from_secs(60) => {
                between();
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("enqueue {i}: {e}"),
        }
    }
}

/// The master (its index among the cluster's nodes) that serves `key`'s
/// slot: the one that answers for it rather than with `MOVED`.
fn serving(env: &mut Env, key: &str) -> usize {
    let nodes = env.redis.cluster().nodes();
    for (i, node) in nodes.iter().enumerate() {
        let Ok(mut conn) = redis::Client::open(node.url()).and_then(|c| c.get_connection()) else {
            continue;
        };
        let here: redis::RedisResult<i64> = redis::cmd("EXISTS").arg(key).query(&mut conn);
        if here.is_ok() {
            return i;
        }
    }
    panic!("no master serves {key}");
}

#[test]
fn a_new_tenant_is_named_in_the_queues_slot_before_its_jobs_are_stored() {
    // The sweep finds only tenants named in the queue's slot (`Q:seq`): a
    // new tenant's jobs stored before that slot is told of them would wait
    // unseen if the enqueue stopped in between (killed, a failover). So a
    // new tenant's first enqueue names it there first.
    let mut env = Env::on_cluster("cluster-register");
    let queue_key = format!("{}:seq", env.queue.key_prefix());
    let queue_master = serving(&mut env, &queue_key);
    let tenant = (0..100)
        .map(|i| format!("fresh{i}"))
        .find(|t| {
            let key = format!("{}:in", env.tenant_keys(t));
            serving(&mut env, &key) != queue_master
        })
        .expect("a tenant on another master");
    let url = env.redis.cluster().nodes()[queue_master].url();
    let mut master = redis::Client::open(url)
        .and_then(|c| c.get_connection())
        .unwrap();
    // A client of its own, on a runtime of its own (this thread waits),
    // that has loaded the scripts on every master (a load is a write).
    let config = env.queue_config();
    let job = env.job(&format!("{tenant}/hello"), "{}");
    let warm = env.job("warm/hello", "{}");
    let (ready, loaded) = std::sync::mpsc::channel();
    let (go, started) = std::sync::mpsc::channel::<()>();
    let enqueue = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let queue = Queue::connect(config).await?;
            queue.enqueue(&warm).await?;
            ready.send(()).unwrap();
            started.recv().unwrap();
            queue.enqueue(&job).await
        })
    });
    loaded.recv().expect("the client warmed up");
    // The queue's slot takes no writes: the enqueue stops at its first
    // write there.
    let _: () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(60_000)
        .arg("WRITE")
        .query(&mut master)
        .unwrap();
    go.send(()).unwrap();
    let master = std::cell::RefCell::new(master);
    env.wait_for("the enqueue to wait on the queue's slot", || {
        let info: String = redis::cmd("INFO")
            .arg("clients")
            .query(&mut *master.borrow_mut())
            .unwrap();
        info.contains("blocked_clients:1")
    });
    let mut master = master.into_inner();
    let t = env.tenant_keys(&tenant);
    let mut conn = env.redis_conn();
    let (queued, marked): (u64, bool) = redis::pipe()
        .llen(format!("{t}:ready:normal"))
        .exists(format!("{t}:in"))
        .query(&mut conn)
        .unwrap();
    let _: () = redis::cmd("CLIENT")
        .arg("UNPAUSE")
        .query(&mut master)
        .unwrap();
    let done = enqueue.join().unwrap();
    assert_eq!(
        (queued, marked),
        (0, false),
        "stored before the tenant was named"
    );
    done.unwrap();
    let named: Option<f64> = redis::cmd("ZSCORE")
        .arg(&queue_key)
        .arg(&tenant)
        .query(&mut conn)
        .unwrap();
    assert!(named.is_some(), "{tenant} is named in {queue_key}");
}

#[test]
fn an_enqueue_retried_under_its_key_announces_under_the_number_taken_last() {
    // The first call stored the job and took sequence number S, and its
    // announcement never reached the queue's slot: there the tenant is
    // still under an older number, out of the ready set. The retry under
    // the same key must announce it under S, or a claim's removal decided
    // under the older number could take it out again.
    let env = Env::on_cluster("cluster-idem-retry");
    let mut job = env.job("acme/hello", "{}");
    job.idempotency_key = Some("order-7".into());
    let first = env.rt.block_on(env.queue.enqueue(&job)).unwrap();
    let t = env.tenant_keys("acme");
    let q = env.queue.key_prefix().to_string();
    let mut conn = env.redis_conn();
    let taken: i64 = redis::cmd("HGET")
        .arg(format!("{t}:stats"))
        .arg("seq")
        .query(&mut conn)
        .unwrap();
    let _: () = redis::pipe()
        .atomic()
        .zadd(format!("{q}:seq"), "acme", taken - 1)
        .zrem(format!("{q}:ready"), "acme")
        .query(&mut conn)
        .unwrap();
    let again = env.rt.block_on(env.queue.enqueue(&job)).unwrap();
    assert_eq!(
        (again.id.as_str(), again.created),
        (first.id.as_str(), false)
    );
    let (score, ready): (Option<i64>, Option<f64>) = redis::pipe()
        .atomic()
        .zscore(format!("{q}:seq"), "acme")
        .zscore(format!("{q}:ready"), "acme")
        .query(&mut conn)
        .unwrap();
    assert_eq!(score, Some(taken), "announced under the number taken last");
    assert!(ready.is_some(), "acme is in the ready set again");
}
