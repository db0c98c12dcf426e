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
//! - [`timeline`]: a tenant's last hour, minute by minute, for charts.
//! - [`tenants`]: each tenant's queue and quotas; operators set quotas.
//! - [`metrics`]: `/metrics`, the queue's depth per tenant (operators).
//! - [`listen`]: plain TCP or TLS, and the client's address.
//! - [`slots`]: waits and streams under way, per server and per tenant.
//! - [`lists`]: a tenant's jobs by status; the workers.
//! - [`ui`]: the dashboard's page, script and style, embedded.
//! - [`health`]: `/healthz`, `/readyz`.
//! - [`worker`]: what `spool worker --metrics` serves.

pub mod auth;
pub mod bodies;
pub mod cache;
pub mod check;
pub mod dead;
pub mod error;
pub mod events;
pub mod health;
pub mod jobs;
pub mod listen;
pub mod lists;
pub mod metrics;
pub mod openapi;
pub mod plugins;
pub mod slots;
pub mod tenants;
pub mod timeline;
pub mod ui;
pub mod worker;

pub use error::ApiError;

use crate::deploy::FleetStore;
use crate::queue::Queue;
use crate::tokens::TokenStore;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use std::sync::Arc;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

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
    /// Waits and streams per tenant (a quarter of `waits`).
    pub per_tenant: Arc<slots::PerTenant>,
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
            per_tenant: Arc::new(slots::PerTenant::new(MAX_WAITS / 4)),
        })
    }
}

impl AppState {
    /// At most `n` waits under way at once (at least 1).
    #[must_use]
    pub fn with_max_waits(mut self, n: usize) -> Self {
        self.waits = Arc::new(tokio::sync::Semaphore::new(n.max(1)));
        self.per_tenant = Arc::new(slots::PerTenant::new(n / 4));
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

/// The routes, and the OpenAPI document generated from the same list
/// (each handler's `#[utoipa::path]`): a route cannot be served without
/// being documented.
pub fn routes() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(openapi::base())
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(metrics::scrape))
        .routes(routes!(jobs::enqueue))
        .routes(routes!(lists::jobs))
        .routes(routes!(lists::workers))
        .routes(routes!(lists::whoami))
        .routes(routes!(jobs::enqueue_batch))
        .routes(routes!(jobs::get))
        .routes(routes!(jobs::wait))
        .routes(routes!(events::stream))
        .routes(routes!(jobs::cancel))
        .routes(routes!(dead::list))
        .routes(routes!(dead::retry))
        .routes(routes!(dead::purge))
        .routes(routes!(plugins::list))
        .routes(routes!(plugins::history))
        .routes(routes!(plugins::deploy))
        .routes(routes!(plugins::rollback))
        .routes(routes!(plugins::unpin))
        .routes(routes!(cache::stats))
        .routes(routes!(cache::purge))
        .routes(routes!(tenants::list))
        .routes(routes!(tenants::show))
        .routes(routes!(tenants::set_limits))
        .routes(routes!(timeline::timeline))
        .split_for_parts()
}

/// The routes; request bodies over `max_body` bytes are refused (413)
/// before they are read whole.
pub fn router(state: AppState, max_body: usize) -> Router {
    let (routes, spec) = routes();
    let spec = Arc::new(spec.to_json().unwrap_or_default());
    routes
        .merge(ui::routes())
        .route(
            "/v1/openapi.json",
            get(move || async move {
                (
                    [(axum::http::header::CONTENT_TYPE, "application/json")],
                    spec.as_str().to_owned(),
                )
            }),
        )
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
