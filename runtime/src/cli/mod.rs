//! The `spool` command line. clap parses; each subcommand module turns the
//! arguments into validated settings and runs. Exit codes are part of the
//! interface (see [`exit`]).

mod call;

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
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run one job on a plugin file, right here, and print its output.
    Call(call::CallArgs),
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
    init_tracing();
    match cli.command {
        Command::Call(args) => call::run(args),
    }
}

/// Log to stderr, filtered by `SPOOL_LOG` (default: warnings only, so the
/// command's own output stays clean).
fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SPOOL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
