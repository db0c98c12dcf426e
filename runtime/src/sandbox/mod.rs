//! The sandbox: the only module that touches wasmtime.
//!
//! One [`Sandbox`] per process holds the engine (pooling allocator, epoch
//! interruption) and the linker with every host import. A plugin is compiled
//! once into a [`Compiled`] (an `InstancePre` with its exports resolved);
//! each job then gets a fresh `Store`, an epoch deadline, a memory cap and
//! capped log capture, and the store is dropped after the call — a trapped
//! store is never reused.
//!
//! Guests get WASI with nothing behind it: no preopened directories, no
//! environment, no sockets, no inherited stdio. Outbound HTTP goes through
//! [`http`] only: the plugin's allow list, the SSRF check and per-job
//! bounds.

mod bindings;
pub mod cap;
mod capture;
mod deadline;
mod engine;
mod error;
mod host;
pub mod http;
pub mod kv;
mod limits;
mod report;
mod waits;

pub use engine::SandboxConfig;
pub use error::{CompileError, JobFailure};
pub use host::{JobServices, PluginConfig, ProgressSink};
pub use kv::{KeyValue, KvError};
pub use limits::Limits;
pub use report::{JobLog, LogLevel, LogLine, Progress, Timings};

use bindings::{HandlerPre, Job};
use host::HostState;
use std::time::{Duration, Instant};
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Engine, Store};

/// The process-wide sandbox: engine, linker and epoch ticker.
#[derive(Clone)]
pub struct Sandbox {
    engine: Engine,
    linker: Linker<HostState>,
    config: SandboxConfig,
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox")
            .field("config", &self.config)
            .finish()
    }
}

/// The sandbox could not be set up (an engine setting this machine rejects).
#[derive(Debug, thiserror::Error)]
#[error("could not set up the wasm sandbox: {reason}")]
pub struct SandboxError {
    reason: String,
}

impl Sandbox {
    /// Build the engine and linker and start the epoch ticker.
    pub fn new(config: SandboxConfig) -> Result<Self, SandboxError> {
        let fail = |e: wasmtime::Error| SandboxError {
            reason: format!("{e:#}"),
        };
        let engine = engine::build(&config).map_err(fail)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(fail)?;
        // Linked for every plugin; the plugin loader refuses the import
        // where the manifest grants no host (plugins::policy).
        wasmtime_wasi_http::p2::add_only_http_to_linker_sync(&mut linker).map_err(fail)?;
        deadline::add_to_linker(&mut linker, HostState::clock).map_err(fail)?;
        waits::add_to_linker(&mut linker, HostState::waits).map_err(fail)?;
        bindings::Handler::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s)
            .map_err(fail)?;
        engine::start_ticker(&engine, config.tick);
        Ok(Sandbox {
            engine,
            linker,
            config,
        })
    }

    /// The process-wide settings.
    pub fn config(&self) -> &SandboxConfig {
        &self.config
    }

    /// Compile a component and resolve its imports and exports. Slow
    /// (milliseconds): do it once per plugin version, off the job path.
    pub fn compile(&self, bytes: &[u8]) -> Result<Compiled, CompileError> {
        let component = self.component(bytes)?;
        self.prepare(&component)
    }

    /// Compile, and also return the compiled code in wasmtime's serialized
    /// form, for the on-disk artifact cache.
    pub fn compile_to_artifact(&self, bytes: &[u8]) -> Result<(Compiled, Vec<u8>), CompileError> {
        let component = self.component(bytes)?;
        let artifact = component.serialize().map_err(|e| CompileError::Invalid {
            reason: format!("could not serialize the compiled component: {e:#}"),
        })?;
        Ok((self.prepare(&component)?, artifact))
    }

    /// Load an artifact made by [`Sandbox::compile_to_artifact`] with an
    /// engine of the same [`Sandbox::artifact_key`]: no compilation.
    ///
    /// The bytes are native code that is run as it is, so they must come
    /// from a place only this host can write: the artifact cache checks its
    /// directory for that before it hands bytes here. wasmtime still checks
    /// the header, version and engine settings, so a truncated or foreign
    /// file is an error, not a crash.
    pub fn compile_from_artifact(&self, artifact: &[u8]) -> Result<Compiled, CompileError> {
        // SAFETY: `Component::deserialize` requires bytes produced by
        // `serialize` of a compatible engine and not tampered with. They
        // come from the artifact cache: a directory only this user can write
        // (it and every directory above it are checked when it is opened),
        // files that must be ours and written by no one else, and a header
        // whose blake3 hash of these very bytes and plugin digest must match
        // (`plugins::artifacts`).
        #[allow(unsafe_code)]
        let component = unsafe { Component::deserialize(&self.engine, artifact) }.map_err(|e| {
            CompileError::Invalid {
                reason: format!("unusable compiled artifact: {e:#}"),
            }
        })?;
        self.prepare(&component)
    }

    /// Identifies the engine settings artifacts depend on (wasmtime version,
    /// target, configuration): artifacts are only shared between sandboxes
    /// with the same key.
    pub fn artifact_key(&self) -> String {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        self.engine
            .precompile_compatibility_hash()
            .hash(&mut hasher);
        format!("{:016x}", hasher.finish())
    }

    fn component(&self, bytes: &[u8]) -> Result<Component, CompileError> {
        Component::new(&self.engine, bytes).map_err(|e| CompileError::Invalid {
            reason: format!("{e:#}"),
        })
    }

    fn prepare(&self, component: &Component) -> Result<Compiled, CompileError> {
        let pre = self
            .linker
            .instantiate_pre(component)
            .map_err(|e| CompileError::Imports {
                reason: format!("{e:#}"),
            })?;
        let pre = HandlerPre::new(pre).map_err(|e| CompileError::WrongWorld {
            reason: format!("{e:#}"),
        })?;
        Ok(Compiled {
            pre,
            tick: self.config.tick,
            stack: self.config.max_wasm_stack,
            max_memory: self.config.max_memory,
        })
    }
}

/// One job as the sandbox runs it.
#[derive(Debug, Clone, Default)]
pub struct JobInput {
    /// Job id.
    pub id: String,
    /// Tenant owning the plugin.
    pub tenant: String,
    /// Plugin name.
    pub plugin: String,
    /// 1-based attempt number.
    pub attempt: u32,
    /// MIME type of the payload.
    pub content_type: String,
    /// The input bytes.
    pub payload: Vec<u8>,
}

/// The result of one run: output or failure, plus log, progress and timings.
#[derive(Debug)]
pub struct JobRun {
    /// The output bytes, or why there are none.
    pub result: Result<Vec<u8>, JobFailure>,
    /// Guest log lines and captured stdout/stderr, capped.
    pub log: JobLog,
    /// The last progress the guest reported.
    pub progress: Option<Progress>,
    /// Where the time went.
    pub timings: Timings,
    /// Calls the guest made to `spool:job` imports (log, progress, config,
    /// kv) and outbound HTTP requests.
    pub host_calls: u64,
    /// The job's outbound HTTP requests, in order.
    pub http: Vec<http::HttpCall>,
}

impl JobRun {
    /// A job refused before any sandbox was made for it.
    fn refused(failure: JobFailure) -> JobRun {
        JobRun {
            result: Err(failure),
            log: JobLog::default(),
            progress: None,
            timings: Timings::default(),
            host_calls: 0,
            http: Vec::new(),
        }
    }
}

/// A compiled plugin version, ready to instantiate. Cheap to clone.
#[derive(Clone)]
pub struct Compiled {
    pre: HandlerPre<HostState>,
    tick: Duration,
    stack: usize,
    max_memory: u64,
}

impl std::fmt::Debug for Compiled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compiled").finish_non_exhaustive()
    }
}

/// Job stores created in this process (see [`instances_created`]).
static INSTANCES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How many jobs this process has run in a sandbox (a store and an
/// instance each): `spool bench` shows that cache hits create none.
pub fn instances_created() -> u64 {
    INSTANCES.load(std::sync::atomic::Ordering::Relaxed)
}

impl Compiled {
    /// Run one job in a fresh store under `limits`, with `config` and no
    /// key-value store.
    pub fn run(&self, job: JobInput, limits: &Limits, config: PluginConfig) -> JobRun {
        let services = JobServices {
            config,
            ..JobServices::default()
        };
        self.run_with(job, limits, &services)
    }

    /// Run one job in a fresh store under `limits`, with `services`.
    pub fn run_with(&self, job: JobInput, limits: &Limits, services: &JobServices) -> JobRun {
        if job.payload.len() > limits.max_input {
            return JobRun::refused(JobFailure::InputTooLarge {
                size: job.payload.len(),
                limit: limits.max_input,
            });
        }
        let mut timings = Timings::default();
        let mut limits = limits.clone();
        limits.memory = limits.memory.min(self.max_memory);

        let started = Instant::now();
        INSTANCES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // Until the store is dropped, below: the epoch ticks.
        let _ticking = engine::Ticking::start();
        let mut store = Store::new(
            self.pre.engine(),
            HostState::new(&limits, services, &job.tenant, (&job.id, job.attempt)),
        );
        store.limiter(|state| &mut state.limiter);
        store.set_epoch_deadline(self.deadline_ticks(limits.timeout));
        let instance = self.pre.instantiate(&mut store);
        timings.instantiate = started.elapsed();

        let started = Instant::now();
        let outcome = instance.and_then(|handler| {
            let job = Job {
                id: job.id,
                tenant: job.tenant,
                plugin: job.plugin,
                attempt: job.attempt,
                content_type: job.content_type,
                payload: job.payload,
            };
            handler.call_handle(&mut store, &job)
        });
        timings.run = started.elapsed();

        let state = store.data_mut();
        let log = state.finish_log();
        let progress = state.progress;
        let host_calls = state.host_calls + u64::from(state.http.sent());
        let (http, _) = state.http.report();
        let result = self.judge(outcome, state.overran(), &log, &limits);
        // The store (and its pool slot) is dropped here, trapped or not.
        drop(store);
        JobRun {
            result,
            log,
            progress,
            timings,
            host_calls,
            http,
        }
    }

    /// What the call's outcome means for the job: its output (within the
    /// output cap), the guest's error, or the trap explained; a timeout,
    /// whatever it returned, if it `overran` its deadline in a clamped wait.
    fn judge(
        &self,
        outcome: wasmtime::Result<Result<Vec<u8>, bindings::JobError>>,
        overran: bool,
        log: &JobLog,
        limits: &Limits,
    ) -> Result<Vec<u8>, JobFailure> {
        if overran {
            return Err(JobFailure::Timeout {
                limit: limits.timeout,
            });
        }
        match outcome {
            Ok(Ok(output)) if output.len() > limits.max_output => Err(JobFailure::OutputTooLarge {
                size: output.len(),
                limit: limits.max_output,
            }),
            Ok(Ok(output)) => Ok(output),
            Ok(Err(error)) => Err(JobFailure::from_guest(error)),
            Err(error) => {
                let stderr: Vec<&str> = log
                    .lines
                    .iter()
                    .filter(|line| line.level == LogLevel::Stderr)
                    .map(|line| line.message.as_str())
                    .collect();
                Err(JobFailure::from_trap(
                    &error,
                    limits.timeout,
                    self.stack,
                    &stderr.join("\n"),
                ))
            }
        }
    }

    fn deadline_ticks(&self, timeout: Duration) -> u64 {
        let ticks = timeout.as_nanos().div_ceil(self.tick.as_nanos().max(1));
        u64::try_from(ticks).unwrap_or(u64::MAX).max(1)
    }
}
