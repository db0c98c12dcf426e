//! `/v1/dead`: the dead letters of the token's tenant (every tenant's for
//! an operator's token): list, retry, purge. An id of another tenant is
//! skipped as an unknown one is, and counts in no answer.

use super::auth::Authed;
use super::error::ErrorBody;
use super::tenants_of;
use super::{ApiError, AppState};
use crate::queue::DeadEntry;
use crate::tokens::Scope;
use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Query, State};

/// Most entries one list returns.
pub const MAX_PAGE: usize = 1_000;

/// The deepest page: ids up to here are read (not their records) to find
/// it.
pub const MAX_OFFSET: usize = 100_000;

/// `?limit=50&offset=0` of a list.
#[derive(Debug, serde::Deserialize)]
pub struct Page {
    #[serde(default)]
    limit: Option<usize>,
    #[serde(default)]
    offset: Option<usize>,
    /// An operator's token: only this tenant's.
    #[serde(default)]
    tenant: Option<String>,
}

/// `?tenant=T` of a retry or a purge (an operator's choice; a tenant's
/// token may name only its own).
#[derive(Debug, Default, serde::Deserialize)]
pub struct TenantQuery {
    #[serde(default)]
    tenant: Option<String>,
}

/// The tenants a dead-letter request covers: the one named, else the
/// token's reach.
async fn covered(
    state: &AppState,
    token: &crate::tokens::TokenInfo,
    asked: Option<String>,
) -> Result<Vec<String>, ApiError> {
    match asked {
        Some(t) => Ok(vec![super::lists::one_tenant(&token.tenants, Some(t))?]),
        None => tenants_of(state, token).await,
    }
}

/// A page of dead letters, newest first.
#[derive(Debug, serde::Serialize)]
pub struct DeadPage {
    /// Dead letters in all (of the tenants covered).
    pub total: u64,
    /// This page.
    pub entries: Vec<DeadEntry>,
}

/// `GET /v1/dead?limit=50&offset=0` (read): newest first, at most
/// [`MAX_PAGE`] a page.
#[utoipa::path(get, path = "/v1/dead", tag = "dead letters", params(("limit" = Option<usize>, Query, description = "1 to 1000, default 50"), ("offset" = Option<usize>, Query, description = "at most 100000"), ("tenant" = Option<String>, Query, description = "only this tenant's (an operator's choice)")), responses((status = 200, description = "{total, entries}", body = serde_json::Value), (status = 400, description = "limit or offset out of range", body = ErrorBody), (status = 401, description = "no valid token", body = ErrorBody), (status = 403, description = "the token lacks the scope or the tenant", body = ErrorBody)), security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    auth: Authed,
    page: Result<Query<Page>, QueryRejection>,
) -> Result<Json<DeadPage>, ApiError> {
    let token = auth.need(Scope::Read)?;
    let Query(page) = page.map_err(|e| ApiError::invalid("limit", e.body_text()))?;
    let limit = page.limit.unwrap_or(50);
    if limit == 0 || limit > MAX_PAGE {
        return Err(ApiError::invalid(
            "limit",
            format!("{limit}; expected 1 to {MAX_PAGE}"),
        ));
    }
    let offset = page.offset.unwrap_or(0);
    if offset > MAX_OFFSET {
        return Err(ApiError::invalid(
            "offset",
            format!("{offset}; expected at most {MAX_OFFSET}"),
        ));
    }
    let tenants = covered(&state, token, page.tenant).await?;
    let (total, entries) = state.queue.dead_page_in(&tenants, offset, limit).await?;
    Ok(Json(DeadPage { total, entries }))
}

/// The body of a retry or a purge: some ids, or `{"all": true}` (never an
/// empty list taken for "all").
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Which {
    /// Job ids (at most 1,000).
    #[serde(default)]
    ids: Vec<String>,
    /// Every dead letter within the token's reach (instead of `ids`).
    #[serde(default)]
    all: bool,
}

impl Which {
    /// The ids for the queue's calls: none means all.
    fn ids(self) -> Result<Vec<String>, ApiError> {
        match (self.all, self.ids.is_empty()) {
            (true, true) => Ok(Vec::new()),
            (false, false) if self.ids.len() <= MAX_PAGE => Ok(self.ids),
            (false, false) => Err(ApiError::invalid(
                "ids",
                format!("{} ids; expected at most {MAX_PAGE} a call", self.ids.len()),
            )),
            (true, false) => Err(ApiError::invalid(
                "all",
                "both ids and all given; expected one",
            )),
            (false, true) => Err(ApiError::invalid(
                "ids",
                "no ids; expected a list of job ids, or \"all\": true",
            )),
        }
    }
}

fn body(b: Result<Json<Which>, JsonRejection>) -> Result<Vec<String>, ApiError> {
    let Json(which) = b.map_err(|e| super::jobs::bad_body(&e))?;
    which.ids()
}

/// `POST /v1/dead/retry` (admin): back to their queues with fresh
/// attempts; answers `{"moved": [ids]}`.
#[utoipa::path(post, path = "/v1/dead/retry", tag = "dead letters", params(("tenant" = Option<String>, Query, description = "only this tenant's (an operator's choice)")), request_body = Which, responses((status = 200, description = "{moved: [ids]}", body = serde_json::Value), (status = 400, description = "neither ids nor all", body = ErrorBody), (status = 401, description = "no valid token", body = ErrorBody), (status = 403, description = "the token lacks the scope or the tenant", body = ErrorBody)), security(("bearer" = [])))]
pub async fn retry(
    State(state): State<AppState>,
    auth: Authed,
    q: Result<Query<TenantQuery>, QueryRejection>,
    b: Result<Json<Which>, JsonRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    act(&state, &auth, q, b, true).await
}

/// `POST /v1/dead/purge` (admin): deleted with their records; answers
/// `{"purged": n}`.
#[utoipa::path(post, path = "/v1/dead/purge", tag = "dead letters", params(("tenant" = Option<String>, Query, description = "only this tenant's (an operator's choice)")), request_body = Which, responses((status = 200, description = "{purged: n}", body = serde_json::Value), (status = 400, description = "neither ids nor all", body = ErrorBody), (status = 401, description = "no valid token", body = ErrorBody), (status = 403, description = "the token lacks the scope or the tenant", body = ErrorBody)), security(("bearer" = [])))]
pub async fn purge(
    State(state): State<AppState>,
    auth: Authed,
    q: Result<Query<TenantQuery>, QueryRejection>,
    b: Result<Json<Which>, JsonRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    act(&state, &auth, q, b, false).await
}

async fn act(
    state: &AppState,
    auth: &Authed,
    q: Result<Query<TenantQuery>, QueryRejection>,
    b: Result<Json<Which>, JsonRejection>,
    retry: bool,
) -> Result<Json<serde_json::Value>, ApiError> {
    let token = auth.need(Scope::Admin)?;
    let Query(q) = q.map_err(|e| ApiError::invalid("tenant", e.body_text()))?;
    let ids = body(b)?;
    let tenants = covered(state, token, q.tenant).await?;
    Ok(Json(if retry {
        serde_json::json!({ "moved": state.queue.dead_retry_in(&tenants, &ids).await? })
    } else {
        serde_json::json!({ "purged": state.queue.dead_purge_in(&tenants, &ids).await? })
    }))
}
