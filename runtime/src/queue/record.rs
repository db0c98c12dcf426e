//! The job record: the Redis hash at `PREFIX:{QUEUE}:job:ID` holds a
//! job's envelope (documented field by field in `docs/queue.md`) and what
//! its attempts left. Both directions live here: [`RecordUpdate`] is what
//! one attempt writes (serialised in [`RecordUpdate::fields`]), and
//! [`JobRecord`] reads the whole hash back for `spool job`.

use super::run::RunField;
use crate::ids::Version;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt;

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Waiting in a ready list.
    Queued,
    /// Waiting for its `--delay`/`--at` time (or a plugin to be loaded).
    Delayed,
    /// Claimed by a worker under a lease.
    Running,
    /// Finished with output.
    Succeeded,
    /// Failed with a retryable error; waiting for its backoff to pass.
    Retrying,
    /// In the dead letters: failed for good, or out of attempts.
    Dead,
    /// Cancelled before it started.
    Cancelled,
}

impl Status {
    /// Parse the envelope's `status` field.
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "queued" => Status::Queued,
            "delayed" => Status::Delayed,
            "running" => Status::Running,
            "succeeded" => Status::Succeeded,
            "retrying" => Status::Retrying,
            "dead" => Status::Dead,
            "cancelled" => Status::Cancelled,
            _ => return None,
        })
    }

    /// Whether the job will not run again by itself.
    pub fn is_terminal(self) -> bool {
        matches!(self, Status::Succeeded | Status::Dead | Status::Cancelled)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = serde_json::to_value(self).ok();
        f.write_str(text.as_ref().and_then(|v| v.as_str()).unwrap_or("?"))
    }
}

/// One record field as an attempt leaves it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Field<T> {
    /// Untouched: what an earlier attempt wrote stays.
    #[default]
    Keep,
    /// Emptied: what an earlier attempt wrote must not show on this one.
    Clear,
    /// Written.
    Set(T),
}

/// A value already encoded as JSON (timings, logs, progress): encoded once,
/// on the job thread, and stored as is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Json(String);

impl Json {
    /// `value` as JSON text (`null` if it cannot be encoded).
    pub fn of<T: Serialize + ?Sized>(value: &T) -> Self {
        Json(serde_json::to_string(value).unwrap_or_else(|_| "null".to_string()))
    }

    /// A guest log, `lines` (level, message) and the count of dropped
    /// lines, in the record's compact form (see `queue/logs.rs`).
    pub fn logs<'a, L: AsRef<str>>(
        lines: impl ExactSizeIterator<Item = (L, &'a str)>,
        dropped: usize,
    ) -> Self {
        Json(super::logs::stored(lines, dropped))
    }
}

/// An attempt's error, as the record's `error` field holds it (JSON): what
/// failed, whether a retry can help, and the details of its kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorRecord {
    /// `invalid-input`, `timeout`, `plugin-not-loaded`, `host`, …
    pub kind: String,
    /// What failed and what was expected, for a person.
    pub message: String,
    /// Whether running the job again can help.
    pub retryable: bool,
    /// The attempt that failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    /// Set when the job was retryable but ran out of attempts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exhausted: Option<String>,
    /// The details of the kind (`field`, `expected`, `got`, `limit_us`, …).
    #[serde(flatten)]
    pub details: serde_json::Map<String, serde_json::Value>,
}

impl ErrorRecord {
    /// An error of `kind` with no details.
    pub fn new(kind: &str, message: impl Into<String>, retryable: bool) -> Self {
        ErrorRecord {
            kind: kind.to_string(),
            message: message.into(),
            retryable,
            attempt: None,
            exhausted: None,
            details: serde_json::Map::new(),
        }
    }

    /// The same error, naming the attempt that failed.
    #[must_use]
    pub fn at_attempt(mut self, attempt: u32) -> Self {
        self.attempt = Some(attempt);
        self
    }
}

/// What one attempt writes into its job's record, besides what the ack
/// script records itself (status, times of the ack, run-at). Every field
/// is [`Field::Keep`] unless set.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RecordUpdate {
    /// When a job thread started the attempt (µs, Redis' clock). Stored
    /// with `host_calls` and `timings` as one field, `run` (see
    /// [`super::run`]), written when this is set: those two are written
    /// only with it, and a part not set reads as none.
    pub started_us: Field<u64>,
    /// The plugin version it ran on.
    pub version: Field<Version>,
    /// What the result cache did: `hit-memory`, `hit-redis`, `miss`, …
    pub cache: Field<String>,
    /// On a cache hit: the job whose run computed the output.
    pub cache_job: Field<String>,
    /// The result-cache key of the work.
    pub cache_key: Field<String>,
    /// The output of a success.
    pub output: Field<Vec<u8>>,
    /// The error of a failure.
    pub error: Field<ErrorRecord>,
    /// Since when the job has waited for its plugin to be loaded.
    pub waiting_since_us: Field<u64>,
    /// Calls the guest made to `spool:job` imports.
    pub host_calls: Field<u64>,
    /// The attempt's outbound HTTP requests (method, origin, status or
    /// error, bytes, ms; never paths, queries or headers).
    pub http: Field<Json>,
    /// Sandbox timings: instantiate and run (µs).
    pub timings: Field<(u64, u64)>,
    /// Guest log lines.
    pub logs: Field<Json>,
    /// The guest's last progress report.
    pub progress: Field<Json>,
    /// The attempt count, when the attempt is given back unspent.
    pub attempt: Field<u32>,
    /// The record holds nothing an earlier attempt wrote (the claim said
    /// so, [`super::ClaimedJob::fresh`]): cleared fields are left out
    /// rather than written empty. Fewer and smaller values keep the hash
    /// in Redis' compact encoding and the ack cheaper.
    pub fresh: bool,
}

impl RecordUpdate {
    /// Clear the cache fields: nothing was looked up this attempt.
    pub fn clear_cache(&mut self) {
        self.cache = Field::Clear;
        self.cache_key = Field::Clear;
        self.cache_job = Field::Clear;
    }

    /// [`RecordUpdate::each_field`] collected (what the tests read).
    #[cfg(test)]
    pub fn fields(&self) -> Vec<(&'static str, Vec<u8>)> {
        let mut out = Vec::new();
        self.each_field(|name, value| out.push((name, value.to_vec())));
        out
    }

    /// The hash fields to write, in the ack script's `field, value` form,
    /// one at a time and borrowed (an ack writes them straight into its
    /// script call): a cleared field is written empty (the reader takes
    /// empty for none), unless the record is fresh (there is nothing to
    /// clear).
    pub fn each_field(&self, f: impl FnMut(&'static str, &[u8])) {
        let mut v = Visit {
            fresh: self.fresh,
            f,
            text: Vec::new(),
        };
        v.run(&self.started_us, &self.timings, &self.host_calls);
        v.bytes("version", &self.version);
        v.bytes("cache", &self.cache);
        v.bytes("cache_job", &self.cache_job);
        v.bytes("cache_key", &self.cache_key);
        v.bytes("output", &self.output);
        v.error("error", &self.error);
        v.number("waiting_since_us", &self.waiting_since_us);
        v.bytes("http", &self.http);
        v.bytes("logs", &self.logs);
        v.bytes("progress", &self.progress);
        v.number("attempt", &self.attempt);
    }

    /// How many fields [`RecordUpdate::each_field`] writes, and the bytes
    /// of their values (an ack call's size limit counts those).
    pub fn counts(&self) -> (usize, usize) {
        let (mut fields, mut bytes) = (0, 0);
        self.each_field(|_, value| {
            fields += 1;
            bytes += value.len();
        });
        (fields, bytes)
    }
}

/// A field's value as the bytes stored.
trait Stored {
    fn stored(&self) -> &[u8];
}

impl Stored for Vec<u8> {
    fn stored(&self) -> &[u8] {
        self
    }
}

impl Stored for String {
    fn stored(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl Stored for Json {
    fn stored(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl Stored for Version {
    fn stored(&self) -> &[u8] {
        self.as_str().as_bytes()
    }
}

/// Hands each field to `f`: kept ones not at all, cleared ones empty
/// (unless the record is fresh), set ones with their value (numbers and
/// errors printed into `text`, reused).
struct Visit<F> {
    fresh: bool,
    f: F,
    text: Vec<u8>,
}

impl<F: FnMut(&'static str, &[u8])> Visit<F> {
    /// Whether a field is written, and its value if set.
    fn slot<'a, T>(&self, field: &'a Field<T>) -> Option<Option<&'a T>> {
        match field {
            Field::Keep => None,
            Field::Clear if self.fresh => None,
            Field::Clear => Some(None),
            Field::Set(value) => Some(Some(value)),
        }
    }

    fn bytes<T: Stored>(&mut self, name: &'static str, field: &Field<T>) {
        match self.slot(field) {
            None => {}
            Some(value) => (self.f)(name, value.map_or(&[][..], Stored::stored)),
        }
    }

    fn number<T: fmt::Display>(&mut self, name: &'static str, field: &Field<T>) {
        match self.slot(field) {
            None => {}
            Some(None) => (self.f)(name, b""),
            Some(Some(n)) => {
                use std::io::Write;
                self.text.clear();
                let _ = write!(self.text, "{n}");
                (self.f)(name, &self.text);
            }
        }
    }

    /// The `run` field, when the attempt's start is set (see
    /// [`RecordUpdate::started_us`]).
    fn run(&mut self, started: &Field<u64>, timings: &Field<(u64, u64)>, calls: &Field<u64>) {
        let Field::Set(started) = started else { return };
        let set = |f: &Field<u64>| match f {
            Field::Set(n) => Some(*n),
            _ => None,
        };
        let run = super::run::RunField {
            started_us: Some(*started),
            sandbox_us: match timings {
                Field::Set(t) => Some(*t),
                _ => None,
            },
            host_calls: set(calls),
        };
        run.stored(&mut self.text);
        (self.f)("run", &self.text);
    }

    fn error(&mut self, name: &'static str, field: &Field<ErrorRecord>) {
        match self.slot(field) {
            None => {}
            Some(None) => (self.f)(name, b""),
            Some(Some(e)) => {
                self.text.clear();
                // (An ErrorRecord always serializes; an empty value would
                // read as no error.)
                let _ = serde_json::to_writer(&mut self.text, e);
                (self.f)(name, &self.text);
            }
        }
    }
}

/// A job record as `spool job` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct JobRecord {
    /// Job id.
    pub id: String,
    /// `tenant/name` as enqueued.
    pub plugin: String,
    /// Current status.
    pub status: Option<Status>,
    /// Attempts started so far.
    pub attempts: u32,
    /// Attempts allowed.
    pub max_attempts: Option<u32>,
    /// Priority.
    pub priority: Option<String>,
    /// MIME type of the payload.
    pub content_type: Option<String>,
    /// Payload size in bytes.
    pub payload_bytes: usize,
    /// When it was enqueued (µs since the epoch).
    pub enqueued_us: Option<u64>,
    /// When it is due, for delayed jobs.
    pub run_at_us: Option<u64>,
    /// When a worker claimed the latest attempt.
    pub claimed_us: Option<u64>,
    /// When a job thread started the latest attempt (after any wait in the
    /// worker's local queue).
    pub started_us: Option<u64>,
    /// When the latest attempt finished.
    pub finished_us: Option<u64>,
    /// The worker of the latest attempt.
    pub worker: Option<String>,
    /// Digest of the plugin version the latest attempt ran on.
    pub version: Option<String>,
    /// Calls the guest made to `spool:job` host imports in the latest attempt.
    pub host_calls: Option<u64>,
    /// Sandbox timings of the latest attempt (µs).
    pub timings: Option<serde_json::Value>,
    /// The latest attempt's outbound HTTP requests: an array of
    /// `{method, origin, status | error, bytes_out, bytes_in, ms}`.
    pub http: Option<serde_json::Value>,
    /// The output, as text when it is UTF-8 (else see `output_base64`).
    pub output: Option<String>,
    /// The output in base64 when it is not UTF-8.
    pub output_base64: Option<String>,
    /// The last error (a JSON object with `kind` and details).
    pub error: Option<serde_json::Value>,
    /// Guest log lines of the latest attempt (capped).
    pub logs: Option<serde_json::Value>,
    /// The guest's latest progress report, `{"done", "total"}`: written
    /// while the job runs (a few times a second) and by its ack.
    pub progress: Option<serde_json::Value>,
    /// What the result cache did for the latest attempt: `hit-memory`,
    /// `hit-redis`, `miss`, `bypass` or `off`.
    pub cache: Option<String>,
    /// On a cache hit: the job whose run computed the output.
    pub cache_job: Option<String>,
    /// The result-cache key of the work (for `spool cache purge --key`).
    pub cache_key: Option<String>,
    /// Seconds until the record expires; none while the job is live.
    pub ttl_seconds: Option<i64>,
    /// The job's group, if it has one.
    pub group: Option<String>,
    /// Why a queued or delayed job has not started yet (filled in by
    /// [`super::Queue::why_waiting`] for `spool job`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waiting: Option<String>,
    #[serde(skip)]
    pub(crate) output_bytes: Option<Vec<u8>>,
}

/// The progress a record holds if it is the latest attempt's: a report
/// names its attempt, and an earlier attempt's is no progress of this one.
pub(crate) fn current_progress(
    progress: Option<serde_json::Value>,
    attempts: u32,
) -> Option<serde_json::Value> {
    progress.filter(|p| {
        p.get("attempt")
            .and_then(serde_json::Value::as_u64)
            .is_none_or(|a| a == u64::from(attempts))
    })
}

/// A record's `cache` field as shown: `off`, the plugin declaring no
/// cache, is left out of records (a field fewer keeps a record in a
/// smaller allocation), so a record whose handler `ran` (it has a
/// `version`, or `timings`) and names no cache status ran without one.
pub fn cache_status(stored: Option<String>, ran: bool) -> Option<String> {
    stored
        .filter(|c| !c.is_empty())
        .or_else(|| ran.then(|| "off".to_string()))
}

/// The latest attempt's start, host calls and sandbox timings (as JSON)
/// from a record's hash: one field, `run`, since 2026-12-04; three in
/// records written before ([`RunField::latest`] picks between them).
fn run_of(h: &mut HashMap<String, Vec<u8>>) -> (RunField, Option<serde_json::Value>) {
    let mut text = |k: &str| {
        h.remove(k)
            .map(|v| String::from_utf8_lossy(&v).into_owned())
    };
    let run = text("run");
    let num = |v: Option<String>| v.and_then(|s| s.parse().ok());
    let older = RunField {
        started_us: num(text("started_us")),
        sandbox_us: None,
        host_calls: num(text("host_calls")),
    };
    let older_timings = text("timings").and_then(|s| serde_json::from_str(&s).ok());
    match RunField::latest(run.as_deref(), older.started_us) {
        Some(run) => (run, run.timings()),
        None => (older, older_timings),
    }
}

impl JobRecord {
    /// Build from the hash's fields.
    pub(crate) fn from_hash(id: &str, mut h: HashMap<String, Vec<u8>>, ttl: i64) -> Self {
        let payload_bytes = h.get("payload").map_or(0, Vec::len);
        let output_bytes = h.remove("output");
        let (output, output_base64) = output_text(output_bytes.as_deref());
        let (run, timings) = run_of(&mut h);
        let mut text = |k: &str| {
            h.remove(k)
                .map(|v| String::from_utf8_lossy(&v).into_owned())
        };
        fn num<T: std::str::FromStr>(v: Option<String>) -> Option<T> {
            v.and_then(|s| s.parse().ok())
        }
        let json = |v: Option<String>| v.and_then(|s| serde_json::from_str(&s).ok());
        let attempts = num(text("attempt")).unwrap_or(0);
        let version = text("version");
        let cache = cache_status(text("cache"), version.is_some());
        JobRecord {
            id: id.to_string(),
            plugin: text("plugin").unwrap_or_default(),
            status: text("status").and_then(|s| Status::parse(&s)),
            attempts,
            // The envelope's documented defaults, for a field left out.
            max_attempts: num(text("max_attempts")).or(Some(super::DEFAULT_MAX_ATTEMPTS)),
            priority: text("priority").or_else(|| Some("normal".to_string())),
            content_type: text("content_type")
                .or_else(|| Some(super::DEFAULT_CONTENT_TYPE.to_string())),
            payload_bytes,
            enqueued_us: num(text("enqueued_us")),
            run_at_us: num(text("run_at_us")),
            // The token is the claim's time. Records claimed before 2026-12
            // also have `claimed_us`, which a later claim does not update:
            // the later of the two.
            claimed_us: num::<u64>(text("claimed_us")).max(num(text("token"))),
            started_us: run.started_us,
            finished_us: num(text("finished_us")),
            worker: text("worker"),
            version,
            host_calls: run.host_calls,
            timings,
            http: json(text("http")),
            output,
            output_base64,
            error: json(text("error")),
            logs: text("logs").and_then(|s| super::logs::shown(&s)),
            progress: current_progress(json(text("progress")), attempts),
            cache,
            cache_job: text("cache_job").filter(|j| !j.is_empty()),
            cache_key: text("cache_key").filter(|k| !k.is_empty()),
            ttl_seconds: (ttl >= 0).then_some(ttl),
            group: text("group").filter(|g| !g.is_empty()),
            waiting: None,
            output_bytes,
        }
    }

    /// The raw output bytes, if the job succeeded.
    pub fn output_bytes(&self) -> Option<&[u8]> {
        self.output_bytes.as_deref()
    }
}

/// The output as text when it is UTF-8, else in base64.
fn output_text(bytes: Option<&[u8]>) -> (Option<String>, Option<String>) {
    use base64::Engine as _;
    match bytes.map(std::str::from_utf8) {
        None => (None, None),
        Some(Ok(text)) => (Some(text.to_string()), None),
        Some(Err(_)) => {
            let encoded =
                base64::engine::general_purpose::STANDARD.encode(bytes.unwrap_or_default());
            (None, Some(encoded))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_earlier_attempts_progress_is_not_the_current_ones() {
        let p = |a: u32| Some(serde_json::json!({"done": 1, "total": 2, "attempt": a}));
        assert_eq!(current_progress(p(2), 2), p(2));
        assert_eq!(current_progress(p(1), 2), None);
        let old_form = Some(serde_json::json!({"done": 1, "total": 2}));
        assert_eq!(current_progress(old_form.clone(), 2), old_form);
    }

    #[test]
    fn an_update_writes_what_it_sets_clears_what_it_clears_and_nothing_else() {
        let mut update = RecordUpdate {
            started_us: Field::Set(7),
            output: Field::Set(b"ok".to_vec()),
            error: Field::Clear,
            ..RecordUpdate::default()
        };
        update.clear_cache();
        let fields = update.fields();
        let has = |name: &str, value: &[u8]| fields.iter().any(|(k, v)| *k == name && v == value);
        assert_eq!(fields.len(), 6);
        // The start alone: the attempt has no sandbox times or calls yet.
        assert!(has("run", b"7 - - -") && has("output", b"ok"));
        // What an ack call's size limit counts: "7 - - -" and "ok".
        assert_eq!(update.counts(), (6, 9));
        for cleared in ["error", "cache", "cache_key", "cache_job"] {
            assert!(has(cleared, b""), "{cleared}");
        }
        // On a record no attempt wrote to, there is nothing to clear.
        update.fresh = true;
        let names: Vec<&str> = update.fields().iter().map(|(k, _)| *k).collect();
        assert_eq!(names, ["run", "output"]);
    }

    #[test]
    fn an_attempts_start_times_and_calls_are_one_field_read_back_as_three() {
        let update = RecordUpdate {
            started_us: Field::Set(1_796_176_057_692_665),
            timings: Field::Set((34, 11)),
            host_calls: Field::Set(1),
            fresh: true,
            ..RecordUpdate::default()
        };
        let fields = update.fields();
        assert_eq!(
            fields,
            [("run", b"1796176057692665 34 11 1".to_vec())],
            "one field"
        );
        let hash: HashMap<String, Vec<u8>> = fields
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        let record = JobRecord::from_hash("j", hash, -1);
        assert_eq!(record.started_us, Some(1_796_176_057_692_665));
        assert_eq!(record.host_calls, Some(1));
        assert_eq!(
            record.timings,
            Some(serde_json::json!({"instantiate": 34, "run": 11}))
        );
        // A record written before the field: its three fields.
        let old = [
            ("started_us", "5"),
            ("host_calls", "2"),
            ("timings", r#"{"instantiate":3,"run":4}"#),
        ];
        let hash = old
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect();
        let record = JobRecord::from_hash("j", hash, -1);
        assert_eq!((record.started_us, record.host_calls), (Some(5), Some(2)));
        assert_eq!(record.timings.unwrap()["run"], 4);
        // An older attempt's fields beside a newer attempt's `run`: the
        // newer counts, and it ran no sandbox.
        let both = |run: &[u8]| {
            let mut hash: HashMap<String, Vec<u8>> = old
                .iter()
                .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
                .collect();
            hash.insert("run".into(), run.to_vec());
            JobRecord::from_hash("j", hash, -1)
        };
        let record = both(b"9 - - -");
        assert_eq!(record.started_us, Some(9));
        assert_eq!((record.host_calls, record.timings), (None, None));
        // And the other way round (an older worker ran the later attempt,
        // during a rolling upgrade): its three fields count.
        let record = both(b"4 1 1 8");
        assert_eq!((record.started_us, record.host_calls), (Some(5), Some(2)));
        assert_eq!(record.timings.unwrap()["run"], 4);
    }

    #[test]
    fn an_error_round_trips_through_the_record_with_its_details() {
        let mut details = serde_json::Map::new();
        details.insert("field".into(), "name".into());
        let error = ErrorRecord {
            details,
            ..ErrorRecord::new("invalid-input", "name: expected text", false).at_attempt(2)
        };
        let update = RecordUpdate {
            error: Field::Set(error.clone()),
            ..RecordUpdate::default()
        };
        let hash: HashMap<String, Vec<u8>> = update
            .fields()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        let record = JobRecord::from_hash("j", hash, -1);
        let read = record.error.unwrap();
        assert_eq!(read["kind"], "invalid-input");
        assert_eq!(read["field"], "name");
        assert_eq!(read["attempt"], 2);
        assert_eq!(read.get("exhausted"), None);
        assert_eq!(serde_json::from_value::<ErrorRecord>(read).unwrap(), error);
    }
}
