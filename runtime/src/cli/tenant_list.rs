//! `spool tenants list | pause | resume`: what each tenant has in one
//! queue beside its scheduling settings, and stopping or starting a
//! tenant's (or a group's) new jobs.

use super::connect::{RedisArgs, fail, runtime};
use super::exit;
use crate::queue::{Queue, QueueError, TenantState};
use crate::tenants::{Limit, Limits, TenantStore};

/// `spool tenants list`.
pub(crate) fn list(redis: &RedisArgs, json: bool) -> u8 {
    runtime().block_on(async {
        let queue = match redis.connect().await {
            Ok(q) => q,
            Err(e) => return fail(&e),
        };
        match read(&queue).await {
            Ok(rows) if json => {
                let rows: Vec<serde_json::Value> = rows.iter().map(row_json).collect();
                println!(
                    "{}",
                    serde_json::json!({ "queue": queue.config().queue, "tenants": rows })
                );
                exit::OK
            }
            Ok(rows) => {
                print_rows(&queue.config().queue, &rows);
                exit::OK
            }
            Err(e) => fail(&e),
        }
    })
}

/// Every tenant's state and settings.
async fn read(queue: &Queue) -> Result<Vec<(TenantState, Limits)>, QueueError> {
    let states = queue.all_tenant_states().await?;
    let names: Vec<&str> = states.iter().map(|s| s.tenant.as_str()).collect();
    let mut conn = queue.redis().conn();
    let limits = TenantStore::new(&queue.config().prefix)
        .read_async(&mut conn, &names)
        .await
        .map_err(|e| QueueError::Redis(queue.redis().error("read tenant limits", e)))?;
    Ok(states.into_iter().zip(limits).collect())
}

fn print_rows(queue: &str, rows: &[(TenantState, Limits)]) {
    if rows.is_empty() {
        println!("queue {queue}: no tenant has enqueued a job yet");
        return;
    }
    println!(
        "{:<20} {:>8} {:>8} {:>8} {:>8} {:>6} {:>6} {:>10} {:>10}  state",
        "tenant", "queued", "running", "delayed", "dead", "weight", "cap", "rate", "groups"
    );
    for (s, l) in rows {
        let cap = l.get(Limit::Concurrency);
        let running = if cap > 0 {
            format!("{}/{cap}", s.running)
        } else {
            s.running.to_string()
        };
        println!(
            "{:<20} {:>8} {:>8} {:>8} {:>8} {:>6} {:>6} {:>10} {:>10}  {}",
            s.tenant,
            s.queued + s.grouped,
            running,
            s.delayed,
            s.dead_letters,
            l.get(Limit::Weight),
            Limit::Concurrency.show(cap),
            Limit::Rate.show(l.get(Limit::Rate)),
            s.groups_waiting,
            if s.paused { "paused" } else { "active" }
        );
    }
}

fn row_json((s, l): &(TenantState, Limits)) -> serde_json::Value {
    serde_json::json!({
        "tenant": s.tenant,
        "queued": s.queued,
        "grouped": s.grouped,
        "running": s.running,
        "delayed": s.delayed,
        "dead_letters": s.dead_letters,
        "groups_waiting": s.groups_waiting,
        "paused": s.paused,
        "weight": l.get(Limit::Weight),
        "concurrency": l.get(Limit::Concurrency),
        "rate_per_hour": l.get(Limit::Rate),
        "rate": Limit::Rate.show(l.get(Limit::Rate)),
        "burst": l.get(Limit::Burst),
        "group_concurrency": l.get(Limit::GroupConcurrency),
        "succeeded_total": s.succeeded_total,
        "dead_total": s.dead_total,
    })
}

/// `spool tenants pause | resume TENANT [--group G]`.
pub(crate) fn pause(redis: &RedisArgs, tenant: &str, group: Option<&str>, stop: bool) -> u8 {
    if let Err(message) = crate::ids::check_tenant(tenant) {
        eprintln!("spool: {message}");
        return exit::USAGE;
    }
    runtime().block_on(async {
        let queue = match redis.connect().await {
            Ok(q) => q,
            Err(e) => return fail(&e),
        };
        let what = match group {
            Some(g) => format!("group {g} of tenant {tenant}"),
            None => format!("tenant {tenant}"),
        };
        let queue_name = &queue.config().queue;
        match queue.set_paused(tenant, group, stop).await {
            Ok(changed) => {
                let state = if stop { "paused" } else { "resumed" };
                let already = if changed { "" } else { " (it already was)" };
                let more = if stop {
                    ": nothing new starts; running jobs finish, queued ones wait"
                } else {
                    ""
                };
                println!("{what} in queue {queue_name}: {state}{already}{more}");
                exit::OK
            }
            Err(e @ QueueError::Invalid { .. }) => {
                eprintln!("spool: {e}");
                exit::USAGE
            }
            Err(e) => fail(&e),
        }
    })
}
