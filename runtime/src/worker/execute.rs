//! One claimed attempt → one [`Outcome`]: validate the envelope, find the
//! plugin, run it in the sandbox, and decide where the job goes next
//! (succeeded, retry with backoff, dead letter, or handed back).

use super::cached::{self, Answer};
use super::registry::Registry;
use crate::cache::{Hit, ResultCache};
use crate::queue::{ClaimedJob, DEFAULT_MAX_ATTEMPTS, Next, Outcome, PluginName, Priority};
use crate::sandbox::{JobFailure, JobInput, JobRun, JobServices};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

/// Runs claimed jobs; shared by the worker's job threads.
#[derive(Debug)]
pub(crate) struct Executor {
    pub registry: Arc<Registry>,
    pub services: JobServices,
    pub worker_id: String,
    /// First retry delay; doubles per attempt.
    pub backoff: Duration,
    /// How long a job waits for its plugin before it is dead-lettered.
    pub plugin_wait: Duration,
    /// The result cache; none runs every job.
    pub cache: Option<Arc<ResultCache>>,
}

/// Longest retry delay.
const MAX_BACKOFF: Duration = Duration::from_secs(600);

impl Executor {
    pub fn execute(&self, job: ClaimedJob) -> Outcome {
        // On Redis' clock: the claim's time plus the wait in our local queue.
        let waited = u64::try_from(job.received.elapsed().as_micros()).unwrap_or(0);
        let started_us = job.claimed_us + waited;
        let mut outcome = Outcome {
            id: job.id.clone(),
            token: job.token.clone(),
            wait: job.wait,
            next: Next::Dead,
            fields: vec![("started_us", started_us.to_string().into_bytes())],
        };
        let (plugin_name, max_attempts) = match validate(&job) {
            Ok(valid) => valid,
            Err(message) => {
                tracing::warn!(job = %job.id, "malformed job envelope: {message}");
                outcome.fields.push((
                    "error",
                    error_json("malformed-envelope", &message, false, job.attempt),
                ));
                clear_cache_fields(&mut outcome);
                return outcome;
            }
        };
        let Some((plugin, settings)) = self.registry.serve(&plugin_name) else {
            clear_cache_fields(&mut outcome);
            return self.not_loaded(outcome, &job, &plugin_name);
        };
        let input = JobInput {
            id: job.id,
            tenant: plugin_name.tenant,
            plugin: plugin_name.name,
            attempt: job.attempt,
            content_type: job
                .content_type
                .unwrap_or_else(|| "application/json".to_string()),
            payload: job.payload,
        };
        let services = JobServices {
            config: Arc::clone(&settings.config),
            kv: self.services.kv.clone(),
        };
        outcome
            .fields
            .push(("version", plugin.version.0.clone().into_bytes()));
        let cache = self.cache.as_deref();
        let run = match cached::answer(cache, &plugin, &settings, &services, input, job.no_cache) {
            Answer::Ran(run, status, key) => {
                outcome
                    .fields
                    .push(("cache", status.as_str().as_bytes().to_vec()));
                outcome.fields.push(("cache_job", Vec::new()));
                outcome
                    .fields
                    .push(("cache_key", key.unwrap_or_default().into_bytes()));
                run
            }
            Answer::Hit(hit, key) => {
                outcome.fields.push(("cache_key", key.into_bytes()));
                return self.hit(outcome, &job.waiting_since_us, hit);
            }
        };
        record_run(&mut outcome, &run);
        match run.result {
            Ok(output) => {
                outcome.next = Next::Succeeded;
                outcome.fields.push(("output", output));
                // Clear the error an earlier attempt, a hand-back or a dead
                // letter left (the worker cannot know which happened).
                outcome.fields.push(("error", Vec::new()));
                if job.waiting_since_us.is_some() {
                    outcome.fields.push(("waiting_since_us", Vec::new()));
                }
            }
            Err(failure) => {
                let retry = failure.is_retryable() && job.attempt < max_attempts;
                outcome.fields.push((
                    "error",
                    failure_json(&failure, retry, job.attempt, max_attempts),
                ));
                outcome.next = if retry {
                    Next::Retry {
                        delay: backoff(self.backoff, job.attempt),
                    }
                } else {
                    Next::Dead
                };
            }
        }
        outcome
    }

    /// A success answered by the cache: the output, and who computed it.
    fn hit(&self, mut outcome: Outcome, waiting_since: &Option<u64>, hit: Hit) -> Outcome {
        outcome.next = Next::Succeeded;
        let fields = [
            ("cache", hit.status.as_str().as_bytes().to_vec()),
            ("cache_job", hit.job.into_bytes()),
            ("output", hit.output.to_vec()),
            ("host_calls", b"0".to_vec()),
            ("logs", b"[]".to_vec()),
            // What an earlier attempt left: nothing ran this time.
            ("timings", Vec::new()),
            ("progress", Vec::new()),
            ("error", Vec::new()),
        ];
        outcome.fields.extend(fields);
        if waiting_since.is_some() {
            outcome.fields.push(("waiting_since_us", Vec::new()));
        }
        outcome
    }

    /// The plugin is not loaded here: hand the job back without spending an
    /// attempt (another worker, or this one after a reload, may have it),
    /// until it has waited `plugin_wait` since its first such hand-back.
    fn not_loaded(&self, mut outcome: Outcome, job: &ClaimedJob, name: &PluginName) -> Outcome {
        let message = format!("plugin {name} is not loaded on worker {}", self.worker_id);
        // Redis' clock, like every time the queue keeps.
        let now = job.claimed_us;
        let since = job.waiting_since_us.unwrap_or(now);
        let waited = Duration::from_micros(now.saturating_sub(since));
        if waited > self.plugin_wait {
            let round = |d: Duration| {
                humantime::format_duration(Duration::from_millis(
                    u64::try_from(d.as_millis()).unwrap_or(u64::MAX),
                ))
            };
            let message = format!(
                "{message} (no worker served it for {}; the limit is {})",
                round(waited),
                round(self.plugin_wait)
            );
            tracing::warn!(job = %job.id, "{message}; dead-lettered");
            outcome.fields.push((
                "error",
                error_json("plugin-not-loaded", &message, false, job.attempt),
            ));
            // It never ran: the attempt the claim counted is not spent.
            let attempts = job.attempt.saturating_sub(1).to_string();
            outcome.fields.push(("attempt", attempts.into_bytes()));
            outcome.next = Next::Dead;
        } else {
            tracing::debug!(job = %job.id, "{message}; handed back");
            outcome.fields.push((
                "error",
                error_json("plugin-not-loaded", &message, true, job.attempt),
            ));
            if job.waiting_since_us.is_none() {
                outcome
                    .fields
                    .push(("waiting_since_us", now.to_string().into_bytes()));
            }
            let jitter = Duration::from_millis(fastrand::u64(0..500));
            outcome.next = Next::Requeue {
                delay: Duration::from_secs(1) + jitter,
            };
        }
        outcome
    }
}

/// Nothing was looked up this attempt: clear what an earlier one recorded.
fn clear_cache_fields(outcome: &mut Outcome) {
    for field in ["cache", "cache_key", "cache_job"] {
        outcome.fields.push((field, Vec::new()));
    }
}

/// The plugin name and attempt budget, or what is wrong with the envelope.
fn validate(job: &ClaimedJob) -> Result<(PluginName, u32), String> {
    let plugin = job
        .plugin
        .as_deref()
        .ok_or("field \"plugin\" is missing; expected NAME or TENANT/NAME")?;
    let name = PluginName::parse(plugin).map_err(|e| format!("field \"plugin\": {e}"))?;
    let max_attempts = match job.max_attempts.as_deref() {
        None => DEFAULT_MAX_ATTEMPTS,
        Some(raw) => raw.parse::<u32>().ok().filter(|n| *n >= 1).ok_or_else(|| {
            format!("field \"max_attempts\" is {raw:?}; expected a whole number >= 1")
        })?,
    };
    if let Some(priority) = job.priority.as_deref() {
        priority
            .parse::<Priority>()
            .map_err(|e| format!("field \"priority\": {e}"))?;
    }
    Ok((name, max_attempts))
}

/// Fields every run leaves: host calls, timings, logs.
fn record_run(outcome: &mut Outcome, run: &JobRun) {
    outcome
        .fields
        .push(("host_calls", run.host_calls.to_string().into_bytes()));
    let timings = serde_json::to_vec(&run.timings).unwrap_or_default();
    outcome.fields.push(("timings", timings));
    let logs = serde_json::to_vec(&run.log).unwrap_or_default();
    outcome.fields.push(("logs", logs));
    if let Some(progress) = run.progress {
        let progress = serde_json::to_vec(&progress).unwrap_or_default();
        outcome.fields.push(("progress", progress));
    }
}

/// `base · 2^(attempt-1)`, at most [`MAX_BACKOFF`], times a random factor in
/// [0.5, 1) so that jobs that failed together do not retry together.
pub(crate) fn backoff(base: Duration, attempt: u32) -> Duration {
    let exp = base.saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
    exp.min(MAX_BACKOFF).mul_f64(0.5 + fastrand::f64() / 2.0)
}

fn error_json(kind: &str, message: &str, retryable: bool, attempt: u32) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "kind": kind,
        "message": message,
        "retryable": retryable,
        "attempt": attempt,
    }))
    .unwrap_or_default()
}

fn failure_json(failure: &JobFailure, retry: bool, attempt: u32, max_attempts: u32) -> Vec<u8> {
    let mut value = serde_json::to_value(failure).unwrap_or_else(|_| json!({}));
    if let Some(map) = value.as_object_mut() {
        map.insert("message".into(), json!(failure.to_string()));
        map.insert("retryable".into(), json!(failure.is_retryable()));
        map.insert("attempt".into(), json!(attempt));
        if failure.is_retryable() && !retry {
            map.insert(
                "exhausted".into(),
                json!(format!(
                    "gave up after {attempt} of {max_attempts} attempts"
                )),
            );
        }
    }
    serde_json::to_vec(&value).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        let base = Duration::from_millis(100);
        for attempt in 1..6 {
            let full = base * (1 << (attempt - 1));
            let d = backoff(base, attempt);
            assert!(d >= full / 2 && d <= full, "attempt {attempt}: {d:?}");
        }
        assert!(backoff(base, 40) <= MAX_BACKOFF);
    }
}
