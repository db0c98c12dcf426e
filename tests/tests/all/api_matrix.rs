//! The tenant-isolation matrix (issue 14): every `/v1` route, called with
//! another tenant's token (holding every scope) on acme's job, plugin and
//! tenant, answers 403 or 404, or an answer that holds nothing of acme's —
//! and afterwards acme's things are as they were. The list of routes is
//! checked against the OpenAPI document, so a new route must join it.

use crate::api::{get, request_typed, serve, token};
use spool_runtime::queue::Status;
use spool_tests::fleet::Env;
use spool_tests::variant;

#[test]
fn another_tenants_token_reaches_nothing_of_acme_on_any_route() {
    let env = Env::new("api-matrix");
    let _worker = env.worker(&[("acme/hello", "hello")], |_| {});
    let server = serve(&env, &[]);
    let all = "submit,read,deploy,admin";
    let (acme, _) = token(&env, &["--tenant", "acme", "--scopes", all]);
    let (beta, _) = token(&env, &["--tenant", "beta", "--scopes", all]);
    let wasm = variant("hello", 0);
    let deployed = request_typed(
        &server,
        "POST",
        "/v1/plugins/hello/deploy",
        Some(&acme),
        "application/wasm",
        &wasm,
    );
    assert_eq!(deployed.status, 201);
    let dead = env.enqueue("acme/hello", r#"{"name":""}"#);
    assert_eq!(env.wait(&dead).status, Some(Status::Dead));
    let mut later = env.job("acme/hello", r#"{"name":"later"}"#);
    later.delay = std::time::Duration::from_secs(3600);
    let queued = env.enqueue_job(later);

    let ids = format!(r#"{{"ids":["{dead}","{queued}"]}}"#);
    let json = "application/json";
    // (method, path as documented, path called, content type, body)
    let calls: Vec<(&str, &str, String, &str, Vec<u8>)> = vec![
        (
            "post",
            "/v1/jobs",
            "/v1/jobs".into(),
            json,
            br#"{"plugin":"acme/hello"}"#.to_vec(),
        ),
        (
            "get",
            "/v1/jobs",
            "/v1/jobs?status=dead&tenant=acme".into(),
            json,
            vec![],
        ),
        (
            "post",
            "/v1/jobs/batch",
            "/v1/jobs/batch".into(),
            json,
            br#"[{"plugin":"acme/hello"}]"#.to_vec(),
        ),
        (
            "get",
            "/v1/jobs/{id}",
            format!("/v1/jobs/{dead}"),
            json,
            vec![],
        ),
        (
            "get",
            "/v1/jobs/{id}/wait",
            format!("/v1/jobs/{dead}/wait?timeout=1s"),
            json,
            vec![],
        ),
        (
            "get",
            "/v1/jobs/{id}/events",
            format!("/v1/jobs/{dead}/events?timeout=1s"),
            json,
            vec![],
        ),
        (
            "post",
            "/v1/jobs/{id}/cancel",
            format!("/v1/jobs/{queued}/cancel"),
            json,
            vec![],
        ),
        (
            "get",
            "/v1/dead",
            "/v1/dead?tenant=acme".into(),
            json,
            vec![],
        ),
        (
            "post",
            "/v1/dead/retry",
            "/v1/dead/retry".into(),
            json,
            ids.clone().into_bytes(),
        ),
        (
            "post",
            "/v1/dead/purge",
            "/v1/dead/purge".into(),
            json,
            ids.clone().into_bytes(),
        ),
        ("get", "/v1/plugins", "/v1/plugins".into(), json, vec![]),
        (
            "get",
            "/v1/plugins/{name}/history",
            "/v1/plugins/acme%2Fhello/history".into(),
            json,
            vec![],
        ),
        (
            "post",
            "/v1/plugins/{name}/deploy",
            "/v1/plugins/acme%2Fhello/deploy".into(),
            "application/wasm",
            variant("hello", 1),
        ),
        (
            "post",
            "/v1/plugins/{name}/rollback",
            "/v1/plugins/acme%2Fhello/rollback".into(),
            json,
            vec![],
        ),
        (
            "post",
            "/v1/plugins/{name}/unpin",
            "/v1/plugins/acme%2Fhello/unpin".into(),
            json,
            vec![],
        ),
        (
            "get",
            "/v1/cache/stats",
            "/v1/cache/stats".into(),
            json,
            vec![],
        ),
        (
            "post",
            "/v1/cache/purge",
            "/v1/cache/purge".into(),
            json,
            br#"{"tenant":"acme"}"#.to_vec(),
        ),
        ("get", "/v1/tenants", "/v1/tenants".into(), json, vec![]),
        (
            "get",
            "/v1/tenants/{tenant}",
            "/v1/tenants/acme".into(),
            json,
            vec![],
        ),
        (
            "put",
            "/v1/tenants/{tenant}/limits",
            "/v1/tenants/acme/limits".into(),
            json,
            br#"{"max_payload":"1KiB"}"#.to_vec(),
        ),
        (
            "get",
            "/v1/stats/timeline",
            "/v1/stats/timeline?tenant=acme".into(),
            json,
            vec![],
        ),
        ("get", "/v1/workers", "/v1/workers".into(), json, vec![]),
        ("get", "/v1/whoami", "/v1/whoami".into(), json, vec![]),
        ("get", "/metrics", "/metrics".into(), json, vec![]),
    ];

    // Every documented route that takes a token is in the matrix.
    let doc = get(&server, "/v1/openapi.json", None).json();
    for (path, methods) in doc["paths"].as_object().unwrap() {
        for (method, op) in methods.as_object().unwrap() {
            if op["security"].is_array() {
                assert!(
                    calls.iter().any(|(m, p, ..)| m == method && p == path),
                    "{method} {path} is not in the isolation matrix"
                );
            }
        }
    }

    for (method, documented, path, ct, body) in &calls {
        let r = request_typed(&server, &method.to_uppercase(), path, Some(&beta), ct, body);
        let text = String::from_utf8_lossy(&r.body).into_owned();
        let leaks = text.contains(&dead) || text.contains(&queued) || text.contains("acme/");
        assert!(
            matches!(r.status, 403 | 404) || (r.status < 300 && !leaks),
            "{method} {documented} with beta's token: {} {text}",
            r.status
        );
    }

    // Acme's things are as they were.
    assert_eq!(env.record(&dead).status, Some(Status::Dead), "not retried");
    assert_eq!(
        env.record(&queued).status,
        Some(Status::Delayed),
        "not cancelled"
    );
    let history = get(&server, "/v1/plugins/hello/history", Some(&acme)).json();
    assert_eq!(
        history["versions"].as_array().unwrap().len(),
        1,
        "{history}"
    );
    assert_eq!(
        history["pinned"]["digest"],
        deployed.json()["version"]["digest"]
    );
    let quotas = get(&server, "/v1/tenants/acme", Some(&acme)).json();
    assert_eq!(quotas["quotas"]["max-payload"]["from"], "built-in");
    let dead_page = get(&server, "/v1/dead", Some(&acme)).json();
    assert_eq!(dead_page["total"], 1);
}
