//! Hostile handlers: those that try to reach outside the sandbox get
//! nothing; those that try to hold the host's threads, or flood its
//! records and logs, are cut off (plugins/fixtures/attacker).

use super::{output_json, run};
use spool_runtime::plugins::{self, Capabilities, LoadError};
use spool_runtime::sandbox::{JobFailure, JobRun, Limits};
use std::sync::Arc;
use std::time::Duration;

#[test]
fn host_files_are_not_reachable() {
    let out = output_json(&run("reads_file", "{}"));
    assert!(
        out["etc_passwd"].as_str().unwrap().starts_with("denied:"),
        "{out}"
    );
    assert!(
        out["root_dir"].as_str().unwrap().starts_with("denied:"),
        "{out}"
    );
}

#[test]
fn host_environment_is_empty() {
    let out = output_json(&run("reads_env", "{}"));
    assert_eq!(out, serde_json::json!({"vars": [], "path": null}));
}

#[test]
fn socket_import_is_rejected_at_load_time() {
    let path = spool_tests::plugin_path("opens_socket");
    let error = plugins::load(spool_tests::sandbox(), &path, &Capabilities::default()).unwrap_err();
    match error {
        LoadError::ForbiddenImport {
            import,
            path: named,
            ..
        } => {
            assert!(import.starts_with("wasi:sockets/"), "{import}");
            assert_eq!(named, path);
        }
        other => panic!("expected a forbidden import, got {other}"),
    }
}

#[test]
fn with_the_network_capability_connections_are_still_refused() {
    // A real listener on loopback: the guest must not reach it.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let path = spool_tests::plugin_path("opens_socket");
    let plugin = plugins::load(
        spool_tests::sandbox(),
        &path,
        &Capabilities {
            network: true,
            ..Capabilities::default()
        },
    )
    .unwrap();
    let job = super::json_job(&format!(r#"{{"addr":"{addr}"}}"#));
    let run = plugin.run(job, &Limits::default(), Arc::default());
    let out = output_json(&run);
    assert!(out["denied"].is_string(), "{out}");
    listener.set_nonblocking(true).unwrap();
    assert!(
        listener.accept().is_err(),
        "the guest connected to the host"
    );
}

/// Run an `attacker` job (plugins/fixtures/attacker) under `limits`.
fn attack(input: &str, limits: &Limits) -> JobRun {
    super::run_with("attacker", super::json_job(input), limits, &[])
}

/// A one-second deadline and room for the big texts the attacks build.
fn one_second() -> Limits {
    Limits {
        timeout: Duration::from_secs(1),
        memory: 256 << 20,
        ..Limits::default()
    }
}

#[test]
fn a_guest_asleep_in_a_host_call_is_stopped_at_its_deadline() {
    let run = attack(r#"{"attack":"sleep","ms":20000}"#, &one_second());
    assert!(
        matches!(run.result, Err(JobFailure::Timeout { limit }) if limit == Duration::from_secs(1)),
        "{:?}",
        run.result
    );
    // The sleep would have held the thread 20 s; the deadline ends it
    // after about one. The call's own time (not the fixture's one-time
    // compile, which a loaded machine can stretch to seconds); the bound
    // leaves room for a busy machine.
    let took = run.timings.run;
    assert!(took < Duration::from_secs(10), "held {took:?}");
    // A sleep that ends before the deadline is left alone.
    let run = attack(r#"{"attack":"sleep","ms":50}"#, &one_second());
    assert_eq!(output_json(&run), "slept 50 ms");
}

#[test]
fn error_texts_are_cut_to_a_few_kib_and_say_how_long_they_were() {
    let marker = format!("… [truncated from {} bytes]", 8 << 20);
    let run = attack(r#"{"attack":"fatal","bytes":8388608}"#, &one_second());
    let Err(JobFailure::Fatal { message }) = &run.result else {
        panic!("{:?}", run.result.map(|_| "output"));
    };
    assert!(
        message.len() <= 4096 + marker.len() + 1,
        "{} bytes",
        message.len()
    );
    assert!(
        message.starts_with("xxxx") && message.ends_with(&marker),
        "{}",
        &message[4000..]
    );
    let run = attack(r#"{"attack":"invalid","bytes":8388608}"#, &one_second());
    let Err(JobFailure::InvalidInput {
        field,
        expected,
        got,
    }) = &run.result
    else {
        panic!("{:?}", run.result.map(|_| "output"));
    };
    for text in [field, expected, got] {
        assert!(
            text.len() <= 4096 + marker.len() + 1,
            "{} bytes",
            text.len()
        );
        assert!(text.ends_with(&marker));
    }
    // Past wasmtime's 128 MiB per call (three fields of 48 MiB), the guest
    // is stopped before the host copies it: never retried.
    let roomy = Limits {
        memory: 512 << 20,
        ..one_second()
    };
    let run = attack(r#"{"attack":"invalid","bytes":50331648}"#, &roomy);
    match &run.result {
        Err(failure @ JobFailure::TooMuchData) => assert!(!failure.is_retryable()),
        other => panic!("{:?}", other.as_ref().map(|_| "output")),
    }
}

#[test]
fn a_huge_log_line_is_cut_before_it_reaches_any_log() {
    let marker = format!("… [truncated from {} bytes]", 8 << 20);
    let run = attack(r#"{"attack":"log","bytes":8388608}"#, &one_second());
    assert_eq!(output_json(&run), format!("logged {} bytes", 8 << 20));
    let line = &run.log.lines[0].message;
    assert!(
        line.len() <= 4096 + marker.len() + 1,
        "{} bytes",
        line.len()
    );
    assert!(line.ends_with(&marker));
    // The host's own log, at its most verbose, gets a short preview.
    let plugin = spool_tests::plugin_path("attacker").display().to_string();
    let args = [
        "call",
        &plugin,
        "--input",
        r#"{"attack":"log","bytes":8388608}"#,
        "--memory",
        "256MiB",
    ];
    let mut command = crate::command::spool_command(std::path::Path::new("."), &args);
    command.env("SPOOL_LOG", "spool::guest=debug");
    let out = crate::command::output_within(command, &args);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.len() < 64 * 1024,
        "{} bytes of host log",
        out.stderr.len()
    );
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("bytes=8388608"), "{said}");
    assert!(
        said.contains(&"l".repeat(256)) && !said.contains(&"l".repeat(257)),
        "{said}"
    );
}

#[test]
fn progress_reports_are_coalesced_into_the_last_one() {
    let run = attack(r#"{"attack":"progress","times":100000}"#, &one_second());
    assert!(run.result.is_ok(), "{:?}", run.result);
    assert_eq!(
        run.progress,
        Some(spool_runtime::sandbox::Progress {
            done: 100_000,
            total: 100_000
        })
    );
    assert_eq!(run.host_calls, 100_000, "every report is counted");
}

#[test]
fn a_guest_that_calls_exit_fails_as_exit_and_is_not_retried() {
    let run = attack(r#"{"attack":"exit","code":3}"#, &one_second());
    let failure = run.result.expect_err("exit is a failure");
    // WASI 0.2's exit carries success or failure only: 3 arrives as 1.
    assert_eq!(failure, JobFailure::Exit { code: 1 });
    assert!(!failure.is_retryable());
    assert_eq!(
        failure.to_string(),
        "the handler called exit(1) instead of returning"
    );
}

#[test]
fn attacks_through_a_worker_neither_hold_its_threads_nor_bloat_records() {
    use spool_runtime::queue::Status;
    let env = spool_tests::fleet::Env::new("hostile-worker");
    let _worker = env.worker(
        &[("mallory/attacker", "attacker"), ("acme/hello", "hello")],
        |c| {
            c.concurrency = 2;
            c.limits = one_second();
        },
    );
    let attack = |input: &str| {
        let mut job = env.job("mallory/attacker", input);
        job.max_attempts = 1;
        env.enqueue_job(job)
    };
    // As many sleepers as the worker has threads, then another tenant.
    let sleepers: Vec<String> = (0..2)
        .map(|_| attack(r#"{"attack":"sleep","ms":20000}"#))
        .collect();
    let loud = attack(r#"{"attack":"fatal","bytes":8388608}"#);
    let quitter = {
        let mut job = env.job("mallory/attacker", r#"{"attack":"exit","code":3}"#);
        job.max_attempts = 5;
        env.enqueue_job(job)
    };
    let victim = env.enqueue("acme/hello", r#"{"name":"V"}"#);
    for id in &sleepers {
        let record = env.wait(id);
        let kind = record.error.as_ref().map(|e| e["kind"].clone());
        assert_eq!(
            (record.status, kind),
            (Some(Status::Dead), Some(serde_json::json!("timeout"))),
            "{record:?}"
        );
        let held = record.finished_us.unwrap() - record.started_us.unwrap();
        assert!(held < 10_000_000, "a sleeper held its thread {held} µs");
    }
    let record = env.wait(&victim);
    assert_eq!(record.status, Some(Status::Succeeded), "{record:?}");
    assert_eq!(env.wait(&loud).status, Some(Status::Dead));
    let record = env.wait(&quitter);
    let kind = record.error.as_ref().map(|e| e["kind"].clone());
    assert_eq!(
        (record.status, record.attempts, kind),
        (Some(Status::Dead), 1, Some(serde_json::json!("exit"))),
        "exit is not retried: {record:?}"
    );
    let stored: u64 = redis::cmd("HSTRLEN")
        .arg(format!("{}:job:{loud}", env.tenant_keys("default")))
        .arg("error")
        .query(&mut env.redis_conn())
        .unwrap();
    assert!(stored < 16 * 1024, "an error of {stored} bytes was stored");
}

#[test]
fn terminal_escapes_from_a_guest_are_shown_escaped_to_the_operator() {
    use spool_runtime::queue::Status;
    let env = spool_tests::fleet::Env::new("hostile-escapes");
    let _worker = env.worker(&[("mallory/attacker", "attacker")], |_| {});
    // Retitle the terminal, then clear the screen.
    let text = "\u{1b}]0;pwned\u{7}\u{1b}[2J";
    let mut job = env.job(
        "mallory/attacker",
        &serde_json::json!({"attack": "say", "text": text}).to_string(),
    );
    job.max_attempts = 1;
    let id = env.enqueue_job(job);
    assert_eq!(env.wait(&id).status, Some(Status::Dead));
    let escaped = "\\u{1b}]0;pwned\\u{7}\\u{1b}[2J";
    for args in [vec!["job", id.as_str()], vec!["dead", "list"]] {
        let out = crate::command::spool(&env, &args);
        let said = crate::command::succeeds(&out);
        assert!(
            !said.contains('\u{1b}'),
            "{args:?} printed an escape: {said:?}"
        );
        assert!(said.contains(escaped), "{args:?}: {said}");
    }
    // The record itself keeps the text as the guest gave it.
    let record = env.record(&id);
    assert_eq!(record.error.as_ref().unwrap()["message"], text);
}

/// A key-value store whose writes hang for `hold` whatever the job's
/// deadline: a host call that does not come back in time (a bug, a store
/// that hangs). This is the host service the watchdog must survive, so it
/// is this test's own; reads and deletes answer from memory.
struct Hanging {
    hold: Duration,
    inner: spool_runtime::kv::MemoryKv,
}

impl spool_runtime::sandbox::KeyValue for Hanging {
    fn get(&self, tenant: &str, key: &str) -> Result<Option<Vec<u8>>, spool_runtime::kv::KvError> {
        self.inner.get(tenant, key)
    }

    fn set(
        &self,
        tenant: &str,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<(), spool_runtime::kv::KvError> {
        std::thread::sleep(self.hold);
        self.inner.set(tenant, key, value, ttl)
    }

    fn delete(&self, tenant: &str, key: &str) -> Result<bool, spool_runtime::kv::KvError> {
        self.inner.delete(tenant, key)
    }
}

#[test]
fn a_wedged_job_thread_is_released_replaced_reported_and_its_job_contained() {
    use spool_runtime::queue::Status;
    let env = spool_tests::fleet::Env::new("hostile-wedge");
    // One thread: what runs while the first call hangs runs on the thread
    // that took the wedged one's place.
    let (config, registry) = env.fixtures(&[("acme/kv", "kv"), ("beta/hello", "hello")], |c| {
        c.concurrency = 1;
        c.limits = one_second();
        c.wedge_grace = Duration::from_millis(500);
        c.backoff = Duration::from_secs(1);
        c.fleet_resync = Duration::from_millis(200);
    });
    let worker_id = config.worker_id.clone();
    let hold = Duration::from_secs(4);
    let hanging = Hanging {
        hold,
        inner: spool_runtime::kv::MemoryKv::default(),
    };
    let worker = env.worker_with_kv(config, registry, Some(Arc::new(hanging)));
    let mut job = env.job("acme/kv", r#"{"op":"set","key":"k","value":"v"}"#);
    job.max_attempts = 5;
    let stuck = env.enqueue_job(job);
    let kind = |r: &spool_runtime::queue::JobRecord| {
        r.error
            .as_ref()
            .map(|e| e["kind"].as_str().unwrap_or("").to_string())
    };
    // Released at its deadline and grace (1 s + 0.5 s), not when the call
    // comes back (4 s).
    let record = env.wait_until(&stuck, |r| kind(r).as_deref() == Some("wedged"));
    let first_started = record.claimed_us.unwrap();
    let error = record.error.as_ref().unwrap();
    assert_eq!(error["retryable"], true, "{error}");
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains(&format!(
            "the job thread of worker {worker_id} did not come back"
        )),
        "{message}"
    );
    // Another tenant's job runs meanwhile, on the thread that took the
    // wedged one's place.
    let other = env.wait(&env.enqueue("beta/hello", r#"{"name":"B"}"#));
    assert_eq!(other.status, Some(Status::Succeeded));
    let back_at = first_started + u64::try_from(hold.as_micros()).unwrap();
    assert!(
        other.finished_us.unwrap() < back_at,
        "it ran before the wedged thread came back: {other:?}"
    );
    // The worker's fleet report says which job holds a wedged thread.
    let store = env.fleet_store();
    env.wait_for("the wedged thread in the worker's report", || {
        env.rt
            .block_on(store.workers())
            .unwrap_or_default()
            .iter()
            .any(|w| w.worker == worker_id && w.wedged.iter().any(|j| j.job == stuck))
    });
    // A job that wedges every thread it gets is contained: the third such
    // ending dead-letters it as `worker-crash`, naming the worker.
    let record = env.wait(&stuck);
    assert_eq!(
        (record.status, record.attempts, kind(&record).as_deref()),
        (Some(Status::Dead), 3, Some("worker-crash")),
        "{record:?}"
    );
    let named = record.error.as_ref().unwrap()["workers"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(named.contains(&worker_id), "{named}");
    let report = worker.stop();
    assert_eq!(report.wedged, 3, "{report:?}");
}
