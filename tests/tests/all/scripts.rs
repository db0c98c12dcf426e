//! The queue's scripts against keys they did not write (issue 11): a key of
//! the wrong type, a minimal envelope, an id that is not text, a token that
//! went back with a Redis restore. Each script carries on with the other
//! jobs and leaves nothing half-applied.

use crate::queue::calls;
use spool_runtime::queue::{
    Field, Next, Outcome, Queue, QueueConfig, RecordUpdate, Status, TOTALS_EVERY,
};
use spool_tests::fleet::Env;
use std::time::Duration;

const LEASE: Duration = Duration::from_secs(30);

fn ready(env: &Env) -> String {
    format!("{}:ready:normal", env.tenant_keys("default"))
}

fn job_key(env: &Env, id: &str) -> String {
    format!("{}:job:{id}", env.tenant_keys("default"))
}

/// `next` for job `id` of tenant `default` under `token`, with output
/// `done`.
pub(crate) fn outcome(id: &str, token: &str, next: Next) -> Outcome {
    Outcome {
        tenant: "default".into(),
        id: id.to_string(),
        token: token.to_string(),
        wait: false,
        next,
        record: RecordUpdate {
            output: Field::Set(b"done".to_vec()),
            ..RecordUpdate::default()
        },
        seen: None,
        clock: None,
    }
}

/// A job that still runs under its worker's token but has no lease in
/// either key (its entry lost: a record written again by hand, a restore
/// a key of another type refused) gets its lease back from the next
/// heartbeat: left without one, it would never be reaped if its worker
/// died.
#[test]
fn a_heartbeat_gives_a_running_job_without_a_lease_its_lease_back() {
    let env = Env::new("scripts-heartbeat-lost");
    let id = env.enqueue("hello", "{}");
    let claim = env.rt.block_on(env.queue.claim("w", 1, LEASE)).unwrap();
    let job = &claim.jobs[0];
    let entry = format!("{id} {}", job.token);
    let leased = format!("{}:leased", env.tenant_keys("default"));
    let mut conn = env.redis_conn();
    let _: () = redis::cmd("ZREM")
        .arg(&leased)
        .arg(&entry)
        .query(&mut conn)
        .unwrap();
    let renewed = env
        .rt
        .block_on(env.queue.heartbeat(
            &[(job.tenant.clone(), id.clone(), job.token.clone())],
            LEASE,
        ))
        .unwrap();
    assert_eq!(renewed, vec![true]);
    let score: Option<u64> = redis::cmd("ZSCORE")
        .arg(&leased)
        .arg(&entry)
        .query(&mut conn)
        .unwrap();
    assert!(score.is_some(), "leased again");
}

#[test]
fn one_bad_key_fails_no_other_lease_renewal() {
    let env = Env::new("scripts-heartbeat");
    let (a, b) = (env.enqueue("hello", "{}"), env.enqueue("hello", "{}"));
    let claim = env.rt.block_on(env.queue.claim("w", 10, LEASE)).unwrap();
    let tokens: Vec<(String, String, String)> = claim
        .jobs
        .iter()
        .map(|j| (j.tenant.clone(), j.id.clone(), j.token.clone()))
        .collect();
    assert_eq!(tokens.len(), 2);
    // A client overwrites job a's record with a string.
    let _: () = redis::cmd("SET")
        .arg(job_key(&env, &a))
        .arg("oops")
        .query(&mut env.redis_conn())
        .unwrap();
    let renewed = env
        .rt
        .block_on(env.queue.heartbeat(&tokens, LEASE))
        .unwrap();
    let by_id: Vec<(String, bool)> = tokens
        .iter()
        .map(|(_, id, _)| id.clone())
        .zip(renewed)
        .collect();
    assert!(
        by_id.contains(&(a, false)) && by_id.contains(&(b, true)),
        "{by_id:?}"
    );
}

#[test]
fn dead_letters_that_are_not_hashes_neither_fail_retry_nor_the_cap() {
    let env = Env::new("scripts-dead");
    let config = QueueConfig {
        dead_cap: 2,
        ..env.queue_config()
    };
    let queue = env.rt.block_on(Queue::connect(config)).unwrap();
    // A string where a job hash should be: the claim parks it in the dead
    // letters.
    let mut conn = env.redis_conn();
    let _: () = redis::pipe()
        .set(job_key(&env, "stringy"), "oops")
        .lpush(ready(&env), "stringy")
        .query(&mut conn)
        .unwrap();
    let mut job = env.job("hello", "{}");
    job.max_attempts = 1;
    let real = env.rt.block_on(queue.enqueue(&job)).unwrap().id;
    let claim = env.rt.block_on(queue.claim("w", 10, LEASE)).unwrap();
    assert_eq!(claim.jobs.len(), 1, "only the real job is claimed");
    let token = claim.jobs[0].token.clone();
    let applied = env
        .rt
        .block_on(queue.ack(&[outcome(&real, &token, Next::Dead)]))
        .unwrap();
    assert_eq!(applied, vec![true]);
    let (total, _) = env.rt.block_on(queue.dead_list(10)).unwrap();
    assert_eq!(total, 2, "the parked id and the real dead job");
    // Retry everything: the real job goes back, the string stays.
    let moved = env.rt.block_on(queue.dead_retry(&[])).unwrap();
    assert_eq!(moved, vec![real.clone()]);
    let (total, entries) = env.rt.block_on(queue.dead_list(10)).unwrap();
    assert_eq!((total, entries[0].id.as_str()), (1, "stringy"));
    // Two more dead jobs push the parked one out past the cap of 2; its
    // string key is left alone, and nothing fails.
    for _ in 0..2 {
        let mut job = env.job("hello", "{}");
        job.max_attempts = 1;
        env.rt.block_on(queue.enqueue(&job)).unwrap();
    }
    let claim = env.rt.block_on(queue.claim("w", 10, LEASE)).unwrap();
    let dead: Vec<Outcome> = claim
        .jobs
        .iter()
        .map(|j| outcome(&j.id, &j.token, Next::Dead))
        .collect();
    assert_eq!(dead.len(), 3, "the retried job and the two new ones");
    let applied = env.rt.block_on(queue.ack(&dead)).unwrap();
    assert_eq!(applied, vec![true, true, true]);
    let (total, entries) = env.rt.block_on(queue.dead_list(10)).unwrap();
    assert_eq!(total, 2);
    assert!(entries.iter().all(|e| e.id != "stringy"), "{entries:?}");
    let kept: String = redis::cmd("GET")
        .arg(job_key(&env, "stringy"))
        .query(&mut conn)
        .unwrap();
    assert_eq!(kept, "oops");
}

#[test]
fn a_minimal_delayed_envelope_without_status_runs_when_due() {
    let env = Env::new("scripts-minimal-delayed");
    let mut conn = env.redis_conn();
    let _: () = redis::pipe()
        .atomic()
        .hset_multiple(
            job_key(&env, "minimal"),
            &[("plugin", "hello"), ("payload", "{}")],
        )
        .zadd(
            format!("{}:delayed", env.tenant_keys("default")),
            "minimal",
            0,
        )
        .query(&mut conn)
        .unwrap();
    env.announce_plain("default", Some(1));
    let claim = env.rt.block_on(env.queue.claim("w", 10, LEASE)).unwrap();
    let ids: Vec<&str> = claim.jobs.iter().map(|j| j.id.as_str()).collect();
    assert_eq!(ids, vec!["minimal"]);
}

#[test]
fn an_id_that_is_not_utf8_is_dead_lettered_at_claim_and_never_run() {
    let env = Env::new("scripts-bytes-id");
    let mut conn = env.redis_conn();
    // The claim checks a batch of ids at once while all are letters and
    // digits (claim.lua, `ascii`): a byte past 0x7f after letters and
    // digits only, and one behind a NUL byte (where that check stops
    // reading), must still be found.
    let bad: [&[u8]; 3] = [b"bad-\xff\xfe", b"01K9ZX\xff\xfe", b"01K9ZX\x00\xff"];
    let key = |id: &[u8]| {
        let mut key = format!("{}:job:", env.tenant_keys("default")).into_bytes();
        key.extend_from_slice(id);
        key
    };
    // Each in a claim of its own, beside a good id (a ULID).
    for id in bad {
        let good = env.enqueue("hello", "{}");
        let _: () = redis::pipe()
            .hset_multiple(key(id), &[("plugin", "hello"), ("payload", "{}")])
            .lpush(ready(&env), id)
            .query(&mut conn)
            .unwrap();
        let claim = env.rt.block_on(env.queue.claim("w", 10, LEASE)).unwrap();
        let ids: Vec<&str> = claim.jobs.iter().map(|j| j.id.as_str()).collect();
        assert_eq!(
            ids,
            vec![good.as_str()],
            "the bad id {id:?} is not handed to the worker"
        );
    }
    for id in bad {
        let (status, error): (String, String) = redis::cmd("HMGET")
            .arg(key(id))
            .arg("status")
            .arg("error")
            .query(&mut conn)
            .unwrap();
        assert_eq!(status, "dead", "{id:?}");
        assert!(
            error.contains("malformed-envelope") && error.contains("not UTF-8"),
            "{id:?}: {error}"
        );
    }
    let mut dead: Vec<Vec<u8>> = redis::cmd("ZRANGE")
        .arg(format!("{}:dead", env.tenant_keys("default")))
        .arg(0)
        .arg(-1)
        .query(&mut conn)
        .unwrap();
    dead.sort();
    let mut want: Vec<Vec<u8>> = bad.iter().map(|id| id.to_vec()).collect();
    want.sort();
    assert_eq!(dead, want);
    // The operator's dead-letter commands still work: the ids are listed
    // (lossily), and a retry of everything leaves them where they are.
    let mut job = env.job("hello", "{}");
    job.max_attempts = 1;
    let real = env.enqueue_job(job);
    let claim = env.rt.block_on(env.queue.claim("w", 10, LEASE)).unwrap();
    let token = claim
        .jobs
        .iter()
        .find(|j| j.id == real)
        .unwrap()
        .token
        .clone();
    let applied = env
        .rt
        .block_on(env.queue.ack(&[outcome(&real, &token, Next::Dead)]))
        .unwrap();
    assert_eq!(applied, vec![true]);
    let (total, entries) = env.rt.block_on(env.queue.dead_list(10)).unwrap();
    assert_eq!(total, 4);
    assert!(
        entries.iter().any(|e| e.id == "bad-\u{fffd}\u{fffd}"),
        "{entries:?}"
    );
    let moved = env.rt.block_on(env.queue.dead_retry(&[])).unwrap();
    assert_eq!(moved, vec![real]);
    assert_eq!(env.rt.block_on(env.queue.dead_list(10)).unwrap().0, 3);
}

#[test]
fn a_wedged_ack_applies_once_and_never_to_a_finished_job() {
    let env = Env::new("scripts-wedged");
    let backoff = Next::Wedged {
        backoff: Duration::from_secs(60),
    };
    let id = env.enqueue("hello", "{}");
    let claim = env.rt.block_on(env.queue.claim("w", 1, LEASE)).unwrap();
    let token = claim.jobs[0].token.clone();
    let wedged = outcome(&id, &token, backoff);
    let applied = env
        .rt
        .block_on(env.queue.ack(std::slice::from_ref(&wedged)))
        .unwrap();
    assert_eq!(applied, vec![true]);
    let expiries = || -> Option<String> {
        redis::cmd("HGET")
            .arg(job_key(&env, &id))
            .arg("lease_expiries")
            .query(&mut env.redis_conn())
            .unwrap()
    };
    let record = env.record(&id);
    assert_eq!(record.status, Some(Status::Delayed));
    assert_eq!(record.error.as_ref().unwrap()["kind"], "wedged");
    assert_eq!(expiries().as_deref(), Some("1"));
    // Sent again (its reply was lost): not counted twice.
    env.rt
        .block_on(env.queue.ack(std::slice::from_ref(&wedged)))
        .unwrap();
    assert_eq!(expiries().as_deref(), Some("1"));
    assert_eq!(env.record(&id).status, Some(Status::Delayed));

    // The thread came back and its real outcome went first: the watchdog's
    // late `wedged` changes nothing.
    let other = env.enqueue("hello", "{}");
    let claim = env.rt.block_on(env.queue.claim("w", 1, LEASE)).unwrap();
    let token = claim.jobs[0].token.clone();
    let mut dead = outcome(&other, &token, Next::Dead);
    dead.record.error = Field::Set(spool_runtime::queue::ErrorRecord::new(
        "fatal", "real", false,
    ));
    env.rt
        .block_on(env.queue.ack(&[dead, outcome(&other, &token, backoff)]))
        .unwrap();
    let record = env.record(&other);
    assert_eq!(record.status, Some(Status::Dead));
    assert_eq!(
        record.error.as_ref().unwrap()["kind"],
        "fatal",
        "{record:?}"
    );
}

#[test]
fn an_idempotency_key_of_the_wrong_type_fails_no_batch() {
    let env = Env::new("scripts-idem-type");
    let _: () = redis::cmd("HSET")
        .arg("spool:{default/default}:idem:k")
        .arg("f")
        .arg("v")
        .query(&mut env.redis_conn())
        .unwrap();
    let first = env.job("hello", "{}");
    let mut second = env.job("hello", "{}");
    second.idempotency_key = Some("k".into());
    let done = env
        .rt
        .block_on(env.queue.enqueue_many(&[first, second]))
        .unwrap();
    assert!(done.iter().all(|e| e.created), "{done:?}");
    let named: String = redis::cmd("GET")
        .arg("spool:{default/default}:idem:k")
        .query(&mut env.redis_conn())
        .unwrap();
    assert_eq!(named, done[1].id);
}

#[test]
fn fencing_tokens_stay_unique_when_redis_goes_back_in_time() {
    let env = Env::new("scripts-fencing");
    let id = env.enqueue("hello", "{}");
    let first = env
        .rt
        .block_on(env.queue.claim("zombie", 1, LEASE))
        .unwrap();
    let zombie = first.jobs[0].token.clone();
    // Redis restarts from an older AOF: the job is queued again with the
    // counter it had before that claim.
    let _: () = redis::pipe()
        .hset_multiple(
            job_key(&env, &id),
            &[("status", "queued"), ("token", "0"), ("attempt", "0")],
        )
        .zrem(
            format!("{}:leased", env.tenant_keys("default")),
            format!("{id} {zombie}"),
        )
        .lpush(ready(&env), &id)
        .query(&mut env.redis_conn())
        .unwrap();
    env.announce_plain("default", None);
    let second = env.rt.block_on(env.queue.claim("fresh", 1, LEASE)).unwrap();
    let fresh = second.jobs[0].token.clone();
    assert_ne!(fresh, zombie, "a token handed out before the restore");
    assert!(fresh.parse::<u64>().unwrap() > zombie.parse::<u64>().unwrap());
    let applied = env
        .rt
        .block_on(env.queue.ack(&[outcome(&id, &zombie, Next::Succeeded)]))
        .unwrap();
    assert_eq!(applied, vec![false], "the zombie's ack is refused");
    assert_eq!(env.record(&id).status, Some(Status::Running));
}

/// An ack refused part-way (a done notice's key of another type, written
/// by hand) gives the jobs after the one that failed their leases back,
/// as long as the worker's: their worker acks them again, and a worker
/// killed meanwhile loses none of them (the lease lapses and the job runs
/// again). Only those whose attempt still holds them: not a job applied
/// before the failure, not the failed one (it wrote its outcome), and no
/// entry for a stale ack's token. So whether every entry was there (the
/// fence held) or not (a stale ack in the call).
#[test]
fn an_ack_refused_part_way_leaves_the_jobs_after_it_leased() {
    let env = Env::new("scripts-ack-part-way");
    let keys = env.tenant_keys("default");
    let mut conn = env.redis_conn();
    let ids: Vec<String> = (0..7).map(|_| env.enqueue("hello", "{}")).collect();
    let claim = env.rt.block_on(env.queue.claim("w", 10, LEASE)).unwrap();
    let job = |k: usize| claim.jobs.iter().find(|j| j.id == ids[k]).unwrap();
    let lease = |conn: &mut spool_runtime::redis::SyncConn, k: usize, token: &str| -> Option<u64> {
        redis::cmd("ZSCORE")
            .arg(format!("{keys}:leased"))
            .arg(format!("{} {token}", ids[k]))
            .query(conn)
            .unwrap()
    };
    // [a stale ack (no entry: the fence does not hold), a success, one
    // that fails, a success]; then [a success, one that fails, a success]
    // (every entry there).
    let mut stale = job(0).outcome(Next::Succeeded);
    stale.token = "1".into();
    for (batch, first) in [(vec![Some(stale), None], 1), (vec![None], 4)] {
        let (applied, failing, after) = (first, first + 1, first + 2);
        let _: () = redis::cmd("SET")
            .arg(format!("{keys}:done:{}", ids[failing]))
            .arg("oops")
            .query(&mut conn)
            .unwrap();
        let mut fails = job(failing).outcome(Next::Succeeded);
        fails.wait = true;
        let mut outcomes: Vec<Outcome> = batch.into_iter().flatten().collect();
        outcomes.extend([
            job(applied).outcome(Next::Succeeded),
            fails,
            job(after).outcome(Next::Succeeded),
        ]);
        let refused = env.rt.block_on(env.queue.ack(&outcomes));
        assert!(refused.is_err(), "{refused:?}");
        let now: (u64, u64) = redis::cmd("TIME").query(&mut conn).unwrap();
        let now = now.0 * 1_000_000 + now.1;
        let back = lease(&mut conn, after, &job(after).token).expect("leased again");
        assert!(
            back > now + 20_000_000,
            "for the worker's lease: {back} {now}"
        );
        assert_eq!(env.record(&ids[after]).status, Some(Status::Running));
        assert_eq!(lease(&mut conn, applied, &job(applied).token), None);
        assert_eq!(env.record(&ids[applied]).status, Some(Status::Succeeded));
        assert_eq!(lease(&mut conn, failing, &job(failing).token), None);
        assert_eq!(env.record(&ids[failing]).status, Some(Status::Succeeded));
        let applied = env
            .rt
            .block_on(env.queue.ack(&[job(after).outcome(Next::Succeeded)]))
            .unwrap();
        assert_eq!(applied, vec![true], "acked again, alone");
        assert_eq!(env.record(&ids[after]).status, Some(Status::Succeeded));
    }
    assert_eq!(lease(&mut conn, 0, "1"), None, "no entry for a stale token");
    assert!(
        lease(&mut conn, 0, &job(0).token).is_some(),
        "job 0 still runs"
    );
    let old: u64 = redis::cmd("EXISTS")
        .arg(format!("{keys}:leases"))
        .query(&mut conn)
        .unwrap();
    assert_eq!(old, 0, "nothing leased the way of the version before");
}

/// A client that reuses the id of a running job for a new one (plain
/// commands: a new record over the old, the id pushed again): once the
/// new job is claimed, a late ack of the first attempt is refused (its
/// lease entry, which the ack's fence looks for, went with that claim),
/// and the new attempt's applies.
#[test]
fn a_late_ack_of_an_id_reused_while_it_ran_is_refused() {
    let env = Env::new("scripts-reused-id");
    let id = env.enqueue("hello", "{}");
    let first = env.rt.block_on(env.queue.claim("old", 1, LEASE)).unwrap();
    env.enqueue_plain(
        "default",
        &id,
        "normal",
        &[
            ("plugin", b"default/hello"),
            ("payload", b"{}"),
            ("status", b"queued"),
        ],
    );
    let second = env.rt.block_on(env.queue.claim("new", 1, LEASE)).unwrap();
    let (old, new) = (&first.jobs[0], &second.jobs[0]);
    assert_ne!(new.token, old.token);
    // (Each as its worker sends it: a plain success, which the fence
    // alone lets through when it finds the attempt's entry.)
    let applied = env
        .rt
        .block_on(env.queue.ack(&[old.outcome(Next::Succeeded)]))
        .unwrap();
    assert_eq!(applied, vec![false], "the first attempt's ack is refused");
    let record = env.record(&id);
    assert_eq!(
        (record.status, record.worker.as_deref()),
        (Some(Status::Running), Some("new"))
    );
    let applied = env
        .rt
        .block_on(env.queue.ack(&[new.outcome(Next::Succeeded)]))
        .unwrap();
    assert_eq!(applied, vec![true]);
    assert_eq!(env.record(&id).status, Some(Status::Succeeded));
}

#[test]
fn a_hand_back_after_a_lapsed_lease_gives_the_attempt_back_once() {
    let env = Env::new("scripts-requeue-lapsed");
    let id = env.enqueue("hello", "{}");
    let brief = Duration::from_millis(1);
    let lapse = |worker: &str| {
        let claim = env.rt.block_on(env.queue.claim(worker, 1, brief)).unwrap();
        std::thread::sleep(Duration::from_millis(5));
        // The next claim finds the lease expired (backoff 0: due at once).
        let reaper = env
            .queue
            .claim_backing_off("reaper", 0, LEASE, Duration::ZERO);
        env.rt.block_on(reaper).unwrap();
        claim.jobs[0].token.clone()
    };
    let _ = lapse("w1");
    let _: () = redis::cmd("ZADD")
        .arg(format!("{}:delayed", env.tenant_keys("default")))
        .arg(0)
        .arg(&id)
        .query(&mut env.redis_conn())
        .unwrap();
    let token = lapse("w2");
    let field = |name: &str| -> Option<String> {
        redis::cmd("HGET")
            .arg(job_key(&env, &id))
            .arg(name)
            .query(&mut env.redis_conn())
            .unwrap()
    };
    assert_eq!(
        (field("attempt"), field("lease_expiries")),
        (Some("2".into()), Some("2".into()))
    );
    // Worker w2 never ran it (Redis was away longer than its lease): its
    // hand-back still applies, and gives back the attempt and the lapse.
    let back = outcome(
        &id,
        &token,
        Next::Requeue {
            delay: Duration::ZERO,
        },
    );
    let applied = env
        .rt
        .block_on(env.queue.ack(std::slice::from_ref(&back)))
        .unwrap();
    assert_eq!(applied, vec![true]);
    assert_eq!(env.record(&id).status, Some(Status::Queued));
    assert_eq!(
        (field("attempt"), field("lease_expiries")),
        (Some("1".into()), Some("1".into()))
    );
    // Sent again after a lost reply: nothing more is given back.
    let applied = env.rt.block_on(env.queue.ack(&[back])).unwrap();
    assert_eq!(applied, vec![true]);
    assert_eq!(
        (field("attempt"), field("lease_expiries")),
        (Some("1".into()), Some("1".into()))
    );
}

/// A job that holds its group's slot while it waits to run again (here a
/// hand-back with a delay), pushed by hand into another group's list too,
/// is skipped there: it takes no slot in the second group, and once it
/// succeeds its own group runs its next job.
#[test]
fn a_copy_pushed_into_a_second_group_takes_no_slot_there() {
    let env = Env::new("scripts-group-copy");
    let keys = env.tenant_keys("default");
    let mut job = env.job("hello", "{}");
    job.group = Some("g1".into());
    let id = env.enqueue_job(job);
    let claim = env.rt.block_on(env.queue.claim("w", 10, LEASE)).unwrap();
    let token = claim.jobs[0].token.clone();
    let back = outcome(
        &id,
        &token,
        Next::Requeue {
            delay: Duration::from_millis(300),
        },
    );
    let applied = env.rt.block_on(env.queue.ack(&[back])).unwrap();
    assert_eq!(applied, vec![true]);
    let mut conn = env.redis_conn();
    // The copy, as a client writing plain commands would push it.
    let _: () = redis::pipe()
        .cmd("RPUSH")
        .arg(format!("{keys}:group:g2"))
        .arg(&id)
        .cmd("ZADD")
        .arg(format!("{keys}:groups"))
        .arg(0)
        .arg("g2")
        .cmd("ZADD")
        .arg(format!("{keys}:gall"))
        .arg(0)
        .arg("g2")
        .query(&mut conn)
        .unwrap();
    // A job of no group puts the tenant in the ready set: the claim
    // visits it, and takes that job, not the copy.
    let other = env.enqueue("hello", "{}");
    let claim = env.rt.block_on(env.queue.claim("w", 10, LEASE)).unwrap();
    let ids: Vec<String> = claim.jobs.iter().map(|j| j.id.clone()).collect();
    assert_eq!(ids, vec![other], "the copy was claimed");
    let held = |g: &str, conn: &mut spool_runtime::redis::SyncConn| -> Vec<String> {
        redis::cmd("SMEMBERS")
            .arg(format!("{keys}:held:{g}"))
            .query(conn)
            .unwrap()
    };
    assert_eq!(held("g2", &mut conn), Vec::<String>::new());
    assert_eq!(held("g1", &mut conn), vec![id.clone()]);
    // Due again, it runs from its ready list and frees g1's slot.
    std::thread::sleep(Duration::from_millis(400));
    let claim = env.rt.block_on(env.queue.claim("w", 10, LEASE)).unwrap();
    let job = claim
        .jobs
        .iter()
        .find(|j| j.id == id)
        .expect("claimed when due");
    let applied = env
        .rt
        .block_on(env.queue.ack(&[job.outcome(Next::Succeeded)]))
        .unwrap();
    assert_eq!(applied, vec![true]);
    assert_eq!(held("g1", &mut conn), Vec::<String>::new());
    let mut next = env.job("hello", "{}");
    next.group = Some("g1".into());
    let next = env.enqueue_job(next);
    let claim = env.rt.block_on(env.queue.claim("w", 10, LEASE)).unwrap();
    assert_eq!(
        claim.jobs.iter().map(|j| j.id.clone()).collect::<Vec<_>>(),
        vec![next]
    );
}

/// A group at its cap whose slot went to an id that cannot run (its
/// record key holds a string, written by hand) gets the slot back and
/// stays in the rotation: its next job runs.
#[test]
fn a_group_slot_taken_by_a_broken_id_comes_back() {
    let env = Env::new("scripts-group-broken");
    let mut broken = env.job("hello", "{}");
    broken.group = Some("g".into());
    let broken = env.enqueue_job(broken);
    let mut next = env.job("hello", "{}");
    next.group = Some("g".into());
    let next = env.enqueue_job(next);
    let _: () = redis::cmd("SET")
        .arg(job_key(&env, &broken))
        .arg("not a hash")
        .query(&mut env.redis_conn())
        .unwrap();
    let first = env.rt.block_on(env.queue.claim("w", 10, LEASE)).unwrap();
    assert!(first.jobs.is_empty(), "{:?}", first.jobs);
    let second = env.rt.block_on(env.queue.claim("w", 10, LEASE)).unwrap();
    let ids: Vec<String> = second.jobs.iter().map(|j| j.id.clone()).collect();
    assert_eq!(ids, vec![next]);
}

/// Enqueue one job, claim it, ack it as succeeded; its record's status.
fn run_one(env: &Env, queue: &Queue) -> Option<Status> {
    let id = run_id(env, queue, Next::Succeeded);
    env.rt.block_on(queue.record(&id)).unwrap().status
}

/// Enqueue one job, claim it, ack it with `next`; its id.
fn run_id(env: &Env, queue: &Queue, next: Next) -> String {
    run_job(env, queue, &env.job("hello", "{}"), next)
}

/// Enqueue `job`, claim it, ack it with `next`; its id.
fn run_job(env: &Env, queue: &Queue, job: &spool_runtime::queue::NewJob, next: Next) -> String {
    let id = env.rt.block_on(queue.enqueue(job)).unwrap().id;
    let claim = env.rt.block_on(queue.claim("w", 10, LEASE)).unwrap();
    let job = claim.jobs.iter().find(|j| j.id == id).expect("claimed");
    // As a worker acks: from the claimed job (whether a client waits, and
    // whether the ack must look for a group or an idempotency key).
    let mut done = job.outcome(next);
    done.record.output = Field::Set(b"done".to_vec());
    let applied = env.rt.block_on(queue.ack(&[done])).unwrap();
    assert_eq!(applied, vec![true]);
    id
}

fn libraries(env: &Env) -> Vec<redis::Value> {
    redis::cmd("FUNCTION")
        .arg("LIST")
        .query(&mut env.redis_conn())
        .unwrap()
}

#[test]
fn a_flushed_function_library_is_loaded_again_and_no_call_is_lost() {
    let env = Env::new("scripts-function-flush");
    assert_eq!(run_one(&env, &env.queue), Some(Status::Succeeded));
    assert_eq!(libraries(&env).len(), 1, "the queue's library is loaded");
    // An operator flushes functions and scripts (or Redis restarted
    // without persistence): the next calls load the library again.
    let _: () = redis::cmd("FUNCTION")
        .arg("FLUSH")
        .query(&mut env.redis_conn())
        .unwrap();
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query(&mut env.redis_conn())
        .unwrap();
    assert!(libraries(&env).is_empty());
    assert_eq!(run_one(&env, &env.queue), Some(Status::Succeeded));
    assert_eq!(libraries(&env).len(), 1);
}

#[test]
fn a_redis_that_refuses_functions_runs_the_scripts_with_evalsha() {
    let env = Env::new("scripts-no-functions");
    // Users that may do everything but load functions, or but call them:
    // as on Redis 6.2 (no FCALL at all) or behind a provider's ACL.
    for (user, denied) in [("noload", "-function"), ("nocall", "-fcall")] {
        let _: () = redis::cmd("ACL")
            .arg(&["SETUSER", user, "on", ">pw", "~*", "&*", "+@all", denied])
            .query(&mut env.redis_conn())
            .unwrap();
        let url = env
            .redis
            .url()
            .replacen("redis://", &format!("redis://{user}:pw@"), 1);
        let queue = env
            .rt
            .block_on(Queue::connect(QueueConfig::new(url)))
            .unwrap();
        for _ in 0..2 {
            assert_eq!(run_one(&env, &queue), Some(Status::Succeeded), "{user}");
        }
        assert!(libraries(&env).is_empty(), "{user}: no library was loaded");
    }
}

#[test]
fn stats_and_purges_still_run_when_redis_is_out_of_memory() {
    let env = Env::new("scripts-oom");
    let id = env.enqueue("hello", "{}");
    let claim = env.rt.block_on(env.queue.claim("w", 10, LEASE)).unwrap();
    let token = claim.jobs[0].token.clone();
    env.rt
        .block_on(env.queue.ack(&[outcome(&id, &token, Next::Dead)]))
        .unwrap();
    let mut conn = env.redis_conn();
    let _: () = redis::cmd("CONFIG")
        .arg(&["SET", "maxmemory-policy", "noeviction"])
        .query(&mut conn)
        .unwrap();
    let _: () = redis::cmd("CONFIG")
        .arg(&["SET", "maxmemory", "1"])
        .query(&mut conn)
        .unwrap();
    // Writes are refused, as Redis says…
    let refused = env.rt.block_on(env.queue.enqueue(&env.job("hello", "{}")));
    assert!(refused.is_err(), "{refused:?}");
    // …but an operator can still look, and free memory.
    let states = env.rt.block_on(env.queue.all_tenant_states()).unwrap();
    assert_eq!(states.iter().map(|s| s.dead_letters).sum::<u64>(), 1);
    let purged = env.rt.block_on(env.queue.dead_purge(&[])).unwrap();
    assert_eq!(purged, 1);
    let _: () = redis::cmd("CONFIG")
        .arg(&["SET", "maxmemory", "0"])
        .query(&mut conn)
        .unwrap();
}

/// A queue handle of `env` that keeps `keep` succeeded records per tenant
/// for `record_ttl`, as a worker with those settings acks.
fn keeping(env: &Env, keep: u64, record_ttl: Duration) -> Queue {
    env.rt
        .block_on(Queue::connect(QueueConfig {
            keep_succeeded: Some(keep),
            record_ttl,
            ..env.queue_config()
        }))
        .unwrap()
}

#[test]
fn only_the_newest_succeeded_records_are_kept_per_tenant() {
    let env = Env::new("scripts-keep-succeeded");
    let queue = keeping(&env, 5, env.queue_config().record_ttl);
    let dead = run_id(&env, &queue, Next::Dead);
    // A client reuses a succeeded job's id for a new job (plain commands).
    let reused = run_id(&env, &queue, Next::Succeeded);
    let _: () = redis::cmd("HSET")
        .arg(job_key(&env, &reused))
        .arg(&["status", "queued"])
        .query(&mut env.redis_conn())
        .unwrap();
    // Records someone may come back for are outside the cap: a job a
    // client waits for, one under an idempotency key.
    let mut waited = env.job("hello", "{}");
    waited.wait = true;
    let waited = run_job(&env, &queue, &waited, Next::Succeeded);
    let mut keyed = env.job("hello", "{}");
    keyed.idempotency_key = Some("once".into());
    // Retried first: its second claim sends a marked record's envelope,
    // which must still tell the ack that the job has a key.
    let retry = Next::Retry {
        delay: std::time::Duration::ZERO,
    };
    let keyed_id = run_job(&env, &queue, &keyed, retry);
    let again = env.rt.block_on(queue.claim("w", 10, LEASE)).unwrap();
    let job = again
        .jobs
        .iter()
        .find(|j| j.id == keyed_id)
        .expect("claimed again");
    assert!(!job.fresh, "a retried job's record is marked");
    let applied = env.rt.block_on(queue.ack(&[job.outcome(Next::Succeeded)]));
    assert_eq!(applied.unwrap(), vec![true]);
    let ids: Vec<String> = (0..11)
        .map(|_| run_id(&env, &queue, Next::Succeeded))
        .collect();
    let status = |id: &str| match env.rt.block_on(queue.record(id)) {
        Ok(record) => record.status,
        Err(spool_runtime::queue::QueueError::NotFound { .. }) => None,
        Err(e) => panic!("{e}"),
    };
    for id in &ids[..6] {
        assert_eq!(status(id), None, "an old success is deleted");
    }
    for id in &ids[6..] {
        assert_eq!(status(id), Some(Status::Succeeded), "the newest five stay");
    }
    for (id, kept, why) in [
        (&reused, Status::Queued, "the reused id's new job stays"),
        (&dead, Status::Dead, "dead letters have their own cap"),
        (&waited, Status::Succeeded, "a waited-for job stays"),
        (&keyed_id, Status::Succeeded, "a keyed job stays"),
    ] {
        assert_eq!(status(id), Some(kept), "{why}");
    }
    let again = env.rt.block_on(queue.enqueue(&keyed)).unwrap();
    assert_eq!(
        (again.id.as_str(), again.created),
        (keyed_id.as_str(), false)
    );
    let kept: u64 = redis::cmd("LLEN")
        .arg(format!("{}:recent", env.tenant_keys("default")))
        .query(&mut env.redis_conn())
        .unwrap();
    assert_eq!(kept, 5);
    // Every success counted once, those trimmed from the list too.
    let stats = env.rt.block_on(queue.stats()).unwrap();
    assert_eq!((stats.succeeded_total, stats.dead_total), (14, 1));
}

/// Past its cap a tenant's kept list grows by a tenth of it, then one
/// trim takes it back to the cap and deletes the records trimmed. The
/// trim reads their status in one `SORT … GET` (a command per trim, not a
/// `HGET` per record); where the pattern cannot name the records (a
/// prefix with a `*`) it reads them one by one, to the same end.
#[test]
fn past_its_cap_a_kept_list_is_trimmed_a_tenth_at_a_time() {
    let env = Env::new("scripts-keep-batches");
    let queue = keeping(&env, 30, env.queue_config().record_ttl);
    let mut conn = env.redis_conn();
    let (sorts, reads) = (calls(&mut conn, "sort"), calls(&mut conn, "hget"));
    trims_a_tenth_at_a_time(&env, &queue);
    assert_eq!(calls(&mut conn, "sort") - sorts, 3, "a SORT per trim");
    assert_eq!(calls(&mut conn, "hget"), reads, "no read per record");
    let starred = env
        .rt
        .block_on(Queue::connect(QueueConfig {
            prefix: "sp*ol".into(),
            ..queue.config().clone()
        }))
        .unwrap();
    let reads = calls(&mut conn, "hget");
    trims_a_tenth_at_a_time(&env, &starred);
    assert_eq!(calls(&mut conn, "hget") - reads, 3 * 3, "a read per record");
}

/// 40 successes through `queue` (a cap of 30): the kept list's length
/// after each, and which records are left.
fn trims_a_tenth_at_a_time(env: &Env, queue: &Queue) {
    let tenant = queue.tenant_keys("default");
    let list = format!("{tenant}:recent");
    let key = |id: &str| format!("{tenant}:job:{id}");
    // (`HMGET`: the caller counts the trims' `HGET`s.)
    let counted = |conn: &mut spool_runtime::redis::SyncConn| -> u64 {
        let (n,): (Option<u64>,) = redis::cmd("HMGET")
            .arg(format!("{tenant}:stats"))
            .arg("succeeded")
            .query(conn)
            .unwrap();
        n.unwrap_or(0)
    };
    let before = counted(&mut env.redis_conn());
    let (mut ids, mut lengths) = (Vec::new(), Vec::new());
    for _ in 0..40 {
        ids.push(run_id(env, queue, Next::Succeeded));
        let (length, ttl, newest): (usize, i64, i64) = redis::pipe()
            .cmd("LLEN")
            .arg(&list)
            .cmd("PTTL")
            .arg(&list)
            .cmd("PTTL")
            .arg(key(ids.last().unwrap()))
            .query(&mut env.redis_conn())
            .unwrap();
        // It expires, but not before the records it lists.
        assert!(
            ttl >= newest && newest > 0,
            "list {ttl} ms, newest record {newest} ms"
        );
        lengths.push(length);
        // The list counts what it holds; the counter, what trims took:
        // together every success, once.
        let counter = counted(&mut env.redis_conn()) - before;
        assert_eq!(counter + length as u64, ids.len() as u64, "{list}");
        let total = env.rt.block_on(queue.stats()).unwrap().succeeded_total;
        assert_eq!(total, before + ids.len() as u64);
    }
    // Up to the cap every success is listed; past it the list grows by a
    // tenth of the cap (3) before one trim takes it back to 30.
    let expected: Vec<usize> = (1..=30)
        .chain([31, 32, 30, 31, 32, 30, 31, 32, 30, 31])
        .collect();
    assert_eq!(lengths, expected, "{list}");
    // The listed are the newest, and theirs are the only records left.
    let listed: Vec<String> = redis::cmd("LRANGE")
        .arg(&list)
        .arg(0)
        .arg(-1)
        .query(&mut env.redis_conn())
        .unwrap();
    let newest: Vec<String> = ids.iter().rev().take(31).cloned().collect();
    assert_eq!(listed, newest);
    for (n, id) in ids.iter().enumerate() {
        let there: bool = redis::cmd("EXISTS")
            .arg(key(id))
            .query(&mut env.redis_conn())
            .unwrap();
        assert_eq!(there, newest.contains(id), "job {n} of 40 ({list})");
    }
}

/// A tenant's kept list lives as long as the records it lists, whatever
/// each worker's `--record-ttl`: a worker's acks raise its expiry (once a
/// minute per tenant; the first ack of a new worker does), and never
/// lower it below what a worker with a longer TTL set.
#[test]
fn a_kept_lists_expiry_is_raised_by_each_worker_and_never_lowered() {
    let env = Env::new("scripts-keep-expiry");
    let worker = |ttl: u64| keeping(&env, 30, Duration::from_secs(ttl));
    let list = format!("{}:recent", env.tenant_keys("default"));
    let pttl = || -> i64 {
        redis::cmd("PTTL")
            .arg(&list)
            .query(&mut env.redis_conn())
            .unwrap()
    };
    let hour = worker(3600);
    run_id(&env, &hour, Next::Succeeded);
    assert!(pttl() >= 3_600_000, "{}", pttl());
    // A worker keeping records a minute does not cut the hour short.
    let minute = worker(60);
    run_id(&env, &minute, Next::Succeeded);
    assert!(pttl() >= 3_590_000, "{}", pttl());
    // The list's expiry fell short (by hand): a worker's first ack raises
    // it, though its push neither makes nor trims the list.
    let _: () = redis::cmd("PEXPIRE")
        .arg(&list)
        .arg(5_000)
        .query(&mut env.redis_conn())
        .unwrap();
    let id = run_id(&env, &worker(3600), Next::Succeeded);
    let record: i64 = redis::cmd("PTTL")
        .arg(job_key(&env, &id))
        .query(&mut env.redis_conn())
        .unwrap();
    assert!(pttl() > record, "list {} ms, record {record} ms", pttl());
    // A trim by a worker keeping records a minute (and one record) raises
    // it no less: it is not lowered either.
    let trimmer = keeping(&env, 1, Duration::from_secs(60));
    run_id(&env, &trimmer, Next::Succeeded);
    assert!(pttl() > record - 60_000, "{}", pttl());
    // A list left without an expiry (by hand) gets one at a refresh.
    let _: () = redis::cmd("PERSIST")
        .arg(&list)
        .query(&mut env.redis_conn())
        .unwrap();
    run_id(&env, &worker(3600), Next::Succeeded);
    assert!(pttl() > 3_590_000, "{}", pttl());
}

/// Under a count cap a success is listed in `T:recent` and the ack
/// adds nothing to the tenant's counter (a command fewer per job): the
/// list counts it. One a client waits for is not listed, and is counted
/// at once. A quiet tenant's list is folded into the counter a day after
/// its records expired (one worker an hour), well before the list
/// expires; a list further from its expiry is left as it is. A list key
/// of another type (written by hand) loses no count. The tenant's total
/// is the same throughout.
#[test]
fn a_listed_success_is_counted_by_its_list_until_a_worker_folds_it() {
    let env = Env::new("scripts-keep-fold");
    let queue = keeping(&env, 10, env.queue_config().record_ttl);
    let tenant = env.tenant_keys("default");
    let list = format!("{tenant}:recent");
    let mut conn = env.redis_conn();
    let counter = |conn: &mut spool_runtime::redis::SyncConn| -> Option<u64> {
        redis::cmd("HGET")
            .arg(format!("{tenant}:stats"))
            .arg("succeeded")
            .query(conn)
            .unwrap()
    };
    let listed = |conn: &mut spool_runtime::redis::SyncConn| -> u64 {
        redis::cmd("LLEN").arg(&list).query(conn).unwrap()
    };
    let total = || env.rt.block_on(queue.stats()).unwrap().succeeded_total;
    for _ in 0..3 {
        run_id(&env, &queue, Next::Succeeded);
    }
    assert_eq!((counter(&mut conn), listed(&mut conn)), (None, 3));
    let mut waited = env.job("hello", "{}");
    waited.wait = true;
    run_job(&env, &queue, &waited, Next::Succeeded);
    assert_eq!((counter(&mut conn), listed(&mut conn)), (Some(1), 3));
    assert_eq!(total(), 4);
    let fold_lock = format!("{}:fold", env.queue.key_prefix());
    let sweep = |conn: &mut spool_runtime::redis::SyncConn| -> i64 {
        // (As if an hour had passed since the last fold.)
        let _: () = redis::cmd("DEL").arg(&fold_lock).query(conn).unwrap();
        env.rt.block_on(queue.fold_counts("sweeper")).unwrap()
    };
    // Far from its expiry (a record TTL and thirty days): left alone.
    assert_eq!(sweep(&mut conn), 0);
    assert_eq!((counter(&mut conn), listed(&mut conn)), (Some(1), 3));
    // Within the fold's window, 29 days before it expires (its records
    // gone a day by then): folded.
    let _: () = redis::cmd("PEXPIRE")
        .arg(&list)
        .arg(29 * 86_400_000_u64 - 1_000)
        .query(&mut conn)
        .unwrap();
    assert_eq!(sweep(&mut conn), 3);
    assert_eq!((counter(&mut conn), listed(&mut conn)), (Some(4), 0));
    assert_eq!(total(), 4);
    // The next success starts a new list; within the window too, it is
    // not folded before the hour is up (the lock stands), then it is.
    run_id(&env, &queue, Next::Succeeded);
    assert_eq!((counter(&mut conn), listed(&mut conn)), (Some(4), 1));
    assert_eq!(total(), 5);
    let _: () = redis::cmd("PEXPIRE")
        .arg(&list)
        .arg(86_400_000)
        .query(&mut conn)
        .unwrap();
    assert_eq!(env.rt.block_on(queue.fold_counts("other")).unwrap(), 0);
    assert_eq!((counter(&mut conn), listed(&mut conn)), (Some(4), 1));
    assert_eq!(sweep(&mut conn), 1);
    assert_eq!((counter(&mut conn), listed(&mut conn)), (Some(5), 0));
    // Not a list (written by hand): the success is counted in the field,
    // and the key left as it is, also by an ack that asks for the list's
    // expiry to be raised (a worker's first ack of the tenant does).
    let _: () = redis::cmd("SET")
        .arg(&list)
        .arg("oops")
        .query(&mut conn)
        .unwrap();
    let fresh = keeping(&env, 10, env.queue_config().record_ttl);
    run_id(&env, &fresh, Next::Succeeded);
    assert_eq!(counter(&mut conn), Some(6));
    assert_eq!(total(), 6);
    let ttl: i64 = redis::cmd("PTTL").arg(&list).query(&mut conn).unwrap();
    assert_eq!(ttl, -1);
}

#[test]
fn the_queue_totals_count_each_success_once_over_all_tenants() {
    let env = Env::new("scripts-queue-totals");
    let queue = &env.queue;
    // `PREFIX:{QUEUE}:stats`, the queue's own slot (docs/queue.md, "Keys").
    let key = env.tenant_keys("default").replace("/default}", "}") + ":stats";
    let totals = || -> i64 {
        let n: Option<i64> = redis::cmd("HGET")
            .arg(&key)
            .arg("succeeded")
            .query(&mut env.redis_conn())
            .unwrap();
        n.unwrap_or(0)
    };
    run_id(&env, queue, Next::Succeeded);
    run_id(&env, queue, Next::Dead);
    // Added shortly after the ack (one command for all the successes
    // of TOTALS_EVERY), without a call to flush them; and no more after.
    let pause = |d: Duration| env.rt.block_on(async { tokio::time::sleep(d).await });
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while totals() == 0 && std::time::Instant::now() < deadline {
        pause(Duration::from_millis(50));
    }
    pause(TOTALS_EVERY * 5);
    assert_eq!(totals(), 1, "a death is no success");
    // Another tenant's success adds to the same total; the same ack sent
    // again (as after a lost reply) is applied but not counted twice, and
    // a stale one not at all.
    // A success of a job of acme, claimed.
    let acme_success = || {
        let id = env.enqueue_job(env.job("acme/hello", "{}"));
        let claim = env.rt.block_on(queue.claim("w", 10, LEASE)).unwrap();
        let token = &claim.jobs.iter().find(|j| j.id == id).unwrap().token;
        Outcome {
            tenant: "acme".into(),
            ..outcome(&id, token, Next::Succeeded)
        }
    };
    let done = acme_success();
    let stale = Outcome {
        token: "1".into(),
        ..done.clone()
    };
    for (ack, applied, total) in [(&done, true, 2), (&done, true, 2), (&stale, false, 2)] {
        let got = env
            .rt
            .block_on(queue.ack(std::slice::from_ref(ack)))
            .unwrap();
        // (What a worker does at its stop: no wait.)
        env.rt.block_on(queue.flush_totals());
        assert_eq!((got, totals()), (vec![applied], total));
    }
    // An ack dropped on its way, its answer never read (as when its reply
    // is lost, or a worker's acker is stopped), then sent again counts
    // once, whether the dropped send reached Redis or not.
    for wait in [0, 200, 2_000, 20_000] {
        let done = acme_success();
        let before = totals();
        env.rt.block_on(async {
            let send = queue.ack(std::slice::from_ref(&done));
            let _ = tokio::time::timeout(Duration::from_micros(wait), send).await;
        });
        let got = env
            .rt
            .block_on(queue.ack(std::slice::from_ref(&done)))
            .unwrap();
        env.rt.block_on(queue.flush_totals());
        assert_eq!(
            (got, totals()),
            (vec![true], before + 1),
            "dropped after {wait} µs"
        );
    }
}

#[test]
fn a_claim_carries_the_envelope_of_a_record_with_many_other_fields() {
    let env = Env::new("scripts-wide-record");
    // A plain-command client's record with 40 fields of its own, 4 KiB
    // each: the claim sends the worker its envelope (not 160 KiB).
    let junk = vec![b'x'; 4096];
    let names: Vec<String> = (0..40).map(|k| format!("extra{k}")).collect();
    let mut fields: Vec<(&str, &[u8])> = vec![
        ("plugin", b"hello"),
        ("payload", br#"{"name":"Ada"}"#),
        ("wait", b"1"),
    ];
    fields.extend(names.iter().map(|n| (n.as_str(), junk.as_slice())));
    env.enqueue_plain("default", "wide", "normal", &fields);
    let claim = env.rt.block_on(env.queue.claim("w", 10, LEASE)).unwrap();
    let job = claim.jobs.iter().find(|j| j.id == "wide").expect("claimed");
    assert_eq!(job.plugin.as_deref(), Some("hello"));
    assert_eq!(job.payload, br#"{"name":"Ada"}"#);
    assert!(job.wait && job.fresh);
}

/// An enqueue stopped part way by a key of the wrong type (a group's list
/// a client overwrote) leaves the jobs it stored before it claimable, and
/// nothing of the job it stopped at: once the key is fixed, a retry under
/// the same idempotency keys enqueues that job and the rest, and every
/// job runs once.
#[test]
fn an_enqueue_stopped_by_a_bad_key_leaves_the_jobs_before_it_claimable() {
    let env = Env::new("scripts-enqueue-bad-group");
    let mut conn = env.redis_conn();
    let broken = format!("{}:group:broken", env.tenant_keys("default"));
    let _: () = redis::cmd("SET")
        .arg(&broken)
        .arg("oops")
        .query(&mut conn)
        .unwrap();
    let jobs: Vec<_> = (1..=3)
        .map(|n| {
            let mut job = env.job("hello", &format!(r#"{{"n":{n}}}"#));
            job.idempotency_key = Some(format!("key-{n}"));
            job.group = (n == 2).then(|| "broken".to_string());
            job
        })
        .collect();
    let err = env
        .rt
        .block_on(env.queue.enqueue_many(&jobs))
        .expect_err("the group's list is a string");
    assert!(err.to_string().contains("WRONGTYPE"), "{err}");
    let queued: Vec<String> = redis::cmd("LRANGE")
        .arg(ready(&env))
        .arg(0)
        .arg(-1)
        .query(&mut conn)
        .unwrap();
    assert_eq!(
        queued.len(),
        1,
        "the first job is queued, the third not stored"
    );
    // Nothing of the second job is left: its group's push came first.
    let records: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}:job:*", env.tenant_keys("default")))
        .query(&mut conn)
        .unwrap();
    assert_eq!(records, vec![job_key(&env, &queued[0])]);
    let _: () = redis::cmd("DEL").arg(&broken).query(&mut conn).unwrap();
    let again = env
        .rt
        .block_on(env.queue.enqueue_many(&jobs))
        .expect("the key is fixed");
    let created: Vec<bool> = again.iter().map(|e| e.created).collect();
    assert_eq!(created, vec![false, true, true]);
    assert_eq!(again[0].id, queued[0]);
    let mut payloads = Vec::new();
    for _ in 0..3 {
        let claim = env.rt.block_on(env.queue.claim("w", 10, LEASE)).unwrap();
        payloads.extend(claim.jobs.iter().map(|j| j.payload.clone()));
    }
    payloads.sort();
    let want: Vec<Vec<u8>> = (1..=3)
        .map(|n| format!(r#"{{"n":{n}}}"#).into_bytes())
        .collect();
    assert_eq!(payloads, want);
}

/// A ready list of the wrong type fails the enqueue before the job is
/// stored, with an error that names the key.
#[test]
fn an_enqueue_onto_a_ready_list_of_the_wrong_type_stores_nothing() {
    let env = Env::new("scripts-enqueue-bad-ready");
    let mut conn = env.redis_conn();
    let _: () = redis::cmd("SET")
        .arg(ready(&env))
        .arg("oops")
        .query(&mut conn)
        .unwrap();
    let err = env
        .rt
        .block_on(env.queue.enqueue(&env.job("hello", "{}")))
        .expect_err("the ready list is a string");
    let said = err.to_string();
    assert!(
        said.contains("WRONGTYPE") && said.contains(&ready(&env)),
        "{said}"
    );
    let records: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}:job:*", env.tenant_keys("default")))
        .query(&mut conn)
        .unwrap();
    assert_eq!(records, Vec::<String>::new());
}

/// A record TTL past what Redis takes as an expiry (`--record-ttl` of
/// three hundred million years) under an idempotency key: the key's expiry
/// is capped, as the records' are (a larger one failed the call after the
/// job was stored), so the call succeeds and a repeat names the job.
#[test]
fn an_endless_record_ttl_under_an_idempotency_key_enqueues_once() {
    let env = Env::new("scripts-enqueue-endless-ttl");
    let mut config = env.queue_config();
    config.record_ttl = Duration::from_secs(10_000_000_000_000_000);
    let queue = env.rt.block_on(Queue::connect(config)).unwrap();
    let mut job = env.job("hello", "{}");
    job.idempotency_key = Some("forever".into());
    let first = env
        .rt
        .block_on(queue.enqueue(&job))
        .expect("stored, and named by its key");
    let again = env.rt.block_on(queue.enqueue(&job)).expect("repeat");
    assert!(first.created && !again.created);
    assert_eq!(again.id, first.id);
}
