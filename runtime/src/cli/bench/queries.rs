//! Read-only queries only `spool bench` needs: when each job ran, and how
//! many commands Redis executed. They read the queue's keys directly, so
//! the queue itself carries no benchmark code.

use crate::queue::{Queue, QueueError, Status, cache_status};

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
    );
    let mut conn = queue.redis().conn();
    let mut all = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(1000) {
        let mut pipe = redis::pipe();
        for (tenant, id) in chunk {
            pipe.cmd("HMGET")
                .arg(format!("{}:job:{id}", queue.tenant_keys(tenant)))
                .arg(&[
                    "status",
                    "enqueued_us",
                    "started_us",
                    "finished_us",
                    "cache",
                    "timings",
                ]);
        }
        queue.count_round_trip();
        let rows: Vec<Row> = pipe
            .query_async(&mut conn)
            .await
            .map_err(|e| queue.redis().error("read job times", e))?;
        all.extend(rows.into_iter().map(
            |(status, enqueued, started, finished, cache, timings)| JobTimes {
                status: status.as_deref().and_then(Status::parse),
                enqueued_us: enqueued,
                started_us: started,
                finished_us: finished,
                cache: cache_status(cache, timings.is_some()),
                sandbox_us: timings.as_deref().and_then(sandbox_us),
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
    let mut pipe = redis::pipe();
    for (tenant, id) in ids.iter().step_by(step).take(25) {
        pipe.cmd("MEMORY")
            .arg("USAGE")
            .arg(format!("{}:job:{id}", queue.tenant_keys(tenant)))
            .arg("SAMPLES")
            .arg(0);
    }
    let mut conn = queue.redis().conn();
    let sizes: Vec<Option<u64>> = pipe
        .query_async(&mut conn)
        .await
        .map_err(|e| queue.redis().error("MEMORY USAGE of job records", e))?;
    let mut sizes: Vec<u64> = sizes.into_iter().flatten().collect();
    sizes.sort_unstable();
    Ok(sizes.get(sizes.len() / 2).copied().unwrap_or(0))
}

/// Redis' CPU time so far, user + system, in seconds (`INFO cpu`), to
/// measure Redis CPU per job.
pub(super) async fn server_cpu_seconds(queue: &Queue) -> Result<f64, QueueError> {
    Ok(info(queue, "cpu")
        .await?
        .lines()
        .filter_map(|l| l.trim().split_once(':'))
        .filter(|(k, _)| *k == "used_cpu_user" || *k == "used_cpu_sys")
        .filter_map(|(_, v)| v.parse::<f64>().ok())
        .sum())
}

/// Jobs of `tenants` that succeeded or died, from their counters (one
/// pipeline).
pub(super) async fn finished(queue: &Queue, tenants: &[String]) -> Result<u64, QueueError> {
    let mut pipe = redis::pipe();
    for t in tenants {
        pipe.cmd("HMGET")
            .arg(format!("{}:stats", queue.tenant_keys(t)))
            .arg("succeeded")
            .arg("dead");
    }
    let mut conn = queue.redis().conn();
    let rows: Vec<(Option<u64>, Option<u64>)> = pipe
        .query_async(&mut conn)
        .await
        .map_err(|e| queue.redis().error("read job counters", e))?;
    Ok(rows
        .iter()
        .map(|(s, d)| s.unwrap_or(0) + d.unwrap_or(0))
        .sum())
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

/// One section of `INFO`.
async fn info(queue: &Queue, section: &'static str) -> Result<String, QueueError> {
    let mut conn = queue.redis().conn();
    redis::cmd("INFO")
        .arg(section)
        .query_async(&mut conn)
        .await
        .map_err(|e| queue.redis().error("INFO", e).into())
}
