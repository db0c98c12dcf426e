//! The `spool` command line. clap parses; each subcommand module turns the
//! arguments into validated settings and runs. Exit codes are part of the
//! interface (see [`exit`]).

mod api_client;
mod bench;
mod cache;
mod call;
mod connect;
mod dead;
mod dev;
mod dev_dashboard;
mod enqueue;
mod enqueue_api;
mod fleet_wait;
mod http_args;
mod job;
mod migrate;
mod plugins;
mod serve;
mod shown;
mod tenant_list;
mod tenants;
mod tokens;
mod worker;

use clap::{Parser, Subcommand};

/// Exit codes of `spool`.
pub mod exit {
    /// The job succeeded.
    pub const OK: u8 = 0;
    /// The job failed and retrying cannot help (fatal, invalid input, trap,
    /// limit).
    pub const FAILED: u8 = 1;
    /// Usage error, or the plugin could not be loaded.
    pub const USAGE: u8 = 2;
    /// The job failed and a retry may help (`EX_TEMPFAIL` from sysexits.h).
    pub const RETRYABLE: u8 = 75;
}

/// Spool: run WebAssembly job handlers in a sandbox.
#[derive(Debug, Parser)]
#[command(name = "spool", version, about, long_about = None)]
pub struct Cli {
    #[command(flatten)]
    api: api_client::ApiTarget,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run one job on a plugin file, right here, and print its output.
    Call(call::CallArgs),
    /// Put a job on the queue (or a JSON-lines file of jobs); --wait for it.
    Enqueue(enqueue::EnqueueArgs),
    /// Show a job's record: status, attempts, timings, output or error, logs.
    Job(job::JobArgs),
    /// List, retry or purge dead letters.
    Dead(dead::DeadArgs),
    /// Serve the queue with the plugins in a directory.
    Worker(worker::WorkerArgs),
    /// What the fleet serves; plugin history; deploy, roll back, unpin.
    Plugins(plugins::PluginsArgs),
    /// The result cache: stats per plugin, purges.
    Cache(cache::CacheArgs),
    /// Tenants: quotas and usage, fair-share settings (weight, cap, rate,
    /// groups), what each has queued; pause and resume.
    Tenants(tenants::TenantsArgs),
    /// Move jobs enqueued under an older Spool's keys into their tenants'
    /// queues (workers also do it by themselves).
    Migrate(migrate::MigrateArgs),
    /// Local development: a private redis-server plus a worker, in one command.
    Dev(dev::DevArgs),
    /// Measure end-to-end throughput and latency with a real Redis and worker.
    Bench(bench::BenchArgs),
    /// Serve the HTTP API (tenant tokens, jobs, health) on an address.
    Serve(serve::ServeArgs),
    /// Tenant tokens for the HTTP API: create, list, revoke.
    Tokens(tokens::TokensArgs),
}

/// Parse the arguments and run; returns the process exit code.
pub fn run() -> u8 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            return if error.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            };
        }
    };
    // Long-running commands say what they do; one-shot ones stay quiet.
    let long_running = matches!(
        cli.command,
        Command::Worker(_) | Command::Dev(_) | Command::Serve(_)
    );
    init_tracing(if long_running { "info" } else { "warn" });
    // SPOOL_API in the environment is for the commands that can use it;
    // `--api` given to another command is a mistake worth saying.
    let on_line = std::env::args().any(|a| a == "--api" || a.starts_with("--api="));
    let api = match &cli.api.api {
        None => None,
        Some(_) if !matches!(cli.command, Command::Enqueue(_)) && !on_line => None,
        Some(_) if !matches!(cli.command, Command::Enqueue(_)) => {
            eprintln!(
                "spool: --api works with `enqueue` only for now; the other commands need --redis (or use the HTTP API's routes, docs/api.md)"
            );
            return exit::USAGE;
        }
        Some(_) => match cli.api.client() {
            Ok(api) => Some(api),
            Err(message) => {
                eprintln!("spool: {message}");
                return exit::USAGE;
            }
        },
    };
    match cli.command {
        Command::Call(args) => call::run(args),
        Command::Enqueue(args) => match &api {
            Some(api) => enqueue_api::run(&args, api),
            None => enqueue::run(args),
        },
        Command::Job(args) => job::run(args),
        Command::Dead(args) => dead::run(args),
        Command::Worker(args) => worker::run(args),
        Command::Plugins(args) => plugins::run(args),
        Command::Cache(args) => cache::run(args),
        Command::Tenants(args) => tenants::run(args),
        Command::Migrate(args) => migrate::run(args),
        Command::Dev(args) => dev::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Tokens(args) => tokens::run(args),
    }
}

/// Log to stderr, filtered by `SPOOL_LOG` (default: `info` for `worker` and
/// `dev`, warnings only otherwise, so a command's own output stays clean).
/// Colours only on a terminal: a log file or a collector gets plain text.
fn init_tracing(default: &str) {
    use std::io::IsTerminal as _;
    let filter = tracing_subscriber::EnvFilter::try_from_env("SPOOL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}
