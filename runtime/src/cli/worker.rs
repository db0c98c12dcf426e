//! `spool worker`: serve the queue with the plugins in a directory until
//! SIGTERM/SIGINT, then stop gracefully.

use super::connect::{RedisArgs, runtime, stop_signal};
use super::exit;
use crate::config::{parse_duration, parse_size};
use crate::plugins::Capabilities;
use crate::sandbox::{Limits, Sandbox, SandboxConfig};
use crate::worker::{self, WorkerConfig};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, clap::Args)]
pub(crate) struct WorkerArgs {
    #[command(flatten)]
    pub redis: RedisArgs,

    /// Plugins directory: NAME.wasm is plugin default/NAME,
    /// TENANT/NAME.wasm is TENANT/NAME. Rescanned every second.
    #[arg(long, env = "SPOOL_PLUGINS", default_value = "plugins")]
    pub plugins: PathBuf,

    /// Serve Prometheus metrics, /healthz and /readyz on this address
    /// (e.g. 127.0.0.1:9100; no token: bind where only the scraper
    /// reaches).
    #[arg(long, env = "SPOOL_METRICS")]
    pub metrics: Option<std::net::SocketAddr>,

    /// Jobs run at once, each on its own thread [default: number of
    /// cores]. While jobs are short (under 50 µs) one thread takes them
    /// and the others rest; they come back for slow ones
    #[arg(long, env = "SPOOL_CONCURRENCY")]
    pub concurrency: Option<usize>,

    /// Most jobs claimed per Redis round trip (acks carry up to 256, or
    /// this many if more).
    #[arg(long, env = "SPOOL_BATCH", default_value_t = crate::worker::DEFAULT_BATCH)]
    pub batch: usize,

    /// Most jobs claimed ahead of the job threads (they wait in this
    /// worker's queue). The worker claims ahead only what its threads finish
    /// within --prefetch-horizon at the recent job duration: many short
    /// jobs, no long ones.
    #[arg(long, env = "SPOOL_PREFETCH", default_value_t = crate::worker::DEFAULT_PREFETCH)]
    pub prefetch: usize,

    /// How far ahead, in time, the job threads' work is claimed: longer
    /// saves round trips for jobs of milliseconds, shorter leaves more of
    /// them to other workers.
    #[arg(long, env = "SPOOL_PREFETCH_HORIZON", default_value = "20ms", value_parser = parse_duration)]
    pub prefetch_horizon: Duration,

    /// How long a lone success no client waits for may wait for the next
    /// job's outcome, so that both go to Redis in one script call (fewer
    /// commands per job at moderate rates). Only while outcomes come that
    /// often; never for a job of a group or a tenant with a concurrency
    /// cap. 0 sends each at once; at most 1s, and a third of --lease
    #[arg(long, env = "SPOOL_ACK_LINGER", default_value = "10ms", value_parser = parse_ack_linger)]
    pub ack_linger: Duration,

    /// Most bytes of job records one claim takes (a first job is taken
    /// whatever its size), and of payloads claimed ahead waiting for a job
    /// thread: jobs of megabytes are claimed a few at a time, not --batch
    /// at once (0: no limit).
    #[arg(long, env = "SPOOL_CLAIM_BYTES", default_value = "4MiB", value_parser = parse_cache_size)]
    pub claim_bytes: u64,

    /// Lease per attempt: a worker that stops renewing it (crash, kill -9,
    /// lost network) has its jobs run again by others after this long.
    #[arg(long, env = "SPOOL_LEASE", default_value = "10s", value_parser = parse_duration)]
    pub lease: Duration,

    /// First retry delay; doubles per attempt, with jitter.
    #[arg(long, env = "SPOOL_BACKOFF", default_value = "1s", value_parser = parse_duration)]
    pub backoff: Duration,

    /// How long running jobs may take to finish after SIGTERM/SIGINT before
    /// they are handed back.
    #[arg(long, env = "SPOOL_GRACE", default_value = "30s", value_parser = parse_duration)]
    pub grace: Duration,

    /// Claim jobs after this long even if the fleet store has not answered
    /// yet (serving this worker's directory versions until it does).
    /// Default: wait for the first sync, so that no job runs on a version a
    /// deploy or rollback replaced.
    #[arg(long, env = "SPOOL_FLEET_SYNC_WAIT", value_parser = parse_duration)]
    pub fleet_sync_wait: Option<Duration>,

    /// How long past its deadline a job may hold its thread (a host call
    /// that does not return) before the worker releases the job to the
    /// queue and starts a new thread.
    #[arg(long, env = "SPOOL_WEDGE_GRACE", default_value = "10s", value_parser = parse_duration)]
    pub wedge_grace: Duration,

    /// How long a job waits for its plugin to be loaded before it is
    /// dead-lettered.
    #[arg(long, env = "SPOOL_PLUGIN_WAIT", default_value = "1h", value_parser = parse_duration)]
    pub plugin_wait: Duration,

    /// Deadline per job.
    #[arg(long, env = "SPOOL_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub timeout: Duration,

    /// Most linear memory per job.
    #[arg(long, env = "SPOOL_MEMORY", default_value = "64MiB", value_parser = parse_size)]
    pub memory: u64,

    /// Let plugins import wasi:sockets (every connection is still refused).
    #[arg(long)]
    pub allow_network: bool,

    #[command(flatten)]
    pub http: super::http_args::HttpArgs,

    /// Keep compiled plugins here between runs, so that a restart compiles
    /// nothing it compiled before. Must be private to this user. [default:
    /// $XDG_CACHE_HOME/spool/artifacts, else ~/.cache/spool/artifacts]
    #[arg(long, env = "SPOOL_ARTIFACT_CACHE")]
    pub artifact_cache: Option<PathBuf>,

    /// Compile every plugin at every start. Wins over --artifact-cache and
    /// SPOOL_ARTIFACT_CACHE (an exported cache directory must not make
    /// this flag a usage error).
    #[arg(long)]
    pub no_artifact_cache: bool,

    /// This worker's id in job records [default: HOST:PID:RANDOM]
    #[arg(long, env = "SPOOL_WORKER_ID")]
    pub id: Option<String>,

    /// Most bytes of results the result cache keeps in this worker's
    /// memory, in front of Redis (0: none).
    #[arg(long, env = "SPOOL_CACHE_MEMORY", default_value = "64MiB", value_parser = parse_cache_size)]
    pub cache_memory: u64,

    /// Never use the result cache: every job runs its handler.
    #[arg(long)]
    pub no_result_cache: bool,
}

/// `--ack-linger`: a duration from 0 (send each ack at once) to
/// [`crate::worker::ACK_LINGER_MAX`]: a longer one would show every
/// success a client does not wait for as running that much longer.
pub(crate) fn parse_ack_linger(text: &str) -> Result<Duration, String> {
    let linger = humantime::parse_duration(text.trim()).map_err(|e| {
        format!(
            "invalid --ack-linger {text:?}: {e}; expected e.g. 10ms, or 0 to send each ack at once"
        )
    })?;
    if linger > crate::worker::ACK_LINGER_MAX {
        return Err(format!(
            "invalid --ack-linger {text:?}: at most {:?}, expected e.g. 10ms (0 sends each ack at once)",
            crate::worker::ACK_LINGER_MAX
        ));
    }
    Ok(linger)
}

impl WorkerArgs {
    pub fn worker_config(&self) -> WorkerConfig {
        let mut config = WorkerConfig::new(self.redis.queue_config(), &self.plugins);
        if let Some(c) = self.concurrency {
            config.concurrency = c.max(1);
        }
        config.batch = self.batch.max(1);
        config.prefetch = self.prefetch;
        config.prefetch_horizon = self.prefetch_horizon;
        config.ack_linger = self.ack_linger;
        config.claim_bytes = usize::try_from(self.claim_bytes).unwrap_or(usize::MAX);
        config.lease = self.lease.max(Duration::from_millis(300));
        config.backoff = self.backoff;
        config.grace = self.grace;
        config.wedge_grace = self.wedge_grace;
        config.fleet_sync_wait = self.fleet_sync_wait;
        config.plugin_wait = self.plugin_wait;
        config.limits = Limits {
            timeout: self.timeout,
            memory: self.memory,
            ..Limits::default()
        };
        config.capabilities = Capabilities {
            network: self.allow_network,
            ..Capabilities::default()
        };
        config.outbound = std::sync::Arc::new(self.http.outbound());
        config.artifact_cache = if self.no_artifact_cache {
            None
        } else {
            self.artifact_cache.clone().or_else(default_artifact_cache)
        };
        if let Some(id) = &self.id {
            config.worker_id.clone_from(id);
        }
        config.cache_memory = self.cache_memory;
        config.result_cache = !self.no_result_cache;
        config
    }

    pub fn sandbox(&self) -> Result<Sandbox, String> {
        Sandbox::new(SandboxConfig {
            max_memory: self.memory,
            ..SandboxConfig::default()
        })
        .map_err(|e| e.to_string())
    }
}

/// A size, where 0 (off) is allowed.
fn parse_cache_size(text: &str) -> Result<u64, String> {
    if text.trim() == "0" {
        Ok(0)
    } else {
        parse_size(text)
    }
}

/// `$XDG_CACHE_HOME/spool/artifacts`, else `~/.cache/spool/artifacts`.
fn default_artifact_cache() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("spool").join("artifacts"))
}

pub(crate) fn run(args: WorkerArgs) -> u8 {
    let rt = runtime();
    let stop = stop_signal(&rt);
    let config = args.worker_config();
    let sandbox = match args.sandbox() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("spool: {e}");
            return exit::FAILED;
        }
    };
    if let Some(addr) = args.metrics
        && let Err(code) = serve_metrics(&rt, addr, &config)
    {
        return code;
    }
    eprintln!(
        "spool worker {} serving {} from {} (concurrency {})",
        config.worker_id,
        crate::redis::redact(&config.queue.url),
        config.plugins_dir.display(),
        config.concurrency
    );
    match rt.block_on(worker::run(config, sandbox, stop)) {
        Ok(report) => {
            eprintln!(
                "spool worker stopped: {} succeeded, {} retried, {} dead, {} handed back",
                report.succeeded, report.retried, report.dead, report.handed_back
            );
            exit::OK
        }
        Err(e) => {
            eprintln!("spool: {e}");
            exit::USAGE
        }
    }
}

/// `--metrics ADDR`: `/metrics`, `/healthz`, `/readyz` on the worker's
/// runtime, for as long as the process lives.
fn serve_metrics(
    rt: &tokio::runtime::Runtime,
    addr: std::net::SocketAddr,
    config: &WorkerConfig,
) -> Result<(), u8> {
    let listener = rt
        .block_on(tokio::net::TcpListener::bind(addr))
        .map_err(|e| {
            eprintln!("spool: cannot serve metrics on {addr}: {e}");
            exit::FAILED
        })?;
    let bound = listener.local_addr().unwrap_or(addr);
    let app = crate::api::worker::worker_router(std::sync::Arc::clone(&config.metrics));
    rt.spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!("metrics on {bound} stopped: {e}");
        }
    });
    eprintln!("spool worker metrics on http://{bound}/metrics");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    /// The worker settings `spool worker ARGS` runs with.
    fn config(args: &[&str]) -> Result<WorkerConfig, clap::error::ErrorKind> {
        let argv = ["spool", "worker"].iter().chain(args);
        match Cli::try_parse_from(argv).map_err(|e| e.kind())?.command {
            Command::Worker(args) => Ok(args.worker_config()),
            other => panic!("parsed as {other:?}"),
        }
    }

    /// `--ack-linger` takes 0 (off) to a second, 10 ms by default.
    #[test]
    fn the_ack_linger_is_off_to_a_second() {
        assert_eq!(config(&[]).unwrap().ack_linger, crate::worker::ACK_LINGER);
        assert_eq!(
            config(&["--ack-linger=0"]).unwrap().ack_linger,
            Duration::ZERO
        );
        assert_eq!(
            config(&["--ack-linger=250ms"]).unwrap().ack_linger,
            Duration::from_millis(250)
        );
        assert_eq!(
            config(&["--ack-linger=2s"]).unwrap_err(),
            clap::error::ErrorKind::ValueValidation
        );
    }

    #[test]
    fn the_claim_byte_budget_defaults_to_the_library_s() {
        let c = config(&["--plugins=p"]).unwrap();
        assert_eq!(c.claim_bytes, crate::worker::DEFAULT_CLAIM_BYTES);
        assert_eq!(
            config(&["--plugins=p", "--claim-bytes=0"])
                .unwrap()
                .claim_bytes,
            0
        );
    }

    #[test]
    fn every_flag_reaches_the_worker_settings() {
        let c = config(&[
            "--plugins=p",
            "--redis=redis://h:1",
            "--prefix=acme",
            "--queue=q",
            "--record-ttl=90s",
            "--dead-ttl=2m",
            "--dead-cap=7",
            "--keep-succeeded=50",
            "--concurrency=3",
            "--batch=5",
            "--prefetch=6",
            "--prefetch-horizon=1s",
            "--claim-bytes=1MiB",
            "--lease=4s",
            "--backoff=50ms",
            "--grace=9s",
            "--wedge-grace=3s",
            "--fleet-sync-wait=1m",
            "--plugin-wait=8s",
            "--timeout=2s",
            "--memory=32MiB",
            "--allow-network",
            "--id=w9",
            "--no-artifact-cache",
            "--no-result-cache",
            "--cache-memory=0",
        ])
        .unwrap();
        let q = &c.queue;
        assert_eq!(
            (q.url.as_str(), q.prefix.as_str(), q.queue.as_str()),
            ("redis://h:1", "acme", "q")
        );
        assert_eq!(
            (q.record_ttl, q.dead_ttl, q.dead_cap, q.keep_succeeded),
            (
                Duration::from_secs(90),
                Duration::from_secs(120),
                7,
                Some(50)
            )
        );
        assert_eq!(c.plugins_dir, PathBuf::from("p"));
        assert_eq!((c.concurrency, c.batch, c.prefetch), (3, 5, 6));
        assert_eq!(c.prefetch_horizon, Duration::from_secs(1));
        assert_eq!(c.claim_bytes, 1 << 20);
        assert_eq!(c.wedge_grace, Duration::from_secs(3));
        assert_eq!(c.fleet_sync_wait, Some(Duration::from_secs(60)));
        assert_eq!(
            (c.lease, c.backoff, c.grace, c.plugin_wait),
            (
                Duration::from_secs(4),
                Duration::from_millis(50),
                Duration::from_secs(9),
                Duration::from_secs(8)
            )
        );
        assert_eq!(
            (c.limits.timeout, c.limits.memory),
            (Duration::from_secs(2), 32 << 20)
        );
        assert!(c.capabilities.network);
        assert_eq!(c.worker_id, "w9");
        assert_eq!(c.artifact_cache, None, "--no-artifact-cache");
        assert!(!c.result_cache, "--no-result-cache");
        assert_eq!(c.cache_memory, 0);
    }

    #[test]
    fn turning_the_artifact_cache_off_wins_over_naming_one() {
        let both = config(&["--artifact-cache=a", "--no-artifact-cache"]).unwrap();
        assert_eq!(both.artifact_cache, None);
        let named = config(&["--artifact-cache=a"]).unwrap();
        assert_eq!(named.artifact_cache, Some(PathBuf::from("a")));
    }
}
