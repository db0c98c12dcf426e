//! `spool tenants show | set | list | pause | resume`: the tenants' quotas
//! and scheduling settings — fleet defaults and per-tenant overrides in
//! Redis — what each tenant uses of them, and what each has in a queue.

use super::connect::{RedisArgs, fail};
use super::exit;
use crate::cache;
use crate::kv;
use crate::queue::QueueError;
use crate::redis::{RedisError, SyncRedis, ledger::Usage};
use crate::tenants::store::Target;
use crate::tenants::{Limit, Limits, TenantStore, limits::show_bytes};

#[derive(Debug, clap::Args)]
pub(crate) struct TenantsArgs {
    #[command(flatten)]
    redis: RedisArgs,

    #[command(subcommand)]
    command: TenantsCommand,
}

#[derive(Debug, clap::Subcommand)]
enum TenantsCommand {
    /// A tenant's quotas, where each comes from, and its usage; without a
    /// tenant, the fleet defaults.
    Show {
        /// The tenant (as in `TENANT/plugin`).
        tenant: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Set quotas of a tenant, or the fleet defaults (`--defaults`). A
    /// value of `default` removes a setting (the tenant falls back to the
    /// fleet default, the fleet to the built-in); `unlimited` lifts it.
    /// Workers apply a change within 2 s.
    Set(Box<SetArgs>),
    /// Every tenant with jobs in the queue: queued, running, dead, and its
    /// weight, cap, rate and pause.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Stop starting a tenant's jobs (or one group's) in the queue:
    /// running jobs finish, queued ones wait.
    Pause(PauseArgs),
    /// Start a paused tenant's (or group's) jobs again.
    Resume(PauseArgs),
}

#[derive(Debug, clap::Args)]
struct SetArgs {
    /// The tenant.
    #[arg(required_unless_present = "defaults", conflicts_with = "defaults")]
    tenant: Option<String>,
    /// Change the fleet defaults instead of one tenant's.
    #[arg(long)]
    defaults: bool,
    /// Bytes in the key-value store (keys plus values), e.g. 64MiB.
    #[arg(long, value_name = "SIZE")]
    kv_bytes: Option<String>,
    /// Keys in the key-value store.
    #[arg(long, value_name = "N")]
    kv_keys: Option<String>,
    /// Key-value writes per second, fleet-wide, e.g. 500/s.
    #[arg(long, value_name = "RATE")]
    kv_writes: Option<String>,
    /// Bytes of cached results in Redis.
    #[arg(long, value_name = "SIZE")]
    cache_bytes: Option<String>,
    /// The largest payload `enqueue` accepts.
    #[arg(long, value_name = "SIZE")]
    max_payload: Option<String>,
    /// The largest max_attempts a job may ask for.
    #[arg(long, value_name = "N")]
    max_attempts: Option<String>,
    /// Share of workers beside other tenants with work: `weight` turns
    /// to every 1 of a tenant of weight 1 (default 1).
    #[arg(long, value_name = "N")]
    weight: Option<String>,
    /// Most of the tenant's jobs running at once, fleet-wide (per
    /// queue); the rest stay queued.
    #[arg(long, value_name = "N")]
    concurrency: Option<String>,
    /// Most jobs started per second, minute or hour, fleet-wide (per
    /// queue), e.g. 50/s, 600/m.
    #[arg(long, value_name = "RATE")]
    rate: Option<String>,
    /// Jobs the rate lets start at once after a quiet spell (default
    /// `auto`: a tenth of a second's rate, at least 1).
    #[arg(long, value_name = "N")]
    burst: Option<String>,
    /// Jobs of one group running at once (default 1: one at a time,
    /// in enqueue order).
    #[arg(long, value_name = "N")]
    group_concurrency: Option<String>,
    /// The most the tenant's plugins may call over HTTP, whatever their
    /// manifests' `[http] allow` grant: SCHEME://HOST[:PORT] (`*.` for
    /// subdomains, `:*` for any port); repeat for more. `none`: no host;
    /// `default`: back to the fleet's ceiling (or none).
    #[arg(long, value_name = "RULE")]
    http_allow: Vec<String>,
}

#[derive(Debug, clap::Args)]
struct PauseArgs {
    /// The tenant.
    tenant: String,
    /// Only this group of the tenant.
    #[arg(long)]
    group: Option<String>,
}

pub(crate) fn run(args: TenantsArgs) -> u8 {
    let config = args.redis.queue_config();
    let (tenant, json) = match args.command {
        TenantsCommand::List { json } => return super::tenant_list::list(&args.redis, json),
        TenantsCommand::Pause(p) => {
            return super::tenant_list::pause(&args.redis, &p.tenant, p.group.as_deref(), true);
        }
        TenantsCommand::Resume(p) => {
            return super::tenant_list::pause(&args.redis, &p.tenant, p.group.as_deref(), false);
        }
        TenantsCommand::Set(set) => return run_set(&config, *set),
        TenantsCommand::Show { tenant, json } => (tenant, json),
    };
    if let Some(t) = &tenant
        && let Err(message) = crate::ids::check_tenant(t)
    {
        eprintln!("spool: {message}");
        return exit::USAGE;
    }
    let redis = match super::connect::sync_redis(&config) {
        Ok(redis) => redis,
        Err(code) => return code,
    };
    let store = TenantStore::new(&config.prefix);
    show(&redis, &store, &config.prefix, tenant.as_deref(), json)
}

/// `spool tenants set`.
fn run_set(config: &crate::queue::QueueConfig, a: SetArgs) -> u8 {
    let given = [
        (Limit::KvBytes, a.kv_bytes),
        (Limit::KvKeys, a.kv_keys),
        (Limit::KvWrites, a.kv_writes),
        (Limit::CacheBytes, a.cache_bytes),
        (Limit::MaxPayload, a.max_payload),
        (Limit::MaxAttempts, a.max_attempts),
        (Limit::Weight, a.weight),
        (Limit::Concurrency, a.concurrency),
        (Limit::Rate, a.rate),
        (Limit::Burst, a.burst),
        (Limit::GroupConcurrency, a.group_concurrency),
    ];
    let tenant = if a.defaults { None } else { a.tenant };
    let planned = http_ceiling(&a.http_allow)
        .and_then(|http| Ok((plan(tenant, given, http.is_some())?, http)));
    let ((target, changes), http) = match planned {
        Ok(plan) => plan,
        Err(message) => {
            eprintln!("spool: {message}");
            return exit::USAGE;
        }
    };
    let redis = match super::connect::sync_redis(config) {
        Ok(redis) => redis,
        Err(code) => return code,
    };
    let store = TenantStore::new(&config.prefix);
    if let Some(rules) = &http {
        let written = redis.once(|c| store.set_http_allow(c, &target, rules.as_deref()));
        if let Err(e) = written {
            return fail(&redis_error(&redis, "set the http-allow ceiling", e));
        }
        match rules {
            Some(r) if r.is_empty() => println!("{}: http-allow = none", whose(&target)),
            Some(r) => println!("{}: http-allow = {}", whose(&target), r.join(", ")),
            None => println!("{}: http-allow back to the default", whose(&target)),
        }
        if changes.is_empty() {
            return exit::OK;
        }
    }
    set(&redis, &store, &target, &changes)
}

/// `--http-allow`: none given, or the new ceiling (`Some(None)`: remove
/// it; `Some(Some([]))`: no host).
#[allow(clippy::option_option)]
fn http_ceiling(given: &[String]) -> Result<Option<Option<Vec<String>>>, String> {
    match given {
        [] => Ok(None),
        [one] if one == "default" => Ok(Some(None)),
        [one] if one == "none" => Ok(Some(Some(Vec::new()))),
        rules => {
            crate::sandbox::http::AllowList::parse(rules)
                .map_err(|e| format!("--http-allow: {e}"))?;
            Ok(Some(Some(rules.to_vec())))
        }
    }
}

fn whose(target: &Target) -> String {
    match target {
        Target::Defaults => "fleet defaults".to_string(),
        Target::Tenant(t) => format!("tenant {t}"),
    }
}

/// One change: a limit and its new value (`None`: remove the setting).
type Change = (Limit, Option<u64>);

/// The target and the parsed changes of `spool tenants set`.
fn plan(
    tenant: Option<String>,
    given: [(Limit, Option<String>); Limit::ALL.len()],
    other: bool,
) -> Result<(Target, Vec<Change>), String> {
    let target = match tenant {
        Some(t) => {
            crate::ids::check_tenant(&t)?;
            Target::Tenant(t)
        }
        None => Target::Defaults,
    };
    let mut changes = Vec::new();
    for (limit, text) in given {
        let Some(text) = text else { continue };
        let value = if text.trim() == "default" {
            None
        } else {
            Some(
                limit
                    .parse(&text)
                    .map_err(|e| format!("--{}: {e}", limit.name()))?,
            )
        };
        changes.push((limit, value));
    }
    if changes.is_empty() && !other {
        return Err(format!(
            "name at least one setting: {}, --http-allow",
            Limit::ALL.map(|l| format!("--{}", l.name())).join(", ")
        ));
    }
    Ok((target, changes))
}

fn redis_error(redis: &SyncRedis, op: &'static str, e: redis::RedisError) -> QueueError {
    QueueError::Redis(RedisError::classify(redis.url(), op, e))
}

/// `spool tenants set`.
fn set(redis: &SyncRedis, store: &TenantStore, target: &Target, changes: &[Change]) -> u8 {
    let written = redis.once(|c| {
        for (limit, value) in changes {
            store.set(c, target, *limit, *value)?;
        }
        Ok(())
    });
    if let Err(e) = written {
        return fail(&redis_error(redis, "set tenant limits", e));
    }
    let whose = whose(target);
    for (limit, value) in changes {
        match value {
            Some(v) => println!("{whose}: {} = {}", limit.name(), limit.show(*v)),
            None => println!("{whose}: {} back to the default", limit.name()),
        }
    }
    exit::OK
}

/// What one tenant uses: key-value store and cached results.
struct Used {
    kv: Usage,
    cache: Usage,
}

/// `spool tenants show`.
fn show(
    redis: &SyncRedis,
    store: &TenantStore,
    prefix: &str,
    tenant: Option<&str>,
    json: bool,
) -> u8 {
    let read = redis.with_connection(|c| {
        let limits = match tenant {
            Some(t) => store.read(c, &[t])?.pop().unwrap_or_default(),
            None => store.read_defaults(c)?,
        };
        let used = match tenant {
            Some(t) => Some(Used {
                kv: kv::usage(c, prefix, t)?,
                cache: cache::usage(c, prefix, t)?,
            }),
            None => None,
        };
        Ok((limits, used))
    });
    match read {
        Ok((limits, used)) => {
            if json {
                println!("{}", to_json(tenant, &limits, used.as_ref()));
            } else {
                print_table(tenant, &limits, used.as_ref());
            }
            exit::OK
        }
        Err(e) => fail(&redis_error(redis, "read tenant limits", e)),
    }
}

/// The usage `spool tenants show` prints beside `limit`, if it has one.
fn usage_of(limit: Limit, used: &Used) -> Option<u64> {
    match limit {
        Limit::KvBytes => Some(used.kv.bytes),
        Limit::KvKeys => Some(used.kv.keys),
        Limit::CacheBytes => Some(used.cache.bytes),
        _ => None,
    }
}

fn print_table(tenant: Option<&str>, limits: &Limits, used: Option<&Used>) {
    match tenant {
        Some(t) => println!("tenant {t}"),
        None => println!("fleet defaults (every tenant without its own value)"),
    }
    println!("{:<14} {:<12} {:<14} used", "quota", "value", "from");
    for limit in Limit::ALL {
        let value = limits.get(limit);
        let usage = used.and_then(|u| usage_of(limit, u)).map_or_else(
            || "-".to_string(),
            |n| {
                let shown = if limit == Limit::KvKeys {
                    n.to_string()
                } else {
                    show_bytes(n)
                };
                match n.saturating_mul(100).checked_div(value) {
                    Some(percent) => format!("{shown} ({percent}%)"),
                    None => shown,
                }
            },
        );
        println!(
            "{:<14} {:<12} {:<14} {usage}",
            limit.name(),
            limit.show(value),
            limits.source(limit).as_str()
        );
    }
    match &limits.http_allow {
        Some((rules, from)) => println!(
            "{:<14} {:<12} {}",
            "http-allow",
            if rules.is_empty() {
                "none".to_string()
            } else {
                rules.join(", ")
            },
            from.as_str()
        ),
        None => println!(
            "{:<14} any host a plugin's manifest allows (no ceiling)",
            "http-allow"
        ),
    }
}

fn to_json(tenant: Option<&str>, limits: &Limits, used: Option<&Used>) -> serde_json::Value {
    let quotas = limits.to_json(|l| used.and_then(|u| usage_of(l, u)));
    serde_json::json!({ "tenant": tenant, "quotas": quotas })
}
