//! `/healthz` (the process answers) and `/readyz` (Redis answers too):
//! what a load balancer or an orchestrator probes. Neither needs a token.

use super::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;

/// `GET /healthz`: 200 while the process serves requests.
pub async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({"ok": true}))
}

/// `GET /readyz`: 200 when Redis answers a `PING` within a second, else
/// 503 with the reason.
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<serde_json::Value>) {
    let mut conn = state.queue.redis().conn();
    let cmd = redis::cmd("PING");
    let ping = cmd.query_async::<String>(&mut conn);
    match tokio::time::timeout(std::time::Duration::from_secs(1), ping).await {
        Ok(Ok(_)) => (StatusCode::OK, Json(serde_json::json!({"ready": true}))),
        Ok(Err(e)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(
                serde_json::json!({"ready": false, "reason": state.queue.redis().error("ping", e).to_string()}),
            ),
        ),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(
                serde_json::json!({"ready": false, "reason": format!("redis at {} did not answer within 1s", state.queue.redis().url())}),
            ),
        ),
    }
}
