//! Hand-over at idle (docs/queue.md, "Hand-over at idle"): on one Redis an
//! enqueue gives a lone job straight to a worker waiting for work, leased
//! as a claim would lease it. Real Redis, real waits and real workers.

use spool_runtime::queue::{Next, Queue, Status, WakeWait};
use spool_runtime::redis::SyncConn;
use spool_runtime::tenants::Limit;
use spool_tests::fleet::Env;
use std::time::Duration;

const LEASE: Duration = Duration::from_secs(30);

fn zcard(conn: &mut SyncConn, key: &str) -> u64 {
    redis::cmd("ZCARD").arg(key).query(conn).unwrap()
}

fn redis_now(conn: &mut SyncConn) -> u64 {
    let (s, us): (u64, u64) = redis::cmd("TIME").query(conn).unwrap();
    s * 1_000_000 + us
}

/// Register a waiter that never reads its inbox (a worker that died
/// right after registering): `Q:idle`'s entry as wake.rs writes it, its
/// deadline `ahead_us` from now on Redis' clock (negative: passed).
fn ghost(env: &Env, name: &str, lease: Duration, ahead_us: i64) -> String {
    ghost_as(env, name, lease, ahead_us, "h")
}

/// [`ghost`], its entry with `marker` before the lease: `h` as wake.rs
/// writes it, none as a worker of the version before did (which renews
/// its lease in `T:leases`, by id).
fn ghost_as(env: &Env, name: &str, lease: Duration, ahead_us: i64, marker: &str) -> String {
    let keys = env.queue.key_prefix().to_string();
    let mut conn = env.redis_conn();
    let inbox = format!("{keys}:wake:{name}");
    let deadline = redis_now(&mut conn).cast_signed() + ahead_us;
    let member = format!("{inbox} {marker}{} {name}", lease.as_micros());
    let _: () = redis::cmd("ZADD")
        .arg(format!("{keys}:idle"))
        .arg(deadline)
        .arg(&member)
        .query(&mut conn)
        .unwrap();
    inbox
}

/// A claim of nothing: the handle learns Redis' clock (its waits
/// register by it).
fn learn_clock(queue: &Queue, env: &Env) {
    let claim = env.rt.block_on(queue.claim("probe", 1, LEASE)).unwrap();
    assert!(claim.jobs.is_empty());
}

/// A waiter registered in `Q:idle` gets the job an enqueue hands it from
/// its wait, leased to it as a claim would lease it: the record says
/// running on that worker, attempt 1, under the token the job carries;
/// the lease and the tenant's timer are set; nothing was announced. Its
/// ack is fenced like a claimed job's.
#[test]
fn an_idle_waiter_is_handed_a_lone_job_as_a_lease() {
    let env = Env::standalone("handover");
    let keys = env.queue.key_prefix().to_string();
    let queue = env.queue.clone();
    learn_clock(&queue, &env);
    let mut conn = env.redis_conn();
    let idle = format!("{keys}:idle");
    let (handed, id) = env.rt.block_on(async {
        let mut waiter = queue.wake_waiter().await.unwrap();
        let wait = queue.wait_for_work(&mut waiter, Duration::from_secs(5), Some(("w1", LEASE)));
        tokio::pin!(wait);
        // Enqueue once the waiter is registered.
        let enqueue = async {
            let mut c = env.redis_conn();
            while zcard(&mut c, &idle) == 0 {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            queue
                .enqueue(&env.job("hello", r#"{"name":"idle"}"#))
                .await
                .unwrap()
                .id
        };
        let (woke, id) = tokio::join!(wait, enqueue);
        (woke.unwrap(), id)
    });
    assert_eq!(handed.jobs.len(), 1, "one job handed over");
    assert!(!handed.claim, "the wait's reply was the job: no claim next");
    let job = &handed.jobs[0];
    assert_eq!((job.id.as_str(), job.attempt), (id.as_str(), 1));
    assert_eq!(job.payload, br#"{"name":"idle"}"#);
    assert_eq!(job.plugin.as_deref(), Some("default/hello"));
    let record = env.record(&id);
    assert_eq!(record.status, Some(Status::Running));
    assert_eq!(record.worker.as_deref(), Some("w1"));
    assert_eq!(record.attempts, 1);
    assert_eq!(zcard(&mut conn, &idle), 1, "the waiter's entry stands");
    let (lease_end, _) = lease_of(&env, &mut conn, &id);
    let now = redis_now(&mut conn);
    assert!(
        lease_end > now + 25_000_000 && lease_end <= now + 30_000_000,
        "{lease_end}"
    );
    let timer: Option<u64> = redis::cmd("ZSCORE")
        .arg(format!("{keys}:timers"))
        .arg("default")
        .query(&mut conn)
        .unwrap();
    assert_eq!(
        timer,
        Some(lease_end),
        "the lease's end is the tenant's timer"
    );
    assert_eq!(
        zcard(&mut conn, &format!("{keys}:ready")),
        0,
        "nothing announced"
    );
    let wake: u64 = redis::cmd("LLEN")
        .arg(format!("{keys}:wake"))
        .query(&mut conn)
        .unwrap();
    assert_eq!(wake, 0, "no wake token");
    // Fenced as a claim: a stale token is refused, the right one applied.
    let mut stale = job.outcome(Next::Succeeded);
    stale.token = "1".into();
    let applied = env.rt.block_on(queue.ack(&[stale])).unwrap();
    assert_eq!(applied, vec![false]);
    let applied = env
        .rt
        .block_on(queue.ack(&[job.outcome(Next::Succeeded)]))
        .unwrap();
    assert_eq!(applied, vec![true]);
    assert_eq!(env.record(&id).status, Some(Status::Succeeded));
}

/// A waiter with room for several jobs reads the jobs handed to it
/// meanwhile in one reply (`BLMPOP` of the wake list, then the inbox), up to its room;
/// only jobs came, so it waits again rather than claim. Where Redis
/// refuses `BLMPOP` (here an ACL; Redis before 7.0 does not know it) the
/// waits go back to `BLPOP`, one job each, and lose none.
#[test]
fn a_waiter_reads_several_jobs_handed_over_in_one_reply() {
    let env = Env::standalone("handover-many");
    let queue = env.queue.clone();
    learn_clock(&queue, &env);
    let mut waiter = env.rt.block_on(queue.wake_waiter()).unwrap();
    let short = Duration::from_millis(20);
    // Registered by a wait that finds nothing.
    let woke = env
        .rt
        .block_on(queue.wait_for_work(&mut waiter, short, Some(("w1", LEASE))))
        .unwrap();
    assert!(woke.jobs.is_empty() && waiter.registered());
    let enqueue = |n: usize| -> Vec<String> {
        (0..n)
            .map(|i| {
                let job = env.job("hello", &format!(r#"{{"name":"{i}"}}"#));
                env.rt.block_on(queue.enqueue(&job)).unwrap().id
            })
            .collect()
    };
    let mut wait = |room: usize| -> Vec<String> {
        waiter.read_up_to(room);
        let woke = env
            .rt
            .block_on(queue.wait_for_work(&mut waiter, short, Some(("w1", LEASE))))
            .unwrap();
        assert!(!woke.claim, "only jobs came: no claim");
        woke.jobs.into_iter().map(|j| j.id).collect()
    };
    let ids = enqueue(5);
    assert_eq!(wait(3), ids[..3], "three at once, as its room allows");
    assert_eq!(wait(8), ids[3..], "the rest at once");
    // BLMPOP refused: one a wait, in order, none lost.
    let _: () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg("default")
        .arg("-blmpop")
        .query(&mut env.redis_conn())
        .unwrap();
    let ids = enqueue(2);
    assert_eq!(wait(8), ids[..1]);
    assert_eq!(wait(8), ids[1..]);
}

/// A waiter of `worker` registered in `Q:idle` by a short wait that finds
/// nothing.
fn registered_waiter(env: &Env, queue: &Queue, worker: &str) -> WakeWait {
    let mut waiter = env.rt.block_on(queue.wake_waiter()).unwrap();
    let short = Duration::from_millis(20);
    let woke = env
        .rt
        .block_on(queue.wait_for_work(&mut waiter, short, Some((worker, LEASE))))
        .unwrap();
    assert!(woke.jobs.is_empty() && waiter.registered());
    waiter
}

/// An enqueuer takes the waiter its last job went to again by that
/// waiter's flag, but not once jobs wait unread in its inbox (three with
/// the last): a waiter that reads empties its inbox at each wait, so that
/// one may be dead or cut off, and the next job looks in `Q:idle` again,
/// where a newer waiter stands.
#[test]
fn an_enqueuer_leaves_a_waiter_that_does_not_read() {
    let env = Env::standalone("handover-unread");
    let queue = env.queue.clone();
    learn_clock(&queue, &env);
    let short = Duration::from_millis(20);
    let register = |worker: &str| registered_waiter(&env, &queue, worker);
    let old = register("w1");
    let enqueue = || env.enqueue("hello", "{}");
    let ids: Vec<String> = (0..3).map(|_| enqueue()).collect();
    let worker_of = |id: &str| env.record(id).worker;
    for id in &ids {
        assert_eq!(
            worker_of(id).as_deref(),
            Some("w1"),
            "handed to the only waiter"
        );
    }
    // A newer waiter registers; the old one still has not read.
    let mut new = register("w2");
    let id = enqueue();
    assert_eq!(
        worker_of(&id).as_deref(),
        Some("w2"),
        "not a fourth to the old waiter"
    );
    let woke = env
        .rt
        .block_on(queue.wait_for_work(&mut new, short, Some(("w2", LEASE))))
        .unwrap();
    assert_eq!(woke.jobs.iter().map(|j| &j.id).collect::<Vec<_>>(), [&id]);
    let unread: u64 = redis::cmd("LLEN")
        .arg(old.inbox())
        .query(&mut env.redis_conn())
        .unwrap();
    assert_eq!(unread, 3, "the old waiter's three, to read or to lapse");
}

/// The same decided in Redis: calls sent with the flag before a reply said
/// to forget it (one call per tenant of a batch of lone jobs, here; or
/// concurrent enqueues of one handle) give the job to a newer waiter
/// once two wait unread before it in the flagged waiter's inbox.
#[test]
fn calls_sent_with_a_stale_flag_go_to_a_newer_waiter() {
    let env = Env::standalone("handover-stale-flag");
    let queue = env.queue.clone();
    learn_clock(&queue, &env);
    let register = |worker: &str| registered_waiter(&env, &queue, worker);
    let _old = register("w1");
    let first = env.enqueue("hello", "{}");
    let _new = register("w2");
    // Four tenants' lone jobs in one batch: four calls, each with w1's
    // flag, all sent before any reply.
    let jobs: Vec<_> = ["a", "b", "c", "d"]
        .iter()
        .map(|t| env.job(&format!("{t}/hello"), "{}"))
        .collect();
    let ids = env.rt.block_on(queue.enqueue_many(&jobs)).unwrap();
    let workers: Vec<Option<String>> = std::iter::once(first)
        .chain(ids.into_iter().map(|e| e.id))
        .map(|id| env.record(&id).worker)
        .collect();
    let w = |s: &str| Some(s.to_string());
    assert_eq!(workers, [w("w1"), w("w1"), w("w2"), w("w2"), w("w2")]);
}

/// A delayed job starts when it is due while lone jobs of another tenant
/// keep coming to the worker's inbox faster than its host timer's nudge
/// (which ends a wait a few milliseconds past its time): after a reply of
/// jobs only the worker waits again, but once its timer is due it claims,
/// and the claim's pick brings the due job.
#[test]
fn a_delayed_job_starts_on_time_while_lone_jobs_keep_coming() {
    let env = Env::standalone("handover-due");
    let _worker = env.worker(&[("hello", "hello"), ("acme/hello", "hello")], |_| {});
    // The worker is idle and registered: lone jobs of acme go to it.
    env.wait(&env.enqueue("acme/hello", "{}"));
    let mut delayed = env.job("hello", "{}");
    delayed.delay = Duration::from_millis(300);
    let id = env.enqueue_job(delayed);
    let stream = std::time::Instant::now();
    while stream.elapsed() < Duration::from_secs(2) {
        env.rt
            .block_on(env.queue.enqueue(&env.job("acme/hello", "{}")))
            .unwrap();
    }
    let record = env.wait(&id);
    let due = record.enqueued_us.unwrap() + 300_000;
    let late = record.started_us.unwrap().saturating_sub(due);
    // (A few milliseconds here; 0.19 to 1.7 s when a reply of jobs only
    // sent the worker back to waiting past its timer.)
    assert!(
        late < 150_000,
        "started {late} µs after it was due, with lone jobs coming for 2 s"
    );
}

/// A waiter stays registered across the jobs handed to it: its next wait
/// makes no new entry (its deadline stands) and is handed the next job;
/// only once less than a second is left does a wait register it again.
/// Leaving takes the entry out.
#[test]
fn a_waiter_stays_registered_across_jobs_handed_over() {
    let env = Env::standalone("handover-stays");
    let keys = env.queue.key_prefix().to_string();
    let queue = env.queue.clone();
    learn_clock(&queue, &env);
    let mut conn = env.redis_conn();
    let idle = format!("{keys}:idle");
    let deadline = |conn: &mut SyncConn| -> Vec<(String, u64)> {
        redis::cmd("ZRANGE")
            .arg(&idle)
            .arg(0)
            .arg(-1)
            .arg("WITHSCORES")
            .query(conn)
            .unwrap()
    };
    let mut waiter = env.rt.block_on(queue.wake_waiter()).unwrap();
    let mut entries = Vec::new();
    let mut reads = Vec::new();
    for n in 0..3 {
        let before = crate::queue::calls(&mut conn, "zrange");
        let (woke, id) = env.rt.block_on(async {
            let wait =
                queue.wait_for_work(&mut waiter, Duration::from_secs(5), Some(("w1", LEASE)));
            let enqueue = async {
                let mut c = env.redis_conn();
                while zcard(&mut c, &idle) == 0 {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                // (After the wait's pipeline is in: a registration made
                // again would be there by now.)
                tokio::time::sleep(Duration::from_millis(20)).await;
                queue.enqueue(&env.job("hello", "{}")).await.unwrap().id
            };
            tokio::join!(wait, enqueue)
        });
        reads.push(crate::queue::calls(&mut conn, "zrange") - before);
        let woke = woke.unwrap();
        assert_eq!(woke.jobs.len(), 1, "job {n} handed over");
        assert_eq!(woke.jobs[0].id, id);
        assert!(waiter.registered());
        entries.push(deadline(&mut conn));
        let done = woke.jobs[0].outcome(Next::Succeeded);
        assert_eq!(env.rt.block_on(queue.ack(&[done])).unwrap(), vec![true]);
    }
    assert_eq!(entries[0].len(), 1, "one entry: {entries:?}");
    assert!(
        entries.iter().all(|e| *e == entries[0]),
        "the same entry, its deadline unchanged: {entries:?}"
    );
    // The enqueuer found the waiter in `Q:idle` once; then by its flag,
    // which stands beside the entry.
    assert_eq!(reads, vec![1, 0, 0], "reads of Q:idle per enqueue");
    let flag = format!("{keys}:on:{}", entries[0][0].0);
    let flagged =
        |conn: &mut SyncConn| -> bool { redis::cmd("EXISTS").arg(&flag).query(conn).unwrap() };
    assert!(flagged(&mut conn));
    // Within a second of its deadline a wait registers again, later.
    let first_deadline = entries[0][0].1;
    sleep_past(&mut conn, first_deadline - 900_000);
    let woke = env
        .rt
        .block_on(queue.wait_for_work(&mut waiter, Duration::from_millis(10), Some(("w1", LEASE))))
        .unwrap();
    assert!(woke.jobs.is_empty() && woke.claim);
    let again = deadline(&mut conn);
    assert_eq!(again.len(), 1);
    assert!(again[0].1 > first_deadline, "{again:?} after {entries:?}");
    // Leaving takes it out; nothing was left in the inbox.
    let jobs = env
        .rt
        .block_on(queue.leave_idle(waiter.inbox(), "w1", LEASE))
        .unwrap();
    assert!(jobs.is_empty());
    assert_eq!(zcard(&mut conn, &idle), 0);
    assert!(!flagged(&mut conn), "its flag goes with it");
}

/// Claim and ack until a claim finds nothing: the ready set is empty
/// (claims settle the tenants they find dry, paused or capped ones too).
fn drain(env: &Env) {
    loop {
        let claim = env.rt.block_on(env.queue.claim("w", 100, LEASE)).unwrap();
        if claim.jobs.is_empty() {
            return;
        }
        let outcomes: Vec<_> = claim
            .jobs
            .iter()
            .map(|j| j.outcome(Next::Succeeded))
            .collect();
        env.rt.block_on(env.queue.ack(&outcomes)).unwrap();
    }
}

/// Anything that could come before the job, or a limit a claim would
/// count, sends it the normal way and leaves the waiter registered, each
/// looked at alone with the queue's ready set empty: a batch, a delay, a
/// group, an idempotency key, a job of the tenant waiting (pushed by
/// plain commands, not announced), a delayed one, another tenant ready,
/// a pause, a concurrency cap, a rate. (One running is no reason:
/// `a_job_is_handed_over_while_another_of_its_tenant_runs`.) A registration past
/// its deadline is dropped, not used. With none of these the same waiter
/// is handed the job.
#[test]
fn no_hand_over_when_anything_waits_or_a_limit_applies() {
    let env = Env::standalone("handover-not");
    let keys = env.queue.key_prefix().to_string();
    let idle = format!("{keys}:idle");
    let ready = format!("{keys}:ready");
    let mut conn = env.redis_conn();
    learn_clock(&env.queue, &env);
    let inbox = ghost(&env, "g1", LEASE, 30_000_000);
    let check = not_handed(&env, &idle);
    let job = |plugin: &str| env.job(plugin, "{}");
    drain(&env);
    assert_eq!(
        zcard(&mut conn, &ready),
        0,
        "nothing ready before the cases"
    );
    let batch = env.enqueue_all(&[job("a/hello"), job("a/hello")]);
    drain_after(&env, &batch, "a batch", &check);
    let mut delayed = job("b/hello");
    delayed.delay = Duration::from_secs(60);
    let id = env.enqueue_job(delayed);
    drain_after(&env, &[id], "a delay", &check);
    let mut grouped = job("c/hello");
    grouped.group = Some("one".into());
    let id = env.enqueue_job(grouped);
    drain_after(&env, &[id], "a group", &check);
    let mut keyed = job("d/hello");
    keyed.idempotency_key = Some("once".into());
    let id = env.enqueue_job(keyed);
    drain_after(&env, &[id], "an idempotency key", &check);
    // `b` still has its delayed job.
    let id = env.enqueue("b/hello", "{}");
    drain_after(&env, &[id], "a delayed job of the tenant", &check);
    // A job of the tenant waiting, pushed by plain commands and taken out
    // of the ready set again: the tenant's list alone says so.
    env.enqueue_plain(
        "e",
        "plain-1",
        "normal",
        &[("plugin", b"e/hello"), ("payload", b"{}")],
    );
    let _: () = redis::cmd("ZREM")
        .arg(&ready)
        .arg("e")
        .query(&mut conn)
        .unwrap();
    let id = env.enqueue("e/hello", "{}");
    drain_after(&env, &[id], "a job of the tenant waiting", &check);
    // Another tenant ready (announced by plain commands).
    env.announce_plain("g", None);
    let id = env.enqueue("h/hello", "{}");
    drain_after(&env, &[id], "another tenant ready", &check);
    // A pause, a cap, a rate.
    assert!(
        env.rt
            .block_on(env.queue.set_paused("p", None, true))
            .unwrap()
    );
    env.set_limit("capped", Limit::Concurrency, 5);
    env.set_limit("rated", Limit::Rate, 3600);
    for (tenant, case) in [("p", "a pause"), ("capped", "a cap"), ("rated", "a rate")] {
        let id = env.enqueue(&format!("{tenant}/hello"), "{}");
        drain_after(&env, &[id], case, &check);
    }
    // None of these: handed over to the same waiter.
    assert_eq!(zcard(&mut conn, &ready), 0);
    let id = env.enqueue("hello", "{}");
    let record = env.record(&id);
    assert_eq!(record.status, Some(Status::Running));
    assert_eq!(record.worker.as_deref(), Some("g1"));
    let entries: u64 = redis::cmd("LLEN").arg(&inbox).query(&mut conn).unwrap();
    assert_eq!(entries, 1, "the job waits in the ghost's inbox");
    let ttl: i64 = redis::cmd("PTTL").arg(&inbox).query(&mut conn).unwrap();
    assert!(ttl > 0 && ttl <= 60_000, "the inbox expires: {ttl}");
    // A registration past its deadline is dropped, not used.
    ghost(&env, "late", LEASE, -1);
    let id = env.enqueue("fresh/hello", "{}");
    assert_eq!(env.record(&id).status, Some(Status::Queued));
    assert_eq!(zcard(&mut conn, &idle), 0, "the stale entry was dropped");
    // An entry naming a key that is not a waiter's list is dropped too:
    // the script never pushes onto another key.
    drain(&env);
    let deadline = redis_now(&mut conn) + 60_000_000;
    let _: () = redis::cmd("ZADD")
        .arg(&idle)
        .arg(deadline)
        .arg(format!("{keys}:seq 30000000 evil"))
        .query(&mut conn)
        .unwrap();
    let id = env.enqueue("other/hello", "{}");
    assert_eq!(env.record(&id).status, Some(Status::Queued));
    assert_eq!(zcard(&mut conn, &idle), 0);
    let kind: String = redis::cmd("TYPE")
        .arg(format!("{keys}:seq"))
        .query(&mut conn)
        .unwrap();
    assert_eq!(kind, "zset");
}

/// A job of a tenant with jobs running (claimed, not acked) is handed
/// over all the same: a running job waits for nothing. The visit asked
/// for at the running lease's end stands, and both leases are the
/// tenant's, each acked on its own.
#[test]
fn a_job_is_handed_over_while_another_of_its_tenant_runs() {
    let env = Env::standalone("handover-running");
    learn_clock(&env.queue, &env);
    let mut conn = env.redis_conn();
    let keys = env.tenant_keys("default");
    // A batch is never handed over: one of its jobs runs, the other is
    // drained.
    let two = env.enqueue_all(&[env.job("hello", "{}"), env.job("hello", "{}")]);
    assert_eq!(env.record(&two[0]).status, Some(Status::Queued));
    let running = env.rt.block_on(env.queue.claim("w", 1, LEASE)).unwrap();
    assert_eq!(running.jobs.len(), 1);
    drain(&env);
    let (visit, _) = timer_of(&env, &mut conn);
    let visit = visit.expect("a visit at the running lease's end");
    ghost(&env, "g1", LEASE, 30_000_000);
    let id = env.enqueue("hello", "{}");
    let record = env.record(&id);
    assert_eq!(
        (record.status, record.worker.as_deref()),
        (Some(Status::Running), Some("g1")),
        "handed over beside the running job"
    );
    assert_eq!(zcard(&mut conn, &format!("{keys}:leased")), 2);
    assert_eq!(
        timer_of(&env, &mut conn),
        (Some(visit), Some(visit)),
        "the earlier visit stands"
    );
    let (_, token) = lease_of(&env, &mut conn, &id);
    finish(&env, &id, &token);
    let done: Vec<_> = running
        .jobs
        .iter()
        .map(|j| j.outcome(Next::Succeeded))
        .collect();
    assert_eq!(env.rt.block_on(env.queue.ack(&done)).unwrap(), vec![true]);
    assert_eq!(zcard(&mut conn, &format!("{keys}:leased")), 0);
}

/// After a case's enqueue: its jobs were not handed over (`check`), then
/// the queue is drained for the next case.
fn drain_after(env: &Env, ids: &[String], case: &str, check: &dyn Fn(&[String], &str)) {
    check(ids, case);
    drain(env);
}

/// The check of [`drain_after`]: each job queued or delayed, and the
/// waiter still registered.
fn not_handed<'a>(env: &'a Env, idle: &'a str) -> impl Fn(&[String], &str) + 'a {
    move |ids, case| {
        for id in ids {
            let status = env.record(id).status;
            assert!(
                matches!(status, Some(Status::Queued | Status::Delayed)),
                "{case}: {id} is {status:?}"
            );
        }
        assert_eq!(
            zcard(&mut env.redis_conn(), idle),
            1,
            "{case}: the waiter was taken"
        );
    }
}

/// Claim as worker `w2` until a lapsed job comes back (2 s at most).
fn claimed_again(env: &Env) -> spool_runtime::queue::ClaimedJob {
    for _ in 0..100 {
        let claim = env
            .rt
            .block_on(
                env.queue
                    .claim_backing_off("w2", 10, LEASE, Duration::from_millis(1)),
            )
            .unwrap();
        if let Some(job) = claim.jobs.into_iter().next() {
            return job;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("the lapsed job is not claimed again");
}

/// A job handed to a worker that died right after it registered runs
/// again once its lease lapses, as a claimed one would (attempt 2), and a
/// late outcome of the dead worker's attempt is refused. So also where
/// the waiter is a worker of the version before, whose lease the
/// enqueue writes in `T:leases` by id: a worker of this version reaps it.
/// (Each case on a Redis of its own: the first's claim leaves a visit at
/// the end of its longer lease, which a hand-over keeps.)
#[test]
fn a_job_handed_to_a_dead_worker_runs_again_after_its_lease() {
    let lease = Duration::from_millis(300);
    for (marker, key) in [("h", "leased"), ("", "leases")] {
        let env = Env::standalone(&format!("handover-dead-{key}"));
        learn_clock(&env.queue, &env);
        let keys = env.tenant_keys("default");
        let mut conn = env.redis_conn();
        ghost_as(&env, "dead", lease, 30_000_000, marker);
        let id = env.enqueue("hello", "{}");
        let record = env.record(&id);
        assert_eq!(
            (record.status, record.worker.as_deref()),
            (Some(Status::Running), Some("dead"))
        );
        let token: String = redis::cmd("HGET")
            .arg(format!("{keys}:job:{id}"))
            .arg("token")
            .query(&mut conn)
            .unwrap();
        let entry = if marker.is_empty() {
            id.clone()
        } else {
            format!("{id} {token}")
        };
        let score: Option<u64> = redis::cmd("ZSCORE")
            .arg(format!("{keys}:{key}"))
            .arg(&entry)
            .query(&mut conn)
            .unwrap();
        assert!(score.is_some(), "{marker:?}: leased in {key} as {entry}");
        std::thread::sleep(lease + Duration::from_millis(100));
        let job = claimed_again(&env);
        assert_eq!(
            (job.id.as_str(), job.attempt),
            (id.as_str(), 2),
            "{marker:?}"
        );
        let record = env.record(&id);
        assert_eq!(record.worker.as_deref(), Some("w2"));
        let mut late = job.outcome(Next::Succeeded);
        late.token.clone_from(&token);
        let applied = env
            .rt
            .block_on(env.queue.ack(&[late, job.outcome(Next::Succeeded)]))
            .unwrap();
        assert_eq!(
            applied,
            vec![false, true],
            "{marker:?}: the dead attempt's is refused"
        );
        assert_eq!(env.record(&id).status, Some(Status::Succeeded));
    }
}

/// At most sixteen jobs wait unread in a waiter's inbox: while sixteen
/// are there, the next lone job goes the normal way and the entry
/// stands; once the waiter has read them, the next is handed over again.
/// An entry of a worker of the version before (`h`) is one job's: taken
/// with it.
#[test]
fn a_waiter_is_handed_at_most_sixteen_unread_jobs() {
    let env = Env::standalone("handover-unread");
    let keys = env.queue.key_prefix().to_string();
    let idle = format!("{keys}:idle");
    learn_clock(&env.queue, &env);
    let mut conn = env.redis_conn();
    let inbox = ghost_as(&env, "slow", LEASE, 30_000_000, "p");
    let llen = |conn: &mut SyncConn| -> u64 { redis::cmd("LLEN").arg(&inbox).query(conn).unwrap() };
    for _ in 0..16 {
        let id = env.enqueue("hello", "{}");
        assert_eq!(env.record(&id).worker.as_deref(), Some("slow"));
    }
    let over = env.enqueue("hello", "{}");
    let record = env.record(&over);
    assert_eq!(
        (record.status, record.worker),
        (Some(Status::Queued), None),
        "not handed over while sixteen wait unread"
    );
    assert_eq!(llen(&mut conn), 16, "sixteen in the inbox");
    assert_eq!(zcard(&mut conn, &idle), 1, "the entry stands");
    drain(&env);
    // Read: the next one is handed over again.
    let _: Vec<Vec<u8>> = redis::cmd("LPOP")
        .arg(&inbox)
        .arg(16)
        .query(&mut conn)
        .unwrap();
    let again = env.enqueue("hello", "{}");
    assert_eq!(env.record(&again).worker.as_deref(), Some("slow"));
    // A worker of the version before: its entry goes with the job.
    let _: () = redis::cmd("DEL").arg(&idle).query(&mut conn).unwrap();
    ghost_as(&env, "older", LEASE, 30_000_000, "h");
    let older = env.enqueue("hello", "{}");
    assert_eq!(env.record(&older).worker.as_deref(), Some("older"));
    assert_eq!(zcard(&mut conn, &idle), 0, "one job per registration");
    // A deadline far past what a registration makes (a clock far off)
    // would keep its entry the newest for that long: it goes.
    drain(&env);
    ghost_as(&env, "far", LEASE, 120_000_000, "p");
    let far = env.enqueue("hello", "{}");
    assert_eq!(env.record(&far).status, Some(Status::Queued));
    assert_eq!(zcard(&mut conn, &idle), 0, "the far entry was dropped");
}

/// Leaving `Q:idle` while Redis refuses for a moment (`BUSY`: a script
/// past its time) is an error to ask again, not a leave: the entry and
/// what the inbox holds are still there, and the next try takes both.
/// (A worker that took itself for gone would hand back the job in its
/// inbox and later run its copy.)
#[test]
fn leaving_while_redis_is_busy_is_asked_again() {
    let env = Env::standalone("handover-busy");
    let keys = env.queue.key_prefix().to_string();
    let idle = format!("{keys}:idle");
    learn_clock(&env.queue, &env);
    let mut conn = env.redis_conn();
    let inbox = ghost_as(&env, "w1", LEASE, 30_000_000, "p");
    let id = env.enqueue("hello", "{}");
    assert_eq!(env.record(&id).worker.as_deref(), Some("w1"));
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("busy-reply-threshold")
        .arg(50)
        .query(&mut conn)
        .unwrap();
    // A script that runs until killed, on a connection of its own.
    let url = env.redis.url();
    let busy = std::thread::spawn(move || {
        let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
        let _: redis::RedisResult<()> = redis::cmd("EVAL")
            .arg("local n = 0 while true do n = n + 1 end")
            .arg(0)
            .query(&mut c);
    });
    std::thread::sleep(Duration::from_millis(200));
    let refused = env.rt.block_on(env.queue.leave_idle(&inbox, "w1", LEASE));
    let e = refused.expect_err("a busy Redis is no leave");
    assert!(e.to_string().contains("BUSY"), "{e}");
    let _: () = redis::cmd("SCRIPT").arg("KILL").query(&mut conn).unwrap();
    busy.join().unwrap();
    assert_eq!(zcard(&mut conn, &idle), 1, "the entry stands");
    let jobs = env
        .rt
        .block_on(env.queue.leave_idle(&inbox, "w1", LEASE))
        .unwrap();
    assert_eq!(jobs.len(), 1, "the job is read on the next try");
    assert_eq!(jobs[0].id, id);
    assert_eq!(zcard(&mut conn, &idle), 0);
}

/// A worker whose job threads and prefetch are all taken reads no inbox
/// until one frees, so it leaves `Q:idle` first: a job enqueued meanwhile
/// goes the normal way (queued, not handed to the full worker) and runs
/// once the slot frees. Once idle again, the worker registers again.
#[test]
fn a_full_worker_leaves_the_idle_workers() {
    let env = Env::standalone("handover-full");
    let idle = format!("{}:idle", env.queue.key_prefix());
    let worker = env.worker(&[("spin", "spin"), ("hello", "hello")], |c| {
        c.concurrency = 1;
        c.prefetch = 0;
        c.limits.timeout = Duration::from_millis(1500);
    });
    let entries = || zcard(&mut env.redis_conn(), &idle);
    env.wait_for("the worker to register", || entries() == 1);
    let mut spin = env.job("spin", "{}");
    spin.max_attempts = 1;
    let spin = env.enqueue_job(spin);
    env.wait_until(&spin, |r| r.status == Some(Status::Running));
    env.wait_for("the full worker to leave", || entries() == 0);
    let id = env.enqueue("hello", r#"{"name":"after"}"#);
    let queued = env.record(&id);
    assert_eq!(
        (queued.status, queued.worker),
        (Some(Status::Queued), None),
        "not handed to the full worker"
    );
    let record = env.wait(&id);
    assert_eq!(record.status, Some(Status::Succeeded));
    assert_eq!(env.wait(&spin).status, Some(Status::Dead));
    env.wait_for("the worker to register again", || entries() == 1);
    worker.stop();
    assert_eq!(entries(), 0, "a stopped worker leaves");
}

/// Cut a registered waiter's wait off the way a lost connection does:
/// `CLIENT KILL` of its blocked `BLPOP`. Its entry stays in `Q:idle`.
fn cut_off_wait(
    env: &Env,
    queue: &Queue,
    waiter: &mut spool_runtime::queue::WakeWait,
    worker: &str,
) {
    let idle = format!("{}:idle", env.queue.key_prefix());
    let waited = env.rt.block_on(async {
        let wait = queue.wait_for_work(waiter, Duration::from_secs(5), Some((worker, LEASE)));
        let kill = async {
            let mut c = env.redis_conn();
            let start = std::time::Instant::now();
            loop {
                let clients: String = redis::cmd("CLIENT").arg("LIST").query(&mut c).unwrap();
                assert!(
                    start.elapsed() < Duration::from_secs(4),
                    "no wait blocked: {clients}"
                );
                // Blocked now (flag b), not a client whose last command
                // was a BLPOP.
                let blocked = clients
                    .lines()
                    .find(|l| l.contains(" flags=b ") && l.contains(" cmd=blpop "))
                    .and_then(|l| l.strip_prefix("id=")?.split(' ').next().map(str::to_string));
                if let Some(id) = blocked.filter(|_| zcard(&mut c, &idle) > 0) {
                    let _: () = redis::cmd("CLIENT")
                        .arg("KILL")
                        .arg("ID")
                        .arg(id)
                        .query(&mut c)
                        .unwrap();
                    break;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        };
        tokio::join!(wait, kill).0
    });
    assert!(waited.is_err(), "the wait was cut off: {waited:?}");
}

/// A wait cut off (a lost connection, the stop signal) may leave a job an
/// enqueue handed over, leased to the worker: leaving `Q:idle` reads it
/// from the inbox. If the job went with the reply the cut wait never
/// read, the inbox is empty, and the recovery of a lost claim (which the
/// worker runs after every cut-off wait) hands the job back without
/// spending its attempt. Either way the entry is gone after leaving.
#[test]
fn a_wait_cut_off_after_a_hand_over_still_gets_its_job() {
    let env = Env::standalone("handover-cut");
    let keys = env.queue.key_prefix().to_string();
    let queue = env.queue.clone();
    learn_clock(&queue, &env);
    let idle = format!("{keys}:idle");
    let leave = |waiter: &spool_runtime::queue::WakeWait, worker: &str| {
        env.rt
            .block_on(queue.leave_idle(waiter.inbox(), worker, LEASE))
            .unwrap()
    };
    // Handed over after the cut: read from the inbox on leaving.
    let mut waiter = env.rt.block_on(queue.wake_waiter()).unwrap();
    cut_off_wait(&env, &queue, &mut waiter, "w1");
    let id = env.enqueue("hello", "{}");
    assert_eq!(env.record(&id).status, Some(Status::Running));
    assert_eq!(zcard(&mut env.redis_conn(), &idle), 1, "the entry stands");
    let jobs = leave(&waiter, "w1");
    assert_eq!(jobs.len(), 1);
    assert_eq!(zcard(&mut env.redis_conn(), &idle), 0, "left");
    assert_eq!((jobs[0].id.as_str(), jobs[0].attempt), (id.as_str(), 1));
    let applied = env
        .rt
        .block_on(queue.ack(&[jobs[0].outcome(Next::Succeeded)]))
        .unwrap();
    assert_eq!(applied, vec![true]);
    // Handed over, and the entry gone with a lost reply (popped here by
    // hand): nothing to read, so what is leased to the worker goes back.
    let mut waiter = env.rt.block_on(queue.wake_waiter()).unwrap();
    cut_off_wait(&env, &queue, &mut waiter, "w2");
    let id = env.enqueue("hello", "{}");
    let _: Vec<Vec<u8>> = redis::cmd("LPOP")
        .arg(waiter.inbox())
        .arg(16)
        .query(&mut env.redis_conn())
        .unwrap();
    let jobs = leave(&waiter, "w2");
    assert!(jobs.is_empty());
    let back = env.rt.block_on(queue.recover("w2", &[])).unwrap();
    assert_eq!(back, vec![id.clone()]);
    let record = env.record(&id);
    assert_eq!((record.status, record.attempts), (Some(Status::Queued), 0));
    let claim = env.rt.block_on(queue.claim("w3", 10, LEASE)).unwrap();
    assert_eq!(
        (claim.jobs[0].id.as_str(), claim.jobs[0].attempt),
        (id.as_str(), 1)
    );
    // Still registered: nothing was handed over.
    // (The hand-back left a wake token, which would end the next wait.)
    let _: () = redis::cmd("DEL")
        .arg(format!("{keys}:wake"))
        .query(&mut env.redis_conn())
        .unwrap();
    let mut waiter = env.rt.block_on(queue.wake_waiter()).unwrap();
    cut_off_wait(&env, &queue, &mut waiter, "w4");
    assert!(leave(&waiter, "w4").is_empty());
    assert_eq!(zcard(&mut env.redis_conn(), &idle), 0);
}

/// `Q:inboxes`' entry for `inbox`, if any (µs, Redis' clock).
fn inbox_until(env: &Env, conn: &mut SyncConn, inbox: &str) -> Option<u64> {
    redis::cmd("ZSCORE")
        .arg(format!("{}:inboxes", env.queue.key_prefix()))
        .arg(inbox)
        .query(conn)
        .unwrap()
}

/// A waiter registers its own list in `Q:inboxes` for a minute past its
/// wait, so an enqueue that hands it a job sets no expiry on the list (a
/// command fewer per job). A worker killed right then (here: a wait cut
/// off and never left) leaves the job's copy there; once its registration
/// lapses a worker deletes the list (every ten seconds, one worker of the
/// fleet, under a lock of its own), and only a waiter's own list: a
/// registration naming another key is dropped and the key left alone. A
/// registration still current is kept.
#[test]
fn a_worker_deletes_the_inbox_of_a_waiter_gone_and_nothing_else() {
    let env = Env::standalone("handover-reap");
    let keys = env.queue.key_prefix().to_string();
    let queue = env.queue.clone();
    learn_clock(&queue, &env);
    let mut conn = env.redis_conn();
    let inboxes = format!("{keys}:inboxes");
    let mut gone = env.rt.block_on(queue.wake_waiter()).unwrap();
    assert!(
        gone.inbox().starts_with(&format!("{keys}:wake:r:")),
        "{}",
        gone.inbox()
    );
    let before = redis_now(&mut conn);
    cut_off_wait(&env, &queue, &mut gone, "gone");
    let until = inbox_until(&env, &mut conn, gone.inbox()).expect("registered when made");
    // At least the wait (5 s) and its slack, and the minute past it; at
    // most a minute and a half from when it was made.
    assert!(
        until >= before + 65_000_000 && until <= redis_now(&mut conn) + 91_000_000,
        "registered until {until}, {before} before the wait"
    );
    let expiries = crate::queue::calls(&mut conn, "pexpire");
    let id = env.enqueue("hello", "{}");
    assert_eq!(env.record(&id).status, Some(Status::Running));
    assert_eq!(
        crate::queue::calls(&mut conn, "pexpire"),
        expiries,
        "no expiry set on a registered inbox"
    );
    let ttl: i64 = redis::cmd("PTTL")
        .arg(gone.inbox())
        .query(&mut conn)
        .unwrap();
    assert_eq!(ttl, -1, "the job waits in the inbox, which does not expire");
    // A waiter still waiting, with a job in its list as an enqueue would
    // leave it just before its wait's reply.
    let mut live = env.rt.block_on(queue.wake_waiter()).unwrap();
    cut_off_wait(&env, &queue, &mut live, "live");
    let _: () = redis::cmd("RPUSH")
        .arg(live.inbox())
        .arg("j-not-yet-read")
        .query(&mut conn)
        .unwrap();
    // A registration naming a key that is not a waiter's list.
    let _: () = redis::cmd("ZADD")
        .arg(&inboxes)
        .arg(1)
        .arg(format!("{keys}:seq"))
        .query(&mut conn)
        .unwrap();
    let period = Duration::from_secs(60);
    let reap = |worker: &str| env.rt.block_on(queue.reap_inboxes(worker, period)).unwrap();
    let sweep = || -> i64 {
        // (As if a period had passed since the last turn.)
        let _: () = redis::cmd("DEL")
            .arg(format!("{keys}:reap"))
            .query(&mut env.redis_conn())
            .unwrap();
        reap("sweeper")
    };
    // The registration naming another key lapsed.
    assert_eq!(sweep(), 1);
    // Nothing of the gone waiter lapsed yet.
    assert_eq!(
        redis::cmd("LLEN")
            .arg(gone.inbox())
            .query::<u64>(&mut conn)
            .unwrap(),
        1
    );
    // A minute and more later (its registration put back in time).
    let _: () = redis::cmd("ZADD")
        .arg(&inboxes)
        .arg("XX")
        .arg(redis_now(&mut conn) - 1)
        .arg(gone.inbox())
        .query(&mut conn)
        .unwrap();
    // Once per period: a worker that finds the turn taken leaves it.
    assert_eq!(reap("other"), 0);
    assert!(inbox_until(&env, &mut conn, gone.inbox()).is_some());
    assert_eq!(sweep(), 1);
    let exists = |conn: &mut SyncConn, key: &str| -> bool {
        redis::cmd("EXISTS").arg(key).query::<u64>(conn).unwrap() == 1
    };
    assert!(
        !exists(&mut conn, gone.inbox()),
        "the gone waiter's list was deleted"
    );
    assert_eq!(inbox_until(&env, &mut conn, gone.inbox()), None);
    assert!(
        exists(&mut conn, live.inbox()),
        "a current registration's list stays"
    );
    assert!(inbox_until(&env, &mut conn, live.inbox()).is_some());
    assert_eq!(inbox_until(&env, &mut conn, &format!("{keys}:seq")), None);
    let kind: String = redis::cmd("TYPE")
        .arg(format!("{keys}:seq"))
        .query(&mut conn)
        .unwrap();
    assert_eq!(kind, "zset", "the other key was left alone");
    // The job itself is leased: it runs again when its lease lapses
    // (a_job_handed_to_a_dead_worker_runs_again_after_its_lease).
    assert_eq!(env.record(&id).status, Some(Status::Running));
}

/// A waiter whose registration in `Q:inboxes` Redis refuses (here the key
/// is of another type, written by hand) never enters `Q:idle`: a job
/// handed to it would be in a list the sweep does not know of, left there
/// for good if its worker died. Its wait still ends with the wake token,
/// and the job goes the normal way.
#[test]
fn a_waiter_whose_registration_is_refused_is_handed_nothing() {
    let env = Env::standalone("handover-refused");
    let keys = env.queue.key_prefix().to_string();
    let queue = env.queue.clone();
    learn_clock(&queue, &env);
    let idle = format!("{keys}:idle");
    let _: () = redis::cmd("SET")
        .arg(format!("{keys}:inboxes"))
        .arg("not a sorted set")
        .query(&mut env.redis_conn())
        .unwrap();
    let (woke, id) = env.rt.block_on(async {
        let mut waiter = queue.wake_waiter().await.unwrap();
        let wait = queue.wait_for_work(&mut waiter, Duration::from_secs(5), Some(("w1", LEASE)));
        let enqueue = async {
            // Blocked in its wait by now (it would have registered first).
            let mut c = env.redis_conn();
            let start = std::time::Instant::now();
            loop {
                let clients: String = redis::cmd("CLIENT").arg("LIST").query(&mut c).unwrap();
                if clients.lines().any(|l| l.contains(" flags=b ")) {
                    break;
                }
                assert!(start.elapsed() < Duration::from_secs(4), "no wait blocked");
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            assert_eq!(zcard(&mut c, &idle), 0, "not registered for a hand-over");
            queue.enqueue(&env.job("hello", "{}")).await.unwrap().id
        };
        let (woke, id) = tokio::join!(wait, enqueue);
        (woke.unwrap(), id)
    });
    assert!(
        woke.jobs.is_empty() && woke.claim,
        "woken to claim: {woke:?}"
    );
    assert_eq!(env.record(&id).status, Some(Status::Queued));
}

/// End to end with `spool worker` processes: an idle worker runs a job
/// handed to it; stopped, it leaves `Q:idle` (the next job waits for the
/// next worker, not lost); killed with `kill -9` while registered, the job
/// handed to it runs on the next worker once the lease lapses.
#[test]
fn workers_run_handed_jobs_and_lose_none_when_stopped_or_killed() {
    let env = Env::standalone("handover-workers");
    let keys = env.queue.key_prefix().to_string();
    let idle = format!("{keys}:idle");
    let dir = env.plugins_dir(&[("hello", "hello")]);
    let registered = |env: &Env| {
        env.wait_for("a worker to wait in Q:idle", || {
            zcard(&mut env.redis_conn(), &idle) > 0
        });
    };
    let mut first = env.worker_process(crate::SPOOL, &dir, &["--id", "first"]);
    registered(&env);
    let id = env.enqueue("hello", r#"{"name":"a"}"#);
    let record = env.wait(&id);
    assert_eq!(record.status, Some(Status::Succeeded));
    assert_eq!(
        (record.worker.as_deref(), record.attempts),
        (Some("first"), 1)
    );
    registered(&env);
    first.signal("TERM");
    assert!(first.wait().success(), "{}", first.stderr());
    assert_eq!(
        zcard(&mut env.redis_conn(), &idle),
        0,
        "a stopped worker left Q:idle"
    );
    let waiting = env.enqueue("hello", r#"{"name":"b"}"#);
    assert_eq!(env.record(&waiting).status, Some(Status::Queued));
    let mut second = env.worker_process(crate::SPOOL, &dir, &["--id", "second"]);
    assert_eq!(env.wait(&waiting).status, Some(Status::Succeeded));
    // Killed while registered: its entry stands until its deadline, so an
    // enqueue now hands it the job, which nobody reads. (Killed between
    // two registrations, it left none: then again, with a new worker.)
    let mut orphan = None;
    for n in 0..5 {
        registered(&env);
        second.kill();
        if zcard(&mut env.redis_conn(), &idle) > 0 {
            orphan = Some(env.enqueue("hello", r#"{"name":"c"}"#));
            break;
        }
        second = env.worker_process(crate::SPOOL, &dir, &["--id", &format!("second-{n}")]);
    }
    let orphan = orphan.expect("a worker killed while registered");
    let record = env.record(&orphan);
    assert_eq!(record.status, Some(Status::Running));
    assert!(
        record.worker.as_deref().unwrap_or("").starts_with("second"),
        "{record:?}"
    );
    let _third = env.worker_process(crate::SPOOL, &dir, &["--id", "third"]);
    let record = env.wait(&orphan);
    assert_eq!(record.status, Some(Status::Succeeded));
    assert_eq!(
        (record.worker.as_deref(), record.attempts),
        (Some("third"), 2)
    );
}

/// On a cluster the record and the queue's keys are on different nodes:
/// no wait registers and no enqueue hands over.
#[test]
fn a_cluster_never_hands_over() {
    let env = Env::on_cluster("handover-cluster");
    let keys = env.queue.key_prefix().to_string();
    let queue = env.queue.clone();
    learn_clock(&queue, &env);
    let handed = env.rt.block_on(async {
        let mut waiter = queue.wake_waiter().await.unwrap();
        let wait =
            queue.wait_for_work(&mut waiter, Duration::from_millis(300), Some(("w1", LEASE)));
        let enqueue = async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            queue.enqueue(&env.job("hello", "{}")).await.unwrap().id
        };
        let (handed, id) = tokio::join!(wait, enqueue);
        (handed.unwrap(), id)
    });
    assert!(handed.0.jobs.is_empty(), "nothing handed over on a cluster");
    assert_eq!(env.record(&handed.1).status, Some(Status::Queued));
    let exists: u64 = redis::cmd("EXISTS")
        .arg(format!("{keys}:idle"))
        .query(&mut env.redis_conn())
        .unwrap();
    assert_eq!(exists, 0);
}

/// The tenant's timer as its slot keeps it (`T:timer`) and as the queue's
/// does (`Q:timers`).
fn timer_of(env: &Env, conn: &mut SyncConn) -> (Option<u64>, Option<u64>) {
    let mine: Option<u64> = redis::cmd("GET")
        .arg(format!("{}:timer", env.tenant_keys("default")))
        .query(conn)
        .unwrap();
    let queue: Option<u64> = redis::cmd("ZSCORE")
        .arg(format!("{}:timers", env.queue.key_prefix()))
        .arg("default")
        .query(conn)
        .unwrap();
    (mine, queue)
}

/// Sleep until Redis' clock passes `at_us`.
fn sleep_past(conn: &mut SyncConn, at_us: u64) {
    while redis_now(conn) < at_us {
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A handed-over job's lease end (its entry `ID TOKEN` in `T:leased`),
/// and its token.
fn lease_of(env: &Env, conn: &mut SyncConn, id: &str) -> (u64, String) {
    let token: String = redis::cmd("HGET")
        .arg(format!("{}:job:{id}", env.tenant_keys("default")))
        .arg("token")
        .query(conn)
        .unwrap();
    let end: Option<u64> = redis::cmd("ZSCORE")
        .arg(format!("{}:leased", env.tenant_keys("default")))
        .arg(format!("{id} {token}"))
        .query(conn)
        .unwrap();
    (end.expect("a lease"), token)
}

/// At idle each lone job is handed over while the visit its predecessor
/// asked for (that lease's end) is still to come: the hand-over leaves
/// that visit as it is (three commands fewer per idle job than asking for
/// one each time). The visit finds the new lease and times the tenant by
/// it, and a job handed to a worker that died is reaped then and runs
/// again.
#[test]
fn a_lone_job_after_another_keeps_the_visit_asked_for_and_is_reaped_by_it() {
    let env = Env::standalone("handover-timer");
    learn_clock(&env.queue, &env);
    let mut conn = env.redis_conn();
    // A first job leased for 3 s: its end is the visit.
    ghost(&env, "first", Duration::from_secs(3), 30_000_000);
    let first = env.enqueue("hello", "{}");
    let (first_end, token) = lease_of(&env, &mut conn, &first);
    assert_eq!(
        timer_of(&env, &mut conn),
        (Some(first_end), Some(first_end))
    );
    finish(&env, &first, &token);
    // The next, leased for 6 s: the visit at the first's end stands.
    ghost(&env, "dead", Duration::from_secs(6), 30_000_000);
    let second = env.enqueue("hello", "{}");
    let (second_end, _) = lease_of(&env, &mut conn, &second);
    assert!(second_end > first_end + 2_000_000);
    assert_eq!(
        timer_of(&env, &mut conn),
        (Some(first_end), Some(first_end)),
        "an earlier visit still to come stands"
    );
    // The visit: a claim finds the lease running, and times the tenant by
    // its end.
    sleep_past(&mut conn, first_end + 100_000);
    let claim = env.rt.block_on(env.queue.claim("w2", 10, LEASE)).unwrap();
    assert!(claim.jobs.is_empty(), "the lease still runs");
    assert_eq!(
        timer_of(&env, &mut conn),
        (Some(second_end), Some(second_end)),
        "the visit asks for the lease's end"
    );
    // Its worker is dead: once the lease lapses the job runs again.
    sleep_past(&mut conn, second_end + 100_000);
    let job = claimed_again(&env);
    assert_eq!((job.id.as_str(), job.attempt), (second.as_str(), 2));
}

/// Ack `id`'s attempt `token` as a success.
fn finish(env: &Env, id: &str, token: &str) {
    let done = crate::scripts::outcome(id, token, Next::Succeeded);
    let applied = env.rt.block_on(env.queue.ack(&[done])).unwrap();
    assert_eq!(applied, vec![true]);
}

/// A visit asked for is never brought forward by a hand-over, even when it
/// comes after the new lease's end (the job before was leased longer, by
/// a worker with a longer `--lease`). A lapse of the shorter lease is then
/// reaped by the sweep's look at every tenant outside the ready set, once
/// its lease has lapsed: within the sweep's period after the lease's end,
/// not at that later visit.
#[test]
fn a_lease_shorter_than_the_visit_asked_for_is_reaped_by_the_sweep() {
    let env = Env::standalone("handover-sweep");
    learn_clock(&env.queue, &env);
    let mut conn = env.redis_conn();
    // A first job leased for a minute: its end is the visit.
    ghost(&env, "first", Duration::from_secs(60), 30_000_000);
    let first = env.enqueue("hello", "{}");
    let (first_end, token) = lease_of(&env, &mut conn, &first);
    finish(&env, &first, &token);
    // The next, leased for 2 s by a worker that dies.
    ghost(&env, "dead", Duration::from_secs(2), 30_000_000);
    let second = env.enqueue("hello", "{}");
    let (second_end, _) = lease_of(&env, &mut conn, &second);
    assert_eq!(
        timer_of(&env, &mut conn),
        (Some(first_end), Some(first_end)),
        "a later visit stands"
    );
    // Once the lease ends, the sweep reaps it (no claim would visit the
    // tenant before the first job's end), and it runs again long before
    // that visit.
    sleep_past(&mut conn, second_end + 100_000);
    let swept = env
        .rt
        .block_on(
            env.queue
                .sweep("sweeper", Duration::from_secs(1), Duration::from_millis(1)),
        )
        .unwrap();
    assert!(swept.is_some_and(|s| s.visited == 1), "{swept:?}");
    let job = claimed_again(&env);
    assert_eq!((job.id.as_str(), job.attempt), (second.as_str(), 2));
    assert!(
        redis_now(&mut conn) < first_end,
        "reaped before the later visit"
    );
}
