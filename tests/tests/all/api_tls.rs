//! `spool serve --tls-cert --tls-key` (issue 14): HTTPS with rustls, a
//! certificate made by the test (rcgen), a client that trusts only it.

use crate::api::{Reply, parse_reply, serve, token};
use crate::command::spool_in;
use spool_tests::fleet::Env;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

/// A certificate for `localhost` and 127.0.0.1, written as PEM files:
/// (cert path, key path, DER for the client's trust store).
fn certificate(env: &Env) -> (String, String, rustls::pki_types::CertificateDer<'static>) {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
        .expect("a certificate");
    let dir = env.subdir("tls");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, made.cert.pem()).unwrap();
    std::fs::write(&key, made.key_pair.serialize_pem()).unwrap();
    (
        cert.display().to_string(),
        key.display().to_string(),
        made.cert.der().clone(),
    )
}

/// One HTTPS request to `addr`, trusting `root` only.
fn https(
    addr: &str,
    root: &rustls::pki_types::CertificateDer<'static>,
    request: &str,
) -> std::io::Result<Reply> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(root.clone()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let sock = TcpStream::connect(addr)?;
    sock.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut tls = rustls::StreamOwned::new(conn, sock);
    tls.write_all(request.as_bytes())?;
    let mut raw = Vec::new();
    // A server that closes without close_notify still sent its reply.
    if let Err(e) = tls.read_to_end(&mut raw)
        && raw.is_empty()
    {
        return Err(e);
    }
    Ok(parse_reply(&raw))
}

#[test]
fn the_api_serves_https_and_plain_http_gets_no_answer() {
    let env = Env::new("api-tls");
    let (cert, key, root) = certificate(&env);
    let server = serve(&env, &["--tls-cert", &cert, "--tls-key", &key]);
    let addr: &str = server.as_ref();
    let (acme, _) = token(&env, &["--tenant", "acme", "--scopes", "submit,read"]);

    // A client that connects and never shakes hands holds nobody up.
    let _idle = TcpStream::connect(addr).unwrap();
    let body = r#"{"plugin":"hello","payload":{"name":"tls"}}"#;
    let reply = https(
        addr,
        &root,
        &format!(
            "POST /v1/jobs HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nAuthorization: Bearer {acme}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    )
    .expect("an HTTPS answer");
    assert_eq!(
        reply.status,
        201,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let id = reply.json()["id"].as_str().unwrap().to_string();
    assert_eq!(env.record(&id).plugin, "acme/hello");

    // Plain HTTP to the TLS port: no HTTP answer at all.
    let mut plain = TcpStream::connect(addr).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    plain
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut raw = Vec::new();
    let _ = plain.read_to_end(&mut raw);
    assert!(
        !raw.starts_with(b"HTTP/"),
        "{:?}",
        String::from_utf8_lossy(&raw)
    );
}

#[test]
fn bad_tls_files_are_named_before_serving() {
    let env = Env::new("api-tls-bad");
    let (cert, key, _) = certificate(&env);
    let junk = env.subdir("tls").join("junk.pem");
    std::fs::write(&junk, "not a certificate\n").unwrap();
    let junk = junk.display().to_string();
    let url = env.redis.url();
    let run = |args: &[&str]| {
        let mut all = vec!["serve", "--redis", &url];
        all.extend(args);
        let out = spool_in(&env.subdir("cwd"), &all);
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, said) = run(&["--tls-cert", &junk, "--tls-key", &key]);
    assert_eq!(code, Some(2), "{said}");
    assert!(
        said.contains("--tls-cert") && said.contains("junk.pem"),
        "{said}"
    );
    // A key that is not the certificate's.
    let other = rcgen::KeyPair::generate().unwrap();
    let wrong = env.subdir("tls").join("wrong.pem");
    std::fs::write(&wrong, other.serialize_pem()).unwrap();
    let (code, said) = run(&[
        "--tls-cert",
        &cert,
        "--tls-key",
        &wrong.display().to_string(),
    ]);
    assert_eq!(code, Some(2), "{said}");
    assert!(said.contains("must match"), "{said}");
    let (code, said) = run(&["--tls-cert", &cert]);
    assert_eq!(code, Some(2), "clap refuses a cert without a key: {said}");
}

#[test]
fn the_cli_enqueues_and_waits_through_the_api_with_a_token_over_http_and_https() {
    let env = Env::new("api-cli");
    let _worker = env.worker(&[("acme/hello", "hello")], |_| {});
    let (cert, key, _) = certificate(&env);
    let plain = serve(&env, &[]);
    let tls = serve(&env, &["--tls-cert", &cert, "--tls-key", &key]);
    let (acme, _) = token(&env, &["--tenant", "acme", "--scopes", "submit,read"]);
    let cwd = env.subdir("cwd");
    // No --redis anywhere: the token is all the command has.
    let run = |args: &[&str]| {
        let out = spool_in(&cwd, args);
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).trim().to_string(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let http = format!("http://{}", plain.as_ref() as &str);
    let https = format!(
        "https://localhost:{}",
        (tls.as_ref() as &str).rsplit(':').next().unwrap()
    );
    let input = r#"{"name":"Api"}"#;
    // Over plain HTTP, and over HTTPS trusting the test's CA.
    let ca = ["--api-ca", cert.as_str()];
    for (url, extra) in [(&http, &[][..]), (&https, &ca[..])] {
        let mut args = vec!["--api", url.as_str(), "--token", &acme];
        args.extend(extra);
        args.extend(["enqueue", "hello", "--input", input, "--wait=60s"]);
        let (code, out, err) = run(&args);
        assert_eq!(
            (code, out.as_str()),
            (Some(0), r#"{"greeting":"Hello, Api!"}"#),
            "{url}: {err}"
        );
    }
    // `spool --api URL --token acme's enqueue PLUGIN --input … EXTRA`.
    let enqueue = |url: &str, plugin: &str, extra: &[&str]| {
        let mut args = vec![
            "--api", url, "--token", &acme, "enqueue", plugin, "--input", input,
        ];
        args.extend(extra);
        run(&args)
    };
    // Without --wait: the id, and the job is acme's.
    let (code, id, err) = enqueue(&http, "hello", &["--priority", "high"]);
    assert_eq!(code, Some(0), "{err}");
    let record = env.record(&id);
    assert_eq!(record.plugin, "acme/hello");
    assert_eq!(record.priority.as_deref(), Some("high"));
    // Another tenant's plugin, no token, a command that cannot go through
    // the API: each refused, saying why.
    let (code, _, err) = enqueue(&http, "beta/hello", &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("cannot enqueue jobs of tenant beta"), "{err}");
    let (code, _, err) = run(&["--api", &http, "enqueue", "hello", "--input", input]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--api needs --token"), "{err}");
    let (code, _, err) = run(&["--api", &http, "--token", &acme, "job", &id]);
    assert_eq!(code, Some(2), "{err}");
    // SPOOL_API exported in the shell does not stop the other commands.
    let url = env.redis.url();
    let mut command = crate::command::spool_command(&cwd, &["job", &id, "--redis", &url]);
    command.env("SPOOL_API", &http);
    let out = crate::command::output_within(command, &["job"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A URL with a user in it is refused without repeating it.
    let (code, _, err) = enqueue("http://me:secret@host:1", "hello", &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(!err.contains("secret"), "{err}");
}
