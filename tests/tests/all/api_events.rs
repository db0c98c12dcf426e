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
    assert_eq!(seen[progress].1["done"], 3);
    assert_eq!(seen[progress].1["total"], 4);
    assert_eq!(seen[progress].1["attempt"], 1);
    // The progress came while the job ran, not with its end.
    let succeeded = seen
        .iter()
        .position(|(n, d)| n == "status" && d["status"] == "succeeded")
        .expect("a succeeded status");
    assert!(progress < succeeded, "{seen:?}");
    let end = &seen.last().unwrap().1;
    assert_eq!(end["id"], id.as_str());
    assert_eq!(end["status"], "succeeded");
    assert_eq!(end["progress"]["done"], 3);
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

#[test]
fn the_timeline_counts_each_minute_of_the_tenants_jobs() {
    use spool_runtime::queue::Status;
    let env = Env::new("api-timeline");
    let _worker = env.worker(
        &[("acme/echo", "introspect"), ("beta/echo", "introspect")],
        |_| {},
    );
    let server = serve(&env, &[]);
    let (acme, _) = token(&env, &["--tenant", "acme", "--scopes", "read"]);
    let (beta, _) = token(&env, &["--tenant", "beta", "--scopes", "read"]);
    for i in 0..5 {
        let id = env.enqueue("acme/echo", &format!(r#"{{"echo":{i}}}"#));
        assert_eq!(env.wait(&id).status, Some(Status::Succeeded));
    }
    let mut fatal = env.job("acme/echo", r#"{"fail":"fatal"}"#);
    fatal.max_attempts = 1;
    let dead = env.enqueue_job(fatal);
    assert_eq!(env.wait(&dead).status, Some(Status::Dead));

    // Workers flush every 5 s.
    env.wait_for("acme's counts in the timeline", || {
        let t = get(&server, "/v1/stats/timeline?minutes=5", Some(&acme)).json();
        t["total"]["window"]["ok"] == 5 && t["total"]["window"]["dead"] == 1
    });
    let t = get(&server, "/v1/stats/timeline?minutes=5", Some(&acme)).json();
    assert_eq!(t["tenant"], "acme");
    assert_eq!(t["minutes"].as_array().unwrap().len(), 5);
    let ok: u64 = t["total"]["ok"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(ok, 5, "{t}");
    let p50 = t["total"]["window"]["p50"]
        .as_f64()
        .expect("a median run time");
    assert!(p50 > 0.0 && p50 <= 10.0, "{p50}");
    assert_eq!(t["plugins"]["echo"]["window"]["ok"], 5, "{t}");
    // Beta ran nothing; it cannot ask for acme's.
    let theirs = get(&server, "/v1/stats/timeline?minutes=5", Some(&beta)).json();
    assert_eq!(theirs["total"]["window"]["ok"], 0, "{theirs}");
    let peek = get(&server, "/v1/stats/timeline?tenant=acme", Some(&beta));
    assert_eq!(peek.status, 403);
    let bad = get(&server, "/v1/stats/timeline?minutes=1000", Some(&acme));
    assert_eq!(bad.status, 400);
}

/// A stream request whose answer's status line is read, and the
/// connection kept open (dropping it is the client leaving).
fn open_stream(addr: &str, path: &str, token: &str) -> (u16, std::net::TcpStream) {
    use std::io::{BufRead, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\r\n"
    )
    .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(s.try_clone().unwrap())
        .read_line(&mut line)
        .unwrap();
    let status = line
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, s)
}

#[test]
fn one_tenant_cannot_take_every_stream_and_a_client_that_leaves_frees_its_slot() {
    let env = Env::new("api-events-slots");
    // 8 waits and streams per server: 2 per tenant.
    let server = serve(&env, &["--max-waits", "8"]);
    let addr: &str = server.as_ref();
    let (acme, _) = token(&env, &["--tenant", "acme", "--scopes", "read"]);
    let (beta, _) = token(&env, &["--tenant", "beta", "--scopes", "read"]);
    let delayed = |plugin: &str| {
        let mut job = env.job(plugin, "{}");
        job.delay = Duration::from_secs(3600);
        env.enqueue_job(job)
    };
    let (a, b) = (delayed("acme/slow"), delayed("beta/slow"));
    let path = |id: &str| format!("/v1/jobs/{id}/events?timeout=10m");
    let (s1, first) = open_stream(addr, &path(&a), &acme);
    let (s2, _second) = open_stream(addr, &path(&a), &acme);
    assert_eq!((s1, s2), (200, 200));
    let third = get(&server, &path(&a), Some(&acme));
    assert_eq!(third.status, 503, "a third stream of one tenant");
    assert!(
        third.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("tenant acme"),
    );
    let (theirs, _beta_stream) = open_stream(addr, &path(&b), &beta);
    assert_eq!(theirs, 200, "another tenant still gets a slot");
    // The first client leaves: its slot comes back within a poll.
    drop(first);
    env.wait_for("the slot of a client that left", || {
        open_stream(addr, &path(&a), &acme).0 == 200
    });
}
