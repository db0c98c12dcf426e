//! The other shapes an enqueue's body may take besides one JSON object:
//! the payload's raw bytes with the options in the query string
//! (`POST /v1/jobs?plugin=resize` with `Content-Type: image/png`), and a
//! batch as JSON lines (`Content-Type: application/x-ndjson`).

use super::ApiError;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode, header};

/// `POST /v1/jobs`: one job. `payload` is any JSON value (sent as its JSON
/// text, `application/json`); binary payloads go in `payload_base64`.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnqueueBody {
    /// `NAME` (the token's tenant's) or `TENANT/NAME`.
    pub(super) plugin: String,
    /// Any JSON value: the payload is its JSON text. Kept as the text it
    /// came in: a body of millions of tiny values is never built into a
    /// tree.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub(super) payload: Option<Box<serde_json::value::RawValue>>,
    /// A binary payload, base64 (instead of `payload`).
    #[serde(default)]
    pub(super) payload_base64: Option<String>,
    /// The payload's type (default `application/json`, or
    /// `application/octet-stream` for `payload_base64`).
    #[serde(default)]
    pub(super) content_type: Option<String>,
    /// `high`, `normal` (default) or `low`.
    #[serde(default)]
    pub(super) priority: Option<String>,
    /// Attempts before a dead letter (default 3; at most the tenant's
    /// `max-attempts`).
    #[serde(default)]
    pub(super) max_attempts: Option<u32>,
    /// `30s`, `5m`, …: run no earlier than this after the enqueue.
    #[serde(default)]
    pub(super) delay: Option<String>,
    /// A second enqueue with the same key answers the first job's id.
    #[serde(default)]
    pub(super) idempotency_key: Option<String>,
    /// Jobs of one group run one at a time (or the tenant's
    /// `group-concurrency`), in enqueue order.
    #[serde(default)]
    pub(super) group: Option<String>,
    /// Run the handler even if the result cache has the answer.
    #[serde(default)]
    pub(super) no_cache: bool,
    /// Ask for a completion notice, so that a wait answers at once.
    #[serde(default)]
    pub(super) wait: bool,
}

/// The options of a raw-bytes enqueue, as query parameters.
#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RawOptions {
    /// With a raw body: the plugin (`NAME` or `TENANT/NAME`). Without it
    /// the body is a JSON job object.
    #[serde(default)]
    pub plugin: Option<String>,
    /// `high`, `normal` or `low`.
    #[serde(default)]
    pub priority: Option<String>,
    /// Attempts before a dead letter.
    #[serde(default)]
    pub max_attempts: Option<u32>,
    /// `30s`, `5m`, …
    #[serde(default)]
    pub delay: Option<String>,
    /// Deduplicates enqueues while the record lives.
    #[serde(default)]
    pub idempotency_key: Option<String>,
    /// The job's group.
    #[serde(default)]
    pub group: Option<String>,
    /// Run the handler even if the cache has the answer.
    #[serde(default)]
    pub no_cache: bool,
    /// Ask for a completion notice.
    #[serde(default)]
    pub wait: bool,
}

/// The body, or the API's error for one that could not be read (413 over
/// `--max-body`).
pub fn read(
    body: Result<axum::body::Bytes, BytesRejection>,
) -> Result<axum::body::Bytes, ApiError> {
    body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                e.status(),
                "too-large",
                format!("request body too large: {}", e.body_text()),
            )
        } else {
            ApiError::invalid("body", e.body_text())
        }
    })
}

fn content_type(headers: &HeaderMap) -> &str {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// One job from an enqueue's body: raw bytes when the query names the
/// plugin (the `Content-Type` is the job's), else a JSON object (whatever
/// the `Content-Type`: `curl -d` sends a form type).
pub fn one(
    headers: &HeaderMap,
    options: RawOptions,
    body: &[u8],
) -> Result<(EnqueueBody, Option<Vec<u8>>), ApiError> {
    let Some(plugin) = options.plugin else {
        let job = serde_json::from_slice(body).map_err(|e| {
            ApiError::invalid(
                "body",
                format!(
                    "{e}; expected a JSON job object, or ?plugin=NAME with the payload as the body"
                ),
            )
        })?;
        return Ok((job, None));
    };
    let ct = content_type(headers);
    let job = EnqueueBody {
        plugin,
        payload: None,
        payload_base64: None,
        content_type: Some(
            if ct.is_empty() {
                "application/octet-stream"
            } else {
                ct
            }
            .to_string(),
        ),
        priority: options.priority,
        max_attempts: options.max_attempts,
        delay: options.delay,
        idempotency_key: options.idempotency_key,
        group: options.group,
        no_cache: options.no_cache,
        wait: options.wait,
    };
    Ok((job, Some(body.to_vec())))
}

/// The jobs of a batch's body: JSON lines (`application/x-ndjson` or
/// `application/jsonl`, one object a line, blank lines skipped) or a JSON
/// array. An error names the line or index at fault.
pub fn batch(headers: &HeaderMap, body: &[u8]) -> Result<Vec<EnqueueBody>, ApiError> {
    let ct = content_type(headers);
    if !(ct.starts_with("application/x-ndjson") || ct.starts_with("application/jsonl")) {
        return serde_json::from_slice(body).map_err(|e| {
            ApiError::invalid("body", format!("{e}; expected a JSON array of job objects, or JSON lines (Content-Type: application/x-ndjson)"))
        });
    }
    let text = std::str::from_utf8(body)
        .map_err(|e| ApiError::invalid("body", format!("JSON lines that are not UTF-8: {e}")))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| {
                ApiError::invalid(
                    &format!("line {}", i + 1),
                    format!("{e}; expected a JSON job object"),
                )
            })
        })
        .collect()
}
