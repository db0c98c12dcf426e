//! `spool serve` (issue 14): a real server process, a real worker and
//! Redis; requests over plain HTTP/1.1 from a client of a few lines (so
//! that a test can send exactly the bytes it means, oversized ones too).

use crate::SPOOL;
use crate::command::{spool, succeeds};
use spool_tests::fleet::Env;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A `spool serve` child process; killed when dropped.
pub(crate) struct Server {
    child: Child,
    addr: String,
}

/// Requests go to an address: a server's, or a copy of it in a thread.
impl AsRef<str> for Server {
    fn as_ref(&self) -> &str {
        &self.addr
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn serve(env: &Env, extra: &[&str]) -> Server {
    let mut child = spool_tests::without_user_settings(&mut Command::new(SPOOL))
        .args([
            "serve",
            "--redis",
            &env.redis.url(),
            "--listen",
            "127.0.0.1:0",
        ])
        .args(extra)
        .env("SPOOL_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting spool serve");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .expect("spool serve's first line");
    let said = line.trim();
    let addr = said
        .strip_prefix("spool serve listening on http://")
        .or_else(|| said.strip_prefix("spool serve listening on https://"))
        .unwrap_or_else(|| panic!("spool serve said {line:?}"))
        .to_string();
    Server { child, addr }
}

/// A reply: status, headers (lowercase names), body.
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl Reply {
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One request on its own connection (`Connection: close`).
pub(crate) fn request(
    server: &impl AsRef<str>,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &[u8],
) -> Reply {
    request_typed(server, method, path, token, "application/json", body)
}

/// [`request`] with a body of `content_type`.
pub(crate) fn request_typed(
    server: &impl AsRef<str>,
    method: &str,
    path: &str,
    token: Option<&str>,
    content_type: &str,
    body: &[u8],
) -> Reply {
    let addr = server.as_ref();
    let mut s = TcpStream::connect(addr).expect("connect to spool serve");
    s.set_read_timeout(Some(Duration::from_secs(90))).unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n",
        addr,
        body.len()
    );
    if let Some(t) = token {
        head.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    // A server may answer (413) before it reads the whole body.
    let _ = s.write_all(body);
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    parse_reply(&raw)
}

pub(crate) fn parse_reply(raw: &[u8]) -> Reply {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP reply: {:?}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap_or("")
        .split(' ')
        .nth(1)
        .unwrap_or("0")
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v == "chunked")
    {
        body = unchunk(&body);
    }
    Reply {
        status,
        headers,
        body,
    }
}

fn unchunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(end) = data.windows(2).position(|w| w == b"\r\n") {
        let size =
            usize::from_str_radix(String::from_utf8_lossy(&data[..end]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        out.extend_from_slice(&data[end + 2..end + 2 + size]);
        data = &data[end + 2 + size + 2..];
    }
    out
}

/// A token made with `spool tokens create ARGS --json`.
pub(crate) fn token(env: &Env, args: &[&str]) -> (String, String) {
    let mut all = vec!["tokens", "create", "--json"];
    all.extend(args);
    let out: serde_json::Value = serde_json::from_str(&succeeds(&spool(env, &all))).unwrap();
    (
        out["token"].as_str().unwrap().to_string(),
        out["info"]["id"].as_str().unwrap().to_string(),
    )
}

/// `POST /v1/jobs` of `plugin` with payload `{"name": NAME}`, asking for a
/// completion notice.
fn post_job(server: &impl AsRef<str>, token: Option<&str>, plugin: &str, name: &str) -> Reply {
    request(
        server,
        "POST",
        "/v1/jobs",
        token,
        &enqueue_body(plugin, name),
    )
}

pub(crate) fn get(server: &impl AsRef<str>, path: &str, token: Option<&str>) -> Reply {
    request(server, "GET", path, token, b"")
}

fn enqueue_body(plugin: &str, name: &str) -> Vec<u8> {
    serde_json::json!({"plugin": plugin, "payload": {"name": name}, "wait": true})
        .to_string()
        .into_bytes()
}

#[test]
fn a_tenant_token_enqueues_and_waits_for_the_result() {
    let env = Env::new("api-roundtrip");
    let _worker = env.worker(&[("acme/hello", "hello")], |_| {});
    let server = serve(&env, &[]);
    let (acme, _) = token(&env, &["--tenant", "acme", "--scopes", "submit,read"]);
    let made = post_job(&server, Some(&acme), "hello", "Ann");
    assert_eq!(made.status, 201, "{}", String::from_utf8_lossy(&made.body));
    let made = made.json();
    assert_eq!(made["tenant"], "acme");
    let id = made["id"].as_str().unwrap();
    let done = get(
        &server,
        &format!("/v1/jobs/{id}/wait?timeout=30s"),
        Some(&acme),
    );
    assert_eq!(done.status, 200, "{}", String::from_utf8_lossy(&done.body));
    let record = done.json();
    assert_eq!(record["status"], "succeeded", "{record}");
    assert_eq!(record["plugin"], "acme/hello");
    assert!(
        record["output"].as_str().unwrap().contains("Hello, Ann"),
        "{record}"
    );
    // The same record, read plainly, and as Redis holds it.
    let read = get(&server, &format!("/v1/jobs/{id}"), Some(&acme)).json();
    assert_eq!(read["id"], id);
    assert_eq!(
        env.rt
            .block_on(env.queue.record_in("acme", id))
            .unwrap()
            .status,
        Some(spool_runtime::queue::Status::Succeeded)
    );
}

#[test]
fn a_token_reaches_only_its_own_tenant() {
    let env = Env::new("api-isolation");
    let server = serve(&env, &[]);
    let (acme, _) = token(&env, &["--tenant", "acme", "--scopes", "submit,read"]);
    let (beta, _) = token(
        &env,
        &["--tenant", "beta", "--scopes", "submit,read,deploy,admin"],
    );
    let (operator, _) = token(&env, &["--all-tenants", "--scopes", "read"]);
    let made = post_job(&server, Some(&acme), "hello", "A").json();
    let id = made["id"].as_str().unwrap().to_string();
    // Another tenant's job answers exactly as a job that never was.
    let theirs = get(&server, &format!("/v1/jobs/{id}"), Some(&beta));
    let never = get(&server, "/v1/jobs/01JNEVERWASAJOB0000000000", Some(&beta));
    assert_eq!((theirs.status, never.status), (404, 404));
    assert_eq!(
        theirs.json()["error"]["kind"],
        never.json()["error"]["kind"]
    );
    assert!(!String::from_utf8_lossy(&theirs.body).contains("acme"));
    let wait = get(
        &server,
        &format!("/v1/jobs/{id}/wait?timeout=1s"),
        Some(&beta),
    );
    assert_eq!(wait.status, 404);
    // Nor can it name the other tenant's plugin.
    let push = post_job(&server, Some(&beta), "acme/hello", "B");
    assert_eq!(push.status, 403, "{}", String::from_utf8_lossy(&push.body));
    assert_eq!(push.json()["error"]["kind"], "forbidden");
    assert_eq!(
        env.rt.block_on(env.queue.tenants()).unwrap(),
        ["acme"],
        "beta's refused job was stored"
    );
    // An operator's token reaches every tenant.
    let op = get(&server, &format!("/v1/jobs/{id}"), Some(&operator));
    assert_eq!(op.status, 200);
    assert_eq!(op.json()["plugin"], "acme/hello");
}

#[test]
fn missing_bad_revoked_and_expired_tokens_are_401_and_scopes_403() {
    let env = Env::new("api-tokens");
    let server = serve(&env, &[]);
    let (reader, _) = token(&env, &["--tenant", "acme", "--scopes", "read"]);
    let (submitter, _) = token(&env, &["--tenant", "acme", "--scopes", "submit"]);
    let (revoked, revoked_id) = token(&env, &["--tenant", "acme", "--scopes", "submit,read"]);
    let (expiring, _) = token(
        &env,
        &[
            "--tenant",
            "acme",
            "--scopes",
            "submit,read",
            "--expires",
            "1s",
        ],
    );
    succeeds(&spool(&env, &["tokens", "revoke", &revoked_id]));
    // The reader's id with a wrong secret: one digit off.
    let mut wrong_secret = reader.clone();
    let last = wrong_secret.pop().unwrap();
    wrong_secret.push(if last == '0' { '1' } else { '0' });
    std::thread::sleep(Duration::from_millis(1100));
    let body = enqueue_body("hello", "x");
    for (what, t) in [
        ("no token", None),
        ("malformed", Some("hunter2")),
        ("revoked", Some(revoked.as_str())),
        ("expired", Some(expiring.as_str())),
    ] {
        let r = request(&server, "POST", "/v1/jobs", t, &body);
        assert_eq!(
            r.status,
            401,
            "{what}: {}",
            String::from_utf8_lossy(&r.body)
        );
        assert_eq!(r.json()["error"]["kind"], "unauthorized", "{what}");
        assert_eq!(r.json()["error"]["retryable"], false, "{what}");
    }
    assert_eq!(get(&server, "/v1/jobs/x", Some(&wrong_secret)).status, 401);
    // Valid tokens without the route's scope.
    let r = request(&server, "POST", "/v1/jobs", Some(&reader), &body);
    assert_eq!(r.status, 403);
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("submit scope")
    );
    let made = request(&server, "POST", "/v1/jobs", Some(&submitter), &body).json();
    let id = made["id"].as_str().unwrap();
    assert_eq!(
        get(&server, &format!("/v1/jobs/{id}"), Some(&submitter)).status,
        403
    );
    assert_eq!(
        get(&server, &format!("/v1/jobs/{id}"), Some(&reader)).status,
        200
    );
    // Listed without secrets; the revoked one gone.
    let list = succeeds(&spool(&env, &["tokens", "list", "--json"]));
    assert!(!list.contains(&revoked_id), "{list}");
    assert!(!list.contains(&reader[19..]), "a secret was listed: {list}");
}

#[test]
fn repeated_failed_authentications_from_one_address_get_429() {
    let env = Env::new("api-guessing");
    let server = serve(&env, &[]);
    let guess = format!("spool_{}_{}", "ab".repeat(6), "cd".repeat(32));
    let mut statuses = Vec::new();
    for _ in 0..25 {
        statuses.push(get(&server, "/v1/jobs/x", Some(&guess)).status);
    }
    assert!(statuses[..20].iter().all(|s| *s == 401), "{statuses:?}");
    let last = get(&server, "/v1/jobs/x", Some(&guess));
    assert_eq!(last.status, 429);
    assert!(
        last.header("retry-after")
            .is_some_and(|v| v.parse::<u64>().is_ok_and(|s| s >= 1))
    );
    assert_eq!(last.json()["error"]["retryable"], true);
}

#[test]
fn oversized_and_malformed_bodies_are_refused_naming_what_is_wrong() {
    let env = Env::new("api-bodies");
    let server = serve(&env, &["--max-body", "1KiB"]);
    let (acme, _) = token(&env, &["--tenant", "acme", "--scopes", "submit,read"]);
    let big =
        serde_json::json!({"plugin": "hello", "payload": {"name": "x".repeat(2048)}}).to_string();
    let r = request(&server, "POST", "/v1/jobs", Some(&acme), big.as_bytes());
    assert_eq!(r.status, 413, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["error"]["kind"], "too-large");
    for (body, field) in [
        (r#"{"plugin": "hello", "priority": "urgent"}"#, "priority"),
        (r#"{"plugin": "hello", "delay": "soon"}"#, "delay"),
        (r#"{"plugin": "Bad Name!"}"#, "plugin"),
        (
            r#"{"plugin": "hello", "payload": 1, "payload_base64": "AA=="}"#,
            "payload_base64",
        ),
        (r#"{"plugin": "hello", "colour": "red"}"#, "body"),
        (r#"{"plugin": "hel"#, "body"),
    ] {
        let r = request(&server, "POST", "/v1/jobs", Some(&acme), body.as_bytes());
        assert_eq!(
            r.status,
            400,
            "{body}: {}",
            String::from_utf8_lossy(&r.body)
        );
        assert_eq!(r.json()["error"]["field"], field, "{body}");
    }
    assert!(
        env.rt.block_on(env.queue.tenants()).unwrap().is_empty(),
        "a refused job was stored"
    );
}

#[test]
fn readyz_and_requests_say_503_while_redis_is_down_and_recover() {
    let mut env = Env::new("api-outage");
    let server = serve(&env, &[]);
    let (acme, _) = token(&env, &["--tenant", "acme", "--scopes", "submit,read"]);
    assert_eq!(get(&server, "/readyz", None).status, 200);
    env.redis.stop();
    assert_eq!(get(&server, "/healthz", None).status, 200);
    let ready = get(&server, "/readyz", None);
    assert_eq!(ready.status, 503);
    assert_eq!(ready.json()["ready"], false);
    let r = post_job(&server, Some(&acme), "hello", "x");
    assert_eq!(r.status, 503, "{}", String::from_utf8_lossy(&r.body));
    // The Redis URL (which may hold a password) is for the server's log.
    let port = env.redis.port().to_string();
    for body in [&r.body, &ready.body] {
        assert!(
            !String::from_utf8_lossy(body).contains(&port),
            "{}",
            String::from_utf8_lossy(body)
        );
    }
    assert_eq!(r.json()["error"]["retryable"], true);
    assert!(r.header("retry-after").is_some());
    env.redis.restart().expect("restart redis");
    env.wait_for("readyz to answer 200 again", || {
        get(&server, "/readyz", None).status == 200
    });
    let r = post_job(&server, Some(&acme), "hello", "x");
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
}

#[test]
fn waits_beyond_the_limit_get_503_and_other_methods_405() {
    let env = Env::new("api-waits");
    let server = serve(&env, &["--max-waits", "1"]);
    let (acme, _) = token(&env, &["--tenant", "acme", "--scopes", "submit,read"]);
    // No worker serves it: a wait holds its slot until its timeout.
    let body = br#"{"plugin": "hello", "delay": "1h"}"#;
    let made = request(&server, "POST", "/v1/jobs", Some(&acme), body).json();
    let id = made["id"].as_str().unwrap().to_string();
    // Two waits at once: one holds the only slot until its timeout (202
    // and the record), the other is turned away at once.
    let waits: Vec<_> = (0..2)
        .map(|_| {
            let (addr, acme, id) = (server.addr.clone(), acme.clone(), id.clone());
            std::thread::spawn(move || {
                get(
                    &addr,
                    &format!("/v1/jobs/{id}/wait?timeout=3s"),
                    Some(&acme),
                )
            })
        })
        .collect();
    let mut replies: Vec<Reply> = waits.into_iter().map(|w| w.join().unwrap()).collect();
    replies.sort_by_key(|r| r.status);
    assert_eq!((replies[0].status, replies[1].status), (202, 503));
    assert_eq!(replies[0].json()["status"], "delayed");
    assert_eq!(replies[1].json()["error"]["kind"], "busy");
    assert!(replies[1].header("retry-after").is_some());
    let r = request(&server, "DELETE", "/v1/jobs", Some(&acme), b"");
    assert_eq!(r.status, 405);
    assert_eq!(r.json()["error"]["kind"], "method-not-allowed");
}

#[test]
fn dead_letters_are_listed_retried_and_purged_within_the_tenant() {
    let env = Env::new("api-dead");
    let _worker = env.worker(&[("acme/hello", "hello"), ("beta/hello", "hello")], |_| {});
    let server = serve(&env, &[]);
    // An empty name is invalid input: dead at its first attempt.
    let ours = env.enqueue("acme/hello", r#"{"name":""}"#);
    let theirs = env.enqueue("beta/hello", r#"{"name":""}"#);
    for id in [&ours, &theirs] {
        assert_eq!(
            env.wait(id).status,
            Some(spool_runtime::queue::Status::Dead)
        );
    }
    let (reader, _) = token(&env, &["--tenant", "acme", "--scopes", "read"]);
    let (admin, _) = token(&env, &["--tenant", "acme", "--scopes", "read,admin"]);
    let page = get(&server, "/v1/dead?limit=10", Some(&reader)).json();
    assert_eq!(page["total"], 1, "{page}");
    assert_eq!(page["entries"][0]["id"], ours.as_str());
    assert_eq!(
        page["entries"][0]["record"]["error"]["kind"],
        "invalid-input"
    );
    assert_eq!(get(&server, "/v1/dead?limit=0", Some(&reader)).status, 400);
    // An operator sees both, or one tenant's when it names it; a tenant
    // cannot name another.
    let (operator, _) = token(&env, &["--all-tenants", "--scopes", "read,admin"]);
    assert_eq!(get(&server, "/v1/dead", Some(&operator)).json()["total"], 2);
    let one = get(&server, "/v1/dead?tenant=beta", Some(&operator)).json();
    assert_eq!(
        (one["total"].clone(), one["entries"][0]["id"].clone()),
        (1.into(), theirs.as_str().into())
    );
    assert_eq!(
        get(&server, "/v1/dead?tenant=beta", Some(&reader)).status,
        403
    );
    let none = request(
        &server,
        "POST",
        "/v1/dead/purge?tenant=beta",
        Some(&admin),
        br#"{"all":true}"#,
    );
    assert_eq!(none.status, 403, "a tenant's admin cannot purge another's");
    let past = get(&server, "/v1/dead?offset=1", Some(&reader)).json();
    assert_eq!(
        (past["total"].clone(), past["entries"].clone()),
        (1.into(), serde_json::json!([]))
    );
    let deep = get(&server, "/v1/dead?offset=100001", Some(&reader));
    assert_eq!(
        (deep.status, deep.json()["error"]["field"].clone()),
        (400, "offset".into())
    );
    let retry = |token: &str, body: &str| {
        request(
            &server,
            "POST",
            "/v1/dead/retry",
            Some(token),
            body.as_bytes(),
        )
    };
    assert_eq!(retry(&reader, r#"{"ids": ["x"]}"#).status, 403);
    // Another tenant's id is skipped like an unknown one.
    let r = retry(&admin, &format!(r#"{{"ids": ["{theirs}"]}}"#));
    assert_eq!(
        (r.status, r.json()["moved"].clone()),
        (200, serde_json::json!([]))
    );
    let r = retry(&admin, r#"{"ids": []}"#);
    assert_eq!(
        (r.status, r.json()["error"]["field"].clone()),
        (400, "ids".into())
    );
    let purge = request(
        &server,
        "POST",
        "/v1/dead/purge",
        Some(&admin),
        br#"{"all": true}"#,
    );
    assert_eq!(
        (purge.status, purge.json()["purged"].clone()),
        (200, 1.into())
    );
    let (total, left) = env.rt.block_on(env.queue.dead_list(10)).unwrap();
    assert_eq!(
        (total, left[0].id.as_str()),
        (1, theirs.as_str()),
        "beta's dead letter stays"
    );
}

#[test]
fn a_batch_is_checked_whole_before_any_job_is_stored() {
    let env = Env::new("api-batch");
    let server = serve(&env, &[]);
    let (acme, _) = token(&env, &["--tenant", "acme", "--scopes", "submit,read"]);
    let bad =
        br#"[{"plugin": "hello"}, {"plugin": "hello"}, {"plugin": "hello", "priority": "urgent"}]"#;
    let r = request(&server, "POST", "/v1/jobs/batch", Some(&acme), bad);
    assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["error"]["field"], "[2].priority");
    assert!(
        env.rt.block_on(env.queue.tenants()).unwrap().is_empty(),
        "part of a refused batch was stored"
    );
    let foreign = br#"[{"plugin": "hello"}, {"plugin": "beta/hello"}]"#;
    assert_eq!(
        request(&server, "POST", "/v1/jobs/batch", Some(&acme), foreign).status,
        403
    );
    let good = br#"[{"plugin": "hello", "payload": {"name": "a"}}, {"plugin": "hello", "payload": {"name": "b"}}]"#;
    let r = request(&server, "POST", "/v1/jobs/batch", Some(&acme), good);
    assert_eq!(r.status, 201);
    let ids = r.json()["ids"].as_array().unwrap().clone();
    assert_eq!(ids.len(), 2);
    for id in ids {
        let record = get(
            &server,
            &format!("/v1/jobs/{}", id.as_str().unwrap()),
            Some(&acme),
        )
        .json();
        assert_eq!(record["status"], "queued");
    }
}

#[test]
fn the_python_example_enqueues_and_waits_over_http_with_a_token() {
    let env = Env::new("api-python");
    let _worker = env.worker(&[("acme/hello", "hello")], |_| {});
    let server = serve(&env, &[]);
    let (acme, _) = token(&env, &["--tenant", "acme", "--scopes", "submit,read"]);
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/python/http_enqueue.py");
    let run = |args: &[&str]| {
        Command::new("python3")
            .arg(&script)
            .args(["--api", &format!("http://{}", server.addr)])
            .args(args)
            .env("SPOOL_TOKEN", &acme)
            .output()
            .expect("running python3")
    };
    let out = run(&["hello", r#"{"name":"Py"}"#, "--wait"]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        r#"{"greeting":"Hello, Py!"}"#
    );
    // A dead job: exit 1 with its error.
    let out = run(&["hello", r#"{"name":""}"#, "--wait"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid-input"));
    // Another tenant's plugin: the API's refusal, exit 2.
    let out = run(&["beta/hello", "{}"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("403 forbidden"));
}

#[test]
fn a_job_that_has_not_started_can_be_cancelled_and_never_runs() {
    let env = Env::new("api-cancel");
    let server = serve(&env, &[]);
    let (acme, _) = token(&env, &["--tenant", "acme", "--scopes", "submit,read"]);
    let (beta, _) = token(&env, &["--tenant", "beta", "--scopes", "submit,read"]);
    let post = |body: &str| {
        let r = request(&server, "POST", "/v1/jobs", Some(&acme), body.as_bytes());
        r.json()["id"].as_str().unwrap().to_string()
    };
    let cancel = |id: &str, token: &str| {
        request(
            &server,
            "POST",
            &format!("/v1/jobs/{id}/cancel"),
            Some(token),
            b"",
        )
    };
    // Delayed, and queued in a group, before any worker runs.
    let delayed = post(r#"{"plugin": "hello", "payload": {"name": "d"}, "delay": "1s"}"#);
    let first = post(r#"{"plugin": "hello", "payload": {"name": "g1"}, "group": "g"}"#);
    let second = post(r#"{"plugin": "hello", "payload": {"name": "g2"}, "group": "g"}"#);
    assert_eq!(cancel(&delayed, &beta).status, 404, "another tenant's job");
    for id in [&delayed, &first] {
        let r = cancel(id, &acme);
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        assert_eq!(r.json()["status"], "cancelled");
    }
    let again = cancel(&delayed, &acme);
    assert_eq!(
        (again.status, again.json()["error"]["kind"].clone()),
        (409, "conflict".into())
    );
    // A wait on a cancelled job ends at once.
    let waited = get(
        &server,
        &format!("/v1/jobs/{delayed}/wait?timeout=30s"),
        Some(&acme),
    );
    assert_eq!(
        (waited.status, waited.json()["status"].clone()),
        (200, "cancelled".into())
    );
    // The group's next job runs; a job delayed as long as the cancelled one
    // runs too, and the cancelled ones never do.
    let later = post(r#"{"plugin": "hello", "payload": {"name": "l"}, "delay": "1s"}"#);
    let _worker = env.worker(&[("acme/hello", "hello")], |_| {});
    let ok = Some(spool_runtime::queue::Status::Succeeded);
    for id in [&second, &later] {
        assert_eq!(
            env.rt
                .block_on(env.queue.wait_for("acme", id, Duration::from_secs(30)))
                .unwrap()
                .status,
            ok
        );
    }
    for id in [&delayed, &first] {
        let r = env.rt.block_on(env.queue.record_in("acme", id)).unwrap();
        assert_eq!(
            (r.status, r.attempts),
            (Some(spool_runtime::queue::Status::Cancelled), 0)
        );
    }
    let cancelled: u64 = redis::cmd("HGET")
        .arg(format!("{}:stats", env.tenant_keys("acme")))
        .arg("cancelled")
        .query(&mut env.redis_conn())
        .unwrap();
    assert_eq!(cancelled, 2, "the tenant's cancelled counter");
    let done = cancel(&later, &acme);
    assert_eq!(done.status, 409);
    assert!(
        done.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("succeeded")
    );
}
