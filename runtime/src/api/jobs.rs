//! `/v1/jobs`: enqueue one job, read its record, wait for its end. The
//! tenant is always the token's: a job id of another tenant is not found
//! (404, as for an id that never was), and a plugin of another tenant
//! cannot be named (403).

use super::auth::Authed;
use super::bodies::{self, EnqueueBody, RawOptions};
use super::error::ErrorBody;
use super::{ApiError, AppState};
use crate::ids::PluginName;
use crate::queue::{Cancelled, JobRecord, NewJob, Priority, QueueError};
use crate::tokens::{Scope, Tenants, TokenInfo};
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use std::time::Duration;

/// The longest a wait request holds its connection.
pub const MAX_WAIT: Duration = Duration::from_secs(60);

/// The plugin `name` (`NAME` or `TENANT/NAME`) for a request of `token`: a
/// bare name is the token's tenant's (`default` for an operator's).
pub(super) fn plugin_for(
    token: &TokenInfo,
    name: &str,
    doing: &str,
) -> Result<PluginName, ApiError> {
    let full = match (&token.tenants, name.contains('/')) {
        (_, true) => name.to_string(),
        (Tenants::One(t), false) => format!("{t}/{name}"),
        (Tenants::All, false) => format!("default/{name}"),
    };
    let plugin =
        PluginName::parse(&full).map_err(|e| ApiError::invalid("plugin", e.to_string()))?;
    if !token.tenants.reaches(&plugin.tenant) {
        return Err(ApiError::forbidden(format!(
            "token {} is for tenant {}; it cannot {doing} of tenant {}",
            token.id, token.tenants, plugin.tenant
        )));
    }
    Ok(plugin)
}

fn new_job(token: &TokenInfo, b: EnqueueBody) -> Result<NewJob, ApiError> {
    let plugin = plugin_for(token, &b.plugin, "enqueue jobs")?;
    let (payload, content_type) = match (b.payload, b.payload_base64) {
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid(
                "payload_base64",
                "both payload and payload_base64 given; expected one",
            ));
        }
        (Some(v), None) => (
            serde_json::to_vec(&v).unwrap_or_default(),
            "application/json",
        ),
        (None, Some(text)) => {
            use base64::Engine as _;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(text.trim())
                .map_err(|e| ApiError::invalid("payload_base64", format!("not base64: {e}")))?;
            (bytes, "application/octet-stream")
        }
        (None, None) => (b"{}".to_vec(), "application/json"),
    };
    let mut job = NewJob::new(plugin, payload);
    job.content_type = b.content_type.unwrap_or_else(|| content_type.to_string());
    if let Some(p) = b.priority {
        job.priority = p
            .parse::<Priority>()
            .map_err(|e| ApiError::invalid("priority", e))?;
    }
    if let Some(n) = b.max_attempts {
        if n == 0 {
            return Err(ApiError::invalid("max_attempts", "0; expected at least 1"));
        }
        job.max_attempts = n;
    }
    if let Some(d) = b.delay {
        job.delay = humantime::parse_duration(d.trim()).map_err(|e| {
            ApiError::invalid("delay", format!("{d:?}: {e}; expected e.g. 30s or 5m"))
        })?;
    }
    job.idempotency_key = b.idempotency_key;
    job.group = b.group;
    job.no_cache = b.no_cache;
    job.wait = b.wait;
    Ok(job)
}

/// A JSON body the extractor refused, as the API's error.
pub(super) fn bad_body(e: &JsonRejection) -> ApiError {
    let status = e.status();
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::new(
            status,
            "too-large",
            format!("request body too large: {}", e.body_text()),
        );
    }
    ApiError {
        field: Some("body".into()),
        ..ApiError::new(StatusCode::BAD_REQUEST, "invalid-request", e.body_text())
    }
}

/// `POST /v1/jobs` → 201 `{"id", "created"}` (`created` false: an
/// idempotency key named an existing job). The body is a JSON job object,
/// or, with `?plugin=NAME` (and the other options in the query), the
/// payload's raw bytes of the request's `Content-Type`.
#[utoipa::path(post, path = "/v1/jobs", tag = "jobs", params(RawOptions), request_body(content((EnqueueBody = "application/json"), (Vec<u8> = "application/octet-stream")), description = "a JSON job object; or the raw payload with ?plugin="), responses((status = 201, description = "enqueued: {id, created, tenant}", body = serde_json::Value), (status = 200, description = "an idempotency key named an existing job", body = serde_json::Value), (status = 400, description = "a field is wrong", body = ErrorBody), (status = 413, description = "over --max-body or the tenant's max-payload", body = ErrorBody), (status = 401, description = "no valid token", body = ErrorBody), (status = 403, description = "the token lacks the scope or the tenant", body = ErrorBody)), security(("bearer" = [])))]
pub async fn enqueue(
    State(state): State<AppState>,
    auth: Authed,
    options: Result<Query<RawOptions>, QueryRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let token = auth.need(Scope::Submit)?;
    let Query(options) = options.map_err(|e| ApiError::invalid("query", e.body_text()))?;
    let (body, raw) = bodies::one(&headers, options, &bodies::read(body)?)?;
    let mut job = new_job(token, body)?;
    if let Some(raw) = raw {
        job.payload = raw;
    }
    let done = state.queue.enqueue(&job).await?;
    let status = if done.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let body =
        serde_json::json!({"id": done.id, "created": done.created, "tenant": job.plugin.tenant});
    Ok((status, Json(body)).into_response())
}

/// Most jobs one batch may carry.
pub const MAX_BATCH: usize = 1_000;

/// `POST /v1/jobs/batch`: a JSON array of job objects (as for one job), or
/// JSON lines (`Content-Type: application/x-ndjson`).
/// Every job is checked before any is stored; a bad one fails the batch
/// (400 naming its index), and nothing is enqueued. Answers 201
/// `{"ids": [...]}` in order.
#[utoipa::path(post, path = "/v1/jobs/batch", tag = "jobs", request_body(content((Vec<EnqueueBody> = "application/json"), (String = "application/x-ndjson")), description = "a JSON array of job objects, or one object a line"), responses((status = 201, description = "all enqueued: {ids}", body = serde_json::Value), (status = 400, description = "a job is wrong (field [i].name); none enqueued", body = ErrorBody), (status = 401, description = "no valid token", body = ErrorBody), (status = 403, description = "the token lacks the scope or the tenant", body = ErrorBody)), security(("bearer" = [])))]
pub async fn enqueue_batch(
    State(state): State<AppState>,
    auth: Authed,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let token = auth.need(Scope::Submit)?;
    let bodies = bodies::batch(&headers, &bodies::read(body)?)?;
    if bodies.is_empty() || bodies.len() > MAX_BATCH {
        return Err(ApiError::invalid(
            "body",
            format!("{} jobs; expected 1 to {MAX_BATCH}", bodies.len()),
        ));
    }
    let mut jobs = Vec::with_capacity(bodies.len());
    for (i, b) in bodies.into_iter().enumerate() {
        jobs.push(new_job(token, b).map_err(|mut e| {
            e.field = Some(format!("[{i}].{}", e.field.as_deref().unwrap_or("")));
            e
        })?);
    }
    let done = state.queue.enqueue_many(&jobs).await?;
    let ids: Vec<&str> = done.iter().map(|d| d.id.as_str()).collect();
    Ok((StatusCode::CREATED, Json(serde_json::json!({ "ids": ids }))).into_response())
}

/// The record of job `id` within the token's reach.
pub(super) async fn find(
    state: &AppState,
    token: &TokenInfo,
    id: &str,
) -> Result<(String, JobRecord), ApiError> {
    let found = match &token.tenants {
        Tenants::One(t) => state.queue.record_in(t, id).await.map(|r| (t.clone(), r)),
        Tenants::All => state.queue.find(id).await,
    };
    found.map_err(|e| match e {
        QueueError::NotFound { .. } => ApiError::not_found(&format!("job {id}")),
        other => ApiError::from(other),
    })
}

/// `GET /v1/jobs/{id}` → the record, as `spool job --json` shows it.
#[utoipa::path(get, path = "/v1/jobs/{id}", tag = "jobs", params(("id" = String, Path, description = "job id")), responses((status = 200, description = "the job record", body = serde_json::Value), (status = 404, description = "no such job of the token's tenant", body = ErrorBody), (status = 401, description = "no valid token", body = ErrorBody), (status = 403, description = "the token lacks the scope or the tenant", body = ErrorBody)), security(("bearer" = [])))]
pub async fn get(
    State(state): State<AppState>,
    auth: Authed,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<JobRecord>, ApiError> {
    let token = auth.need(Scope::Read)?;
    let Path(id) = id.map_err(|e| ApiError::invalid("id", e.body_text()))?;
    Ok(Json(find(&state, token, &id).await?.1))
}

/// `?timeout=30s` of a wait.
#[derive(Debug, serde::Deserialize)]
pub struct WaitQuery {
    #[serde(default)]
    timeout: Option<String>,
}

/// `GET /v1/jobs/{id}/wait?timeout=30s` → 200 and the record once the job
/// succeeded or died; 202 and the record as it stands when the timeout
/// (at most a minute, default 30 s) passed first.
#[utoipa::path(get, path = "/v1/jobs/{id}/wait", tag = "jobs", params(("id" = String, Path, description = "job id"), ("timeout" = Option<String>, Query, description = "e.g. 30s; at most 60s")), responses((status = 200, description = "the record, once the job ended", body = serde_json::Value), (status = 202, description = "the record as it stands at the timeout", body = serde_json::Value), (status = 404, description = "no such job", body = ErrorBody), (status = 503, description = "too many waits under way", body = ErrorBody), (status = 401, description = "no valid token", body = ErrorBody), (status = 403, description = "the token lacks the scope or the tenant", body = ErrorBody)), security(("bearer" = [])))]
pub async fn wait(
    State(state): State<AppState>,
    auth: Authed,
    id: Result<Path<String>, PathRejection>,
    q: Result<Query<WaitQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let token = auth.need(Scope::Read)?;
    let Path(id) = id.map_err(|e| ApiError::invalid("id", e.body_text()))?;
    let Query(q) = q.map_err(|e| ApiError::invalid("timeout", e.body_text()))?;
    let timeout = ApiError::timeout_in(q.timeout.as_deref(), Duration::from_secs(30), MAX_WAIT)?;
    let (tenant, _) = find(&state, token, &id).await?;
    // Each wait holds a Redis connection of its own: a bounded number at
    // once, so that one client cannot take all of Redis' connections.
    let _slot = state.wait_slot(&tenant)?;
    match state.queue.wait_for(&tenant, &id, timeout).await {
        Ok(record) => Ok(Json(record).into_response()),
        Err(QueueError::WaitTimeout { .. }) => {
            let record = find(&state, token, &id).await?.1;
            Ok((StatusCode::ACCEPTED, Json(record)).into_response())
        }
        Err(e) => Err(e.into()),
    }
}

/// `POST /v1/jobs/{id}/cancel` (submit): a job that has not started
/// (queued, delayed, retrying) ends `cancelled` and never runs; answers
/// its record. 409 when it started or ended already (its status named).
#[utoipa::path(post, path = "/v1/jobs/{id}/cancel", tag = "jobs", params(("id" = String, Path, description = "job id")), responses((status = 200, description = "cancelled: the record", body = serde_json::Value), (status = 404, description = "no such job", body = ErrorBody), (status = 409, description = "it started or ended already", body = ErrorBody), (status = 401, description = "no valid token", body = ErrorBody), (status = 403, description = "the token lacks the scope or the tenant", body = ErrorBody)), security(("bearer" = [])))]
pub async fn cancel(
    State(state): State<AppState>,
    auth: Authed,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<JobRecord>, ApiError> {
    let token = auth.need(Scope::Submit)?;
    let Path(id) = id.map_err(|e| ApiError::invalid("id", e.body_text()))?;
    let (tenant, _) = find(&state, token, &id).await?;
    match state.queue.cancel(&tenant, &id).await {
        Ok(Cancelled::Now) => Ok(Json(find(&state, token, &id).await?.1)),
        Ok(Cancelled::Too(status)) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!(
                "job {id} is {status}: only a queued, delayed or retrying job can be cancelled"
            ),
        )),
        Err(QueueError::NotFound { .. }) => Err(ApiError::not_found(&format!("job {id}"))),
        Err(e) => Err(e.into()),
    }
}
