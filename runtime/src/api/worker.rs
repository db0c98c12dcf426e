//! What a worker answers on `--metrics ADDR`: `/metrics` (Prometheus
//! text), `/healthz` (the process answers) and `/readyz` (200 only while it
//! serves: synced with the fleet store and plugins loaded, not draining).
//! No token: bind it where only the scraper reaches it.

use crate::metrics::{Metrics, render};
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use std::sync::Arc;

/// The worker's routes.
pub fn worker_router(metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/metrics", get(scrape))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .with_state(metrics)
}

async fn scrape(State(m): State<Arc<Metrics>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        render(&m),
    )
}

async fn ready(State(m): State<Arc<Metrics>>) -> (StatusCode, &'static str) {
    if m.is_ready() {
        (StatusCode::OK, "ready\n")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: starting, or draining\n",
        )
    }
}
