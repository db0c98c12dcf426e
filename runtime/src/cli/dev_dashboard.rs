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

/// What `spool dev` names its token, to know its own again.
const TOKEN_NAME: &str = "spool dev dashboard";

/// How long a token `spool dev` makes works.
const TOKEN_LIFE: std::time::Duration = std::time::Duration::from_secs(30 * 24 * 3600);

/// The token in [`TOKEN_FILE`] if it is still `spool dev`'s operator token
/// on this Redis, else a new one (30 days) written there, private to this
/// user; the old one, if it was ours, is revoked.
async fn operator_token(tokens: &TokenStore) -> Result<String, String> {
    let saved = std::fs::read_to_string(TOKEN_FILE)
        .map(|t| t.trim().to_string())
        .ok();
    if let Some(saved) = &saved
        && let Ok(info) = tokens.authenticate(saved).await
        && matches!(info.tenants, Tenants::All)
        && info.name == TOKEN_NAME
    {
        return Ok(saved.clone());
    }
    if let Some(id) = saved.as_deref().and_then(|t| t.split('_').nth(1)) {
        // Ours or unknown: gone. Another's (a name of its own) we leave.
        if let Ok(list) = tokens.list().await
            && list.iter().any(|t| t.id == id && t.name == TOKEN_NAME)
        {
            let _ = tokens.revoke(id).await;
        }
    }
    let new = NewToken {
        tenants: Tenants::All,
        scopes: Scope::ALL.to_vec(),
        name: TOKEN_NAME.into(),
        expires_in: Some(TOKEN_LIFE),
    };
    let (token, _) = tokens.create(&new).await.map_err(|e| e.to_string())?;
    write_private(&format!("{token}\n")).map_err(|e| format!("{TOKEN_FILE}: {e}"))?;
    Ok(token)
}

/// Write [`TOKEN_FILE`] whole, mode 0600: a new file (never through a
/// link, never one that exists) renamed over it, so neither a link planted
/// there nor an old file's mode decides where the token goes or who reads
/// it.
fn write_private(text: &str) -> std::io::Result<()> {
    let tmp = format!("{TOKEN_FILE}.{}.tmp", std::process::id());
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)?;
    std::io::Write::write_all(&mut file, text.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&tmp, TOKEN_FILE).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
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
        Err(e) => match tokio::net::TcpListener::bind(SocketAddr::new(listen.ip(), 0)).await {
            Ok(l) => {
                eprintln!(
                    "spool dev: {listen} is not free ({e}); the dashboard takes another port"
                );
                l
            }
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
