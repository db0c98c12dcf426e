//! Redis Cluster (issue 16): tenants' queues spread over the masters of a
//! real local cluster (3 masters, 3 replicas), one worker serves them all,
//! and the operations about the whole fleet (job lookups, tenant lists,
//! cache stats and purges, dead letters) visit every master. The rest of
//! the queue's behaviour runs on a cluster too: the queue topics again
//! with `SPOOL_TEST_REDIS=cluster` (scripts/test.sh).

use crate::cache::cacheable;
use crate::command::{spool, text};
use spool_runtime::ids::PluginName;
use spool_runtime::queue::{NewJob, Status};
use spool_tests::fleet::Env;
use std::collections::BTreeMap;

const TENANTS: [&str; 8] = ["t0", "t1", "t2", "t3", "t4", "t5", "t6", "t7"];

/// For each master (by port), how many keys match `pattern` there: read
/// from each node directly, as an operator would with `redis-cli -p`.
fn keys_per_master(env: &mut Env, pattern: &str) -> BTreeMap<u16, usize> {
    let mut found = BTreeMap::new();
    for node in env.redis.cluster().nodes() {
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
