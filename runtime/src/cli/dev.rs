//! `spool dev`: everything for local development in one command — a private
//! `redis-server` (data and AOF under `./.spool/redis`), a worker, and the
//! plugins directory rescanned every second. Other `spool` commands run in
//! the same directory find this Redis through `./.spool/redis.url`.
//! `spool dev --cluster` starts a private Redis Cluster instead: 3 masters
//! and 3 replicas under `./.spool/cluster`, fresh for each run.

use super::connect::{DEV_URL_FILE, runtime, stop_signal};
use super::exit;
use super::worker::WorkerArgs;
use crate::redis::{ClusterShape, PrivateRedis, RedisCluster, RedisServer};
use crate::worker;
use std::path::Path;
use std::time::Duration;

#[derive(Debug, clap::Args)]
pub(crate) struct DevArgs {
    #[command(flatten)]
    worker: WorkerArgs,

    /// Serve the HTTP API and the dashboard here (another free port if it
    /// is taken), with an operator token kept in .spool/dashboard.token.
    #[arg(long, env = "SPOOL_DASHBOARD", default_value = "127.0.0.1:8080")]
    dashboard: std::net::SocketAddr,

    /// No API and no dashboard.
    #[arg(long)]
    no_dashboard: bool,

    /// Start a private Redis Cluster (3 masters, 3 replicas, on loopback
    /// ports) instead of one redis-server. Its data lives for this run only.
    #[arg(long, conflicts_with = "redis")]
    cluster: bool,
}

/// The Redis `spool dev` started, stopped when it stops.
/// What the banner says of the Redis `spool dev` started.
fn describe(redis: &PrivateRedis) -> &'static str {
    match redis {
        PrivateRedis::One(_) => " (private, data in .spool/redis)",
        PrivateRedis::Cluster(_) => {
            " (private cluster: 3 masters, 3 replicas, data in .spool/cluster for this run)"
        }
    }
}

pub(crate) fn run(mut args: DevArgs) -> u8 {
    // Caught from here on: a Ctrl-C while Redis starts or plugins compile
    // still stops the Redis we start.
    let rt = runtime();
    let stop = stop_signal(&rt);
    let server = match choose_redis(&mut args) {
        Ok(server) => server,
        Err(code) => return code,
    };
    if args.worker.artifact_cache.is_none() && !args.worker.no_artifact_cache {
        args.worker.artifact_cache = Some(".spool/artifacts".into());
    }
    let config = args.worker.worker_config();
    let sandbox = match args.worker.sandbox() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("spool: {e}");
            return exit::FAILED;
        }
    };
    banner(&config, server.as_ref().map_or("", describe));
    let (stopped, dashboard_stop) = tokio::sync::watch::channel(false);
    let dashboard = (!args.no_dashboard).then(|| {
        rt.spawn(super::dev_dashboard::beside(
            config.queue.clone(),
            args.dashboard,
            dashboard_stop,
        ))
    });
    let result = rt.block_on(worker::run(config, sandbox, stop));
    let _ = stopped.send(true);
    if let Some(task) = dashboard {
        let _ = rt.block_on(task);
    }
    if let Some(s) = server {
        s.stop();
        let _ = std::fs::remove_file(DEV_URL_FILE);
    }
    match result {
        Ok(report) => {
            eprintln!(
                "spool dev stopped: {} succeeded, {} retried, {} dead",
                report.succeeded, report.retried, report.dead
            );
            exit::OK
        }
        Err(e) => {
            eprintln!("spool: {e}");
            exit::USAGE
        }
    }
}

/// The URL in `.spool/redis.url`, if a Redis answers there.
fn running_dev_redis() -> Option<String> {
    let url = std::fs::read_to_string(DEV_URL_FILE)
        .ok()?
        .trim()
        .to_string();
    let first = match crate::redis::Target::parse(&url).ok()? {
        crate::redis::Target::One(one) => one,
        crate::redis::Target::Seeds(seeds) => seeds.into_iter().next()?,
    };
    let client = redis::Client::open(first.as_str()).ok()?;
    let mut conn = client
        .get_connection_with_timeout(std::time::Duration::from_millis(300))
        .ok()?;
    redis::cmd("PING").query::<String>(&mut conn).ok()?;
    Some(url)
}

/// The Redis to use: `--redis`, a dev Redis an earlier `spool dev` left
/// running here, or a new private one (returned, to stop with us).
fn choose_redis(args: &mut DevArgs) -> Result<Option<PrivateRedis>, u8> {
    if args
        .worker
        .redis
        .redis
        .as_deref()
        .is_some_and(|u| u.trim().is_empty())
    {
        args.worker.redis.redis = None;
    }
    if args.worker.redis.redis.is_none()
        && let Some(url) = running_dev_redis()
        // A cluster was asked for: a single dev Redis left here is not one.
        && (!args.cluster || url.contains(','))
    {
        // An earlier `spool dev` here still runs (or was killed and left
        // its Redis behind): use it, never a second server on the same data.
        eprintln!("spool dev: using the Redis already serving .spool/redis at {url}");
        args.worker.redis.redis = Some(url);
    }
    if args.worker.redis.redis.is_none() {
        match start_redis(args.cluster) {
            Ok(s) => {
                let url = s.url();
                if let Err(e) = write_atomically(DEV_URL_FILE, &format!("{url}\n")) {
                    eprintln!("spool: could not write {DEV_URL_FILE}: {e}");
                }
                args.worker.redis.redis = Some(url);
                return Ok(Some(s));
            }
            Err(e) => {
                eprintln!("spool: {e}");
                return Err(exit::USAGE);
            }
        }
    }
    Ok(None)
}

/// A new private Redis, or with `cluster`, a fresh private cluster
/// (a failed-over master's replica takes over within ~2 s).
fn start_redis(cluster: bool) -> Result<PrivateRedis, crate::redis::RedisServerError> {
    if !cluster {
        return RedisServer::start(Path::new(".spool/redis"), "everysec").map(PrivateRedis::One);
    }
    let dir = Path::new(".spool/cluster");
    let _ = std::fs::remove_dir_all(dir);
    eprintln!("spool dev: starting a Redis Cluster of 3 masters and 3 replicas…");
    let shape = ClusterShape::three_by_one(Duration::from_secs(2), "everysec");
    RedisCluster::start(dir, shape).map(PrivateRedis::Cluster)
}

/// What runs where, and how to try it.
fn banner(config: &crate::worker::WorkerConfig, private: &str) {
    eprintln!("spool dev");
    eprintln!(
        "  redis    {}{}",
        crate::redis::redact(&config.queue.url),
        private
    );
    eprintln!(
        "  plugins  {} (rescanned every second)",
        config.plugins_dir.display()
    );
    eprintln!("  try      spool enqueue hello --input '{{\"name\":\"Ada\"}}' --wait");
    eprintln!("  stop     Ctrl-C");
}

/// Write `text` to `path` whole or not at all: a reader (another `spool`
/// command looking for the dev Redis) never sees it half-written.
fn write_atomically(path: &str, text: &str) -> std::io::Result<()> {
    let tmp = format!("{path}.{}.tmp", std::process::id());
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}
