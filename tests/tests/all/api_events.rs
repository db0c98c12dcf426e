//! `GET /v1/jobs/{id}/events` (issue 14): a job's progress and end as
//! Server-Sent Events, from a real worker running the `introspect` fixture
//! (which reports progress 3 of 4, then sleeps as asked).

use crate::api::{get, serve, token};
use spool_tests::fleet::Env;
use std::time::Duration;

/// The (event, data) pairs of an event stream's body.
fn events(body: &[u8]) -> Vec<(String, serde_json::Value)> {
    let text = String::from_utf8_lossy(body);
    text.split("\n\n")
        .filter_map(|block| {
            let mut name = None;
            let mut data = None;
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    name = Some(v.trim().to_string());
                } else if let Some(v) = line.strip_prefix("data:") {
                    data = serde_json::from_str(v.trim()).ok();
                }
            }
            Some((name?, data.unwrap_or_default()))
        })
        .collect()
}

#[test]
fn a_stream_shows_progress_while_the_job_runs_then_its_end() {
    let env = Env::new("api-events");
    let _worker = env.worker(&[("acme/slow", "introspect")], |_| {});
    let server = serve(&env, &[]);
    let (acme, _) = token(&env, &["--tenant", "acme", "--scopes", "read"]);
    let (beta, _) = token(&env, &["--tenant", "beta", "--scopes", "read"]);
    let id = env.enqueue("acme/slow", r#"{"sleep_ms":1500}"#);

    let other = get(&server, &format!("/v1/jobs/{id}/events"), Some(&beta));
    assert_eq!(other.status, 404, "another tenant's job is not found");

    let reply = get(
        &server,
        &format!("/v1/jobs/{id}/events?timeout=60s"),
        Some(&acme),
    );
    assert_eq!(reply.status, 200);
    assert!(
        reply
            .headers
            .iter()
            .any(|(n, v)| n == "content-type" && v.starts_with("text/event-stream")),
        "{:?}",
        reply.headers
    );
    let seen = events(&reply.body);
    let names: Vec<&str> = seen.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names.first(), Some(&"status"), "{seen:?}");
    assert_eq!(names.last(), Some(&"end"), "{seen:?}");
    let progress = names
        .iter()
        .position(|n| *n == "progress")
        .expect("a progress event");
    assert_eq!(seen[progress].1, serde_json::json!({"done": 3, "total": 4}));
    // The progress came while the job ran, not with its end.
    let succeeded = seen
        .iter()
        .position(|(n, d)| n == "status" && d["status"] == "succeeded")
        .expect("a succeeded status");
    assert!(progress < succeeded, "{seen:?}");
    let end = &seen.last().unwrap().1;
    assert_eq!(end["id"], id.as_str());
    assert_eq!(end["status"], "succeeded");
    assert_eq!(end["progress"], serde_json::json!({"done": 3, "total": 4}));
}

#[test]
fn a_stream_of_a_job_that_does_not_end_in_time_says_timeout() {
    let env = Env::new("api-events-timeout");
    let server = serve(&env, &[]);
    let (acme, _) = token(&env, &["--tenant", "acme", "--scopes", "read"]);
    let mut job = env.job("acme/slow", "{}");
    job.delay = Duration::from_secs(3600);
    let id = env.enqueue_job(job);
    let reply = get(
        &server,
        &format!("/v1/jobs/{id}/events?timeout=1s"),
        Some(&acme),
    );
    let seen = events(&reply.body);
    let names: Vec<&str> = seen.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["status", "timeout"], "{seen:?}");
    assert_eq!(seen[0].1["status"], "delayed");
    let bad = get(
        &server,
        &format!("/v1/jobs/{id}/events?timeout=soon"),
        Some(&acme),
    );
    assert_eq!(bad.status, 400);
    assert_eq!(bad.json()["error"]["field"], "timeout");
}
