//! Ids a client pushes twice or reuses, and late outcomes after an
//! operator's `dead retry` (docs/queue.md, "Enqueue with plain commands"
//! and "Delivery guarantees"): no second attempt beside the first, no
//! attempt that skips its backoff, no job run again after it succeeded, no
//! live record deleted, no retry undone by the attempt that died, and no
//! late outcome applied twice.

use crate::scripts::outcome;
use spool_runtime::queue::{Next, Outcome, Status};
use spool_tests::fleet::Env;
use std::time::Duration;

const LEASE: Duration = Duration::from_secs(30);

fn key(env: &Env, suffix: &str) -> String {
    format!("{}:{suffix}", env.tenant_keys("default"))
}

/// Claim every job `worker` can get now: (id, token) of each.
fn claim(env: &Env, worker: &str) -> Vec<(String, String)> {
    env.rt
        .block_on(env.queue.claim(worker, 10, LEASE))
        .unwrap()
        .jobs
        .into_iter()
        .map(|j| (j.id, j.token))
        .collect()
}

/// A job of one attempt whose worker lost Redis: its lease lapsed, and the
/// next claim buried it. Returns its id and the lapsed attempt's token.
fn dead_by_its_lease(env: &Env) -> (String, String) {
    let mut job = env.job("hello", "{}");
    job.max_attempts = 1;
    let id = env.enqueue_job(job);
    let lease = Duration::from_millis(50);
    let claim_leased = |worker: &str| {
        env.rt
            .block_on(env.queue.claim_backing_off(worker, 10, lease, lease))
            .unwrap()
            .jobs
    };
    let held = claim_leased("stale");
    assert_eq!(held.len(), 1);
    std::thread::sleep(lease * 3);
    assert!(claim_leased("reaper").is_empty());
    assert_eq!(env.record(&id).status, Some(Status::Dead));
    (id, held[0].token.clone())
}

#[test]
fn a_copy_of_an_id_waiting_for_its_retry_is_not_run_beside_it() {
    let env = Env::new("reused-retrying");
    let id = env.enqueue("hello", "{}");
    // A client retried its transaction: the id is in the ready list twice.
    let _: () = redis::cmd("LPUSH")
        .arg(key(&env, "ready:normal"))
        .arg(&id)
        .query(&mut env.redis_conn())
        .unwrap();
    let first = env
        .rt
        .block_on(env.queue.claim("a", 1, LEASE))
        .unwrap()
        .jobs;
    assert_eq!(first.len(), 1);
    let retry = Next::Retry {
        delay: Duration::from_secs(600),
    };
    let applied = env
        .rt
        .block_on(env.queue.ack(&[outcome(&id, &first[0].token, retry)]))
        .unwrap();
    assert_eq!(applied, vec![true]);
    // The second copy is skipped: the job waits out its backoff.
    assert_eq!(claim(&env, "b"), vec![]);
    let record = env.record(&id);
    assert_eq!(
        (record.status, record.attempts),
        (Some(Status::Retrying), 1)
    );
}

#[test]
fn a_due_copy_of_an_id_that_already_succeeded_is_not_run_again() {
    let env = Env::new("reused-succeeded");
    let id = env.enqueue("hello", "{}");
    let jobs = claim(&env, "a");
    let applied = env
        .rt
        .block_on(env.queue.ack(&[outcome(&id, &jobs[0].1, Next::Succeeded)]))
        .unwrap();
    assert_eq!(applied, vec![true]);
    // A copy of the id that a client also put in the delayed set, due now.
    let _: () = redis::cmd("ZADD")
        .arg(key(&env, "delayed"))
        .arg(0)
        .arg(&id)
        .query(&mut env.redis_conn())
        .unwrap();
    env.announce_plain("default", Some(1));
    assert_eq!(claim(&env, "b"), vec![]);
    let record = env.record(&id);
    assert_eq!(
        (record.status, record.attempts),
        (Some(Status::Succeeded), 1)
    );
    let left: u64 = redis::cmd("ZCARD")
        .arg(key(&env, "delayed"))
        .query(&mut env.redis_conn())
        .unwrap();
    assert_eq!(left, 0, "the copy left the delayed set");
}

#[test]
fn a_late_outcome_of_the_attempt_that_died_does_not_undo_a_dead_retry() {
    let env = Env::new("reused-dead-retry");
    let (id, token) = dead_by_its_lease(&env);
    let moved = env.rt.block_on(env.queue.dead_retry(&[])).unwrap();
    assert_eq!(moved, vec![id.clone()]);
    // The stale worker comes back with its outcome: refused.
    for next in [Next::Dead, Next::Succeeded] {
        let applied = env
            .rt
            .block_on(env.queue.ack(&[outcome(&id, &token, next)]))
            .unwrap();
        assert_eq!(applied, vec![false]);
    }
    let record = env.record(&id);
    assert_eq!((record.status, record.attempts), (Some(Status::Queued), 0));
    let (total, _) = env.rt.block_on(env.queue.dead_list(10)).unwrap();
    assert_eq!(total, 0);
    // The retry stands: the next claim runs it, under a newer token.
    let again = claim(&env, "fresh");
    assert_eq!(again.len(), 1);
    assert!(again[0].1.parse::<u64>().unwrap() > token.parse::<u64>().unwrap());
}

#[test]
fn dead_letters_of_a_reused_id_neither_purge_nor_copy_the_live_job() {
    let env = Env::new("reused-dead-purge");
    let mut conn = env.redis_conn();
    let dead_ids: Vec<String> = (0..2)
        .map(|_| {
            let mut job = env.job("hello", "{}");
            job.max_attempts = 1;
            env.enqueue_job(job)
        })
        .collect();
    let dead: Vec<Outcome> = claim(&env, "a")
        .iter()
        .map(|(id, token)| outcome(id, token, Next::Dead))
        .collect();
    assert_eq!(dead.len(), 2);
    let applied = env.rt.block_on(env.queue.ack(&dead)).unwrap();
    assert_eq!(applied, vec![true, true]);
    // The client reuses both ids for new jobs, as docs/queue.md says: the
    // old record deleted first, in the same transaction.
    for id in &dead_ids {
        let job_key = key(&env, &format!("job:{id}"));
        let _: () = redis::pipe()
            .atomic()
            .del(&job_key)
            .hset_multiple(
                &job_key,
                &[("plugin", "hello"), ("payload", "{}"), ("status", "queued")],
            )
            .lpush(key(&env, "ready:normal"), id)
            .query(&mut conn)
            .unwrap();
    }
    let (total, _) = env.rt.block_on(env.queue.dead_list(10)).unwrap();
    assert_eq!(total, 2, "the old deaths are still listed");
    let moved = env
        .rt
        .block_on(env.queue.dead_retry(&dead_ids[..1]))
        .unwrap();
    assert_eq!(moved, Vec::<String>::new(), "no second copy of a live job");
    let purged = env
        .rt
        .block_on(env.queue.dead_purge(&dead_ids[1..]))
        .unwrap();
    assert_eq!(purged, 1, "the stale entry leaves the dead letters");
    let (total, _) = env.rt.block_on(env.queue.dead_list(10)).unwrap();
    assert_eq!(total, 0);
    let queued: u64 = redis::cmd("LLEN")
        .arg(key(&env, "ready:normal"))
        .query(&mut conn)
        .unwrap();
    assert_eq!(queued, 2, "each live job once in its list");
    for id in &dead_ids {
        assert_eq!(env.record(id).status, Some(Status::Queued), "{id}");
    }
}

#[test]
fn a_token_written_by_hand_beyond_two_to_the_53_is_not_handed_out_twice() {
    let env = Env::new("reused-huge-token");
    let id = env.enqueue("hello", "{}");
    let job_key = key(&env, &format!("job:{id}"));
    let _: () = redis::cmd("HSET")
        .arg(&job_key)
        .arg("token")
        .arg("99999999999999999999")
        .query(&mut env.redis_conn())
        .unwrap();
    let before = spool_runtime::ids::now_us();
    let jobs = claim(&env, "a");
    assert_eq!(jobs.len(), 1);
    let token: u64 = jobs[0].1.parse().unwrap_or_else(|_| {
        panic!("token {:?} is not an integer", jobs[0].1);
    });
    assert!(token >= before && token < 1 << 53, "token {token}");
}

#[test]
fn a_late_outcome_sent_again_after_a_lapse_is_applied_once() {
    let env = Env::new("reused-late-repeat");
    let (id, token) = dead_by_its_lease(&env);
    // The worker comes back with its outcome, and sends it again twice (its
    // replies lost): one done notice, one death.
    let mut late = outcome(&id, &token, Next::Dead);
    late.wait = true;
    for _ in 0..3 {
        let applied = env
            .rt
            .block_on(env.queue.ack(std::slice::from_ref(&late)))
            .unwrap();
        assert_eq!(applied, vec![true], "applied, or recognised as a repeat");
    }
    let notices: u64 = redis::cmd("LLEN")
        .arg(key(&env, &format!("done:{id}")))
        .query(&mut env.redis_conn())
        .unwrap();
    assert_eq!(notices, 1);
    let record = env.record(&id);
    assert_eq!(record.status, Some(Status::Dead));
    assert_eq!(
        record.output.as_deref(),
        Some("done"),
        "the worker's outcome"
    );
}

#[test]
fn an_outcome_after_its_workers_own_hand_back_still_wins_once() {
    // Shutdown past its grace: the worker hands back a job still running,
    // and then the job thread finishes within the last wait.
    let env = Env::new("reused-handback-late");
    let id = env.enqueue("hello", "{}");
    let jobs = claim(&env, "a");
    let back = Next::Requeue {
        delay: Duration::ZERO,
    };
    let mut late = outcome(&id, &jobs[0].1, Next::Succeeded);
    late.wait = true;
    let applied = env
        .rt
        .block_on(
            env.queue
                .ack(&[outcome(&id, &jobs[0].1, back), late.clone()]),
        )
        .unwrap();
    assert_eq!(applied, vec![true, true]);
    // Sent again (its reply lost): recognised, not applied twice.
    let again = env
        .rt
        .block_on(env.queue.ack(std::slice::from_ref(&late)))
        .unwrap();
    assert_eq!(again, vec![true]);
    let record = env.record(&id);
    assert_eq!(record.status, Some(Status::Succeeded));
    let mut conn = env.redis_conn();
    let (queued, notices): (u64, u64) = redis::pipe()
        .llen(key(&env, "ready:normal"))
        .llen(key(&env, &format!("done:{id}")))
        .query(&mut conn)
        .unwrap();
    assert_eq!((queued, notices), (0, 1), "not run again, one done notice");
}
