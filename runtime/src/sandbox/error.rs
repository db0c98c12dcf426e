//! Typed failures of a job run and of compiling a plugin, and the mapping
//! from wasmtime's traps onto them.

use super::cap::{MAX_ERROR_TEXT, truncate};
use super::limits::MemoryLimitHit;
use serde::Serialize;
use std::time::Duration;

/// Why a job did not produce output. Each variant says what failed and what
/// was expected; [`JobFailure::is_retryable`] says whether a retry can help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum JobFailure {
    /// The handler rejected its input.
    #[error("{field}: expected {expected}, got {got}")]
    InvalidInput {
        /// Field or part of the input that is wrong.
        field: String,
        /// What the handler expected.
        expected: String,
        /// What it got.
        got: String,
    },
    /// The handler reported a transient failure.
    #[error("{message}")]
    Retryable {
        /// The handler's message.
        message: String,
    },
    /// The handler reported a permanent failure.
    #[error("{message}")]
    Fatal {
        /// The handler's message.
        message: String,
    },
    /// The handler ran past its deadline and was stopped.
    #[error("the job ran longer than its {}ms deadline and was stopped", limit.as_millis())]
    Timeout {
        /// The deadline.
        #[serde(with = "super::report::micros", rename = "limit_us")]
        limit: Duration,
    },
    /// The handler tried to grow its memory past the cap.
    #[error("the job asked for {requested} bytes of memory; the limit is {limit} bytes")]
    MemoryLimit {
        /// Bytes the guest asked for.
        requested: u64,
        /// The cap.
        limit: u64,
    },
    /// The handler exhausted the wasm stack (unbounded recursion).
    #[error("the job overflowed its {limit}-byte wasm stack")]
    StackOverflow {
        /// The stack cap in bytes.
        limit: usize,
    },
    /// The handler panicked.
    #[error("the handler panicked: {message}")]
    Panic {
        /// The panic message the guest printed.
        message: String,
        /// Guest frames, innermost first.
        backtrace: Vec<String>,
    },
    /// The guest trapped for another reason (unreachable, out-of-bounds…).
    #[error("the guest trapped: {message}")]
    Trap {
        /// The trap.
        message: String,
        /// Guest frames, innermost first.
        backtrace: Vec<String>,
    },
    /// The handler's output is over the cap.
    #[error("the job returned {size} bytes; the output cap is {limit} bytes")]
    OutputTooLarge {
        /// Output size.
        size: usize,
        /// The cap.
        limit: usize,
    },
    /// The payload is over the cap; the guest was not started.
    #[error("the payload is {size} bytes; the input cap is {limit} bytes")]
    InputTooLarge {
        /// Payload size.
        size: usize,
        /// The cap.
        limit: usize,
    },
    /// The guest called `wasi:cli/exit` (`std::process::exit`) instead of
    /// returning: it ends the job, never the worker.
    #[error("the handler called exit({code}) instead of returning")]
    Exit {
        /// The exit code it gave.
        code: i32,
    },
    /// The guest handed the host more data in one call (its result, its
    /// error, or a host call's arguments) than wasmtime copies for one call
    /// (128 MiB): stopped before the host allocated it. Never retried.
    #[error(
        "the job passed more than 128 MiB to the host in one call (its result, error or a host call's arguments); the limit stops it before the host allocates it"
    )]
    TooMuchData,
    /// The host could not run the job (for example, every sandbox slot is
    /// busy). Not the handler's fault; a retry can help.
    #[error("the host could not run the job: {message}")]
    Host {
        /// What went wrong.
        message: String,
    },
}

impl JobFailure {
    /// Short stable name of the variant: `invalid-input`, `timeout`, …
    pub fn kind(&self) -> &'static str {
        match self {
            JobFailure::InvalidInput { .. } => "invalid-input",
            JobFailure::Retryable { .. } => "retryable",
            JobFailure::Fatal { .. } => "fatal",
            JobFailure::Timeout { .. } => "timeout",
            JobFailure::MemoryLimit { .. } => "memory-limit",
            JobFailure::StackOverflow { .. } => "stack-overflow",
            JobFailure::Panic { .. } => "panic",
            JobFailure::Trap { .. } => "trap",
            JobFailure::OutputTooLarge { .. } => "output-too-large",
            JobFailure::InputTooLarge { .. } => "input-too-large",
            JobFailure::Exit { .. } => "exit",
            JobFailure::TooMuchData => "too-much-data",
            JobFailure::Host { .. } => "host",
        }
    }

    /// Whether running the same job again can help: the handler said so, it
    /// was stopped by its deadline (load may have slowed it), or the host
    /// itself failed. Everything else fails the same way every time.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            JobFailure::Retryable { .. } | JobFailure::Timeout { .. } | JobFailure::Host { .. }
        )
    }

    /// Map a guest's own `job-error` onto a failure.
    pub(crate) fn from_guest(error: super::bindings::JobError) -> Self {
        use super::bindings::JobError as E;
        // A guest's texts become job records in the shared Redis: capped.
        let cap = |text: String| truncate(text, MAX_ERROR_TEXT);
        match error {
            E::InvalidInput(i) => JobFailure::InvalidInput {
                field: cap(i.field),
                expected: cap(i.expected),
                got: cap(i.got),
            },
            E::Retryable(message) => JobFailure::Retryable {
                message: cap(message),
            },
            E::Fatal(message) => JobFailure::Fatal {
                message: cap(message),
            },
        }
    }

    /// Map an error out of wasmtime (a trap, a limiter refusal) onto a
    /// failure. `stderr` is the guest's captured stderr, where Rust panics
    /// print their message.
    pub(crate) fn from_trap(
        error: &wasmtime::Error,
        limit: Duration,
        stack: usize,
        stderr: &str,
    ) -> Self {
        if let Some(exit) = error.downcast_ref::<wasmtime_wasi::I32Exit>() {
            return JobFailure::Exit { code: exit.0 };
        }
        // wasmtime's per-call cap on data copied from guest to host; its
        // error type is private, its message is not.
        if format!("{error:#}").contains("fuel allocated for hostcalls has been exhausted") {
            return JobFailure::TooMuchData;
        }
        if let Some(hit) = error.downcast_ref::<MemoryLimitHit>() {
            return JobFailure::MemoryLimit {
                requested: hit.requested as u64,
                limit: hit.limit as u64,
            };
        }
        let backtrace = error
            .downcast_ref::<wasmtime::WasmBacktrace>()
            .map(|trace| {
                let names = trace.frames().iter().map(|frame| {
                    let name = frame.func_name().unwrap_or("<unnamed>");
                    format!("{:#}", rustc_demangle::demangle(name))
                });
                render_backtrace(names)
            })
            .unwrap_or_default();
        match error.downcast_ref::<wasmtime::Trap>() {
            Some(wasmtime::Trap::Interrupt) => JobFailure::Timeout { limit },
            Some(wasmtime::Trap::StackOverflow) => JobFailure::StackOverflow { limit: stack },
            Some(trap) => match panic_message(stderr) {
                Some(message) => JobFailure::Panic {
                    message: truncate(message, MAX_ERROR_TEXT),
                    backtrace,
                },
                None => JobFailure::Trap {
                    message: trap.to_string(),
                    backtrace,
                },
            },
            None => JobFailure::Host {
                message: format!("{error:#}"),
            },
        }
    }
}

/// Most frames kept in a failure's backtrace.
const MAX_FRAMES: usize = 24;

/// Guest frames, innermost first, made readable: the panic and abort
/// machinery at the top is skipped (it is the same for every panic), runs of
/// one frame (recursion) collapse into `name (×N)`, and the list is capped.
fn render_backtrace(names: impl Iterator<Item = String>) -> Vec<String> {
    const MACHINERY: &[&str] = &["abort", "std::", "core::", "__rustc", "__rust_", "rust_"];
    let mut out: Vec<(String, usize)> = Vec::new();
    let mut names = names
        .skip_while(|n| MACHINERY.iter().any(|m| n.starts_with(m)))
        .peekable();
    while let Some(name) = names.next() {
        let mut count = 1;
        while names.peek() == Some(&name) {
            names.next();
            count += 1;
        }
        out.push((name, count));
    }
    let hidden = out.len().saturating_sub(MAX_FRAMES);
    let mut lines: Vec<String> = out
        .into_iter()
        .take(MAX_FRAMES)
        .map(|(name, count)| {
            if count > 1 {
                format!("{name} (×{count})")
            } else {
                name
            }
        })
        .collect();
    if hidden > 0 {
        lines.push(format!("… {hidden} more frames"));
    }
    lines
}

/// The message of a Rust panic as printed by std's default hook:
/// `thread 'main' panicked at src/lib.rs:10:5:\nthe message`.
fn panic_message(stderr: &str) -> Option<String> {
    let start = stderr.find("panicked at ")?;
    let rest = &stderr[start + "panicked at ".len()..];
    let (location, message) = rest.split_once('\n').unwrap_or((rest, ""));
    let location = location.trim_end_matches(':');
    let message: Vec<&str> = message
        .lines()
        .take_while(|line| !line.starts_with("note: "))
        .collect();
    Some(format!("{} (at {location})", message.join("\n")))
}

/// Why a component could not be turned into a runnable plugin.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    /// wasmtime rejected the bytes: truncated, malformed or unsupported.
    #[error("not a valid WebAssembly component: {reason}")]
    Invalid {
        /// wasmtime's reason.
        reason: String,
    },
    /// The component's imports do not match what this host provides.
    #[error("its imports do not match what this host provides: {reason}")]
    Imports {
        /// wasmtime's reason, naming the import.
        reason: String,
    },
    /// The component does not export `handle` with the `spool:job` signature.
    #[error(
        "it does not implement the spool:job/handler world (expected an export `handle: func(job) -> result<list<u8>, job-error>`): {reason}"
    )]
    WrongWorld {
        /// wasmtime's reason.
        reason: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panic_message_is_read_from_std_hook_output() {
        let stderr = "\nthread '<unnamed>' panicked at src/lib.rs:12:5:\nboom: 42\nnote: run with `RUST_BACKTRACE=1`\n";
        assert_eq!(
            panic_message(stderr).as_deref(),
            Some("boom: 42 (at src/lib.rs:12:5)")
        );
        assert_eq!(panic_message("just some output"), None);
    }

    #[test]
    fn backtraces_skip_panic_machinery_and_collapse_recursion() {
        let frames = [
            "abort",
            "std::process::abort",
            "core::panicking::panic_fmt",
            "app::f",
            "app::f",
            "app::f",
            "handle",
        ];
        assert_eq!(
            render_backtrace(frames.iter().map(ToString::to_string)),
            vec!["app::f (×3)".to_string(), "handle".to_string()]
        );
    }

    #[test]
    fn only_transient_failures_are_retryable() {
        assert!(
            JobFailure::Timeout {
                limit: Duration::from_secs(1)
            }
            .is_retryable()
        );
        assert!(
            JobFailure::Retryable {
                message: "busy".into()
            }
            .is_retryable()
        );
        assert!(
            !JobFailure::Fatal {
                message: "no".into()
            }
            .is_retryable()
        );
        assert!(!JobFailure::StackOverflow { limit: 1 }.is_retryable());
        assert!(
            JobFailure::Host {
                message: "every sandbox slot is busy".into()
            }
            .is_retryable()
        );
        assert!(
            !JobFailure::Panic {
                message: "boom".into(),
                backtrace: vec![]
            }
            .is_retryable()
        );
        assert!(
            !JobFailure::MemoryLimit {
                requested: 2,
                limit: 1
            }
            .is_retryable()
        );
    }
}
