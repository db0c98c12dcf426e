//! Who is asking: the bearer token of every `/v1` request, checked against
//! the token store, and a cap on failed attempts per client address so
//! that tokens cannot be guessed at speed. The token itself is never
//! logged; its id is, once it is known.

use super::ApiError;
use super::AppState;
use crate::locks::lock;
use crate::tokens::{Scope, TokenInfo};
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::StatusCode;
use axum::http::request::Parts;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failed authentications one address may make per window before it is
/// answered 429 without a look at its token.
const MAX_FAILURES: u32 = 20;
const WINDOW: Duration = Duration::from_secs(60);
/// Addresses tracked at most (the oldest windows are dropped beyond it).
const MAX_TRACKED: usize = 10_000;

/// Failed authentications per client address, in this process.
#[derive(Debug, Default)]
pub struct Failures {
    by_addr: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl Failures {
    /// How long `addr` must wait, if it failed too often of late.
    fn blocked(&self, addr: IpAddr) -> Option<Duration> {
        let map = lock(&self.by_addr);
        let (since, n) = map.get(&addr)?;
        let left = WINDOW.checked_sub(since.elapsed())?;
        (*n >= MAX_FAILURES).then_some(left)
    }

    fn failed(&self, addr: IpAddr) {
        let mut map = lock(&self.by_addr);
        if map.len() >= MAX_TRACKED && !map.contains_key(&addr) {
            map.retain(|_, (since, _)| since.elapsed() < WINDOW);
            // Still full of live windows: this address goes uncounted
            // rather than the map growing (or being scanned on every
            // failure) without bound.
            if map.len() >= MAX_TRACKED {
                return;
            }
        }
        let entry = map.entry(addr).or_insert((Instant::now(), 0));
        if entry.0.elapsed() >= WINDOW {
            *entry = (Instant::now(), 0);
        }
        entry.1 += 1;
    }
}

/// The token of an `Authorization` header: scheme `Bearer`, in any case
/// (RFC 7235).
fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// A request's valid token.
#[derive(Debug, Clone)]
pub struct Authed(pub TokenInfo);

impl Authed {
    /// The token's settings if it may do `scope` at all.
    pub fn need(&self, scope: Scope) -> Result<&TokenInfo, ApiError> {
        if self.0.scopes.contains(&scope) {
            Ok(&self.0)
        } else {
            Err(ApiError::forbidden(format!(
                "token {} lacks the {scope} scope (it has {}); make one with spool tokens create --scopes {scope}",
                self.0.id,
                self.0
                    .scopes
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(",")
            )))
        }
    }
}

impl Authed {
    /// The token's settings if it is an operator's (`--all-tenants`) with
    /// `scope`: for what shows every tenant at once.
    pub fn need_operator(&self, scope: Scope) -> Result<&TokenInfo, ApiError> {
        let token = self.need(scope)?;
        if matches!(token.tenants, crate::tokens::Tenants::All) {
            Ok(token)
        } else {
            Err(ApiError::forbidden(format!(
                "token {} is for tenant {}; this needs an operator's token (spool tokens create --all-tenants)",
                token.id, token.tenants
            )))
        }
    }
}

impl FromRequestParts<AppState> for Authed {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let addr = parts
            .extensions
            .get::<ConnectInfo<super::listen::Peer>>()
            .map_or(IpAddr::from([0, 0, 0, 0]), |c| c.0.0.ip());
        if let Some(wait) = state.failures.blocked(addr) {
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too-many-failures",
                format!("too many failed authentications from {addr}; try again later"),
            )
            .retry_after(wait));
        }
        let token = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(bearer);
        let Some(token) = token else {
            state.failures.failed(addr);
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "no token: expected the header Authorization: Bearer spool_…",
            ));
        };
        match state.tokens.authenticate(token).await {
            Ok(info) => Ok(Authed(info)),
            Err(e) => {
                let e = ApiError::from(e);
                if e.status == StatusCode::UNAUTHORIZED {
                    state.failures.failed(addr);
                    tracing::warn!(client = %addr, "refused a token: {}", e.message);
                }
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bearer_scheme_is_read_in_any_case() {
        assert_eq!(bearer("Bearer spool_x"), Some("spool_x"));
        assert_eq!(bearer("bearer  spool_x "), Some("spool_x"));
        assert_eq!(bearer("Basic dXNlcg=="), None);
        assert_eq!(bearer("Bearer"), None);
    }

    #[test]
    fn a_full_map_counts_no_new_address_and_stays_bounded() {
        let f = Failures::default();
        for i in 0..MAX_TRACKED {
            let [a, b, c, d] = u32::try_from(i).unwrap().to_be_bytes();
            f.failed(IpAddr::from([a, b, c, d]));
        }
        f.failed(IpAddr::from([255, 255, 255, 255]));
        assert_eq!(lock(&f.by_addr).len(), MAX_TRACKED);
    }

    #[test]
    fn an_address_is_blocked_after_its_failures_and_others_are_not() {
        let f = Failures::default();
        let (a, b) = (IpAddr::from([10, 0, 0, 1]), IpAddr::from([10, 0, 0, 2]));
        for _ in 0..MAX_FAILURES - 1 {
            f.failed(a);
        }
        assert_eq!(f.blocked(a), None);
        f.failed(a);
        assert!(f.blocked(a).is_some_and(|w| w <= WINDOW));
        assert_eq!(f.blocked(b), None);
    }
}
