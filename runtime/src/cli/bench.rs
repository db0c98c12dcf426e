//! `spool bench`: end-to-end throughput and latency of the whole path —
//! enqueue → claim → sandbox → result record → ack — with one in-process
//! worker on a real Redis (a private `redis-server` unless `--redis`).
//!
//! Reports the enqueue rate, jobs/s from the first enqueue to the last
//! finish, latency percentiles (enqueue → finished, and enqueue → started),
//! Redis commands per job (from `INFO commandstats`, which counts the
//! commands inside scripts too) and round trips per job.

use super::connect::runtime;
use super::exit;
use crate::kv::{KeyValue, RedisKv};
use crate::queue::{NewJob, PluginName, Queue, QueueConfig, Status};
use crate::redis_server::RedisServer;
use crate::sandbox::{Sandbox, SandboxConfig};
use crate::worker::{self, Registry, WorkerConfig};
use serde::Serialize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

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

    /// Job threads of the worker [default: number of cores]
    #[arg(long)]
    concurrency: Option<usize>,

    /// Most jobs per claim/ack round trip (as `spool worker --batch`).
    #[arg(long, default_value_t = 64)]
    batch: usize,

    /// Most jobs claimed ahead of the job threads (as `spool worker --prefetch`).
    #[arg(long, default_value_t = 64)]
    prefetch: usize,

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

    /// Redis URL [default: a private redis-server with AOF on]
    #[arg(long)]
    redis: Option<String>,

    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
struct Report {
    plugin: String,
    jobs: usize,
    concurrency: usize,
    payload_bytes: usize,
    succeeded: usize,
    failed: usize,
    enqueue_jobs_per_sec: f64,
    jobs_per_sec: f64,
    wall_seconds: f64,
    latency_ms: Percentiles,
    pickup_ms: Percentiles,
    redis_commands_per_job: f64,
    worker_round_trips_per_job: f64,
    round_trips_per_job: f64,
    /// Jobs by result-cache status (`hit-memory`, `hit-redis`, `miss`, …).
    cache: std::collections::BTreeMap<String, usize>,
    /// Sandbox instances the worker created (one per handler run; none for
    /// a cache hit).
    instances: u64,
}

#[derive(Debug, Serialize)]
struct Percentiles {
    p50: f64,
    p95: f64,
    p99: f64,
    max: f64,
}

pub(crate) fn run(args: BenchArgs) -> u8 {
    // Bad input is a usage error, found before anything starts.
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

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn bench(args: &BenchArgs, inputs: (Vec<Vec<u8>>, String)) -> Result<Report, String> {
    let plugin = PluginName::parse(&args.plugin).map_err(|e| e.to_string())?;
    let data = TempDir(std::env::temp_dir().join(format!("spool-bench-{}", std::process::id())));
    let data = &data.0;
    let server = match &args.redis {
        Some(_) => None,
        None => Some(RedisServer::start(data, "everysec").map_err(|e| e.to_string())?),
    };
    let url = args
        .redis
        .clone()
        .or_else(|| server.as_ref().map(RedisServer::url))
        .unwrap_or_default();
    let mut queue_config = QueueConfig::new(url.clone());
    queue_config.prefix = format!("spool-bench-{}", ulid::Ulid::new());

    let sandbox = Sandbox::new(SandboxConfig::default()).map_err(|e| e.to_string())?;
    // Only the plugin under test is loaded (not the whole directory).
    let file = if plugin.tenant == crate::queue::DEFAULT_TENANT {
        args.plugins.join(format!("{}.wasm", plugin.name))
    } else {
        args.plugins
            .join(&plugin.tenant)
            .join(format!("{}.wasm", plugin.name))
    };
    let caps = crate::plugins::Capabilities::default();
    let loaded = crate::plugins::load(&sandbox, &file, &caps).map_err(|e| {
        let built = std::path::Path::new("target/plugins").join(file.strip_prefix(&args.plugins).unwrap_or(&file));
        if built.exists() && built != file {
            format!("{e} (this repository builds its plugins into target/plugins: add --plugins target/plugins)")
        } else {
            e.to_string()
        }
    })?;
    let registry = Arc::new(Registry::new(sandbox, &args.plugins, caps));
    let settings = worker::Settings {
        cache_ttl: args.cache_ttl,
        ..worker::Settings::default()
    };
    registry.insert_with(plugin.clone(), Arc::new(loaded), settings);
    let mut config = WorkerConfig::new(queue_config.clone(), &args.plugins);
    if let Some(c) = args.concurrency {
        config.concurrency = c.max(1);
    }
    config.batch = args.batch.max(1);
    config.prefetch = args.prefetch;
    config.rescan = None;
    config.fleet = false;
    config.cache_memory = args.cache_memory;
    let concurrency = config.concurrency;

    let rt = runtime();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (worker_queue, client) = rt.block_on(async {
        let w = Queue::connect(queue_config.clone()).await;
        let c = Queue::connect(queue_config.clone()).await;
        (w, c)
    });
    let worker_queue = worker_queue.map_err(|e| e.to_string())?;
    let client = client.map_err(|e| e.to_string())?;
    let kv: Arc<dyn KeyValue> =
        Arc::new(RedisKv::new(&url, &queue_config.prefix).map_err(|e| e.to_string())?);
    let wq = worker_queue.clone();
    let worker_thread = std::thread::spawn(move || {
        runtime().block_on(worker::run_on(config, registry, wq, Some(kv), async {
            let _ = stop_rx.await;
        }))
    });

    let instances_before = crate::sandbox::instances_created();
    let result = rt.block_on(drive(args, &plugin, &client, inputs));
    let _ = stop_tx.send(());
    let _ = worker_thread.join();
    drop(server);
    let (mut report, commands) = result?;
    report.instances = crate::sandbox::instances_created() - instances_before;
    let jobs = args.jobs.max(1) as f64;
    report.concurrency = concurrency;
    report.redis_commands_per_job = commands as f64 / jobs;
    report.worker_round_trips_per_job = worker_queue.round_trips() as f64 / jobs;
    report.round_trips_per_job = (worker_queue.round_trips() + client.round_trips()) as f64 / jobs;
    Ok(report)
}

async fn drive(
    args: &BenchArgs,
    plugin: &PluginName,
    client: &Queue,
    (payloads, content_type): (Vec<Vec<u8>>, String),
) -> Result<(Report, u64), String> {
    let err = |e: crate::queue::QueueError| e.to_string();
    let commands_before = client.server_command_calls().await.map_err(err)?;
    let bar = indicatif::ProgressBar::new(args.jobs as u64).with_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} {msg:10} [{bar:30}] {pos}/{len} jobs, {per_sec}, eta {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_message("enqueue");
    let started = Instant::now();
    let mut ids = Vec::with_capacity(args.jobs);
    let chunk = if args.rate > 0 { 1 } else { 500 };
    while ids.len() < args.jobs {
        let n = chunk.min(args.jobs - ids.len());
        let batch: Vec<NewJob> = (ids.len()..ids.len() + n)
            .map(|i| NewJob {
                content_type: content_type.clone(),
                ..NewJob::new(plugin.clone(), payloads[i % payloads.len()].clone())
            })
            .collect();
        let done = if n == 1 {
            vec![client.enqueue(&batch[0]).await.map_err(err)?]
        } else {
            client.enqueue_many(&batch).await.map_err(err)?
        };
        ids.extend(done.into_iter().map(|e| e.id));
        bar.set_position(ids.len() as u64);
        if args.rate > 0 {
            let due = Duration::from_secs_f64(ids.len() as f64 / args.rate as f64);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                tokio::time::sleep(wait).await;
            }
        }
    }
    let enqueue_secs = started.elapsed().as_secs_f64();
    bar.set_message("run");
    loop {
        let stats = client.stats().await.map_err(err)?;
        let finished = stats.succeeded_total + stats.dead_total;
        bar.set_position(finished);
        if finished >= args.jobs as u64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bar.finish_and_clear();
    let commands = client.server_command_calls().await.map_err(err)? - commands_before;
    let times = client.job_times(&ids).await.map_err(err)?;
    let succeeded = times
        .iter()
        .filter(|t| t.status == Some(Status::Succeeded))
        .count();
    let first = times
        .iter()
        .filter_map(|t| t.enqueued_us)
        .min()
        .unwrap_or(0);
    let last = times
        .iter()
        .filter_map(|t| t.finished_us)
        .max()
        .unwrap_or(first);
    let wall = (last.saturating_sub(first)) as f64 / 1e6;
    let span = |a: fn(&crate::queue::JobTimes) -> Option<u64>,
                b: fn(&crate::queue::JobTimes) -> Option<u64>| {
        let mut v: Vec<f64> = times
            .iter()
            .filter_map(|t| Some(b(t)?.saturating_sub(a(t)?) as f64 / 1000.0))
            .collect();
        v.sort_by(f64::total_cmp);
        percentiles(&v)
    };
    Ok((
        Report {
            plugin: plugin.to_string(),
            jobs: args.jobs,
            concurrency: 0,
            payload_bytes: payloads[0].len(),
            succeeded,
            failed: args.jobs - succeeded,
            enqueue_jobs_per_sec: args.jobs as f64 / enqueue_secs.max(1e-9),
            jobs_per_sec: args.jobs as f64 / wall.max(1e-9),
            wall_seconds: wall,
            latency_ms: span(|t| t.enqueued_us, |t| t.finished_us),
            pickup_ms: span(|t| t.enqueued_us, |t| t.started_us),
            redis_commands_per_job: 0.0,
            worker_round_trips_per_job: 0.0,
            round_trips_per_job: 0.0,
            cache: times.iter().filter_map(|t| t.cache.clone()).fold(
                Default::default(),
                |mut m, c| {
                    *m.entry(c).or_default() += 1;
                    m
                },
            ),
            instances: 0,
        },
        commands,
    ))
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

fn percentiles(sorted: &[f64]) -> Percentiles {
    let at = |q: f64| {
        if sorted.is_empty() {
            return 0.0;
        }
        let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
        (sorted[i] * 100.0).round() / 100.0
    };
    Percentiles {
        p50: at(0.50),
        p95: at(0.95),
        p99: at(0.99),
        max: at(1.0),
    }
}

fn print(r: &Report, json: bool) {
    if json {
        println!("{}", serde_json::to_string_pretty(r).unwrap_or_default());
        return;
    }
    println!(
        "spool bench: {} jobs of {} ({}-byte payloads), concurrency {}",
        r.jobs, r.plugin, r.payload_bytes, r.concurrency
    );
    println!("  succeeded          {} ({} failed)", r.succeeded, r.failed);
    println!("  enqueue            {:.0} jobs/s", r.enqueue_jobs_per_sec);
    println!(
        "  end to end         {:.0} jobs/s ({:.2}s from first enqueue to last finish)",
        r.jobs_per_sec, r.wall_seconds
    );
    let p = &r.latency_ms;
    println!(
        "  enqueue→finished   p50 {} ms, p95 {} ms, p99 {} ms, max {} ms",
        p.p50, p.p95, p.p99, p.max
    );
    let p = &r.pickup_ms;
    println!(
        "  enqueue→started    p50 {} ms, p95 {} ms, p99 {} ms, max {} ms",
        p.p50, p.p95, p.p99, p.max
    );
    println!(
        "  redis commands     {:.2} per job (INFO commandstats, inside scripts included)",
        r.redis_commands_per_job
    );
    println!(
        "  round trips        {:.3} per job by the worker, {:.3} with enqueueing",
        r.worker_round_trips_per_job, r.round_trips_per_job
    );
    let cache: Vec<String> = r.cache.iter().map(|(k, n)| format!("{k} {n}")).collect();
    println!("  result cache       {}", cache.join(", "));
    println!("  sandbox instances  {} for {} jobs", r.instances, r.jobs);
}
