//! The dashboard part of `spool dev`: the HTTP API and dashboard on a
//! local address, and an operator token kept in `.spool/dashboard.token`
//! (private to this user) so the same token works across restarts.

use crate::api::listen::Peer;
use crate::api::{AppState, router};
use crate::queue::Queue;
use crate::tokens::{NewToken, Scope, Tenants, TokenStore};
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;

/// Where `spool dev` keeps its operator token.
pub const TOKEN_FILE: &str = ".spool/dashboard.token";

/// The token in [`TOKEN_FILE`] if it still opens this Redis, else a new
/// operator token written there (mode 0600).
async fn operator_token(tokens: &TokenStore) -> Result<String, String> {
    if let Ok(saved) = std::fs::read_to_string(TOKEN_FILE) {
        let saved = saved.trim().to_string();
        if tokens.authenticate(&saved).await.is_ok() {
            return Ok(saved);
        }
    }
    let new = NewToken {
        tenants: Tenants::All,
        scopes: Scope::ALL.to_vec(),
        name: "spool dev dashboard".into(),
        expires_in: None,
    };
    let (token, _) = tokens.create(&new).await.map_err(|e| e.to_string())?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(TOKEN_FILE)
        .map_err(|e| format!("{TOKEN_FILE}: {e}"))?;
    std::io::Write::write_all(&mut file, format!("{token}\n").as_bytes())
        .map_err(|e| format!("{TOKEN_FILE}: {e}"))?;
    Ok(token)
}

/// The API and dashboard beside `spool dev`'s worker, on its queue, until
/// `stop` turns true.
pub async fn beside(
    config: crate::queue::QueueConfig,
    listen: SocketAddr,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let prefix = config.prefix.clone();
    match Queue::connect(config).await {
        Ok(queue) => {
            let until = async move {
                let _ = stop.wait_for(|s| *s).await;
            };
            serve(queue, prefix, listen, until).await;
        }
        Err(e) => eprintln!("spool dev: no dashboard: {e}"),
    }
}

/// Serve the API and dashboard for `queue` on `listen` (another free port
/// on the same host if that one is taken) until `stop`; prints the URL
/// and the token. Errors are printed; the worker goes on without it.
pub async fn serve(
    queue: Queue,
    prefix: String,
    listen: SocketAddr,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let listener = match tokio::net::TcpListener::bind(listen).await {
        Ok(l) => l,
        Err(_) => match tokio::net::TcpListener::bind(SocketAddr::new(listen.ip(), 0)).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!(
                    "spool dev: no dashboard: cannot listen on {}: {e}",
                    listen.ip()
                );
                return;
            }
        },
    };
    let state = match AppState::new(queue, &prefix) {
        Ok(state) => state,
        Err(e) => {
            eprintln!("spool dev: no dashboard: {e}");
            return;
        }
    };
    let token = match operator_token(&state.tokens).await {
        Ok(token) => token,
        Err(e) => {
            eprintln!("spool dev: no dashboard: could not make its token: {e}");
            return;
        }
    };
    let bound = listener.local_addr().map_or(listen, |a| a);
    eprintln!("  dashboard http://{bound}/");
    eprintln!("  token    {token}  (an operator's: sign in with it; kept in {TOKEN_FILE})");
    let app = router(state, 16 << 20).into_make_service_with_connect_info::<Peer>();
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(stop)
        .await
    {
        eprintln!("spool dev: the dashboard stopped: {e}");
    }
}
