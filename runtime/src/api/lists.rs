//! Lists for the dashboard: a tenant's jobs by status, and the workers of
//! the fleet with what they serve of the tenant's plugins.

use super::auth::Authed;
use super::error::ErrorBody;
use super::{ApiError, AppState};
use crate::ids::PluginName;
use crate::queue::{JobSummary, Status};
use crate::tokens::{Scope, Tenants};
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};

/// Most jobs one list returns.
pub const MAX_LIST: usize = 500;

/// `?status=succeeded&limit=50&tenant=acme`.
#[derive(Debug, serde::Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    limit: Option<usize>,
    #[serde(default)]
    tenant: Option<String>,
}

/// The tenant a list is about: the token's own, or an operator's choice
/// (`default` if none).
pub(super) fn one_tenant(reach: &Tenants, asked: Option<String>) -> Result<String, ApiError> {
    match (reach, asked) {
        (Tenants::One(own), Some(t)) if t != *own => Err(ApiError::forbidden(format!(
            "this token is for tenant {own}; it cannot read tenant {t}"
        ))),
        (Tenants::One(own), _) => Ok(own.clone()),
        (Tenants::All, Some(t)) => {
            crate::ids::check_tenant(&t).map_err(|e| ApiError::invalid("tenant", e))?;
            Ok(t)
        }
        (Tenants::All, None) => Ok(crate::ids::DEFAULT_TENANT.to_string()),
    }
}

/// `GET /v1/jobs?status=queued|delayed|running|succeeded|dead&limit=50`
/// (read): `{"tenant", "status", "jobs": [{id, plugin, status, attempts,
/// enqueued_us, started_us, finished_us}]}` — queued next-to-run first,
/// delayed and running soonest first, succeeded and dead newest first.
#[utoipa::path(get, path = "/v1/jobs", tag = "jobs", params(("status" = String, Query, description = "queued, delayed, running, succeeded or dead"), ("limit" = Option<usize>, Query, description = "1 to 500, default 50"), ("tenant" = Option<String>, Query, description = "an operator's choice of tenant")), responses((status = 200, description = "the jobs", body = serde_json::Value), (status = 400, description = "an unknown status or limit", body = ErrorBody), (status = 401, description = "no valid token", body = ErrorBody), (status = 403, description = "another tenant", body = ErrorBody)), security(("bearer" = [])))]
pub async fn jobs(
    State(state): State<AppState>,
    auth: Authed,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let token = auth.need(Scope::Read)?;
    let Query(q) = q.map_err(|e| ApiError::invalid("status", e.body_text()))?;
    let tenant = one_tenant(&token.tenants, q.tenant)?;
    let wanted = q.status.unwrap_or_default();
    let status = Status::parse(&wanted)
        .filter(|s| {
            matches!(
                s,
                Status::Queued
                    | Status::Delayed
                    | Status::Running
                    | Status::Succeeded
                    | Status::Dead
            )
        })
        .ok_or_else(|| {
            ApiError::invalid(
                "status",
                format!("{wanted:?}; expected queued, delayed, running, succeeded or dead"),
            )
        })?;
    let limit = q.limit.unwrap_or(50);
    if limit == 0 || limit > MAX_LIST {
        return Err(ApiError::invalid(
            "limit",
            format!("{limit}; expected 1 to {MAX_LIST}"),
        ));
    }
    let jobs: Vec<JobSummary> = state.queue.recent(&tenant, status, limit).await?;
    Ok(Json(
        serde_json::json!({"tenant": tenant, "status": status, "jobs": jobs}),
    ))
}

/// `GET /v1/whoami` (any valid token): the token's id, name, tenant (`*`
/// for an operator's) and scopes, so a client knows what it may show.
#[utoipa::path(get, path = "/v1/whoami", tag = "tokens", responses((status = 200, description = "{id, name, tenant, scopes}", body = serde_json::Value), (status = 401, description = "no valid token", body = ErrorBody)), security(("bearer" = [])))]
pub async fn whoami(auth: Authed) -> Json<serde_json::Value> {
    let t = &auth.0;
    let scopes: Vec<&str> = t.scopes.iter().map(|s| s.as_str()).collect();
    Json(serde_json::json!({
        "id": t.id,
        "name": t.name,
        "tenant": match &t.tenants { Tenants::One(own) => own.as_str(), Tenants::All => "*" },
        "scopes": scopes,
    }))
}

/// `GET /v1/workers` (read): every worker reporting now — id, when it
/// started and last reported, jobs in flight — with the versions it
/// serves of the token's tenant's plugins (every plugin for an operator)
/// and the tenant's jobs whose thread wedged there.
#[utoipa::path(get, path = "/v1/workers", tag = "plugins", responses((status = 200, description = "{workers: [...]}", body = serde_json::Value), (status = 401, description = "no valid token", body = ErrorBody)), security(("bearer" = [])))]
pub async fn workers(
    State(state): State<AppState>,
    auth: Authed,
) -> Result<Json<serde_json::Value>, ApiError> {
    let token = auth.need(Scope::Read)?;
    let operator = matches!(token.tenants, Tenants::All);
    let reach =
        |name: &str| PluginName::parse(name).is_ok_and(|n| token.tenants.reaches(&n.tenant));
    let workers: Vec<serde_json::Value> = state
        .fleet
        .workers()
        .await?
        .into_iter()
        .map(|w| {
            let plugins: Vec<_> = w.plugins.iter().filter(|p| reach(&p.name)).map(|p| {
                serde_json::json!({"name": p.name, "version": p.version, "source": p.source, "loaded_us": p.loaded_us})
            }).collect();
            let wedged: Vec<_> = w.wedged.iter().filter(|j| reach(&j.plugin)).collect();
            serde_json::json!({
                "worker": w.worker,
                "started_us": w.started_us,
                "reported_us": w.reported_us,
                // Fleet-wide: other tenants' jobs too, so operators only.
                "in_flight": operator.then_some(w.in_flight),
                "plugins": plugins,
                "wedged": wedged,
            })
        })
        .collect();
    Ok(Json(serde_json::json!({ "workers": workers })))
}
