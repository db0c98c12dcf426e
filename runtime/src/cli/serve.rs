//! `spool serve`: the HTTP API (`crate::api`) on an address, until SIGINT
//! or SIGTERM; requests under way finish first.

use super::connect::{RedisArgs, fail, runtime, stop_signal};
use super::exit;
use crate::api::listen::{Peer, TlsListener, tls_config};
use crate::api::{AppState, router};
use crate::config::parse_size;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub(crate) struct ServeArgs {
    #[command(flatten)]
    redis: RedisArgs,

    /// Address to listen on. Loopback by default: put a TLS-terminating
    /// proxy in front before listening on a public address.
    #[arg(long, env = "SPOOL_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,

    /// Largest request body read; larger ones are refused with 413 before
    /// they are read whole.
    #[arg(long, env = "SPOOL_MAX_BODY", default_value = "16MiB", value_parser = parse_size)]
    max_body: u64,

    /// Waits (`GET /v1/jobs/ID/wait`) and event streams under way at once.
    /// More are answered 503 with Retry-After.
    #[arg(long, env = "SPOOL_MAX_WAITS", default_value_t = crate::api::MAX_WAITS)]
    max_waits: usize,

    /// Serve HTTPS with this certificate chain (PEM); needs `--tls-key`.
    #[arg(long, env = "SPOOL_TLS_CERT", requires = "tls_key", value_name = "PEM")]
    tls_cert: Option<PathBuf>,

    /// The private key (PEM) of `--tls-cert`.
    #[arg(long, env = "SPOOL_TLS_KEY", requires = "tls_cert", value_name = "PEM")]
    tls_key: Option<PathBuf>,
}

pub(crate) fn run(args: ServeArgs) -> u8 {
    let rt = runtime();
    let stop = stop_signal(&rt);
    rt.block_on(async move {
        // Bad TLS files are named before anything connects.
        let tls = match (&args.tls_cert, &args.tls_key) {
            (Some(cert), Some(key)) => match tls_config(cert, key) {
                Ok(config) => Some(config),
                Err(message) => {
                    eprintln!("spool: {message}");
                    return exit::USAGE;
                }
            },
            _ => None,
        };
        let queue = match args.redis.connect().await {
            Ok(q) => q,
            Err(e) => return fail(&e),
        };
        let listener = match tokio::net::TcpListener::bind(args.listen).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("spool: cannot listen on {}: {e}", args.listen);
                return exit::FAILED;
            }
        };
        let bound = listener.local_addr().map_or(args.listen, |a| a);
        let state = match AppState::new(queue, &args.redis.prefix) {
            Ok(state) => state.with_max_waits(args.max_waits),
            Err(e) => return fail(&crate::queue::QueueError::Redis(e)),
        };
        let max_body = usize::try_from(args.max_body).unwrap_or(usize::MAX);
        let app = router(state, max_body).into_make_service_with_connect_info::<Peer>();
        let scheme = if tls.is_some() { "https" } else { "http" };
        // Scripts and tests wait for this line.
        println!("spool serve listening on {scheme}://{bound}");
        tracing::info!(%bound, scheme, "serving the HTTP API");
        let served = match tls {
            Some(config) => match TlsListener::new(listener, config) {
                Ok(tls) => axum::serve(tls, app).with_graceful_shutdown(stop).await,
                Err(e) => Err(e),
            },
            None => {
                axum::serve(listener, app)
                    .with_graceful_shutdown(stop)
                    .await
            }
        };
        match served {
            Ok(()) => exit::OK,
            Err(e) => {
                eprintln!("spool: serving on {bound} failed: {e}");
                exit::FAILED
            }
        }
    })
}
