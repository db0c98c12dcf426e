//! `spool bench`: end-to-end throughput and latency of the whole path —
//! enqueue → claim → sandbox → result record → ack — with one in-process
//! worker (or `--workers N` processes) on a real Redis (a private
//! `redis-server` unless `--redis`).
//!
//! Reports the enqueue rate, jobs/s from the first enqueue to the last
//! finish, latency percentiles (enqueue → finished, and enqueue → started),
//! Redis commands per job (from `INFO commandstats`, which counts the
//! commands inside scripts too) and round trips per job.

mod drive;
mod kept;
mod prefix;
mod processes;
mod queries;
mod report;

use super::connect::runtime;
use super::exit;
use crate::ids::{NameError, PluginName};
use crate::kv::RedisKv;
use crate::plugins::{Capabilities, LoadError, Registry, Settings, scan};
use crate::queue::{Queue, QueueConfig, QueueError};
use crate::redis::{ClusterShape, PrivateRedis, RedisCluster, RedisServer, RedisServerError};
use crate::sandbox::{KeyValue, KvError, Sandbox, SandboxConfig, SandboxError};
use crate::worker::{self, WorkerConfig};
use report::{Report, print};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, clap::Args)]
pub(crate) struct BenchArgs {
    /// The plugin to run: NAME or TENANT/NAME, from --plugins.
    #[arg(long, default_value = "hello")]
    plugin: String,

    /// Plugins directory.
    #[arg(long, env = "SPOOL_PLUGINS", default_value = "plugins")]
    plugins: PathBuf,

    /// How many jobs.
    #[arg(long, default_value_t = 10_000)]
    jobs: usize,

    /// Spread the jobs round-robin over this many tenants (t0, t1, …),
    /// each running the plugin as its own: measures fair share's cost.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    tenants: u64,

    /// Job threads of the worker [default: number of cores]
    #[arg(long)]
    concurrency: Option<usize>,

    /// Most jobs per claim/ack round trip (as `spool worker --batch`).
    #[arg(long, default_value_t = crate::worker::DEFAULT_BATCH)]
    batch: usize,

    /// Most jobs claimed ahead of the job threads (as `spool worker --prefetch`).
    #[arg(long, default_value_t = crate::worker::DEFAULT_PREFETCH)]
    prefetch: usize,

    /// How long a lone success waits to share its ack (as `spool worker
    /// --ack-linger`).
    #[arg(long, default_value = "10ms", value_parser = crate::cli::worker::parse_ack_linger)]
    ack_linger: std::time::Duration,

    /// Size of each job's JSON payload in bytes ({"name":"xxx…"}).
    #[arg(long, default_value_t = 32)]
    payload_bytes: usize,

    /// The jobs' input instead of {"name":"xxx…"}: JSON, or @FILE.
    #[arg(long, short)]
    input: Option<String>,

    /// MIME type of --input [default: application/json, or guessed from
    /// the file name]
    #[arg(long)]
    content_type: Option<String>,

    /// How many different inputs the jobs cycle through (a JSON object
    /// input gets a field "_n": 0..N-1). With --cache-ttl, 1 makes every
    /// job after the first a hit; --distinct equal to --jobs, none.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    distinct: u64,

    /// Cache the plugin's results this long (as a manifest's `[cache] ttl`).
    #[arg(long, value_parser = crate::config::parse_duration)]
    cache_ttl: Option<Duration>,

    /// The worker's in-memory result cache, in bytes (0: every hit comes
    /// from Redis).
    #[arg(long, default_value_t = 64 << 20)]
    cache_memory: u64,

    /// Enqueue at this many jobs per second (0: as fast as possible). A low
    /// rate measures pickup latency on an idle system.
    #[arg(long, default_value_t = 0)]
    rate: u64,

    /// Run the jobs in this many `spool worker` processes instead of the
    /// bench's own worker (0): how a fleet on one Redis scales. Not with
    /// --cache-ttl.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=64))]
    workers: u64,

    /// Redis URL [default: a private redis-server with AOF on]
    #[arg(long)]
    redis: Option<String>,

    /// Run on a private Redis Cluster of this many masters (no replicas)
    /// instead of one server: how the load spreads over masters. Use with
    /// --tenants (one tenant's queue is one slot, so one master).
    #[arg(long, conflicts_with = "redis", value_parser = clap::value_parser!(u64).range(1..=16))]
    cluster: Option<u64>,

    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(args: BenchArgs) -> u8 {
    // Bad input is a usage error, found before anything starts.
    if args.workers > 0 && args.cache_ttl.is_some() {
        eprintln!(
            "spool bench: --cache-ttl needs the bench's own worker (drop --workers, \
             or give the plugin a manifest with [cache] ttl)"
        );
        return exit::USAGE;
    }
    let inputs = match payloads(&args) {
        Ok(inputs) => inputs,
        Err(message) => {
            eprintln!("spool bench: {message}");
            return exit::USAGE;
        }
    };
    match bench(&args, inputs) {
        Ok(report) => {
            print(&report, args.json);
            if report.failed > 0 {
                exit::FAILED
            } else {
                exit::OK
            }
        }
        Err(message) => {
            eprintln!("spool bench: {message}");
            exit::FAILED
        }
    }
}

/// Removes the private Redis' data directory however the bench ends.
struct TempDir(PathBuf);

impl TempDir {
    /// A directory of its own under the system's temporary one: an
    /// earlier bench stopped by Ctrl-C may have left its server's AOF
    /// under this process id, and its keys would be the keys this run
    /// reads.
    fn fresh() -> Self {
        let name = format!("spool-bench-{}-{}", std::process::id(), ulid::Ulid::new());
        TempDir(std::env::temp_dir().join(name))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Why a bench could not run (each names what failed).
#[derive(Debug, thiserror::Error)]
enum BenchError {
    #[error(transparent)]
    Name(#[from] NameError),
    #[error(transparent)]
    Redis(#[from] RedisServerError),
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    #[error("{source}{}", hint.map(|h| format!(" ({h})")).unwrap_or_default())]
    Load {
        source: LoadError,
        /// How to point the bench at the plugins, when that is the cause.
        hint: Option<&'static str>,
    },
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error(transparent)]
    Kv(#[from] KvError),
    #[error("{0}")]
    Workers(String),
}

fn bench(args: &BenchArgs, inputs: (Vec<Vec<u8>>, String)) -> Result<Report, BenchError> {
    let plugin = PluginName::parse(&args.plugin)?;
    let plugins = tenant_plugins(&plugin, args.tenants);
    let data = TempDir::fresh();
    let server = private_redis(args, &data.0)?;
    let url = args
        .redis
        .clone()
        .or_else(|| server.as_ref().map(PrivateRedis::url))
        .unwrap_or_default();
    let mut queue_config = queue_config(args, &url);
    // Also with --workers: a bad plugin is named before a worker starts.
    let registry = load_plugin(args, &plugin, &plugins)?;
    let rt = runtime();
    let tenants: Vec<String> = plugins.iter().map(|p| p.tenant.clone()).collect();
    let client = rt.block_on(connect(args, &mut queue_config, &tenants))?;
    if let Some(cap) = queue_config.keep_succeeded {
        rt.block_on(kept::fill(&client, &tenants, cap))?;
    }
    let spec = processes::Spec {
        file: &scan::file_for(&args.plugins, &plugin),
        serve: &plugins,
        dir: &data.0,
        queue: &queue_config,
        concurrency: args.concurrency,
        batch: args.batch.max(1),
        prefetch: args.prefetch,
        ack_linger: args.ack_linger,
    };
    let running = start_workers(args, &spec, &rt, (&url, registry))?;
    let instances_before = crate::sandbox::instances_created();
    let cpu_before = process_cpu_seconds() + running.children_cpu();
    let result = rt.block_on(drive::drive(args, &plugins, &client, inputs));
    let process_cpu = process_cpu_seconds() + running.children_cpu() - cpu_before;
    let (concurrency, worker_round_trips) = running.stop(&rt);
    drop(server);
    // (Also when the run failed: the lists live thirty days.)
    if args.redis.is_some() {
        rt.block_on(kept::drop_lists(&client, &tenants));
    }
    let (mut report, commands, cpu_by_master) = result?;
    if args.workers == 0 {
        report.instances = crate::sandbox::instances_created() - instances_before;
    }
    report.concurrency = concurrency.or(args.concurrency).unwrap_or(0);
    report.ack_linger_ms = args.ack_linger.as_secs_f64() * 1000.0;
    let trips = worker_round_trips + client.round_trips();
    per_job(
        &mut report,
        args,
        commands,
        &cpu_by_master,
        process_cpu,
        (worker_round_trips, trips),
    );
    Ok(report)
}

/// The run's workers: `--workers` processes, or the bench's own worker.
fn start_workers(
    args: &BenchArgs,
    spec: &processes::Spec,
    rt: &tokio::runtime::Runtime,
    (url, registry): (&str, Arc<Registry>),
) -> Result<Running, BenchError> {
    if args.workers > 0 {
        let n = usize::try_from(args.workers).unwrap_or(1);
        let workers = processes::Workers::start(n, spec).map_err(BenchError::Workers)?;
        return Ok(Running::Processes(workers));
    }
    let config = worker_config(args, spec.queue);
    let queue = rt.block_on(Queue::connect(spec.queue.clone()))?;
    let kv: Arc<dyn KeyValue> = Arc::new(RedisKv::new(url, &spec.queue.prefix)?);
    Ok(Running::in_process(config, registry, queue, kv))
}

/// The report's figures per job: Redis commands, Redis' CPU (in all and by
/// master), the bench process' CPU, and round trips (the workers', and
/// everyone's).
fn per_job(
    report: &mut Report,
    args: &BenchArgs,
    commands: u64,
    cpu_by_master: &[f64],
    process_cpu: f64,
    (worker_trips, trips): (u64, u64),
) {
    let jobs = args.jobs.max(1) as f64;
    report.workers = args.workers;
    report.redis_commands_per_job = commands as f64 / jobs;
    report.redis_cpu_us_per_job = cpu_by_master.iter().sum::<f64>() * 1e6 / jobs;
    report.redis_cpu_us_per_job_by_master = cpu_by_master.iter().map(|s| s * 1e6 / jobs).collect();
    report.process_cpu_us_per_job = process_cpu * 1e6 / jobs;
    report.worker_round_trips_per_job = worker_trips as f64 / jobs;
    report.round_trips_per_job = trips as f64 / jobs;
}

/// The bench's client: on a `--redis` server, under a prefix of its own
/// that it sets in `config` (prefix.rs).
async fn connect(
    args: &BenchArgs,
    config: &mut QueueConfig,
    tenants: &[String],
) -> Result<Queue, QueueError> {
    if args.redis.is_none() {
        return Queue::connect(config.clone()).await;
    }
    prefix::connect_unused(config, tenants).await
}

/// The bench's queue settings on `url`.
fn queue_config(args: &BenchArgs, url: &str) -> QueueConfig {
    let mut config = QueueConfig::new(url);
    // On its own server the bench's keys are a deployment's (the default
    // prefix): key length is part of what Redis does per job (hashing,
    // comparing, the AOF), and a longer one than users have cost ~1 µs
    // per job. On a `--redis` someone else's keys may be there: a prefix
    // of its own, as long as the default, keeps them apart (prefix.rs,
    // drawn when the bench connects).
    // The report reads every job's record back: the cap is a tenant's
    // share of the run's jobs (round-robin), and the kept lists start
    // full (kept.rs), so that every ack trims as at the default cap in a
    // deployment.
    config.keep_succeeded = Some(kept::cap(args));
    config
}

/// A private server, a private cluster (`--cluster N`), or none
/// (`--redis`).
fn private_redis(args: &BenchArgs, dir: &Path) -> Result<Option<PrivateRedis>, RedisServerError> {
    if args.redis.is_some() {
        return Ok(None);
    }
    let Some(masters) = args.cluster else {
        return RedisServer::start(dir, "everysec").map(|s| Some(PrivateRedis::One(s)));
    };
    let masters = usize::try_from(masters).unwrap_or(1);
    eprintln!(
        "spool bench: starting a Redis Cluster of {masters} master{}…",
        if masters == 1 { "" } else { "s" }
    );
    let shape = ClusterShape::masters_only(masters, Duration::from_secs(15), "everysec");
    RedisCluster::start(dir, shape).map(|c| Some(PrivateRedis::Cluster(c)))
}

/// Where the jobs run: the bench's own worker, or `--workers` processes.
enum Running {
    InProcess(Box<OwnWorker>),
    Processes(processes::Workers),
}

/// The bench's own worker, on a thread of its own.
struct OwnWorker {
    stop: tokio::sync::oneshot::Sender<()>,
    thread: std::thread::JoinHandle<Result<worker::WorkerReport, worker::WorkerError>>,
    queue: Queue,
    concurrency: usize,
}

impl Running {
    fn in_process(
        config: WorkerConfig,
        registry: Arc<Registry>,
        queue: Queue,
        kv: Arc<dyn KeyValue>,
    ) -> Running {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let concurrency = config.concurrency;
        let wq = queue.clone();
        let thread = std::thread::spawn(move || {
            runtime().block_on(worker::run_on(config, registry, wq, Some(kv), async {
                let _ = stopped.await;
            }))
        });
        Running::InProcess(Box::new(OwnWorker {
            stop,
            thread,
            queue,
            concurrency,
        }))
    }

    /// CPU seconds of the worker processes (0 for the bench's own worker,
    /// counted in the bench process's).
    fn children_cpu(&self) -> f64 {
        match self {
            Running::InProcess(_) => 0.0,
            Running::Processes(workers) => workers.cpu_seconds(),
        }
    }

    /// Stop the workers; the in-process worker's concurrency and round
    /// trips (unknown for processes).
    /// Stop the workers. The bench's own worker shares the bench's queue
    /// handle, whose connection this thread's runtime `rt` drives: it is
    /// driven while the worker stops (a stopping worker still talks to
    /// Redis: it leaves the idle workers, hands back what it holds).
    fn stop(self, rt: &tokio::runtime::Runtime) -> (Option<usize>, u64) {
        match self {
            Running::InProcess(own) => {
                let _ = own.stop.send(());
                let thread = own.thread;
                let _ =
                    rt.block_on(
                        async move { tokio::task::spawn_blocking(move || thread.join()).await },
                    );
                (Some(own.concurrency), own.queue.round_trips())
            }
            Running::Processes(workers) => {
                drop(workers);
                (None, 0)
            }
        }
    }
}

/// CPU time this process has used, user + system, every thread, seconds
/// (`CLOCK_PROCESS_CPUTIME_ID`: what `getrusage` sums, to the nanosecond).
fn process_cpu_seconds() -> f64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    t.tv_sec as f64 + t.tv_nsec as f64 / 1e9
}

/// The plugin as each tenant's own: `plugin` itself for one tenant, else
/// `t0/NAME`, `t1/NAME`, ….
fn tenant_plugins(plugin: &PluginName, tenants: u64) -> Vec<PluginName> {
    if tenants <= 1 {
        return vec![plugin.clone()];
    }
    (0..tenants)
        .map(|t| PluginName {
            tenant: format!("t{t}"),
            name: plugin.name.clone(),
        })
        .collect()
}

/// A registry serving only the plugin under test (not the whole
/// directory), under each name in `serve`, with `--cache-ttl` as its
/// manifest would set it.
fn load_plugin(
    args: &BenchArgs,
    plugin: &PluginName,
    serve: &[PluginName],
) -> Result<Arc<Registry>, BenchError> {
    let sandbox = Sandbox::new(SandboxConfig::default())?;
    let file = scan::file_for(&args.plugins, plugin);
    let caps = Capabilities::default();
    let loaded = crate::plugins::load(&sandbox, &file, &caps).map_err(|source| {
        let built =
            Path::new("target/plugins").join(file.strip_prefix(&args.plugins).unwrap_or(&file));
        let hint = (built.exists() && built != file).then_some(
            "this repository builds its plugins into target/plugins: add --plugins target/plugins",
        );
        BenchError::Load { source, hint }
    })?;
    let registry = Arc::new(Registry::new(sandbox, &args.plugins, caps));
    let settings = Settings {
        cache_ttl: args.cache_ttl,
        ..Settings::default()
    };
    let loaded = Arc::new(loaded);
    for name in serve {
        registry.insert_with(name.clone(), Arc::clone(&loaded), settings.clone());
    }
    Ok(registry)
}

/// The in-process worker's settings: the bench's options, no rescans, no
/// fleet store.
fn worker_config(args: &BenchArgs, queue: &QueueConfig) -> WorkerConfig {
    let mut config = WorkerConfig::new(queue.clone(), &args.plugins);
    if let Some(c) = args.concurrency {
        config.concurrency = c.max(1);
    }
    config.batch = args.batch.max(1);
    config.prefetch = args.prefetch;
    config.ack_linger = args.ack_linger;
    config.rescan = None;
    config.fleet = false;
    config.cache_memory = args.cache_memory;
    config
}

/// The distinct inputs the jobs cycle through, and their content type.
fn payloads(args: &BenchArgs) -> Result<(Vec<Vec<u8>>, String), String> {
    let (base, guessed) = match &args.input {
        Some(input) => super::call::read_input(input)?,
        None => {
            let name_len = args
                .payload_bytes
                .saturating_sub(r#"{"name":""}"#.len())
                .max(1);
            let text = format!(r#"{{"name":"{}"}}"#, "x".repeat(name_len));
            (text.into_bytes(), "application/json".to_string())
        }
    };
    let content_type = args.content_type.clone().unwrap_or(guessed);
    if args.distinct == 1 {
        return Ok((vec![base], content_type));
    }
    let Ok(serde_json::Value::Object(object)) = serde_json::from_slice(&base) else {
        return Err("--distinct above 1 needs a JSON object input (it adds a field \"_n\")".into());
    };
    let distinct = (0..args.distinct)
        .map(|n| {
            let mut object = object.clone();
            object.insert("_n".into(), n.into());
            serde_json::to_vec(&object).unwrap_or_default()
        })
        .collect();
    Ok((distinct, content_type))
}
