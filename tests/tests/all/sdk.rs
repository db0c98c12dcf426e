//! The SDK round trip: typed input and output, metadata, config, logs,
//! progress, and each kind of error a handler can return.

use super::{json_job, output_json, run, run_with};
use spool_runtime::sandbox::{JobFailure, Limits, LogLevel, Progress};

#[test]
fn hello_greets_and_logs() {
    let run = run("hello", r#"{"name":"Ada"}"#);
    assert_eq!(
        output_json(&run),
        serde_json::json!({"greeting": "Hello, Ada!"})
    );
    assert_eq!(run.log.lines.len(), 1);
    assert_eq!(run.log.lines[0].level, LogLevel::Info);
    assert_eq!(run.log.lines[0].message, "greeting Ada");
}

#[test]
fn handler_rejects_empty_name_as_invalid_input() {
    let run = run("hello", r#"{"name":""}"#);
    assert_eq!(
        run.result.unwrap_err(),
        JobFailure::InvalidInput {
            field: "name".into(),
            expected: "a non-empty string".into(),
            got: "\"\"".into(),
        }
    );
}

#[test]
fn undecodable_json_names_the_missing_field() {
    let run = run("hello", r#"{"nom":"Ada"}"#);
    match run.result.unwrap_err() {
        JobFailure::InvalidInput {
            field,
            expected,
            got,
        } => {
            assert_eq!(field, "name");
            assert_eq!(expected, "JSON input for Input");
            assert!(got.contains("missing field `name`"), "{got}");
        }
        other => panic!("expected invalid input, got {other:?}"),
    }
}

#[test]
fn wrong_type_names_the_field_path() {
    let run = run("hello", r#"{"name":42}"#);
    match run.result.unwrap_err() {
        JobFailure::InvalidInput { field, got, .. } => {
            assert_eq!(field, "name");
            assert!(got.contains("invalid type: integer `42`"), "{got}");
        }
        other => panic!("expected invalid input, got {other:?}"),
    }
}

#[test]
fn trailing_garbage_is_invalid_input() {
    let run = run("hello", r#"{"name":"Ada"} and more"#);
    assert!(matches!(
        run.result.unwrap_err(),
        JobFailure::InvalidInput { field, .. } if field == "$"
    ));
}

#[test]
fn handler_sees_job_metadata_config_and_reports_progress() {
    let mut job = json_job(r#"{"echo":[1,2]}"#);
    job.id = "job-42".into();
    job.attempt = 3;
    let run = run_with("introspect", job, &Limits::default(), &[("greeting", "hi")]);
    assert_eq!(
        output_json(&run),
        serde_json::json!({
            "id": "job-42", "tenant": "acme", "plugin": "fixture", "attempt": 3,
            "content_type": "application/json", "greeting": "hi", "echo": [1, 2],
        })
    );
    assert_eq!(run.progress, Some(Progress { done: 3, total: 4 }));
    assert_eq!(run.log.lines[0].level, LogLevel::Debug);
}

#[test]
fn missing_config_is_none() {
    let run = run("introspect", "{}");
    assert_eq!(output_json(&run)["greeting"], serde_json::Value::Null);
}

#[test]
fn retryable_and_fatal_errors_keep_their_kind() {
    let retry = run("introspect", r#"{"fail":"retryable"}"#)
        .result
        .unwrap_err();
    assert_eq!(
        retry,
        JobFailure::Retryable {
            message: "the fixture asked for a retry".into()
        }
    );
    assert!(retry.is_retryable());
    let fatal = run("introspect", r#"{"fail":"fatal"}"#).result.unwrap_err();
    assert_eq!(
        fatal,
        JobFailure::Fatal {
            message: "the fixture failed for good".into()
        }
    );
    assert!(!fatal.is_retryable());
}

#[test]
fn sdk_version_is_embedded_and_read_by_the_host() {
    let plugin = spool_tests::plugin("hello");
    assert_eq!(plugin.sdk_version.as_deref(), Some("0.1.0"));
}
