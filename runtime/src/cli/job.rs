//! `spool job ID`: show a job's record — status, attempts, timings, worker,
//! plugin version, output or error, guest logs.

use super::connect::{RedisArgs, fail, runtime};
use super::exit;
use super::shown::shown;
use crate::queue::JobRecord;

#[derive(Debug, clap::Args)]
pub(crate) struct JobArgs {
    #[command(flatten)]
    redis: RedisArgs,

    /// The job id `spool enqueue` printed.
    id: String,

    /// Print the record as one JSON object.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(args: JobArgs) -> u8 {
    runtime().block_on(async {
        let queue = match args.redis.connect().await {
            Ok(q) => q,
            Err(e) => return fail(&e),
        };
        match queue.find(&args.id).await {
            Ok((tenant, mut record)) => {
                if !tenant.is_empty()
                    && let Err(e) = queue.why_waiting(&tenant, &mut record).await
                {
                    tracing::debug!("why the job waits: {e}");
                }
                print_record(&record, args.json);
                exit::OK
            }
            Err(e) => fail(&e),
        }
    })
}

/// Print a record as JSON, or as aligned `key: value` lines.
pub(crate) fn print_record(record: &JobRecord, json: bool) {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(record).unwrap_or_default()
        );
        return;
    }
    let status = record
        .status
        .map_or("unknown".to_string(), |s| s.to_string());
    println!("job        {}", shown(&record.id));
    println!("plugin     {}", shown(&record.plugin));
    if let Some(group) = &record.group {
        println!("group      {}", shown(group));
    }
    println!("status     {status}");
    if let Some(why) = &record.waiting {
        println!("waiting    {}", shown(why));
    }
    println!(
        "attempts   {} of {}",
        record.attempts,
        record.max_attempts.map_or("?".into(), |m| m.to_string())
    );
    print_times(record);
    if let Some(v) = &record.version {
        println!("version    {}", shown(v));
    }
    if let Some(cache) = &record.cache {
        let by = record
            .cache_job
            .as_ref()
            .map(|job| format!(", computed by job {job}"))
            .unwrap_or_default();
        let key = record
            .cache_key
            .as_ref()
            .map(|k| format!(" (key {k}{by})"))
            .unwrap_or_default();
        println!("cache      {}", shown(&format!("{cache}{key}")));
    }
    if let Some(h) = record.host_calls {
        println!("host calls {h}");
    }
    for call in record
        .http
        .iter()
        .flat_map(|v| v.as_array().into_iter().flatten())
    {
        println!("http       {}", shown(&http_line(call)));
    }
    if let Some(ttl) = record.ttl_seconds {
        println!("expires in {ttl}s");
    }
    print_outcome(record);
}

/// One request of the record: `GET https://api.example.com:443 → 200, 1.2 kB in, 35 ms`.
fn http_line(call: &serde_json::Value) -> String {
    let s = |k: &str| {
        call.get(k)
            .and_then(|v| v.as_str())
            .unwrap_or("?")
            .to_string()
    };
    let n = |k: &str| call.get(k).and_then(serde_json::Value::as_u64).unwrap_or(0);
    let outcome = match call.get("status").and_then(serde_json::Value::as_u64) {
        Some(status) => status.to_string(),
        None => s("error"),
    };
    format!(
        "{} {} → {outcome}, {} B out, {} B in, {} ms",
        s("method"),
        s("origin"),
        n("bytes_out"),
        n("bytes_in"),
        n("ms")
    )
}

pub(crate) fn time(us: u64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_micros(us);
    humantime::format_rfc3339_millis(t).to_string()
}

/// The record's times: enqueued, due, claimed, started, finished.
fn print_times(record: &JobRecord) {
    let ms = |from: Option<u64>, to: Option<u64>| match (from, to) {
        (Some(a), Some(b)) if b >= a => format!("{:.1}ms", (b - a) as f64 / 1000.0),
        _ => "-".to_string(),
    };
    if let Some(at) = record.enqueued_us {
        println!("enqueued   {}", time(at));
    }
    if let Some(at) = record.run_at_us {
        println!("due        {}", time(at));
    }
    if let Some(at) = record.claimed_us {
        println!(
            "claimed    {} by {} (waited {})",
            time(at),
            shown(record.worker.as_deref().unwrap_or("?")),
            ms(record.enqueued_us, record.claimed_us)
        );
    }
    if let Some(at) = record.started_us {
        println!(
            "started    {} ({} after the claim)",
            time(at),
            ms(record.claimed_us, record.started_us)
        );
    }
    if let Some(at) = record.finished_us {
        println!(
            "finished   {} (recorded {} after the start)",
            time(at),
            ms(record.started_us, record.finished_us)
        );
    }
}

/// The error, the output and the guest's log lines.
fn print_outcome(record: &JobRecord) {
    if let Some(error) = &record.error {
        let message = error.get("message").and_then(|m| m.as_str()).unwrap_or("");
        let kind = error
            .get("kind")
            .and_then(|k| k.as_str())
            .unwrap_or("error");
        println!("error      {}: {}", shown(kind), shown(message));
    }
    if let Some(output) = &record.output {
        println!("output     {}", shown(output));
    } else if let Some(b64) = &record.output_base64 {
        println!(
            "output     ({} bytes of binary, base64 in --json)",
            b64.len() * 3 / 4
        );
    }
    if let Some(lines) = record
        .logs
        .as_ref()
        .and_then(|l| l.get("lines"))
        .and_then(|l| l.as_array())
    {
        for line in lines {
            let level = line.get("level").and_then(|v| v.as_str()).unwrap_or("");
            let message = line.get("message").and_then(|v| v.as_str()).unwrap_or("");
            println!("log        [{}] {}", shown(level), shown(message));
        }
    }
}
