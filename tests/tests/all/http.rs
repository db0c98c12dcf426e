//! Outbound HTTP from plugins (plugins/fixtures/http_client) against a
//! real server on a loopback port: allowed requests work, everything else
//! is refused with the typed error the handler reads, and the job's
//! record shows each request.

use axum::Router;
use axum::body::Body;
use axum::extract::Path as UrlPath;
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::{get, post};
use serde_json::{Value, json};
use spool_runtime::plugins::{self, Capabilities, LoadError};
use spool_runtime::sandbox::http::{AllowList, Cidr, HttpLimits, Outbound};
use spool_runtime::sandbox::{JobFailure, JobRun, JobServices, Limits};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// The test server's port: one server for the whole binary.
fn server() -> u16 {
    static PORT: OnceLock<u16> = OnceLock::new();
    *PORT.get_or_init(|| {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binding the test server");
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                axum::serve(listener, routes(port)).await.unwrap();
            });
        });
        port
    })
}

fn routes(port: u16) -> Router {
    Router::new()
        .route("/hello", get(|| async { "hello from the test server" }))
        .route("/echo", post(|headers: HeaderMap, body: String| async move {
            let kind = headers
                .get(header::CONTENT_TYPE)
                .map(|v| v.to_str().unwrap_or("").to_string())
                .unwrap_or_default();
            format!("{kind}|{body}")
        }))
        .route("/redirect/same", get(|| async { (StatusCode::FOUND, [(header::LOCATION, "/hello")]) }))
        .route(
            "/redirect/elsewhere",
            get(move || async move {
                let to = format!("http://localhost:{port}/hello");
                (StatusCode::FOUND, [(header::LOCATION, to)])
            }),
        )
        .route("/slow", get(|| async {
            tokio::time::sleep(Duration::from_secs(20)).await;
            "late"
        }))
        .route("/huge", get(|| async { Body::from(vec![b'x'; 4 << 20]) }))
        .route("/drip", get(|| async { Body::from_stream(drip()) }))
        .route("/hook", post(receive_hook))
        // Reads the request first: a receiver that answers before the body
        // is in and closes can reset the connection under the answer,
        // which is not what this route is for (the retry class of a 503).
        .route("/hook-down", post(|_: axum::body::Bytes| async { StatusCode::SERVICE_UNAVAILABLE }))
        .route("/cat.png", get(|| async { ([(header::CONTENT_TYPE, "image/png")], cat_png()) }))
        .route("/status/{code}", get(|code: UrlPath<u16>| async move {
            (StatusCode::from_u16(code.0).unwrap(), "status")
        }))
}

fn url(path: &str) -> String {
    format!("http://127.0.0.1:{}{path}", server())
}

/// The fixture, loaded once with a grant (which hosts a job may call is
/// what its run's allow list says).
fn client() -> plugins::Plugin {
    static PLUGIN: OnceLock<plugins::Plugin> = OnceLock::new();
    PLUGIN
        .get_or_init(|| {
            let caps = Capabilities {
                http: AllowList::parse(&["http://*:*"]).unwrap(),
                ..Capabilities::default()
            };
            plugins::load(
                spool_tests::sandbox(),
                &spool_tests::plugin_path("http_client"),
                &caps,
            )
            .expect("loading http_client with a grant")
        })
        .clone()
}

/// Run the fixture with `input` under `allow`, the loopback range opened
/// unless `private` is false, `limits` for the job and `http` for requests.
fn fetch_with(
    input: Value,
    allow: &[&str],
    private: bool,
    limits: &Limits,
    http: HttpLimits,
) -> JobRun {
    let opened = if private {
        vec![Cidr::parse("127.0.0.1/32").unwrap()]
    } else {
        Vec::new()
    };
    // The operator's ceiling names the same hosts: what private ranges
    // need.
    let list = Arc::new(AllowList::parse(allow).unwrap());
    let services = JobServices {
        http_allow: Some(Arc::clone(&list)),
        http_ceiling: Some(list),
        outbound: Some(Arc::new(Outbound::new(http, opened, 8))),
        ..JobServices::default()
    };
    client().run_with(super::json_job(&input.to_string()), limits, &services)
}

fn fetch(input: Value, allow: &[&str]) -> JobRun {
    fetch_with(
        input,
        allow,
        true,
        &Limits::default(),
        HttpLimits::default(),
    )
}

fn this_server() -> String {
    format!("http://127.0.0.1:{}", server())
}

fn fatal(run: &JobRun) -> String {
    match &run.result {
        Err(JobFailure::Fatal { message }) => message.clone(),
        other => panic!("expected a fatal failure, got {other:?}"),
    }
}

fn log_text(run: &JobRun) -> String {
    run.log
        .lines
        .iter()
        .map(|l| format!("{}\n", l.message))
        .collect()
}

#[test]
fn an_allowed_get_and_post_reach_the_server() {
    let server = this_server();
    let run = fetch(json!({"url": url("/hello")}), &[&server]);
    let out = super::output_json(&run);
    assert_eq!(out["status"], 200);
    assert_eq!(out["body"], "hello from the test server");
    let run = fetch(
        json!({"url": url("/echo"), "method": "POST", "body": "{\"n\":7}",
               "headers": [["content-type", "application/json"]]}),
        &[&server],
    );
    assert_eq!(
        super::output_json(&run)["body"],
        "application/json|{\"n\":7}"
    );
    // The request is on record: method, origin, status and bytes, no path.
    assert_eq!(run.http.len(), 1);
    let call = &run.http[0];
    assert_eq!(
        (call.method.as_str(), call.origin.as_str()),
        ("POST", server.as_str())
    );
    assert_eq!(
        (call.status, call.bytes_out, call.bytes_in),
        (Some(200), 7, 24)
    );
    assert_eq!(run.host_calls, 1);
}

#[test]
fn a_host_not_on_the_list_is_denied_naming_the_url_and_the_rules() {
    let run = fetch(
        json!({"url": format!("http://localhost:{}/hello?token=secret", server())}),
        &[&this_server()],
    );
    let message = fatal(&run);
    assert!(message.starts_with("http-request-denied:"), "{message}");
    assert!(!message.contains("secret"), "the query leaked: {message}");
    let log = log_text(&run);
    assert!(
        log.contains(&format!(
            "GET http://localhost:{} refused (http-request-denied)",
            server()
        )),
        "{log}"
    );
    assert!(log.contains(&format!("[\"{}\"]", this_server())), "{log}");
    // Paths and queries may carry secrets: the log names the origin.
    assert!(!log.contains("secret") && !log.contains("/hello"), "{log}");
    assert_eq!(run.http[0].error.as_deref(), Some("http-request-denied"));
    assert_eq!(run.http[0].status, None);
}

#[test]
fn a_redirect_is_checked_against_the_list_again() {
    let server = this_server();
    let run = fetch(json!({"url": url("/redirect/same")}), &[&server]);
    assert_eq!(
        super::output_json(&run)["body"],
        "hello from the test server"
    );
    let run = fetch(json!({"url": url("/redirect/elsewhere")}), &[&server]);
    assert!(fatal(&run).starts_with("http-request-denied:"));
    let outcomes: Vec<_> = run
        .http
        .iter()
        .map(|c| (c.status, c.error.clone()))
        .collect();
    assert_eq!(
        outcomes,
        [
            (Some(302), None),
            (None, Some("http-request-denied".into()))
        ]
    );
}

#[test]
fn private_loopback_and_metadata_addresses_are_prohibited_without_the_operators_grant() {
    let port = server();
    for (target, allow) in [
        // A literal loopback address on the list.
        (
            format!("http://127.0.0.1:{port}/hello"),
            format!("http://127.0.0.1:{port}"),
        ),
        // A DNS name that resolves to loopback.
        (
            format!("http://localhost:{port}/hello"),
            format!("http://localhost:{port}"),
        ),
        // The cloud metadata service, under the widest rule there is.
        (
            "http://169.254.169.254/latest/meta-data/".to_string(),
            "http://*:*".to_string(),
        ),
        (
            "http://[::ffff:127.0.0.1]:9/".to_string(),
            "http://*:*".to_string(),
        ),
        ("http://10.0.0.1/".to_string(), "http://*:*".to_string()),
    ] {
        let run = fetch_with(
            json!({"url": target}),
            &[&allow],
            false,
            &Limits::default(),
            HttpLimits::default(),
        );
        let message = fatal(&run);
        assert!(
            message.starts_with("destination-ip-prohibited:"),
            "{target}: {message}"
        );
        assert!(log_text(&run).contains("--http-allow-private"), "{target}");
        assert_eq!(
            run.http[0].error.as_deref(),
            Some("destination-ip-prohibited")
        );
    }
    // The metadata address stays refused when only loopback is opened.
    let run = fetch(json!({"url": "http://169.254.169.254/"}), &["http://*:*"]);
    assert!(fatal(&run).starts_with("destination-ip-prohibited:"));
}

#[test]
fn a_slow_server_hits_the_request_timeout_then_the_job_deadline() {
    let server = this_server();
    // The handler's own timeout: a retryable error it can read.
    let run = fetch(
        json!({"url": url("/slow"), "timeout_ms": 300, "catch": true}),
        &[&server],
    );
    let out = super::output_json(&run);
    assert_eq!(out["retryable"], true, "{out}");
    assert!(
        out["error"].as_str().unwrap().starts_with("timeout:"),
        "{out}"
    );
    // The host's request timeout, shorter than the job's deadline.
    let http = HttpLimits {
        timeout: Duration::from_millis(300),
        ..HttpLimits::default()
    };
    let run = fetch_with(
        json!({"url": url("/slow")}),
        &[&server],
        true,
        &Limits::default(),
        http,
    );
    assert!(
        matches!(&run.result, Err(JobFailure::Retryable { message }) if message.starts_with("timeout:")),
        "{:?}",
        run.result
    );
    assert_eq!(run.http[0].error.as_deref(), Some("http-response-timeout"));
    // The job's deadline comes first: the job times out.
    let limits = Limits {
        timeout: Duration::from_millis(500),
        ..Limits::default()
    };
    let run = fetch_with(
        json!({"url": url("/slow"), "catch": true}),
        &[&server],
        true,
        &limits,
        HttpLimits::default(),
    );
    assert!(
        matches!(run.result, Err(JobFailure::Timeout { .. })),
        "{:?}",
        run.result
    );
}

#[test]
fn a_huge_response_hits_the_body_cap() {
    let http = HttpLimits {
        max_response_bytes: 1 << 20,
        ..HttpLimits::default()
    };
    let run = fetch_with(
        json!({"url": url("/huge")}),
        &[&this_server()],
        true,
        &Limits::default(),
        http,
    );
    let message = fatal(&run);
    assert!(message.starts_with("http-response-body-size:"), "{message}");
    assert!(message.contains("1048576 bytes"), "{message}");
    let call = &run.http[0];
    assert_eq!(call.error.as_deref(), Some("http-response-body-size"));
    assert!(
        call.bytes_in > 1 << 20 && call.bytes_in < 4 << 20,
        "{call:?}"
    );
}

#[test]
fn requests_per_job_and_bytes_out_are_bounded() {
    let http = HttpLimits {
        max_requests: 3,
        max_request_bytes: 10,
        ..HttpLimits::default()
    };
    let server = this_server();
    let run = fetch_with(
        json!({"url": url("/hello"), "times": 4}),
        &[&server],
        true,
        &Limits::default(),
        http.clone(),
    );
    assert!(fatal(&run).starts_with("connection-limit-reached:"));
    assert_eq!(run.http.len(), 4);
    assert_eq!(
        run.http[3].error.as_deref(),
        Some("connection-limit-reached")
    );
    let run = fetch_with(
        json!({"url": url("/echo"), "method": "POST", "body": "more than ten bytes"}),
        &[&server],
        true,
        &Limits::default(),
        http,
    );
    assert!(
        fatal(&run).starts_with("http-request-body-size:"),
        "{:?}",
        run.result
    );
}

#[test]
fn a_5xx_is_retryable_and_a_4xx_is_not() {
    let server = this_server();
    let run = fetch(json!({"url": url("/status/503")}), &[&server]);
    assert_eq!(super::output_json(&run)["status"], 503);
    assert_eq!(run.http[0].status, Some(503));
    for (code, retryable) in [(503, true), (429, true), (404, false)] {
        let run = fetch(
            json!({"url": url(&format!("/status/{code}")), "check": true, "catch": true}),
            &[&server],
        );
        let out = super::output_json(&run);
        assert_eq!(out["retryable"], retryable, "{code}: {out}");
        assert!(
            out["error"]
                .as_str()
                .unwrap()
                .ends_with(&format!("answered {code}")),
            "{out}"
        );
    }
}

#[test]
fn a_plugin_importing_http_without_a_grant_is_refused_at_load() {
    let path = spool_tests::plugin_path("http_client");
    let error = plugins::load(spool_tests::sandbox(), &path, &Capabilities::default()).unwrap_err();
    match error {
        LoadError::ForbiddenImport { import, reason, .. } => {
            assert!(import.starts_with("wasi:http/"), "{import}");
            assert!(reason.contains("[http] allow"), "{reason}");
        }
        other => panic!("expected a forbidden import, got {other}"),
    }
    // Plugins that make no request import nothing of wasi:http.
    spool_tests::plugin("hello");
}

#[test]
fn a_queued_job_records_its_requests_and_the_manifest_grants_the_hosts() {
    // The operator names the loopback server in acme's ceiling: what lets
    // acme reach the opened range. beta's own manifest naming it is not
    // enough.
    let (env, dir) = two_tenants_fetching("http-record", &[("acme", &[this_server()])]);
    let mut metrics = None;
    let (_registry, worker) = env.serve_dir(&dir, |c| {
        c.outbound = Arc::new(Outbound::new(
            HttpLimits::default(),
            vec![Cidr::parse("127.0.0.1/32").unwrap()],
            4,
        ));
        metrics = Some(Arc::clone(&c.metrics));
    });
    let ok = env.enqueue(
        "acme/fetch",
        &json!({"url": url("/hello?key=secret")}).to_string(),
    );
    let denied = env.enqueue(
        "acme/fetch",
        &json!({"url": "http://localhost:1/x"}).to_string(),
    );
    let unnamed = env.enqueue("beta/fetch", &json!({"url": url("/hello")}).to_string());
    let record = env.wait(&ok);
    assert_eq!(
        record.status,
        Some(spool_runtime::queue::Status::Succeeded),
        "{record:?}"
    );
    let calls = record.http.expect("the record lists the requests");
    assert_eq!(calls[0]["origin"], this_server());
    assert_eq!(calls[0]["status"], 200);
    assert!(!calls.to_string().contains("secret"), "{calls}");
    let record = env.wait(&denied);
    assert_eq!(
        record.status,
        Some(spool_runtime::queue::Status::Dead),
        "{record:?}"
    );
    assert_eq!(record.http.unwrap()[0]["error"], "http-request-denied");
    let record = env.wait(&unnamed);
    assert_eq!(
        record.http.unwrap()[0]["error"],
        "destination-ip-prohibited"
    );
    // And in the worker's metrics, by outcome.
    let scrape = spool_runtime::metrics::render(&metrics.unwrap());
    assert!(
        scrape.contains("spool_http_requests_total{outcome=\"2xx\"} 1\n"),
        "{scrape}"
    );
    assert!(
        scrape.contains("spool_http_requests_total{outcome=\"http-request-denied\"} 1\n"),
        "{scrape}"
    );
    drop(worker);
}

#[test]
fn a_tenants_ceiling_bounds_what_its_manifests_grant() {
    let (env, dir) = two_tenants_fetching(
        "http-ceiling",
        &[
            ("acme", &["https://*.example.com".to_string()]),
            ("beta", &[this_server()]),
        ],
    );
    let (_registry, worker) = env.serve_dir(&dir, |c| {
        c.outbound = Arc::new(Outbound::new(
            HttpLimits::default(),
            vec![Cidr::parse("127.0.0.1/32").unwrap()],
            4,
        ));
    });
    let input = json!({"url": url("/hello")}).to_string();
    let capped = env.enqueue("acme/fetch", &input);
    let free = env.enqueue("beta/fetch", &input);
    let record = env.wait(&capped);
    assert_eq!(
        record.status,
        Some(spool_runtime::queue::Status::Dead),
        "{record:?}"
    );
    let logs = record.logs.unwrap().to_string();
    assert!(
        logs.contains("outside tenant acme's ceiling [\\\"https://*.example.com\\\"]"),
        "{logs}"
    );
    let record = env.wait(&free);
    assert_eq!(
        record.status,
        Some(spool_runtime::queue::Status::Succeeded),
        "{record:?}"
    );
    drop(worker);
}

/// A fleet environment whose plugins directory has `acme/fetch` and
/// `beta/fetch` (the `http_client` fixture), each manifest allowing the
/// test server, and the tenant ceilings `ceilings` set by the operator.
fn two_tenants_fetching(
    label: &str,
    ceilings: &[(&str, &[String])],
) -> (spool_tests::fleet::Env, std::path::PathBuf) {
    use spool_runtime::tenants::TenantStore;
    use spool_runtime::tenants::store::Target;
    let env = spool_tests::fleet::Env::new(label);
    let dir = env.plugins_dir(&[("acme/fetch", "http_client"), ("beta/fetch", "http_client")]);
    for tenant in ["acme", "beta"] {
        std::fs::write(
            dir.join(format!("{tenant}/fetch.toml")),
            format!("[http]\nallow = [\"{}\"]\n", this_server()),
        )
        .unwrap();
    }
    let store = TenantStore::new(&env.queue_config().prefix);
    for (tenant, rules) in ceilings {
        let target = Target::Tenant((*tenant).to_string());
        store
            .set_http_allow(&mut env.redis_conn(), &target, Some(rules))
            .unwrap();
    }
    (env, dir)
}

/// A body that never ends: a byte every 100 ms.
fn drip() -> impl futures_util::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    futures_util::stream::unfold((), |()| async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        Some((Ok(vec![b'.']), ()))
    })
}

/// The webhook receiver: 200 when `x-spool-signature` is the HMAC-SHA256
/// of the body under the shared secret, else 401.
async fn receive_hook(headers: HeaderMap, body: axum::body::Bytes) -> StatusCode {
    use hmac::{Hmac, Mac};
    let given = headers
        .get("x-spool-signature")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("sha256="))
        .unwrap_or_default()
        .to_string();
    let delivery = headers
        .get("x-spool-delivery")
        .map(|v| v.as_bytes().to_vec());
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(HOOK_SECRET.as_bytes()).unwrap();
    mac.update(&body);
    let bytes: Vec<u8> = (0..given.len() / 2)
        .filter_map(|i| u8::from_str_radix(given.get(2 * i..2 * i + 2)?, 16).ok())
        .collect();
    if delivery.as_deref() == Some(b"test-job".as_slice()) && mac.verify_slice(&bytes).is_ok() {
        StatusCode::OK
    } else {
        StatusCode::UNAUTHORIZED
    }
}

const HOOK_SECRET: &str = "s3cret-shared-with-the-receiver";

/// A 256×128 PNG.
fn cat_png() -> Vec<u8> {
    let image = image::RgbImage::from_fn(256, 128, |x, y| image::Rgb([x as u8, y as u8, 7]));
    let mut out = std::io::Cursor::new(Vec::new());
    image.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

/// Run the example plugin `name` with `config` and the test server allowed.
fn example(name: &str, payload: &str, config: &[(&str, &str)]) -> JobRun {
    let caps = Capabilities {
        http: AllowList::parse(&[this_server()]).unwrap(),
        ..Capabilities::default()
    };
    let plugin = plugins::load(
        spool_tests::sandbox(),
        &spool_tests::plugin_path(name),
        &caps,
    )
    .unwrap_or_else(|e| panic!("loading {name}: {e}"));
    let services = JobServices {
        config: Arc::new(
            config
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ),
        http_allow: Some(Arc::new(caps.http.clone())),
        http_ceiling: Some(Arc::new(caps.http.clone())),
        outbound: Some(Arc::new(Outbound::new(
            HttpLimits::default(),
            vec![Cidr::parse("127.0.0.1/32").unwrap()],
            4,
        ))),
        ..JobServices::default()
    };
    plugin.run_with(super::json_job(payload), &Limits::default(), &services)
}

#[test]
fn the_webhook_example_signs_what_the_receiver_verifies() {
    let event = r#"{"order": 42, "state": "paid"}"#;
    let hook = url("/hook");
    let run = example("webhook", event, &[("url", &hook), ("secret", HOOK_SECRET)]);
    let out = super::output_json(&run);
    assert_eq!(out, json!({"status": 200, "delivery": "test-job"}));
    // Another secret: the receiver refuses it, and a 401 is not retried.
    let run = example("webhook", event, &[("url", &hook), ("secret", "wrong")]);
    assert!(fatal(&run).ends_with("answered 401"), "{:?}", run.result);
    // A receiver that is down: retried.
    let run = example(
        "webhook",
        event,
        &[("url", &url("/hook-down")), ("secret", HOOK_SECRET)],
    );
    assert!(
        matches!(&run.result, Err(JobFailure::Retryable { message }) if message.ends_with("answered 503")),
        "{:?}",
        run.result
    );
    let run = example("webhook", event, &[("secret", HOOK_SECRET)]);
    assert!(fatal(&run).contains("config.url is not set"));
}

#[test]
fn the_fetch_thumbnail_example_downloads_and_shrinks_an_image() {
    let input = json!({"url": url("/cat.png"), "width": 64, "height": 64}).to_string();
    let run = example("fetch_thumbnail", &input, &[]);
    let png = run.result.as_ref().expect("a thumbnail");
    let thumb = image::load_from_memory(png).expect("the output is an image");
    assert_eq!((thumb.width(), thumb.height()), (64, 32));
    assert_eq!(run.http[0].bytes_in, cat_png().len() as u64);
    let run = example(
        "fetch_thumbnail",
        &json!({"url": url("/status/404")}).to_string(),
        &[],
    );
    assert!(fatal(&run).ends_with("answered 404"));
}

#[test]
fn a_guest_cannot_hold_its_thread_past_the_deadline_on_a_body_no_one_reads() {
    let limits = Limits {
        timeout: Duration::from_millis(500),
        ..Limits::default()
    };
    let input = json!({"url": url("/hello"), "raw": "stall-body"});
    let run = fetch_with(
        input,
        &[&this_server()],
        true,
        &limits,
        HttpLimits::default(),
    );
    assert!(
        matches!(run.result, Err(JobFailure::Timeout { .. })),
        "{:?}",
        run.result
    );
}

#[test]
fn a_job_holds_a_bounded_number_of_open_requests() {
    // Each answer's body never ends: its connection stays open.
    let input = json!({"url": url("/drip"), "raw": "hold-open", "times": 20});
    let out = super::output_json(&fetch(input, &[&this_server()]));
    assert_eq!(out["bytes"], 8, "{out}");
    assert_eq!(out["error"], "ErrorCode::ConnectionLimitReached", "{out}");
}

#[test]
fn a_guest_looping_on_refused_requests_leaves_a_bounded_record_and_log() {
    let input = json!({"url": "http://not-allowed.example/", "times": 500, "keep_going": true});
    let run = fetch(input, &[&this_server()]);
    assert!(
        fatal(&run).starts_with("connection-limit-reached:"),
        "{:?}",
        run.result
    );
    let max = HttpLimits::default().max_requests as usize;
    assert_eq!(run.http.len(), max + 1);
    assert_eq!(
        run.http[max].error.as_deref(),
        Some("connection-limit-reached")
    );
    assert!(run.log.lines.len() <= 16, "{}", run.log.lines.len());
}

#[test]
fn private_ranges_are_reached_only_through_a_rule_that_names_the_host() {
    // The loopback range is open, but `*` does not name this host.
    let run = fetch(json!({"url": url("/hello")}), &["http://*:*"]);
    assert!(
        fatal(&run).starts_with("destination-ip-prohibited:"),
        "{:?}",
        run.result
    );
    assert!(log_text(&run).contains("a rule names the host"));
    let run = fetch(json!({"url": url("/hello")}), &["http://127.0.0.1:*"]);
    assert_eq!(super::output_json(&run)["status"], 200);
}

#[test]
fn a_body_larger_than_the_hosts_buffer_streams_after_the_head() {
    let body = "x".repeat(200_000);
    let input = json!({"url": url("/echo"), "method": "POST", "body": body});
    let run = fetch(input, &[&this_server()]);
    let out = super::output_json(&run);
    assert_eq!(out["bytes"], 200_001, "{out}");
    assert_eq!(run.http[0].bytes_out, 200_000);
}

#[test]
fn spool_call_grants_hosts_and_opens_ranges_from_its_flags() {
    use crate::command::{fails_with, spool_in, succeeds};
    let plugin = spool_tests::plugin_path("http_client")
        .display()
        .to_string();
    let input = json!({"url": url("/hello")}).to_string();
    let server = this_server();
    let here = std::path::Path::new(".");
    let base = ["call", plugin.as_str(), "--input", input.as_str()];
    // No grant: refused at load, naming the key.
    fails_with(&spool_in(here, &base), 2, "[http] allow");
    let granted = [&base[..], &["--http-allow", server.as_str()]].concat();
    fails_with(&spool_in(here, &granted), 1, "destination-ip-prohibited");
    let opened = [
        &granted[..],
        &["--http-allow-private", "127.0.0.1/32", "--json"],
    ]
    .concat();
    let out: Value = serde_json::from_str(&succeeds(&spool_in(here, &opened))).unwrap();
    assert_eq!(out["output"]["status"], 200, "{out}");
    assert_eq!(out["http"][0]["origin"], server, "{out}");
    let bad = [&base[..], &["--http-allow", "https://example.com/path"]].concat();
    fails_with(&spool_in(here, &bad), 2, "it has a path");
}
