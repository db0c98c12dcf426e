//! `spool migrate`: move jobs enqueued under an older Spool's keys (one
//! list per priority for the whole queue) into their tenants' queues now,
//! instead of waiting for a worker's sweep. Safe to run beside workers and
//! to run again.

use super::connect::{RedisArgs, fail, runtime};
use super::exit;
use std::io::Write;

#[derive(Debug, clap::Args)]
pub(crate) struct MigrateArgs {
    #[command(flatten)]
    redis: RedisArgs,
}

pub(crate) fn run(args: MigrateArgs) -> u8 {
    runtime().block_on(async {
        let queue = match args.redis.connect().await {
            Ok(q) => q,
            Err(e) => return fail(&e),
        };
        let name = queue.config().queue.clone();
        let waiting = match queue.legacy_jobs().await {
            Ok(n) => n,
            Err(e) => return fail(&e),
        };
        if waiting == 0 {
            println!("queue {name}: no jobs under the old keys; nothing to move");
            return exit::OK;
        }
        eprintln!("queue {name}: moving {waiting} jobs into their tenants' queues");
        let moved = queue
            .migrate_legacy(|n| {
                eprint!("\r  {n} of {waiting} moved");
                let _ = std::io::stderr().flush();
            })
            .await;
        eprintln!();
        match moved {
            Ok(n) => {
                println!(
                    "queue {name}: moved {n} jobs; run again any time, it moves only what is left"
                );
                exit::OK
            }
            Err(e) => fail(&e),
        }
    })
}
