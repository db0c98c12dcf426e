//! `spool dead list | retry | purge`: the dead letters — jobs that failed
//! for good or ran out of attempts.

use super::connect::{RedisArgs, fail, runtime};
use super::exit;
use super::shown::shown;
use crate::queue::DeadEntry;

#[derive(Debug, clap::Args)]
pub(crate) struct DeadArgs {
    #[command(flatten)]
    redis: RedisArgs,

    #[command(subcommand)]
    command: DeadCommand,
}

#[derive(Debug, clap::Subcommand)]
enum DeadCommand {
    /// List dead letters, newest first, with their last error.
    List {
        /// Show at most this many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Put dead letters back on the queue with fresh attempts.
    Retry {
        /// Job ids to retry.
        #[arg(required_unless_present = "all")]
        ids: Vec<String>,
        /// Retry every dead letter.
        #[arg(long, conflicts_with = "ids")]
        all: bool,
    },
    /// Delete dead letters and their records.
    Purge {
        /// Job ids to delete.
        #[arg(required_unless_present = "all")]
        ids: Vec<String>,
        /// Delete every dead letter.
        #[arg(long, conflicts_with = "ids")]
        all: bool,
    },
}

pub(crate) fn run(args: DeadArgs) -> u8 {
    runtime().block_on(async {
        let queue = match args.redis.connect().await {
            Ok(q) => q,
            Err(e) => return fail(&e),
        };
        match args.command {
            DeadCommand::List { limit, json } => match queue.dead_list(limit).await {
                Ok((total, entries)) => {
                    print_list(total, &entries, json);
                    exit::OK
                }
                Err(e) => fail(&e),
            },
            DeadCommand::Retry { ids, all: _ } => match queue.dead_retry(&ids).await {
                Ok(moved) => {
                    let missing: Vec<_> = ids.iter().filter(|id| !moved.contains(id)).collect();
                    println!("requeued {} dead letters", moved.len());
                    if !missing.is_empty() {
                        eprintln!(
                            "spool: not in the dead letters: {}",
                            missing
                                .iter()
                                .map(|s| s.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        );
                        return exit::FAILED;
                    }
                    exit::OK
                }
                Err(e) => fail(&e),
            },
            DeadCommand::Purge { ids, all: _ } => match queue.dead_purge(&ids).await {
                Ok(n) => {
                    println!("purged {n} dead letters");
                    exit::OK
                }
                Err(e) => fail(&e),
            },
        }
    })
}

/// `spool dead list`: JSON, or a line per dead letter.
fn print_list(total: u64, entries: &[DeadEntry], json: bool) {
    if json {
        let value = serde_json::json!({"total": total, "jobs": entries});
        println!(
            "{}",
            serde_json::to_string_pretty(&value).unwrap_or_default()
        );
        return;
    }
    if entries.is_empty() {
        println!("no dead letters");
        return;
    }
    println!("{total} dead letters (showing {})", entries.len());
    for entry in entries {
        let (plugin, attempts, error) =
            entry
                .record
                .as_ref()
                .map_or(("?".to_string(), 0, "record expired".to_string()), |r| {
                    let error = r
                        .error
                        .as_ref()
                        .and_then(|e| e.get("message"))
                        .and_then(|m| m.as_str())
                        .unwrap_or("")
                        .to_string();
                    (r.plugin.clone(), r.attempts, error)
                });
        println!(
            "{}  {}  attempts {attempts}  {}",
            shown(&entry.id),
            shown(&plugin),
            shown(&error)
        );
    }
}
