//! `/healthz` (the process answers) and `/readyz` (Redis answers too):
//! what a load balancer or an orchestrator probes. Neither needs a token.

use super::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;

/// `GET /healthz`: 200 while the process serves requests.
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, description = "the process serves", body = serde_json::Value)))]
pub async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({"ok": true}))
}

/// `GET /readyz`: 200 when Redis answers a `PING` within a second, else
/// 503 (the reason goes to the server's log).
#[utoipa::path(get, path = "/readyz", tag = "health", responses((status = 200, description = "Redis answers", body = serde_json::Value), (status = 503, description = "Redis unavailable", body = serde_json::Value)))]
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<serde_json::Value>) {
    let mut conn = state.queue.redis().conn();
    let cmd = redis::cmd("PING");
    let ping = cmd.query_async::<String>(&mut conn);
    let ready = match tokio::time::timeout(std::time::Duration::from_secs(1), ping).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(state.queue.redis().error("ping", e).to_string()),
        Err(_) => Err("no answer to PING within 1s".to_string()),
    };
    match ready {
        Ok(()) => (StatusCode::OK, Json(serde_json::json!({"ready": true}))),
        // The reason (which names the Redis URL) goes to the log only: the
        // probe needs no token.
        Err(why) => {
            tracing::warn!("not ready: {why}");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(serde_json::json!({"ready": false, "reason": "redis unavailable"})),
            )
        }
    }
}
