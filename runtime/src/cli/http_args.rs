//! The outbound-HTTP options `spool worker`, `spool dev` and `spool call`
//! share: what the operator opens beyond the public internet, and how
//! many requests run at once.

use crate::sandbox::http::{Cidr, HttpLimits, Outbound};

/// Outbound HTTP for plugins (which hosts each plugin may call is its
/// manifest's `[http] allow`).
#[derive(Debug, Clone, clap::Args)]
pub struct HttpArgs {
    /// Let plugins' requests reach this private, loopback or link-local
    /// range (e.g. 127.0.0.1/32 for a test server, 10.1.2.0/24 for an
    /// internal API); repeat for more. Without it only public addresses
    /// are reachable, whatever a plugin's allow list says.
    #[arg(long = "http-allow-private", value_name = "CIDR", value_parser = parse_cidr)]
    pub private: Vec<Cidr>,

    /// Most outbound requests in flight at once over all of this
    /// process's jobs; more wait their turn within their own timeout.
    #[arg(long, env = "SPOOL_HTTP_CONCURRENCY", default_value_t = 64)]
    pub http_concurrency: usize,
}

impl HttpArgs {
    /// The process-wide outbound settings these options make.
    pub fn outbound(&self) -> Outbound {
        Outbound::new(
            HttpLimits::default(),
            self.private.clone(),
            self.http_concurrency,
        )
    }
}

fn parse_cidr(text: &str) -> Result<Cidr, String> {
    Cidr::parse(text).map_err(|e| e.to_string())
}
