//! `GET /v1/jobs/{id}/events`: a job's progress and end as Server-Sent
//! Events. The server reads the record a few times a second (workers
//! write guests' progress into it as jobs run) and sends what changed, so
//! any number of servers can stream the same job; the stream ends with
//! the job, or at its timeout (the client then reconnects).

use super::auth::Authed;
use super::error::ErrorBody;
use super::jobs::find;
use super::{ApiError, AppState};
use crate::queue::{Glance, Status};
use crate::tokens::Scope;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use std::convert::Infallible;
use std::time::{Duration, Instant};

/// How often the record is read.
const POLL: Duration = Duration::from_millis(250);
/// The longest one stream lasts.
pub const MAX_STREAM: Duration = Duration::from_secs(600);

/// `?timeout=5m` of a stream (default 60 s, at most [`MAX_STREAM`]).
#[derive(Debug, serde::Deserialize)]
pub struct StreamQuery {
    #[serde(default)]
    timeout: Option<String>,
}

/// What the client has been told so far.
#[derive(Debug, Default, PartialEq)]
struct Seen {
    status: Option<Status>,
    attempts: u32,
    progress: Option<serde_json::Value>,
}

/// The events that tell a client who saw `seen` about the job as `now`
/// shows it, and whether it ended (the caller then sends `end` with the
/// whole record).
fn events_for(seen: &mut Seen, now: &Glance) -> (Vec<Event>, bool) {
    let mut events = Vec::new();
    if (now.status, now.attempts) != (seen.status, seen.attempts) {
        seen.status = now.status;
        seen.attempts = now.attempts;
        events.push(event(
            "status",
            &serde_json::json!({"status": now.status, "attempts": now.attempts}),
        ));
    }
    if now.progress.is_some() && now.progress != seen.progress {
        seen.progress.clone_from(&now.progress);
        events.push(event("progress", &now.progress));
    }
    (events, now.status.is_some_and(Status::is_terminal))
}

fn event(name: &str, data: &impl serde::Serialize) -> Event {
    Event::default()
        .event(name)
        .json_data(data)
        .unwrap_or_else(|_| Event::default().event(name))
}

/// `GET /v1/jobs/{id}/events?timeout=60s` (read): `text/event-stream` of
/// `status` (`{"status", "attempts"}`, first at once, then on each change),
/// `progress` (`{"done", "total"}` as the guest reports it) and, last, `end`
/// with the whole record once the job succeeded, died or was cancelled.
/// At the timeout first: a `timeout` event and the stream closes. The
/// streams under way count against `--max-waits`.
#[utoipa::path(get, path = "/v1/jobs/{id}/events", tag = "jobs", params(("id" = String, Path, description = "job id"), ("timeout" = Option<String>, Query, description = "e.g. 60s; at most 10m")), responses((status = 200, description = "text/event-stream of status, progress, end (or timeout, error) events"), (status = 404, description = "no such job", body = ErrorBody), (status = 503, description = "too many waits and streams under way", body = ErrorBody), (status = 401, description = "no valid token", body = ErrorBody), (status = 403, description = "the token lacks the scope or the tenant", body = ErrorBody)), security(("bearer" = [])))]
pub async fn stream(
    State(state): State<AppState>,
    auth: Authed,
    id: Result<Path<String>, PathRejection>,
    q: Result<Query<StreamQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let token = auth.need(Scope::Read)?;
    let Path(id) = id.map_err(|e| ApiError::invalid("id", e.body_text()))?;
    let Query(q) = q.map_err(|e| ApiError::invalid("timeout", e.body_text()))?;
    let timeout = ApiError::timeout_in(q.timeout.as_deref(), Duration::from_secs(60), MAX_STREAM)?;
    let (tenant, _) = find(&state, token, &id).await?;
    let slot = state.wait_slot(&tenant)?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Event>(16);
    tokio::spawn(async move {
        let _slot = slot;
        follow(&state, &tenant, &id, timeout, &tx).await;
    });
    let events = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|e| (Ok::<_, Infallible>(e), rx))
    });
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}

/// Send the job's events until it ends, the timeout passes, Redis fails
/// or the client leaves. Polls read the status, attempt and progress only;
/// the whole record is read once, for `end`.
async fn follow(
    state: &AppState,
    tenant: &str,
    id: &str,
    timeout: Duration,
    tx: &tokio::sync::mpsc::Sender<Event>,
) {
    let until = Instant::now() + timeout;
    let mut seen = Seen::default();
    loop {
        let now = match state.queue.glance(tenant, id).await {
            Ok(now) => now,
            Err(e) => return send_error(tx, e).await,
        };
        let (events, ended) = events_for(&mut seen, &now);
        for e in events {
            if tx.send(e).await.is_err() {
                return;
            }
        }
        if ended {
            match state.queue.record_in(tenant, id).await {
                Ok(record) => {
                    let _ = tx.send(event("end", &record)).await;
                }
                Err(e) => send_error(tx, e).await,
            }
            return;
        }
        if Instant::now() >= until {
            let _ = tx
                .send(event("timeout", &serde_json::json!({"status": now.status})))
                .await;
            return;
        }
        // A client that leaves ends the stream now, not at its next event.
        tokio::select! {
            () = tokio::time::sleep(POLL) => {}
            () = tx.closed() => return,
        }
    }
}

async fn send_error(tx: &tokio::sync::mpsc::Sender<Event>, e: crate::queue::QueueError) {
    let error = ApiError::from(e);
    let body = serde_json::json!({
        "kind": error.kind, "message": error.message, "retryable": error.retryable,
    });
    let _ = tx.send(event("error", &body)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(status: Status, attempts: u32, progress: Option<serde_json::Value>) -> Glance {
        Glance {
            status: Some(status),
            attempts,
            progress,
        }
    }

    #[test]
    fn each_change_is_told_once_and_the_end_closes_the_stream() {
        let mut seen = Seen::default();
        let (e, end) = events_for(&mut seen, &record(Status::Queued, 0, None));
        assert_eq!((e.len(), end), (1, false));
        let (e, _) = events_for(&mut seen, &record(Status::Queued, 0, None));
        assert!(e.is_empty(), "nothing changed");
        let p = Some(serde_json::json!({"done": 1, "total": 4}));
        let (e, _) = events_for(&mut seen, &record(Status::Running, 1, p.clone()));
        assert_eq!(e.len(), 2, "status and progress");
        let (e, _) = events_for(&mut seen, &record(Status::Running, 1, p.clone()));
        assert!(e.is_empty());
        let (e, end) = events_for(&mut seen, &record(Status::Succeeded, 1, p));
        assert_eq!(
            (e.len(), end),
            (1, true),
            "the status; the caller sends end"
        );
    }
}
