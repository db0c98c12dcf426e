//! `spool serve`: the HTTP API (`crate::api`) on an address, until SIGINT
//! or SIGTERM; requests under way finish first.

use super::connect::{RedisArgs, fail, runtime, stop_signal};
use super::exit;
use crate::api::{AppState, router};
use crate::config::parse_size;
use std::net::SocketAddr;

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

    /// Waits (`GET /v1/jobs/ID/wait`) under way at once; each holds a Redis
    /// connection. More are answered 503 with Retry-After.
    #[arg(long, env = "SPOOL_MAX_WAITS", default_value_t = crate::api::MAX_WAITS)]
    max_waits: usize,
}

pub(crate) fn run(args: ServeArgs) -> u8 {
    let rt = runtime();
    let stop = stop_signal(&rt);
    rt.block_on(async move {
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
        let app = router(state, max_body).into_make_service_with_connect_info::<SocketAddr>();
        // Scripts and tests wait for this line.
        println!("spool serve listening on http://{bound}");
        tracing::info!(%bound, "serving the HTTP API");
        match axum::serve(listener, app)
            .with_graceful_shutdown(stop)
            .await
        {
            Ok(()) => exit::OK,
            Err(e) => {
                eprintln!("spool: serving on {bound} failed: {e}");
                exit::FAILED
            }
        }
    })
}
