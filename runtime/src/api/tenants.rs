//! `/v1/tenants`: each tenant's queue (queued, running, dead) and its
//! quotas with what it uses of them. A tenant's token sees its own; only
//! an operator's token (`--all-tenants`, scope admin) changes quotas: a
//! tenant must not lift its own limits.

use super::auth::Authed;
use super::error::ErrorBody;
use super::{ApiError, AppState, tenants_of};
use crate::tenants::store::Target;
use crate::tenants::{Limit, TenantStore};
use crate::tokens::{Scope, TokenInfo};
use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use std::collections::BTreeMap;

/// `GET /v1/tenants` (read): the queue state of the token's tenant (every
/// tenant the queue has seen, for an operator).
#[utoipa::path(get, path = "/v1/tenants", tag = "tenants", responses((status = 200, description = "{tenants: [state]}", body = serde_json::Value), (status = 401, description = "no valid token", body = ErrorBody), (status = 403, description = "the token lacks the scope or the tenant", body = ErrorBody)), security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    auth: Authed,
) -> Result<Json<serde_json::Value>, ApiError> {
    let token = auth.need(Scope::Read)?;
    let tenants = tenants_of(&state, token).await?;
    let states = state.queue.tenant_states(&tenants, None).await?;
    Ok(Json(serde_json::json!({ "tenants": states })))
}

/// The tenant of the path, checked and within the token's reach (403
/// beyond it: tenant names are not secrets, job ids are).
fn tenant_in(
    token: &TokenInfo,
    tenant: Result<Path<String>, PathRejection>,
) -> Result<String, ApiError> {
    let Path(tenant) = tenant.map_err(|e| ApiError::invalid("tenant", e.body_text()))?;
    crate::ids::check_tenant(&tenant).map_err(|e| ApiError::invalid("tenant", e))?;
    if !token.tenants.reaches(&tenant) {
        return Err(ApiError::forbidden(format!(
            "token {} is for tenant {}; it cannot read tenant {tenant}",
            token.id, token.tenants
        )));
    }
    Ok(tenant)
}

/// A blocking Redis read or write on the API's pool, off the async
/// runtime.
async fn blocking<T: Send + 'static>(
    state: &AppState,
    op: &'static str,
    f: impl Fn(&mut crate::redis::SyncConn) -> redis::RedisResult<T> + Send + 'static,
) -> Result<T, ApiError> {
    let sync = state.sync.clone();
    let done = tokio::task::spawn_blocking(move || {
        sync.with_connection(f)
            .map_err(|e| crate::redis::RedisError::classify(sync.url(), op, e))
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    done.map_err(|e| super::error::redis_error(&e))
}

/// `GET /v1/tenants/{tenant}` (read): its queue state, and its quotas
/// (`{NAME: {value, from, used?}}`, `0` for no limit).
#[utoipa::path(get, path = "/v1/tenants/{tenant}", tag = "tenants", params(("tenant" = String, Path)), responses((status = 200, description = "{tenant, queue, quotas}", body = serde_json::Value), (status = 401, description = "no valid token", body = ErrorBody), (status = 403, description = "the token lacks the scope or the tenant", body = ErrorBody)), security(("bearer" = [])))]
pub async fn show(
    State(state): State<AppState>,
    auth: Authed,
    tenant: Result<Path<String>, PathRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let token = auth.need(Scope::Read)?;
    let tenant = tenant_in(token, tenant)?;
    let prefix = state.queue.config().prefix.clone();
    let t = tenant.clone();
    let (limits, kv, cache) = blocking(&state, "read tenant limits", move |c| {
        let limits = TenantStore::new(&prefix)
            .read(c, &[&t])?
            .pop()
            .unwrap_or_default();
        let kv = crate::kv::usage(c, &prefix, &t)?;
        let cache = crate::cache::usage(c, &prefix, &t)?;
        Ok((limits, kv, cache))
    })
    .await?;
    let queue = state
        .queue
        .tenant_states(std::slice::from_ref(&tenant), None)
        .await?;
    let quotas = limits.to_json(|l| match l {
        Limit::KvBytes => Some(kv.bytes),
        Limit::KvKeys => Some(kv.keys),
        Limit::CacheBytes => Some(cache.bytes),
        _ => None,
    });
    Ok(Json(serde_json::json!({
        "tenant": tenant,
        "queue": queue.first(),
        "quotas": quotas,
    })))
}

/// `PUT /v1/tenants/{tenant}/limits` (admin, operator's token): a JSON
/// object of quota names (as `spool tenants set` spells them, `_` or `-`)
/// to values: a number, a string as on the command line (`64MiB`,
/// `100/s`, `unlimited`), or `"default"`/`null` to remove the tenant's
/// own value. Every value is checked before any is written. Workers apply
/// a change within 2 s. Answers the quotas now.
#[utoipa::path(put, path = "/v1/tenants/{tenant}/limits", tag = "tenants", params(("tenant" = String, Path)), request_body(content = serde_json::Value, description = "{QUOTA: number, string or null}"), responses((status = 200, description = "{tenant, queue, quotas}", body = serde_json::Value), (status = 400, description = "an unknown quota or a bad value", body = ErrorBody), (status = 401, description = "no valid token", body = ErrorBody), (status = 403, description = "the token lacks the scope or the tenant", body = ErrorBody)), security(("bearer" = [])))]
pub async fn set_limits(
    State(state): State<AppState>,
    auth: Authed,
    tenant: Result<Path<String>, PathRejection>,
    body: Result<Json<BTreeMap<String, serde_json::Value>>, JsonRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let token = auth.need_operator(Scope::Admin)?;
    let tenant = tenant_in(token, tenant)?;
    let Json(body) = body.map_err(|e| super::jobs::bad_body(&e))?;
    let changes = plan(&body)?;
    let prefix = state.queue.config().prefix.clone();
    let t = tenant.clone();
    blocking(&state, "set tenant limits", move |c| {
        let store = TenantStore::new(&prefix);
        for (limit, value) in &changes {
            store.set(c, &Target::Tenant(t.clone()), *limit, *value)?;
        }
        Ok(())
    })
    .await?;
    show(State(state), auth, Ok(Path(tenant))).await
}

/// The changes a body asks for, each checked; `None` removes a value.
fn plan(body: &BTreeMap<String, serde_json::Value>) -> Result<Vec<(Limit, Option<u64>)>, ApiError> {
    if body.is_empty() {
        return Err(ApiError::invalid(
            "body",
            format!(
                "no quotas named; expected some of {}",
                Limit::ALL.map(Limit::name).join(", ")
            ),
        ));
    }
    let mut changes = Vec::new();
    for (name, value) in body {
        let limit = Limit::named(&name.replace('_', "-")).ok_or_else(|| {
            ApiError::invalid(
                name,
                format!(
                    "unknown quota; expected one of {}",
                    Limit::ALL.map(Limit::name).join(", ")
                ),
            )
        })?;
        let text = match value {
            serde_json::Value::Null => None,
            serde_json::Value::String(s) if s.trim() == "default" => None,
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Number(n) => Some(n.to_string()),
            other => {
                return Err(ApiError::invalid(
                    name,
                    format!("{other}; expected a number, a string such as \"64MiB\", or null"),
                ));
            }
        };
        let parsed = match text {
            None => None,
            Some(t) => Some(limit.parse(&t).map_err(|e| ApiError::invalid(name, e))?),
        };
        changes.push((limit, parsed));
    }
    Ok(changes)
}
