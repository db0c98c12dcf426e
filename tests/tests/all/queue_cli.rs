//! The queue commands as a user runs them: `spool enqueue`, `job`, `dead`,
//! `dev`, bulk enqueue, a missing Redis, and the Python enqueuer.

use crate::command::{fails_with, spool, spool_in, spool_with_stdin, succeeds, text};
use spool_runtime::queue::Status;
use spool_tests::fleet::{Env, temp_dir};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn enqueue_wait_job_and_dead_letters_from_the_command_line() {
    let env = Env::new("cli-queue");
    let _worker = env.worker(&[("hello", "hello")], |_| {});

    let out = spool(
        &env,
        &["enqueue", "hello", "--input", r#"{"name":"Ada"}"#, "--wait"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), r#"{"greeting":"Hello, Ada!"}"#);

    let out = spool(&env, &["enqueue", "hello", "--input", r#"{"name":"Bo"}"#]);
    let id = text(&out.stdout).trim().to_string();
    assert_eq!(id.len(), 26, "a ULID: {id:?}");
    env.wait(&id);
    let out = spool(&env, &["job", &id, "--json"]);
    let record: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(record["status"], "succeeded");
    assert_eq!(record["output"], r#"{"greeting":"Hello, Bo!"}"#);
    assert_eq!(record["attempts"], 1);
    assert!(record["version"].as_str().unwrap().len() == 64);
    let out = spool(&env, &["job", &id]);
    let plain = text(&out.stdout);
    assert!(plain.contains("status     succeeded"), "{plain}");
    assert!(plain.contains("[info] greeting Bo"), "{plain}");

    // A dead job: --wait exits 1 and names the error; then dead list/retry/purge.
    let out = spool(
        &env,
        &[
            "enqueue",
            "hello",
            "--input",
            r#"{"name":""}"#,
            "--wait",
            "--json",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let dead: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(dead["status"], "dead");
    assert_eq!(dead["error"]["kind"], "invalid-input");
    let dead_id = dead["id"].as_str().unwrap().to_string();
    let out = spool(&env, &["dead", "list"]);
    let listing = text(&out.stdout);
    assert!(
        listing.contains(&dead_id) && listing.contains("expected a non-empty string"),
        "{listing}"
    );
    let out = spool(&env, &["dead", "retry", &dead_id]);
    assert_eq!(text(&out.stdout).trim(), "requeued 1 dead letters");
    let retried = env.wait_until(&dead_id, |r| {
        r.status == Some(Status::Dead)
            && r.attempts == 1
            && r.started_us > dead["started_us"].as_u64()
    });
    let out = spool(&env, &["dead", "retry", "01NOTADEADJOB0000000000000"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("not in the dead letters: 01NOTADEADJOB0000000000000"));
    let out = spool(&env, &["dead", "retry", "--all"]);
    assert_eq!(text(&out.stdout).trim(), "requeued 1 dead letters");
    // Dead again after a new attempt: the old record does not satisfy this.
    env.wait_until(&dead_id, |r| {
        r.status == Some(Status::Dead) && r.attempts == 1 && r.started_us > retried.started_us
    });
    let out = spool(&env, &["dead", "purge", "--all"]);
    assert_eq!(text(&out.stdout).trim(), "purged 1 dead letters");
    let out = spool(&env, &["job", &dead_id]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains(&format!("job {dead_id} not found")));
}

#[test]
fn wait_times_out_with_the_reason_and_the_job_stays_queued() {
    let env = Env::new("cli-wait");
    let _worker = env.worker(&[], |c| c.worker_id = "w-empty".into());
    let out = spool(
        &env,
        &["enqueue", "acme/resize", "--input", "{}", "--wait=1500ms"],
    );
    assert_eq!(
        out.status.code(),
        Some(75),
        "retryable: the job may still run"
    );
    let stderr = text(&out.stderr);
    assert!(stderr.contains("did not finish within 1.5s"), "{stderr}");
    assert!(
        stderr.contains("plugin acme/resize is not loaded on worker w-empty"),
        "{stderr}"
    );
    let stats = env.rt.block_on(env.queue.stats()).unwrap();
    assert_eq!(stats.queued + stats.delayed + stats.running, 1, "{stats:?}");
}

#[test]
fn bulk_enqueue_reads_json_lines() {
    let env = Env::new("cli-bulk");
    let _worker = env.worker(&[("hello", "hello")], |_| {});
    let file = env.dir.join("jobs.jsonl");
    let lines: String = (0..120)
        .map(|i| format!("{{\"name\":\"n{i}\"}}\n"))
        .collect();
    std::fs::write(&file, lines).unwrap();
    let out = spool(
        &env,
        &[
            "enqueue",
            "hello",
            "--bulk",
            file.to_str().unwrap(),
            "--priority",
            "low",
            "--json",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["enqueued"], 120);
    let stats = env.wait_finished(120);
    assert_eq!(stats.succeeded_total, 120);
    let first = summary["ids"][0].as_str().unwrap();
    let record = env.record(first);
    assert_eq!(
        record.output.as_deref(),
        Some(r#"{"greeting":"Hello, n0!"}"#)
    );
    assert_eq!(record.priority.as_deref(), Some("low"));

    // A bad line stops the enqueue and names the line.
    std::fs::write(&file, "{\"name\":\"ok\"}\nnot json\n").unwrap();
    let out = spool(
        &env,
        &["enqueue", "hello", "--bulk", file.to_str().unwrap()],
    );
    fails_with(&out, 2, "jobs.jsonl:2: not a JSON value");
}

#[test]
fn a_missing_redis_is_a_retryable_error_that_names_the_url() {
    let dir = temp_dir("no-redis");
    // An ephemeral port, just released: the suite's Redis servers take
    // ports below the ephemeral range (`RedisServer`), so none gets it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("redis://127.0.0.1:{port}");
    let out = spool_in(
        &dir,
        &["enqueue", "hello", "--input", "{}", "--redis", &url],
    );
    assert_eq!(out.status.code(), Some(75));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!("redis at {url} is unavailable")),
        "{stderr}"
    );
    assert!(stderr.contains("retrying later can help"), "{stderr}");
    let out = spool_in(
        &dir,
        &[
            "enqueue",
            "hello",
            "--input",
            "{}",
            "--redis",
            "http://nope",
        ],
    );
    fails_with(&out, 1, "invalid redis url \"http://nope\"");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn spool_dev_runs_a_private_redis_and_a_worker() {
    let dir = temp_dir("dev");
    let plugins = dir.join("plugins");
    spool_tests::fleet::add_plugin(&plugins, "hello", "hello");
    std::fs::create_dir_all(dir.join(".spool")).unwrap();
    let mut dev = DevGuard(
        crate::command::spool_command(&dir, &["dev", "--plugins", "plugins"])
            .env("SPOOL_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let url_file = dir.join(".spool/redis.url");
    let started = Instant::now();
    while !url_file.exists() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "spool dev wrote no redis url"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // No --redis: the command finds the dev Redis through .spool/redis.url.
    let out = spool_in(
        &dir,
        &[
            "enqueue",
            "hello",
            "--input",
            r#"{"name":"Dev"}"#,
            "--wait=60s",
        ],
    );
    assert_eq!(
        text(&out.stdout),
        r#"{"greeting":"Hello, Dev!"}"#,
        "{}",
        text(&out.stderr)
    );
    assert!(dir.join(".spool/redis/appendonlydir").is_dir(), "AOF is on");
    let url = std::fs::read_to_string(&url_file).unwrap();
    let status = dev.interrupt();
    assert!(status.success(), "spool dev exited with {status}");
    assert!(!url_file.exists(), "the url file is removed on exit");
    let client = redis::Client::open(url.trim()).unwrap();
    assert!(
        client
            .get_connection_with_timeout(Duration::from_millis(500))
            .is_err(),
        "its redis stopped too"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn the_python_enqueuer_speaks_the_documented_protocol() {
    // One server: the example speaks to one (redis-py's cluster client is
    // another class; docs/queue.md says what changes on a cluster).
    let env = Env::standalone("python");
    let _worker = env.worker(&[("hello", "hello")], |_| {});
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/python/enqueue.py");
    let out = Command::new("python3")
        .arg(&script)
        .args([
            "--redis",
            &env.redis.url(),
            "hello",
            r#"{"name":"Py"}"#,
            "--wait",
        ])
        .output()
        .expect("running python3 (and redis-py: pip install redis)");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), r#"{"greeting":"Hello, Py!"}"#);
    // A job it enqueues without waiting is a normal job to every Spool tool.
    let out = Command::new("python3")
        .arg(&script)
        .args([
            "--redis",
            &env.redis.url(),
            "hello",
            r#"{"name":""}"#,
            "--priority",
            "low",
        ])
        .output()
        .unwrap();
    let id = text(&out.stdout).trim().to_string();
    let record = env.wait(&id);
    assert_eq!(record.status, Some(Status::Dead));
    assert_eq!(record.priority.as_deref(), Some("low"));
    assert_eq!(record.plugin, "default/hello");
}

#[test]
fn spool_dev_without_redis_server_says_how_to_install_it() {
    let dir = temp_dir("dev-no-redis");
    std::fs::create_dir_all(dir.join("plugins")).unwrap();
    // A PATH with no redis-server on it.
    let args = ["dev", "--plugins", "plugins"];
    let mut command = crate::command::spool_command(&dir, &args);
    command.env("PATH", &dir);
    let out = crate::command::output_within(command, &args);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("redis-server was not found on PATH")
            && stderr.contains("apt-get install -y redis-server")
            && stderr.contains("--redis URL"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn queues_are_separate() {
    let env = Env::new("queues");
    let _default_worker = env.worker(&[("hello", "hello")], |_| {});
    // Enqueued on queue "batch", which no worker serves yet.
    let out = spool(
        &env,
        &[
            "enqueue",
            "hello",
            "--input",
            r#"{"name":"B"}"#,
            "--queue",
            "batch",
        ],
    );
    let batch_id = text(&out.stdout).trim().to_string();
    // The default queue's worker keeps working, and waits more than its
    // longest sleep (1 s): it never takes the other queue's job.
    let out = spool(
        &env,
        &["enqueue", "hello", "--input", r#"{"name":"D"}"#, "--wait"],
    );
    assert_eq!(text(&out.stdout), r#"{"greeting":"Hello, D!"}"#);
    std::thread::sleep(Duration::from_millis(1500));
    let out = spool(&env, &["job", &batch_id, "--queue", "batch", "--json"]);
    let record: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(record["status"], "queued");
    let mut conn = env.redis_conn();
    let len: u64 = redis::cmd("LLEN")
        .arg("spool:{batch/default}:ready:normal")
        .query(&mut conn)
        .unwrap();
    assert_eq!(len, 1);
    // A worker of queue "batch" runs it.
    let mut config = env.queue_config();
    config.queue = "batch".into();
    let _batch_worker = env.worker(&[("hello", "hello")], |c| c.queue = config);
    let out = spool(&env, &["job", &batch_id, "--queue", "batch", "--json"]);
    let record: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(record["id"], batch_id.as_str(), "{record}");
    let batch_queue = env
        .rt
        .block_on(spool_runtime::queue::Queue::connect({
            let mut c = env.queue_config();
            c.queue = "batch".into();
            c
        }))
        .unwrap();
    let done = env
        .rt
        .block_on(batch_queue.wait_for("default", &batch_id, Duration::from_secs(30)))
        .unwrap();
    assert_eq!(done.output.as_deref(), Some(r#"{"greeting":"Hello, B!"}"#));
    let out = spool(
        &env,
        &["enqueue", "hello", "--input", "{}", "--queue", "no{braces}"],
    );
    fails_with(&out, 2, "invalid queue name");
}

#[test]
fn a_wrong_password_is_not_retryable_and_is_never_printed() {
    let env = Env::new("auth");
    let mut conn = env.redis_conn();
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("requirepass")
        .arg("s3cret")
        .query(&mut conn)
        .unwrap();
    let url = format!("redis://:hunter2@127.0.0.1:{}", env.redis.port());
    let out = spool_in(
        &env.dir,
        &["enqueue", "hello", "--input", "{}", "--redis", &url],
    );
    assert_eq!(out.status.code(), Some(1), "retrying cannot fix a password");
    let stderr = text(&out.stderr);
    assert!(stderr.contains("redis://:***@127.0.0.1"), "{stderr}");
    assert!(stderr.to_lowercase().contains("auth"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");
    let good = format!("redis://:s3cret@127.0.0.1:{}", env.redis.port());
    let out = spool_in(
        &env.dir,
        &["enqueue", "hello", "--input", "{}", "--redis", &good],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

/// `spool bench --plugins DIR ARGS…` run in `dir`.
fn bench_in(dir: &Path, args: &[&str]) -> std::process::Output {
    let mut all = vec!["bench", "--plugins", dir.to_str().unwrap()];
    all.extend_from_slice(args);
    spool_in(dir, &all)
}

#[test]
fn spool_bench_runs_end_to_end_and_reports_json() {
    let dir = temp_dir("bench");
    spool_tests::fleet::add_plugin(&dir, "hello", "hello");
    let out = bench_in(
        &dir,
        &[
            "--plugin",
            "hello",
            "--jobs",
            "300",
            "--payload-bytes",
            "100",
            "--concurrency",
            "1",
            "--json",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["jobs"], 300);
    assert_eq!(report["succeeded"], 300);
    assert_eq!(report["failed"], 0);
    assert!(report["jobs_per_sec"].as_f64().unwrap() > 0.0);
    assert_eq!(
        (
            report["payload_bytes"].as_u64(),
            report["concurrency"].as_u64()
        ),
        (Some(100), Some(1))
    );
    let latency = report["latency_ms"]["p50"].as_f64().unwrap();
    let pickup = report["pickup_ms"]["p50"].as_f64().unwrap();
    assert!(latency > 0.0 && pickup <= latency, "{report}");
    // Measured, not made up: every job costs a few Redis commands (an
    // enqueue, a claim and an ack touch several keys each) and batching
    // keeps round trips under two per job (a claim and an ack). How few
    // exactly is for the release-build benchmark, not for this test.
    let commands = report["redis_commands_per_job"].as_f64().unwrap();
    assert!((4.0..=30.0).contains(&commands), "{report}");
    let worker_trips = report["worker_round_trips_per_job"].as_f64().unwrap();
    let all_trips = report["round_trips_per_job"].as_f64().unwrap();
    assert!(worker_trips > 0.0 && worker_trips <= 2.5, "{report}");
    assert!(all_trips > worker_trips, "{report}");
    // No cache for hello: every job ran in its own sandbox instance.
    assert_eq!(report["cache"]["off"], 300, "{report}");
    assert_eq!(report["instances"], 300, "{report}");
    // The costs per job are measured: Redis' CPU, the process's, and the
    // sandbox's part of it (which cannot exceed the whole).
    let redis_cpu = report["redis_cpu_us_per_job"].as_f64().unwrap();
    let process_cpu = report["process_cpu_us_per_job"].as_f64().unwrap();
    let sandbox = report["sandbox_us_per_job"].as_f64().unwrap();
    assert!(
        redis_cpu > 0.0 && process_cpu > 0.0 && sandbox > 0.0,
        "{report}"
    );
    assert_eq!(report["workers"], 0, "{report}");
    // A succeeded record's size in Redis is measured (with these 100-byte
    // payloads the record is a hash table, no listpack: ~1.6 KB).
    let bytes = report["record_bytes"].as_u64().unwrap();
    assert!((200..=4096).contains(&bytes), "{report}");
    // A plugin that is not there is named.
    let out = bench_in(&dir, &["--plugin", "acme/nope", "--jobs", "1"]);
    fails_with(&out, 1, "acme/nope.wasm");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn spool_bench_trims_a_full_kept_list_as_a_deployment_does_and_keeps_its_records() {
    let env = Env::standalone("bench-kept");
    let dir = temp_dir("bench-kept-plugins");
    spool_tests::fleet::add_plugin(&dir, "hello", "hello");
    let url = env.redis.url();
    let _: () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query(&mut env.redis_conn())
        .unwrap();
    let out = bench_in(
        &dir,
        &[
            "--plugin",
            "hello",
            "--jobs",
            "200",
            "--concurrency",
            "1",
            "--redis",
            &url,
            "--json",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // Every record of the run was still there to be read back.
    assert_eq!(report["succeeded"], 200, "{report}");
    // The kept list started full of placeholders (the cap, 200): the acks
    // pushed the run's ids and trimmed the oldest in batches of a tenth of
    // the cap, deleting their records. So fewer than 20 placeholders' records
    // are left (those still listed when the run ended), and every record of
    // the run's. The list itself is gone: on a `--redis` server the bench
    // deletes it (it would hold counts for thirty days).
    let keys = |pattern: &str| -> Vec<String> {
        redis::cmd("KEYS")
            .arg(pattern)
            .query(&mut env.redis_conn())
            .unwrap()
    };
    // Its keys have a prefix of their own, as long as the default
    // (`~` and four characters), which the run took with a key of its own.
    let taken = keys("~????:bench");
    assert_eq!(taken.len(), 1, "{taken:?}");
    let prefix = taken[0].split(':').next().unwrap().to_string();
    assert!(
        keys(&format!("{prefix}:*:recent")).is_empty(),
        "a list left behind"
    );
    let placeholders = keys(&format!("{prefix}:*:job:bench-kept-*"));
    assert!(placeholders.len() < 20, "{}", placeholders.len());
    let records = keys(&format!("{prefix}:*:job:*"));
    assert_eq!(records.len() - placeholders.len(), 200);
    let kept_len = 200 + placeholders.len();
    // And they were trimmed by the acks, which read the old records'
    // status before deleting them, a batch at a time (a list that never
    // held placeholders would end the same, with no such reads): a
    // `SORT … GET` per trim of 20 or more, not a `HGET` per record.
    let stats: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(&mut env.redis_conn())
        .unwrap();
    let calls = |command: &str| -> u64 {
        stats
            .lines()
            .find_map(|l| l.strip_prefix(format!("cmdstat_{command}:calls=").as_str()))
            .and_then(|rest| rest.split(',').next()?.parse().ok())
            .unwrap_or(0)
    };
    let trimmed = (400 - kept_len) as u64;
    let sorts = calls("sort");
    assert!(
        (1..=trimmed / 20).contains(&sorts),
        "{sorts} trims: {stats}"
    );
    assert!(calls("hget") < trimmed / 2, "{stats}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn spool_bench_runs_the_jobs_in_worker_processes() {
    let dir = temp_dir("bench-workers");
    spool_tests::fleet::add_plugin(&dir, "hello", "hello");
    let out = bench_in(
        &dir,
        &[
            "--jobs",
            "400",
            "--tenants",
            "3",
            "--workers",
            "2",
            "--concurrency",
            "1",
            "--json",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (&report["succeeded"], &report["workers"], &report["tenants"]),
        (&400.into(), &2.into(), &3.into()),
        "{report}"
    );
    // Each job ran in a sandbox of one of the worker processes, whose CPU
    // the report counts.
    assert_eq!(report["instances"], 400, "{report}");
    assert!(
        report["process_cpu_us_per_job"].as_f64().unwrap() > 0.0,
        "{report}"
    );
    // The result cache needs the bench's own worker.
    let out = bench_in(&dir, &["--workers", "1", "--cache-ttl", "1h"]);
    fails_with(&out, 2, "--cache-ttl needs the bench's own worker");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn spool_dev_shares_a_running_dev_redis_and_keeps_its_data_across_restarts() {
    let dir = temp_dir("dev-again");
    spool_tests::fleet::add_plugin(&dir.join("plugins"), "hello", "hello");
    let url_file = dir.join(".spool/redis.url");
    let first = DevGuard::start(&dir, "first.log");
    let url = wait_for_file(&url_file);
    // A second `spool dev` here uses the running Redis, not a second
    // server on the same data, and leaves it running when it stops.
    let mut second = DevGuard::start(&dir, "second.log");
    let said = format!(
        "spool dev: using the Redis already serving .spool/redis at {}",
        url.trim()
    );
    let log = dir.join("second.log");
    let started = Instant::now();
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains(&said)
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the second spool dev did not say {said:?}: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = second.interrupt();
    assert!(status.success(), "{status}");
    assert_eq!(std::fs::read_to_string(&url_file).unwrap(), url);
    assert!(
        answers(&url),
        "the second spool dev stopped the first's Redis"
    );
    // A job due in an hour is in the AOF: it survives Ctrl-C and a new start.
    let out = spool_in(
        &dir,
        &["enqueue", "hello", "--input", "{}", "--delay", "1h"],
    );
    let id = succeeds(&out).trim().to_string();
    let mut first = first;
    assert!(first.interrupt().success());
    assert!(!url_file.exists(), "the url file is removed on exit");
    // Its Redis stopped too: the job below survives in the AOF, not in a
    // server left running.
    assert!(!answers(&url), "spool dev left its Redis running");
    let _third = DevGuard::start(&dir, "third.log");
    wait_for_file(&url_file);
    let out = spool_in(&dir, &["job", &id, "--json"]);
    let record: serde_json::Value = serde_json::from_str(&succeeds(&out)).unwrap();
    assert_eq!(record["status"], "delayed", "{record}");
}

/// Whether a Redis answers PING at `url`.
fn answers(url: &str) -> bool {
    redis::Client::open(url.trim())
        .and_then(|c| c.get_connection_with_timeout(Duration::from_millis(500)))
        .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
        .is_ok()
}

/// Wait (at most 30 s) until `path` exists; its text.
fn wait_for_file(path: &Path) -> String {
    let started = Instant::now();
    while !path.exists() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{} was never written",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::fs::read_to_string(path).unwrap()
}

/// `spool dev` under test: stopped with SIGINT (so that it stops its Redis
/// too) if an assertion fails first, then SIGKILLed if it hangs.
struct DevGuard(std::process::Child);

impl DevGuard {
    /// `spool dev --plugins plugins` in `dir`, its standard error in
    /// `dir/log`.
    fn start(dir: &Path, log: &str) -> DevGuard {
        let stderr = std::fs::File::create(dir.join(log)).unwrap();
        DevGuard(
            crate::command::spool_command(dir, &["dev", "--plugins", "plugins"])
                .env("SPOOL_LOG", "warn")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(stderr)
                .spawn()
                .unwrap(),
        )
    }

    /// Ctrl-C, and its exit status (it must exit within a minute).
    fn interrupt(&mut self) -> std::process::ExitStatus {
        let status = Command::new("kill")
            .args(["-INT", &self.0.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        spool_tests::fleet::exited_within(&mut self.0, spool_tests::fleet::WAIT)
            .expect("spool dev did not exit within a minute of Ctrl-C")
    }
}

impl Drop for DevGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = Command::new("kill")
                .args(["-INT", &self.0.id().to_string()])
                .status();
            for _ in 0..500 {
                if let Ok(Some(_)) = self.0.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

#[test]
fn enqueue_options_are_recorded_in_the_envelope() {
    let env = Env::new("enqueue-options");
    let enqueue = |args: &[&str]| -> (String, bool) {
        let mut all = vec!["enqueue", "hello"];
        all.extend(args);
        all.push("--json");
        let reply: serde_json::Value = serde_json::from_str(&succeeds(&spool(&env, &all))).unwrap();
        (
            reply["id"].as_str().unwrap().to_string(),
            reply["created"] == true,
        )
    };
    // --delay: due exactly that long after Redis took it; attempts, priority.
    let (id, created) = enqueue(&[
        "--input",
        r#"{"name":"D"}"#,
        "--delay",
        "1h",
        "--max-attempts",
        "2",
        "--priority",
        "low",
    ]);
    assert!(created);
    let record = env.record(&id);
    assert_eq!(record.status, Some(Status::Delayed));
    assert_eq!(
        record.run_at_us.unwrap() - record.enqueued_us.unwrap(),
        3_600_000_000
    );
    assert_eq!(record.max_attempts, Some(2));
    assert_eq!(record.priority.as_deref(), Some("low"));
    // --at: an absolute time (turned into a delay by this machine's clock).
    let (id, _) = enqueue(&["--input", "{}", "--at", "2099-01-01T00:00:00Z"]);
    let due = env.record(&id).run_at_us.unwrap();
    assert!(
        due.abs_diff(4_070_908_800_000_000) < 5_000_000,
        "due at {due}"
    );
    // --idempotency-key: one job; the key lives as long as a record.
    let (first, created_first) = enqueue(&["--input", "{}", "--idempotency-key", "order-7"]);
    let (second, created_second) = enqueue(&["--input", "{}", "--idempotency-key", "order-7"]);
    assert_eq!(
        (first.as_str(), created_first, created_second),
        (second.as_str(), true, false)
    );
    let ttl: i64 = redis::cmd("TTL")
        .arg("spool:{default/default}:idem:order-7")
        .query(&mut env.redis_conn())
        .unwrap();
    assert!(ttl > 86_000 && ttl <= 86_400, "idempotency key TTL {ttl}s");
    // @FILE: its bytes, the type guessed from its name unless given.
    std::fs::write(env.dir.join("note.md"), "# hi\n").unwrap();
    let (id, _) = enqueue(&["--input", "@note.md"]);
    let record = env.record(&id);
    assert_eq!(
        (record.content_type.as_deref(), record.payload_bytes),
        (Some("text/markdown"), 5)
    );
    let (id, _) = enqueue(&["--input", "@note.md", "--content-type", "text/plain"]);
    assert_eq!(env.record(&id).content_type.as_deref(), Some("text/plain"));
    // @-: standard input, as opaque bytes (not UTF-8: read as text, they
    // would be changed).
    let sent = b"\xff\xfe\x00bin\n";
    let out = spool_with_stdin(&env, &["enqueue", "hello", "--input", "@-"], sent);
    let id = succeeds(&out).trim().to_string();
    let record = env.record(&id);
    assert_eq!(
        (record.content_type.as_deref(), record.payload_bytes),
        (Some("application/octet-stream"), sent.len())
    );
    let stored: Vec<u8> = redis::cmd("HGET")
        .arg(format!("spool:{{default/default}}:job:{id}"))
        .arg("payload")
        .query(&mut env.redis_conn())
        .unwrap();
    assert_eq!(stored, sent, "the payload byte for byte");
}

#[test]
fn an_idempotency_key_lives_for_the_record_ttl_plus_the_delay() {
    let env = Env::new("idem-ttl");
    let ttl_of = |key: &str| -> i64 {
        redis::cmd("TTL")
            .arg(format!("spool:{{default/default}}:idem:{key}"))
            .query(&mut env.redis_conn())
            .unwrap()
    };
    let enqueue = |args: &[&str]| -> String {
        let mut all = vec!["enqueue", "hello", "--input", "{}"];
        all.extend(args);
        succeeds(&spool(&env, &all)).trim().to_string()
    };
    // 24 h of record TTL plus the hour of delay.
    enqueue(&["--idempotency-key", "later", "--delay", "1h"]);
    let ttl = ttl_of("later");
    assert!((89_900..=90_000).contains(&ttl), "TTL {ttl}s");
    // The enqueuer's --record-ttl sets it; once it expires the key is free.
    let first = enqueue(&["--idempotency-key", "brief", "--record-ttl", "5s"]);
    let ttl = ttl_of("brief");
    assert!((1..=5).contains(&ttl), "TTL {ttl}s");
    env.wait_for("the idempotency key to expire", || ttl_of("brief") == -2);
    let second = enqueue(&["--idempotency-key", "brief"]);
    assert_ne!(first, second, "an expired key enqueues a new job");
}

#[test]
fn worker_flags_set_the_record_ttls_and_the_key_prefix() {
    let env = Env::new("worker-flags");
    let dir = env.plugins_dir(&[("hello", "hello")]);
    let _worker = env.worker_process(
        crate::SPOOL,
        &dir,
        &["--record-ttl", "90s", "--dead-ttl", "120s"],
    );
    let good = env.wait(&env.enqueue("hello", r#"{"name":"T"}"#));
    let bad = env.wait(&env.enqueue("hello", r#"{"name":""}"#));
    assert_eq!(
        (good.status, bad.status),
        (Some(Status::Succeeded), Some(Status::Dead))
    );
    let (kept, dead) = (good.ttl_seconds.unwrap(), bad.ttl_seconds.unwrap());
    assert!((80..=90).contains(&kept), "--record-ttl 90s: {kept}s");
    assert!((110..=120).contains(&dead), "--dead-ttl 120s: {dead}s");
    // Another prefix: its own queue, every key under it.
    let _acme = env.worker_process(crate::SPOOL, &dir, &["--prefix", "acme"]);
    let out = spool(
        &env,
        &[
            "enqueue",
            "hello",
            "--input",
            r#"{"name":"P"}"#,
            "--prefix",
            "acme",
            "--wait",
        ],
    );
    assert_eq!(succeeds(&out).trim(), r#"{"greeting":"Hello, P!"}"#);
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("acme:*")
        .query(&mut env.redis_conn())
        .unwrap();
    assert!(
        keys.iter()
            .any(|k| k.starts_with("acme:{default/default}:job:")),
        "{keys:?}"
    );
    let stats = env.rt.block_on(env.queue.stats()).unwrap();
    assert_eq!(
        stats.succeeded_total + stats.dead_total,
        2,
        "the job under acme never touched the spool queue"
    );
}

#[test]
fn reserved_queue_names_and_bad_prefixes_are_usage_errors() {
    let dir = temp_dir("names");
    for (flag, value, says) in [
        ("--queue", "plugins", "queue name \"plugins\" is reserved"),
        ("--queue", "cache", "queue name \"cache\" is reserved"),
        ("--queue", "tenants", "queue name \"tenants\" is reserved"),
        ("--prefix", "a{b}", "invalid prefix \"a{b}\""),
        ("--prefix", "two words", "invalid prefix \"two words\""),
    ] {
        let out = spool_in(&dir, &["enqueue", "hello", "--input", "{}", flag, value]);
        fails_with(&out, 2, says);
        let out = spool_in(&dir, &["worker", "--plugins", ".", flag, value]);
        fails_with(&out, 2, says);
    }
    let _ = std::fs::remove_dir_all(dir);
    // A program that builds its settings itself is held to the same rules.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let config = spool_runtime::queue::QueueConfig {
        queue: "plugins".into(),
        ..spool_runtime::queue::QueueConfig::new("redis://127.0.0.1:1")
    };
    let refused = rt
        .block_on(spool_runtime::queue::Queue::connect(config))
        .unwrap_err();
    assert!(refused.to_string().contains("is reserved"), "{refused}");
    assert!(!refused.is_retryable());
}

#[test]
fn spool_dev_serves_the_dashboard_with_an_operator_token_it_keeps() {
    use std::os::unix::fs::PermissionsExt;
    let dir = temp_dir("dev-dashboard");
    spool_tests::fleet::add_plugin(&dir.join("plugins"), "hello", "hello");
    std::fs::create_dir_all(dir.join(".spool")).unwrap();
    // A link planted where the token goes: the token must not follow it.
    let victim = dir.join("victim.txt");
    std::fs::write(&victim, "untouched\n").unwrap();
    std::os::unix::fs::symlink(&victim, dir.join(".spool/dashboard.token")).unwrap();
    let mut dev = DevGuard::start(&dir, "log");
    let said = || std::fs::read_to_string(dir.join("log")).unwrap_or_default();
    let started = Instant::now();
    let (addr, token) = loop {
        let log = said();
        let addr = log
            .lines()
            .find_map(|l| l.trim().strip_prefix("dashboard http://"))
            .map(|a| a.trim_end_matches('/').to_string());
        let token = log
            .lines()
            .find_map(|l| l.trim().strip_prefix("token"))
            .and_then(|t| t.split_whitespace().next())
            .map(str::to_string);
        if let (Some(a), Some(t)) = (addr, token) {
            break (a, t);
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no dashboard line: {log}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let saved = dir.join(".spool/dashboard.token");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "untouched\n");
    assert!(!std::fs::symlink_metadata(&saved).unwrap().is_symlink());
    assert_eq!(std::fs::read_to_string(&saved).unwrap().trim(), token);
    let mode = std::fs::metadata(&saved).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the token file is private");
    let page = crate::api::get(&addr, "/", None);
    assert_eq!(page.status, 200);
    assert!(String::from_utf8_lossy(&page.body).contains("/ui/app.js"));
    let me = crate::api::get(&addr, "/v1/whoami", Some(&token));
    assert_eq!(me.status, 200);
    assert_eq!(me.json()["tenant"], "*", "an operator's token");
    assert!(dev.interrupt().success(), "{}", said());
    // A second start keeps the same token.
    let mut again = DevGuard::start(&dir, "log2");
    let started = Instant::now();
    loop {
        let log = std::fs::read_to_string(dir.join("log2")).unwrap_or_default();
        if log.contains(&token) {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "{log}");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(again.interrupt().success());
    let _ = std::fs::remove_dir_all(dir);
}
