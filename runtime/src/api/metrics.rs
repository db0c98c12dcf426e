//! `GET /metrics` of `spool serve`: the queue as Prometheus sees it — jobs
//! ready per tenant and priority, grouped, delayed, running and dead, and
//! each tenant's outcome totals — read from Redis at each scrape, so any
//! server answers for the whole queue. It names every tenant, so it takes
//! an operator's token (Prometheus: `authorization: {credentials: …}`).

use super::auth::Authed;
use super::error::ErrorBody;
use super::{ApiError, AppState};
use crate::metrics::render::esc;
use crate::queue::TenantState;
use crate::tokens::Scope;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use std::fmt::Write as _;

/// Tenants a scrape reports at most (by name); the rest are counted in
/// `spool_queue_tenants_omitted`, so the series stay bounded.
pub const MAX_TENANTS: usize = 1_000;

/// The text of one scrape of `states`, `omitted` tenants left out.
pub fn render(states: &[TenantState], omitted: usize) -> String {
    let mut out = String::new();
    out.push_str("# HELP spool_queue_ready_jobs Jobs in a tenant's ready lists, by priority.\n# TYPE spool_queue_ready_jobs gauge\n");
    for s in states {
        for (priority, n) in ["high", "normal", "low"].iter().zip(s.ready) {
            let _ = writeln!(
                out,
                "spool_queue_ready_jobs{{tenant=\"{}\",priority=\"{priority}\"}} {n}",
                esc(&s.tenant)
            );
        }
    }
    out.push_str("# HELP spool_queue_jobs Jobs of a tenant not ready: waiting in groups, delayed (or backing off), running (leased), dead letters.\n# TYPE spool_queue_jobs gauge\n");
    for s in states {
        for (state, n) in [
            ("grouped", s.grouped),
            ("delayed", s.delayed),
            ("running", s.running),
            ("dead", s.dead_letters),
        ] {
            let _ = writeln!(
                out,
                "spool_queue_jobs{{tenant=\"{}\",state=\"{state}\"}} {n}",
                esc(&s.tenant)
            );
        }
    }
    out.push_str("# HELP spool_queue_finished_total A tenant's jobs that succeeded or died, and retries scheduled, ever.\n# TYPE spool_queue_finished_total counter\n");
    for s in states {
        for (outcome, n) in [
            ("succeeded", s.succeeded_total),
            ("dead", s.dead_total),
            ("retried", s.retried_total),
        ] {
            let _ = writeln!(
                out,
                "spool_queue_finished_total{{tenant=\"{}\",outcome=\"{outcome}\"}} {n}",
                esc(&s.tenant)
            );
        }
    }
    out.push_str("# HELP spool_queue_tenant_paused Whether a tenant's queue is paused.\n# TYPE spool_queue_tenant_paused gauge\n");
    for s in states {
        let _ = writeln!(
            out,
            "spool_queue_tenant_paused{{tenant=\"{}\"}} {}",
            esc(&s.tenant),
            u8::from(s.paused)
        );
    }
    let _ = writeln!(
        out,
        "# HELP spool_queue_tenants_omitted Tenants past the first {MAX_TENANTS} (by name), not reported.\n# TYPE spool_queue_tenants_omitted gauge\nspool_queue_tenants_omitted {omitted}"
    );
    out
}

/// `GET /metrics` (an operator's token, scope read).
#[utoipa::path(get, path = "/metrics", tag = "health", responses((status = 200, description = "Prometheus text format 0.0.4"), (status = 401, description = "no valid token", body = ErrorBody), (status = 403, description = "not an operator's token", body = ErrorBody)), security(("bearer" = [])))]
pub async fn scrape(State(state): State<AppState>, auth: Authed) -> Result<Response, ApiError> {
    auth.need_operator(Scope::Read)?;
    let mut tenants = state.queue.tenants().await?;
    let omitted = tenants.len().saturating_sub(MAX_TENANTS);
    tenants.truncate(MAX_TENANTS);
    let states = state.queue.tenant_states(&tenants, None).await?;
    Ok((
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        render(&states, omitted),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scrape_names_each_tenant_once_per_series_and_escapes_labels() {
        let state = TenantState {
            tenant: "a\"b".into(),
            ready: [1, 2, 3],
            running: 4,
            paused: true,
            ..TenantState::default()
        };
        let text = render(&[state], 7);
        assert!(text.contains("spool_queue_ready_jobs{tenant=\"a\\\"b\",priority=\"low\"} 3"));
        assert!(text.contains("spool_queue_jobs{tenant=\"a\\\"b\",state=\"running\"} 4"));
        assert!(text.contains("spool_queue_tenant_paused{tenant=\"a\\\"b\"} 1"));
        assert!(text.contains("spool_queue_tenants_omitted 7"));
    }
}
