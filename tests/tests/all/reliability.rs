//! No job is lost: a worker killed with SIGKILL mid-run, a worker whose
//! lease expired, Redis restarted mid-run, a graceful shutdown.

use spool_runtime::queue::{Field, Next, Outcome, RecordUpdate, Status};
use spool_tests::fleet::Env;
use spool_tests::proxy::Proxy;
use std::time::{Duration, Instant};

#[test]
fn a_worker_killed_mid_run_loses_no_job_and_none_succeeds_twice() {
    let env = Env::new("kill9");
    let dir = env.plugins_dir(&[("introspect", "introspect")]);
    let n = 200;
    let ids: Vec<String> = (0..n)
        .map(|i| env.enqueue("introspect", &format!(r#"{{"sleep_ms":10,"echo":{i}}}"#)))
        .collect();
    let mut first = env.worker_process(crate::SPOOL, &dir, &["--id", "doomed"]);
    // Kill it once it is well into the run, with jobs in flight.
    let started = Instant::now();
    loop {
        let stats = env.rt.block_on(env.queue.stats()).unwrap();
        if stats.succeeded_total >= 30 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the first worker made no progress"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    first.kill();
    let at_kill = env.rt.block_on(env.queue.stats()).unwrap();
    assert!(
        at_kill.running > 0,
        "jobs were in flight at the kill: {at_kill:?}"
    );

    let mut second = env.worker_process(crate::SPOOL, &dir, &["--id", "survivor"]);
    let stats = env.wait_finished(n);
    second.kill();
    assert_eq!(stats.succeeded_total, n, "{stats:?}");
    assert_eq!((stats.dead_total, stats.running, stats.queued), (0, 0, 0));
    let mut rerun = 0;
    for (i, id) in ids.iter().enumerate() {
        let record = env.record(id);
        assert_eq!(record.status, Some(Status::Succeeded), "job {i}");
        let seen: serde_json::Value =
            serde_json::from_str(record.output.as_deref().unwrap()).unwrap();
        assert_eq!(seen["echo"], i, "job {i} has its own output");
        if record.attempts > 1 {
            rerun += 1;
            assert_eq!(record.worker.as_deref(), Some("survivor"));
            let error = record
                .error
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default();
            assert!(
                error.is_empty() || error == "null",
                "a success clears the error: {error}"
            );
        }
    }
    assert!(rerun > 0, "the jobs in flight at the kill ran again");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_worker_whose_lease_expired_can_neither_ack_nor_renew() {
    let env = Env::new("stale");
    let id = env.enqueue("hello", r#"{"name":"Zombie"}"#);
    let lease = Duration::from_millis(100);
    let zombie = env
        .rt
        .block_on(env.queue.claim("zombie", 10, lease))
        .unwrap();
    assert_eq!(zombie.jobs.len(), 1);
    let old = zombie.jobs[0].clone();
    std::thread::sleep(Duration::from_millis(250));
    // The next claim finds the expired lease: the job backs off (none
    // here), and the claim after hands it out again.
    let reaped = env.rt.block_on(env.queue.claim_backing_off(
        "fresh",
        10,
        Duration::from_secs(10),
        Duration::ZERO,
    ));
    assert!(
        reaped.unwrap().jobs.is_empty(),
        "it runs again only after its backoff"
    );
    let fresh = env
        .rt
        .block_on(env.queue.claim("fresh", 10, Duration::from_secs(10)))
        .unwrap();
    assert_eq!(fresh.jobs.len(), 1);
    let new = fresh.jobs[0].clone();
    assert_eq!(new.id, old.id);
    assert_eq!(new.attempt, 2);
    assert_ne!(new.token, old.token);
    let outcome = |token: &str, output: &str| Outcome {
        tenant: "default".into(),
        id: id.clone(),
        token: token.to_string(),
        wait: false,
        next: Next::Succeeded,
        record: RecordUpdate {
            output: Field::Set(output.as_bytes().to_vec()),
            ..RecordUpdate::default()
        },
        // As a worker acks (the fence alone decides; see ack.lua).
        seen: new.seen.clone(),
        clock: Some((new.claimed_us, new.received)),
    };
    let renewed = env
        .rt
        .block_on(
            env.queue
                .heartbeat(&[("default".into(), id.clone(), old.token.clone())], lease),
        )
        .unwrap();
    assert_eq!(renewed, vec![false]);
    let applied = env
        .rt
        .block_on(env.queue.ack(&[outcome(&old.token, "stale")]))
        .unwrap();
    assert_eq!(applied, vec![false], "the zombie's ack is refused");
    assert_eq!(env.record(&id).status, Some(Status::Running));
    let applied = env
        .rt
        .block_on(env.queue.ack(&[outcome(&new.token, "fresh")]))
        .unwrap();
    assert_eq!(applied, vec![true]);
    // And a late zombie ack cannot overwrite the newer attempt's result.
    let applied = env
        .rt
        .block_on(env.queue.ack(&[outcome(&old.token, "stale")]))
        .unwrap();
    assert_eq!(applied, vec![false]);
    let record = env.record(&id);
    assert_eq!(record.status, Some(Status::Succeeded));
    assert_eq!(record.output.as_deref(), Some("fresh"));
    assert_eq!(record.worker.as_deref(), Some("fresh"));
}

#[test]
fn redis_restarted_mid_run_loses_nothing() {
    let mut env = Env::new("redis-restart");
    // Leases of 10 minutes: no job can be rescued by a lease expiring
    // within this test. Every outcome must reach Redis through the
    // worker's own retries of its acks, and every claim whose reply the
    // crash cut must be handed back by the worker (recover.lua).
    let worker = env.worker(&[("introspect", "introspect")], |c| {
        c.lease = Duration::from_secs(600);
    });
    let n = 150;
    let ids: Vec<String> = (0..n)
        .map(|i| env.enqueue("introspect", &format!(r#"{{"sleep_ms":5,"echo":{i}}}"#)))
        .collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let at_kill = loop {
        let stats = env.rt.block_on(env.queue.stats()).unwrap();
        if stats.succeeded_total >= 20 {
            break stats;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "20 jobs did not succeed within 60 s: {stats:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    // Jobs whose success Redis acknowledged before the crash: their outcome
    // must survive it, so they never run again.
    let done_before: Vec<&String> = ids
        .iter()
        .filter(|id| env.record(id).status == Some(Status::Succeeded))
        .collect();
    assert!(done_before.len() >= 20, "{} done", done_before.len());
    // A crash, not a clean shutdown: AOF with fsync always keeps every write.
    env.redis.kill();
    assert!(
        at_kill.succeeded_total < n && at_kill.queued + at_kill.running > 0,
        "work was pending when Redis died: {at_kill:?}"
    );
    std::thread::sleep(Duration::from_millis(300));
    env.redis.restart().expect("restarting redis");
    let stats = env.wait_finished(n);
    assert_eq!(stats.succeeded_total, n, "{stats:?}");
    for id in &ids {
        let record = env.record(id);
        assert_eq!(
            (record.status, record.attempts),
            (Some(Status::Succeeded), 1),
            "job {id} (done before the crash: {})",
            done_before.contains(&id)
        );
    }
    // Every outcome was the worker's own (none dropped, none left to a
    // lease). An ack sent again after the crash cut its reply may count as
    // stale, so `stale` is not checked here.
    let report = worker.stop();
    assert_eq!(report.succeeded, n, "{report:?}");
}

#[test]
fn sigterm_finishes_running_jobs_and_hands_back_the_rest() {
    let env = Env::new("shutdown");
    let dir = env.plugins_dir(&[("introspect", "introspect")]);
    let mut worker = env.worker_process(
        crate::SPOOL,
        &dir,
        // One job thread and three jobs claimed ahead of it whatever this
        // machine's speed: its work is claimed 60 s ahead, which is three
        // jobs or more while a job takes under 20 s; at most 3.
        &[
            "--concurrency",
            "1",
            "--grace",
            "20s",
            "--prefetch",
            "3",
            "--prefetch-horizon",
            "60s",
        ],
    );
    // Quick jobs first: the worker learns how long jobs take and claims
    // ahead of its one job thread.
    for i in 0..5 {
        env.wait(&env.enqueue("introspect", &format!(r#"{{"echo":{i}}}"#)));
    }
    // Long enough that a stalled test thread cannot let it finish (and a
    // prefetched job start) before the signal.
    let long = env.enqueue("introspect", r#"{"sleep_ms":6000,"mark":"long"}"#);
    let rest: Vec<String> = (0..3)
        .map(|i| env.enqueue("introspect", &format!(r#"{{"echo":{i}}}"#)))
        .collect();
    env.wait_for("the long job to start", || env.kv_exists("default", "long"));
    env.wait_for("the rest to be claimed", || {
        rest.iter()
            .all(|id| env.record(id).status == Some(Status::Running))
    });
    worker.signal("TERM");
    let status = worker.wait();
    assert!(
        status.success(),
        "worker exited with {status}: {}",
        worker.stderr()
    );
    // The running job finished within the grace period...
    assert_eq!(env.record(&long).status, Some(Status::Succeeded));
    // ...and the claimed jobs no thread had started went back, attempt unspent.
    let mut conn = env.redis_conn();
    for id in &rest {
        let r = env.record(id);
        assert_eq!((r.status, r.attempts), (Some(Status::Queued), 0), "{id}");
        let requeued: Option<u64> = redis::cmd("HGET")
            .arg(format!("{}:job:{id}", env.tenant_keys("default")))
            .arg("requeued_us")
            .query(&mut conn)
            .unwrap();
        assert!(requeued.is_some(), "{id} was handed back");
    }
    let stderr = worker.stderr();
    assert!(stderr.contains("3 handed back"), "{stderr}");
    // Nothing was lost: the next worker runs them.
    let _next = env.worker_process(crate::SPOOL, &dir, &[]);
    let stats = env.wait_finished(9);
    assert_eq!(stats.succeeded_total, 9);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_job_still_running_when_the_grace_period_ends_is_handed_back() {
    let env = Env::new("grace");
    let dir = env.plugins_dir(&[("introspect", "introspect")]);
    let mut worker = env.worker_process(
        crate::SPOOL,
        &dir,
        &["--concurrency", "1", "--grace", "300ms"],
    );
    let slow = env.enqueue("introspect", r#"{"sleep_ms":3000,"mark":"slow"}"#);
    env.wait_for("the slow job to start", || env.kv_exists("default", "slow"));
    worker.signal("TERM");
    let status = worker.wait();
    assert!(status.success(), "{}", worker.stderr());
    let record = env.record(&slow);
    assert_eq!((record.status, record.attempts), (Some(Status::Queued), 0));
    assert!(
        worker
            .stderr()
            .contains("handing back jobs that are still running"),
        "{}",
        worker.stderr()
    );
    let _next = env.worker_process(crate::SPOOL, &dir, &[]);
    assert_eq!(env.wait(&slow).status, Some(Status::Succeeded));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_worker_frozen_past_its_lease_cannot_overwrite_the_next_attempt() {
    let env = Env::new("frozen");
    let dir = env.plugins_dir(&[("introspect", "introspect")]);
    let frozen = env.worker_process(
        crate::SPOOL,
        &dir,
        &["--id", "frozen", "--lease", "1s", "--concurrency", "1"],
    );
    let id = env.enqueue("introspect", r#"{"sleep_ms":2500,"mark":"frozen"}"#);
    env.wait_for("the job to start", || env.kv_exists("default", "frozen"));
    frozen.signal("STOP");
    // Its lease lapses; another worker reaps it and runs the job again.
    std::thread::sleep(Duration::from_millis(1500));
    let mut thawed_later = env.worker_process(crate::SPOOL, &dir, &["--id", "fresh"]);
    let record = env.wait(&id);
    assert_eq!(record.status, Some(Status::Succeeded));
    assert_eq!(
        (record.attempts, record.worker.as_deref()),
        (2, Some("fresh"))
    );
    let output = record.output.clone();
    // The frozen worker wakes up, finishes its stale attempt and tries to ack.
    frozen.signal("CONT");
    env.wait_for("the frozen worker to notice", || {
        frozen.stderr().contains("lease was lost")
    });
    let after = env.record(&id);
    assert_eq!(after.worker.as_deref(), Some("fresh"));
    assert_eq!(after.output, output);
    assert_eq!(after.attempts, 2);
    let stats = env.rt.block_on(env.queue.stats()).unwrap();
    assert_eq!(stats.succeeded_total, 1, "one success, counted once");
    thawed_later.kill();
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_late_ack_wins_while_no_newer_attempt_was_claimed() {
    // A worker cut off from Redis past its lease finishes the job; the
    // lease was reaped meanwhile, but nobody claimed the job again.
    let env = Env::new("late-ack");
    let id = env.enqueue("hello", r#"{"name":"Late"}"#);
    let claim = env
        .rt
        .block_on(env.queue.claim("cut-off", 10, Duration::from_millis(100)))
        .unwrap();
    let job = claim.jobs[0].clone();
    std::thread::sleep(Duration::from_millis(250));
    // Another worker's claim (of nothing) reaps the expired lease: the job
    // backs off before its next attempt.
    env.rt
        .block_on(env.queue.claim("other", 0, Duration::from_secs(10)))
        .unwrap();
    let lapsed = env.record(&id);
    assert_eq!(lapsed.status, Some(Status::Delayed));
    assert_eq!(
        lapsed.error.as_ref().map(|e| e["kind"].clone()),
        Some("lease-expired".into())
    );
    // The worker's success, as it writes it: the claim saw a record no
    // attempt had written to, so the worker clears nothing itself.
    assert!(job.fresh, "a new job's first claim is of a fresh record");
    let mut outcome = job.outcome(Next::Succeeded);
    outcome.record.output = Field::Set(b"done late".to_vec());
    outcome.record.error = Field::Clear;
    let applied = env
        .rt
        .block_on(env.queue.ack(std::slice::from_ref(&outcome)))
        .unwrap();
    assert_eq!(applied, vec![true]);
    let record = env.record(&id);
    assert_eq!(record.status, Some(Status::Succeeded));
    assert_eq!(record.output.as_deref(), Some("done late"));
    // The lapse's error does not stay on a success.
    assert_eq!(record.error, None, "{record:?}");
    // It is out of the delayed set: it will not run a second time.
    let due: Option<f64> = redis::cmd("ZSCORE")
        .arg(format!("{}:delayed", env.tenant_keys("default")))
        .arg(&id)
        .query(&mut env.redis_conn())
        .unwrap();
    assert_eq!(due, None);
    let stats = env.rt.block_on(env.queue.stats()).unwrap();
    assert_eq!(
        (stats.queued, stats.running, stats.succeeded_total),
        (0, 0, 1)
    );
    // Sending the same ack again (its reply was lost) is not "stale".
    let again = env.rt.block_on(env.queue.ack(&[outcome])).unwrap();
    assert_eq!(again, vec![true]);
}

#[test]
fn a_claim_whose_reply_was_lost_is_handed_back() {
    let env = Env::new("lost-claim");
    let id = env.enqueue("hello", r#"{"name":"Lost"}"#);
    // The claim is applied, but pretend its reply never arrived.
    let _lost = env
        .rt
        .block_on(env.queue.claim("w-lost", 10, Duration::from_secs(30)))
        .unwrap();
    assert_eq!(env.record(&id).status, Some(Status::Running));
    let released = env.rt.block_on(env.queue.recover("w-lost", &[])).unwrap();
    assert_eq!(released, vec![id.clone()]);
    let record = env.record(&id);
    assert_eq!(
        (record.status, record.attempts),
        (Some(Status::Queued), 0),
        "no attempt spent"
    );
    // Another worker's jobs and the jobs it knows it holds are left alone.
    let other = env.enqueue("hello", r#"{"name":"Other"}"#);
    let held = env
        .rt
        .block_on(env.queue.claim("w-other", 10, Duration::from_secs(30)))
        .unwrap();
    let ids: Vec<(String, String)> = held
        .jobs
        .iter()
        .map(|j| (j.tenant.clone(), j.id.clone()))
        .collect();
    assert!(ids.contains(&("default".to_string(), other)));
    assert!(
        env.rt
            .block_on(env.queue.recover("w-lost", &[]))
            .unwrap()
            .is_empty()
    );
    assert!(
        env.rt
            .block_on(env.queue.recover("w-other", &ids))
            .unwrap()
            .is_empty()
    );
}

/// A worker that reaches `env`'s one server through a proxy that can lose
/// a reply, with leases of 10 minutes (a claimed job whose reply was lost
/// stays leased to it far past any wait here, unless the worker hands it
/// back itself), after one job: the claim script is loaded (a reply lost
/// to EVALSHA's NOSCRIPT would prove nothing). (One server: the proxy
/// stands in front of its one port; a cluster client would find the
/// nodes behind it.)
fn worker_behind_a_proxy(env: &Env) -> (Proxy, spool_tests::fleet::TestWorker) {
    let proxy = Proxy::start(env.redis.port());
    let worker = env.worker(&[("hello", "hello")], |c| {
        c.queue.url = proxy.url();
        c.lease = Duration::from_secs(600);
        c.fleet = false;
    });
    let warm = env.enqueue("hello", r#"{"name":"Warm"}"#);
    assert_eq!(env.wait(&warm).status, Some(Status::Succeeded));
    (proxy, worker)
}

/// A job that goes the normal way, to be claimed: with an idempotency
/// key an enqueue never hands it to an idle worker (docs/queue.md,
/// "Hand-over at idle").
fn enqueue_for_a_claim(env: &Env, payload: &str) -> String {
    let mut job = env.job("hello", payload);
    job.idempotency_key = Some("for-a-claim".into());
    env.enqueue_job(job)
}

#[test]
fn a_worker_hands_back_a_claim_whose_reply_it_lost() {
    let env = Env::standalone("lost-claim-worker");
    let (proxy, worker) = worker_behind_a_proxy(&env);
    proxy.lose_reply_with("Lost-3f9c");
    let id = enqueue_for_a_claim(&env, r#"{"name":"Lost-3f9c"}"#);
    let record = env.wait(&id);
    assert_eq!(proxy.lost(), 1, "the claim's reply was never cut");
    assert_eq!(
        (record.status, record.attempts),
        (Some(Status::Succeeded), 1),
        "handed back without spending an attempt, then run once: {record:?}"
    );
    let report = worker.stop();
    assert_eq!(report.succeeded, 2, "{report:?}");
}

/// The same for a job an enqueue handed to the idle worker: the reply of
/// its wait is cut, so the worker never learns of the job leased to it.
/// It leaves the idle workers, finds its registration taken, and hands
/// back what it holds unknown, as after a lost claim.
#[test]
fn a_worker_hands_back_a_job_handed_over_in_a_reply_it_lost() {
    let env = Env::standalone("lost-handover-worker");
    let proxy = Proxy::start(env.redis.port());
    let mut metrics = None;
    let worker = env.worker(&[("hello", "hello")], |c| {
        c.queue.url = proxy.url();
        c.lease = Duration::from_secs(600);
        c.fleet = false;
        metrics = Some(std::sync::Arc::clone(&c.metrics));
    });
    let metrics = metrics.unwrap();
    let warm = env.enqueue("hello", r#"{"name":"Warm"}"#);
    assert_eq!(env.wait(&warm).status, Some(Status::Succeeded));
    // An enqueue in the moment between two of the worker's waits goes the
    // normal way (and its claim's reply is cut instead): then again.
    let mut handed = false;
    let mut ran = 1;
    for n in 0..5 {
        env.wait_for_a_waiter();
        let before = handed_over(&metrics);
        let marker = format!("Lost-5e0{n}");
        proxy.lose_reply_with(&marker);
        let id = env.enqueue("hello", &format!(r#"{{"name":"{marker}"}}"#));
        // Handed over (not claimed): running on the worker before any claim.
        handed = env.record(&id).status == Some(Status::Running);
        let record = env.wait(&id);
        ran += 1;
        assert_eq!(proxy.lost(), n + 1, "the reply was never cut");
        assert_eq!(
            (record.status, record.attempts),
            (Some(Status::Succeeded), 1),
            "handed back without spending an attempt, then run once: {record:?}"
        );
        // The worker never read the hand-over: it went back and was
        // claimed.
        assert_eq!(handed_over(&metrics), before);
        if handed {
            break;
        }
    }
    assert!(handed, "no job was handed over in five tries");
    let report = worker.stop();
    assert_eq!(report.succeeded, ran, "{report:?}");
}

/// A worker stays registered in `Q:idle` while it claims. When a claim's
/// reply is lost and Redis is out of reach for a while, an enqueue may
/// hand the registered worker a job meanwhile: it waits in the inbox,
/// leased to the worker and unknown to it. Before the recovery hands back
/// what is unknown, the worker leaves `Q:idle` and reads that job, so the
/// recovery does not hand it back too: each job runs once, and no ack is
/// refused as stale (a copy run twice would be).
#[test]
fn a_job_handed_over_while_a_lost_claim_waits_runs_once() {
    let env = Env::standalone("lost-claim-handover");
    let (proxy, worker) = worker_behind_a_proxy(&env);
    let idle = format!("{}:idle", env.queue.key_prefix());
    let registered = || -> bool {
        let n: u64 = redis::cmd("ZCARD")
            .arg(&idle)
            .query(&mut env.redis_conn())
            .unwrap();
        n > 0
    };
    env.wait_for("the worker to register in Q:idle", registered);
    // A batch (never handed over): the worker claims it, and the claim's
    // reply is lost; Redis is then out of reach for the worker.
    proxy.lose_reply_with_then_refuse("Lost-7c1");
    let batch = env.enqueue_all(&[
        env.job("hello", r#"{"name":"Lost-7c1"}"#),
        env.job("hello", r#"{"name":"Other"}"#),
    ]);
    env.wait_for("the claim's reply to be cut", || proxy.lost() == 1);
    assert!(registered(), "the entry stands while the worker claims");
    // Meanwhile a lone job is handed over to the worker's inbox.
    let lone = env.enqueue("hello", r#"{"name":"Lone"}"#);
    let record = env.record(&lone);
    assert_eq!(
        (record.status, record.worker.is_some()),
        (Some(Status::Running), true),
        "handed over: {record:?}"
    );
    proxy.accept_again();
    for id in batch.iter().chain([&lone]) {
        let record = env.wait(id);
        assert_eq!(record.status, Some(Status::Succeeded), "{id}: {record:?}");
    }
    assert_eq!(env.record(&lone).attempts, 1);
    let report = worker.stop();
    assert_eq!(report.succeeded, 4, "{report:?}");
    assert_eq!(report.stale, 0, "no job ran twice: {report:?}");
}

/// A worker's `spool_jobs_handed_over_total`.
fn handed_over(metrics: &spool_runtime::metrics::Metrics) -> String {
    spool_runtime::metrics::render(metrics)
        .lines()
        .find(|l| l.starts_with("spool_jobs_handed_over_total "))
        .unwrap_or_default()
        .to_string()
}

/// Redis out of reach for a worker waiting in `Q:idle` (every connection
/// cut): its registration stands until its deadline, so an enqueue meanwhile
/// hands it a job. The worker asks to leave until Redis answers, reads the
/// job from its inbox and runs it: attempt 1, not after its lease (10
/// minutes here) has lapsed. And it registers again only once it has
/// left: never two entries, so no job goes to one it no longer reads.
#[test]
fn a_worker_cut_off_while_idle_runs_the_jobs_handed_to_it() {
    let env = Env::standalone("handover-cut-worker");
    let proxy = Proxy::start(env.redis.port());
    let plugins = [
        ("a/hello", "hello"),
        ("b/hello", "hello"),
        ("c/hello", "hello"),
    ];
    let worker = env.worker(&plugins, |c| {
        c.queue.url = proxy.url();
        c.lease = Duration::from_secs(600);
        c.fleet = false;
    });
    let idle = format!("{}:idle", env.queue.key_prefix());
    let entries = || -> u64 {
        redis::cmd("ZCARD")
            .arg(&idle)
            .query(&mut env.redis_conn())
            .unwrap()
    };
    let ran_once = |id: &str| {
        let record = env.wait(id);
        assert_eq!(
            (record.status, record.attempts),
            (Some(Status::Succeeded), 1),
            "{record:?}"
        );
    };
    env.wait_for("the worker to wait in Q:idle", || entries() > 0);
    proxy.cut_everything();
    let during = env.enqueue("a/hello", r#"{"name":"During"}"#);
    std::thread::sleep(Duration::from_millis(300));
    proxy.accept_again();
    ran_once(&during);
    // Cut again, with nothing enqueued: back, it has one entry.
    env.wait_for("the worker to wait in Q:idle", || entries() > 0);
    proxy.cut_everything();
    std::thread::sleep(Duration::from_millis(300));
    proxy.accept_again();
    std::thread::sleep(Duration::from_millis(100));
    env.wait_for("the worker to wait in Q:idle", || entries() > 0);
    assert_eq!(entries(), 1, "an entry left behind by the cut");
    let b = env.enqueue("b/hello", r#"{"name":"B"}"#);
    let c = env.enqueue("c/hello", r#"{"name":"C"}"#);
    ran_once(&b);
    ran_once(&c);
    let report = worker.stop();
    assert_eq!(report.succeeded, 3, "{report:?}");
}

#[test]
fn a_worker_stopped_while_redis_is_away_hands_back_a_claim_whose_reply_it_lost() {
    let env = Env::standalone("lost-claim-stop");
    let (proxy, worker) = worker_behind_a_proxy(&env);
    // The claim's reply is lost, and Redis stays out of reach: the worker
    // cannot hand the job back, and backs off.
    proxy.lose_reply_with_then_refuse("Lost-7d21");
    let id = enqueue_for_a_claim(&env, r#"{"name":"Lost-7d21"}"#);
    env.wait_for("the claim's reply to be cut", || proxy.lost() == 1);
    assert_eq!(env.record(&id).status, Some(Status::Running));
    // Its backoff has grown past a second when Redis is back; it is told
    // to stop before its next try.
    std::thread::sleep(Duration::from_millis(1500));
    proxy.accept_again();
    worker.stop();
    let record = env.record(&id);
    assert_eq!(
        (record.status, record.attempts),
        (Some(Status::Queued), 0),
        "handed back on the way out, no attempt spent: {record:?}"
    );
}

#[test]
fn a_job_whose_workers_keep_vanishing_backs_off_then_dies_as_worker_crash() {
    let env = Env::new("worker-crash");
    let id = env.enqueue("hello", r#"{"name":"Poison"}"#);
    let lease = Duration::from_millis(50);
    let backoff = Duration::from_millis(200);
    let claim = |worker: &str| {
        env.rt
            .block_on(env.queue.claim_backing_off(worker, 10, lease, backoff))
            .unwrap()
            .jobs
    };
    for (n, worker) in ["w1", "w2", "w3"].into_iter().enumerate() {
        // `worker` claims the job, then vanishes without a word.
        env.wait_for(&format!("{worker} to get the job"), || {
            !claim(worker).is_empty()
        });
        std::thread::sleep(lease * 3);
        // The next claim, by anyone, finds the lease expired.
        let before = spool_runtime::ids::now_us();
        assert!(claim("reaper").is_empty());
        let after = spool_runtime::ids::now_us();
        let record = env.record(&id);
        let kind = record.error.as_ref().unwrap()["kind"].clone();
        if n < 2 {
            // A retry's backoff: 200 ms, then 400 ms, never at once.
            assert_eq!(
                (record.status, kind),
                (Some(Status::Delayed), "lease-expired".into())
            );
            let full = 200_000 << n;
            let due = record.run_at_us.unwrap();
            assert!(
                (before + full..=after + full + 1_000).contains(&due),
                "attempt {}: due {} µs after the reaping claim began",
                n + 1,
                due.saturating_sub(before)
            );
        } else {
            // The third time its worker vanished: not run again.
            assert_eq!(
                (record.status, kind),
                (Some(Status::Dead), "worker-crash".into())
            );
            let error = record.error.as_ref().unwrap();
            assert_eq!(error["workers"], "w1, w2, w3");
            assert_eq!(error["retryable"], false);
            assert!(
                error["message"]
                    .as_str()
                    .unwrap()
                    .starts_with("3 attempts ended with their worker gone or wedged (w1, w2, w3)"),
                "{error}"
            );
        }
    }
    // Retried by hand, it gets a fresh count.
    let moved = env
        .rt
        .block_on(env.queue.dead_retry(std::slice::from_ref(&id)))
        .unwrap();
    assert_eq!(moved, vec![id.clone()]);
    let fields: Vec<Option<String>> = redis::cmd("HMGET")
        .arg(format!("{}:job:{id}", env.tenant_keys("default")))
        .arg("lease_expiries")
        .arg("lost_workers")
        .query(&mut env.redis_conn())
        .unwrap();
    assert_eq!(fields, vec![None, None]);
}

#[test]
fn bad_keys_and_duplicate_ids_never_strand_other_jobs() {
    let env = Env::new("bad-keys");
    let prefix = env.tenant_keys("default");
    let good = env.enqueue("hello", r#"{"name":"Good"}"#);
    let mut conn = env.redis_conn();
    let _: () = redis::pipe()
        // Not a hash at all.
        .set(format!("{prefix}:job:stringy"), "oops")
        // A counter that is not a whole number.
        .hset_multiple(
            format!("{prefix}:job:odd"),
            &[
                ("plugin", "hello"),
                ("payload", r#"{"name":"Odd"}"#),
                ("attempt", "1.5"),
                ("token", "inf"),
            ],
        )
        // The good job's id a second time (a client that retried its push).
        .lpush(
            format!("{prefix}:ready:normal"),
            &["stringy", "odd", good.as_str()],
        )
        .query(&mut conn)
        .unwrap();
    let claim = env
        .rt
        .block_on(env.queue.claim("w", 10, Duration::from_secs(30)))
        .unwrap();
    let mut ids: Vec<(String, u32)> = claim
        .jobs
        .iter()
        .map(|j| (j.id.clone(), j.attempt))
        .collect();
    ids.sort();
    let mut expected = vec![(good.clone(), 1), ("odd".to_string(), 2)];
    expected.sort();
    assert_eq!(
        ids, expected,
        "the duplicate is skipped, the string key is set aside"
    );
    let (_, dead) = env.rt.block_on(env.queue.dead_list(10)).unwrap();
    assert_eq!(
        dead.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
        vec!["stringy"]
    );
    let stats = env.rt.block_on(env.queue.stats()).unwrap();
    assert_eq!((stats.queued, stats.running), (0, 2));
}

#[test]
fn a_job_longer_than_its_lease_keeps_it_beside_an_idle_worker() {
    let env = Env::new("lease-renewal");
    // Leases of 2 s, renewed every 2/3 s; a job of 5 s. Without renewal the
    // idle worker, which reaps expired leases at every claim (at least once
    // a second), would run it again as attempt 2.
    let lease = |id: &'static str| {
        move |c: &mut spool_runtime::worker::WorkerConfig| {
            c.lease = Duration::from_secs(2);
            c.worker_id = id.into();
        }
    };
    let busy = env.worker(&[("introspect", "introspect")], lease("busy"));
    let id = env.enqueue("introspect", r#"{"sleep_ms":5000}"#);
    env.wait_until(&id, |r| r.status == Some(Status::Running));
    let idle = env.worker(&[("introspect", "introspect")], lease("idle"));
    let record = env.wait(&id);
    assert_eq!(record.status, Some(Status::Succeeded), "{record:?}");
    assert_eq!(record.attempts, 1, "the lease lapsed: {record:?}");
    assert_eq!(record.worker.as_deref(), Some("busy"));
    assert_eq!(idle.stop().succeeded, 0);
    assert_eq!(busy.stop().succeeded, 1);
}
