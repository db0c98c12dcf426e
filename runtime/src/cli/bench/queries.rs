//! Read-only queries only `spool bench` needs: when each job ran, and how
//! many commands Redis executed. They read the queue's keys directly, so
//! the queue itself carries no benchmark code.

use crate::queue::{Queue, QueueError, RunField, Status, cache_status};
use crate::redis::Batch;

/// When one job was enqueued, started and finished (µs since the epoch).
#[derive(Debug, Clone)]
pub(super) struct JobTimes {
    /// Its status.
    pub status: Option<Status>,
    /// Enqueued.
    pub enqueued_us: Option<u64>,
    /// Latest attempt started.
    pub started_us: Option<u64>,
    /// Latest attempt finished.
    pub finished_us: Option<u64>,
    /// What the result cache did for it.
    pub cache: Option<String>,
    /// Time in the sandbox (instantiate + run), µs, from its `timings`.
    pub sandbox_us: Option<u64>,
}

/// `(status, enqueued_us, started_us, finished_us, cache)` of many jobs, one
/// pipelined round trip per 1,000.
pub(super) async fn job_times(
    queue: &Queue,
    ids: &[(String, String)],
) -> Result<Vec<JobTimes>, QueueError> {
    type Row = (
        Option<String>,
        Option<u64>,
        Option<u64>,
        Option<u64>,
        Option<String>,
        Option<String>,
        Option<String>,
    );
    let mut all = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(1000) {
        let mut batch = Batch::new();
        for (tenant, id) in chunk {
            let key = format!("{}:job:{id}", queue.tenant_keys(tenant));
            let fields = [
                "status",
                "enqueued_us",
                "started_us",
                "finished_us",
                "cache",
                "timings",
                "run",
            ];
            batch.add(&key, redis::cmd("HMGET").arg(&key).arg(&fields).clone());
        }
        queue.count_round_trip();
        let rows: Vec<Row> = run(queue, batch, "read job times").await?;
        all.extend(rows.into_iter().map(
            |(status, enqueued, started, finished, cache, timings, run)| {
                // `run` since 2026-12-04 (queue/run.rs); before it,
                // `started_us` and `timings`.
                let (started, sandbox) = match RunField::latest(run.as_deref(), started) {
                    Some(run) => (run.started_us, run.sandbox_us.map(|(i, r)| i + r)),
                    None => (started, timings.as_deref().and_then(sandbox_us)),
                };
                JobTimes {
                    status: status.as_deref().and_then(Status::parse),
                    enqueued_us: enqueued,
                    started_us: started,
                    finished_us: finished,
                    cache: cache_status(cache, sandbox.is_some()),
                    sandbox_us: sandbox,
                }
            },
        ));
    }
    Ok(all)
}

/// `instantiate + run` of a record's `timings` (`{"instantiate":34,"run":11}`).
fn sandbox_us(timings: &str) -> Option<u64> {
    let v: serde_json::Value = serde_json::from_str(timings).ok()?;
    Some(v.get("instantiate")?.as_u64()? + v.get("run")?.as_u64()?)
}

/// The median `MEMORY USAGE` (bytes: the key, its value and Redis'
/// bookkeeping) of up to 25 of `ids`' records, spread over the run; 0 when
/// none is left.
pub(super) async fn record_bytes(
    queue: &Queue,
    ids: &[(String, String)],
) -> Result<u64, QueueError> {
    let step = (ids.len() / 25).max(1);
    let mut batch = Batch::new();
    for (tenant, id) in ids.iter().step_by(step).take(25) {
        let key = format!("{}:job:{id}", queue.tenant_keys(tenant));
        let cmd = redis::cmd("MEMORY")
            .arg("USAGE")
            .arg(&key)
            .arg("SAMPLES")
            .arg(0)
            .clone();
        batch.add(&key, cmd);
    }
    let sizes: Vec<Option<u64>> = run(queue, batch, "MEMORY USAGE of job records").await?;
    let mut sizes: Vec<u64> = sizes.into_iter().flatten().collect();
    sizes.sort_unstable();
    Ok(sizes.get(sizes.len() / 2).copied().unwrap_or(0))
}

/// Redis' CPU time so far, user + system, in seconds (`INFO cpu`), of
/// each master by name: to measure Redis CPU per job, in all and on each
/// master of a cluster.
pub(super) async fn server_cpu_seconds(
    queue: &Queue,
) -> Result<std::collections::BTreeMap<String, f64>, QueueError> {
    let mut each = std::collections::BTreeMap::new();
    for mut node in queue.redis().masters().await? {
        let text: String = node
            .query(redis::cmd("INFO").arg("cpu"))
            .await
            .map_err(|e| queue.redis().error("INFO", e))?;
        let seconds = text
            .lines()
            .filter_map(|l| l.trim().split_once(':'))
            .filter(|(k, _)| *k == "used_cpu_user" || *k == "used_cpu_sys")
            .filter_map(|(_, v)| v.parse::<f64>().ok())
            .sum();
        each.insert(node.name(), seconds);
    }
    Ok(each)
}

/// The master (by name) that holds the queue's own slot, `{QUEUE}`: the
/// one whose `Q:stats` is there (a node answers `MOVED` for a key it does
/// not serve). None on one server, or before any ack.
pub(super) async fn queue_master(queue: &Queue) -> Result<Option<String>, QueueError> {
    let masters = queue.redis().masters().await?;
    if masters.len() < 2 {
        return Ok(None);
    }
    let key = format!("{}:stats", queue.key_prefix());
    for mut node in masters {
        let here: redis::RedisResult<bool> = node.query(redis::cmd("EXISTS").arg(&key)).await;
        if here == Ok(true) {
            return Ok(Some(node.name()));
        }
    }
    Ok(None)
}

/// Jobs of `tenants` that succeeded or died, from their counters (one
/// pipeline): `succeeded` and `dead` in `T:stats`, and the successes
/// listed in `T:recent`, which its counter does not hold yet (ack.lua,
/// keep_newest).
pub(super) async fn finished(queue: &Queue, tenants: &[String]) -> Result<u64, QueueError> {
    let mut batch = Batch::new();
    for t in tenants {
        let keys = queue.tenant_keys(t);
        let stats = format!("{keys}:stats");
        let listed = format!("{keys}:recent");
        batch.add(
            &stats,
            redis::cmd("HMGET")
                .arg(&stats)
                .arg("succeeded")
                .arg("dead")
                .clone(),
        );
        batch.add(&listed, redis::cmd("LLEN").arg(&listed).clone());
    }
    let rows: Vec<redis::Value> = run(queue, batch, "read job counters").await?;
    let mut total = 0;
    for row in rows {
        total += match row {
            redis::Value::Int(n) => u64::try_from(n).unwrap_or(0),
            row => {
                let (s, d): (Option<u64>, Option<u64>) = redis::from_redis_value(row)
                    .map_err(|e| queue.redis().error("read job counters", e.into()))?;
                s.unwrap_or(0) + d.unwrap_or(0)
            }
        };
    }
    Ok(total)
}

/// Total commands Redis has executed (`INFO commandstats`, which counts the
/// commands inside scripts too), to measure commands per job.
pub(super) async fn server_command_calls(queue: &Queue) -> Result<u64, QueueError> {
    Ok(info(queue, "commandstats")
        .await?
        .lines()
        .filter_map(|l| l.split("calls=").nth(1))
        .filter_map(|rest| rest.split(',').next()?.parse::<u64>().ok())
        .sum())
}

/// One section of `INFO`: of every master of a cluster, one after
/// another (the figures read from it are sums).
async fn info(queue: &Queue, section: &'static str) -> Result<String, QueueError> {
    let mut text = String::new();
    for mut node in queue.redis().masters().await? {
        let part: String = node
            .query(redis::cmd("INFO").arg(section))
            .await
            .map_err(|e| queue.redis().error("INFO", e))?;
        text.push_str(&part);
    }
    Ok(text)
}

/// Run `batch` (one pipeline, or one per slot of a cluster) and decode
/// its replies as `T`.
async fn run<T: redis::FromRedisValue>(
    queue: &Queue,
    batch: Batch,
    op: &'static str,
) -> Result<T, QueueError> {
    batch
        .run(queue.redis())
        .await
        .and_then(|replies| Ok(redis::from_redis_value(redis::Value::Array(replies))?))
        .map_err(|e| queue.redis().error(op, e).into())
}
