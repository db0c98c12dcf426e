//! Every failed request answers `{"error": {kind, message, field?,
//! retryable}}` with the status that says what went wrong: the body is
//! the same whatever the route, so a client handles errors once.

use crate::queue::QueueError;
use crate::tokens::TokenError;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::time::Duration;

/// A request that failed, as the client will see it.
#[derive(Debug)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// A stable name for programs: `unauthorized`, `not-found`, …
    pub kind: &'static str,
    /// What failed and what was expected, for a person.
    pub message: String,
    /// The request field at fault, if one is.
    pub field: Option<String>,
    /// Whether the same request may succeed later.
    pub retryable: bool,
    /// How long to wait before trying again (429, 503).
    pub retry_after: Option<Duration>,
}

impl ApiError {
    /// An error of `status` and `kind`, not retryable.
    pub fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            kind,
            message: message.into(),
            field: None,
            retryable: false,
            retry_after: None,
        }
    }

    /// 400: the request's `field` is not what was expected.
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        ApiError {
            field: Some(field.to_string()),
            ..Self::new(StatusCode::BAD_REQUEST, "invalid-request", message)
        }
    }

    /// 404, worded the same whether the thing does not exist or belongs to
    /// another tenant (no existence oracle).
    pub fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not-found",
            format!("{what} not found"),
        )
    }

    /// 403: the token may not do this.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// 503 `busy`: this server has as much of this work under way as it
    /// takes; try again after `after`.
    pub fn busy(message: impl Into<String>, after: Duration) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "busy", message).retry_after(after)
    }

    /// A query's `timeout` (`30s`, `5m`): `default` when absent, at most
    /// `max`.
    pub fn timeout_in(
        given: Option<&str>,
        default: Duration,
        max: Duration,
    ) -> Result<Duration, Self> {
        let Some(t) = given else {
            return Ok(default.min(max));
        };
        humantime::parse_duration(t.trim())
            .map(|d| d.min(max))
            .map_err(|e| Self::invalid("timeout", format!("{t:?}: {e}; expected e.g. 30s")))
    }

    /// 429 or 503: try again after `after`.
    #[must_use]
    pub fn retry_after(mut self, after: Duration) -> Self {
        self.retryable = true;
        self.retry_after = Some(after);
        self
    }
}

/// The body of every error answer, as the OpenAPI document describes it.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// `error` of an [`ErrorBody`].
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// A stable name for programs: `unauthorized`, `not-found`, …
    pub kind: &'static str,
    /// What failed and what was expected, for a person.
    pub message: String,
    /// The request field at fault, if one is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Whether the same request may succeed later.
    pub retryable: bool,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                kind: self.kind,
                message: self.message,
                field: self.field,
                retryable: self.retryable,
            },
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(after) = self.retry_after {
            let secs = after.as_secs().max(1).to_string();
            if let Ok(v) = HeaderValue::from_str(&secs) {
                response.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        response
    }
}

impl From<QueueError> for ApiError {
    fn from(e: QueueError) -> Self {
        let message = e.to_string();
        match e {
            QueueError::NotFound { .. } => ApiError::not_found("job"),
            QueueError::Invalid { .. } | QueueError::BadConfig { .. } => {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid-request", message)
            }
            QueueError::OverQuota { limit, .. } => ApiError {
                field: Some(
                    if limit.name() == "max-payload" {
                        "payload"
                    } else {
                        "max_attempts"
                    }
                    .into(),
                ),
                ..ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "over-quota", message)
            },
            QueueError::WaitTimeout { .. } => {
                ApiError::new(StatusCode::GATEWAY_TIMEOUT, "wait-timeout", message)
                    .retry_after(Duration::from_secs(1))
            }
            QueueError::Redis(r) => redis_error(&r),
        }
    }
}

/// 503 while Redis is away (retryable), 500 when it refused. The details
/// (which name the Redis URL) go to the server's log, never to a client.
pub fn redis_error(e: &crate::redis::RedisError) -> ApiError {
    tracing::warn!("request failed: {e}");
    if e.is_retryable() {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the queue's Redis is unavailable; retrying later can help",
        )
        .retry_after(Duration::from_secs(1))
    } else {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "redis",
            "the queue's Redis refused the operation; the server's log says why",
        )
    }
}

impl From<TokenError> for ApiError {
    fn from(e: TokenError) -> Self {
        let message = e.to_string();
        match e {
            TokenError::Redis(r) => redis_error(&r),
            TokenError::Random { .. } => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
                    .retry_after(Duration::from_secs(1))
            }
            TokenError::Invalid { .. } => {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid-request", message)
            }
            TokenError::Malformed | TokenError::Unknown { .. } | TokenError::Expired { .. } => {
                ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
            }
        }
    }
}
