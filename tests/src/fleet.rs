//! Helpers for the queue tests: a real `redis-server` per test on a free
//! loopback port (AOF with fsync always), a queue handle with a prefix of
//! its own, plugin directories, and workers — in process, or as real
//! `spool worker` processes that can be killed.

use crate::backend::TestRedis;
use spool_runtime::ids::PluginName;
use spool_runtime::plugins::Registry;
use spool_runtime::queue::{JobRecord, NewJob, Queue, QueueConfig, Status};
use spool_runtime::worker::{self, WorkerConfig, WorkerReport};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How long a test waits for a condition before it fails with what it saw:
/// by the clock, so a condition that runs a whole job per check (or a busy
/// machine) cannot stretch it.
pub const WAIT: Duration = Duration::from_secs(60);

/// A fresh directory under the system temp dir, removed by the caller's
/// [`Env`] on drop.
pub fn temp_dir(label: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join("spool-tests").join(format!(
        "{label}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("creating a temp dir");
    dir
}

/// One test's world: Redis, a queue handle, a runtime to drive it.
#[derive(Debug)]
pub struct Env {
    /// The Redis server or cluster (restart or kill it to test recovery).
    pub redis: TestRedis,
    /// The test's own directory (plugins dirs, Redis data).
    pub dir: PathBuf,
    /// The runtime that drives [`Env::queue`].
    pub rt: tokio::runtime::Runtime,
    /// A client handle on the queue.
    pub queue: Queue,
}

impl Env {
    /// Start Redis (a cluster on a cluster run, see [`crate::backend`])
    /// and connect.
    pub fn new(label: &str) -> Self {
        let dir = temp_dir(label);
        let redis = TestRedis::start(&dir.join("redis")).expect("starting redis-server");
        Self::over(redis, dir)
    }

    /// [`Env::new`] on one `redis-server` even on a cluster run: for tests
    /// of what only a single server has (a proxy in front of its one port,
    /// a client that speaks to one server).
    pub fn standalone(label: &str) -> Self {
        let dir = temp_dir(label);
        let redis = TestRedis::One(
            spool_runtime::redis::RedisServer::start(&dir.join("redis"), "always")
                .expect("starting redis-server"),
        );
        Self::over(redis, dir)
    }

    /// [`Env::new`] on a cluster whatever the run (for cluster tests).
    pub fn on_cluster(label: &str) -> Self {
        let dir = temp_dir(label);
        let redis = TestRedis::Cluster(
            spool_runtime::redis::RedisCluster::start(
                &dir.join("redis"),
                crate::backend::test_shape(),
            )
            .expect("starting a redis cluster"),
        );
        Self::over(redis, dir)
    }

    fn over(redis: TestRedis, dir: PathBuf) -> Self {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let queue = rt
            .block_on(Queue::connect(QueueConfig {
                // Tests read back the records of every job they ran.
                keep_succeeded: None,
                ..QueueConfig::new(redis.url())
            }))
            .expect("connecting to the test redis");
        Env {
            redis,
            dir,
            rt,
            queue,
        }
    }

    /// A new directory inside the test's own (removed with it).
    pub fn subdir(&self, label: &str) -> PathBuf {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = self
            .dir
            .join(format!("{label}-{}", N.fetch_add(1, Ordering::Relaxed)));
        std::fs::create_dir_all(&dir).expect("creating a test directory");
        dir
    }

    /// The queue's settings (URL, prefix, TTLs).
    pub fn queue_config(&self) -> QueueConfig {
        self.queue.config().clone()
    }

    /// Enqueue a JSON job for `plugin`; returns its id.
    pub fn enqueue(&self, plugin: &str, payload: &str) -> String {
        self.enqueue_job(self.job(plugin, payload))
    }

    /// A job with defaults, to adjust before [`Env::enqueue_job`].
    pub fn job(&self, plugin: &str, payload: &str) -> NewJob {
        NewJob::new(
            PluginName::parse(plugin).expect("plugin name"),
            payload.as_bytes(),
        )
    }

    /// Enqueue `job`; returns its id.
    pub fn enqueue_job(&self, job: NewJob) -> String {
        self.rt
            .block_on(self.queue.enqueue(&job))
            .expect("enqueue")
            .id
    }

    /// Another handle on the test's queue: its own rotation, caches of
    /// limits and picks, and settings (as a second worker or client has).
    pub fn other_queue(&self) -> spool_runtime::queue::Queue {
        self.rt
            .block_on(spool_runtime::queue::Queue::connect(self.queue_config()))
            .expect("connecting another queue handle")
    }

    /// Enqueue `jobs` in one call; returns their ids, in order.
    pub fn enqueue_all(&self, jobs: &[NewJob]) -> Vec<String> {
        self.rt
            .block_on(self.queue.enqueue_many(jobs))
            .expect("enqueue")
            .into_iter()
            .map(|e| e.id)
            .collect()
    }

    /// `PREFIX:{QUEUE/TENANT}`: where `tenant`'s jobs live in the test's
    /// queue (bare plugin names are tenant `default`).
    pub fn tenant_keys(&self, tenant: &str) -> String {
        self.queue.tenant_keys(tenant)
    }

    /// Enqueue with plain Redis commands, exactly as docs/queue.md tells
    /// any client to: the job and its ready list in the tenant's slot, then
    /// [`Env::announce_plain`]. `fields` are the envelope; the job goes to
    /// `priority`'s list.
    pub fn enqueue_plain(&self, tenant: &str, id: &str, priority: &str, fields: &[(&str, &[u8])]) {
        let t = self.tenant_keys(tenant);
        let mut hset = redis::cmd("HSET");
        hset.arg(format!("{t}:job:{id}"));
        for (field, value) in fields {
            hset.arg(*field).arg(*value);
        }
        let _: () = redis::pipe()
            .atomic()
            .add_command(hset)
            .ignore()
            .cmd("LPUSH")
            .arg(format!("{t}:ready:{priority}"))
            .arg(id)
            .ignore()
            .query(&mut self.redis_conn())
            .expect("plain enqueue, tenant slot");
        self.announce_plain(tenant, None);
    }

    /// Announce `tenant` with plain commands, as docs/queue.md tells a
    /// client to after it pushed jobs (or, with `due_us`, delayed them):
    /// take a sequence number in its slot, then name it in the queue's set
    /// of tenants with work (or its timers) and wake a worker.
    pub fn announce_plain(&self, tenant: &str, due_us: Option<u64>) {
        let t = self.tenant_keys(tenant);
        let q = self.queue.key_prefix().to_string();
        let mut conn = self.redis_conn();
        let (seq,): (i64,) = redis::pipe()
            .atomic()
            .cmd("HINCRBY")
            .arg(format!("{t}:stats"))
            .arg("seq")
            .arg(1)
            .query(&mut conn)
            .expect("plain announce, tenant slot");
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("ZADD")
            .arg(format!("{q}:seq"))
            .arg("GT")
            .arg(seq)
            .arg(tenant)
            .ignore();
        match due_us {
            Some(at) => pipe
                .cmd("ZADD")
                .arg(format!("{q}:timers"))
                .arg("LT")
                .arg(at)
                .arg(tenant),
            None => pipe
                .cmd("ZADD")
                .arg(format!("{q}:ready"))
                .arg(0)
                .arg(tenant),
        }
        .ignore()
        .cmd("RPUSH")
        .arg(format!("{q}:wake"))
        .arg(1)
        .ignore()
        .cmd("LTRIM")
        .arg(format!("{q}:wake"))
        .arg(0)
        .arg(0)
        .ignore();
        let _: () = pipe.query(&mut conn).expect("plain announce, queue slot");
    }

    /// Set `tenant`'s `limit` (a quota or a scheduling setting) under the
    /// default prefix, as `spool tenants set` does.
    pub fn set_limit(&self, tenant: &str, limit: spool_runtime::tenants::Limit, value: u64) {
        spool_runtime::tenants::TenantStore::new("spool")
            .set(
                &mut self.redis_conn(),
                &spool_runtime::tenants::store::Target::Tenant(tenant.into()),
                limit,
                Some(value),
            )
            .expect("setting a tenant limit");
    }

    /// The record of `id`.
    pub fn record(&self, id: &str) -> JobRecord {
        self.rt.block_on(self.queue.record(id)).expect("job record")
    }

    /// Poll until `id` is succeeded or dead (at most 60 s), then return it.
    pub fn wait(&self, id: &str) -> JobRecord {
        self.wait_until(id, |r| r.status.is_some_and(Status::is_terminal))
    }

    /// Poll `id`'s record until `done` holds (at most 60 s).
    pub fn wait_until(&self, id: &str, done: impl Fn(&JobRecord) -> bool) -> JobRecord {
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if let Ok(record) = self.rt.block_on(self.queue.record(id))
                && done(&record)
            {
                return record;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!(
            "job {id} did not reach the expected state: {:?}",
            self.rt.block_on(self.queue.record(id))
        );
    }

    /// The fleet store (pins, histories, worker reports) under the
    /// default prefix.
    pub fn fleet_store(&self) -> spool_runtime::deploy::FleetStore {
        self.rt
            .block_on(spool_runtime::deploy::FleetStore::connect(
                &self.redis.url(),
                "spool",
            ))
            .expect("fleet store")
    }

    /// A raw Redis connection, to look at keys or write malformed ones
    /// (on a cluster, each command goes to its key's master).
    pub fn redis_conn(&self) -> spool_runtime::redis::SyncConn {
        spool_runtime::redis::SyncRedis::new(&self.redis.url())
            .expect("redis url")
            .connection()
            .expect("redis connection")
    }

    /// A plugins directory holding `(plugin name, fixture)` pairs, e.g.
    /// `("acme/kv", "kv")` → `DIR/acme/kv.wasm`.
    pub fn plugins_dir(&self, plugins: &[(&str, &str)]) -> PathBuf {
        let dir = self.subdir("plugins");
        for (name, fixture) in plugins {
            add_plugin(&dir, name, fixture);
        }
        dir
    }

    /// Worker settings for tests: short lease and backoff.
    pub fn worker_config(&self, dir: &Path) -> WorkerConfig {
        let mut config = WorkerConfig::new(self.queue_config(), dir);
        config.concurrency = 2;
        config.lease = Duration::from_secs(2);
        config.backoff = Duration::from_millis(20);
        config.grace = Duration::from_secs(5);
        config.rescan = Some(Duration::from_millis(200));
        config
    }

    /// A worker in this process serving `plugins` (`(name, fixture)`), with
    /// the fixtures compiled once per test binary.
    pub fn worker(
        &self,
        plugins: &[(&str, &str)],
        tweak: impl FnOnce(&mut WorkerConfig),
    ) -> TestWorker {
        let (config, registry) = self.fixtures(plugins, tweak);
        self.worker_on(config, registry)
    }

    /// Worker settings and a registry serving `plugins` (`(name, fixture)`),
    /// for [`Env::worker_on`] or [`Env::worker_with_kv`].
    pub fn fixtures(
        &self,
        plugins: &[(&str, &str)],
        tweak: impl FnOnce(&mut WorkerConfig),
    ) -> (WorkerConfig, Arc<Registry>) {
        let dir = self.subdir("empty-plugins");
        let mut config = self.worker_config(&dir);
        tweak(&mut config);
        let registry = Arc::new(
            Registry::new(
                crate::sandbox().clone(),
                &config.plugins_dir,
                config.capabilities.clone(),
            )
            .with_limits(config.limits.clone()),
        );
        for (name, fixture) in plugins {
            registry.insert(
                PluginName::parse(name).expect("plugin name"),
                Arc::new(crate::plugin(fixture)),
            );
        }
        registry.refresh();
        (config, registry)
    }

    /// A worker in this process serving the plugins directory `dir` (with
    /// its manifests), and its registry; `tweak` adjusts the settings.
    pub fn serve_dir(
        &self,
        dir: &Path,
        tweak: impl FnOnce(&mut WorkerConfig),
    ) -> (Arc<Registry>, TestWorker) {
        let mut config = self.worker_config(dir);
        tweak(&mut config);
        let registry = Arc::new(
            Registry::new(crate::sandbox().clone(), dir, config.capabilities.clone())
                .with_limits(config.limits.clone()),
        );
        registry.refresh();
        let worker = self.worker_on(config, Arc::clone(&registry));
        (registry, worker)
    }

    /// A worker in this process over a prepared registry.
    pub fn worker_on(&self, config: WorkerConfig, registry: Arc<Registry>) -> TestWorker {
        self.worker_with_kv(config, registry, None)
    }

    /// A worker in this process over a prepared registry, with its own
    /// key-value store (`None`: the Redis one).
    pub fn worker_with_kv(
        &self,
        config: WorkerConfig,
        registry: Arc<Registry>,
        kv: Option<Arc<dyn spool_runtime::sandbox::KeyValue>>,
    ) -> TestWorker {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let url = config.queue.url.clone();
        let prefix = config.queue.prefix.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let queue = Queue::connect(config.queue.clone())
                    .await
                    .expect("worker connects");
                let kv: Arc<dyn spool_runtime::sandbox::KeyValue> = kv.unwrap_or_else(|| {
                    Arc::new(spool_runtime::kv::RedisKv::new(&url, &prefix).expect("kv"))
                });
                worker::run_on(config, registry, queue, Some(kv), async {
                    let _ = stopped.await;
                })
                .await
                .expect("worker runs")
            })
        });
        TestWorker {
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// `spool worker` (the binary at `bin`) as a child process on `dir`,
    /// with extra arguments. Killed when dropped; its standard error goes
    /// to a file (see [`WorkerProcess::stderr`]).
    pub fn worker_process(&self, bin: &str, dir: &Path, extra: &[&str]) -> WorkerProcess {
        static N: AtomicUsize = AtomicUsize::new(0);
        let log = self
            .dir
            .join(format!("worker-{}.log", N.fetch_add(1, Ordering::Relaxed)));
        let stderr = std::fs::File::create(&log).expect("worker log file");
        let child = crate::without_user_settings(&mut Command::new(bin))
            .arg("worker")
            .arg("--redis")
            .arg(self.redis.url())
            .arg("--plugins")
            .arg(dir)
            .args(
                [
                    ["--lease", "1s"],
                    ["--backoff", "20ms"],
                    ["--concurrency", "2"],
                ]
                .iter()
                .filter(|[flag, _]| !extra.contains(flag))
                .flatten(),
            )
            .args(extra)
            // The test's own artifact cache, never the user's.
            .args(
                if extra.iter().any(|a| a.contains("artifact-cache")) {
                    None
                } else {
                    Some([
                        "--artifact-cache".to_string(),
                        self.dir.join("artifacts").display().to_string(),
                    ])
                }
                .into_iter()
                .flatten(),
            )
            .env("SPOOL_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("starting spool worker");
        WorkerProcess { child, log }
    }

    /// Whether tenant `tenant`'s key-value key `key` exists (the introspect
    /// fixture's `mark`).
    pub fn kv_exists(&self, tenant: &str, key: &str) -> bool {
        let mut conn = self.redis_conn();
        redis::cmd("EXISTS")
            .arg(format!("spool:{{kv:{tenant}}}:{key}"))
            .query::<i64>(&mut conn)
            .is_ok_and(|n| n == 1)
    }

    /// Poll (at most 60 s) until `done` holds.
    pub fn wait_for(&self, what: &str, done: impl Fn() -> bool) {
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if done() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("timed out waiting for {what}");
    }

    /// Poll (at most 60 s) until a worker waits for work in `Q:idle`, so
    /// that a lone job enqueued now is handed to it (docs/queue.md,
    /// "Hand-over at idle").
    pub fn wait_for_a_waiter(&self) {
        let idle = format!("{}:idle", self.queue.key_prefix());
        self.wait_for("a worker to wait in Q:idle", || {
            let n: u64 = redis::cmd("ZCARD")
                .arg(&idle)
                .query(&mut self.redis_conn())
                .unwrap();
            n > 0
        });
    }

    /// Wait (at most 60 s) until the queue's counters say `n` jobs have
    /// finished (succeeded or dead) in all.
    pub fn wait_finished(&self, n: u64) -> spool_runtime::queue::QueueStats {
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            // Errors are retried: tests restart Redis under this client.
            if let Ok(stats) = self.rt.block_on(self.queue.stats())
                && stats.succeeded_total + stats.dead_total >= n
            {
                return stats;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!(
            "only {:?} of {n} jobs finished",
            self.rt.block_on(self.queue.stats())
        );
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        self.redis.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Copy the built `fixture` into `dir` as plugin `name`.
pub fn add_plugin(dir: &Path, name: &str, fixture: &str) {
    let name = PluginName::parse(name).expect("plugin name");
    let target = if name.tenant == spool_runtime::ids::DEFAULT_TENANT {
        dir.join(format!("{}.wasm", name.name))
    } else {
        dir.join(&name.tenant).join(format!("{}.wasm", name.name))
    };
    std::fs::create_dir_all(target.parent().expect("parent")).expect("plugin dir");
    std::fs::copy(crate::plugin_path(fixture), &target).expect("copying a fixture plugin");
}

/// A worker running in this process; stops (gracefully) on drop.
#[derive(Debug)]
pub struct TestWorker {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<WorkerReport>>,
}

impl TestWorker {
    /// Stop gracefully and return what the worker did.
    pub fn stop(mut self) -> WorkerReport {
        match self.shutdown() {
            Ok(report) => report,
            // The worker thread panicked: fail the test with its panic.
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }

    fn shutdown(&mut self) -> std::thread::Result<WorkerReport> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        // A worker that never stops fails the test instead of hanging it
        // (its thread is left behind; the test binary ends with the tests).
        let deadline = Instant::now() + WAIT;
        while self.thread.as_ref().is_some_and(|t| !t.is_finished()) {
            if Instant::now() >= deadline {
                self.thread = None;
                return Err(Box::new(format!("the worker did not stop within {WAIT:?}")));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.thread
            .take()
            .map_or(Ok(WorkerReport::default()), std::thread::JoinHandle::join)
    }
}

impl Drop for TestWorker {
    fn drop(&mut self) {
        // Never panic here: during a failing test's unwinding a second
        // panic would abort the whole test binary. A worker that panicked
        // after the test's own checks passed still fails the test.
        if self.shutdown().is_err() && !std::thread::panicking() {
            panic!("the test's worker thread panicked (see its message above)");
        }
    }
}

/// A `spool worker` child process; SIGKILLed when dropped, so a failed
/// assertion never leaves it running.
#[derive(Debug)]
pub struct WorkerProcess {
    child: Child,
    log: PathBuf,
}

impl WorkerProcess {
    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Send `signal` (`TERM`, `INT`, `STOP`, `CONT`, …) with kill(1).
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .expect("running kill");
        assert!(status.success(), "kill -{signal} failed");
    }

    /// SIGKILL it, as a crash would, and reap it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Wait (at most [`WAIT`]) for it to exit; a worker that does not is
    /// killed and the test fails with what it logged.
    pub fn wait(&mut self) -> ExitStatus {
        match exited_within(&mut self.child, WAIT) {
            Some(status) => status,
            None => {
                self.kill();
                panic!(
                    "spool worker did not exit within {WAIT:?}; its log:\n{}",
                    self.stderr()
                );
            }
        }
    }

    /// What it wrote to standard error so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The exit status of `child` once it exits, or `None` if it is still
/// running after `limit`.
pub fn exited_within(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            _ => return None,
        }
    }
}
