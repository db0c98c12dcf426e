//! The worker: the only place that joins queue, plugins and sandbox.
//!
//! ```text
//!  claimer task ──jobs──▶ job threads (N) ──outcomes──▶ acker task
//!       ▲  claim.lua (batch)      sandbox run           ack.lua (batch)
//!       └─ blocks on the wake list when idle
//!  heartbeat task: renews the leases of every claimed, unacked job
//! ```
//!
//! Redis I/O runs on a small tokio runtime; jobs run on plain threads so
//! that a long job never stalls claiming, acking or heartbeats. Claims and
//! acks are batched: under load one round trip carries many jobs, when idle
//! a job is claimed as soon as an enqueue pushes the wake token.
//!
//! At most `concurrency + prefetch` jobs are claimed and unacked at once. On
//! shutdown the worker stops claiming, lets running jobs finish within the
//! grace period, and hands the rest back (without spending their attempt).

mod budget;
mod cached;
mod execute;
mod fleet;
mod linger;
mod loops;
mod progress;
mod shutdown;
mod spares;
mod sweeper;
mod threads;
mod timeline;
mod watchdog;

pub use crate::queue::DEFAULT_CLAIM_BYTES;
pub use budget::{DEFAULT_BATCH, DEFAULT_PREFETCH, PREFETCH_HORIZON};
pub use linger::{ACK_LINGER, ACK_LINGER_MAX};
pub use sweeper::SWEEP_EVERY;

use crate::cache::{CacheConfig, ResultCache};
use crate::kv::RedisKv;
use crate::plugins::{ArtifactCache, Capabilities, Registry, watcher};
use crate::queue::{ClaimedJob, Outcome, Queue, QueueConfig, QueueError};
use crate::sandbox::{KeyValue, Limits, Sandbox};
use budget::Budget;
use execute::Executor;
use loops::{ack_loop, claim_loop, heartbeat_loop};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use threads::Pool;
use tokio::sync::{Notify, mpsc, watch};
use watchdog::Watch;

/// How a worker runs.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// The queue to serve.
    pub queue: QueueConfig,
    /// Plugins directory (`NAME.wasm`, `TENANT/NAME.wasm`).
    pub plugins_dir: PathBuf,
    /// Jobs run at once (job threads).
    pub concurrency: usize,
    /// Most jobs claimed or acked in one round trip.
    pub batch: usize,
    /// Most jobs claimed ahead, beyond one per job thread. They wait in
    /// this worker's local queue, leased, so no other worker can run them.
    /// The worker claims ahead only what its threads finish within
    /// `prefetch_horizon` at the recent job duration: many for jobs of
    /// microseconds (fewer round trips), none for jobs of seconds (idle
    /// workers get them).
    pub prefetch: usize,
    /// How far ahead, in time, the job threads' work is claimed (at the
    /// recent job duration; [`PREFETCH_HORIZON`] by default).
    pub prefetch_horizon: Duration,
    /// How long a lone success nobody waits for may wait for the next
    /// outcome to share its ack ([`ACK_LINGER`] by default; zero: never).
    pub ack_linger: Duration,
    /// The most bytes of job records one claim takes, and of payloads
    /// claimed ahead that wait for a job thread (0: no limit but `batch`
    /// and `prefetch`); [`DEFAULT_CLAIM_BYTES`] by default.
    pub claim_bytes: usize,
    /// Lease per attempt; renewed every third of it while the job runs.
    pub lease: Duration,
    /// First retry delay (doubles per attempt, with jitter).
    pub backoff: Duration,
    /// How long running jobs may take to finish after a stop signal.
    pub grace: Duration,
    /// How long a job waits for its plugin to be loaded before it dies.
    pub plugin_wait: Duration,
    /// How often to rescan the plugins directory; none = only at start.
    pub rescan: Option<Duration>,
    /// Per-job sandbox limits.
    pub limits: Limits,
    /// Capabilities granted to every plugin.
    pub capabilities: Capabilities,
    /// Outbound HTTP: the private ranges opened, the bounds, and the
    /// process's concurrent requests (which hosts each plugin may call is
    /// its manifest's `[http] allow`).
    pub outbound: Arc<crate::sandbox::http::Outbound>,
    /// Where compiled plugins are kept between runs; none = compile every
    /// plugin at every start.
    pub artifact_cache: Option<PathBuf>,
    /// This worker's id in job records.
    pub worker_id: String,
    /// Follow the fleet store: serve pinned versions, record directory
    /// versions, publish what this worker serves, and drop what cache
    /// purges name from the memory tier (without it, purged results stay
    /// in this worker's memory until they expire).
    pub fleet: bool,
    /// How often the fleet store's pins are read whole even without
    /// events, and what this worker serves republished: the safety net
    /// for a lost event (5 s; keep it well inside the report's 30 s TTL).
    pub fleet_resync: Duration,
    /// Answer jobs of plugins whose manifest declares `[cache] ttl` from
    /// the result cache.
    pub result_cache: bool,
    /// Most bytes of results the cache keeps in this worker's memory.
    pub cache_memory: u64,
    /// How long to wait for the first sync with the fleet store before
    /// claiming anyway with this worker's directory versions; none (the
    /// default) waits as long as it takes, so that no job ever runs on a
    /// version a deploy or rollback replaced.
    pub fleet_sync_wait: Option<Duration>,
    /// How long past its deadline a job's sandbox run may take before its
    /// thread counts as wedged: the job is released to the queue and a new
    /// thread takes the wedged one's place (`worker/watchdog.rs`).
    pub wedge_grace: Duration,
    /// What the worker counts for Prometheus (`--metrics`); shared with
    /// whoever serves it.
    pub metrics: Arc<crate::metrics::Metrics>,
}

impl WorkerConfig {
    /// Defaults: concurrency = cores, batch 256, prefetch up to 1,024, lease 10 s, backoff 1 s,
    /// grace 30 s, plugin wait 1 h, rescan every second.
    pub fn new(queue: QueueConfig, plugins_dir: impl Into<PathBuf>) -> Self {
        WorkerConfig {
            queue,
            plugins_dir: plugins_dir.into(),
            concurrency: std::thread::available_parallelism().map_or(2, std::num::NonZero::get),
            batch: DEFAULT_BATCH,
            prefetch: DEFAULT_PREFETCH,
            prefetch_horizon: PREFETCH_HORIZON,
            ack_linger: ACK_LINGER,
            claim_bytes: DEFAULT_CLAIM_BYTES,
            lease: Duration::from_secs(10),
            backoff: Duration::from_secs(1),
            grace: Duration::from_secs(30),
            plugin_wait: Duration::from_secs(3600),
            rescan: Some(Duration::from_secs(1)),
            limits: Limits::default(),
            capabilities: Capabilities::default(),
            outbound: Arc::new(crate::sandbox::http::Outbound::new(
                crate::sandbox::http::HttpLimits::default(),
                Vec::new(),
                64,
            )),
            artifact_cache: None,
            worker_id: default_worker_id(),
            fleet: true,
            fleet_resync: Duration::from_secs(5),
            result_cache: true,
            cache_memory: 64 << 20,
            wedge_grace: Duration::from_secs(10),
            fleet_sync_wait: None,
            metrics: Arc::default(),
        }
    }
}

/// `HOST:PID:RANDOM`, unique per process.
pub fn default_worker_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "worker".to_string());
    format!("{host}:{}:{:04x}", std::process::id(), fastrand::u16(..))
}

/// What a worker did, returned when it stops.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct WorkerReport {
    /// Attempts that succeeded.
    pub succeeded: u64,
    /// Attempts scheduled for retry.
    pub retried: u64,
    /// Jobs sent to the dead letters.
    pub dead: u64,
    /// Jobs handed back (shutdown, or plugin not loaded here).
    pub handed_back: u64,
    /// Outcomes refused because the lease had been lost.
    pub stale: u64,
    /// Jobs released because their thread wedged past the deadline and
    /// grace.
    pub wedged: u64,
}

/// A worker could not start.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The plugins directory is not a directory.
    #[error("plugins directory {path} does not exist or is not a directory")]
    NoPluginsDir {
        /// The path given.
        path: PathBuf,
    },
    /// The artifact cache directory cannot be used.
    #[error(transparent)]
    ArtifactCache(#[from] crate::plugins::ArtifactCacheError),
    /// The key-value store could not be set up.
    #[error("key-value store: {0}")]
    Kv(#[from] crate::sandbox::KvError),
    /// The queue could not be opened (bad URL).
    #[error(transparent)]
    Queue(#[from] QueueError),
}

#[derive(Default)]
struct Counters {
    /// The same outcomes for Prometheus (stale ones, jobs in flight).
    metrics: Arc<crate::metrics::Metrics>,
    succeeded: AtomicU64,
    retried: AtomicU64,
    dead: AtomicU64,
    handed_back: AtomicU64,
    stale: AtomicU64,
    wedged: AtomicU64,
}

/// Claimed, not yet acked: id → fencing token.
/// Claimed, unacked jobs: (tenant, id) → token.
type InFlight = Arc<Mutex<HashMap<(String, String), String>>>;

/// What the worker's threads and tasks share.
struct Shared {
    budget: Arc<Budget>,
    counters: Arc<Counters>,
    in_flight: InFlight,
    /// Guests' progress reports, written to their records as jobs run.
    progress: Arc<progress::LiveProgress>,
    /// Set at shutdown: job threads hand back what they have not started.
    stopping: Arc<AtomicBool>,
    /// The job threads as the watchdog sees them.
    watch: Arc<Watch>,
}

impl Shared {
    fn new(config: &WorkerConfig) -> Self {
        // Threads count themselves in as they start (`Watch::slot`).
        let budget = Arc::new(Budget {
            concurrency: config.concurrency.max(1),
            serving: AtomicUsize::new(0),
            max_prefetch: config.prefetch,
            horizon: config.prefetch_horizon,
            avg_job_us: AtomicU64::new(0),
            freed: Notify::new(),
            running: std::sync::Mutex::default(),
            waiting_bytes: std::sync::atomic::AtomicUsize::new(0),
        });
        Shared {
            progress: Arc::default(),
            watch: Arc::new(Watch::new(config.concurrency.max(1), Arc::clone(&budget))),
            budget,
            counters: Arc::new(Counters {
                metrics: Arc::clone(&config.metrics),
                ..Counters::default()
            }),
            in_flight: Arc::default(),
            stopping: Arc::new(AtomicBool::new(false)),
        }
    }

    fn report(&self) -> WorkerReport {
        let c = &self.counters;
        WorkerReport {
            succeeded: c.succeeded.load(Ordering::Relaxed),
            retried: c.retried.load(Ordering::Relaxed),
            dead: c.dead.load(Ordering::Relaxed),
            handed_back: c.handed_back.load(Ordering::Relaxed),
            stale: c.stale.load(Ordering::Relaxed),
            wedged: c.wedged.load(Ordering::Relaxed),
        }
    }
}

/// The worker's async tasks, stopped in order at shutdown.
struct Tasks {
    claimer: tokio::task::JoinHandle<()>,
    acker: tokio::task::JoinHandle<()>,
    heartbeat: tokio::task::JoinHandle<()>,
    counting: Option<tokio::task::JoinHandle<()>>,
    rescan: Option<tokio::task::JoinHandle<()>>,
    fleet: Option<tokio::task::JoinHandle<()>>,
    watchdog: tokio::task::JoinHandle<()>,
    sweeper: tokio::task::JoinHandle<()>,
}

/// Run a worker until `shutdown` resolves, then stop gracefully.
pub async fn run(
    config: WorkerConfig,
    sandbox: Sandbox,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<WorkerReport, WorkerError> {
    if !config.plugins_dir.is_dir() {
        return Err(WorkerError::NoPluginsDir {
            path: config.plugins_dir.clone(),
        });
    }
    let mut registry = Registry::new(
        sandbox.clone(),
        &config.plugins_dir,
        config.capabilities.clone(),
    )
    .with_limits(config.limits.clone());
    if let Some(dir) = &config.artifact_cache {
        registry = registry.with_artifact_cache(ArtifactCache::open(dir, &sandbox)?);
    }
    let registry = Arc::new(registry);
    let loading = Arc::clone(&registry);
    let _ = tokio::task::spawn_blocking(move || loading.refresh()).await;
    if registry.names().is_empty() {
        tracing::warn!(
            "no plugins in {} yet (expected NAME.wasm or TENANT/NAME.wasm); jobs wait until some arrive",
            config.plugins_dir.display()
        );
    }
    tracing::info!(
        worker = %config.worker_id,
        plugins = ?registry.names().iter().map(ToString::to_string).collect::<Vec<_>>(),
        "worker starting"
    );
    let queue = connect(&config.queue).await?;
    let kv: Arc<dyn KeyValue> = Arc::new(RedisKv::new(&config.queue.url, &config.queue.prefix)?);
    run_on(config, registry, queue, Some(kv), shutdown).await
}

/// Connect, retrying while Redis is unreachable (a worker may start first).
async fn connect(config: &QueueConfig) -> Result<Queue, QueueError> {
    let mut delay = Duration::from_millis(100);
    loop {
        match Queue::connect(config.clone()).await {
            Ok(queue) => return Ok(queue),
            Err(e) if e.is_retryable() => {
                tracing::warn!("{e}; retrying in {}ms", delay.as_millis());
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Run with an existing registry and queue.
pub async fn run_on(
    config: WorkerConfig,
    registry: Arc<Registry>,
    queue: Queue,
    kv: Option<Arc<dyn KeyValue>>,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<WorkerReport, WorkerError> {
    let shared = Shared::new(&config);
    let (stop_tx, stop_rx) = watch::channel(false);
    let (job_tx, job_rx) =
        crossbeam_channel::bounded::<ClaimedJob>(config.concurrency.max(1) + config.prefetch);
    let (out_tx, out_rx) = mpsc::unbounded_channel::<Outcome>();
    let cache = open_result_cache(&config);
    let mut executor = Executor::new(&config, &registry, cache.clone(), kv);
    executor.services.progress = Some(shared.progress.clone());
    let pool = Pool::start(&config, Arc::new(executor), &job_rx, &out_tx, &shared);
    // Pinned versions are loaded before the first claim: a worker that
    // starts after a deploy never runs a job on an older version.
    let (fleet, synced) = follow_fleet(&config, &registry, cache.as_ref(), &shared, &stop_rx);
    let totals = queue.clone();
    let tasks = Tasks {
        claimer: tokio::spawn(claim_loop(
            queue
                .clone()
                .settling_in_background()
                .with_claim_bytes(config.claim_bytes),
            config.clone(),
            Arc::clone(&shared.budget),
            Arc::clone(&shared.in_flight),
            job_tx,
            synced,
            stop_rx.clone(),
        )),
        acker: tokio::spawn(ack_loop(
            queue.clone(),
            loops::AckSettings::of(&config, &stop_rx),
            out_rx,
            Arc::clone(&shared.budget),
            Arc::clone(&shared.in_flight),
            Arc::clone(&shared.counters),
            Arc::clone(&config.metrics),
        )),
        sweeper: sweeper::spawn(&queue, &config.worker_id, config.backoff),
        heartbeat: spawn_leases(queue, &config, &shared),
        counting: cache.clone().map(|cache| tokio::spawn(flush_loop(cache))),
        watchdog: tokio::spawn(watchdog_loop(pool, config.backoff)),
        rescan: config
            .rescan
            .map(|every| tokio::spawn(watcher::follow(registry, every, stop_rx))),
        fleet,
    };
    shutdown.await;
    shutdown::drain(&config, &stop_tx, tasks, job_rx, out_tx, &shared, cache).await;
    add_the_last_totals(&totals).await;
    let report = shared.report();
    tracing::info!(worker = %config.worker_id, ?report, "worker stopped");
    Ok(report)
}

/// Add the acks' successes not yet in the queue's totals, at a stop.
async fn add_the_last_totals(queue: &Queue) {
    let left = queue.flush_totals().await;
    if left != 0 {
        tracing::warn!(
            "stopping: {left} successes not added to the queue's totals (Redis refused)"
        );
    }
}

/// Renewing leases, writing live progress and the per-minute counters:
/// all end when the worker aborts the task.
fn spawn_leases(
    queue: Queue,
    config: &WorkerConfig,
    shared: &Shared,
) -> tokio::task::JoinHandle<()> {
    let progress = progress::progress_loop(
        queue.clone(),
        Arc::clone(&shared.progress),
        shared.in_flight.clone(),
    );
    let minutes = timeline::timeline_loop(queue.clone(), Arc::clone(&config.metrics));
    let leases = heartbeat_loop(
        queue,
        config.lease,
        shared.in_flight.clone(),
        Arc::clone(&config.metrics),
    );
    tokio::spawn(async move {
        tokio::join!(leases, progress, minutes);
    })
}

/// The fleet task, when the worker follows the fleet store, and its
/// first-sync signal.
fn follow_fleet(
    config: &WorkerConfig,
    registry: &Arc<Registry>,
    cache: Option<&Arc<ResultCache>>,
    shared: &Shared,
    stop: &watch::Receiver<bool>,
) -> (
    Option<tokio::task::JoinHandle<()>>,
    Option<watch::Receiver<bool>>,
) {
    if !config.fleet {
        return (None, None);
    }
    let watch = Arc::clone(&shared.watch);
    let (task, synced) = start_fleet(config, registry, cache.cloned(), watch, stop.clone());
    (Some(task), Some(synced))
}

/// The result cache, if the worker uses one and it can be opened (a bad
/// URL turns it off with a warning: jobs still run).
fn open_result_cache(config: &WorkerConfig) -> Option<Arc<ResultCache>> {
    if !config.result_cache {
        return None;
    }
    let opened = ResultCache::new(&CacheConfig {
        url: config.queue.url.clone(),
        prefix: config.queue.prefix.clone(),
        memory_bytes: config.cache_memory,
        owner: config.worker_id.clone(),
    });
    match opened {
        Ok(cache) => Some(Arc::new(cache)),
        Err(e) => {
            tracing::warn!("result cache off: {e}");
            None
        }
    }
}

/// Give up on wedged job threads: release their jobs through the acker and
/// start threads in their place (`Pool::replace_wedged`).
async fn watchdog_loop(pool: Arc<Pool>, backoff: Duration) {
    let mut every = tokio::time::interval(watchdog::EVERY);
    loop {
        every.tick().await;
        for given_up in pool.watch.sweep(std::time::Instant::now(), backoff) {
            let _ = pool.outcomes.send(given_up.outcome);
            if let Some(slot) = given_up.replacement {
                pool.start_thread(slot);
            }
        }
        // No thread serves: jobs claimed ahead would wait for a wedged
        // thread to come back, their leases renewed. Give them back.
        if pool.watch.serving() == 0 {
            while let Ok(job) = pool.jobs.try_recv() {
                pool.budget.taken(job.payload.len());
                let _ = pool.outcomes.send(threads::hand_back(
                    &job.tenant,
                    &job.id,
                    &job.token,
                    job.wait,
                ));
            }
        }
    }
}

/// Send the result cache's counts to Redis every second.
async fn flush_loop(cache: Arc<ResultCache>) {
    let mut every = tokio::time::interval(Duration::from_secs(1));
    loop {
        every.tick().await;
        let cache = Arc::clone(&cache);
        let _ = tokio::task::spawn_blocking(move || cache.flush_counts()).await;
    }
}

/// Follow the fleet store, supervised: a panic in the fleet task (a bug)
/// is logged and the task started again, so deploys, rollbacks and purges
/// keep reaching this worker. The receiver turns true after the first full
/// sync of the pins, by whichever run of the task gets there; the claim
/// loop waits for it ([`WorkerConfig::fleet_sync_wait`]).
fn start_fleet(
    config: &WorkerConfig,
    registry: &Arc<Registry>,
    cache: Option<Arc<ResultCache>>,
    threads: Arc<Watch>,
    stop: watch::Receiver<bool>,
) -> (tokio::task::JoinHandle<()>, watch::Receiver<bool>) {
    let (synced_tx, synced) = watch::channel(false);
    let synced_tx = Arc::new(synced_tx);
    let fleet = fleet::FleetConfig {
        url: config.queue.url.clone(),
        prefix: config.queue.prefix.clone(),
        worker: config.worker_id.clone(),
        cache,
        resync: config.fleet_resync,
        watch: threads,
        metrics: Arc::clone(&config.metrics),
        started_us: crate::ids::now_us(),
    };
    let registry = Arc::clone(registry);
    let task = tokio::spawn(async move {
        loop {
            let tx = Arc::clone(&synced_tx);
            let run = fleet::fleet_loop(fleet.clone(), Arc::clone(&registry), tx, stop.clone());
            match tokio::spawn(run).await {
                Err(e) if e.is_panic() && !*stop.borrow() => {
                    tracing::error!(
                        "the fleet task panicked (a bug: please report it); restarting it in 1 s"
                    );
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                _ => return,
            }
        }
    });
    (task, synced)
}
