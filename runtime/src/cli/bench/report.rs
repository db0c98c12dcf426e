//! What `spool bench` reports, and how it prints it.

use serde::Serialize;

#[derive(Debug, Serialize)]
pub(super) struct Report {
    pub plugin: String,
    /// Tenants the jobs were spread over (`--tenants`).
    pub tenants: usize,
    /// `spool worker` processes that ran the jobs (`--workers`; 0: the
    /// bench's own worker).
    pub workers: u64,
    pub jobs: usize,
    pub concurrency: usize,
    pub payload_bytes: usize,
    pub succeeded: usize,
    pub failed: usize,
    pub enqueue_jobs_per_sec: f64,
    pub jobs_per_sec: f64,
    pub wall_seconds: f64,
    /// Enqueue to the outcome's record: a success no client waits for
    /// may be recorded up to `ack_linger_ms` after its run ended.
    pub latency_ms: Percentiles,
    pub pickup_ms: Percentiles,
    /// The worker's `--ack-linger`, ms (worker/linger.rs).
    pub ack_linger_ms: f64,
    pub redis_commands_per_job: f64,
    /// Redis' CPU time (user + system, `INFO cpu`) per job, µs: on a
    /// server of its own, what one job costs Redis.
    pub redis_cpu_us_per_job: f64,
    /// The same, of each master of a cluster (one figure on one server):
    /// how evenly the load spread, and what one master carries.
    pub redis_cpu_us_per_job_by_master: Vec<f64>,
    /// Which of those masters holds the queue's own slot (`{QUEUE}`),
    /// touched by every claim and ack batch besides the tenants' slots.
    pub redis_queue_master: Option<usize>,
    /// This process's CPU time (`CLOCK_PROCESS_CPUTIME_ID`, every thread: the worker, its
    /// sandboxes, and the enqueuer) per job, µs.
    pub process_cpu_us_per_job: f64,
    /// Mean time in the sandbox (instantiate + run) per job, µs, from the
    /// records' `timings`: the part of the process's time that is the
    /// plugin's own.
    pub sandbox_us_per_job: f64,
    /// A succeeded record's size in Redis (`MEMORY USAGE`, median of a
    /// sample), bytes.
    pub record_bytes: u64,
    pub worker_round_trips_per_job: f64,
    pub round_trips_per_job: f64,
    /// Jobs by result-cache status (`hit-memory`, `hit-redis`, `miss`, …).
    pub cache: std::collections::BTreeMap<String, usize>,
    /// Sandbox instances the worker created (one per handler run; none for
    /// a cache hit). With `--workers`, the records that carry sandbox
    /// timings.
    pub instances: u64,
}

#[derive(Debug, Serialize)]
pub(super) struct Percentiles {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

pub(super) fn percentiles(sorted: &[f64]) -> Percentiles {
    let at = |q: f64| {
        if sorted.is_empty() {
            return 0.0;
        }
        let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
        (sorted[i] * 100.0).round() / 100.0
    };
    Percentiles {
        p50: at(0.50),
        p95: at(0.95),
        p99: at(0.99),
        max: at(1.0),
    }
}

pub(super) fn print(r: &Report, json: bool) {
    if json {
        println!("{}", serde_json::to_string_pretty(r).unwrap_or_default());
        return;
    }
    let spread = if r.tenants > 1 {
        format!(" over {} tenants", r.tenants)
    } else {
        String::new()
    };
    let workers = match r.workers {
        0 => String::new(),
        1 => ", 1 worker process".to_string(),
        n => format!(", {n} worker processes"),
    };
    println!(
        "spool bench: {} jobs of {}{spread} ({}-byte payloads), concurrency {}{workers}",
        r.jobs, r.plugin, r.payload_bytes, r.concurrency
    );
    println!("  succeeded          {} ({} failed)", r.succeeded, r.failed);
    println!("  enqueue            {:.0} jobs/s", r.enqueue_jobs_per_sec);
    println!(
        "  end to end         {:.0} jobs/s ({:.2}s from first enqueue to last finish)",
        r.jobs_per_sec, r.wall_seconds
    );
    let p = &r.latency_ms;
    println!(
        "  enqueue→finished   p50 {} ms, p95 {} ms, p99 {} ms, max {} ms (a success may wait up to --ack-linger {} ms to share its ack)",
        p.p50, p.p95, p.p99, p.max, r.ack_linger_ms
    );
    let p = &r.pickup_ms;
    println!(
        "  enqueue→started    p50 {} ms, p95 {} ms, p99 {} ms, max {} ms",
        p.p50, p.p95, p.p99, p.max
    );
    println!(
        "  redis commands     {:.2} per job (INFO commandstats, inside scripts included)",
        r.redis_commands_per_job
    );
    println!(
        "  redis cpu          {:.1} µs per job (INFO cpu; on a shared server, others' load counts too)",
        r.redis_cpu_us_per_job
    );
    println!(
        "  process cpu        {:.1} µs per job, of which sandbox {:.1} µs (the bench's CPU clock and its workers': worker, sandboxes, enqueuer)",
        r.process_cpu_us_per_job, r.sandbox_us_per_job
    );
    println!(
        "  record size        {} bytes (MEMORY USAGE of a succeeded record, median of 25)",
        r.record_bytes
    );
    println!(
        "  round trips        {:.3} per job by the worker, {:.3} with enqueueing",
        r.worker_round_trips_per_job, r.round_trips_per_job
    );
    print_by_master(r);
    let cache: Vec<String> = r.cache.iter().map(|(k, n)| format!("{k} {n}")).collect();
    println!("  result cache       {}", cache.join(", "));
    println!("  sandbox instances  {} for {} jobs", r.instances, r.jobs);
}

/// Redis CPU per job on each master of a cluster (nothing on one server).
fn print_by_master(r: &Report) {
    if r.redis_cpu_us_per_job_by_master.len() > 1 {
        let each: Vec<String> = r
            .redis_cpu_us_per_job_by_master
            .iter()
            .enumerate()
            .map(|(i, us)| {
                let mark = if r.redis_queue_master == Some(i) {
                    " (the queue's slot)"
                } else {
                    ""
                };
                format!("{us:.1}{mark}")
            })
            .collect();
        println!(
            "  redis cpu by master {} µs per job (of the whole run's jobs)",
            each.join(", ")
        );
    }
}
