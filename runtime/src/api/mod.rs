//! `spool serve`: the HTTP front door to one queue. Stateless (every
//! instance reads and writes the same Redis), so any number can run
//! behind a load balancer. Every `/v1` route takes a tenant token
//! ([`crate::tokens`]) and reaches only that token's tenant.
//!
//! - [`auth`]: the bearer token of a request; failed attempts capped per
//!   client address.
//! - [`error`]: the one error body every route answers with.
//! - [`jobs`]: enqueue (one or a batch), read, wait, cancel; [`events`]
//!   streams a job's progress and end.
//! - [`dead`]: dead letters: list, retry, purge.
//! - [`plugins`]: what serves, history, deploy, rollback, unpin; [`check`]
//!   compiles a deploy before it is stored.
//! - [`cache`]: the result cache's counters and usage; purges.
//! - [`tenants`]: each tenant's queue and quotas; operators set quotas.
//! - [`health`]: `/healthz`, `/readyz`.
//! - [`worker`]: what `spool worker --metrics` serves.

pub mod auth;
pub mod cache;
pub mod check;
pub mod dead;
pub mod error;
pub mod events;
pub mod health;
pub mod jobs;
pub mod plugins;
pub mod tenants;
pub mod worker;

pub use error::ApiError;

use crate::deploy::FleetStore;
use crate::queue::Queue;
use crate::tokens::TokenStore;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post, put};
use std::sync::Arc;

/// What every request handler shares.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The queue served.
    pub queue: Queue,
    /// The tokens that open it.
    pub tokens: TokenStore,
    /// Failed authentications per client address.
    pub failures: Arc<auth::Failures>,
    /// Waits under way may hold this many permits: each holds a Redis
    /// connection of its own.
    pub waits: Arc<tokio::sync::Semaphore>,
    /// The fleet store (plugin versions and pins) of the same prefix.
    pub fleet: FleetStore,
    /// Compiles deployed components before they are stored.
    pub checker: check::Checker,
    /// Deploys checked at once (compiling is CPU-bound).
    pub checks: Arc<tokio::sync::Semaphore>,
    /// Blocking connections, for the library calls that take them (quotas,
    /// cache counters and purges), run off the async runtime.
    pub sync: Arc<crate::redis::SyncRedis>,
    /// Cache purges under way (each scans Redis' keys): one at a time.
    pub purges: Arc<tokio::sync::Semaphore>,
}

/// Waits under way at once per `spool serve`, by default.
pub const MAX_WAITS: usize = 256;

impl AppState {
    /// Serve `queue`, with the tokens of its key prefix.
    pub fn new(queue: Queue, prefix: &str) -> Result<Self, crate::redis::RedisError> {
        let tokens = TokenStore::new(queue.redis().clone(), prefix);
        let fleet = FleetStore::over(queue.redis().clone(), prefix);
        let sync = Arc::new(crate::redis::SyncRedis::new(&queue.config().url)?);
        Ok(AppState {
            queue,
            tokens,
            fleet,
            checker: check::Checker::default(),
            checks: Arc::new(tokio::sync::Semaphore::new(1)),
            sync,
            purges: Arc::new(tokio::sync::Semaphore::new(1)),
            failures: Arc::default(),
            waits: Arc::new(tokio::sync::Semaphore::new(MAX_WAITS)),
        })
    }
}

impl AppState {
    /// At most `n` waits under way at once (at least 1).
    #[must_use]
    pub fn with_max_waits(mut self, n: usize) -> Self {
        self.waits = Arc::new(tokio::sync::Semaphore::new(n.max(1)));
        self
    }
}

/// The tenants a token's request covers: its own, or every tenant the
/// queue has seen for an operator's.
pub(crate) async fn tenants_of(
    state: &AppState,
    token: &crate::tokens::TokenInfo,
) -> Result<Vec<String>, ApiError> {
    match &token.tenants {
        crate::tokens::Tenants::One(t) => Ok(vec![t.clone()]),
        crate::tokens::Tenants::All => Ok(state.queue.tenants().await?),
    }
}

/// The routes; request bodies over `max_body` bytes are refused (413)
/// before they are read whole.
pub fn router(state: AppState, max_body: usize) -> Router {
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/v1/jobs", post(jobs::enqueue))
        .route("/v1/jobs/batch", post(jobs::enqueue_batch))
        .route("/v1/jobs/{id}", get(jobs::get))
        .route("/v1/jobs/{id}/wait", get(jobs::wait))
        .route("/v1/jobs/{id}/events", get(events::stream))
        .route("/v1/jobs/{id}/cancel", post(jobs::cancel))
        .route("/v1/dead", get(dead::list))
        .route("/v1/dead/retry", post(dead::retry))
        .route("/v1/dead/purge", post(dead::purge))
        .route("/v1/plugins", get(plugins::list))
        .route("/v1/plugins/{name}/history", get(plugins::history))
        .route("/v1/plugins/{name}/deploy", post(plugins::deploy))
        .route("/v1/plugins/{name}/rollback", post(plugins::rollback))
        .route("/v1/plugins/{name}/unpin", post(plugins::unpin))
        .route("/v1/cache/stats", get(cache::stats))
        .route("/v1/cache/purge", post(cache::purge))
        .route("/v1/tenants", get(tenants::list))
        .route("/v1/tenants/{tenant}", get(tenants::show))
        .route("/v1/tenants/{tenant}/limits", put(tenants::set_limits))
        .fallback(|| async { ApiError::not_found("route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                axum::http::StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "this route does not take that method (see docs/api.md)",
            )
        })
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(state)
}
