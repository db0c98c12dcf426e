//! `/v1/cache`: what the result cache answered for the token's tenant,
//! what it holds, and purges within the tenant. A purge deletes the
//! entries in Redis, then tells every worker to drop them from memory
//! (the same event `spool cache purge` sends).

use super::auth::Authed;
use super::error::ErrorBody;
use super::{ApiError, AppState, tenants_of};
use crate::cache::Scope as CacheScope;
use crate::tokens::{Scope, Tenants};
use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use std::time::Duration;

/// `GET /v1/cache/stats` (read): per plugin of the token's tenant (every
/// tenant's for an operator), the jobs answered from a worker's memory,
/// from Redis, run (miss) and that skipped the cache, with the hit ratio;
/// per tenant, the bytes and entries cached now. No key scan: counters
/// and each tenant's ledger only.
#[utoipa::path(get, path = "/v1/cache/stats", tag = "cache", responses((status = 200, description = "{plugins, tenants}", body = serde_json::Value), (status = 401, description = "no valid token", body = ErrorBody), (status = 403, description = "the token lacks the scope or the tenant", body = ErrorBody)), security(("bearer" = [])))]
pub async fn stats(
    State(state): State<AppState>,
    auth: Authed,
) -> Result<Json<serde_json::Value>, ApiError> {
    let token = auth.need(Scope::Read)?;
    let tenants = tenants_of(&state, token).await?;
    let prefix = state.queue.config().prefix.clone();
    let reach = token.tenants.clone();
    let sync = state.sync.clone();
    let read = tokio::task::spawn_blocking(move || {
        let keep = |plugin: &str| {
            plugin
                .split_once('/')
                .is_some_and(|(tenant, _)| reach.reaches(tenant))
        };
        let plugins = crate::cache::read_counters(&sync, &prefix, keep)?;
        let usage = sync.with_connection(|c| {
            tenants
                .iter()
                .map(|t| crate::cache::usage(c, &prefix, t).map(|u| (t.clone(), u)))
                .collect::<redis::RedisResult<Vec<_>>>()
        })?;
        Ok((plugins, usage))
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    let (plugins, usage) = read.map_err(|e: redis::RedisError| {
        super::error::redis_error(&crate::redis::RedisError::classify(
            state.sync.url(),
            "read the cache counters",
            e,
        ))
    })?;
    let plugins: Vec<_> = plugins
        .iter()
        .map(|s| {
            serde_json::json!({
                "plugin": s.plugin,
                "hit_memory": s.hit_memory,
                "hit_redis": s.hit_redis,
                "miss": s.miss,
                "bypass": s.bypass,
                "hit_ratio": s.hit_ratio(),
            })
        })
        .collect();
    let tenants: serde_json::Map<String, serde_json::Value> = usage
        .into_iter()
        .map(|(t, u)| (t, serde_json::json!({"bytes": u.bytes, "entries": u.keys})))
        .collect();
    Ok(Json(
        serde_json::json!({"plugins": plugins, "tenants": tenants}),
    ))
}

/// What a purge names; the conditions combine. A tenant's token purges
/// within its tenant only (`tenant` is for operators).
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PurgeBody {
    /// Entries of this plugin (`NAME` or `TENANT/NAME`).
    #[serde(default)]
    plugin: Option<String>,
    /// Entries of this plugin version (64 hex digits).
    #[serde(default)]
    version: Option<String>,
    /// The entry with this cache key (`cache_key` of a job record).
    #[serde(default)]
    key: Option<String>,
    /// Entries of this tenant (an operator's token only).
    #[serde(default)]
    tenant: Option<String>,
    /// Everything within reach (never implied by an empty body).
    #[serde(default)]
    all: bool,
}

/// The scope a purge request names, held to the token's tenant.
fn scope_of(reach: &Tenants, b: PurgeBody) -> Result<CacheScope, ApiError> {
    let named = b.plugin.is_some() || b.version.is_some() || b.key.is_some() || b.tenant.is_some();
    if named == b.all {
        return Err(ApiError::invalid(
            "all",
            if b.all {
                "both all and a scope given; expected one"
            } else {
                "nothing named; expected plugin, version, key or tenant, or \"all\": true"
            },
        ));
    }
    let (tenant, plugin) = match reach {
        Tenants::All => (b.tenant, b.plugin),
        Tenants::One(own) => {
            if b.tenant.as_ref().is_some_and(|t| t != own) {
                return Err(ApiError::forbidden(format!(
                    "this token is for tenant {own}; it cannot purge the cache of another"
                )));
            }
            let plugin = b.plugin.map(|p| {
                if p.contains('/') {
                    p
                } else {
                    format!("{own}/{p}")
                }
            });
            (Some(own.clone()), plugin)
        }
    };
    CacheScope::parse(plugin, b.version, tenant, b.key, "")
        .map_err(|(field, message)| ApiError::invalid(field, message))
}

/// `POST /v1/cache/purge` (admin): `{"plugin"?, "version"?, "key"?,
/// "tenant"?}` or `{"all": true}`. One purge at a time per server (it
/// scans Redis' keys). Answers `{"deleted": n, "scope": "…"}` once the
/// entries are gone from Redis and the workers were told.
#[utoipa::path(post, path = "/v1/cache/purge", tag = "cache", request_body = PurgeBody, responses((status = 200, description = "{deleted, scope}", body = serde_json::Value), (status = 400, description = "nothing named, or a bad field", body = ErrorBody), (status = 503, description = "another purge is under way", body = ErrorBody), (status = 401, description = "no valid token", body = ErrorBody), (status = 403, description = "the token lacks the scope or the tenant", body = ErrorBody)), security(("bearer" = [])))]
pub async fn purge(
    State(state): State<AppState>,
    auth: Authed,
    body: Result<Json<PurgeBody>, JsonRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let token = auth.need(Scope::Admin)?;
    let Json(body) = body.map_err(|e| super::jobs::bad_body(&e))?;
    let scope = scope_of(&token.tenants, body)?;
    let Ok(turn) = state.purges.clone().try_acquire_owned() else {
        return Err(ApiError::busy(
            "another purge is under way on this server; try again shortly",
            Duration::from_secs(2),
        ));
    };
    let prefix = state.queue.config().prefix.clone();
    let sync = state.sync.clone();
    let s = scope.clone();
    let deleted = tokio::task::spawn_blocking(move || {
        // The turn goes with the scan: a client that leaves does not free
        // it while the scan still runs.
        let _turn = turn;
        crate::cache::purge(&sync, &prefix, &s, |_, _| {})
            .map_err(|e| crate::redis::RedisError::classify(sync.url(), "purge the cache", e))
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?
    .map_err(|e| super::error::redis_error(&e))?;
    let json = serde_json::to_string(&scope).expect("a scope serializes");
    state.fleet.announce_purge(&json).await?;
    Ok(Json(
        serde_json::json!({"deleted": deleted, "scope": scope.describe()}),
    ))
}
