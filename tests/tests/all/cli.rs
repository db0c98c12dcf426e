//! `spool call`: output on stdout, `error: <kind>: <message>` on stderr,
//! and exit codes 0 / 1 / 75 / 2.

use std::path::Path;
use std::process::{Output, Stdio};

fn spool(args: &[&str]) -> Output {
    crate::command::spool_in(Path::new("."), args)
}

fn plugin(name: &str) -> String {
    spool_tests::plugin_path(name).display().to_string()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn call_prints_the_output_and_exits_0() {
    let out = spool(&["call", &plugin("hello"), "--input", r#"{"name":"Ada"}"#]);
    assert_eq!(text(&out.stdout), "{\"greeting\":\"Hello, Ada!\"}\n");
    assert_eq!(text(&out.stderr), "");
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn invalid_input_exits_1_with_the_error_on_stderr() {
    let out = spool(&["call", &plugin("hello"), "--input", r#"{"name":""}"#]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stdout), "");
    assert_eq!(
        text(&out.stderr),
        "error: invalid-input: name: expected a non-empty string, got \"\"\n"
    );
}

#[test]
fn retryable_error_exits_75() {
    let out = spool(&[
        "call",
        &plugin("introspect"),
        "--input",
        r#"{"fail":"retryable"}"#,
    ]);
    assert_eq!(out.status.code(), Some(75));
    assert!(text(&out.stderr).starts_with("error: retryable: the fixture asked for a retry\n"));
}

#[test]
fn timeout_exits_75_and_trap_exits_1() {
    let out = spool(&[
        "call",
        &plugin("spin"),
        "--input",
        "{}",
        "--timeout",
        "100ms",
    ]);
    assert_eq!(out.status.code(), Some(75));
    assert!(
        text(&out.stderr).starts_with("error: timeout: "),
        "{}",
        text(&out.stderr)
    );
    let out = spool(&["call", &plugin("panics"), "--input", "{}"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.starts_with("error: panic: the handler panicked: fixture panicked"),
        "{stderr}"
    );
    assert!(stderr.contains("    at panics::explode\n"), "{stderr}");
}

#[test]
fn memory_flag_sets_the_cap() {
    let out = spool(&[
        "call",
        &plugin("memory_hog"),
        "--input",
        "{}",
        "--memory",
        "8MiB",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("the limit is 8388608 bytes"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn load_errors_exit_2_and_name_the_file() {
    let out = spool(&["call", "/nonexistent.wasm", "--input", "{}"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        text(&out.stderr),
        "error: plugin /nonexistent.wasm: no such file\n"
    );
    let out = spool(&["call", &plugin("old_sdk"), "--input", "{}"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("built with spool-sdk 0.0.9"));
}

#[test]
fn usage_errors_exit_2() {
    let out = spool(&["call", &plugin("hello")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--input"),
        "{}",
        text(&out.stderr)
    );
    let out = spool(&[
        "call",
        &plugin("hello"),
        "--input",
        "{}",
        "--timeout",
        "soon",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("invalid duration \"soon\""));
    let out = spool(&["call", &plugin("hello"), "--input", "@/nonexistent.json"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("could not read the input file /nonexistent.json"));
}

#[test]
fn json_mode_reports_output_logs_and_timings() {
    let out = spool(&[
        "call",
        &plugin("hello"),
        "--input",
        r#"{"name":"Ada"}"#,
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(0));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["ok"], true);
    assert_eq!(
        doc["output"],
        serde_json::json!({"greeting": "Hello, Ada!"})
    );
    assert_eq!(doc["error"], serde_json::Value::Null);
    assert_eq!(
        doc["logs"],
        serde_json::json!([{"level": "info", "message": "greeting Ada"}])
    );
    assert_eq!(doc["plugin"]["sdk_version"], "0.1.0");
    for timing in ["compile", "instantiate", "run"] {
        assert!(
            doc["timings_us"][timing].is_u64(),
            "{timing} missing: {doc}"
        );
    }
}

#[test]
fn json_mode_reports_typed_errors() {
    let out = spool(&[
        "call",
        &plugin("hello"),
        "--input",
        r#"{"name":""}"#,
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["ok"], false);
    assert_eq!(doc["error"]["kind"], "invalid-input");
    assert_eq!(doc["error"]["field"], "name");
    assert_eq!(doc["error"]["retryable"], false);
}

#[test]
fn file_input_config_and_output_file() {
    let dir = std::env::temp_dir().join(format!("spool-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let input = dir.join("in.json");
    std::fs::write(&input, r#"{"echo":"from a file"}"#).unwrap();
    let output = dir.join("out.json");
    let out = spool(&[
        "call",
        &plugin("introspect"),
        "--input",
        &format!("@{}", input.display()),
        "-c",
        "greeting=hey",
        "--as",
        "acme/intro",
        "-o",
        &output.display().to_string(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&output).unwrap()).unwrap();
    assert_eq!(doc["echo"], "from a file");
    assert_eq!(doc["greeting"], "hey");
    assert_eq!(doc["tenant"], "acme");
    assert_eq!(doc["plugin"], "intro");
    assert_eq!(doc["content_type"], "application/json");
}

#[test]
fn logs_go_to_stderr_with_their_level_when_asked() {
    let out = spool(&[
        "call",
        &plugin("hello"),
        "--input",
        r#"{"name":"Ada"}"#,
        "--logs",
    ]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(text(&out.stdout), "{\"greeting\":\"Hello, Ada!\"}\n");
    assert_eq!(text(&out.stderr).trim(), "[info] greeting Ada");
    let quiet = spool(&["call", &plugin("hello"), "--input", r#"{"name":"Ada"}"#]);
    assert_eq!(text(&quiet.stderr), "");
}

#[test]
fn input_from_stdin_and_content_types_guessed_from_file_names() {
    use std::io::Write as _;
    let mut child = crate::command::spool_command(
        Path::new("."),
        &["call", &plugin("introspect"), "--input", "@-"],
    )
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(br#"{"echo":"piped"}"#)
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (doc["echo"].as_str(), doc["content_type"].as_str()),
        (Some("piped"), Some("application/octet-stream"))
    );
    let dir = spool_tests::fleet::temp_dir("cli-types");
    for (file, expected) in [
        ("in.json", "application/json"),
        ("in.md", "text/markdown"),
        ("in.TXT", "text/plain"),
        ("in.html", "text/html"),
        ("in.bin", "application/octet-stream"),
    ] {
        let path = dir.join(file);
        std::fs::write(&path, r#"{"echo":1}"#).unwrap();
        let out = spool(&[
            "call",
            &plugin("introspect"),
            "--input",
            &format!("@{}", path.display()),
        ]);
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(doc["content_type"], expected, "{file}");
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn binary_output_is_written_byte_for_byte() {
    let input = concat!(
        "@",
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/data/gradient.png"
    );
    let dir = spool_tests::fleet::temp_dir("cli-binary");
    let file = dir.join("thumb.png");
    let to_stdout = spool(&["call", &plugin("thumbnail"), "--input", input]);
    let to_file = spool(&[
        "call",
        &plugin("thumbnail"),
        "--input",
        input,
        "-o",
        &file.display().to_string(),
    ]);
    assert_eq!(
        (to_stdout.status.code(), to_file.status.code()),
        (Some(0), Some(0))
    );
    assert!(
        to_stdout.stdout.starts_with(b"\x89PNG\r\n\x1a\n"),
        "not a PNG"
    );
    // No newline added to binary output, and the same bytes either way.
    assert_eq!(to_stdout.stdout, std::fs::read(&file).unwrap());
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn load_errors_in_json_mode_exit_2_with_kind_load() {
    let out = spool(&["call", "/nonexistent.wasm", "--input", "{}", "--json"]);
    assert_eq!(out.status.code(), Some(2));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (doc["ok"].as_bool(), doc["error"]["kind"].as_str()),
        (Some(false), Some("load"))
    );
    assert_eq!(
        doc["error"]["message"],
        "plugin /nonexistent.wasm: no such file"
    );
}

#[test]
fn stack_overflow_and_oversized_input_or_output_exit_1() {
    let out = spool(&["call", &plugin("deep_recursion"), "--input", "{}"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).starts_with("error: stack-overflow: "),
        "{}",
        text(&out.stderr)
    );
    // The default output cap is 16 MiB.
    let out = spool(&[
        "call",
        &plugin("big_output"),
        "--input",
        "17000000",
        "--content-type",
        "text/plain",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).starts_with("error: output-too-large: "),
        "{}",
        text(&out.stderr)
    );
    assert!(out.stdout.is_empty());
    // So is the input cap.
    let dir = spool_tests::fleet::temp_dir("cli-big-input");
    let big = dir.join("big.bin");
    std::fs::write(&big, vec![b'x'; (16 << 20) + 1]).unwrap();
    let out = spool(&[
        "call",
        &plugin("hello"),
        "--input",
        &format!("@{}", big.display()),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).starts_with("error: input-too-large: "),
        "{}",
        text(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn key_value_caps_are_1_mib_per_value_and_512_bytes_per_key() {
    let dir = spool_tests::fleet::temp_dir("cli-kv-caps");
    let call = |name: &str, input: serde_json::Value| {
        let path = dir.join(name);
        std::fs::write(&path, input.to_string()).unwrap();
        spool(&[
            "call",
            &plugin("kv"),
            "--input",
            &format!("@{}", path.display()),
        ])
    };
    let at_cap = call(
        "at.json",
        serde_json::json!({"op": "set", "key": "k", "value": "x".repeat(1 << 20)}),
    );
    assert_eq!(at_cap.status.code(), Some(0), "{}", text(&at_cap.stderr));
    let over = call(
        "over.json",
        serde_json::json!({"op": "set", "key": "k", "value": "x".repeat((1 << 20) + 1)}),
    );
    assert_eq!(over.status.code(), Some(1));
    assert_eq!(
        text(&over.stderr).trim(),
        "error: fatal: key-value: value of 1048577 bytes for key \"k\": the limit is 1048576 bytes"
    );
    let long_key = call(
        "key.json",
        serde_json::json!({"op": "get", "key": "k".repeat(513)}),
    );
    assert_eq!(long_key.status.code(), Some(1));
    assert_eq!(
        text(&long_key.stderr).trim(),
        "error: fatal: key-value: key of 513 bytes: expected 1 to 512 bytes"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn allow_network_lets_a_socket_plugin_load_and_every_connect_is_refused() {
    // A real listener on loopback: the guest must not reach it.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let input = format!(r#"{{"addr":"{}"}}"#, listener.local_addr().unwrap());
    let socket = plugin("opens_socket");
    let out = spool(&["call", &socket, "--input", &input]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("import wasi:sockets/network@0.2.6 is not allowed"),
        "{}",
        text(&out.stderr)
    );
    let out = spool(&["call", &socket, "--input", &input, "--allow-network"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let said: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(said["denied"].is_string(), "{said}");
    listener.set_nonblocking(true).unwrap();
    assert!(
        listener.accept().is_err(),
        "the guest connected to the host"
    );
}

#[test]
fn a_trap_that_is_not_a_panic_exits_1_with_its_backtrace() {
    let out = spool(&[
        "call",
        &plugin("attacker"),
        "--input",
        r#"{"attack":"trap"}"#,
    ]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.starts_with(
            "error: trap: the guest trapped: wasm trap: wasm `unreachable` instruction executed"
        ),
        "{stderr}"
    );
    assert!(stderr.contains("\n    at "), "a guest backtrace: {stderr}");
    assert!(!stderr.contains("retry may help"), "{stderr}");
}
