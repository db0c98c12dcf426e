//! `spool enqueue PLUGIN --input …`: put one job (or a JSON-lines file of
//! them) on the queue; optionally wait for the result.

use super::call::read_input;
use super::connect::{RedisArgs, fail, runtime};
use super::exit;
use super::job::print_record;
use super::shown::shown;
use crate::config::parse_duration;
use crate::ids::PluginName;
use crate::queue::{JobRecord, NewJob, Priority, Queue, Status};
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

#[derive(Debug, clap::Args)]
pub(crate) struct EnqueueArgs {
    #[command(flatten)]
    pub(super) redis: RedisArgs,

    /// The plugin to run the job: NAME or TENANT/NAME.
    pub(super) plugin: String,

    /// The job's input: inline JSON, or @FILE (@- reads standard input).
    #[arg(long, short, required_unless_present = "bulk")]
    pub(super) input: Option<String>,

    /// A JSON-lines file: one job input per line (a JSON value), all for
    /// PLUGIN with the same options. The whole file is checked first; then
    /// 200 jobs go per script call.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["input", "wait", "idempotency_key"])]
    pub(super) bulk: Option<PathBuf>,

    /// MIME type of the input [default: application/json for inline input,
    /// guessed from the extension for @FILE]
    #[arg(long)]
    pub(super) content_type: Option<String>,

    /// Wait for the job to finish and print its output (or error). Takes an
    /// optional timeout, e.g. --wait=10s.
    #[arg(long, value_name = "TIMEOUT", num_args = 0..=1, default_missing_value = "5m", value_parser = parse_duration)]
    pub(super) wait: Option<Duration>,

    /// Run no earlier than this long from now, e.g. 30s or 2h.
    #[arg(long, value_parser = parse_duration, conflicts_with = "at")]
    pub(super) delay: Option<Duration>,

    /// Run no earlier than this time (RFC 3339 with a zone, e.g.
    /// 2026-11-27T09:00:00Z or 2026-11-27T10:00:00+01:00).
    #[arg(long, value_parser = parse_time)]
    pub(super) at: Option<SystemTime>,

    /// How the job shares workers: high, normal or low (6:3:1, no starvation).
    #[arg(long, value_enum, default_value_t = Priority::Normal)]
    pub(super) priority: Priority,

    /// Attempts before the job goes to the dead letters.
    #[arg(long, default_value_t = crate::queue::DEFAULT_MAX_ATTEMPTS, value_parser = clap::value_parser!(u32).range(1..))]
    pub(super) max_attempts: u32,

    /// Enqueueing again with the same key (within the record TTL) returns
    /// the first job's id instead of a new job.
    #[arg(long)]
    pub(super) idempotency_key: Option<String>,

    /// Skip the result-cache lookup for this job: the handler runs, and a
    /// success replaces the cached result.
    #[arg(long)]
    pub(super) no_cache: bool,

    /// Run the job one at a time, in enqueue order, with the tenant's other
    /// jobs of this group (e.g. customer-42); `spool tenants set
    /// --group-concurrency` allows more at once. 1-128 of letters, digits,
    /// `_ - . : @`.
    #[arg(long, value_parser = parse_group)]
    pub(super) group: Option<String>,

    /// Print JSON: {"id", "created"}, or the whole job record with --wait.
    #[arg(long)]
    pub(super) json: bool,
}

fn parse_group(text: &str) -> Result<String, String> {
    crate::queue::check_group(text).map(|()| text.to_string())
}

/// RFC 3339 with a zone: `2026-11-27T09:00:00Z` or `…+01:00`. A time
/// without a zone is refused rather than guessed.
fn parse_time(text: &str) -> Result<SystemTime, String> {
    let expected =
        "expected RFC 3339 with a zone, such as 2026-11-27T09:00:00Z or 2026-11-27T10:00:00+01:00";
    let bad = |why: &str| format!("invalid time {text:?}: {why}; {expected}");
    let t = text.trim();
    if t.ends_with(['Z', 'z']) {
        return humantime::parse_rfc3339_weak(&t[..t.len() - 1]).map_err(|e| bad(&e.to_string()));
    }
    let date_end = t
        .find(['T', 't', ' '])
        .ok_or_else(|| bad("no time of day"))?;
    let zone_at = t[date_end..]
        .rfind(['+', '-'])
        .map(|i| date_end + i)
        .ok_or_else(|| bad("no zone"))?;
    let (local, zone) = t.split_at(zone_at);
    let sign: i64 = if zone.starts_with('-') { -1 } else { 1 };
    let (hours, minutes) = zone[1..]
        .split_once(':')
        .and_then(|(h, m)| Some((h.parse::<i64>().ok()?, m.parse::<i64>().ok()?)))
        .filter(|(h, m)| *h < 24 && *m < 60)
        .ok_or_else(|| bad("the zone is not +HH:MM or -HH:MM"))?;
    let naive = humantime::parse_rfc3339_weak(local).map_err(|e| bad(&e.to_string()))?;
    let offset = Duration::from_secs(u64::try_from(hours * 3600 + minutes * 60).unwrap_or(0));
    // Local time = UTC + offset, so UTC = local - offset.
    Ok(if sign > 0 {
        naive - offset
    } else {
        naive + offset
    })
}

/// `--delay`, or `--at` as a delay from now.
pub(super) fn delay_of(args: &EnqueueArgs) -> Duration {
    // --at is turned into a delay by this machine's clock; Redis' clock
    // then decides when it is due.
    match (args.delay, args.at) {
        (Some(d), _) => d,
        (None, Some(t)) => t.duration_since(SystemTime::now()).unwrap_or_default(),
        (None, None) => Duration::ZERO,
    }
}

pub(crate) fn run(args: EnqueueArgs) -> u8 {
    let plugin = match PluginName::parse(&args.plugin) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("spool: {e}");
            return exit::USAGE;
        }
    };
    let delay = delay_of(&args);
    let template = NewJob {
        priority: args.priority,
        max_attempts: args.max_attempts,
        delay,
        idempotency_key: args.idempotency_key.clone(),
        wait: args.wait.is_some(),
        no_cache: args.no_cache,
        group: args.group.clone(),
        ..NewJob::new(plugin, Vec::new())
    };
    runtime().block_on(async {
        let queue = match args.redis.connect().await {
            Ok(q) => q,
            Err(e) => return fail(&e),
        };
        match &args.bulk {
            Some(file) => bulk(&queue, &args, template, file).await,
            None => one(&queue, &args, template).await,
        }
    })
}

async fn one(queue: &Queue, args: &EnqueueArgs, mut job: NewJob) -> u8 {
    let input = args.input.as_deref().unwrap_or_default();
    let (payload, guessed) = match read_input(input) {
        Ok(i) => i,
        Err(message) => {
            eprintln!("spool: {message}");
            return exit::USAGE;
        }
    };
    job.payload = payload;
    job.content_type = args.content_type.clone().unwrap_or(guessed);
    let enqueued = match queue.enqueue(&job).await {
        Ok(e) => e,
        Err(e) => return fail(&e),
    };
    if !enqueued.created {
        eprintln!(
            "spool: idempotency key {:?} already names job {}; nothing new was enqueued",
            args.idempotency_key.as_deref().unwrap_or_default(),
            enqueued.id
        );
    }
    let Some(timeout) = args.wait else {
        if args.json {
            println!(
                "{}",
                serde_json::json!({"id": enqueued.id, "created": enqueued.created})
            );
        } else {
            println!("{}", enqueued.id);
        }
        return exit::OK;
    };
    let record = match queue
        .wait_for(&job.plugin.tenant, &enqueued.id, timeout)
        .await
    {
        Ok(r) => r,
        Err(e) => return fail(&e),
    };
    if args.json {
        print_record(&record, true);
    } else {
        print_end(&record);
    }
    match record.status {
        Some(Status::Succeeded) => exit::OK,
        _ => exit::FAILED,
    }
}

/// A waited-for job's end: its output, or why there is none.
fn print_end(record: &JobRecord) {
    if let Some(output) = record.output_bytes() {
        if super::shown::write_output(output) && output.last() != Some(&b'\n') {
            println!();
        }
    } else if record.status == Some(Status::Cancelled) {
        eprintln!(
            "spool: job {} was cancelled before it started",
            shown(&record.id)
        );
    } else {
        let error = record
            .error
            .as_ref()
            .and_then(|e| e.get("message"))
            .and_then(|m| m.as_str())
            .unwrap_or("no error recorded");
        eprintln!("spool: job {} is dead: {}", shown(&record.id), shown(error));
    }
}

/// Read and check every line first, so that a bad line enqueues nothing;
/// then enqueue in batches. If Redis fails part-way, the ids already
/// enqueued are printed and the message says where to resume.
async fn bulk(queue: &Queue, args: &EnqueueArgs, template: NewJob, file: &PathBuf) -> u8 {
    let lines = match read_lines(file) {
        Ok(lines) => lines,
        Err(message) => {
            eprintln!("spool: {message}; nothing was enqueued");
            return exit::USAGE;
        }
    };
    let content_type = args
        .content_type
        .clone()
        .unwrap_or_else(|| "application/json".to_string());
    let bar = indicatif::ProgressBar::new(lines.len() as u64).with_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} enqueueing [{bar:30}] {pos}/{len} jobs {per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut ids: Vec<String> = Vec::with_capacity(lines.len());
    for chunk in lines.chunks(1000) {
        let batch: Vec<NewJob> = chunk
            .iter()
            .map(|(_, payload)| NewJob {
                payload: payload.clone().into_bytes(),
                content_type: content_type.clone(),
                ..template.clone()
            })
            .collect();
        match queue.enqueue_many(&batch).await {
            Ok(done) => ids.extend(done.into_iter().map(|e| e.id)),
            Err(e) => {
                bar.abandon();
                // Enqueued in order, 200 per call: whatever was acknowledged
                // before the failure is on the queue.
                print_ids(&ids, args.json);
                let resume = lines.get(ids.len()).map_or(0, |(n, _)| *n);
                eprintln!(
                    "spool: {} of {} jobs were enqueued (ids on standard output); the rest, from line {resume} of {}, were not (a batch in flight may have been)",
                    ids.len(),
                    lines.len(),
                    file.display()
                );
                return fail(&e);
            }
        }
        bar.set_position(ids.len() as u64);
    }
    bar.finish_and_clear();
    print_ids(&ids, args.json);
    eprintln!("enqueued {} jobs for {}", ids.len(), template.plugin);
    exit::OK
}

/// `(line number, text)` of every non-blank line, each a JSON value.
fn read_lines(file: &PathBuf) -> Result<Vec<(usize, String)>, String> {
    let reader = std::fs::File::open(file)
        .map(std::io::BufReader::new)
        .map_err(|e| format!("could not open the jobs file {}: {e}", file.display()))?;
    let mut lines = Vec::new();
    for (n, line) in reader.lines().enumerate() {
        let line =
            line.map_err(|e| format!("{}:{}: could not read: {e}", file.display(), n + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        if let Err(e) = serde_json::from_str::<serde_json::Value>(&line) {
            return Err(format!(
                "{}:{}: not a JSON value ({e})",
                file.display(),
                n + 1
            ));
        }
        lines.push((n + 1, line));
    }
    Ok(lines)
}

fn print_ids(ids: &[String], json: bool) {
    if json {
        println!("{}", serde_json::json!({"enqueued": ids.len(), "ids": ids}));
    } else {
        let mut out = std::io::stdout().lock();
        for id in ids {
            let _ = writeln!(out, "{id}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_time;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn times_need_a_zone_and_offsets_count() {
        let utc = parse_time("2026-11-27T09:00:00Z").unwrap();
        assert_eq!(parse_time("2026-11-27T10:00:00+01:00").unwrap(), utc);
        assert_eq!(parse_time("2026-11-27T04:30:00-04:30").unwrap(), utc);
        assert_eq!(
            utc.duration_since(UNIX_EPOCH).unwrap(),
            Duration::from_secs(1_795_770_000)
        );
        let e = parse_time("2026-11-27T09:00:00").unwrap_err();
        assert!(e.contains("no zone"), "{e}");
        assert!(parse_time("tomorrow").is_err());
        assert!(parse_time("2026-11-27T09:00:00+25:00").is_err());
    }
}
