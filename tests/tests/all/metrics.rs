//! `spool worker --metrics` (issue 14): a real worker process scraped over
//! HTTP after real jobs; its readiness through a graceful drain.

use crate::SPOOL;
use spool_tests::fleet::{Env, WorkerProcess};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// `(status, body)` of `GET path` on `addr`.
fn get(addr: &str, path: &str) -> (u16, String) {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return (0, String::new());
    };
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    );
    let mut raw = String::new();
    let _ = s.read_to_string(&mut raw);
    let status = raw
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = raw
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}

/// A worker process serving `dir`, with metrics on a free port: it and
/// the address.
fn worker_with_metrics(env: &Env, dir: &std::path::Path) -> (WorkerProcess, String) {
    let worker = env.worker_process(SPOOL, dir, &["--metrics", "127.0.0.1:0", "--grace", "20s"]);
    let said = || {
        worker
            .stderr()
            .lines()
            .find_map(|l| l.strip_prefix("spool worker metrics on http://"))
            .and_then(|rest| rest.strip_suffix("/metrics"))
            .map(str::to_string)
    };
    env.wait_for("the worker to say where its metrics are", || {
        said().is_some()
    });
    let addr = said().unwrap();
    (worker, addr)
}

/// The value of the sample `line` (name and labels) in a scrape.
fn sample(text: &str, line: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(line))
        .and_then(|v| v.trim().parse().ok())
}

#[test]
fn scraped_counters_equal_the_jobs_run_by_outcome() {
    let env = Env::new("metrics-count");
    let dir = env.plugins_dir(&[("acme/hello", "hello")]);
    let (_worker, addr) = worker_with_metrics(&env, &dir);
    env.wait_for("the worker to be ready", || get(&addr, "/readyz").0 == 200);
    for i in 0..20 {
        env.enqueue("acme/hello", &format!(r#"{{"name":"n{i}"}}"#));
    }
    for _ in 0..3 {
        env.enqueue("acme/hello", r#"{"name":""}"#);
    }
    env.wait_finished(23);
    let labels = r#"tenant="acme",plugin="hello""#;
    let text = get(&addr, "/metrics").1;
    let count = |outcome: &str| {
        sample(
            &text,
            &format!("spool_jobs_total{{{labels},outcome=\"{outcome}\"}}"),
        )
    };
    assert_eq!(count("succeeded"), Some(20.0), "{text}");
    assert_eq!(count("dead"), Some(3.0), "{text}");
    assert_eq!(count("retried"), Some(0.0), "{text}");
    // Every attempt ran in the sandbox: the histograms saw all 23.
    for h in ["spool_job_run_seconds", "spool_job_instantiate_seconds"] {
        assert_eq!(
            sample(&text, &format!("{h}_count{{{labels}}}")),
            Some(23.0),
            "{text}"
        );
        let sum = sample(&text, &format!("{h}_sum{{{labels}}}")).unwrap();
        assert!(sum > 0.0, "{h}_sum is {sum}");
    }
    let lookups: f64 = text
        .lines()
        .filter(|l| l.starts_with("spool_cache_lookups_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(lookups, 23.0, "{text}");
    assert_eq!(sample(&text, "spool_worker_ready"), Some(1.0));
    // The worker serves its plugins (reported every few seconds), refuses
    // none, lost no lease and met no Redis error.
    env.wait_for("a report that counts the plugin served", || {
        sample(&get(&addr, "/metrics").1, "spool_plugins_served").is_some_and(|n| n >= 1.0)
    });
    assert_eq!(sample(&text, "spool_plugins_refused"), Some(0.0), "{text}");
    assert_eq!(sample(&text, "spool_leases_lost_total"), Some(0.0));
    assert_eq!(
        sample(&text, "spool_job_slots_busy"),
        Some(0.0),
        "all jobs ended"
    );
    let scrape = || get(&addr, "/metrics").1;
    assert!(sample(&scrape(), "spool_plugin_loads_total").is_some_and(|n| n >= 1.0));
    assert_eq!(sample(&scrape(), "spool_plugin_swaps_total"), Some(0.0));
    // A new version of the file: a hot reload, counted as a swap.
    std::fs::write(
        dir.join("acme/hello.wasm"),
        spool_tests::variant("hello", 1),
    )
    .unwrap();
    env.wait_for("the reload counted as a swap", || {
        sample(&scrape(), "spool_plugin_swaps_total").is_some_and(|n| n >= 1.0)
    });
    assert_eq!(sample(&text, "spool_redis_errors_total"), Some(0.0));
    // A plugin this worker does not serve: counted, under no name the
    // tenant chose (made-up names cannot use up the label pairs).
    env.enqueue("acme/made-up-name", "{}");
    env.wait_for("the unserved job to be handed back", || {
        let text = get(&addr, "/metrics").1;
        let line = r#"spool_jobs_total{tenant="acme",plugin="unloaded",outcome="handed_back"}"#;
        sample(&text, line).is_some_and(|n| n >= 1.0) && !text.contains("made-up-name")
    });
}

#[test]
fn readyz_turns_false_while_a_worker_drains_and_healthz_stays_true() {
    let env = Env::new("metrics-drain");
    let dir = env.plugins_dir(&[("acme/attacker", "attacker")]);
    let (mut worker, addr) = worker_with_metrics(&env, &dir);
    env.wait_for("the worker to be ready", || get(&addr, "/readyz").0 == 200);
    let id = env.enqueue("acme/attacker", r#"{"attack":"sleep","ms":3000}"#);
    // Started, not only claimed (a record says `running` from the claim
    // on): a job still in the worker's local queue at SIGTERM is handed
    // back, not finished.
    env.wait_for("the job to start", || {
        let text = get(&addr, "/metrics").1;
        sample(&text, "spool_job_slots_busy").is_some_and(|n| n >= 1.0)
    });
    worker.signal("TERM");
    env.wait_for("readyz to answer 503 while the job finishes", || {
        get(&addr, "/readyz").0 == 503
    });
    assert_eq!(get(&addr, "/healthz").0, 200);
    assert!(worker.wait().success());
    let record = env.wait(&id);
    assert_eq!(
        record.status,
        Some(spool_runtime::queue::Status::Succeeded),
        "the drain let it finish"
    );
}

#[test]
fn spool_serve_reports_queue_depth_per_tenant_and_priority_to_operators() {
    use crate::api::{get as api_get, serve, token};
    let env = Env::new("serve-metrics");
    for priority in [
        spool_runtime::queue::Priority::High,
        spool_runtime::queue::Priority::Low,
        spool_runtime::queue::Priority::Low,
    ] {
        let mut job = env.job("acme/hello", "{}");
        job.priority = priority;
        env.enqueue_job(job);
    }
    let mut later = env.job("beta/hello", "{}");
    later.delay = Duration::from_secs(3600);
    env.enqueue_job(later);
    let server = serve(&env, &[]);
    let (operator, _) = token(&env, &["--all-tenants", "--scopes", "read"]);
    let (acme, _) = token(&env, &["--tenant", "acme", "--scopes", "read,admin"]);

    let refused = api_get(&server, "/metrics", Some(&acme));
    assert_eq!(refused.status, 403, "a tenant's token sees no other tenant");
    let scrape = api_get(&server, "/metrics", Some(&operator));
    assert_eq!(scrape.status, 200);
    let text = String::from_utf8(scrape.body).unwrap();
    for line in [
        "spool_queue_ready_jobs{tenant=\"acme\",priority=\"high\"} 1",
        "spool_queue_ready_jobs{tenant=\"acme\",priority=\"normal\"} 0",
        "spool_queue_ready_jobs{tenant=\"acme\",priority=\"low\"} 2",
        "spool_queue_jobs{tenant=\"beta\",state=\"delayed\"} 1",
        "spool_queue_jobs{tenant=\"acme\",state=\"running\"} 0",
        "spool_queue_tenants_omitted 0",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} not in:\n{text}");
    }
}

/// A job an enqueue hands to the idle worker (docs/queue.md, "Hand-over
/// at idle") is counted as such; jobs it claims are not.
#[test]
fn jobs_handed_over_at_idle_are_counted() {
    let env = Env::standalone("metrics-handover");
    let dir = env.plugins_dir(&[("hello", "hello")]);
    let (_worker, addr) = worker_with_metrics(&env, &dir);
    let idle = format!("{}:idle", env.queue.key_prefix());
    let registered = || {
        let n: u64 = redis::cmd("ZCARD")
            .arg(&idle)
            .query(&mut env.redis_conn())
            .unwrap();
        n > 0
    };
    let handed = || sample(&get(&addr, "/metrics").1, "spool_jobs_handed_over_total");
    // Lone jobs while it waits: handed over (one enqueued in the moment
    // between two of its waits is claimed instead).
    let mut lone = 0;
    while handed() == Some(0.0) && lone < 10 {
        env.wait_for("the worker to wait in Q:idle", registered);
        let id = env.enqueue("hello", r#"{"name":"a"}"#);
        env.wait(&id);
        lone += 1;
    }
    let before = handed().unwrap_or(0.0);
    assert!(before >= 1.0, "{}", get(&addr, "/metrics").1);
    // A batch goes the normal way: claimed, not counted.
    env.enqueue_all(&[env.job("hello", "{}"), env.job("hello", "{}")]);
    env.wait_finished(lone + 2);
    assert_eq!(handed(), Some(before));
}
