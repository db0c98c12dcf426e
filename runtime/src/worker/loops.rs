//! The worker's three Redis loops: claiming (with the idle wait on the wake
//! list and the recovery of lost claim replies), acking (batched, two
//! batches in flight, never dropping an outcome Redis has not seen) and
//! renewing leases.

use super::budget::{Budget, over_bytes, worth_claiming};
use super::linger::Linger;
use super::{Counters, InFlight};
use crate::locks::lock;
use crate::queue::{ClaimedJob, Next, Outcome, Queue, QueueError};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

/// Logs an outage once when it starts and once when it ends, and counts
/// failures and recoveries for the metrics.
#[derive(Default)]
struct Outage {
    since: Option<Instant>,
    delay: Duration,
    metrics: Option<Arc<crate::metrics::Metrics>>,
}

impl Outage {
    fn counting(metrics: &Arc<crate::metrics::Metrics>) -> Self {
        Outage {
            metrics: Some(Arc::clone(metrics)),
            ..Outage::default()
        }
    }

    fn failed(&mut self, what: &str, error: &QueueError) -> Duration {
        if let Some(m) = &self.metrics {
            m.redis(false);
        }
        if self.since.is_none() {
            tracing::warn!("{what}: {error}");
            self.since = Some(Instant::now());
            self.delay = Duration::from_millis(50);
        } else {
            tracing::debug!("{what}: {error}");
            self.delay = (self.delay * 2).min(Duration::from_secs(2));
        }
        self.delay
    }

    fn ok(&mut self, what: &str) {
        if let Some(since) = self.since.take() {
            if let Some(m) = &self.metrics {
                m.redis(true);
            }
            tracing::warn!(
                "{what}: redis is back after {:.1}s",
                since.elapsed().as_secs_f64()
            );
        }
    }
}

/// Claim jobs into the local queue while there is room, until `stop`.
pub(super) async fn claim_loop(
    queue: Queue,
    config: super::WorkerConfig,
    budget: Arc<Budget>,
    in_flight: InFlight,
    jobs: crossbeam_channel::Sender<ClaimedJob>,
    synced: Option<watch::Receiver<bool>>,
    mut stop: watch::Receiver<bool>,
) {
    if let Some(synced) = synced
        && !first_sync(synced, config.fleet_sync_wait, &mut stop).await
    {
        return;
    }
    // Synced with the fleet store (or not following it), plugins loaded:
    // serving from here on.
    config.metrics.set_ready(true);
    let outage = Outage::counting(&config.metrics);
    let mut claimer = Claimer {
        queue,
        config,
        budget,
        in_flight,
        jobs,
        stop,
        outage,
        blocking: None,
        lost_claim: false,
        retry_unsure_at: None,
        empty: 0,
        unsure: Vec::new(),
        handed: false,
        due_at: None,
        inbox: None,
        leave_unsure: false,
        registered: false,
    };
    while !*claimer.stop.borrow() {
        if let Step::Stop = claimer.step().await {
            break;
        }
    }
    claimer.recover_on_exit().await;
}

/// Wait for the fleet task's first sync (pins loaded), saying so every
/// 10 s; after `limit`, if given, go on without it. False: stopped first.
async fn first_sync(
    mut synced: watch::Receiver<bool>,
    limit: Option<Duration>,
    stop: &mut watch::Receiver<bool>,
) -> bool {
    let started = Instant::now();
    loop {
        let left = limit.map_or(Duration::MAX, |l| l.saturating_sub(started.elapsed()));
        let nag = tokio::time::sleep(Duration::from_secs(10).min(left));
        tokio::select! {
            r = synced.wait_for(|done| *done) => {
                if r.is_err() {
                    tracing::error!("the fleet task ended before its first sync; claiming with this worker's directory versions");
                }
                return true;
            }
            _ = stop.changed() => return false,
            () = nag => {}
        }
        let waited = started.elapsed();
        if limit.is_some_and(|l| waited >= l) {
            tracing::error!(
                "no sync with the fleet store after {}s: claiming jobs with this worker's directory versions (--fleet-sync-wait); pinned versions load once it answers",
                waited.as_secs()
            );
            return true;
        }
        tracing::warn!(
            "waiting for the fleet store before the first claim ({}s so far): pinned versions must load first (--fleet-sync-wait to claim anyway after a while)",
            waited.as_secs()
        );
    }
}

/// What the claim loop does next.
enum Step {
    Continue,
    Stop,
}

/// The claim loop's state.
struct Claimer {
    queue: Queue,
    config: super::WorkerConfig,
    budget: Arc<Budget>,
    in_flight: InFlight,
    jobs: crossbeam_channel::Sender<ClaimedJob>,
    stop: watch::Receiver<bool>,
    outage: Outage,
    /// The connection idle waits block on; rebuilt when it fails.
    blocking: Option<crate::queue::WakeWait>,
    /// The last claim failed: it may have been applied with its reply lost.
    lost_claim: bool,
    /// Recovering the unsure tenants failed (their master is away): claims
    /// for the others go on meanwhile, and recovery is tried again then.
    retry_unsure_at: Option<std::time::Instant>,
    /// Claims in a row that got no job.
    empty: u32,
    /// Tenants whose claim replies could not be read: their claims may
    /// have leased jobs to us (see [`crate::queue::Claim::unsure`]).
    unsure: Vec<String>,
    /// The last wait ended with a job handed over: wait again next.
    handed: bool,
    /// When the last wait would have ended by its timer.
    due_at: Option<Instant>,
    /// The own list (inbox) of the last idle wait's connection: where a
    /// job handed to this worker lands.
    inbox: Option<String>,
    /// A wait was cut off and leaving `Q:idle` has not been answered yet:
    /// nothing else happens until it is (queue/idle.rs).
    leave_unsure: bool,
    /// This worker may be registered in `Q:idle` (its last wait made the
    /// entry, and it has not left since): the entry stands across waits
    /// and claims, and must be left before the worker stops reading its
    /// inbox (full, stopping).
    registered: bool,
}

impl Claimer {
    /// One turn: wait for room, recover a lost claim, claim, and wait for
    /// work when the queue ran dry. Waits end at the stop signal; a claim
    /// under way is never cut off (its jobs would stay leased to nobody).
    async fn step(&mut self) -> Step {
        // First learn whether a wait cut off left us a job handed over,
        // then hand back what a lost claim may have leased to us: those
        // leases are not renewed, and lapse in --lease.
        if self.leave_unsure {
            return self.leave_idle().await;
        }
        let unsure_due = self
            .retry_unsure_at
            .is_none_or(|at| std::time::Instant::now() >= at);
        if self.lost_claim || (!self.unsure.is_empty() && unsure_due) {
            // A job handed over and still in the inbox is leased to us and
            // unknown: the recovery would hand it back and a later wait
            // read it too. So leave first, and know what it reads.
            if self.registered() {
                return self.leave_idle().await;
            }
            return self.recover().await;
        }
        let Some(want) = self.want() else {
            // Full: no wait reads the inbox until room frees, so no job may
            // be handed over meanwhile (idle.rs).
            if self.registered() {
                return self.leave_idle().await;
            }
            let freed = Arc::clone(&self.budget);
            return self.until_stopped(freed.freed.notified()).await;
        };
        if self.handed {
            return self.idle_again(want).await;
        }
        self.claim(want).await
    }

    /// Claim up to `want` jobs, and wait for work when the queue ran dry.
    async fn claim(&mut self, want: usize) -> Step {
        let c = &self.config;
        match self
            .queue
            .claim_backing_off(&c.worker_id, want, c.lease, c.backoff)
            .await
        {
            Ok(claim) => {
                self.outage.ok("claim");
                // Hand back, before the next claim, what a reply we could
                // not read may have leased to us.
                self.unsure.extend(claim.unsure);
                let got = claim.jobs.len();
                for job in claim.jobs {
                    if let Step::Stop = self.take(job) {
                        return Step::Stop;
                    }
                }
                // Fewer than asked, and no tenant visited (or picked for the
                // next claim) has more: wait for work (or the next timer).
                // A claim that got nothing three times in a row waits too,
                // whatever the pick says.
                self.empty = if got == 0 { self.empty + 1 } else { 0 };
                if (got < want && !claim.more) || self.empty >= 3 {
                    self.empty = 0;
                    return self.idle(claim.next_due).await;
                }
                Step::Continue
            }
            Err(e) => {
                self.lost_claim = true;
                let delay = self.outage.failed("claiming jobs", &e);
                self.until_stopped(tokio::time::sleep(delay)).await
            }
        }
    }

    /// A job leased to this worker (claimed, or handed over at idle): held
    /// in flight (its lease renewed) and queued for a job thread.
    fn take(&mut self, job: ClaimedJob) -> Step {
        let held = {
            let mut flight = lock(&self.in_flight);
            flight.insert((job.tenant.clone(), job.id.clone()), job.token.clone());
            flight.len()
        };
        self.config.metrics.set_in_flight(held);
        self.budget.queued(job.payload.len());
        if self.jobs.send(job).is_err() {
            return Step::Stop;
        }
        Step::Continue
    }

    /// How many jobs to claim now, if a claim is worth it (see
    /// [`worth_claiming`]). Jobs finished and waiting for their ack
    /// count as held: counting only unfinished ones raced with a job
    /// thread taking a job (neither waiting nor running for a moment),
    /// and claimed past `--prefetch 0`.
    fn want(&self) -> Option<usize> {
        let waiting_bytes = self.budget.waiting_bytes.load(Ordering::Relaxed);
        if over_bytes(self.jobs.len(), waiting_bytes, self.config.claim_bytes) {
            return None;
        }
        let held = lock(&self.in_flight).len();
        let limit = self.budget.limit();
        let room = limit.saturating_sub(held);
        worth_claiming(room, self.jobs.len(), limit, self.config.batch)
            .then(|| room.min(self.config.batch.max(1)))
    }

    /// Wait for `wait`, or until the stop signal.
    async fn until_stopped(&mut self, wait: impl std::future::Future) -> Step {
        tokio::select! {
            _ = wait => Step::Continue,
            _ = self.stop.changed() => Step::Stop,
        }
    }

    /// Hand back whatever a claim whose reply was lost leased to us, before
    /// claiming more.
    async fn recover(&mut self) -> Step {
        let known: Vec<(String, String)> = lock(&self.in_flight).keys().cloned().collect();
        let worker = &self.config.worker_id;
        let recovered = if self.lost_claim {
            self.queue.recover(worker, &known).await
        } else {
            let tenants = std::mem::take(&mut self.unsure);
            let r = self.queue.recover_tenants(worker, &tenants, &known).await;
            if let Err(e) = &r {
                // Their master is away: the other tenants' claims go on,
                // and these are tried again after the outage's delay.
                let delay = self.outage.failed("recovering a lost claim", e);
                self.retry_unsure_at = Some(std::time::Instant::now() + delay);
                self.unsure = tenants;
                return Step::Continue;
            }
            r
        };
        match recovered {
            Ok(released) => {
                self.lost_claim = false;
                self.unsure.clear();
                self.retry_unsure_at = None;
                if !released.is_empty() {
                    tracing::warn!(
                        jobs = released.len(),
                        "handed back jobs of a claim whose reply was lost"
                    );
                }
                Step::Continue
            }
            Err(e) => {
                let delay = self.outage.failed("recovering a lost claim", &e);
                self.until_stopped(tokio::time::sleep(delay)).await
            }
        }
    }

    /// On the way out, a few quick tries to hand back what a claim whose
    /// reply was lost may have leased to us: stopped while it waited to
    /// recover (Redis away), the worker would otherwise leave those jobs
    /// to their leases, each lapse spending an attempt. (The first call
    /// after an outage may meet the dropped connection; the next one
    /// opens a new one.)
    async fn recover_on_exit(&mut self) {
        if self.leave_unsure || self.registered() {
            self.leave_on_stop().await;
        }
        if !self.lost_claim && self.unsure.is_empty() {
            return;
        }
        let known: Vec<(String, String)> = lock(&self.in_flight).keys().cloned().collect();
        let worker = &self.config.worker_id;
        let mut tries = 0;
        let recovered = loop {
            let r = if self.lost_claim {
                self.queue.recover(worker, &known).await
            } else {
                self.queue
                    .recover_tenants(worker, &self.unsure, &known)
                    .await
            };
            tries += 1;
            match r {
                Err(e) if e.is_retryable() && tries < 3 => {
                    tokio::time::sleep(Duration::from_millis(100 * tries)).await;
                }
                r => break r,
            }
        };
        match recovered {
            Ok(released) if !released.is_empty() => tracing::warn!(
                jobs = released.len(),
                "stopping: handed back jobs of a claim whose reply was lost"
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!(
                "stopping: could not hand back the jobs of a claim whose reply was lost ({e}); they run again when their leases lapse"
            ),
        }
    }

    /// Block until an enqueue into an empty list pushes the wake token
    /// (or hands this worker its job), or the next delayed job is due, or
    /// a second passes (so that expired leases are reaped).
    async fn idle(&mut self, next_due: Option<Duration>) -> Step {
        let timeout = next_due
            .map_or(Duration::from_secs(1), |d| d.min(Duration::from_secs(1)))
            .max(Duration::from_millis(1));
        self.due_at = Some(Instant::now() + timeout);
        if self.blocking.is_none() {
            self.blocking = self.queue.wake_waiter().await.ok();
        }
        let Some(mut conn) = self.blocking.take() else {
            // No blocking connection: wait out the (short) timeout instead.
            tokio::time::sleep(timeout).await;
            return Step::Continue;
        };
        self.inbox = Some(conn.inbox().to_string());
        // As many jobs handed over as there is room for, in one reply.
        conn.read_up_to(self.room());
        // Bounded even if the connection went half-open (no reply ever
        // comes): then it is rebuilt.
        let queue = self.queue.clone();
        let (worker, lease) = (self.config.worker_id.clone(), self.config.lease);
        let wait = tokio::time::timeout(
            timeout + Duration::from_secs(2),
            queue.wait_for_work(&mut conn, timeout, Some((&worker, lease))),
        );
        let waited = tokio::select! {
            r = wait => Some(r),
            _ = self.stop.changed() => None,
        };
        match waited {
            Some(Ok(Ok(woke))) => {
                self.registered = conn.registered();
                self.blocking = Some(conn);
                // Handed over as the wait's reply: the next turn waits
                // again rather than claim (an enqueue meanwhile pushes a
                // wake token).
                self.handed = !woke.jobs.is_empty() && !woke.claim;
                self.take_handed(woke.jobs)
            }
            None => {
                // Leave, and hand back on the way out.
                self.wait_unread();
                self.leave_on_stop().await;
                Step::Stop
            }
            // Cut off (an error, or no answer in time): first leave
            // `Q:idle` and read the inbox (`leave_idle`, which tells
            // whether Redis is down), then hand back what the lost reply
            // may have carried; this connection is just rebuilt.
            Some(waited) => {
                if let Ok(Err(e)) = waited {
                    tracing::debug!("waiting for work: {e}");
                }
                self.wait_unread();
                self.leave_unsure = true;
                self.until_stopped(tokio::time::sleep(Duration::from_millis(50)))
                    .await
            }
        }
    }

    /// A wait's reply was not read (stopped, or cut off): the worker may
    /// still be registered, and a job the wait popped is leased to it,
    /// unknown, so the recovery of a lost claim follows its leave. (Not on
    /// a cluster: no job is handed over there.)
    fn wait_unread(&mut self) {
        self.registered = self.queue.hands_over();
        self.lost_claim |= self.registered;
    }

    /// Jobs handed over to this worker: leased to it, to run. One it
    /// holds already under the same token is not run twice (its entry
    /// back in the inbox after Redis restarted from a file that had the
    /// hand-over but not the pop).
    fn take_handed(&mut self, jobs: Vec<ClaimedJob>) -> Step {
        for job in self.not_held(jobs) {
            self.config.metrics.handed_over();
            if let Step::Stop = self.take(job) {
                return Step::Stop;
            }
        }
        Step::Continue
    }

    /// Whether this worker may be registered in `Q:idle` (an enqueue may
    /// hand it a job until it leaves).
    fn registered(&self) -> bool {
        self.registered && self.inbox.is_some()
    }

    /// Stopping: leave `Q:idle`; what was handed to us (or may have been,
    /// if Redis did not answer) goes back with the recovery of a lost
    /// claim on the way out.
    async fn leave_on_stop(&mut self) {
        let Some(inbox) = self.inbox.clone() else {
            return;
        };
        let c = &self.config;
        // Asked again while Redis does not answer, for as long as the
        // registration could be taken (its deadline: the wait and a
        // second), so that no enqueue hands a job to a stopped worker.
        let started = Instant::now();
        let mut tried = 0;
        let left = loop {
            tried += 1;
            match self.queue.leave_idle(&inbox, &c.worker_id, c.lease).await {
                Err(e) if e.is_retryable() && started.elapsed() < LEAVE_ON_STOP => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                r => break r,
            }
        };
        // Anything read goes back with the recovery on the way out; a try
        // that failed may have read jobs whose reply it lost.
        if tried > 1 || !matches!(&left, Ok(jobs) if jobs.is_empty()) {
            self.lost_claim = true;
        }
        self.left();
    }

    /// How many more jobs this worker may hold now (its job threads and
    /// prefetch, less what it holds).
    fn room(&self) -> usize {
        let held = lock(&self.in_flight).len();
        self.budget.limit().saturating_sub(held)
    }

    /// `jobs` less those held already under the same token (an entry back
    /// in the inbox after Redis restarted from a file that had the
    /// hand-over but not the pop).
    fn not_held(&self, jobs: Vec<ClaimedJob>) -> Vec<ClaimedJob> {
        let flight = lock(&self.in_flight);
        jobs.into_iter()
            .filter(|job| {
                let key = (job.tenant.clone(), job.id.clone());
                flight.get(&key) != Some(&job.token)
            })
            .collect()
    }

    /// Jobs handed over that this worker has no room for: back to the
    /// queue at once, the attempt not spent. (Failing that, they are
    /// leased to us and unknown: the recovery of a lost claim hands them
    /// back.)
    async fn hand_back(&mut self, jobs: Vec<ClaimedJob>) {
        let outcomes: Vec<_> = jobs
            .iter()
            .map(|j| {
                j.outcome(Next::Requeue {
                    delay: Duration::ZERO,
                })
            })
            .collect();
        if let Err(e) = self.queue.ack(&outcomes).await {
            tracing::warn!("handing back jobs handed over to a full worker: {e}");
            self.lost_claim = true;
        }
    }

    /// Out of `Q:idle`: no enqueue hands this worker a job until its next
    /// wait registers it again.
    fn left(&mut self) {
        self.leave_unsure = false;
        self.registered = false;
        if let Some(conn) = self.blocking.as_mut() {
            conn.left();
        }
    }

    /// Leave `Q:idle` (after a wait cut off, when full, before a
    /// recovery: queue/idle.rs), and take what was handed to us meanwhile,
    /// as far as there is room: the rest goes back to the queue at once,
    /// for an idle worker, rather than wait here behind a slow job. Until
    /// Redis answers, back off and ask again (nothing else happens
    /// meanwhile); a try that failed may have read jobs whose reply it
    /// lost, so the recovery of a lost claim follows.
    async fn leave_idle(&mut self) -> Step {
        let Some(inbox) = self.inbox.clone() else {
            self.left();
            return Step::Continue;
        };
        let c = &self.config;
        match self.queue.leave_idle(&inbox, &c.worker_id, c.lease).await {
            Ok(jobs) => {
                self.left();
                self.outage.ok("leaving the idle workers");
                // (Copies of jobs held already, under the same token, are
                // dropped first: handed back, they would run twice.)
                let mut jobs = self.not_held(jobs);
                let room = self.room();
                if jobs.len() > room {
                    self.hand_back(jobs.split_off(room)).await;
                }
                self.take_handed(jobs)
            }
            Err(e) => {
                self.leave_unsure = true;
                self.lost_claim = true;
                let delay = self.outage.failed("leaving the idle workers", &e);
                self.until_stopped(tokio::time::sleep(delay)).await
            }
        }
    }

    /// After a job handed over at idle: wait again, until the time the
    /// wait before it would have ended (a delayed job due), not claim;
    /// once that time has come, claim (up to `want`): lone jobs that keep
    /// coming to the inbox must not hold back a timer that is due.
    async fn idle_again(&mut self, want: usize) -> Step {
        self.handed = false;
        let now = Instant::now();
        match self.due_at {
            Some(at) if at <= now => self.claim(want).await,
            due => {
                self.idle(due.map(|at| at.saturating_duration_since(now)))
                    .await
            }
        }
    }
}

/// How long a stopping worker asks Redis to take it out of `Q:idle`:
/// past the longest deadline a registration has (a second's wait and a
/// second, queue/idle.rs).
const LEAVE_ON_STOP: Duration = Duration::from_millis(2500);

/// Acks in flight at once: while Redis applies one batch, the next is on
/// its way, so neither Redis nor the job threads wait for a round trip.
const ACKS_IN_FLIGHT: usize = 2;

/// Most outcomes one ack carries: `--batch`, and at least 256 (acks of
/// a few jobs each cost Redis more per job than large ones).
pub(super) fn ack_batch(batch: usize) -> usize {
    batch.max(256)
}

/// How the acker sends: most outcomes per ack ([`ack_batch`]), how long
/// a lone success may wait for company (`--ack-linger`, at most
/// [`ACK_LINGER_MAX`] and a third of the lease), and the worker's stop,
/// which ends a wait and after which none starts.
///
/// [`ACK_LINGER_MAX`]: super::ACK_LINGER_MAX
pub(super) struct AckSettings {
    pub batch: usize,
    pub linger: Duration,
    pub stop: watch::Receiver<bool>,
}

impl AckSettings {
    pub(super) fn of(config: &super::WorkerConfig, stop: &watch::Receiver<bool>) -> Self {
        AckSettings {
            batch: ack_batch(config.batch),
            linger: config
                .ack_linger
                .min(super::ACK_LINGER_MAX)
                .min(config.lease / 3),
            stop: stop.clone(),
        }
    }
}

pub(super) async fn ack_loop(
    queue: Queue,
    settings: AckSettings,
    mut outcomes: mpsc::UnboundedReceiver<Outcome>,
    budget: Arc<Budget>,
    in_flight: InFlight,
    counters: Arc<Counters>,
    metrics: Arc<crate::metrics::Metrics>,
) {
    let mut acking = tokio::task::JoinSet::new();
    let (batch, mut linger) = (settings.batch, Linger::new(settings.linger));
    loop {
        while acking.len() >= ACKS_IN_FLIGHT {
            acking.join_next().await;
        }
        let Some(first) = outcomes.recv().await else {
            break;
        };
        linger.came(&first.tenant, Instant::now());
        let mut pending = Vec::with_capacity(batch);
        pending.push(first);
        take_ready(&mut outcomes, &mut pending, batch, &mut linger);
        let mut closed = false;
        if pending.len() == 1 && !*settings.stop.borrow() {
            // Two free places beside the held ones (this job among them).
            let room = budget.limit() >= lock(&in_flight).len() + 2;
            let may = queue.ack_may_wait(&pending[0]);
            if let Some(wait) = linger.wait(&pending[0].tenant, may, room) {
                let mut company = Company {
                    queue: &queue,
                    batch,
                    stop: settings.stop.clone(),
                };
                closed = company
                    .wait(wait, &mut outcomes, &mut pending, &mut linger)
                    .await;
            }
        }
        let (queue, budget) = (queue.clone(), Arc::clone(&budget));
        let (in_flight, counters) = (Arc::clone(&in_flight), Arc::clone(&counters));
        let metrics = Arc::clone(&metrics);
        acking.spawn(async move {
            let applied = ack_until_seen(&queue, &pending, &mut Outage::counting(&metrics)).await;
            settle(pending, &applied, &in_flight, &counters);
            budget.freed.notify_one();
        });
        if closed {
            break;
        }
    }
    while acking.join_next().await.is_some() {}
}

/// A lone success's wait for company (worker/linger.rs).
struct Company<'q> {
    queue: &'q Queue,
    batch: usize,
    stop: watch::Receiver<bool>,
}

impl Company<'_> {
    /// Wait up to `wait` for an outcome of the lone one's tenant (which
    /// shares its ack call) or one that may not wait (sent at once, and
    /// this one with it), adding whatever comes to `pending`. Another
    /// tenant's outcome that may wait cuts the wait to its own (none, if
    /// its tenant's pace says none): it goes with this one. The worker's
    /// stop ends it. Whether the outcomes' channel closed.
    async fn wait(
        &mut self,
        wait: Duration,
        outcomes: &mut mpsc::UnboundedReceiver<Outcome>,
        pending: &mut Vec<Outcome>,
        linger: &mut Linger,
    ) -> bool {
        let mut until = tokio::time::Instant::now() + wait;
        let tenant = pending[0].tenant.clone();
        loop {
            let next = tokio::select! {
                next = tokio::time::timeout_at(until, outcomes.recv()) => next,
                _ = self.stop.changed() => return false,
            };
            match next {
                Ok(Some(next)) => {
                    linger.came(&next.tenant, Instant::now());
                    let may = self.queue.ack_may_wait(&next);
                    let done = next.tenant == tenant || !may;
                    if !done {
                        let own = linger.wait(&next.tenant, may, true).unwrap_or_default();
                        until = until.min(tokio::time::Instant::now() + own);
                    }
                    pending.push(next);
                    if done || pending.len() >= self.batch {
                        take_ready(outcomes, pending, self.batch, linger);
                        return false;
                    }
                }
                Ok(None) => return true,
                Err(_) => return false,
            }
        }
    }
}

/// Add the outcomes that came meanwhile to `pending`, up to `batch`.
fn take_ready(
    outcomes: &mut mpsc::UnboundedReceiver<Outcome>,
    pending: &mut Vec<Outcome>,
    batch: usize,
    linger: &mut Linger,
) {
    while pending.len() < batch {
        match outcomes.try_recv() {
            Ok(o) => {
                linger.came(&o.tenant, Instant::now());
                pending.push(o);
            }
            Err(_) => break,
        }
    }
}

/// Ack a batch, trying again while Redis is away: an outcome is only
/// dropped once Redis has seen it. (If the lease lapses meanwhile, the ack
/// is refused as stale and the job's new attempt decides.) Returns, per
/// outcome, whether it was applied.
async fn ack_until_seen(queue: &Queue, pending: &[Outcome], outage: &mut Outage) -> Vec<bool> {
    loop {
        match queue.ack(pending).await {
            Ok(applied) => {
                outage.ok("acking jobs");
                return applied;
            }
            Err(e) if e.is_retryable() => {
                let delay = outage.failed("acking jobs", &e);
                tokio::time::sleep(delay).await;
            }
            // Redis refused the batch (a bad key, a script error): ack one
            // by one so that one bad job cannot wedge the worker. An outcome
            // Redis refuses alone is dropped; its lease lapses and the job
            // runs again.
            Err(e) => {
                tracing::error!(
                    "acking {} jobs failed: {e}; acking them one by one",
                    pending.len()
                );
                return ack_one_by_one(queue, pending).await;
            }
        }
    }
}

/// Forget acked jobs (under the same token only) and count the outcomes.
/// (Takes the outcomes: their tenant and id become the lookup key, where
/// copies of them showed in the worker's profile.)
fn settle(pending: Vec<Outcome>, applied: &[bool], in_flight: &InFlight, counters: &Counters) {
    let mut flight = lock(in_flight);
    for (outcome, applied) in pending.into_iter().zip(applied) {
        let key = (outcome.tenant, outcome.id);
        if flight.get(&key) == Some(&outcome.token) {
            flight.remove(&key);
        }
        let counter = if *applied {
            match outcome.next {
                Next::Succeeded => &counters.succeeded,
                Next::Retry { .. } => &counters.retried,
                Next::Dead => &counters.dead,
                Next::Requeue { .. } => &counters.handed_back,
                Next::Wedged { .. } => {
                    counters.metrics.wedged();
                    &counters.wedged
                }
            }
        } else {
            tracing::warn!(job = %key.1, "lease was lost before the ack; outcome discarded");
            counters.metrics.stale();
            &counters.stale
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
    counters.metrics.set_in_flight(flight.len());
}

async fn ack_one_by_one(queue: &Queue, outcomes: &[Outcome]) -> Vec<bool> {
    let mut applied = Vec::with_capacity(outcomes.len());
    for outcome in outcomes {
        let mut delay = Duration::from_millis(50);
        let ok = loop {
            match queue.ack(std::slice::from_ref(outcome)).await {
                Ok(a) => break a.first().copied().unwrap_or(false),
                Err(e) if e.is_retryable() => {
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
                Err(e) => {
                    tracing::error!(job = %outcome.id, "outcome dropped: redis refused it: {e}");
                    break false;
                }
            }
        };
        applied.push(ok);
    }
    applied
}

pub(super) async fn heartbeat_loop(
    queue: Queue,
    lease: Duration,
    in_flight: InFlight,
    metrics: Arc<crate::metrics::Metrics>,
) {
    let every = lease / 3;
    let mut outage = Outage::counting(&metrics);
    loop {
        // Keeps renewing during shutdown too, until the worker aborts it.
        tokio::time::sleep(every).await;
        let running: Vec<(String, String, String)> = lock(&in_flight)
            .iter()
            .map(|((tenant, id), token)| (tenant.clone(), id.clone(), token.clone()))
            .collect();
        for chunk in running.chunks(1000) {
            match queue.heartbeat(chunk, lease).await {
                Ok(renewed) => {
                    outage.ok("renewing leases");
                    for ((tenant, id, token), ok) in chunk.iter().zip(renewed) {
                        // Acked since the snapshot: not lost, just done.
                        let key = (tenant.clone(), id.clone());
                        if !ok && lock(&in_flight).get(&key) == Some(token) {
                            metrics.lease_lost();
                            tracing::warn!(job = %id, "lease lost; another attempt owns the job now");
                        }
                    }
                }
                Err(e) => {
                    outage.failed("renewing leases", &e);
                }
            }
        }
    }
}
