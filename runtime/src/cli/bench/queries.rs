//! Read-only queries only `spool bench` needs: when each job ran, and how
//! many commands Redis executed. They read the queue's keys directly, so
//! the queue itself carries no benchmark code.

use crate::queue::{Queue, QueueError, Status};

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
}

/// `(status, enqueued_us, started_us, finished_us, cache)` of many jobs, one
/// pipelined round trip per 1,000.
pub(super) async fn job_times(queue: &Queue, ids: &[String]) -> Result<Vec<JobTimes>, QueueError> {
    type Row = (
        Option<String>,
        Option<u64>,
        Option<u64>,
        Option<u64>,
        Option<String>,
    );
    let mut conn = queue.redis().conn();
    let mut all = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(1000) {
        let mut pipe = redis::pipe();
        for id in chunk {
            pipe.cmd("HMGET")
                .arg(format!("{}:job:{id}", queue.key_prefix()))
                .arg(&[
                    "status",
                    "enqueued_us",
                    "started_us",
                    "finished_us",
                    "cache",
                ]);
        }
        queue.count_round_trip();
        let rows: Vec<Row> = pipe
            .query_async(&mut conn)
            .await
            .map_err(|e| queue.redis().error("read job times", e))?;
        all.extend(
            rows.into_iter()
                .map(|(status, enqueued, started, finished, cache)| JobTimes {
                    status: status.as_deref().and_then(Status::parse),
                    enqueued_us: enqueued,
                    started_us: started,
                    finished_us: finished,
                    cache,
                }),
        );
    }
    Ok(all)
}

/// Total commands Redis has executed (`INFO commandstats`, which counts the
/// commands inside scripts too), to measure commands per job.
pub(super) async fn server_command_calls(queue: &Queue) -> Result<u64, QueueError> {
    let mut conn = queue.redis().conn();
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut conn)
        .await
        .map_err(|e| queue.redis().error("INFO commandstats", e))?;
    Ok(info
        .lines()
        .filter_map(|l| l.split("calls=").nth(1))
        .filter_map(|rest| rest.split(',').next()?.parse::<u64>().ok())
        .sum())
}
