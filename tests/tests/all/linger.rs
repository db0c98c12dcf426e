//! Acks that wait for company (`spool worker --ack-linger`,
//! runtime/src/worker/linger.rs): at a moderate rate a lone success no
//! client waits for waits a little for the next outcome, so that both
//! are recorded in one script call. Real Redis, a real worker and the
//! real `hello` plugin, jobs handed over at idle as `spool bench --rate`
//! sends them.

use spool_runtime::queue::Status;
use spool_runtime::tenants::Limit;
use spool_tests::fleet::Env;
use std::collections::HashSet;
use std::time::Duration;

/// A worker of `env` serving `hello` with `linger`, waiting for work.
fn idle_worker(env: &Env, linger: Duration) -> spool_tests::fleet::TestWorker {
    let worker = env.worker(&[("hello", "hello")], |c| c.ack_linger = linger);
    env.wait_for_a_waiter();
    worker
}

/// Enqueue `hello` jobs `every` apart (`waited`: whether a client waits
/// for each); their ids.
fn paced(env: &Env, every: Duration, waited: &[bool]) -> Vec<String> {
    paced_of(env, "hello", every, waited)
}

/// [`paced`] for `plugin`.
fn paced_of(env: &Env, plugin: &str, every: Duration, waited: &[bool]) -> Vec<String> {
    waited
        .iter()
        .map(|&wait| {
            std::thread::sleep(every);
            let mut job = env.job(plugin, r#"{"name":"paced"}"#);
            job.wait = wait;
            env.enqueue_job(job)
        })
        .collect()
}

/// From enqueue to the outcome's record (µs), once it succeeded.
fn took(env: &Env, id: &str) -> u64 {
    let record = env.wait(id);
    assert_eq!(record.status, Some(Status::Succeeded), "{record:?}");
    record.finished_us.unwrap() - record.enqueued_us.unwrap()
}

/// Jobs a hundred a second share their acks: outcomes recorded by one
/// call share its `finished_us`, and with the linger most of them do.
/// Without it (`--ack-linger 0`) each is recorded on its own, but where
/// the machine held the worker up long enough for two to come at once.
#[test]
fn lone_successes_at_a_moderate_rate_share_their_acks() {
    let calls = |linger: Duration, name: &str| -> usize {
        let env = Env::standalone(name);
        let _worker = idle_worker(&env, linger);
        let ids = paced(&env, Duration::from_millis(10), &[false; 40]);
        let finished: HashSet<u64> = ids
            .iter()
            .map(|id| env.wait(id).finished_us.unwrap())
            .collect();
        finished.len()
    };
    let alone = calls(Duration::ZERO, "linger-off");
    let shared = calls(Duration::from_millis(100), "linger");
    assert!(
        shared <= 30 && alone >= shared + 8,
        "40 jobs took {shared} calls with the linger, {alone} without"
    );
}

/// A success a client waits for is recorded at once, where one nobody
/// waits for, at the same gaps, waits for company (about one and a half
/// gaps, here over 200 ms) and, with none coming, goes alone. (Within a
/// second of the first ack: a worker lets an ack wait only while its
/// view of the tenant's limits, which its acks refresh, is that fresh.)
#[test]
fn a_success_a_client_waits_for_is_recorded_at_once() {
    let env = Env::standalone("linger-waited");
    let _worker = idle_worker(&env, Duration::from_secs(2));
    // Three 100 ms apart (a lone success then waits about 150 ms), then,
    // 200 ms apart, one a client waits for and one nobody does.
    let mut ids = paced(&env, Duration::from_millis(100), &[false; 3]);
    ids.extend(paced(&env, Duration::from_millis(200), &[true, false]));
    let waited = took(&env, &ids[3]);
    assert!(
        waited < 100_000,
        "the result a client waits for took {waited} µs"
    );
    let alone = took(&env, &ids[4]);
    assert!(
        alone >= 180_000,
        "the last, nobody waiting, took {alone} µs: it did not wait for company"
    );
}

/// The success of a job that holds its group's slot, or a slot under its
/// tenant's concurrency cap, is recorded at once: the group's next job,
/// or the tenant's, waits for that ack. At the same gaps a job that
/// frees neither waits for company.
#[test]
fn an_ack_that_frees_a_group_or_a_capped_slot_is_not_held_back() {
    let env = Env::standalone("linger-slots");
    env.set_limit("capped", Limit::Concurrency, 5);
    let plugins = [("hello", "hello"), ("capped/hello", "hello")];
    let _worker = env.worker(&plugins, |c| c.ack_linger = Duration::from_secs(2));
    env.wait_for_a_waiter();
    // The capped tenant's outcomes 100 ms apart: none waits.
    let every = Duration::from_millis(100);
    for id in paced_of(&env, "capped/hello", every, &[false; 3]) {
        let capped = took(&env, &id);
        assert!(capped < 100_000, "a capped tenant's job took {capped} µs");
    }
    // Another tenant's 100 ms apart: a lone success waits about 150 ms.
    let warm = paced(&env, every, &[false; 3]);
    took(&env, &warm[2]);
    std::thread::sleep(every);
    let mut job = env.job("hello", r#"{"name":"grouped"}"#);
    job.group = Some("one".into());
    let grouped = env.enqueue_job(job);
    let grouped = took(&env, &grouped);
    assert!(grouped < 100_000, "the group's job took {grouped} µs");
    let free = paced(&env, every, &[false]);
    let free = took(&env, &free[0]);
    assert!(
        free >= 120_000,
        "a job freeing nothing took {free} µs: it did not wait for company"
    );
}

/// Only a success waits: a failure at the same pace is recorded at once.
/// And a lone success that waits goes at once with another tenant's
/// success whose own pace asks for no wait (its last job came longer
/// than the linger before): neither is held up by the other's wait.
#[test]
fn a_failure_and_another_tenants_outcome_are_not_held_back() {
    let env = Env::standalone("linger-others");
    let plugins = [
        ("hello", "hello"),
        ("introspect", "introspect"),
        ("other/hello", "hello"),
    ];
    let linger = Duration::from_millis(500);
    let _worker = env.worker(&plugins, |c| c.ack_linger = linger);
    env.wait_for_a_waiter();
    let every = Duration::from_millis(100);
    // The other tenant's limits are read with its first ack.
    for id in paced_of(&env, "other/hello", every, &[false; 2]) {
        took(&env, &id);
    }
    let warm = paced(&env, every, &[false; 3]);
    took(&env, &warm[2]);
    std::thread::sleep(every);
    let fatal = env.enqueue("introspect", r#"{"fail":"fatal"}"#);
    let record = env.wait(&fatal);
    assert_eq!(record.status, Some(Status::Dead), "{record:?}");
    let failed = record.finished_us.unwrap() - record.enqueued_us.unwrap();
    assert!(failed < 100_000, "the failure took {failed} µs");
    // Tenant default's next success waits (about 190 ms); the other
    // tenant's job, its first for well over the linger, 20 ms later.
    let waiting = paced(&env, every, &[false]);
    std::thread::sleep(Duration::from_millis(20));
    let other = env.enqueue("other/hello", r#"{"name":"other"}"#);
    let other = took(&env, &other);
    assert!(other < 100_000, "the other tenant's job took {other} µs");
    let waiting = took(&env, &waiting[0]);
    assert!(
        waiting < 120_000,
        "the waiting success took {waiting} µs: it did not go with the other's"
    );
}
