//! `spool cache stats | purge`: what the result cache holds and how often
//! it answers, and deleting exactly the entries a scope names.

use super::connect::{RedisArgs, fail, runtime};
use super::exit;
use super::fleet_wait::{State, WaitArgs, settle};
use crate::cache::{self, PluginStats, Scope};
use crate::deploy::{DeployError, FleetStore, WorkerStatus};
use crate::queue::{QueueConfig, QueueError};
use crate::redis::RedisError;
use crate::redis::SyncRedis;

#[derive(Debug, clap::Args)]
pub(crate) struct CacheArgs {
    #[command(flatten)]
    redis: RedisArgs,

    #[command(subcommand)]
    command: CacheCommand,
}

#[derive(Debug, clap::Subcommand)]
enum CacheCommand {
    /// Entries, bytes and hits per plugin.
    Stats {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete cached results. The options combine: `--plugin acme/resize
    /// --version D` deletes that version's entries only.
    Purge {
        /// Entries of this plugin (`tenant/name`, or `name` for tenant
        /// `default`).
        #[arg(long)]
        plugin: Option<String>,
        /// Entries of this plugin version (the 64-digit digest that job
        /// records and `spool plugins history` show).
        #[arg(long, value_name = "DIGEST")]
        version: Option<String>,
        /// Entries of this tenant.
        #[arg(long)]
        tenant: Option<String>,
        /// The entry with this cache key (`cache_key` in a job record).
        #[arg(long)]
        key: Option<String>,
        /// Every entry.
        #[arg(long, conflicts_with_all = ["plugin", "version", "tenant", "key"])]
        all: bool,
        #[command(flatten)]
        wait: WaitArgs,
    },
}

pub(crate) fn run(args: CacheArgs) -> u8 {
    let config = args.redis.queue_config();
    let redis = match super::connect::sync_redis(&config) {
        Ok(redis) => redis,
        Err(code) => return code,
    };
    match args.command {
        CacheCommand::Stats { json } => stats(&redis, &config.prefix, json),
        CacheCommand::Purge {
            plugin,
            version,
            tenant,
            key,
            all,
            wait,
        } => {
            let scope = match scope(plugin, version, tenant, key) {
                Ok(scope) => scope,
                Err(message) => {
                    eprintln!("spool: {message}");
                    return exit::USAGE;
                }
            };
            if scope.is_everything() && !all {
                eprintln!(
                    "spool: name what to purge (--plugin, --version, --tenant, --key), or --all"
                );
                return exit::USAGE;
            }
            purge(&redis, &config, &scope, &wait)
        }
    }
}

/// A Redis error of the cache commands, classified.
fn error(redis: &SyncRedis, e: redis::RedisError) -> QueueError {
    QueueError::Redis(RedisError::classify(
        redis.url(),
        "read the result cache",
        e,
    ))
}

/// `spool cache stats`.
fn stats(redis: &SyncRedis, prefix: &str, json: bool) -> u8 {
    let bar = spinner("scanning the cache");
    match cache::read_stats(redis, prefix, |n| {
        bar.set_message(format!("{n} entries"));
    }) {
        Ok(stats) => {
            bar.finish_and_clear();
            print_stats(&stats, json);
            exit::OK
        }
        Err(e) => fail(&error(redis, e)),
    }
}

/// `spool cache purge`: delete the entries in Redis, then tell the workers
/// to drop them from memory and wait for them to confirm.
fn purge(redis: &SyncRedis, config: &QueueConfig, scope: &Scope, wait: &WaitArgs) -> u8 {
    let bar = spinner("purging");
    let mut deleted = 0;
    let purged = cache::purge(redis, &config.prefix, scope, |scanned, n| {
        deleted = n;
        bar.set_message(format!("{scanned} keys scanned, {n} deleted"));
    });
    bar.finish_and_clear();
    let failed = purged.err().map(|e| error(redis, e));
    if let Some(e) = &failed {
        // Some entries may be gone already: the workers are told below all
        // the same.
        eprintln!("spool: the purge stopped after {deleted} deletions: {e}");
    } else {
        println!("purged {deleted} cached results ({})", scope.describe());
    }
    // Workers drop the same entries from their memory.
    let json = serde_json::to_string(scope).expect("a scope serializes");
    let told = runtime().block_on(async {
        let store = FleetStore::connect(&config.url, &config.prefix).await?;
        let event = store.announce_purge(&json).await?;
        Ok::<_, DeployError>(workers_dropped(&store, &event, wait).await)
    });
    if let Some(e) = failed {
        return fail(&e);
    }
    match told {
        Ok(code) => code,
        Err(e) => {
            eprintln!(
                "spool: workers were not told to drop them from memory ({e}); there they expire with their TTL"
            );
            if e.is_retryable() {
                exit::RETRYABLE
            } else {
                exit::FAILED
            }
        }
    }
}

/// Wait (up to `wait`) until every running worker has acted on the purge
/// event `event`, and say so.
async fn workers_dropped(store: &FleetStore, event: &str, wait: &WaitArgs) -> u8 {
    let judge = |w: &WorkerStatus| {
        if crate::deploy::has_seen(&w.events_seen, event) {
            State::Done
        } else {
            State::Pending(
                "has not read the purge; it drops the entries when it does, or they expire there"
                    .to_string(),
            )
        }
    };
    settle(
        store,
        wait,
        "dropped them from memory",
        "no worker is running",
        judge,
    )
    .await
}

/// The scope the options name, checked.
fn scope(
    plugin: Option<String>,
    version: Option<String>,
    tenant: Option<String>,
    key: Option<String>,
) -> Result<Scope, String> {
    Scope::parse(plugin, version, tenant, key, "--").map_err(|(_, message)| message)
}

fn print_stats(stats: &[PluginStats], json: bool) {
    if json {
        let rows: Vec<serde_json::Value> = stats
            .iter()
            .map(|s| {
                let mut v = serde_json::to_value(s).unwrap_or_default();
                v["hit_ratio"] = serde_json::json!(s.hit_ratio());
                v
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&rows).unwrap_or_default()
        );
        return;
    }
    if stats.is_empty() {
        println!("the result cache is empty and has answered no job");
        return;
    }
    println!(
        "{:<28} {:>8} {:>12} {:>10} {:>10} {:>8} {:>7} {:>9}",
        "PLUGIN", "ENTRIES", "BYTES", "HIT-MEM", "HIT-REDIS", "MISS", "BYPASS", "HIT RATIO"
    );
    for s in stats {
        println!(
            "{:<28} {:>8} {:>12} {:>10} {:>10} {:>8} {:>7} {:>9}",
            s.plugin,
            s.entries,
            s.bytes,
            s.hit_memory,
            s.hit_redis,
            s.miss,
            s.bypass,
            s.hit_ratio()
                .map_or_else(|| "-".to_string(), |r| format!("{:.1}%", r * 100.0))
        );
    }
}

fn spinner(what: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
    bar.set_prefix(what.to_string());
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {prefix}: {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
    );
    bar.enable_steady_tick(std::time::Duration::from_millis(100));
    bar
}
