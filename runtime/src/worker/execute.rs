//! One claimed attempt → one [`Outcome`]: validate the envelope, find the
//! plugin, run it in the sandbox (or answer it from the result cache), and
//! decide where the job goes next (succeeded, retry with backoff, dead
//! letter, or handed back).

use super::cached::{self, Answer};
use super::watchdog::{Slot, Watched};
use crate::cache::{CacheStatus, Hit, ResultCache};
use crate::ids::PluginName;
use crate::metrics::{Ended, Metrics};
use crate::plugins::Registry;
use crate::queue::{
    ClaimedJob, DEFAULT_CONTENT_TYPE, DEFAULT_MAX_ATTEMPTS, ErrorRecord, Field, Json, Next,
    Outcome, Priority, RecordUpdate,
};
use crate::redis::SyncRedis;
use crate::sandbox::http::AllowList;
use crate::sandbox::{JobFailure, JobInput, JobRun, JobServices, KeyValue};
use crate::tenants::{Directory, Limit, Limits};
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
    /// How long past its deadline a sandbox run may take before its thread
    /// counts as wedged.
    pub wedge_grace: Duration,
    /// The tenants' quotas (`max-payload`, `max-attempts`), checked again
    /// here for jobs written with plain commands, which no script checked.
    pub limits: Option<Directory>,
    /// Counts every outcome (`spool worker --metrics`).
    pub metrics: Arc<Metrics>,
}

/// Longest retry delay.
const MAX_BACKOFF: Duration = Duration::from_secs(600);

impl Executor {
    pub fn new(
        config: &super::WorkerConfig,
        registry: &Arc<Registry>,
        cache: Option<Arc<ResultCache>>,
        kv: Option<Arc<dyn KeyValue>>,
    ) -> Self {
        Executor {
            cache,
            registry: Arc::clone(registry),
            services: JobServices {
                config: Arc::default(),
                kv,
                progress: None,
                http_allow: None,
                http_ceiling: None,
                outbound: Some(Arc::clone(&config.outbound)),
            },
            worker_id: config.worker_id.clone(),
            backoff: config.backoff,
            plugin_wait: config.plugin_wait,
            wedge_grace: config.wedge_grace,
            limits: SyncRedis::new(&config.queue.url)
                .ok()
                .map(|redis| Directory::new(Arc::new(redis), &config.queue.prefix)),
            metrics: Arc::clone(&config.metrics),
        }
    }

    /// Run one claimed job to its outcome, and count it for the metrics.
    pub fn execute(&self, job: ClaimedJob, slot: &Slot) -> Outcome {
        let raw_plugin = job.plugin.clone();
        let mut timings = None;
        let outcome = self.outcome_of(job, slot, &mut timings);
        // A plugin this worker serves (its version was set) is a label of
        // its own; any other name a tenant writes counts as `unloaded`, so
        // made-up names cannot use up the metrics' label pairs.
        let plugin = match outcome.record.version {
            Field::Set(_) => plugin_label(raw_plugin.as_deref()),
            _ => "unloaded",
        };
        let ended = match outcome.next {
            Next::Succeeded => Ended::Succeeded,
            Next::Retry { .. } => Ended::Retried,
            Next::Dead => Ended::Dead,
            // A job thread never decides Wedged (the watchdog does, and
            // the ack counts it).
            Next::Requeue { .. } | Next::Wedged { .. } => Ended::HandedBack,
        };
        self.metrics.ended(&outcome.tenant, plugin, ended, timings);
        outcome
    }

    /// [`Executor::execute`] without the counting; `timings` (instantiate,
    /// run) are set when the sandbox ran the job.
    fn outcome_of(
        &self,
        job: ClaimedJob,
        slot: &Slot,
        timings: &mut Option<(Duration, Duration)>,
    ) -> Outcome {
        // On Redis' clock: the claim's time plus the wait in our local queue.
        let waited = u64::try_from(job.received.elapsed().as_micros()).unwrap_or(0);
        let mut outcome = job.outcome(Next::Dead);
        outcome.record.started_us = Field::Set(job.claimed_us + waited);
        let admitted = validate(&job).and_then(|(name, n)| self.within_quotas(&job, name, n));
        let (plugin_name, max_attempts) = match admitted {
            Ok(valid) => valid,
            Err(error) => return refused(outcome, &job, error),
        };
        let Some((plugin, settings)) = self.registry.serve(&plugin_name) else {
            outcome.record.clear_cache();
            return self.not_loaded(outcome, &job, &plugin_name);
        };
        let (attempt, waiting_since, no_cache) = (job.attempt, job.waiting_since_us, job.no_cache);
        let input = JobInput {
            id: job.id,
            tenant: plugin_name.tenant,
            plugin: plugin_name.name,
            attempt,
            content_type: job
                .content_type
                .unwrap_or_else(|| DEFAULT_CONTENT_TYPE.to_string()),
            payload: job.payload,
        };
        let services = JobServices {
            config: Arc::clone(&settings.config),
            kv: self.services.kv.clone(),
            progress: self.services.progress.clone(),
            http_allow: settings.http_allow.clone(),
            http_ceiling: settings
                .http_allow
                .as_ref()
                .and_then(|_| self.http_ceiling(&input.tenant)),
            outbound: self.services.outbound.clone(),
        };
        outcome.record.version = Field::Set(plugin.version.clone());
        let cache = self.cache.as_deref();
        let watched = Watched {
            slot,
            grace: self.wedge_grace,
        };
        let _busy = self.metrics.busy();
        let answer = cached::answer(
            cache, &plugin, &settings, &services, input, no_cache, watched,
        );
        let mut outcome = self.answered(outcome, answer, (attempt, max_attempts), timings);
        if waiting_since.is_some() && outcome.next == Next::Succeeded {
            // It waited for its plugin; that wait is over.
            outcome.record.waiting_since_us = Field::Clear;
        }
        outcome
    }

    /// The outcome of what the cache or the sandbox answered, for attempt
    /// `attempt` of `max_attempts`; `timings` set when the sandbox ran.
    fn answered(
        &self,
        mut outcome: Outcome,
        answer: Answer,
        (attempt, max_attempts): (u32, u32),
        timings: &mut Option<(Duration, Duration)>,
    ) -> Outcome {
        match answer {
            Answer::Ran(run, status, key) => {
                *timings = Some((run.timings.instantiate, run.timings.run));
                self.metrics.cache(status.as_str());
                // `off` is what a record without the field means (it
                // stays in a smaller allocation; `JobRecord::from_hash`).
                outcome.record.cache = if status == CacheStatus::Off {
                    Field::Clear
                } else {
                    Field::Set(status.as_str().to_string())
                };
                outcome.record.cache_job = Field::Clear;
                outcome.record.cache_key = key.map_or(Field::Clear, Field::Set);
                self.ran(outcome, run, attempt, max_attempts)
            }
            Answer::Hit(hit, key) => {
                self.metrics.cache(hit.status.as_str());
                outcome.record.cache_key = Field::Set(key);
                hit_outcome(outcome, hit)
            }
        }
    }

    /// The job's attempt budget within its tenant's `max-attempts`, or an
    /// `over-quota` error when its payload is over the tenant's
    /// `max-payload` (`enqueue.lua` refuses both; a job written with plain
    /// commands reaches the worker unchecked).
    fn within_quotas(
        &self,
        job: &ClaimedJob,
        name: PluginName,
        max_attempts: u32,
    ) -> Result<(PluginName, u32), ErrorRecord> {
        let Some(directory) = &self.limits else {
            return Ok((name, max_attempts));
        };
        let limits = directory.limits(&name.tenant);
        let size = job.payload.len() as u64;
        if limits.exceeds(Limit::MaxPayload, size) {
            let message = format!(
                "tenant {}: a payload of {} is over its max-payload quota of {}; the job was not run (a retry cannot help)",
                name.tenant,
                Limit::MaxPayload.show(size),
                Limit::MaxPayload.show(limits.get(Limit::MaxPayload))
            );
            return Err(ErrorRecord::new("over-quota", message, false));
        }
        Ok((name, capped_attempts(&limits, max_attempts)))
    }

    /// The operator's ceiling on what `tenant`'s plugins may call, if set.
    /// A ceiling Redis holds but this worker cannot parse (written by
    /// hand) allows nothing: a broken bound fails closed.
    fn http_ceiling(&self, tenant: &str) -> Option<Arc<AllowList>> {
        let (rules, _) = self.limits.as_ref()?.limits(tenant).http_allow?;
        Some(Arc::new(AllowList::parse(&rules).unwrap_or_else(|e| {
            tracing::warn!(tenant, "unusable http-allow ceiling, no host allowed: {e}");
            AllowList::default()
        })))
    }

    /// `most` attempts, lowered to the `max-attempts` quota of the tenant
    /// of `plugin` (an envelope's raw plugin field).
    pub fn attempts_within_quota(&self, plugin: Option<&str>, most: u32) -> u32 {
        let tenant = plugin
            .and_then(|p| PluginName::parse(p).ok())
            .map(|n| n.tenant);
        let (Some(directory), Some(tenant)) = (&self.limits, tenant) else {
            return most;
        };
        capped_attempts(&directory.limits(&tenant), most)
    }

    /// A run's outcome: success, retry with backoff, or a dead letter.
    fn ran(&self, mut outcome: Outcome, run: JobRun, attempt: u32, max_attempts: u32) -> Outcome {
        if !run.http.is_empty() {
            self.metrics.http(run.http.iter().map(http_outcome));
        }
        record_run(&mut outcome.record, &run, attempt);
        match run.result {
            Ok(output) => {
                outcome.next = Next::Succeeded;
                outcome.record.output = Field::Set(output);
                // Clear the error an earlier attempt, a hand-back or a dead
                // letter left (the worker cannot know which happened).
                outcome.record.error = Field::Clear;
            }
            Err(failure) => {
                let retry = failure.is_retryable() && attempt < max_attempts;
                outcome.record.error =
                    Field::Set(failure_record(&failure, retry, attempt, max_attempts));
                outcome.next = if retry {
                    Next::Retry {
                        delay: backoff(self.backoff, attempt),
                    }
                } else {
                    Next::Dead
                };
            }
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
            let message = format!(
                "{message} (no worker served it for {}; the limit is {})",
                round(waited),
                round(self.plugin_wait)
            );
            tracing::warn!(job = %job.id, "{message}; dead-lettered");
            let error = ErrorRecord::new("plugin-not-loaded", message, false);
            outcome.record.error = Field::Set(error.at_attempt(job.attempt));
            // It never ran: the attempt the claim counted is not spent.
            outcome.record.attempt = Field::Set(job.attempt.saturating_sub(1));
            outcome.next = Next::Dead;
        } else {
            tracing::debug!(job = %job.id, "{message}; handed back");
            let error = ErrorRecord::new("plugin-not-loaded", message, true);
            outcome.record.error = Field::Set(error.at_attempt(job.attempt));
            if job.waiting_since_us.is_none() {
                outcome.record.waiting_since_us = Field::Set(now);
            }
            let jitter = Duration::from_millis(fastrand::u64(0..500));
            outcome.next = Next::Requeue {
                delay: Duration::from_secs(1) + jitter,
            };
        }
        outcome
    }
}

/// The plugin's name as a metrics label: the envelope's raw field (the
/// metrics bound how many distinct ones are kept), without its tenant.
fn plugin_label(raw: Option<&str>) -> &str {
    let name = raw.map_or("?", |p| p.rsplit('/').next().unwrap_or(p));
    if name.is_empty() || name.len() > 64 {
        "?"
    } else {
        name
    }
}

/// A success answered by the cache: the output, and who computed it.
fn hit_outcome(mut outcome: Outcome, hit: Hit) -> Outcome {
    outcome.next = Next::Succeeded;
    let record = &mut outcome.record;
    record.cache = Field::Set(hit.status.as_str().to_string());
    record.cache_job = Field::Set(hit.job);
    record.output = Field::Set(hit.output.to_vec());
    record.host_calls = Field::Set(0);
    record.logs = Field::Set(Json::logs(std::iter::empty::<(&str, &str)>(), 0));
    // What an earlier attempt left: nothing ran this time.
    record.timings = Field::Clear;
    record.progress = Field::Clear;
    record.error = Field::Clear;
    outcome
}

/// A duration to the millisecond, for messages.
fn round(d: Duration) -> humantime::FormattedDuration {
    humantime::format_duration(Duration::from_millis(
        u64::try_from(d.as_millis()).unwrap_or(u64::MAX),
    ))
}

/// `most` attempts within the `max-attempts` quota of `limits` (0: none).
fn capped_attempts(limits: &Limits, most: u32) -> u32 {
    match u32::try_from(limits.get(Limit::MaxAttempts)) {
        Ok(0) | Err(_) => most,
        Ok(cap) => most.min(cap),
    }
}

/// A job refused before it ran (malformed, over a quota): dead, with why.
fn refused(mut outcome: Outcome, job: &ClaimedJob, error: ErrorRecord) -> Outcome {
    tracing::warn!(job = %job.id, kind = error.kind, "refused job: {}", error.message);
    outcome.record.error = Field::Set(error.at_attempt(job.attempt));
    outcome.record.clear_cache();
    outcome
}

/// The plugin name and attempt budget, or what is wrong with the envelope.
fn validate(job: &ClaimedJob) -> Result<(PluginName, u32), ErrorRecord> {
    envelope(job).map_err(|message| ErrorRecord::new("malformed-envelope", message, false))
}

fn envelope(job: &ClaimedJob) -> Result<(PluginName, u32), String> {
    let plugin = job
        .plugin
        .as_deref()
        .ok_or("field \"plugin\" is missing; expected NAME or TENANT/NAME")?;
    let name = PluginName::parse(plugin).map_err(|e| format!("field \"plugin\": {e}"))?;
    // The queue's limits, quotas and key-value scope are the slot's tenant:
    // a job may not run as another tenant's plugin.
    if name.tenant != job.tenant {
        return Err(format!(
            "field \"plugin\" is {plugin:?}, a plugin of tenant {:?}, but the job is in tenant {:?}'s queue; expected a plugin of {:?}",
            name.tenant, job.tenant, job.tenant
        ));
    }
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

/// A request's outcome for the metrics: its status class or error code.
fn http_outcome(call: &crate::sandbox::http::HttpCall) -> &str {
    match (call.status, &call.error) {
        (_, Some(code)) => code,
        (Some(100..=199), None) => "1xx",
        (Some(200..=299), None) => "2xx",
        (Some(300..=399), None) => "3xx",
        (Some(400..=499), None) => "4xx",
        (Some(500..=599), None) => "5xx",
        (Some(_), None) => "other",
        (None, None) => "unfinished",
    }
}

/// Fields every run leaves: host calls, timings, logs, progress.
fn record_run(record: &mut RecordUpdate, run: &JobRun, attempt: u32) {
    record.host_calls = Field::Set(run.host_calls);
    record.http = if run.http.is_empty() {
        Field::Clear
    } else {
        Field::Set(Json::of(&run.http))
    };
    let micros = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
    record.timings = Field::Set((micros(run.timings.instantiate), micros(run.timings.run)));
    let lines = run.log.lines.iter();
    record.logs = Field::Set(Json::logs(
        lines.map(|l| (l.level.as_str(), l.message.as_str())),
        run.log.dropped,
    ));
    if let Some(progress) = run.progress {
        record.progress = Field::Set(Json::of(&super::progress::progress_json(attempt, progress)));
    }
}

/// `base · 2^(attempt-1)`, at most [`MAX_BACKOFF`], times a random factor in
/// [0.5, 1) so that jobs that failed together do not retry together.
pub(crate) fn backoff(base: Duration, attempt: u32) -> Duration {
    let exp = base.saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
    exp.min(MAX_BACKOFF).mul_f64(0.5 + fastrand::f64() / 2.0)
}

/// The record of a handler's failure: its kind and details, the message,
/// and whether it ran out of attempts.
fn failure_record(
    failure: &JobFailure,
    retry: bool,
    attempt: u32,
    max_attempts: u32,
) -> ErrorRecord {
    let mut details = match serde_json::to_value(failure) {
        Ok(serde_json::Value::Object(map)) => map,
        _ => serde_json::Map::new(),
    };
    let kind = match details.remove("kind") {
        Some(serde_json::Value::String(kind)) => kind,
        _ => "error".to_string(),
    };
    // The record's own fields win over any detail of the same name.
    for own in ["message", "retryable", "attempt", "exhausted"] {
        details.remove(own);
    }
    let exhausted = (failure.is_retryable() && !retry)
        .then(|| format!("gave up after {attempt} of {max_attempts} attempts"));
    ErrorRecord {
        kind,
        message: failure.to_string(),
        retryable: failure.is_retryable(),
        attempt: Some(attempt),
        exhausted,
        details,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        let base = Duration::from_millis(100);
        for attempt in 1..6 {
            let full = base * (1 << (attempt - 1));
            // Jitter is a factor in [0.5, 1): never the full delay, and
            // spread over the range (a fixed factor would not be jitter).
            let factors: Vec<f64> = (0..1000)
                .map(|_| backoff(base, attempt).as_secs_f64() / full.as_secs_f64())
                .collect();
            let (low, high) = factors
                .iter()
                .fold((f64::MAX, f64::MIN), |(l, h), f| (l.min(*f), h.max(*f)));
            assert!(low >= 0.5 && high < 1.0, "attempt {attempt}: {low}..{high}");
            assert!(
                low < 0.55 && high > 0.95,
                "attempt {attempt}: {low}..{high}"
            );
        }
        let capped = backoff(base, 40);
        assert!(
            capped <= MAX_BACKOFF && capped >= MAX_BACKOFF / 2,
            "{capped:?}"
        );
    }

    #[test]
    fn a_failure_record_keeps_the_details_of_its_kind() {
        let failure = JobFailure::InvalidInput {
            field: "name".into(),
            expected: "text".into(),
            got: "1".into(),
        };
        let record = failure_record(&failure, false, 2, 5);
        assert_eq!(record.kind, "invalid-input");
        assert_eq!(record.details["field"], "name");
        assert_eq!(record.attempt, Some(2));
        assert!(!record.retryable && record.exhausted.is_none());
        let retryable = JobFailure::Retryable {
            message: "busy".into(),
        };
        let record = failure_record(&retryable, false, 5, 5);
        assert_eq!(
            record.exhausted.as_deref(),
            Some("gave up after 5 of 5 attempts")
        );
    }
}
