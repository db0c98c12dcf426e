//! One outbound HTTP request on loopback: from a plugin (a fresh sandbox,
//! the SDK's client, the host's allow list, address check and bounded
//! bodies) beside the same request from native Rust (hyper, a fresh
//! connection each time, as the host makes one per request).
//!
//! ```text
//! cargo bench -p spool-tests --bench http
//! ```

use criterion::{Criterion, criterion_group, criterion_main};
use http_body_util::{BodyExt, Empty};
use spool_runtime::plugins::{self, Capabilities};
use spool_runtime::sandbox::http::{AllowList, Cidr, HttpLimits, Outbound};
use spool_runtime::sandbox::{JobInput, JobServices, Limits};
use std::hint::black_box;
use std::sync::Arc;

/// A loopback server answering `GET /hello` with 26 bytes.
fn server() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let app = axum::Router::new().route(
                "/hello",
                axum::routing::get(|| async { "hello from the test server" }),
            );
            axum::serve(listener, app).await.unwrap();
        });
    });
    port
}

/// The same request natively: connect, HTTP/1.1 handshake, GET, read the
/// whole body.
async fn native_get(port: u16) -> usize {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    tcp.set_nodelay(true).unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);
    let request = http::Request::get("/hello")
        .header("host", format!("127.0.0.1:{port}"))
        .body(Empty::<bytes::Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    response
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .len()
}

fn one_request(c: &mut Criterion) {
    let port = server();
    let origin = format!("http://127.0.0.1:{port}");
    let allow = AllowList::parse(&[origin.as_str()]).unwrap();
    let caps = Capabilities {
        http: allow.clone(),
        ..Capabilities::default()
    };
    let plugin = plugins::load(
        spool_tests::sandbox(),
        &spool_tests::plugin_path("http_client"),
        &caps,
    )
    .unwrap();
    let services = JobServices {
        http_allow: Some(Arc::new(allow)),
        outbound: Some(Arc::new(Outbound::new(
            HttpLimits::default(),
            vec![Cidr::parse("127.0.0.1/32").unwrap()],
            8,
        ))),
        ..JobServices::default()
    };
    let payload = format!(r#"{{"url":"{origin}/hello"}}"#).into_bytes();
    let job = || JobInput {
        id: "bench".into(),
        tenant: "default".into(),
        plugin: "http_client".into(),
        attempt: 1,
        content_type: "application/json".into(),
        payload: payload.clone(),
    };
    let limits = Limits::default();
    assert!(plugin.run_with(job(), &limits, &services).result.is_ok());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    assert_eq!(rt.block_on(native_get(port)), 26);

    let mut group = c.benchmark_group("loopback_get");
    group.bench_function("plugin_job", |b| {
        b.iter(|| black_box(plugin.run_with(job(), &limits, &services).result.unwrap()));
    });
    group.bench_function("native", |b| {
        b.iter(|| black_box(rt.block_on(native_get(port))));
    });
    group.finish();
}

criterion_group!(benches, one_request);
criterion_main!(benches);
