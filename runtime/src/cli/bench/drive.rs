//! The measured part of `spool bench`: enqueue every job (at `--rate` or as
//! fast as possible), wait until all have finished, then read their times
//! back and summarise them.

use super::BenchArgs;
use super::queries::{
    JobTimes, job_times, queue_master, record_bytes, server_command_calls, server_cpu_seconds,
};
use super::report::{Percentiles, Report, percentiles};
use crate::ids::PluginName;
use crate::queue::{NewJob, Queue, QueueError, Status};
use indicatif::ProgressBar;
use std::time::{Duration, Instant};

/// Run the jobs through `client`'s queue; returns the report (worker
/// figures still to fill in), the Redis commands they took and Redis' CPU
/// seconds on each master.
pub(super) async fn drive(
    args: &BenchArgs,
    plugins: &[PluginName],
    client: &Queue,
    (payloads, content_type): (Vec<Vec<u8>>, String),
) -> Result<(Report, u64, Vec<f64>), QueueError> {
    let commands_before = server_command_calls(client).await?;
    let cpu_before = server_cpu_seconds(client).await?;
    let bar = progress(args.jobs);
    bar.set_message("enqueue");
    let started = Instant::now();
    let ids = enqueue_all(args, plugins, client, &payloads, &content_type, &bar).await?;
    let enqueue_secs = started.elapsed().as_secs_f64();
    bar.set_message("run");
    let tenants: Vec<String> = plugins.iter().map(|p| p.tenant.clone()).collect();
    // (The placeholders each tenant's list starts with count as successes.)
    let placeholders = super::kept::cap(args) * tenants.len() as u64;
    wait_finished(client, &tenants, args.jobs as u64, placeholders, &bar).await?;
    bar.finish_and_clear();
    let commands = server_command_calls(client).await? - commands_before;
    // A master that went away (or came) during the run counts from 0.
    let cpu_after = server_cpu_seconds(client).await?;
    let holder = queue_master(client).await?;
    let queue_master_index = cpu_after.keys().position(|n| Some(n) == holder.as_ref());
    let cpu = cpu_after
        .into_iter()
        .map(|(node, after)| after - cpu_before.get(&node).copied().unwrap_or(0.0))
        .collect();
    let times = job_times(client, &ids).await?;
    let mut report = summarize(&times, args.jobs, enqueue_secs);
    report.plugin = plugins[0].to_string();
    report.tenants = plugins.len();
    report.payload_bytes = payloads[0].len();
    report.record_bytes = record_bytes(client, &ids).await?;
    report.redis_queue_master = queue_master_index;
    Ok((report, commands, cpu))
}

fn progress(jobs: usize) -> ProgressBar {
    ProgressBar::new(jobs as u64).with_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} {msg:10} [{bar:30}] {pos}/{len} jobs, {per_sec}, eta {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    )
}

/// Enqueue `args.jobs` jobs cycling through `payloads`: 500 per round trip,
/// or one at a time at `--rate`. Returns their ids.
async fn enqueue_all(
    args: &BenchArgs,
    plugins: &[PluginName],
    client: &Queue,
    payloads: &[Vec<u8>],
    content_type: &str,
    bar: &ProgressBar,
) -> Result<Vec<(String, String)>, QueueError> {
    let started = Instant::now();
    let mut ids = Vec::with_capacity(args.jobs);
    let chunk = if args.rate > 0 { 1 } else { 500 };
    while ids.len() < args.jobs {
        let n = chunk.min(args.jobs - ids.len());
        let batch: Vec<NewJob> = (ids.len()..ids.len() + n)
            .map(|i| NewJob {
                content_type: content_type.to_string(),
                ..NewJob::new(
                    plugins[i % plugins.len()].clone(),
                    payloads[i % payloads.len()].clone(),
                )
            })
            .collect();
        let done = if n == 1 {
            vec![client.enqueue(&batch[0]).await?]
        } else {
            client.enqueue_many(&batch).await?
        };
        ids.extend(
            batch
                .iter()
                .zip(done)
                .map(|(job, e)| (job.plugin.tenant.clone(), e.id)),
        );
        bar.set_position(ids.len() as u64);
        if args.rate > 0 {
            let due = Duration::from_secs_f64(ids.len() as f64 / args.rate as f64);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                tokio::time::sleep(wait).await;
            }
        }
    }
    Ok(ids)
}

/// Poll the tenants' counters until `jobs` jobs succeeded or died (beside
/// the `placeholders` the counters start with).
async fn wait_finished(
    client: &Queue,
    tenants: &[String],
    jobs: u64,
    placeholders: u64,
    bar: &ProgressBar,
) -> Result<(), QueueError> {
    loop {
        let finished = super::queries::finished(client, tenants)
            .await?
            .saturating_sub(placeholders);
        bar.set_position(finished);
        if finished >= jobs {
            return Ok(());
        }
        // Polling many tenants costs Redis time the bench measures.
        let every = if tenants.len() > 10 { 250 } else { 50 };
        tokio::time::sleep(Duration::from_millis(every)).await;
    }
}

/// Rates, latencies and cache counts from the jobs' records.
fn summarize(times: &[JobTimes], jobs: usize, enqueue_secs: f64) -> Report {
    let succeeded = times
        .iter()
        .filter(|t| t.status == Some(Status::Succeeded))
        .count();
    let first = times.iter().filter_map(|t| t.enqueued_us).min();
    let first = first.unwrap_or(0);
    let last = times
        .iter()
        .filter_map(|t| t.finished_us)
        .max()
        .unwrap_or(first);
    let wall = (last.saturating_sub(first)) as f64 / 1e6;
    let span = |a: fn(&JobTimes) -> Option<u64>, b: fn(&JobTimes) -> Option<u64>| -> Percentiles {
        let mut v: Vec<f64> = times
            .iter()
            .filter_map(|t| Some(b(t)?.saturating_sub(a(t)?) as f64 / 1000.0))
            .collect();
        v.sort_by(f64::total_cmp);
        percentiles(&v)
    };
    Report {
        plugin: String::new(),
        tenants: 1,
        jobs,
        concurrency: 0,
        ack_linger_ms: 0.0,
        payload_bytes: 0,
        succeeded,
        failed: jobs - succeeded,
        enqueue_jobs_per_sec: jobs as f64 / enqueue_secs.max(1e-9),
        jobs_per_sec: jobs as f64 / wall.max(1e-9),
        wall_seconds: wall,
        latency_ms: span(|t| t.enqueued_us, |t| t.finished_us),
        pickup_ms: span(|t| t.enqueued_us, |t| t.started_us),
        redis_commands_per_job: 0.0,
        redis_cpu_us_per_job: 0.0,
        redis_cpu_us_per_job_by_master: Vec::new(),
        redis_queue_master: None,
        process_cpu_us_per_job: 0.0,
        sandbox_us_per_job: {
            let v: Vec<u64> = times.iter().filter_map(|t| t.sandbox_us).collect();
            v.iter().sum::<u64>() as f64 / v.len().max(1) as f64
        },
        worker_round_trips_per_job: 0.0,
        round_trips_per_job: 0.0,
        cache: times
            .iter()
            .filter_map(|t| t.cache.clone())
            .fold(Default::default(), |mut m, c| {
                *m.entry(c).or_default() += 1;
                m
            }),
        record_bytes: 0,
        instances: times.iter().filter(|t| t.sandbox_us.is_some()).count() as u64,
        workers: 0,
    }
}
