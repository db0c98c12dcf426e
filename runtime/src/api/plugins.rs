//! `/v1/plugins`: what the fleet serves of the token's tenant, each
//! plugin's history, and deploy, rollback and unpin through the fleet
//! store ([`crate::deploy`]), as `spool plugins` does. A plugin is named
//! in the path as `NAME` (the token's tenant) or `TENANT%2FNAME`.

use super::auth::Authed;
use super::error::ErrorBody;
use super::jobs::plugin_for;
use super::{ApiError, AppState};
use crate::deploy::{DeployError, MAX_DEPLOY_BYTES, VersionEntry, refusal_tenant, served};
use crate::ids::PluginName;
use crate::tokens::{Scope, TokenInfo};
use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::time::Duration;

/// How long a deploy waits for the one before it to be checked.
const CHECK_QUEUE: Duration = Duration::from_secs(30);

/// Bytes of component versions one tenant may keep in the fleet store
/// through the API (every version of every plugin its histories hold).
pub const MAX_TENANT_DEPLOY_BYTES: u64 = 256 << 20;
/// Plugins with a history one tenant may have, through the API.
pub const MAX_TENANT_PLUGINS: usize = 100;
/// The largest manifest a deploy carries (it is copied into the history
/// and the pins, which every worker reads).
pub const MAX_MANIFEST_BYTES: usize = 64 << 10;

/// `GET /v1/plugins` (read): the versions served of the token's tenant's
/// plugins (every tenant's for an operator), the pins, and the versions
/// workers refused and why.
#[utoipa::path(get, path = "/v1/plugins", tag = "plugins", responses((status = 200, description = "{plugins, pinned, refused, workers}", body = serde_json::Value), (status = 401, description = "no valid token", body = ErrorBody), (status = 403, description = "the token lacks the scope or the tenant", body = ErrorBody)), security(("bearer" = [])))]
pub async fn list(State(state): State<AppState>, auth: Authed) -> Result<Response, ApiError> {
    let token = auth.need(Scope::Read)?;
    let (workers, pinned) = tokio::try_join!(state.fleet.workers(), state.fleet.pinned())?;
    let mine = |name: &str| PluginName::parse(name).is_ok_and(|n| token.tenants.reaches(&n.tenant));
    let plugins: Vec<_> = served(&workers, &pinned)
        .into_iter()
        .filter(|row| mine(&row.name))
        .collect();
    let pins: serde_json::Map<String, serde_json::Value> = pinned
        .iter()
        .filter(|(name, _)| token.tenants.reaches(&name.tenant))
        .map(|(name, entry)| (name.to_string(), serde_json::json!(entry)))
        .collect();
    let refused: Vec<_> = workers
        .iter()
        .flat_map(|w| w.rejected.iter().map(move |r| (w, r)))
        .filter(|(w, r)| refusal_tenant(&w.dir, &r.path).is_some_and(|t| token.tenants.reaches(&t)))
        .map(|(w, r)| {
            // A tenant learns the file under the plugins directory, not
            // where the worker keeps it.
            let within = |text: &str| text.replace(&format!("{}/", w.dir), "");
            serde_json::json!({"worker": w.worker, "path": within(&r.path), "why": within(&r.why)})
        })
        .collect();
    let body = serde_json::json!({
        "plugins": plugins,
        "pinned": pins,
        "refused": refused,
        "workers": workers.len(),
    });
    Ok(Json(body).into_response())
}

/// The plugin of the path, within the token's reach.
fn named(
    token: &TokenInfo,
    name: Result<Path<String>, PathRejection>,
    doing: &str,
) -> Result<PluginName, ApiError> {
    let Path(name) = name.map_err(|e| ApiError::invalid("name", e.body_text()))?;
    plugin_for(token, &name, doing)
}

/// `GET /v1/plugins/{name}/history` (read): the recorded versions, newest
/// first, which one serves and whether it is pinned. 404 for a plugin
/// with no history.
#[utoipa::path(get, path = "/v1/plugins/{name}/history", tag = "plugins", params(("name" = String, Path, description = "NAME or TENANT%2FNAME")), responses((status = 200, description = "{name, pinned, current, versions}", body = serde_json::Value), (status = 404, description = "no history", body = ErrorBody), (status = 401, description = "no valid token", body = ErrorBody), (status = 403, description = "the token lacks the scope or the tenant", body = ErrorBody)), security(("bearer" = [])))]
pub async fn history(
    State(state): State<AppState>,
    auth: Authed,
    name: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let token = auth.need(Scope::Read)?;
    let name = named(token, name, "read plugins")?;
    let (history, mut pinned) = tokio::try_join!(state.fleet.history(&name), state.fleet.pinned())?;
    if history.is_empty() {
        return Err(ApiError::not_found(&format!("plugin {name}")));
    }
    let pin = pinned.remove(&name);
    let current = crate::deploy::current(pin.clone(), &history).map(|e| e.digest);
    let history: Vec<VersionEntry> = history.into_iter().map(without_paths).collect();
    let body = serde_json::json!({
        "name": name.to_string(),
        "pinned": pin,
        "current": current,
        "versions": history,
    });
    Ok(Json(body).into_response())
}

/// A history entry without the server path a directory version's `by`
/// names (`worker ID: /srv/plugins/acme/x.wasm` → `worker ID: acme/x.wasm`).
fn without_paths(mut e: VersionEntry) -> VersionEntry {
    if let Some((who, path)) = e.by.split_once(": /") {
        let mut parts: Vec<&str> = path.rsplit('/').take(2).collect();
        parts.reverse();
        e.by = format!("{who}: {}", parts.join("/"));
    }
    e
}

/// A deploy as JSON, for a component with a manifest.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeployBody {
    /// The component's bytes, base64.
    component_base64: String,
    /// The manifest (TOML text) to deploy with it.
    #[serde(default)]
    manifest: Option<String>,
}

/// The component and manifest of a deploy's body: the raw component
/// (`application/wasm` or `application/octet-stream`), or JSON
/// `{"component_base64", "manifest"}`.
fn deploy_inputs(headers: &HeaderMap, body: &[u8]) -> Result<(Vec<u8>, Option<String>), ApiError> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.trim_start().starts_with("application/json"));
    if !json {
        return Ok((body.to_vec(), None));
    }
    let b: DeployBody = serde_json::from_slice(body).map_err(|e| {
        ApiError::invalid(
            "body",
            format!("{e}; expected {{\"component_base64\", \"manifest\"?}}"),
        )
    })?;
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b.component_base64.trim())
        .map_err(|e| ApiError::invalid("component_base64", format!("not base64: {e}")))?;
    Ok((bytes, b.manifest))
}

/// Read a deploy's body, at most [`MAX_DEPLOY_BYTES`].
async fn read_body(body: Body) -> Result<Bytes, ApiError> {
    let limit = usize::try_from(MAX_DEPLOY_BYTES).unwrap_or(usize::MAX);
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let too_large =
            std::iter::successors(Some(&e as &(dyn std::error::Error + 'static)), |e| {
                e.source()
            })
            .any(<dyn std::error::Error>::is::<http_body_util::LengthLimitError>);
        if too_large {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too-large",
                format!("the component is over {MAX_DEPLOY_BYTES} bytes, the most a deploy takes"),
            )
        } else {
            ApiError::invalid("body", format!("the body could not be read: {e}"))
        }
    })
}

/// `POST /v1/plugins/{name}/deploy` (deploy): check the component as a
/// worker would (it must load and compile, its manifest parse), store it
/// and pin it on every worker. 201 with the version entry; 200 when that
/// exact version was pinned already. A component that does not load is
/// refused (400, `invalid-plugin`) and nothing changes.
#[utoipa::path(post, path = "/v1/plugins/{name}/deploy", tag = "plugins", params(("name" = String, Path, description = "NAME or TENANT%2FNAME")), request_body(content((Vec<u8> = "application/wasm"), (DeployBody = "application/json")), description = "the component, or JSON with a manifest"), responses((status = 201, description = "deployed and pinned: {name, version, created}", body = serde_json::Value), (status = 200, description = "these bytes were pinned already", body = serde_json::Value), (status = 400, description = "invalid-plugin: the component or manifest does not load", body = ErrorBody), (status = 413, description = "over 64 MiB", body = ErrorBody), (status = 503, description = "other deploys are being checked", body = ErrorBody), (status = 401, description = "no valid token", body = ErrorBody), (status = 403, description = "the token lacks the scope or the tenant", body = ErrorBody)), security(("bearer" = [])))]
pub async fn deploy(
    State(state): State<AppState>,
    auth: Authed,
    name: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let token = auth.need(Scope::Deploy)?;
    let name = named(token, name, "deploy plugins")?;
    // Checks compile the component: one at a time, and the body is read
    // only once this deploy's turn comes (no pile of 64 MiB bodies).
    let Ok(Ok(turn)) =
        tokio::time::timeout(CHECK_QUEUE, state.checks.clone().acquire_owned()).await
    else {
        return Err(ApiError::busy(
            "other deploys are being checked on this server; try again shortly",
            Duration::from_secs(5),
        ));
    };
    let (bytes, manifest) = deploy_inputs(&headers, &read_body(body).await?)?;
    check_grants(token, manifest.as_deref())?;
    check_room(&state, &name, bytes.len() as u64, manifest.as_deref()).await?;
    let checker = state.checker.clone();
    let shown = name.clone();
    let (bytes, manifest, sdk) =
        // The turn goes with the compile: a client that leaves does not
        // free it while the compile still runs.
        tokio::task::spawn_blocking(move || {
            let _turn = turn;
            checker.check(&shown, bytes, manifest)
        })
            .await
            .map_err(|e| {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
            })??;
    let by = format!("token {} ({})", token.id, token.name);
    let (entry, new) = state
        .fleet
        .deploy(&name, &bytes, sdk, manifest, &by)
        .await?;
    let status = if new {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let body = serde_json::json!({"name": name.to_string(), "version": entry, "created": new});
    Ok((status, Json(body)).into_response())
}

/// Whether the tenant of `name` has room for a version of `size` bytes:
/// the fleet store is shared, so one tenant's deploys must not fill Redis
/// (nor the pins every worker reads).
async fn check_room(
    state: &AppState,
    name: &PluginName,
    size: u64,
    manifest: Option<&str>,
) -> Result<(), ApiError> {
    if manifest.is_some_and(|m| m.len() > MAX_MANIFEST_BYTES) {
        return Err(ApiError {
            field: Some("manifest".into()),
            ..ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too-large",
                format!("the manifest is over {MAX_MANIFEST_BYTES} bytes, the most a deploy takes"),
            )
        });
    }
    let names: Vec<PluginName> = state
        .fleet
        .names()
        .await?
        .into_iter()
        .filter(|n| n.tenant == name.tenant)
        .collect();
    if !names.contains(name) && names.len() >= MAX_TENANT_PLUGINS {
        return Err(quota(format!(
            "tenant {} has {} plugins in the fleet store, its most; forget one first (spool plugins forget)",
            name.tenant,
            names.len()
        )));
    }
    let mut stored = std::collections::BTreeSet::new();
    let mut used = 0u64;
    for n in &names {
        for e in state.fleet.history(n).await? {
            if stored.insert((n.clone(), e.digest.clone())) {
                used += e.size;
            }
        }
    }
    if used.saturating_add(size) > MAX_TENANT_DEPLOY_BYTES {
        return Err(quota(format!(
            "tenant {} keeps {used} bytes of plugin versions; {size} more would pass its {MAX_TENANT_DEPLOY_BYTES}",
            name.tenant
        )));
    }
    Ok(())
}

fn quota(message: String) -> ApiError {
    ApiError {
        field: Some("component".into()),
        ..ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "over-quota", message)
    }
}

/// A manifest may grant capabilities only through an operator's deploy:
/// a tenant cannot give its own plugin what the fleet's operator did not.
/// (A manifest that does not parse is left to the check, which names why.)
fn check_grants(token: &TokenInfo, manifest: Option<&str>) -> Result<(), ApiError> {
    let Some(text) = manifest else { return Ok(()) };
    if matches!(token.tenants, crate::tokens::Tenants::All) {
        return Ok(());
    }
    let parsed = crate::plugins::manifest::parse(std::path::Path::new("manifest.toml"), text);
    if parsed.is_ok_and(|m| m.capabilities.network) {
        return Err(ApiError {
            field: Some("manifest".into()),
            ..ApiError::forbidden(format!(
                "token {} is for tenant {}: [capabilities] network = true is granted by operators only (spool plugins deploy, or an --all-tenants token)",
                token.id, token.tenants
            ))
        });
    }
    Ok(())
}

/// `{"to": "DIGEST-PREFIX"}` of a rollback (optional).
#[derive(Debug, Default, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RollbackBody {
    /// A digest, or a unique prefix of one, from the history.
    #[serde(default)]
    to: Option<String>,
}

/// `POST /v1/plugins/{name}/rollback` (deploy), body optional
/// `{"to": "DIGEST"}`: pin the version before the current one (or the one
/// named). Answers `{"from", "to"}`; 409 when the pin changed meanwhile
/// (another deploy or rollback: look and try again) or there is nothing
/// to go back to.
#[utoipa::path(post, path = "/v1/plugins/{name}/rollback", tag = "plugins", params(("name" = String, Path, description = "NAME or TENANT%2FNAME")), request_body(content = Option<RollbackBody>, description = "optional {to: DIGEST-PREFIX}"), responses((status = 200, description = "{name, from, to}", body = serde_json::Value), (status = 400, description = "to names no version", body = ErrorBody), (status = 409, description = "the pin changed meanwhile, or nothing to go back to", body = ErrorBody), (status = 401, description = "no valid token", body = ErrorBody), (status = 403, description = "the token lacks the scope or the tenant", body = ErrorBody)), security(("bearer" = [])))]
pub async fn rollback(
    State(state): State<AppState>,
    auth: Authed,
    name: Result<Path<String>, PathRejection>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let token = auth.need(Scope::Deploy)?;
    let name = named(token, name, "roll back plugins")?;
    let body: RollbackBody = if body.iter().all(u8::is_ascii_whitespace) {
        RollbackBody::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::invalid("body", format!("{e}; expected {{\"to\"?: DIGEST}}")))?
    };
    let by = format!("token {} ({})", token.id, token.name);
    let (from, to) = state.fleet.rollback(&name, body.to.as_deref(), &by).await?;
    Ok(Json(serde_json::json!({"name": name.to_string(), "from": from, "to": to})).into_response())
}

/// `POST /v1/plugins/{name}/unpin` (deploy): remove the pin a deploy or
/// rollback set; workers serve their directory's file again. Answers the
/// entry that was pinned (`null` if none was).
#[utoipa::path(post, path = "/v1/plugins/{name}/unpin", tag = "plugins", params(("name" = String, Path, description = "NAME or TENANT%2FNAME")), responses((status = 200, description = "{name, unpinned}", body = serde_json::Value), (status = 401, description = "no valid token", body = ErrorBody), (status = 403, description = "the token lacks the scope or the tenant", body = ErrorBody)), security(("bearer" = [])))]
pub async fn unpin(
    State(state): State<AppState>,
    auth: Authed,
    name: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let token = auth.need(Scope::Deploy)?;
    let name = named(token, name, "unpin plugins")?;
    let was: Option<VersionEntry> = state.fleet.unpin(&name).await?;
    Ok(Json(serde_json::json!({"name": name.to_string(), "unpinned": was})).into_response())
}

impl From<DeployError> for ApiError {
    fn from(e: DeployError) -> Self {
        let message = e.to_string();
        let conflict = |retryable| ApiError {
            retryable,
            ..ApiError::new(StatusCode::CONFLICT, "conflict", message.clone())
        };
        match e {
            DeployError::Redis(r) => super::error::redis_error(&r),
            DeployError::TooLarge { .. } => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too-large", message)
            }
            DeployError::NoHistory { name } => ApiError::not_found(&format!("plugin {name}")),
            DeployError::UnknownVersion { .. } | DeployError::AmbiguousVersion { .. } => {
                ApiError::invalid("to", message)
            }
            DeployError::Conflict { .. } => conflict(true),
            DeployError::NoPrevious { .. }
            | DeployError::BlobMissing { .. }
            | DeployError::Pinned { .. } => conflict(false),
            DeployError::Corrupt { .. } => {
                tracing::error!("{message}");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "corrupt", message)
            }
        }
    }
}
