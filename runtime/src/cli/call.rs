//! `spool call PLUGIN --input …`: load one plugin file and run one job on it,
//! in this process, under the same sandbox and limits a worker uses.

use super::exit;
use super::shown::shown;
use crate::config::{parse_duration, parse_key_value, parse_size};
use crate::kv::MemoryKv;
use crate::plugins::{self, Capabilities, Plugin};
use crate::sandbox::{JobFailure, JobInput, JobRun, JobServices, Limits, Sandbox, SandboxConfig};
use base64::Engine as _;
use serde_json::{Value, json};
use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, clap::Args)]
pub(crate) struct CallArgs {
    /// The plugin: a WebAssembly component built with the spool SDK.
    plugin: PathBuf,

    /// The job's input: inline JSON, or @FILE to read the payload from a
    /// file (@- reads standard input).
    #[arg(long, short)]
    input: String,

    /// MIME type of the input [default: application/json for inline input,
    /// guessed from the extension for @FILE]
    #[arg(long)]
    content_type: Option<String>,

    /// Deadline for the job; it is stopped when it runs longer.
    #[arg(long, default_value = "30s", env = "SPOOL_TIMEOUT", value_parser = parse_duration)]
    timeout: Duration,

    /// Most linear memory the job may use.
    #[arg(long, default_value = "64MiB", env = "SPOOL_MEMORY", value_parser = parse_size)]
    memory: u64,

    /// A plugin config value the handler reads with `config::get`; repeat
    /// for more.
    #[arg(long = "config", short = 'c', value_name = "KEY=VALUE", value_parser = parse_key_value)]
    config: Vec<(String, String)>,

    /// Let the plugin import wasi:sockets. No address is reachable even
    /// then: every connection is refused.
    #[arg(long)]
    allow_network: bool,

    /// Let the plugin call this host over HTTP (as a manifest's
    /// `[http] allow`): SCHEME://HOST[:PORT], `*.` for subdomains; repeat
    /// for more.
    #[arg(long = "http-allow", value_name = "RULE")]
    http_allow: Vec<String>,

    #[command(flatten)]
    http: super::http_args::HttpArgs,

    /// `tenant/name` the handler is told it runs as [default: default/<file stem>]
    #[arg(long = "as", value_name = "TENANT/NAME")]
    name: Option<String>,

    /// Write the output to FILE instead of standard output.
    #[arg(long, short, value_name = "FILE")]
    output: Option<PathBuf>,

    /// Print the guest's log lines to standard error.
    #[arg(long)]
    logs: bool,

    /// Print one JSON object: output, error, guest logs, timings.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(args: CallArgs) -> u8 {
    let (payload, guessed_type) = match read_input(&args.input) {
        Ok(input) => input,
        Err(message) => return usage_error(&args, &message),
    };
    let content_type = args.content_type.clone().unwrap_or(guessed_type);
    let sandbox = match Sandbox::new(SandboxConfig {
        max_memory: args.memory,
        pool_size: 4,
        ..SandboxConfig::default()
    }) {
        Ok(sandbox) => sandbox,
        Err(error) => return usage_error(&args, &error.to_string()),
    };
    let http_allow = match crate::sandbox::http::AllowList::parse(&args.http_allow) {
        Ok(list) => list,
        Err(error) => return usage_error(&args, &format!("--http-allow: {error}")),
    };
    let caps = Capabilities {
        network: args.allow_network,
        http: http_allow.clone(),
    };
    let plugin = match plugins::load(&sandbox, &args.plugin, &caps) {
        Ok(plugin) => plugin,
        Err(error) => return usage_error(&args, &error.to_string()),
    };
    let (tenant, name) = job_name(&args);
    let job = JobInput {
        id: format!("call-{}", std::process::id()),
        tenant,
        plugin: name,
        attempt: 1,
        content_type,
        payload,
    };
    let limits = Limits {
        timeout: args.timeout,
        memory: args.memory,
        ..Limits::default()
    };
    let services = services(&args, http_allow);
    let run = plugin.run_with(job, &limits, &services);
    if args.json {
        print_json(&plugin, &run);
    } else {
        print_plain(&args, &run);
    }
    match &run.result {
        Ok(_) => exit::OK,
        Err(failure) => exit_code(failure),
    }
}

/// What the job gets besides WASI: config values, an in-memory key-value
/// store (kv calls work under `spool call` too, for this call) and the
/// hosts `--http-allow` names.
fn services(args: &CallArgs, http_allow: crate::sandbox::http::AllowList) -> JobServices {
    JobServices {
        config: Arc::new(args.config.iter().cloned().collect()),
        kv: Some(Arc::new(MemoryKv::default())),
        progress: None,
        // The caller is the operator here: the hosts it names may be in
        // the ranges it opens (--http-allow-private).
        http_ceiling: (!http_allow.is_empty()).then(|| Arc::new(http_allow.clone())),
        http_allow: (!http_allow.is_empty()).then(|| Arc::new(http_allow)),
        outbound: Some(Arc::new(args.http.outbound())),
    }
}

/// The exit code of a failed job: 75 when a retry may help, else 1.
fn exit_code(failure: &JobFailure) -> u8 {
    if failure.is_retryable() {
        exit::RETRYABLE
    } else {
        exit::FAILED
    }
}

/// The payload and the content type it implies.
pub(crate) fn read_input(input: &str) -> Result<(Vec<u8>, String), String> {
    let Some(file) = input.strip_prefix('@') else {
        return Ok((input.as_bytes().to_vec(), "application/json".into()));
    };
    if file == "-" {
        let mut bytes = Vec::new();
        std::io::stdin()
            .read_to_end(&mut bytes)
            .map_err(|e| format!("could not read the input from standard input: {e}"))?;
        return Ok((bytes, "application/octet-stream".into()));
    }
    let bytes =
        std::fs::read(file).map_err(|e| format!("could not read the input file {file}: {e}"))?;
    Ok((bytes, guess_content_type(Path::new(file)).into()))
}

fn guess_content_type(path: &Path) -> &'static str {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default()
        .to_ascii_lowercase();
    match ext.as_str() {
        "json" => "application/json",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "md" | "markdown" => "text/markdown",
        "txt" => "text/plain",
        "html" | "htm" => "text/html",
        _ => "application/octet-stream",
    }
}

fn job_name(args: &CallArgs) -> (String, String) {
    match args.name.as_deref().map(|n| n.split_once('/')) {
        Some(Some((tenant, name))) => (tenant.to_string(), name.to_string()),
        Some(None) => ("default".into(), args.name.clone().unwrap_or_default()),
        None => (
            "default".into(),
            args.plugin
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
        ),
    }
}

/// A usage or load error: exit 2, as plain text or as JSON.
fn usage_error(args: &CallArgs, message: &str) -> u8 {
    if args.json {
        let doc =
            json!({"ok": false, "error": {"kind": "load", "message": message, "retryable": false}});
        println!("{doc}");
    } else {
        eprintln!("error: {message}");
    }
    exit::USAGE
}

fn print_plain(args: &CallArgs, run: &JobRun) {
    if args.logs {
        for line in &run.log.lines {
            let level = serde_json::to_value(line.level).unwrap_or(Value::Null);
            eprintln!(
                "[{}] {}",
                level.as_str().unwrap_or("?"),
                shown(&line.message)
            );
        }
    }
    match &run.result {
        Ok(output) => {
            if let Some(path) = &args.output {
                if let Err(e) = std::fs::write(path, output) {
                    eprintln!(
                        "error: could not write the output to {}: {e}",
                        path.display()
                    );
                }
                return;
            }
            super::shown::write_output(output);
            let mut stdout = std::io::stdout().lock();
            // End text output with a newline so the shell prompt starts on
            // its own line; binary output goes out byte for byte.
            if std::str::from_utf8(output).is_ok() && !output.ends_with(b"\n") {
                let _ = stdout.write_all(b"\n");
            }
        }
        Err(failure) => {
            eprintln!("error: {}: {}", failure.kind(), shown(&failure.to_string()));
            if let JobFailure::Panic { backtrace, .. } | JobFailure::Trap { backtrace, .. } =
                failure
            {
                for frame in backtrace {
                    eprintln!("    at {}", shown(frame));
                }
            }
            if failure.is_retryable() {
                eprintln!("(a retry may help)");
            }
            if std::io::stderr().is_terminal() && !args.logs && !run.log.lines.is_empty() {
                eprintln!(
                    "({} guest log lines; add --logs to see them)",
                    run.log.lines.len()
                );
            }
        }
    }
}

/// The `--json` document: stable keys for scripts.
fn print_json(plugin: &Plugin, run: &JobRun) {
    let (output, output_base64, output_bytes) = match &run.result {
        Ok(bytes) => match serde_json::from_slice::<Value>(bytes) {
            Ok(value) => (value, Value::Null, bytes.len()),
            Err(_) => match std::str::from_utf8(bytes) {
                Ok(text) => (Value::String(text.into()), Value::Null, bytes.len()),
                Err(_) => (
                    Value::Null,
                    Value::String(base64::engine::general_purpose::STANDARD.encode(bytes)),
                    bytes.len(),
                ),
            },
        },
        Err(_) => (Value::Null, Value::Null, 0),
    };
    let error = match &run.result {
        Ok(_) => Value::Null,
        Err(failure) => failure_json(failure),
    };
    let doc = json!({
        "ok": run.result.is_ok(),
        "output": output,
        "output_base64": output_base64,
        "output_bytes": output_bytes,
        "error": error,
        "logs": run.log.lines,
        "logs_dropped": run.log.dropped,
        "progress": run.progress,
        "http": run.http,
        "plugin": {
            "path": plugin.path,
            "version": plugin.version.as_str(),
            "sdk_version": plugin.sdk_version,
            "size": plugin.size,
        },
        "timings_us": {
            "compile": plugin.compile_time.as_micros() as u64,
            "instantiate": run.timings.instantiate.as_micros() as u64,
            "run": run.timings.run.as_micros() as u64,
        },
    });
    println!("{doc}");
}

/// A failure as JSON: its typed fields plus `message` and `retryable`.
pub(crate) fn failure_json(failure: &JobFailure) -> Value {
    let mut value = serde_json::to_value(failure).unwrap_or_else(|_| json!({}));
    if let Value::Object(map) = &mut value {
        map.insert("message".into(), Value::String(failure.to_string()));
        map.insert("retryable".into(), Value::Bool(failure.is_retryable()));
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// One failure of each kind. The match makes a new variant fail to
    /// compile here until it is given a sample (and a row in the README).
    fn samples() -> Vec<JobFailure> {
        let text = || "x".to_string();
        let all = vec![
            JobFailure::InvalidInput {
                field: text(),
                expected: text(),
                got: text(),
            },
            JobFailure::Retryable { message: text() },
            JobFailure::Fatal { message: text() },
            JobFailure::Timeout {
                limit: Duration::from_secs(1),
            },
            JobFailure::MemoryLimit {
                requested: 2,
                limit: 1,
            },
            JobFailure::StackOverflow { limit: 1 },
            JobFailure::Panic {
                message: text(),
                backtrace: vec![],
            },
            JobFailure::Trap {
                message: text(),
                backtrace: vec![],
            },
            JobFailure::OutputTooLarge { size: 2, limit: 1 },
            JobFailure::InputTooLarge { size: 2, limit: 1 },
            JobFailure::Exit { code: 3 },
            JobFailure::TooMuchData,
            JobFailure::Host { message: text() },
        ];
        for failure in &all {
            match failure {
                JobFailure::InvalidInput { .. }
                | JobFailure::Retryable { .. }
                | JobFailure::Fatal { .. }
                | JobFailure::Timeout { .. }
                | JobFailure::MemoryLimit { .. }
                | JobFailure::StackOverflow { .. }
                | JobFailure::Panic { .. }
                | JobFailure::Trap { .. }
                | JobFailure::OutputTooLarge { .. }
                | JobFailure::InputTooLarge { .. }
                | JobFailure::Exit { .. }
                | JobFailure::TooMuchData
                | JobFailure::Host { .. } => {}
            }
        }
        all
    }

    /// README.md, `spool call`, the exit-code table.
    const DOCUMENTED: &[(u8, &[&str])] = &[
        (
            1,
            &[
                "invalid-input",
                "fatal",
                "panic",
                "trap",
                "memory-limit",
                "stack-overflow",
                "output-too-large",
                "input-too-large",
                "exit",
                "too-much-data",
            ],
        ),
        (75, &["retryable", "timeout", "host"]),
    ];

    #[test]
    fn every_failure_exits_with_its_documented_code() {
        let failures = samples();
        let sampled: BTreeSet<&str> = failures.iter().map(JobFailure::kind).collect();
        let documented: BTreeSet<&str> = DOCUMENTED
            .iter()
            .flat_map(|(_, kinds)| kinds.iter().copied())
            .collect();
        assert_eq!(sampled, documented);
        for failure in &failures {
            let kind = failure.kind();
            let Some((code, _)) = DOCUMENTED.iter().find(|(_, kinds)| kinds.contains(&kind)) else {
                panic!("{kind} is not in the README's exit-code table");
            };
            assert_eq!(exit_code(failure), *code, "{kind}");
        }
    }
}
