//! The other shapes of an enqueue's body (issue 14): raw payload bytes
//! with the options in the query, a batch as JSON lines, and a JSON body
//! sent as `curl -d` sends it (a form content type).

use crate::api::{request_typed, serve, token};
use spool_tests::fleet::Env;

#[test]
fn raw_bytes_json_lines_and_curl_bodies_enqueue_as_documented() {
    let env = Env::new("api-bodies");
    let server = serve(&env, &[]);
    let (acme, _) = token(&env, &["--tenant", "acme", "--scopes", "submit,read"]);
    let post = |path: &str, ct: &str, body: &[u8]| {
        request_typed(&server, "POST", path, Some(&acme), ct, body)
    };

    // Raw bytes, not UTF-8 even: stored as sent, with their content type.
    let png = [0x89u8, b'P', b'N', b'G', 0xff, 0x00, 0x10];
    let made = post(
        "/v1/jobs?plugin=thumb&priority=high&max_attempts=2",
        "image/png",
        &png,
    );
    assert_eq!(made.status, 201, "{}", String::from_utf8_lossy(&made.body));
    let id = made.json()["id"].as_str().unwrap().to_string();
    let record = env.record(&id);
    assert_eq!(record.plugin, "acme/thumb");
    assert_eq!(record.content_type.as_deref(), Some("image/png"));
    assert_eq!(record.priority.as_deref(), Some("high"));
    assert_eq!(record.max_attempts, Some(2));
    let stored: Vec<u8> = redis::cmd("HGET")
        .arg(format!("{}:job:{id}", env.tenant_keys("acme")))
        .arg("payload")
        .query(&mut env.redis_conn())
        .unwrap();
    assert_eq!(stored, png);
    let bad = post("/v1/jobs?plugin=thumb&priority=urgent", "image/png", &png);
    assert_eq!(bad.status, 400);
    assert_eq!(bad.json()["error"]["field"], "priority");

    // `curl -d '{…}'` sends application/x-www-form-urlencoded: still JSON.
    let curl = post(
        "/v1/jobs",
        "application/x-www-form-urlencoded",
        br#"{"plugin":"hello","payload":{"name":"curl"}}"#,
    );
    assert_eq!(curl.status, 201, "{}", String::from_utf8_lossy(&curl.body));

    // JSON lines: blank lines skipped; a bad line names itself and stores
    // nothing.
    let lines = b"{\"plugin\":\"hello\",\"payload\":1}\n\n{\"plugin\":\"hello\",\"payload\":2}\n";
    let batch = post("/v1/jobs/batch", "application/x-ndjson", lines);
    assert_eq!(
        batch.status,
        201,
        "{}",
        String::from_utf8_lossy(&batch.body)
    );
    assert_eq!(batch.json()["ids"].as_array().unwrap().len(), 2);
    let before = env
        .rt
        .block_on(env.queue.tenant_states(&["acme".to_string()], None))
        .unwrap()[0]
        .queued;
    let broken = b"{\"plugin\":\"hello\"}\n{\"plugin\":\n";
    let refused = post("/v1/jobs/batch", "application/x-ndjson", broken);
    assert_eq!(refused.status, 400);
    assert_eq!(refused.json()["error"]["field"], "line 2");
    let after = env
        .rt
        .block_on(env.queue.tenant_states(&["acme".to_string()], None))
        .unwrap()[0]
        .queued;
    assert_eq!(before, after, "nothing of a refused batch is stored");
}
