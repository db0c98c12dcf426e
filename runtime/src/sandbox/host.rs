//! The store's data for one job and the host side of the `spool:job`
//! imports: logging, progress and config. WASI is linked too, but with an
//! empty context: no preopened directories, no environment, no network, and
//! stdout/stderr captured into the job's log.

use super::bindings::spool::job::{config, kv, log, progress, types};
use super::cap::{MAX_HOST_LOG_PREVIEW, MAX_LOG_LINE, preview, truncate};
use super::capture::Capture;
use super::deadline::JobClock;
use super::http::{AllowList, JobHttp, Outbound};
use super::kv::{KeyValue, KvError, check};
use super::limits::{JobLimiter, Limits};
use super::report::{JobLog, LogLevel, Progress};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::component::ResourceTable;
use wasmtime_wasi::clocks::WasiClocksCtxView;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

/// Most resources (streams, pollables, requests, ...) a job holds at once;
/// a handler needs a few dozen.
const MAX_RESOURCES: usize = 4096;

/// A job's resource table. Each resource (a stream, a request, a body the
/// guest writes and never sends: up to 16 KiB each) is host memory
/// outside the guest's cap: a job holds a bounded number at once.
fn bounded_table() -> ResourceTable {
    let mut table = ResourceTable::new();
    table.set_max_capacity(MAX_RESOURCES);
    table
}

/// A plugin's configuration values, shared by all of its jobs.
pub type PluginConfig = Arc<BTreeMap<String, String>>;

/// Where a running job's progress reports go as they happen (the worker
/// publishes them to the job's record, for live progress views). Called
/// on the job's thread inside the guest's call: it must not block.
pub trait ProgressSink: Send + Sync {
    /// Attempt `attempt` of job `job` of `tenant` reported `progress`.
    fn report(&self, tenant: &str, job: &str, attempt: u32, progress: Progress);
}

/// What the host offers one job besides WASI: the plugin's config, the
/// tenant's key-value store and where live progress goes.
#[derive(Clone, Default)]
pub struct JobServices {
    /// The plugin's configuration values.
    pub config: PluginConfig,
    /// The key-value store; without one, `kv` calls answer `unavailable`.
    pub kv: Option<Arc<dyn KeyValue>>,
    /// Live progress; without one, progress is only in the run's result.
    pub progress: Option<Arc<dyn ProgressSink>>,
    /// The hosts the plugin may call (its manifest's `[http] allow`);
    /// none: every request is refused.
    pub http_allow: Option<Arc<AllowList>>,
    /// The most the tenant's plugins may call, set by the operator
    /// (`spool tenants set --http-allow`); none: no ceiling.
    pub http_ceiling: Option<Arc<AllowList>>,
    /// The worker's outbound HTTP settings; none: no request leaves.
    pub outbound: Option<Arc<Outbound>>,
}

impl std::fmt::Debug for JobServices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobServices")
            .field("config", &self.config)
            .field("kv", &self.kv.is_some())
            .field("progress", &self.progress.is_some())
            .field("http_allow", &self.http_allow)
            .finish()
    }
}

/// Everything one job's `Store` holds. Created per job, dropped with it.
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    http_ctx: WasiHttpCtx,
    /// The job's outbound requests: the allow list, bounds and record.
    pub(crate) http: JobHttp,
    pub(crate) limiter: JobLimiter,
    pub(crate) log: JobLog,
    pub(crate) progress: Option<Progress>,
    /// Live progress, and the job it is of.
    progress_sink: Option<Arc<dyn ProgressSink>>,
    job: String,
    attempt: u32,
    pub(crate) stdout: Capture,
    pub(crate) stderr: Capture,
    config: PluginConfig,
    kv: Option<Arc<dyn KeyValue>>,
    /// The running job's tenant: the only tenant its `kv` calls reach.
    tenant: String,
    /// Calls to `spool:job` imports, for the job record.
    pub(crate) host_calls: u64,
    /// This job's key-value calls and bytes so far, and its budget.
    kv_spent: Budget,
    kv_budget: Budget,
    /// When the job's time is up: no wait in a host call outlasts it
    /// (see [`super::deadline`]).
    pub(crate) deadline: Instant,
    /// A wait was cut short to end at the deadline.
    clamped: bool,
}

impl std::fmt::Debug for HostState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostState").finish_non_exhaustive()
    }
}

impl HostState {
    pub(crate) fn new(
        limits: &Limits,
        services: &JobServices,
        tenant: &str,
        (job, attempt): (&str, u32),
    ) -> Self {
        // Each stream may fill at most half the log's byte budget.
        let stream_cap = limits.max_log_bytes / 2;
        let stdout = Capture::new(stream_cap);
        let stderr = Capture::new(stream_cap);
        let wasi = WasiCtx::builder()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        let deadline = Instant::now()
            .checked_add(limits.timeout)
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(365 * 24 * 3600));
        HostState {
            wasi,
            table: bounded_table(),
            http_ctx: WasiHttpCtx::new(),
            http: JobHttp::new(
                super::http::Grant {
                    allow: services.http_allow.clone(),
                    ceiling: services.http_ceiling.clone(),
                    tenant: tenant.to_string(),
                },
                services.outbound.clone(),
                deadline,
            ),
            limiter: JobLimiter::new(limits.memory),
            log: JobLog::new(limits.max_log_lines, limits.max_log_bytes),
            progress: None,
            progress_sink: services.progress.clone(),
            job: job.to_string(),
            attempt,
            stdout,
            stderr,
            config: services.config.clone(),
            kv: services.kv.clone(),
            tenant: tenant.to_string(),
            host_calls: 0,
            kv_spent: Budget::default(),
            kv_budget: Budget {
                calls: limits.max_kv_calls,
                bytes: limits.max_kv_bytes,
            },
            // A deadline past what the clock holds is no deadline here; the
            // epoch deadline (in ticks) still ends the run.
            deadline,
            clamped: false,
        }
    }

    /// The job's monotonic clock (see [`super::deadline`]).
    pub(crate) fn clock(&mut self) -> JobClock<'_> {
        JobClock {
            wasi: WasiClocksCtxView {
                ctx: self.wasi.clocks(),
                table: &mut self.table,
            },
            deadline: self.deadline,
            clamped: &mut self.clamped,
        }
    }

    /// The job's waits in `wasi:io` (see [`super::waits`]).
    pub(crate) fn waits(&mut self) -> super::waits::Waits<'_> {
        super::waits::Waits {
            table: &mut self.table,
            deadline: self.deadline,
            clamped: &mut self.clamped,
        }
    }

    /// Whether the job ran past its deadline after one of its waits was cut
    /// short to end there: its result cannot stand, it timed out.
    pub(crate) fn overran(&self) -> bool {
        (self.clamped && Instant::now() >= self.deadline) || self.http.overran()
    }

    /// Move captured stdout/stderr into the log, after the call, and the
    /// host's notes on refused requests.
    pub(crate) fn finish_log(&mut self) -> JobLog {
        let (_, notes) = self.http.report();
        for note in notes {
            self.log.push(LogLevel::Warn, note);
        }
        let (out, out_dropped) = self.stdout.take();
        self.log.push_stream(LogLevel::Stdout, &out, out_dropped);
        let (err, err_dropped) = self.stderr.take();
        self.log.push_stream(LogLevel::Stderr, &err, err_dropped);
        std::mem::take(&mut self.log)
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for HostState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http_ctx,
            table: &mut self.table,
            hooks: &mut self.http,
        }
    }
}

impl types::Host for HostState {}

impl log::Host for HostState {
    fn log(&mut self, level: log::Level, message: String) {
        self.host_calls += 1;
        let level = match level {
            log::Level::Trace => LogLevel::Trace,
            log::Level::Debug => LogLevel::Debug,
            log::Level::Info => LogLevel::Info,
            log::Level::Warn => LogLevel::Warn,
            log::Level::Error => LogLevel::Error,
        };
        let bytes = message.len();
        let message = truncate(message, MAX_LOG_LINE);
        // The job's record keeps its lines; the host's own log gets only a
        // short preview, at debug level whatever the guest's level (tagged
        // by the caller's job span, enabled with these lines: tenant,
        // plugin, version, job id), so no tenant can flood the operator's
        // log.
        tracing::debug!(
            target: "spool::guest",
            level = ?level,
            bytes,
            "{}",
            preview(&message, MAX_HOST_LOG_PREVIEW).escape_debug()
        );
        self.log.push(level, message);
    }
}

impl progress::Host for HostState {
    fn report(&mut self, done: u64, total: u64) {
        self.host_calls += 1;
        let progress = Progress { done, total };
        self.progress = Some(progress);
        if let Some(sink) = &self.progress_sink {
            sink.report(&self.tenant, &self.job, self.attempt, progress);
        }
    }
}

impl config::Host for HostState {
    fn get(&mut self, key: String) -> Option<String> {
        self.host_calls += 1;
        self.config.get(&key).cloned()
    }
}

/// Key-value calls and bytes: spent, or allowed per job.
#[derive(Debug, Default, Clone, Copy)]
struct Budget {
    calls: u64,
    bytes: u64,
}

impl HostState {
    /// The store and tenant for one more key-value call moving `bytes`
    /// (more may be charged after a read), within the job's deadline and
    /// budget.
    fn kv(&mut self, bytes: usize) -> Result<(&dyn KeyValue, &str), kv::KvError> {
        self.host_calls += 1;
        self.kv_spent.calls += 1;
        self.kv_spent.bytes = self.kv_spent.bytes.saturating_add(bytes as u64);
        let (spent, budget) = (self.kv_spent, self.kv_budget);
        if spent.calls > budget.calls {
            return Err(kv::KvError::Invalid(format!(
                "budget: this is the job's key-value call {}; the limit is {} calls per job",
                spent.calls, budget.calls
            )));
        }
        if spent.bytes > budget.bytes {
            return Err(kv::KvError::Invalid(format!(
                "budget: this call would bring the job's key-value traffic to {} bytes; the limit is {} bytes per job",
                spent.bytes, budget.bytes
            )));
        }
        if Instant::now() >= self.deadline {
            // Its time is up: the guest stops at its next instruction.
            return Err(kv::KvError::Unavailable(
                "the job's deadline has passed".to_string(),
            ));
        }
        match &self.kv {
            Some(store) => Ok((store.as_ref(), self.tenant.as_str())),
            None => Err(kv::KvError::Unavailable(
                "this host has no key-value store".to_string(),
            )),
        }
    }
}

fn to_guest(error: KvError) -> kv::KvError {
    match error {
        KvError::Invalid(m) => kv::KvError::Invalid(m),
        KvError::Unavailable(m) => kv::KvError::Unavailable(m),
    }
}

impl kv::Host for HostState {
    fn get(&mut self, key: String) -> Result<Option<Vec<u8>>, kv::KvError> {
        let (store, tenant) = self.kv(key.len())?;
        check(&key, None).map_err(to_guest)?;
        let value = store.get(tenant, &key).map_err(to_guest)?;
        let read = value.as_ref().map_or(0, Vec::len) as u64;
        self.kv_spent.bytes = self.kv_spent.bytes.saturating_add(read);
        Ok(value)
    }

    fn set(
        &mut self,
        key: String,
        value: Vec<u8>,
        ttl_seconds: Option<u32>,
    ) -> Result<(), kv::KvError> {
        let (store, tenant) = self.kv(key.len() + value.len())?;
        check(&key, Some(&value)).map_err(to_guest)?;
        let ttl = ttl_seconds.map(|s| Duration::from_secs(u64::from(s.max(1))));
        store.set(tenant, &key, &value, ttl).map_err(to_guest)
    }

    fn delete(&mut self, key: String) -> Result<bool, kv::KvError> {
        let (store, tenant) = self.kv(key.len())?;
        check(&key, None).map_err(to_guest)?;
        store.delete(tenant, &key).map_err(to_guest)
    }
}
