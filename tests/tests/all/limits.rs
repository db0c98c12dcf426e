//! Every sandbox limit stops a hostile handler with its own typed error,
//! and the worker keeps serving afterwards.

use super::{job, json_job, output_json, run, run_with};
use spool_runtime::sandbox::{JobFailure, Limits, LogLevel};
use std::time::Duration;

#[test]
fn endless_loop_is_stopped_by_the_deadline() {
    let limits = Limits {
        timeout: Duration::from_millis(200),
        ..Limits::default()
    };
    let run = run_with("spin", json_job("{}"), &limits, &[]);
    assert_eq!(
        run.result.unwrap_err(),
        JobFailure::Timeout {
            limit: Duration::from_millis(200)
        }
    );
    // What the guest logged before it was stopped is kept.
    assert_eq!(run.log.lines[0].message, "spinning forever");
}

#[test]
fn unbounded_memory_growth_hits_the_memory_cap() {
    let limits = Limits {
        memory: 16 << 20,
        ..Limits::default()
    };
    let run = run_with("memory_hog", json_job("{}"), &limits, &[]);
    match run.result.unwrap_err() {
        JobFailure::MemoryLimit { requested, limit } => {
            assert_eq!(limit, 16 << 20);
            assert!(requested > limit);
        }
        other => panic!("expected a memory limit error, got {other:?}"),
    }
}

#[test]
fn unbounded_recursion_overflows_the_wasm_stack() {
    let run = run("deep_recursion", "{}");
    assert_eq!(
        run.result.unwrap_err(),
        JobFailure::StackOverflow {
            limit: spool_tests::sandbox().config().max_wasm_stack
        }
    );
}

#[test]
fn panic_reports_message_location_and_guest_backtrace() {
    let run = run("panics", "{}");
    match run.result.unwrap_err() {
        JobFailure::Panic { message, backtrace } => {
            assert!(
                message.starts_with("fixture panicked on purpose (answer 42)"),
                "{message}"
            );
            assert!(message.contains("src/lib.rs:"), "{message}");
            assert_eq!(
                backtrace.first().map(String::as_str),
                Some("panics::explode")
            );
            assert_eq!(backtrace.last().map(String::as_str), Some("handle"));
        }
        other => panic!("expected a panic, got {other:?}"),
    }
}

#[test]
fn output_over_the_cap_is_refused() {
    let run = run_with(
        "big_output",
        job("text/plain", b"20971520".to_vec()),
        &Limits::default(),
        &[],
    );
    assert_eq!(
        run.result.unwrap_err(),
        JobFailure::OutputTooLarge {
            size: 20 << 20,
            limit: Limits::default().max_output
        }
    );
    let small = run_with(
        "big_output",
        job("text/plain", b"1000".to_vec()),
        &Limits::default(),
        &[],
    );
    assert_eq!(small.result.unwrap().len(), 1000);
}

#[test]
fn input_over_the_cap_never_reaches_the_guest() {
    let limits = Limits {
        max_input: 10,
        ..Limits::default()
    };
    let run = run_with("hello", json_job(r#"{"name":"a long name"}"#), &limits, &[]);
    assert_eq!(
        run.result.unwrap_err(),
        JobFailure::InputTooLarge {
            size: 22,
            limit: 10
        }
    );
    assert_eq!(run.timings.instantiate, Duration::ZERO);
}

#[test]
fn chatty_guest_keeps_its_job_and_its_log_is_capped() {
    let limits = Limits {
        max_log_lines: 100,
        max_log_bytes: 4096,
        ..Limits::default()
    };
    let run = run_with("chatty", json_job("{}"), &limits, &[]);
    assert_eq!(run.result.as_deref().unwrap(), b"done");
    // The first 100 of its 5,000 log lines are kept (a log that dropped
    // everything, or kept the wrong lines, fails here), the rest counted.
    assert_eq!(run.log.lines.len(), 100);
    assert_eq!(run.log.lines[0].message, "log line 0");
    assert_eq!(run.log.lines[99].message, "log line 99");
    assert!(run.log.lines.iter().all(|l| l.level == LogLevel::Info));
    let bytes: usize = run.log.lines.iter().map(|l| l.message.len()).sum();
    assert!(bytes <= 4096, "{bytes} log bytes kept");
    assert!(run.log.dropped >= 4_900, "{} dropped", run.log.dropped);
}

#[test]
fn stdout_and_stderr_are_captured_into_the_log_after_its_lines() {
    // Room for everything: 5,000 log lines, 50,000 stdout lines (~690 KB,
    // under the 4 MiB a stream may fill) and the stderr line.
    let roomy = Limits {
        max_log_lines: 100_000,
        max_log_bytes: 8 << 20,
        ..Limits::default()
    };
    let run = run_with("chatty", json_job("{}"), &roomy, &[]);
    let lines = &run.log.lines;
    assert_eq!(lines.len(), 5_000 + 50_000 + 1);
    assert_eq!(
        (lines[5_000].level, lines[5_000].message.as_str()),
        (LogLevel::Stdout, "stdout line 0")
    );
    assert_eq!(lines[54_999].message, "stdout line 49999");
    assert_eq!(
        (lines[55_000].level, lines[55_000].message.as_str()),
        (LogLevel::Stderr, "one line on stderr")
    );
    assert_eq!(run.log.dropped, 0);
    // A stream is cut at half the byte budget: stdout keeps its first bytes.
    let tight = Limits {
        max_log_lines: 100_000,
        max_log_bytes: 200_000,
        ..Limits::default()
    };
    let run = run_with("chatty", json_job("{}"), &tight, &[]);
    let stdout: Vec<&str> = run
        .log
        .lines
        .iter()
        .filter(|l| l.level == LogLevel::Stdout)
        .map(|l| l.message.as_str())
        .collect();
    assert_eq!(stdout[0], "stdout line 0");
    // 100,000 bytes kept: lines plus their newlines (the last one cut).
    let kept: usize = stdout.iter().map(|l| l.len() + 1).sum();
    assert!(
        (99_000..=100_001).contains(&kept),
        "{kept} stdout bytes kept"
    );
    assert_eq!(
        run.log.dropped, 1,
        "the cut stream counts as one dropped line"
    );
    let last = run.log.lines.last().unwrap();
    assert_eq!(
        (last.level, last.message.as_str()),
        (LogLevel::Stderr, "one line on stderr")
    );
}

#[test]
fn the_same_plugin_serves_again_after_a_trap() {
    let panicked = run("introspect", r#"{"fail":"panic"}"#);
    assert!(matches!(panicked.result, Err(JobFailure::Panic { .. })));
    let after = run("introspect", r#"{"echo":"still here"}"#);
    assert_eq!(output_json(&after)["echo"], "still here");
}

#[test]
fn many_jobs_do_not_exhaust_the_pool() {
    // Every store returns its pool slot: more jobs than slots all succeed.
    let slots = spool_tests::sandbox().config().pool_size as usize;
    for _ in 0..slots + 10 {
        let run = run("hello", r#"{"name":"x"}"#);
        assert!(run.result.is_ok());
    }
}
