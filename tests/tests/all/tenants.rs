//! Tenants: plugins named `tenant/name`, and a key-value store per tenant
//! that no other tenant's plugin can reach.

use spool_runtime::queue::Status;
use spool_tests::fleet::Env;

fn output(env: &Env, plugin: &str, input: &str) -> serde_json::Value {
    let id = env.enqueue(plugin, input);
    let record = env.wait(&id);
    assert_eq!(record.status, Some(Status::Succeeded), "{record:?}");
    serde_json::from_str(record.output.as_deref().unwrap()).unwrap()
}

#[test]
fn tenants_never_see_each_others_keys() {
    let env = Env::new("kv");
    let _worker = env.worker(&[("acme/kv", "kv"), ("beta/kv", "kv")], |_| {});
    output(
        &env,
        "acme/kv",
        r#"{"op":"set","key":"secret","value":"acme-only"}"#,
    );
    let from_beta = output(&env, "beta/kv", r#"{"op":"get","key":"secret"}"#);
    assert_eq!(from_beta["value"], serde_json::Value::Null);
    // Not even by naming the other tenant's Redis key.
    let sneaky = output(
        &env,
        "beta/kv",
        r#"{"op":"get","key":"spool:{kv:acme}:secret"}"#,
    );
    assert_eq!(sneaky["value"], serde_json::Value::Null);
    let deleted = output(&env, "beta/kv", r#"{"op":"delete","key":"secret"}"#);
    assert_eq!(deleted["existed"], false);
    let from_acme = output(&env, "acme/kv", r#"{"op":"get","key":"secret"}"#);
    assert_eq!(from_acme["value"], "acme-only");

    // The keys live under each tenant's own hash tag.
    let mut conn = env.redis_conn();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("spool:{kv:*}:*")
        .query(&mut conn)
        .unwrap();
    assert_eq!(keys, vec!["spool:{kv:acme}:secret".to_string()]);
    // So do the ledgers that count them for the quotas.
    let mut ledgers: Vec<String> = redis::cmd("KEYS")
        .arg("spool:{kv:*}#*")
        .query(&mut conn)
        .unwrap();
    ledgers.sort();
    assert!(!ledgers.is_empty(), "acme's write is accounted");
    assert!(
        ledgers
            .iter()
            .all(|k| k.starts_with("spool:{kv:acme}#") || k.starts_with("spool:{kv:beta}#")),
        "{ledgers:?}"
    );
}

#[test]
fn key_value_ttls_and_host_calls_are_recorded() {
    let env = Env::new("kv-ttl");
    let _worker = env.worker(&[("acme/kv", "kv")], |_| {});
    let id = env.enqueue(
        "acme/kv",
        r#"{"op":"set","key":"brief","value":"x","ttl":60}"#,
    );
    let record = env.wait(&id);
    assert_eq!(record.host_calls, Some(1), "one kv call");
    let mut conn = env.redis_conn();
    let ttl: i64 = redis::cmd("TTL")
        .arg("spool:{kv:acme}:brief")
        .query(&mut conn)
        .unwrap();
    assert!((1..=60).contains(&ttl), "ttl {ttl}");
    // Limits: a key over 512 bytes is a fatal error, not a retry.
    let long_key = "k".repeat(600);
    let id = env.enqueue("acme/kv", &format!(r#"{{"op":"get","key":"{long_key}"}}"#));
    let record = env.wait(&id);
    assert_eq!(record.status, Some(Status::Dead));
    assert_eq!(record.attempts, 1);
    let message = record.error.as_ref().unwrap()["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(message.contains("600 bytes"), "{message}");
}
