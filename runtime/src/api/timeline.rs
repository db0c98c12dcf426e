//! `GET /v1/stats/timeline`: a tenant's last hour, minute by minute —
//! attempts that succeeded and failed, and run-time percentiles — from the
//! per-minute counters workers flush to Redis
//! ([`crate::metrics::timeline`]). What the dashboard's charts draw.

use super::auth::Authed;
use super::error::ErrorBody;
use super::{ApiError, AppState};
use crate::ids::now_us;
use crate::metrics::timeline::{Counts, key, minute_of};
use crate::tokens::Scope;
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use std::collections::{BTreeMap, HashMap};

/// Most minutes one request reads.
pub const MAX_MINUTES: u64 = 120;

/// `?minutes=60&tenant=acme`.
#[derive(Debug, serde::Deserialize)]
pub struct TimelineQuery {
    #[serde(default)]
    minutes: Option<u64>,
    #[serde(default)]
    tenant: Option<String>,
}

/// Per minute: attempts ok and failed, and percentiles (s; null without
/// runs).
#[derive(Debug, Default, serde::Serialize)]
struct Series {
    ok: Vec<u64>,
    failed: Vec<u64>,
    p50: Vec<Option<f64>>,
    p95: Vec<Option<f64>>,
    p99: Vec<Option<f64>>,
    /// The whole window.
    window: Window,
}

#[derive(Debug, Default, serde::Serialize)]
struct Window {
    ok: u64,
    retried: u64,
    dead: u64,
    p50: Option<f64>,
    p95: Option<f64>,
    p99: Option<f64>,
}

impl Series {
    fn push(&mut self, c: &Counts) {
        self.ok.push(c.ok);
        self.failed.push(c.retried + c.dead);
        self.p50.push(c.quantile(0.5));
        self.p95.push(c.quantile(0.95));
        self.p99.push(c.quantile(0.99));
    }

    fn close(&mut self, all: &Counts) {
        self.window = Window {
            ok: all.ok,
            retried: all.retried,
            dead: all.dead,
            p50: all.quantile(0.5),
            p95: all.quantile(0.95),
            p99: all.quantile(0.99),
        };
    }
}

/// `GET /v1/stats/timeline?minutes=60` (read): `{"tenant", "minutes":
/// [Unix s of each minute, oldest first], "total": series, "plugins":
/// {NAME: series}}`, a series being per-minute `ok`, `failed`, `p50`,
/// `p95`, `p99` (run time, s) and `window` (the sums and percentiles
/// over all the minutes). Workers flush every 5 s.
#[utoipa::path(get, path = "/v1/stats/timeline", tag = "stats", params(("minutes" = Option<u64>, Query, description = "1 to 120, default 60"), ("tenant" = Option<String>, Query, description = "an operator's choice of tenant (default: default)")), responses((status = 200, description = "per-minute series", body = serde_json::Value), (status = 400, description = "minutes out of range", body = ErrorBody), (status = 401, description = "no valid token", body = ErrorBody), (status = 403, description = "another tenant", body = ErrorBody)), security(("bearer" = [])))]
pub async fn timeline(
    State(state): State<AppState>,
    auth: Authed,
    q: Result<Query<TimelineQuery>, QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let token = auth.need(Scope::Read)?;
    let Query(q) = q.map_err(|e| ApiError::invalid("minutes", e.body_text()))?;
    let minutes = q.minutes.unwrap_or(60);
    if minutes == 0 || minutes > MAX_MINUTES {
        return Err(ApiError::invalid(
            "minutes",
            format!("{minutes}; expected 1 to {MAX_MINUTES}"),
        ));
    }
    let tenant = super::lists::one_tenant(&token.tenants, q.tenant)?;
    let last = minute_of(now_us());
    let first = last + 1 - minutes;
    let prefix = &state.queue.config().prefix;
    let mut pipe = redis::pipe();
    for m in first..=last {
        pipe.hgetall(key(prefix, &tenant, m));
    }
    let mut conn = state.queue.redis().conn();
    let hashes: Vec<HashMap<String, u64>> = pipe.query_async(&mut conn).await.map_err(|e| {
        super::error::redis_error(&state.queue.redis().error("read the per-minute counters", e))
    })?;
    Ok(Json(shape(&tenant, first, &hashes)))
}

/// The answer for the minutes from `first`, one hash each.
fn shape(tenant: &str, first: u64, hashes: &[HashMap<String, u64>]) -> serde_json::Value {
    let per_minute: Vec<HashMap<String, Counts>> = hashes
        .iter()
        .map(|h| {
            let mut by_plugin = HashMap::new();
            for (field, n) in h {
                Counts::add_field(&mut by_plugin, field, *n);
            }
            by_plugin
        })
        .collect();
    let names: std::collections::BTreeSet<&String> =
        per_minute.iter().flat_map(HashMap::keys).collect();
    let mut total = Series::default();
    let mut total_all = Counts::default();
    let mut plugins: BTreeMap<&String, (Series, Counts)> = BTreeMap::new();
    for minute in &per_minute {
        let mut sum = Counts::default();
        for name in &names {
            let c = minute.get(*name).cloned().unwrap_or_default();
            sum.add(&c);
            let (series, all) = plugins.entry(name).or_default();
            series.push(&c);
            all.add(&c);
        }
        total.push(&sum);
        total_all.add(&sum);
    }
    total.close(&total_all);
    for (series, all) in plugins.values_mut() {
        series.close(all);
    }
    let minutes: Vec<u64> = (0..per_minute.len() as u64)
        .map(|i| (first + i) * 60)
        .collect();
    serde_json::json!({
        "tenant": tenant,
        "minutes": minutes,
        "total": total,
        "plugins": plugins.into_iter().map(|(n, (s, _))| (n.clone(), s)).collect::<BTreeMap<_, _>>(),
    })
}
