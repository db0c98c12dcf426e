//! `/v1/tenants` and `/v1/cache` of `spool serve` (issue 14): a tenant
//! reads its own queue, quotas and cache; only an operator sets quotas;
//! a purge reaches the token's tenant and no other.

use crate::api::{Reply, get, request, serve, token};
use crate::cache::{cache_of, cacheable, computed_by, run};
use spool_tests::fleet::Env;

fn shown(reply: &Reply) -> String {
    format!("{} {}", reply.status, String::from_utf8_lossy(&reply.body))
}

fn put(server: &impl AsRef<str>, path: &str, token: &str, body: &str) -> Reply {
    request(server, "PUT", path, Some(token), body.as_bytes())
}

#[test]
fn a_tenant_reads_its_own_quotas_and_only_an_operator_sets_them() {
    let env = Env::new("api-tenants");
    env.enqueue("acme/hello", r#"{"name":"a"}"#);
    env.enqueue("beta/hello", r#"{"name":"b"}"#);
    let server = serve(&env, &[]);
    let (acme, _) = token(&env, &["--tenant", "acme", "--scopes", "submit,read,admin"]);
    let (operator, _) = token(&env, &["--all-tenants", "--scopes", "read,admin"]);

    let mine = get(&server, "/v1/tenants", Some(&acme)).json();
    let names: Vec<&str> = mine["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["tenant"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["acme"], "{mine}");
    assert_eq!(mine["tenants"][0]["queued"], 1);
    let all = get(&server, "/v1/tenants", Some(&operator)).json();
    assert_eq!(all["tenants"].as_array().unwrap().len(), 2, "{all}");

    let show = get(&server, "/v1/tenants/acme", Some(&acme));
    assert_eq!(show.status, 200, "{}", shown(&show));
    let show = show.json();
    assert_eq!(show["quotas"]["max-payload"]["from"], "built-in", "{show}");
    assert_eq!(show["quotas"]["kv-bytes"]["used"], 0, "{show}");
    assert_eq!(show["queue"]["queued"], 1, "{show}");
    let other = get(&server, "/v1/tenants/beta", Some(&acme));
    assert_eq!(other.status, 403, "{}", shown(&other));

    // A tenant's admin cannot lift its own limits.
    let lift = put(
        &server,
        "/v1/tenants/acme/limits",
        &acme,
        r#"{"max_payload":"1GiB"}"#,
    );
    assert_eq!(lift.status, 403, "{}", shown(&lift));

    // Bad values are refused naming the field, and nothing is written.
    for (body, field) in [
        (r#"{"max_payload":"1KiB","weight":"heavy"}"#, "weight"),
        (r#"{"nope":1}"#, "nope"),
        (r#"{"max_payload":[1]}"#, "max_payload"),
        ("{}", "body"),
    ] {
        let bad = put(&server, "/v1/tenants/acme/limits", &operator, body);
        assert_eq!(bad.status, 400, "{body}: {}", shown(&bad));
        assert_eq!(bad.json()["error"]["field"], field, "{body}");
    }
    let unchanged = get(&server, "/v1/tenants/acme", Some(&acme)).json();
    assert_eq!(unchanged["quotas"]["max-payload"]["from"], "built-in");

    let set = put(
        &server,
        "/v1/tenants/acme/limits",
        &operator,
        r#"{"max_payload":"1KiB","weight":3}"#,
    );
    assert_eq!(set.status, 200, "{}", shown(&set));
    let set = set.json();
    assert_eq!(set["quotas"]["max-payload"]["value"], 1024, "{set}");
    assert_eq!(set["quotas"]["max-payload"]["from"], "tenant");
    assert_eq!(set["quotas"]["weight"]["value"], 3);
    // The quota now holds for acme's enqueues (once the server's cached
    // limits are refreshed), and not for beta's.
    let big =
        serde_json::json!({"plugin": "hello", "payload": {"name": "x".repeat(2000)}}).to_string();
    env.wait_for("the new max-payload to refuse acme's big job", || {
        request(&server, "POST", "/v1/jobs", Some(&acme), big.as_bytes()).status == 413
    });
    let back = put(
        &server,
        "/v1/tenants/acme/limits",
        &operator,
        r#"{"max_payload":null}"#,
    )
    .json();
    assert_eq!(back["quotas"]["max-payload"]["from"], "built-in", "{back}");
}

#[test]
fn cache_stats_and_purges_stay_within_the_tenant() {
    let env = Env::new("api-cache");
    let dir = cacheable(&env, &["acme/echo", "beta/echo"], "1h");
    let (_registry, _worker) = env.serve_dir(&dir, |_| {});
    let first = run(&env, "acme/echo", r#"{"echo":1}"#);
    let again = run(&env, "acme/echo", r#"{"echo":1}"#);
    assert_eq!(cache_of(&again), "hit-memory");
    assert_eq!(computed_by(&again), first.id);
    let theirs = run(&env, "beta/echo", r#"{"echo":1}"#);
    let server = serve(&env, &[]);
    let (acme, _) = token(&env, &["--tenant", "acme", "--scopes", "read,admin"]);

    // Counters reach Redis within a second of the jobs.
    env.wait_for("acme's cache counters", || {
        let stats = get(&server, "/v1/cache/stats", Some(&acme)).json();
        stats["plugins"]
            == serde_json::json!([{
                "plugin": "acme/echo", "hit_memory": 1, "hit_redis": 0, "miss": 1,
                "bypass": 0, "hit_ratio": 0.5,
            }])
    });
    let stats = get(&server, "/v1/cache/stats", Some(&acme)).json();
    let tenants = stats["tenants"].as_object().unwrap();
    assert_eq!(tenants.keys().collect::<Vec<_>>(), ["acme"], "{stats}");
    assert_eq!(tenants["acme"]["entries"], 1, "{stats}");

    // Acme cannot purge beta's entries, by tenant or by plugin name.
    for body in [r#"{"tenant":"beta"}"#, r#"{"plugin":"beta/echo"}"#] {
        let r = request(
            &server,
            "POST",
            "/v1/cache/purge",
            Some(&acme),
            body.as_bytes(),
        );
        assert!(matches!(r.status, 400 | 403), "{body}: {}", shown(&r));
    }
    let empty = request(&server, "POST", "/v1/cache/purge", Some(&acme), b"{}");
    assert_eq!(empty.status, 400, "{}", shown(&empty));
    let purged = request(
        &server,
        "POST",
        "/v1/cache/purge",
        Some(&acme),
        br#"{"all":true}"#,
    );
    assert_eq!(purged.status, 200, "{}", shown(&purged));
    assert_eq!(purged.json()["deleted"], 1);

    // Acme's work runs again (gone from Redis and from the worker's
    // memory); beta's is still answered from the cache.
    env.wait_for("the worker to drop acme's entry from memory", || {
        let rerun = run(&env, "acme/echo", r#"{"echo":1}"#);
        computed_by(&rerun) == rerun.id
    });
    let beta_again = run(&env, "beta/echo", r#"{"echo":1}"#);
    assert_eq!(computed_by(&beta_again), theirs.id);
}

#[test]
fn the_openapi_document_names_every_route_and_each_refuses_a_missing_token() {
    let env = Env::new("api-openapi");
    let server = serve(&env, &[]);
    let doc = get(&server, "/v1/openapi.json", None);
    assert_eq!(doc.status, 200, "{}", shown(&doc));
    let doc = doc.json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{doc}");
    let enqueue = &doc["components"]["schemas"]["EnqueueBody"];
    assert_eq!(
        enqueue["required"],
        serde_json::json!(["plugin"]),
        "{enqueue}"
    );
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 20, "{paths:?}");
    for (path, methods) in paths {
        let concrete = path
            .replace("{id}", "01NOTAJOB")
            .replace("{name}", "hello")
            .replace("{tenant}", "acme");
        for method in methods.as_object().unwrap().keys() {
            let reply = request(&server, &method.to_uppercase(), &concrete, None, b"{}");
            let guarded = methods[method]["security"].is_array();
            assert_eq!(guarded, path != "/healthz" && path != "/readyz", "{path}");
            let expected = if guarded { 401 } else { 200 };
            // Past 20 failures a minute from this address the answer is
            // 429, from the same token check: the route is still guarded.
            let status = if reply.status == 429 {
                401
            } else {
                reply.status
            };
            assert_eq!(status, expected, "{method} {path}: {}", shown(&reply));
            let documented = &methods[method]["responses"][expected.to_string()];
            assert!(
                documented.is_object(),
                "{method} {path} does not document {expected}"
            );
        }
    }
}
