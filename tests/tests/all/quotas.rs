//! Tenants' quotas (issue 11): a tenant at its key-value, cache, payload or
//! attempts quota gets a typed error and stops growing, while other tenants
//! carry on. Quotas are set as an operator would (`spool tenants set`, or
//! the store the command writes), enforced by real scripts in a real Redis.

use crate::command::{fails_with, spool, succeeds};
use spool_runtime::queue::{JobRecord, Status};
use spool_runtime::tenants::Limit;
use spool_tests::fleet::Env;

/// Set `limit` of `tenant` to `value` in the test's Redis.
/// The error kind and message of a dead record.
fn error_of(record: &JobRecord) -> (String, String) {
    assert_eq!(record.status, Some(Status::Dead), "{record:?}");
    let error = record.error.as_ref().expect("an error");
    (
        error["kind"].as_str().unwrap().to_string(),
        error["message"].as_str().unwrap().to_string(),
    )
}

/// Bytes of values under `tenant`'s key-value keys, and how many keys.
fn kv_held(env: &Env, tenant: &str) -> (u64, usize) {
    let mut conn = env.redis_conn();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("spool:{{kv:{tenant}}}:*"))
        .query(&mut conn)
        .unwrap();
    let bytes = keys
        .iter()
        .map(|k| redis::cmd("STRLEN").arg(k).query::<u64>(&mut conn).unwrap())
        .sum();
    (bytes, keys.len())
}

/// `used_memory` of the server, or summed over a cluster's masters, less
/// what replication holds (a master's backlog of recent writes for its
/// replica, up to `repl-backlog-size`): the data and its bookkeeping.
fn used_memory(env: &Env) -> i64 {
    let info: redis::Value = redis::cmd("INFO")
        .arg("memory")
        .query(&mut env.redis_conn())
        .unwrap();
    let text = spool_tests::backend::every_node_text(info);
    let sum = |field: &str| -> i64 {
        text.lines()
            .filter_map(|l| l.strip_prefix(field))
            .filter_map(|v| v.trim().parse::<i64>().ok())
            .sum()
    };
    assert!(text.contains("used_memory:"), "used_memory in INFO");
    sum("used_memory:") - sum("mem_replication_backlog:") - sum("mem_total_replication_buffers:")
}

fn flood(env: &Env, bytes: usize, count: usize) -> JobRecord {
    let mut job = env.job(
        "mallory/attacker",
        &format!(r#"{{"attack":"kv_flood","bytes":{bytes},"count":{count}}}"#),
    );
    job.max_attempts = 1;
    env.wait(&env.enqueue_job(job))
}

#[test]
fn a_key_value_flood_stops_at_the_tenants_quota_and_others_keep_writing() {
    let env = Env::new("quota-kv");
    env.set_limit("mallory", Limit::KvBytes, 1 << 20);
    let _worker = env.worker(
        &[("mallory/attacker", "attacker"), ("acme/kv", "kv")],
        |_| {},
    );
    let before = used_memory(&env);
    // 1,000 values of 64 KiB: 64 MiB asked for, 1 MiB allowed.
    let record = flood(&env, 65_536, 1000);
    let (kind, message) = error_of(&record);
    assert_eq!(kind, "fatal", "a quota is not worth retrying: {message}");
    assert!(
        message.contains("quota: tenant mallory") && message.contains("kv-bytes quota of 1 MiB"),
        "{message}"
    );
    let (bytes, keys) = kv_held(&env, "mallory");
    assert!(bytes <= 1 << 20, "{bytes} bytes stored");
    assert_eq!(keys, 15, "15 values of 64 KiB fit in 1 MiB with their keys");
    let grown = used_memory(&env) - before;
    assert!(grown < 4 << 20, "Redis grew by {grown} bytes");

    // Another tenant writes as before.
    let id = env.enqueue("acme/kv", r#"{"op":"set","key":"k","value":"v"}"#);
    assert_eq!(env.wait(&id).status, Some(Status::Succeeded));

    // The operator sees the usage against the quota.
    let shown = succeeds(&spool(&env, &["tenants", "show", "mallory", "--json"]));
    let shown: serde_json::Value = serde_json::from_str(&shown).unwrap();
    let kv = &shown["quotas"]["kv-bytes"];
    assert_eq!(
        (kv["value"].as_u64(), kv["from"].as_str()),
        (Some(1 << 20), Some("tenant"))
    );
    let used = kv["used"].as_u64().unwrap();
    assert!(used > 15 * 65_536 && used <= 1 << 20, "used {used}");
    assert_eq!(shown["quotas"]["kv-keys"]["used"], 15);
}

#[test]
fn deletes_and_expiries_give_key_value_quota_back() {
    let env = Env::new("quota-kv-keys");
    env.set_limit("acme", Limit::KvKeys, 2);
    let _worker = env.worker(&[("acme/kv", "kv")], |_| {});
    let op = |input: &str| env.wait(&env.enqueue("acme/kv", input));
    assert_eq!(
        op(r#"{"op":"set","key":"brief","value":"x","ttl":1}"#).status,
        Some(Status::Succeeded)
    );
    assert_eq!(
        op(r#"{"op":"set","key":"b","value":"x"}"#).status,
        Some(Status::Succeeded)
    );
    // Overwriting a key is not a new key.
    assert_eq!(
        op(r#"{"op":"set","key":"b","value":"y"}"#).status,
        Some(Status::Succeeded)
    );
    let (_, message) = error_of(&op(r#"{"op":"set","key":"c","value":"x"}"#));
    assert!(
        message.contains("3 keys, over its kv-keys quota of 2"),
        "{message}"
    );
    assert!(!env.kv_exists("acme", "c"), "nothing was written");
    // The key with a TTL expires and its place is free again.
    env.wait_for("the brief key to expire", || {
        !env.kv_exists("acme", "brief")
    });
    assert_eq!(
        op(r#"{"op":"set","key":"c","value":"x"}"#).status,
        Some(Status::Succeeded)
    );
    // A delete frees a place too.
    let (_, message) = error_of(&op(r#"{"op":"set","key":"d","value":"x"}"#));
    assert!(message.contains("kv-keys"), "{message}");
    assert_eq!(
        op(r#"{"op":"delete","key":"b"}"#).status,
        Some(Status::Succeeded)
    );
    assert_eq!(
        op(r#"{"op":"set","key":"d","value":"x"}"#).status,
        Some(Status::Succeeded)
    );
    // A key deleted behind the scripts' back (an operator's DEL) is found
    // gone when the tenant is at its quota (a repair runs at most once a
    // second, so the write may be refused until the next second's).
    let _: i64 = redis::cmd("DEL")
        .arg("spool:{kv:acme}:c")
        .query(&mut env.redis_conn())
        .unwrap();
    env.wait_for("the repair to find the deleted key", || {
        op(r#"{"op":"set","key":"e","value":"x"}"#).status == Some(Status::Succeeded)
    });
    // Lowered below its usage, the quota still lets the tenant shrink or
    // rewrite what it has, never grow.
    env.set_limit("acme", Limit::KvKeys, 1);
    env.wait_for("workers to read the new quota", || {
        error_of_or_ok(&op(r#"{"op":"set","key":"f","value":"x"}"#))
            .is_some_and(|m| m.contains("kv-keys quota of 1"))
    });
    assert_eq!(
        op(r#"{"op":"set","key":"d","value":"y"}"#).status,
        Some(Status::Succeeded)
    );
    let (_, message) = error_of(&op(r#"{"op":"set","key":"d","value":"longer"}"#));
    assert!(message.contains("kv-keys quota of 1"), "{message}");
}

/// The message of a dead record, none for a success.
fn error_of_or_ok(record: &JobRecord) -> Option<String> {
    (record.status == Some(Status::Dead)).then(|| error_of(record).1)
}

#[test]
fn key_value_writes_per_second_are_limited_and_retryable() {
    let env = Env::new("quota-kv-rate");
    env.set_limit("mallory", Limit::KvWrites, 20);
    let _worker = env.worker(&[("mallory/attacker", "attacker")], |_| {});
    let record = flood(&env, 1, 10_000);
    let (kind, message) = error_of(&record);
    assert_eq!(kind, "retryable", "a rate limit passes: {message}");
    assert!(message.contains("kv-writes limit is 20/s"), "{message}");
    let (_, keys) = kv_held(&env, "mallory");
    // 20 in one second, 40 when the writes straddle a second boundary.
    assert!((20..=40).contains(&keys), "{keys} writes got through");
}

#[test]
fn a_ledger_key_of_the_wrong_type_is_reset_not_fatal() {
    let env = Env::new("quota-ledger-type");
    let _worker = env.worker(&[("acme/kv", "kv")], |_| {});
    let mut conn = env.redis_conn();
    for key in [
        "spool:{kv:acme}#sizes",
        "spool:{kv:acme}#expiry",
        "spool:{kv:acme}#usage",
    ] {
        let _: () = redis::cmd("SET")
            .arg(key)
            .arg("junk")
            .query(&mut conn)
            .unwrap();
    }
    let shown = succeeds(&spool(&env, &["tenants", "show", "acme", "--json"]));
    assert!(
        shown.contains(r#""kv-keys":{"from":"built-in","used":0"#),
        "{shown}"
    );
    let id = env.enqueue("acme/kv", r#"{"op":"set","key":"k","value":"v"}"#);
    assert_eq!(env.wait(&id).status, Some(Status::Succeeded));
    let kind: String = redis::cmd("TYPE")
        .arg("spool:{kv:acme}#sizes")
        .query(&mut conn)
        .unwrap();
    assert_eq!(kind, "hash");
}

#[test]
fn enqueue_refuses_payloads_over_the_quota_and_lowers_attempts_to_it() {
    let env = Env::new("quota-enqueue");
    let set = spool(
        &env,
        &[
            "tenants",
            "set",
            "acme",
            "--max-payload",
            "100",
            "--max-attempts",
            "3",
        ],
    );
    assert_eq!(
        succeeds(&set),
        "tenant acme: max-payload = 100 B\ntenant acme: max-attempts = 3\n"
    );
    let big = format!(r#"{{"name":"{}"}}"#, "x".repeat(200));
    let out = spool(&env, &["enqueue", "acme/hello", "-i", &big]);
    fails_with(
        &out,
        1,
        "tenant acme: a payload of 211 B is over its max-payload quota of 100 B; nothing was enqueued",
    );
    let jobs: Vec<String> = redis::cmd("KEYS")
        .arg("spool:{default/acme}:job:*")
        .query(&mut env.redis_conn())
        .unwrap();
    assert_eq!(jobs, Vec::<String>::new(), "nothing was stored");
    // The fleet defaults print as such.
    succeeds(&spool(
        &env,
        &["tenants", "set", "--defaults", "--kv-bytes", "1MiB"],
    ));
    let shown = succeeds(&spool(&env, &["tenants", "show"]));
    assert!(
        shown.contains("kv-bytes       1 MiB        fleet default"),
        "{shown}"
    );
    // Asking for more attempts than the quota gets the quota.
    let out = succeeds(&spool(
        &env,
        &["enqueue", "acme/hello", "-i", "{}", "--max-attempts", "9"],
    ));
    let stored: String = redis::cmd("HGET")
        .arg(format!("spool:{{default/acme}}:job:{}", out.trim()))
        .arg("max_attempts")
        .query(&mut env.redis_conn())
        .unwrap();
    assert_eq!(stored, "3");
    // Other tenants keep the fleet defaults.
    succeeds(&spool(&env, &["enqueue", "beta/hello", "-i", &big]));
    // Back to the default.
    succeeds(&spool(
        &env,
        &["tenants", "set", "acme", "--max-payload", "default"],
    ));
    succeeds(&spool(&env, &["enqueue", "acme/hello", "-i", &big]));
    let shown = succeeds(&spool(&env, &["tenants", "show", "acme"]));
    assert!(
        shown.contains("max-payload    16 MiB       built-in"),
        "{shown}"
    );
    assert!(
        shown.contains("max-attempts   3            tenant"),
        "{shown}"
    );
}

#[test]
fn jobs_written_with_plain_commands_meet_the_same_quotas_at_the_worker() {
    let env = Env::new("quota-plain");
    env.set_limit("mallory", Limit::MaxPayload, 100);
    env.set_limit("mallory", Limit::MaxAttempts, 3);
    let _worker = env.worker(&[("mallory/attacker", "attacker")], |_| {});
    let plain = |id: &str, payload: &str, attempts: u32| {
        let attempts = attempts.to_string();
        env.enqueue_plain(
            "mallory",
            id,
            "normal",
            &[
                ("plugin", b"mallory/attacker"),
                ("payload", payload.as_bytes()),
                ("max_attempts", attempts.as_bytes()),
            ],
        );
    };
    plain(
        "big",
        &format!(r#"{{"attack":"say","text":"{}"}}"#, "x".repeat(200)),
        1,
    );
    let (kind, message) = error_of(&env.wait("big"));
    assert_eq!(kind, "over-quota");
    assert!(
        message.contains("over its max-payload quota of 100 B"),
        "{message}"
    );
    plain("stubborn", r#"{"attack":"retry"}"#, 1000);
    let record = env.wait("stubborn");
    assert_eq!(
        (record.status, record.attempts),
        (Some(Status::Dead), 3),
        "{record:?}"
    );
}

#[test]
fn cached_results_stop_at_the_tenants_cache_quota() {
    let env = Env::new("quota-cache");
    env.set_limit("acme", Limit::CacheBytes, 4096);
    let dir = crate::cache::cacheable(&env, &["acme/introspect", "beta/introspect"], "1h");
    let (_registry, _worker) = env.serve_dir(&dir, |_| {});
    for i in 0..20 {
        for tenant in ["acme", "beta"] {
            let plugin = format!("{tenant}/introspect");
            crate::cache::run(&env, &plugin, &format!(r#"{{"echo":{i}}}"#));
        }
    }
    let count = |tenant: &str| {
        redis::cmd("KEYS")
            .arg(format!("spool:{{cache:{tenant}}}:r:*"))
            .query::<Vec<String>>(&mut env.redis_conn())
            .unwrap()
            .len()
    };
    let (acme, beta) = (count("acme"), count("beta"));
    assert!((1..20).contains(&acme), "acme cached {acme} of 20 results");
    assert_eq!(beta, 20, "beta is not limited");
    let shown = succeeds(&spool(&env, &["tenants", "show", "acme", "--json"]));
    let shown: serde_json::Value = serde_json::from_str(&shown).unwrap();
    let used = shown["quotas"]["cache-bytes"]["used"].as_u64().unwrap();
    assert!(used > 0 && used <= 4096, "cache usage {used}");
    // A purge gives the quota back at once.
    succeeds(&spool(&env, &["cache", "purge", "--tenant", "acme"]));
    let shown = succeeds(&spool(&env, &["tenants", "show", "acme", "--json"]));
    let shown: serde_json::Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(shown["quotas"]["cache-bytes"]["used"], 0, "{shown}");
}

#[test]
fn one_job_gets_a_budget_of_key_value_calls_and_bytes() {
    let env = Env::new("quota-kv-budget");
    // No tenant quota stands in the way: the per-job budget is what stops it.
    for limit in [Limit::KvWrites, Limit::KvBytes, Limit::KvKeys] {
        env.set_limit("mallory", limit, 0);
    }
    let _worker = env.worker(&[("mallory/attacker", "attacker")], |c| {
        c.limits.memory = 256 << 20;
    });
    let (kind, message) = error_of(&flood(&env, 1, 20_000));
    assert_eq!(kind, "fatal", "{message}");
    assert!(
        message.contains(
            "budget: this is the job's key-value call 10001; the limit is 10000 calls per job"
        ),
        "{message}"
    );
    assert_eq!(kv_held(&env, "mallory").1, 10_000);
    // 100 values of 1 MiB: the traffic budget of 64 MiB stops it first.
    let (_, message) = error_of(&flood(&env, 1 << 20, 100));
    assert!(
        message.contains("the limit is 67108864 bytes per job"),
        "{message}"
    );
    let held = kv_held(&env, "mallory").0;
    assert!(held < 64 << 20, "{held} bytes held");
}
