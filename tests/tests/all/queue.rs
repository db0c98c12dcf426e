//! The queue end to end: enqueue → worker → record, retries, dead letters,
//! delays, priorities, malformed envelopes, missing plugins. Real Redis,
//! real components.

use spool_runtime::ids::Version;
use spool_runtime::ids::now_us;
use spool_runtime::queue::{Priority, Status};
use spool_tests::fleet::{Env, add_plugin};
use std::time::Duration;

fn error_kind(record: &spool_runtime::queue::JobRecord) -> String {
    record
        .error
        .as_ref()
        .and_then(|e| e.get("kind"))
        .and_then(|k| k.as_str())
        .unwrap_or_default()
        .to_string()
}

#[test]
fn a_job_runs_and_leaves_a_full_record() {
    let env = Env::new("record");
    let worker = env.worker(&[("hello", "hello")], |c| c.worker_id = "w-record".into());
    let before = now_us();
    let id = env.enqueue("hello", r#"{"name":"Ada"}"#);
    let record = env.wait(&id);
    assert_eq!(record.status, Some(Status::Succeeded));
    assert_eq!(
        record.output.as_deref(),
        Some(r#"{"greeting":"Hello, Ada!"}"#)
    );
    assert_eq!(record.plugin, "default/hello");
    assert_eq!(record.attempts, 1);
    assert_eq!(record.worker.as_deref(), Some("w-record"));
    let bytes = std::fs::read(spool_tests::plugin_path("hello")).unwrap();
    assert_eq!(
        record.version.as_deref(),
        Some(Version::of(&bytes).as_str())
    );
    // hello logs one line: one host call, and the line is in the record.
    assert_eq!(record.host_calls, Some(1));
    let logs = record.logs.as_ref().unwrap().to_string();
    assert!(logs.contains("greeting Ada"), "{logs}");
    let (enq, start, fin) = (
        record.enqueued_us.unwrap(),
        record.started_us.unwrap(),
        record.finished_us.unwrap(),
    );
    assert!(
        before <= enq + 1_000_000 && enq <= start && start <= fin,
        "{enq} {start} {fin}"
    );
    // Finished records expire (24 h by default); live ones do not.
    let ttl = record.ttl_seconds.expect("a finished record has a TTL");
    assert!(ttl > 86_000 && ttl <= 86_400, "ttl {ttl}");
    // The record stays in Redis' compact hash encoding and small: no empty
    // fields, defaults left out, the short log form (docs/queue.md,
    // "Record size"). The test's prefix is longer than `spool`'s.
    let key = format!("{}:job:{id}", env.tenant_keys("default"));
    let mut conn = env.redis_conn();
    let encoding: String = redis::cmd("OBJECT")
        .arg("ENCODING")
        .arg(&key)
        .query(&mut conn)
        .unwrap();
    assert_eq!(encoding, "listpack");
    let fields: Vec<String> = redis::cmd("HKEYS").arg(&key).query(&mut conn).unwrap();
    for absent in [
        "content_type",
        "max_attempts",
        "priority",
        "error",
        "cache_key",
        "cache_job",
    ] {
        assert!(
            !fields.iter().any(|f| f == absent),
            "{absent} in {fields:?}"
        );
    }
    assert_eq!(
        (
            record.content_type.as_deref(),
            record.max_attempts,
            record.priority.as_deref()
        ),
        (Some("application/json"), Some(5), Some("normal")),
        "defaults are shown"
    );
    let bytes: u64 = redis::cmd("MEMORY")
        .arg("USAGE")
        .arg(&key)
        .query(&mut conn)
        .unwrap();
    let extra = env.tenant_keys("default").len() - "spool:{default/default}".len();
    assert!(
        bytes - extra as u64 <= 600,
        "{bytes} bytes ({extra} of them prefix)"
    );
    let report = worker.stop();
    assert_eq!(report.succeeded, 1);
}

#[test]
fn retryable_failures_back_off_then_succeed_or_die() {
    let env = Env::new("retries");
    let worker = env.worker(&[("introspect", "introspect")], |_| {});
    // Fails on attempts 1 and 2, succeeds on 3.
    let recovers = env.enqueue("introspect", r#"{"fail_before_attempt":3}"#);
    // Always fails: dead after 3 attempts.
    let mut job = env.job("introspect", r#"{"fail":"retryable"}"#);
    job.max_attempts = 3;
    let dies = env.enqueue_job(job);

    let ok = env.wait(&recovers);
    assert_eq!(ok.status, Some(Status::Succeeded));
    assert_eq!(ok.attempts, 3);
    let seen: serde_json::Value = serde_json::from_str(ok.output.as_deref().unwrap()).unwrap();
    assert_eq!(seen["attempt"], 3, "the handler saw its attempt number");

    let dead = env.wait(&dies);
    assert_eq!(dead.status, Some(Status::Dead));
    assert_eq!(dead.attempts, 3);
    assert_eq!(error_kind(&dead), "retryable");
    let error = dead.error.as_ref().unwrap();
    assert_eq!(error["exhausted"], "gave up after 3 of 3 attempts");
    let (_, dead_letters) = env.rt.block_on(env.queue.dead_list(10)).unwrap();
    assert_eq!(dead_letters.len(), 1);
    assert_eq!(dead_letters[0].id, dies);
    let report = worker.stop();
    assert_eq!(report.retried, 4, "two retries each");
}

#[test]
fn invalid_input_and_fatal_errors_are_not_retried() {
    let env = Env::new("no-retry");
    let _worker = env.worker(&[("hello", "hello"), ("introspect", "introspect")], |_| {});
    let invalid = env.enqueue("hello", r#"{"name":""}"#);
    let fatal = env.enqueue("introspect", r#"{"fail":"fatal"}"#);
    let record = env.wait(&invalid);
    assert_eq!(record.status, Some(Status::Dead));
    assert_eq!(record.attempts, 1);
    assert_eq!(error_kind(&record), "invalid-input");
    assert_eq!(record.error.as_ref().unwrap()["field"], "name");
    let record = env.wait(&fatal);
    assert_eq!((record.status, record.attempts), (Some(Status::Dead), 1));
    assert_eq!(error_kind(&record), "fatal");
}

#[test]
fn timeouts_are_retried_while_panics_and_limits_die_at_once() {
    let env = Env::new("failure-kinds");
    let worker = env.worker(
        &[
            ("spin", "spin"),
            ("panics", "panics"),
            ("memory_hog", "memory_hog"),
            ("deep_recursion", "deep_recursion"),
        ],
        |c| {
            c.limits.timeout = Duration::from_millis(300);
            c.limits.memory = 16 << 20;
        },
    );
    let mut job = env.job("spin", "{}");
    job.max_attempts = 2;
    let spin = env.enqueue_job(job);
    let record = env.wait(&spin);
    assert_eq!(
        (record.status, record.attempts, error_kind(&record)),
        (Some(Status::Dead), 2, "timeout".to_string()),
        "a timeout is retried: {record:?}"
    );
    let error = record.error.as_ref().unwrap();
    assert_eq!(error["exhausted"], "gave up after 2 of 2 attempts");
    for (plugin, kind) in [
        ("panics", "panic"),
        ("memory_hog", "memory-limit"),
        ("deep_recursion", "stack-overflow"),
    ] {
        let id = env.enqueue(plugin, "{}");
        let record = env.wait(&id);
        assert_eq!(
            (record.status, record.attempts, error_kind(&record)),
            (Some(Status::Dead), 1, kind.to_string()),
            "{plugin} dies at its first attempt: {record:?}"
        );
        assert_eq!(record.error.as_ref().unwrap()["retryable"], false);
    }
    let report = worker.stop();
    assert_eq!((report.retried, report.dead), (1, 4), "{report:?}");
}

#[test]
fn a_full_claim_wakes_another_worker_and_a_short_one_does_not() {
    let env = Env::new("wake");
    for i in 0..5 {
        env.enqueue("hello", &format!(r#"{{"name":"w{i}"}}"#));
    }
    let wake = format!("{}:wake", env.queue.key_prefix());
    let mut conn = env.redis_conn();
    let woken = |conn: &mut spool_runtime::redis::SyncConn| -> i64 {
        redis::cmd("LLEN").arg(&wake).query(conn).unwrap()
    };
    let _: () = redis::cmd("DEL").arg(&wake).query(&mut conn).unwrap();
    // Two of five: work is left, so the worker's next claim wakes another
    // idle worker for it (no extra round trip).
    let claim = env
        .rt
        .block_on(env.queue.claim("w1", 2, Duration::from_secs(30)));
    assert_eq!(claim.unwrap().jobs.len(), 2);
    assert_eq!(woken(&mut conn), 0);
    let claim = env
        .rt
        .block_on(env.queue.claim("w1", 1, Duration::from_secs(30)));
    assert_eq!(claim.unwrap().jobs.len(), 1);
    assert_eq!(woken(&mut conn), 1, "a full claim with work left wakes");
    let _: () = redis::cmd("DEL").arg(&wake).query(&mut conn).unwrap();
    // Exactly the rest: nothing left, nobody woken.
    let other = env.other_queue();
    let claim = env
        .rt
        .block_on(other.claim("w2", 2, Duration::from_secs(30)));
    assert_eq!(claim.unwrap().jobs.len(), 2);
    let claim = env
        .rt
        .block_on(other.claim("w2", 2, Duration::from_secs(30)));
    assert_eq!(claim.unwrap().jobs.len(), 0);
    assert_eq!(woken(&mut conn), 0, "an emptied queue wakes nobody");
}

/// On a Redis that is not a cluster, an enqueue announces its tenant in
/// the same script call (one call, one round trip), and the tenant is in the ready
/// set with a wake token naming it, for an idle worker to claim at once.
#[test]
fn an_enqueue_on_one_redis_announces_in_the_same_round_trip() {
    let env = Env::standalone("enqueue-announce");
    let keys = env.queue.key_prefix().to_string();
    // The first job: the handle reads the tenant's limits (a round trip of
    // its own, once a second); a claim then finds the tenant dry, and it
    // leaves the ready set.
    let first = env.enqueue("hello", r#"{"name":"a"}"#);
    let claim = env
        .rt
        .block_on(env.queue.claim("w", 10, Duration::from_secs(30)))
        .unwrap();
    assert_eq!(claim.jobs[0].id, first);
    let mut conn = env.redis_conn();
    let ready = |conn: &mut spool_runtime::redis::SyncConn| ready_tenants(conn, &keys);
    env.wait_for("the tenant to leave the ready set", || {
        ready(&mut env.redis_conn()).is_empty()
    });
    let _: () = redis::cmd("DEL")
        .arg(format!("{keys}:wake"))
        .query(&mut conn)
        .unwrap();
    let before = scripts(&mut conn);
    let second = env.enqueue("hello", r#"{"name":"b"}"#);
    assert_eq!(
        scripts(&mut conn) - before,
        1,
        "enqueue and announce in one call"
    );
    assert_eq!(ready(&mut conn), vec!["default".to_string()]);
    let wake: Vec<String> = redis::cmd("LRANGE")
        .arg(format!("{keys}:wake"))
        .arg(0)
        .arg(-1)
        .query(&mut conn)
        .unwrap();
    assert_eq!(wake, vec!["t:default".to_string()]);
    let claim = env
        .rt
        .block_on(env.queue.claim("w", 10, Duration::from_secs(30)))
        .unwrap();
    assert_eq!(claim.jobs[0].id, second);
    // A queue key of the wrong type, written by hand, does not fail an
    // enqueue that stored its job: the announcement goes the long way.
    let _: () = redis::cmd("SET")
        .arg(format!("{keys}:wake"))
        .arg("not a list")
        .query(&mut conn)
        .unwrap();
    let third = env
        .rt
        .block_on(env.queue.enqueue(&env.job("hello", r#"{"name":"c"}"#)))
        .expect("the job is stored: the enqueue succeeds")
        .id;
    assert_eq!(ready(&mut conn), vec!["default".to_string()]);
    let claim = env
        .rt
        .block_on(env.queue.claim("w", 10, Duration::from_secs(30)))
        .unwrap();
    assert_eq!(claim.jobs[0].id, third);
}

/// The tenants in the queue's ready set (`keys`: the queue's prefix).
fn ready_tenants(conn: &mut spool_runtime::redis::SyncConn, keys: &str) -> Vec<String> {
    redis::cmd("ZRANGE")
        .arg(format!("{keys}:ready"))
        .arg(0)
        .arg(-1)
        .query(conn)
        .unwrap()
}

/// Script calls Redis ran (`INFO commandstats`; the tenant's limits, read
/// again when a second has passed, are a plain read: not counted here).
fn scripts(conn: &mut spool_runtime::redis::SyncConn) -> u64 {
    let info: String = redis::cmd("INFO").arg("commandstats").query(conn).unwrap();
    info.lines()
        .filter(|l| l.starts_with("cmdstat_fcall:") || l.starts_with("cmdstat_evalsha:"))
        .filter_map(|l| {
            l.split("calls=")
                .nth(1)?
                .split(',')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum()
}

/// On a Redis that is not a cluster, a claim that finds its tenant dry
/// takes it out of the queue's ready set in the same call, with a timer
/// at its lease's end (for the sweep of a worker that dies): no settle
/// call follows, and the claim makes the next claim's pick itself. The
/// tenant's next job brings it back.
#[test]
fn a_claim_on_one_redis_takes_its_dry_tenant_out_in_the_same_call() {
    let env = Env::standalone("claim-settle");
    let keys = env.queue.key_prefix().to_string();
    let mut conn = env.redis_conn();
    let tenants = |conn: &mut spool_runtime::redis::SyncConn, set: &str| -> Vec<(String, u64)> {
        redis::cmd("ZRANGE")
            .arg(format!("{keys}:{set}"))
            .arg(0)
            .arg(-1)
            .arg("WITHSCORES")
            .query(conn)
            .unwrap()
    };
    let mut first_lease_end = None;
    for name in ["a", "b"] {
        let id = env.enqueue("hello", &format!(r#"{{"name":"{name}"}}"#));
        assert_eq!(
            tenants(&mut conn, "ready"),
            vec![("default".to_string(), 0)]
        );
        let before = scripts(&mut conn);
        let claim = env
            .rt
            .block_on(env.queue.claim("w", 10, Duration::from_secs(30)))
            .unwrap();
        assert_eq!(claim.jobs.len(), 1);
        assert_eq!(claim.jobs[0].id, id);
        assert!(!claim.more, "the claim took the tenant's only job");
        assert_eq!(
            scripts(&mut conn) - before,
            2,
            "a pick, then the claim, which makes the next claim's pick itself: \
             no settle, and no pick riding along"
        );
        assert!(
            tenants(&mut conn, "ready").is_empty(),
            "the tenant left the ready set in the claim"
        );
        let timers = tenants(&mut conn, "timers");
        assert_eq!(timers.len(), 1);
        assert_eq!(timers[0].0, "default");
        // Its timer: the first lease's end (the first claim's time, its
        // token, + 30 s): job a still runs when b is claimed.
        let token: u64 = claim.jobs[0].token.parse().unwrap();
        let first = *first_lease_end.get_or_insert(token + 30_000_000);
        assert_eq!(timers[0].1, first);
    }
}

/// Calls of `command` Redis ran (`INFO commandstats`).
pub(crate) fn calls(conn: &mut spool_runtime::redis::SyncConn, command: &str) -> u64 {
    let info: String = redis::cmd("INFO").arg("commandstats").query(conn).unwrap();
    let prefix = format!("cmdstat_{command}:calls=");
    info.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .and_then(|rest| rest.split(',').next()?.parse().ok())
        .unwrap_or(0)
}

/// A freed lease can make a tenant under a concurrency cap claimable
/// again: its ack looks for waiting jobs and brings the tenant back at
/// once (and the tenant is looked at again within ten seconds anyway, for
/// a worker that missed the cap). A tenant without a cap has nothing a
/// freed lease could free, and the ack of its job (the worker read its
/// limits for the claim) spends no command looking.
#[test]
fn an_ack_frees_a_capped_tenants_slot_at_once_and_spends_nothing_on_an_uncapped_one() {
    let env = Env::standalone("ack-freed-slot");
    let keys = env.queue.key_prefix().to_string();
    let lease = Duration::from_secs(30);
    let mut conn = env.redis_conn();
    let ready = |conn: &mut spool_runtime::redis::SyncConn| ready_tenants(conn, &keys);
    let done = |job: &spool_runtime::queue::ClaimedJob| {
        let applied = env
            .rt
            .block_on(
                env.queue
                    .ack(&[job.outcome(spool_runtime::queue::Next::Succeeded)]),
            )
            .unwrap();
        assert_eq!(applied, vec![true]);
    };
    // Uncapped: no look. (The worker trusts its view of the limits for a
    // second after it read them, at the enqueue or the claim: tried again,
    // after that second, if the machine stalled longer than that.)
    let mut looked = true;
    for _ in 0..5 {
        let start = std::time::Instant::now();
        env.enqueue("hello", "{}");
        let claim = env.rt.block_on(env.queue.claim("w", 10, lease)).unwrap();
        let before = calls(&mut conn, "exists");
        done(&claim.jobs[0]);
        if start.elapsed() < Duration::from_millis(900) {
            looked = calls(&mut conn, "exists") > before;
            break;
        }
        std::thread::sleep(Duration::from_millis(1100));
    }
    assert!(
        !looked,
        "the ack of an uncapped tenant's job looked for work"
    );
    // Capped at one: the second job waits for the first's slot, out of the
    // ready set; the first's ack brings the tenant back, not its timer.
    env.set_limit("acme", spool_runtime::tenants::Limit::Concurrency, 1);
    let first = env.enqueue("acme/hello", "{}");
    let second = env.enqueue("acme/hello", "{}");
    let claim = env.rt.block_on(env.queue.claim("w", 10, lease)).unwrap();
    let ids: Vec<&str> = claim.jobs.iter().map(|j| j.id.as_str()).collect();
    assert_eq!(ids, vec![first.as_str()], "one job under the cap");
    assert!(
        ready(&mut conn).is_empty(),
        "capped, the tenant left the ready set"
    );
    // With a timer ten seconds on, not at the lease's end (30 s here): a
    // worker whose view of the limits missed the cap skips the look at
    // its ack.
    let timer: Option<u64> = redis::cmd("ZSCORE")
        .arg(format!("{keys}:timers"))
        .arg("acme")
        .query(&mut conn)
        .unwrap();
    let timer = timer.expect("a timer for the capped tenant");
    assert!(timer <= redis_time(&mut conn) + 10_000_000, "timer {timer}");
    let before = calls(&mut conn, "exists");
    done(&claim.jobs[0]);
    assert!(
        calls(&mut conn, "exists") > before,
        "the capped tenant's ack looked"
    );
    assert_eq!(ready(&mut conn), vec!["acme".to_string()]);
    let claim = env.rt.block_on(env.queue.claim("w", 10, lease)).unwrap();
    let ids: Vec<&str> = claim.jobs.iter().map(|j| j.id.as_str()).collect();
    assert_eq!(ids, vec![second.as_str()]);
}

/// A worker fed by hand-overs claims nothing, and no claim reads its
/// tenants' limits for it: an ack whose view of them is over a second
/// old, coming within a second of the one before, reads them again beside
/// its call (and looks, as before), so that the acks after it trust the
/// view and spend no look: a look and two reads a second at idle, not a
/// look per job.
#[test]
fn an_ack_reads_stale_limits_again_so_the_acks_after_it_do_not_look() {
    use spool_runtime::queue::{ClaimedJob, LIMITS_FRESH, Next};
    use std::time::Instant;
    let env = Env::standalone("ack-limits-again");
    let mut conn = env.redis_conn();
    // When each ack was sent (as the handle stamps it, before the call).
    let done = |job: &ClaimedJob| {
        let sent = Instant::now();
        let applied = env
            .rt
            .block_on(env.queue.ack(&[job.outcome(Next::Succeeded)]))
            .unwrap();
        assert_eq!(applied, vec![true]);
        sent
    };
    // Tried again if the machine stalls past a second where it must not.
    for _ in 0..5 {
        for _ in 0..3 {
            env.enqueue("hello", "{}");
        }
        let claim = env
            .rt
            .block_on(env.queue.claim("w", 10, Duration::from_secs(30)))
            .unwrap();
        assert_eq!(claim.jobs.len(), 3);
        std::thread::sleep(LIMITS_FRESH / 2 + Duration::from_millis(100));
        let first = done(&claim.jobs[0]);
        std::thread::sleep(LIMITS_FRESH / 2 + Duration::from_millis(100));
        // The view, read at the first enqueue, is over a second old; the
        // ack before came under a second ago.
        let (looks, reads) = (calls(&mut conn, "exists"), calls(&mut conn, "hgetall"));
        let second = done(&claim.jobs[1]);
        let (looked, read) = (calls(&mut conn, "exists"), calls(&mut conn, "hgetall"));
        let third_looks = calls(&mut conn, "exists");
        let third = done(&claim.jobs[2]);
        if second - first >= LIMITS_FRESH || third - second >= LIMITS_FRESH {
            continue;
        }
        assert!(looked > looks, "a stale view: it looked");
        assert!(read > reads, "and read the limits again");
        assert_eq!(
            calls(&mut conn, "exists"),
            third_looks,
            "the next ack trusts the view read beside the last"
        );
        return;
    }
    panic!("the machine stalled for a second in every try");
}

/// An enqueue of a tenant already announced (an earlier job of it waits)
/// does not try to announce it again: the hand-over's look saw `T:in`,
/// and the `SET T:in NX` that would find it set is not sent (a command
/// fewer per enqueue while a tenant has work). Both jobs are claimed.
#[test]
fn an_enqueue_of_an_announced_tenant_does_not_announce_it_again() {
    let env = Env::standalone("enqueue-announced");
    let keys = env.queue.key_prefix().to_string();
    let mut conn = env.redis_conn();
    let sets = calls(&mut conn, "set");
    let first = env.enqueue("hello", "{}");
    assert_eq!(calls(&mut conn, "set"), sets + 1, "the first announces");
    assert_eq!(ready_tenants(&mut conn, &keys), vec!["default".to_string()]);
    let sets = calls(&mut conn, "set");
    let second = env.enqueue("hello", "{}");
    assert_eq!(calls(&mut conn, "set"), sets, "the second does not");
    let claim = env
        .rt
        .block_on(env.queue.claim("w", 10, Duration::from_secs(30)))
        .unwrap();
    let ids: Vec<&str> = claim.jobs.iter().map(|j| j.id.as_str()).collect();
    assert_eq!(ids, vec![first.as_str(), second.as_str()]);
}

/// Redis' clock now (µs).
fn redis_time(conn: &mut spool_runtime::redis::SyncConn) -> u64 {
    let (s, us): (u64, u64) = redis::cmd("TIME").query(conn).unwrap();
    s * 1_000_000 + us
}

/// A worker knows Redis' clock from its claims (the claim's time, plus the
/// time since its reply came): its ack of successes sends it, and the
/// script does not read the clock. The time it writes is no earlier than
/// the attempt's start and no later than Redis' clock. An ack with a
/// retry among its outcomes reads Redis' clock (due times are Redis').
#[test]
fn an_ack_of_successes_takes_redis_clock_from_the_claim() {
    use spool_runtime::queue::Next;
    let env = Env::standalone("ack-clock");
    let lease = Duration::from_secs(30);
    let mut conn = env.redis_conn();
    let id = env.enqueue("hello", "{}");
    let claim = env.rt.block_on(env.queue.claim("w", 10, lease)).unwrap();
    let job = &claim.jobs[0];
    assert_eq!(job.id, id);
    std::thread::sleep(Duration::from_millis(20));
    let mut done = job.outcome(Next::Succeeded);
    done.record.started_us = spool_runtime::queue::Field::Set(job.claimed_us);
    let before = calls(&mut conn, "time");
    let applied = env.rt.block_on(env.queue.ack(&[done])).unwrap();
    assert_eq!(applied, vec![true]);
    assert_eq!(
        calls(&mut conn, "time"),
        before,
        "the ack read Redis' clock"
    );
    let record = env.record(&id);
    let finished = record.finished_us.expect("finished_us");
    assert!(
        finished >= job.claimed_us + 20_000,
        "finished {finished}, claimed {} + 20 ms",
        job.claimed_us
    );
    assert!(finished <= redis_time(&mut conn));
    // A retry is due on Redis' clock: that ack reads it.
    env.enqueue("hello", "{}");
    let claim = env.rt.block_on(env.queue.claim("w", 10, lease)).unwrap();
    let retry = claim.jobs[0].outcome(Next::Retry {
        delay: Duration::from_secs(60),
    });
    let before = calls(&mut conn, "time");
    let applied = env.rt.block_on(env.queue.ack(&[retry])).unwrap();
    assert_eq!(applied, vec![true]);
    assert!(calls(&mut conn, "time") > before);
}

/// An enqueuer knows Redis' clock from its last enqueue that read it (the
/// script's time, plus the time since its reply came): the enqueues after
/// it send it, and their script does not read the clock. The time a job
/// is stored under moves on with the enqueuer's clock and is never later
/// than Redis' clock. A new handle has no reading: its first enqueue
/// reads it.
#[test]
fn an_enqueue_takes_redis_clock_from_the_enqueue_before_it() {
    let env = Env::standalone("enqueue-clock");
    let mut conn = env.redis_conn();
    // The library is loaded (a call that loads it first takes too long
    // for its reading to be used).
    env.enqueue("hello", "{}");
    // A reading is used only from a call that came back within 20 ms:
    // tries until one did, so that a machine that stalls does not fail
    // the test.
    for attempt in 1.. {
        let queue = env
            .rt
            .block_on(spool_runtime::queue::Queue::connect(env.queue_config()))
            .unwrap();
        let enqueue = |conn: &mut spool_runtime::redis::SyncConn| -> (String, u64) {
            let before = calls(conn, "time");
            let id = env
                .rt
                .block_on(queue.enqueue(&env.job("hello", "{}")))
                .unwrap()
                .id;
            (id, calls(conn, "time") - before)
        };
        let (first, read) = enqueue(&mut conn);
        assert_eq!(read, 1, "a new handle's first enqueue reads Redis' clock");
        std::thread::sleep(Duration::from_millis(20));
        let (second, read_again) = enqueue(&mut conn);
        let (third, read_third) = enqueue(&mut conn);
        if read_again + read_third > 0 && attempt < 20 {
            continue;
        }
        assert_eq!(
            read_again + read_third,
            0,
            "the enqueues after it read Redis' clock"
        );
        let [read, at, later] =
            [&first, &second, &third].map(|id| env.record(id).enqueued_us.expect("enqueued_us"));
        assert!(
            at >= read + 20_000,
            "second at {at}, first at {read} + 20 ms"
        );
        let redis_now = redis_time(&mut conn);
        assert!(
            later >= at && later <= redis_now,
            "third at {later}, Redis' clock {redis_now} after it"
        );
        break;
    }
}

/// On a Redis that is not a cluster, the pick a claim makes for the next
/// claim is the one the next claim uses: claims that follow each other are
/// one script call each, no pick of their own.
#[test]
fn a_claim_on_one_redis_makes_the_next_claims_pick() {
    let env = Env::standalone("claim-pick");
    let mut conn = env.redis_conn();
    let lease = Duration::from_secs(30);
    // A pick stands for the queue for 20 ms after its claim: tries until
    // one is quick enough, so that a machine that stalls does not fail the
    // test.
    let mut alone = false;
    for _ in 0..20 {
        claim_one_of_two(&env, lease);
        let before = scripts(&mut conn);
        let second = env.rt.block_on(env.queue.claim("w", 1, lease)).unwrap();
        assert_eq!(second.jobs.len(), 1, "the next claim found the other job");
        assert!(!second.more, "the tenant ran dry");
        if scripts(&mut conn) - before == 1 {
            alone = true;
            break;
        }
    }
    assert!(
        alone,
        "in 20 tries no claim used the pick the claim before it made"
    );
}

/// Two jobs of the default tenant, and a claim of one of them, whose pick
/// for the next claim stands for 20 ms.
fn claim_one_of_two(env: &Env, lease: Duration) {
    env.enqueue("hello", r#"{"name":"a"}"#);
    env.enqueue("hello", r#"{"name":"b"}"#);
    let first = env.rt.block_on(env.queue.claim("w", 1, lease)).unwrap();
    assert_eq!(first.jobs.len(), 1);
    assert!(first.more, "one of the tenant's two jobs is left");
}

/// A pick a claim makes for the next claim that Redis refuses (a queue key
/// of the wrong type, written by hand) is no pick: the claim itself, and
/// the job it leased, stand.
#[test]
fn a_claim_whose_pick_is_refused_still_hands_out_its_job() {
    let env = Env::standalone("claim-pick-refused");
    let mut conn = env.redis_conn();
    let timers = format!("{}:timers", env.queue.key_prefix());
    let lease = Duration::from_secs(30);
    // The second claim makes its pick inside its call only while the
    // first one's pick stands (20 ms); after that it picks on its own,
    // which fails on the broken key (an error, not this case): tries until
    // one is quick enough.
    let mut stood = false;
    for _ in 0..20 {
        let _: () = redis::cmd("DEL").arg(&timers).query(&mut conn).unwrap();
        claim_one_of_two(&env, lease);
        // The pick inside the next claim now fails on its `ZRANGE`.
        let _: () = redis::cmd("SET")
            .arg(&timers)
            .arg("not a sorted set")
            .query(&mut conn)
            .unwrap();
        let Ok(claim) = env.rt.block_on(env.queue.claim("w", 1, lease)) else {
            continue;
        };
        assert_eq!(claim.jobs.len(), 1, "the claim stood: {claim:?}");
        assert!(claim.unsure.is_empty(), "nothing to hand back: {claim:?}");
        let status: String = redis::cmd("HGET")
            .arg(format!(
                "{}:job:{}",
                env.queue.tenant_keys("default"),
                claim.jobs[0].id
            ))
            .arg("status")
            .query(&mut conn)
            .unwrap();
        assert_eq!(status, "running");
        stood = true;
        break;
    }
    assert!(stood, "in 20 tries no claim made its pick inside its call");
}

/// Claims stop at their byte budget: what they popped beyond it goes back
/// untouched, in order, to its ready list or the head of its group (its
/// group slot freed), and the next claims take it. A job alone over the
/// budget is still claimed, on its own.
#[test]
fn a_claim_stops_at_its_byte_budget_and_leaves_the_rest_in_order() {
    let env = Env::new("claim-bytes");
    // Six of the group may run at once: claims take from it and from the
    // ready list alike.
    env.set_limit(
        "default",
        spool_runtime::tenants::Limit::GroupConcurrency,
        6,
    );
    let big = |i: usize| format!(r#"{{"name":"{i}","pad":"{}"}}"#, "x".repeat(100_000));
    let mut ungrouped = Vec::new();
    let mut grouped = Vec::new();
    for i in 0..6 {
        ungrouped.push(env.enqueue("hello", &big(i)));
        let mut job = env.job("hello", &big(10 + i));
        job.group = Some("g".into());
        grouped.push(env.enqueue_job(job));
    }
    let queue = env.other_queue().with_claim_bytes(250_000);
    let keys = env.tenant_keys("default");
    let mut conn = env.redis_conn();
    let mut claimed: Vec<String> = Vec::new();
    loop {
        let claim = env
            .rt
            .block_on(queue.claim("w", 12, Duration::from_secs(30)))
            .unwrap();
        if claim.jobs.is_empty() {
            break;
        }
        assert_eq!(claim.jobs.len(), 2, "two jobs of 100 KB fit in 250 KB");
        claimed.extend(claim.jobs.into_iter().map(|j| j.id));
        // Only the group's claimed jobs hold its slots.
        let held: usize = redis::cmd("SCARD")
            .arg(format!("{keys}:held:g"))
            .query(&mut conn)
            .unwrap();
        let taken = claimed.iter().filter(|id| grouped.contains(id)).count();
        assert_eq!(held, taken, "slots held after {claimed:?}");
    }
    let mut sorted = claimed.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), 12, "every job claimed once: {claimed:?}");
    let in_order = |ids: &[String]| -> Vec<String> {
        claimed
            .iter()
            .filter(|c| ids.contains(c))
            .cloned()
            .collect()
    };
    assert_eq!(
        in_order(&ungrouped),
        ungrouped,
        "ready jobs kept their order"
    );
    assert_eq!(in_order(&grouped), grouped, "the group kept its order");
    for id in &claimed {
        let record = env.record(id);
        assert_eq!(record.status, Some(Status::Running));
        assert_eq!(record.attempts, 1, "{id} claimed once");
    }
    // One job larger than the whole budget is claimed alone.
    let lone = env.enqueue("hello", &big(99));
    env.enqueue("hello", &big(100));
    let small = queue.with_claim_bytes(1_000);
    let claim = env
        .rt
        .block_on(small.claim("w", 12, Duration::from_secs(30)))
        .unwrap();
    let ids: Vec<String> = claim.jobs.into_iter().map(|j| j.id).collect();
    assert_eq!(ids, vec![lone]);
    // The budget counts payloads: nothing else of a record may be large.
    let mut sly = env.job("hello", "{}");
    sly.content_type = "x".repeat(1 << 20);
    match env.rt.block_on(env.queue.enqueue(&sly)) {
        Err(spool_runtime::queue::QueueError::Invalid { reason }) => {
            assert!(reason.contains("invalid content type"), "{reason}");
        }
        other => panic!("a 1 MiB content type was not refused: {other:?}"),
    }
}

/// Claims cut to one job each by the byte budget still share 6:3:1
/// between priorities, and take turns between groups and ungrouped jobs,
/// and between groups.
#[test]
fn claims_cut_short_by_the_byte_budget_stay_fair() {
    let env = Env::new("claim-bytes-fair");
    // (Before the first claim: a queue handle reads a tenant's limits
    // once a second.)
    env.set_limit(
        "default",
        spool_runtime::tenants::Limit::GroupConcurrency,
        10,
    );
    let pad = "x".repeat(100_000);
    let queue = env.other_queue().with_claim_bytes(150_000);
    let one_by_one = |n: usize| -> Vec<String> {
        let mut got = Vec::new();
        for _ in 0..n {
            let claim = env
                .rt
                .block_on(queue.claim("w", 20, Duration::from_secs(30)))
                .unwrap();
            assert_eq!(
                claim.jobs.len(),
                1,
                "one job of 100 KB per claim after {got:?}"
            );
            // The payload's name: {"n":"X...
            got.push(String::from_utf8_lossy(&claim.jobs[0].payload[6..7]).to_string());
        }
        got
    };
    for (p, name) in [
        (Priority::Low, "l"),
        (Priority::Normal, "n"),
        (Priority::High, "h"),
    ] {
        let jobs: Vec<_> = (0..10)
            .map(|_| {
                let mut job = env.job("hello", &format!(r#"{{"n":"{name}_______","p":"{pad}"}}"#));
                job.priority = p;
                job
            })
            .collect();
        env.rt.block_on(env.queue.enqueue_many(&jobs)).unwrap();
    }
    let got = one_by_one(10);
    assert_eq!(got.concat(), "hhhhhhnnnl", "6:3:1 in one-job claims");
    // Drain the rest, then groups against ungrouped jobs, and two groups.
    one_by_one(20);
    for i in 0..4 {
        for (name, group) in [("a", Some("ga")), ("b", Some("gb")), ("r", None)] {
            let mut job = env.job(
                "hello",
                &format!(r#"{{"n":"{name}{i}______","p":"{pad}"}}"#),
            );
            job.group = group.map(str::to_string);
            env.enqueue_job(job);
        }
    }
    let got = one_by_one(12);
    let grouped: String = got.iter().filter(|g| *g != "r").cloned().collect();
    // While both have jobs (the four ungrouped ones), in turn.
    let halves = got[..8]
        .chunks(2)
        .all(|c| c.iter().filter(|g| *g == "r").count() == 1);
    assert!(halves, "groups and ungrouped jobs in turn: {got:?}");
    assert_eq!(grouped, "abababab", "the groups in turn: {got:?}");
}

/// A worker whose claims take one or two jobs at a time (jobs of 100 KB,
/// a budget of 250 KB), with the rest popped and put back each time, runs
/// every job once.
#[test]
fn a_worker_under_a_small_claim_budget_runs_every_large_job_once() {
    let env = Env::new("claim-bytes-worker");
    let _worker = env.worker(&[("hello", "hello")], |c| c.claim_bytes = 250_000);
    let jobs: Vec<_> = (0..24)
        .map(|i| {
            let pad = "x".repeat(100_000);
            env.job("hello", &format!(r#"{{"name":"n{i}","pad":"{pad}"}}"#))
        })
        .collect();
    let ids: Vec<String> = env.enqueue_all(&jobs);
    for (i, id) in ids.iter().enumerate() {
        let record = env.wait(id);
        assert_eq!(record.status, Some(Status::Succeeded), "job {i}");
        assert_eq!(record.attempts, 1, "job {i} ran once");
        let output = record.output.clone().unwrap_or_default();
        assert!(output.contains(&format!("Hello, n{i}!")), "{output}");
    }
}

#[test]
fn a_worker_busy_with_long_jobs_leaves_the_rest_to_another() {
    let env = Env::new("no-hoarding");
    // One job thread and room to prefetch 64: after a job of 300 ms the
    // worker knows its jobs are long and claims none ahead.
    let a = env.worker(&[("introspect", "introspect")], |c| {
        c.concurrency = 1;
        c.prefetch = 64;
        c.worker_id = "w-a".into();
    });
    let trained = env.enqueue("introspect", r#"{"sleep_ms":300}"#);
    assert_eq!(env.wait(&trained).status, Some(Status::Succeeded));
    let ids: Vec<String> = (0..4)
        .map(|_| env.enqueue("introspect", r#"{"sleep_ms":1000}"#))
        .collect();
    let running = || {
        ids.iter()
            .filter(|id| env.record(id).status == Some(Status::Running))
            .count()
    };
    env.wait_for("a first long job to start", || running() > 0);
    // One job thread, jobs known to be long: it holds exactly one. (Lone
    // jobs enqueued while it starts the first are handed over to it as an
    // idle waiter and show `running` until, full, it leaves the idle
    // workers and hands them back, a round trip or two later: docs/
    // queue.md, "Hand-over at idle", step 4. Jobs claimed ahead would
    // stay running for their second.)
    let settling = std::time::Instant::now();
    while running() > 1 && settling.elapsed() < Duration::from_millis(300) {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(running(), 1, "w-a claimed long jobs ahead");
    let b = env.worker(&[("introspect", "introspect")], |c| {
        c.worker_id = "w-b".into();
    });
    let ran_on: Vec<String> = ids
        .iter()
        .map(|id| env.wait(id).worker.unwrap_or_default())
        .collect();
    assert!(
        ran_on.iter().any(|w| w == "w-b"),
        "worker w-a hoarded every long job: {ran_on:?}"
    );
    drop((a, b));
}

#[test]
fn jobs_claimed_ahead_that_turn_out_slow_go_back_for_an_idle_worker() {
    let env = Env::new("stale-prefetch");
    // One job thread; a horizon of 100 ms, so jobs waiting over 5 s in
    // its local queue are handed back.
    let a = env.worker(&[("introspect", "introspect")], |c| {
        c.concurrency = 1;
        c.prefetch_horizon = Duration::from_millis(100);
        c.worker_id = "w-a".into();
    });
    // Fast jobs first: the worker learns to claim many ahead.
    for i in 0..3 {
        env.wait(&env.enqueue("introspect", &format!(r#"{{"echo":{i}}}"#)));
    }
    // Then four slow ones in one enqueue, claimed together by w-a.
    let slow: Vec<_> = (0..4)
        .map(|_| env.job("introspect", r#"{"sleep_ms":3000}"#))
        .collect();
    let ids: Vec<String> = env.enqueue_all(&slow);
    env.wait_for("w-a to claim all four", || {
        ids.iter()
            .all(|id| env.record(id).status == Some(Status::Running))
    });
    let b = env.worker(&[("introspect", "introspect")], |c| {
        c.worker_id = "w-b".into();
    });
    // w-a runs two (the second starts 3 s after its claim); the other two
    // have waited 6 s by then: they go back, and w-b is idle.
    let done: Vec<_> = ids.iter().map(|id| env.wait(id)).collect();
    let ran_on: Vec<&str> = done
        .iter()
        .map(|r| r.worker.as_deref().unwrap_or(""))
        .collect();
    assert!(
        ran_on.contains(&"w-b"),
        "w-a ran every slow job it had claimed ahead: {ran_on:?}"
    );
    for record in &done {
        assert_eq!(
            (record.status, record.attempts),
            (Some(Status::Succeeded), 1),
            "handed back without spending an attempt"
        );
    }
    drop((a, b));
}

#[test]
fn dead_letters_can_be_retried_and_purged() {
    let env = Env::new("dead");
    let mut job = env.job("introspect", r#"{"fail_before_attempt":2}"#);
    job.max_attempts = 1;
    let id = env.enqueue_job(job);
    let gone = env.enqueue("hello", r#"{"name":""}"#);
    let _worker = env.worker(&[("introspect", "introspect"), ("hello", "hello")], |_| {});
    let first = env.wait(&id);
    assert_eq!(first.status, Some(Status::Dead));
    assert_eq!(env.wait(&gone).status, Some(Status::Dead));
    // Retried with fresh attempts: attempt 1 runs again (and fails again).
    let moved = env
        .rt
        .block_on(env.queue.dead_retry(std::slice::from_ref(&id)))
        .unwrap();
    assert_eq!(moved, vec![id.clone()]);
    let record = env.wait_until(&id, |r| {
        r.status == Some(Status::Dead) && r.started_us > first.finished_us
    });
    assert_eq!(record.attempts, 1);
    // Purge one: its record goes too; the other stays listed.
    let purged = env
        .rt
        .block_on(env.queue.dead_purge(std::slice::from_ref(&gone)))
        .unwrap();
    assert_eq!(purged, 1);
    assert!(env.rt.block_on(env.queue.record(&gone)).is_err());
    let (total, entries) = env.rt.block_on(env.queue.dead_list(10)).unwrap();
    assert_eq!(total, 1);
    assert_eq!(entries[0].id, id);
}

#[test]
fn a_delayed_job_runs_once_at_its_time() {
    let env = Env::new("delayed");
    let w1 = env.worker(&[("hello", "hello")], |c| c.worker_id = "w1".into());
    let w2 = env.worker(&[("hello", "hello")], |c| c.worker_id = "w2".into());
    let mut job = env.job("hello", r#"{"name":"Later"}"#);
    job.delay = Duration::from_millis(800);
    let id = env.enqueue_job(job);
    let parked = env.record(&id);
    assert_eq!(parked.status, Some(Status::Delayed));
    let due = parked.run_at_us.unwrap();
    assert_eq!(due - parked.enqueued_us.unwrap(), 800_000);
    let record = env.wait(&id);
    assert_eq!(record.status, Some(Status::Succeeded));
    assert_eq!(record.attempts, 1, "promoted and run exactly once");
    let started = record.started_us.unwrap();
    assert!(
        started >= due,
        "started {}us before its time",
        due - started
    );
    let reports = [w1.stop(), w2.stop()];
    assert_eq!(reports.iter().map(|r| r.succeeded).sum::<u64>(), 1);
}

#[test]
fn priorities_share_one_worker_six_three_one() {
    let env = Env::new("priorities");
    let mut ids = Vec::new();
    for priority in [Priority::Low, Priority::Normal, Priority::High] {
        for _ in 0..20 {
            let mut job = env.job("hello", r#"{"name":"p"}"#);
            job.priority = priority;
            ids.push((priority, env.enqueue_job(job)));
        }
    }
    // One job at a time, one per claim: the claim order is the schedule.
    let worker = env.worker(&[("hello", "hello")], |c| {
        c.concurrency = 1;
        c.batch = 1;
    });
    env.wait_finished(60);
    worker.stop();
    let mut order: Vec<(u64, Priority)> = ids
        .iter()
        .map(|(p, id)| (env.record(id).claimed_us.unwrap(), *p))
        .collect();
    order.sort_by_key(|(t, _)| *t);
    let first_ten: Vec<Priority> = order[..10].iter().map(|(_, p)| *p).collect();
    let count = |p| first_ten.iter().filter(|q| **q == p).count();
    assert_eq!(
        (
            count(Priority::High),
            count(Priority::Normal),
            count(Priority::Low)
        ),
        (6, 3, 1),
        "first ten claims: {first_ten:?}"
    );
    // Low is not starved: its first job runs long before high runs dry.
    let first_low = order.iter().position(|(_, p)| *p == Priority::Low).unwrap();
    assert!(first_low < 10, "first low job ran at position {first_low}");
}

#[test]
fn an_idempotency_key_enqueues_once() {
    let env = Env::new("idem");
    let mut job = env.job("hello", r#"{"name":"Once"}"#);
    job.idempotency_key = Some("order-42".into());
    let first = env.rt.block_on(env.queue.enqueue(&job)).unwrap();
    let second = env.rt.block_on(env.queue.enqueue(&job)).unwrap();
    assert!(first.created);
    assert!(!second.created);
    assert_eq!(first.id, second.id);
    assert_eq!(env.rt.block_on(env.queue.stats()).unwrap().queued, 1);
}

#[test]
fn a_malformed_envelope_is_dead_lettered_and_the_worker_carries_on() {
    let env = Env::new("malformed");
    let prefix = env.tenant_keys("default");
    let mut conn = env.redis_conn();
    // No plugin field at all, and a bad max_attempts.
    let _: () = redis::pipe()
        .hset(format!("{prefix}:job:bad1"), "payload", "{}")
        .hset_multiple(
            format!("{prefix}:job:bad2"),
            &[("plugin", "hello"), ("max_attempts", "many")],
        )
        .hset_multiple(
            format!("{prefix}:job:bad3"),
            &[("plugin", "hello"), ("priority", "urgent")],
        )
        .lpush(
            format!("{prefix}:ready:normal"),
            &["bad1", "bad2", "bad3", "ghost"],
        )
        .query(&mut conn)
        .unwrap();
    let _worker = env.worker(&[("hello", "hello")], |_| {});
    let good = env.enqueue("hello", r#"{"name":"After"}"#);
    assert_eq!(env.wait(&good).status, Some(Status::Succeeded));
    for (id, field) in [
        ("bad1", "plugin"),
        ("bad2", "max_attempts"),
        ("bad3", "priority"),
        ("ghost", "plugin"),
    ] {
        let record = env.wait(id);
        assert_eq!(record.status, Some(Status::Dead), "{id}");
        assert_eq!(error_kind(&record), "malformed-envelope");
        let message = record.error.as_ref().unwrap()["message"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(message.contains(&format!("\"{field}\"")), "{id}: {message}");
    }
}

#[test]
fn a_job_for_a_missing_plugin_waits_until_the_plugin_arrives() {
    let env = Env::new("missing");
    let dir = env.plugins_dir(&[("hello", "hello")]);
    let mut config = env.worker_config(&dir);
    config.worker_id = "w-missing".into();
    let registry = std::sync::Arc::new(spool_runtime::plugins::Registry::new(
        spool_tests::sandbox().clone(),
        &dir,
        config.capabilities.clone(),
    ));
    registry.refresh();
    let _worker = env.worker_on(config, registry);
    let id = env.enqueue("acme/resize", r#"{"name":"Late"}"#);
    let waiting = env.wait_until(&id, |r| r.error.is_some());
    assert_eq!(
        waiting.error.as_ref().unwrap()["message"],
        "plugin acme/resize is not loaded on worker w-missing"
    );
    assert_eq!(waiting.attempts, 0, "waiting spends no attempt");
    assert!(matches!(
        waiting.status,
        Some(Status::Delayed | Status::Queued | Status::Running)
    ));
    // Deploy it: the rescan picks it up and the job runs.
    add_plugin(&dir, "acme/resize", "hello");
    let record = env.wait(&id);
    assert_eq!(record.status, Some(Status::Succeeded));
    assert_eq!(record.attempts, 1);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_plugin_that_never_arrives_is_dead_lettered_after_the_wait() {
    let env = Env::new("never");
    let _worker = env.worker(&[], |c| c.plugin_wait = Duration::from_millis(300));
    let id = env.enqueue("acme/nowhere", "{}");
    let record = env.wait(&id);
    assert_eq!(record.status, Some(Status::Dead));
    assert_eq!(error_kind(&record), "plugin-not-loaded");
    assert_eq!(record.attempts, 0, "waiting spent no attempt");
    let message = record.error.as_ref().unwrap()["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(message.contains("the limit is 300ms"), "{message}");
    let waited = record.finished_us.unwrap() - record.enqueued_us.unwrap();
    assert!(
        waited >= 300_000,
        "dead after {waited}us, before --plugin-wait"
    );
}

#[test]
fn idempotency_keys_are_per_tenant() {
    let env = Env::new("idem-tenants");
    let enqueue = |plugin: &str| {
        let mut job = env.job(plugin, r#"{"name":"K"}"#);
        job.idempotency_key = Some("order-7".into());
        env.rt.block_on(env.queue.enqueue(&job)).unwrap()
    };
    let (acme, acme_again) = (enqueue("acme/hello"), enqueue("acme/other"));
    let beta = enqueue("beta/hello");
    // The same tenant: one job, whichever of its plugins.
    assert_eq!(
        (acme_again.id.as_str(), acme_again.created),
        (acme.id.as_str(), false)
    );
    // Another tenant never gets acme's job (nor, waiting, its output).
    assert!(beta.created, "beta was handed acme's job {}", acme.id);
    assert_ne!(beta.id, acme.id);
    assert_eq!(env.record(&beta.id).plugin, "beta/hello");
}

#[test]
fn an_idempotency_key_of_a_purged_job_enqueues_anew() {
    let env = Env::new("idem-purged");
    let _worker = env.worker(&[("hello", "hello")], |_| {});
    let mut job = env.job("hello", r#"{"name":""}"#);
    job.idempotency_key = Some("k".into());
    let first = env.enqueue_job(job.clone());
    assert_eq!(env.wait(&first).status, Some(Status::Dead));
    env.rt.block_on(env.queue.dead_purge(&[])).unwrap();
    let second = env.rt.block_on(env.queue.enqueue(&job)).unwrap();
    assert!(second.created, "the key named a job that no longer exists");
    assert_ne!(second.id, first);
}

#[test]
fn retries_wait_an_exponential_backoff_with_jitter() {
    let env = Env::new("backoff");
    let _worker = env.worker(&[("introspect", "introspect")], |c| {
        c.backoff = Duration::from_secs(2);
    });
    let id = env.enqueue("introspect", r#"{"fail_before_attempt":3}"#);
    // After attempt 1: due base·2^0 = 2 s later, times a jitter in [0.5, 1).
    let first = env.wait_until(&id, |r| {
        r.status == Some(Status::Retrying) && r.attempts == 1
    });
    let delay = first.run_at_us.unwrap() - first.finished_us.unwrap();
    assert!(
        (1_000_000..2_000_000).contains(&delay),
        "first backoff {delay}us"
    );
    // After attempt 2: base·2^1 = 4 s, times the jitter.
    let second = env.wait_until(&id, |r| {
        r.status == Some(Status::Retrying) && r.attempts == 2
    });
    let delay = second.run_at_us.unwrap() - second.finished_us.unwrap();
    assert!(
        (2_000_000..4_000_000).contains(&delay),
        "second backoff {delay}us"
    );
}

#[test]
fn a_due_job_is_promoted_exactly_once() {
    let env = Env::new("promote-once");
    let mut job = env.job("hello", r#"{"name":"Once"}"#);
    job.delay = Duration::from_millis(200);
    let id = env.enqueue_job(job);
    std::thread::sleep(Duration::from_millis(300));
    // Two workers' claims (claiming nothing) both see the job due.
    let other = env.other_queue();
    env.rt
        .block_on(env.queue.claim("a", 0, Duration::from_secs(10)))
        .unwrap();
    env.rt
        .block_on(other.claim("b", 0, Duration::from_secs(10)))
        .unwrap();
    let mut conn = env.redis_conn();
    let ready: Vec<String> = redis::cmd("LRANGE")
        .arg(format!("{}:ready:normal", env.tenant_keys("default")))
        .arg(0)
        .arg(-1)
        .query(&mut conn)
        .unwrap();
    assert_eq!(ready, vec![id.clone()]);
    assert_eq!(env.record(&id).status, Some(Status::Queued));
}

#[test]
fn the_dead_letters_are_capped() {
    let env = Env::new("dead-cap");
    let _worker = env.worker(&[("hello", "hello")], |c| c.queue.dead_cap = 3);
    let ids: Vec<String> = (0..5)
        .map(|_| {
            let id = env.enqueue("hello", r#"{"name":""}"#);
            env.wait(&id);
            id
        })
        .collect();
    let (total, entries) = env.rt.block_on(env.queue.dead_list(10)).unwrap();
    assert_eq!(total, 3);
    let listed: Vec<&str> = entries.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(
        listed,
        vec![ids[4].as_str(), ids[3].as_str(), ids[2].as_str()],
        "newest first"
    );
    // The two oldest went, records and all.
    for id in &ids[..2] {
        assert!(env.rt.block_on(env.queue.record(id)).is_err(), "{id}");
    }
}

/// A worker's threads rest between short jobs (one takes them all), but a
/// slow job does not hold up the short ones behind it, and slow jobs still
/// run side by side (worker/spares.rs).
#[test]
fn resting_job_threads_come_back_for_jobs_behind_a_slow_one() {
    let env = Env::new("spares");
    let _worker = env.worker(&[("hello", "hello"), ("introspect", "introspect")], |c| {
        c.concurrency = 2;
    });
    // Short jobs: most recent jobs short, one thread takes them.
    let short: Vec<String> = (0..200)
        .map(|i| env.enqueue("hello", &format!(r#"{{"name":"s{i}"}}"#)))
        .collect();
    for id in &short {
        assert_eq!(env.wait(id).status, Some(Status::Succeeded));
    }
    let slow = env.enqueue("introspect", r#"{"sleep_ms":1500}"#);
    // (A record says `running` from its claim on, and gets `started_us`
    // with its outcome: the idle worker starts it within a few ms.)
    env.wait_for("the slow job to be claimed", || {
        env.record(&slow).status == Some(Status::Running)
    });
    std::thread::sleep(Duration::from_millis(100));
    let behind: Vec<String> = (0..20)
        .map(|i| env.enqueue("hello", &format!(r#"{{"name":"b{i}"}}"#)))
        .collect();
    let slow_done = env.wait(&slow).finished_us.unwrap();
    for id in &behind {
        let record = env.wait(id);
        assert_eq!(record.status, Some(Status::Succeeded));
        assert!(
            record.finished_us.unwrap() < slow_done,
            "a short job waited for the slow one ({slow_done}): {record:?}"
        );
    }
    // Two slow jobs on two threads overlap.
    let pair: Vec<String> = (0..2)
        .map(|_| env.enqueue("introspect", r#"{"sleep_ms":600}"#))
        .collect();
    let (a, b) = (env.wait(&pair[0]), env.wait(&pair[1]));
    let span =
        |r: &spool_runtime::queue::JobRecord| (r.started_us.unwrap(), r.finished_us.unwrap());
    let ((a0, a1), (b0, b1)) = (span(&a), span(&b));
    assert!(
        a0 < b1 && b0 < a1,
        "the two slow jobs ran one after the other: {a0}–{a1}, {b0}–{b1}"
    );
}
