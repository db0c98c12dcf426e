//! Outbound HTTP for plugins: `wasi:http/outgoing-handler`, behind the
//! plugin's allow list, the SSRF check and per-job bounds.
//!
//! wasmtime-wasi-http turns the guest's calls into an `http::Request` and
//! hands it to [`JobHttp::send_request`], the one place a request leaves
//! the sandbox. There, in order:
//!
//! 1. the URL's scheme, host and port must match a rule of the plugin's
//!    `[http] allow` ([`rules`]), else `http-request-denied`, and the
//!    job's log names the URL (without its query) and the rules;
//! 2. the job must have requests left (`connection-limit-reached`);
//! 3. a permit of the worker's concurrent requests is awaited;
//! 4. the host is resolved once, every address is checked ([`addr`]),
//!    and the connection goes to a checked address
//!    (`destination-ip-prohibited` when none is left);
//! 5. bytes out and bytes in are capped (`http-request-body-size`,
//!    `http-response-body-size`), and the whole request, body included,
//!    ends by its timeout and never after the job's deadline
//!    (`connection-timeout`, `http-response-timeout`).
//!
//! Each request is recorded for the job's record ([`HttpCall`]): method,
//! scheme, host and port, status or error, bytes and duration. Never the
//! path, query or headers, which may carry secrets; the log's lines on
//! refusals name the same. A job may have [`MAX_IN_FLIGHT`] requests open
//! at once, and what the record and log keep of it is bounded too.

mod addr;
mod body;
mod rules;
mod send;

pub use addr::{Cidr, CidrError};
pub use rules::{AllowList, AllowRule, RuleError};

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

/// Bounds on one job's requests. Defaults suit a shared worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpLimits {
    /// Most requests per job.
    pub max_requests: u32,
    /// Longest wait for a connection (DNS, TCP and TLS).
    pub connect_timeout: Duration,
    /// Longest a request may take, body included; never past the job's
    /// deadline.
    pub timeout: Duration,
    /// Largest response body, bytes.
    pub max_response_bytes: u64,
    /// Most request body bytes per job, all requests together.
    pub max_request_bytes: u64,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            max_requests: 50,
            connect_timeout: Duration::from_secs(5),
            timeout: Duration::from_secs(30),
            max_response_bytes: 16 << 20,
            max_request_bytes: 16 << 20,
        }
    }
}

/// What a worker sets for every plugin's requests: the bounds, the
/// private ranges the operator opened, and the worker's concurrent
/// requests. One per process, shared by every job.
pub struct Outbound {
    limits: HttpLimits,
    private: Vec<Cidr>,
    permits: Arc<tokio::sync::Semaphore>,
    concurrency: usize,
    /// DNS lookups under way (see `send::lookup`).
    lookups: Arc<tokio::sync::Semaphore>,
    tls: tokio_rustls::TlsConnector,
}

impl Outbound {
    /// `private`: address ranges requests may reach although they are not
    /// public (`--http-allow-private`); `concurrency`: requests in flight
    /// at once over all of the worker's jobs.
    pub fn new(limits: HttpLimits, private: Vec<Cidr>, concurrency: usize) -> Self {
        let roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.into(),
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map(|b| b.with_root_certificates(roots).with_no_client_auth())
            // The ring provider supports the default versions; a failure
            // here is a build without them, and no TLS can work.
            .unwrap_or_else(|e| panic!("no TLS configuration with ring: {e}"));
        let concurrency = concurrency.max(1);
        Outbound {
            limits,
            private,
            permits: Arc::new(tokio::sync::Semaphore::new(concurrency)),
            concurrency,
            lookups: Arc::new(tokio::sync::Semaphore::new(MAX_LOOKUPS)),
            tls: tokio_rustls::TlsConnector::from(Arc::new(config)),
        }
    }

    /// The address ranges opened beyond the public ones.
    pub fn private(&self) -> &[Cidr] {
        &self.private
    }

    /// The bounds of each job's requests.
    pub fn limits(&self) -> &HttpLimits {
        &self.limits
    }
}

impl std::fmt::Debug for Outbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbound")
            .field("limits", &self.limits)
            .field("private", &self.private)
            .field("concurrency", &self.concurrency)
            .finish_non_exhaustive()
    }
}

/// One request of a job, as its record shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HttpCall {
    /// `GET`, `POST`, ...
    pub method: String,
    /// `https://api.example.com:443`: scheme, host and port only.
    pub origin: String,
    /// The response's status, when one came.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// The wasi:http error code the guest got, when the request failed
    /// (`http-request-denied`, `destination-ip-prohibited`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Request body bytes sent.
    pub bytes_out: u64,
    /// Response body bytes received.
    pub bytes_in: u64,
    /// From the call to the end of the response body (or the failure).
    pub ms: u64,
}

/// What a job's requests share with the tasks that carry them out.
#[derive(Debug)]
struct Traffic {
    calls: Mutex<Vec<HttpCall>>,
    /// Lines for the job's log: why requests were refused.
    notes: Mutex<Vec<String>>,
    bytes_out: AtomicU64,
    /// Requests admitted whose connection has not ended (see [`Open`]).
    in_flight: AtomicU32,
    /// The job's DNS lookups under way, held until each returns.
    lookups: Arc<tokio::sync::Semaphore>,
    /// A request was cut off at the job's deadline.
    overran: AtomicBool,
}

impl Default for Traffic {
    fn default() -> Self {
        Traffic {
            calls: Mutex::default(),
            notes: Mutex::default(),
            bytes_out: AtomicU64::default(),
            in_flight: AtomicU32::default(),
            lookups: Arc::new(tokio::sync::Semaphore::new(MAX_JOB_LOOKUPS)),
            overran: AtomicBool::default(),
        }
    }
}

/// One of a job's open requests: counted from its admission until its
/// connection ends, it is cancelled, or it fails. A request dropped
/// before it was answered (the guest gave up on it) is recorded as
/// `cancelled`.
pub(super) struct Open {
    traffic: Arc<Traffic>,
    index: usize,
    started: Instant,
}

impl Open {
    fn new(traffic: &Arc<Traffic>, index: usize) -> Self {
        traffic.in_flight.fetch_add(1, Ordering::Relaxed);
        Open {
            traffic: Arc::clone(traffic),
            index,
            started: Instant::now(),
        }
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.traffic.in_flight.fetch_sub(1, Ordering::Relaxed);
        let ms = self.started.elapsed().as_millis() as u64;
        self.traffic.update(self.index, |c| {
            if c.status.is_none() && c.error.is_none() {
                c.error = Some("cancelled".into());
                c.ms = ms;
            }
        });
    }
}

/// Most DNS lookups of one job under way at once.
const MAX_JOB_LOOKUPS: usize = 2;

/// Most DNS lookups under way at once in a process.
const MAX_LOOKUPS: usize = 32;

/// Most log lines about refused requests per job.
const MAX_NOTES: usize = 16;

/// Most of a job's requests open at once: each holds one of the worker's
/// request permits until its connection ends (its body read, dropped, or
/// its deadline passed).
const MAX_IN_FLIGHT: u32 = 8;

/// Longest `scheme://host:port` kept in a record.
const MAX_ORIGIN: usize = 300;

/// `text`, cut to at most `max` bytes on a character boundary.
fn cut(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

impl Traffic {
    fn update(&self, index: usize, f: impl FnOnce(&mut HttpCall)) {
        if let Some(call) = crate::locks::lock(&self.calls).get_mut(index) {
            f(call);
        }
    }

    fn note(&self, line: String) {
        let mut notes = crate::locks::lock(&self.notes);
        if notes.len() < MAX_NOTES {
            notes.push(line);
        }
    }
}

/// What one job may call.
#[derive(Debug, Clone, Default)]
pub(crate) struct Grant {
    /// The plugin's `[http] allow`; none: nothing.
    pub allow: Option<Arc<AllowList>>,
    /// The tenant's ceiling; none: the plugin's list alone decides.
    pub ceiling: Option<Arc<AllowList>>,
    /// The job's tenant, for messages.
    pub tenant: String,
}

/// The HTTP side of one job's store: what it may call and what it did.
pub(crate) struct JobHttp {
    grant: Grant,
    outbound: Option<Arc<Outbound>>,
    deadline: Instant,
    sent: u32,
    traffic: Arc<Traffic>,
}

impl std::fmt::Debug for JobHttp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobHttp").field("sent", &self.sent).finish()
    }
}

impl JobHttp {
    /// `allow`: the plugin's rules (none: every request is refused);
    /// `grant`: what the job may call; `deadline`: the job's.
    pub(crate) fn new(grant: Grant, outbound: Option<Arc<Outbound>>, deadline: Instant) -> Self {
        JobHttp {
            grant,
            outbound,
            deadline,
            sent: 0,
            traffic: Arc::default(),
        }
    }

    /// The job's requests so far, and log lines about refusals.
    pub(crate) fn report(&self) -> (Vec<HttpCall>, Vec<String>) {
        (
            crate::locks::lock(&self.traffic.calls).clone(),
            crate::locks::lock(&self.traffic.notes).clone(),
        )
    }

    /// A request was cut off at the job's deadline: the job timed out.
    pub(crate) fn overran(&self) -> bool {
        self.traffic.overran.load(Ordering::Relaxed)
    }

    /// Requests made so far (each counts as a host call).
    pub(crate) fn sent(&self) -> u32 {
        self.sent
    }

    /// Record a request and decide it: where to connect, or the error.
    /// Checked first, the job's count of requests bounds what the record
    /// and the log keep of a guest that loops on refused requests.
    fn admit(
        &mut self,
        request: &http::Request<WasiBody>,
        options: Option<RequestOptions>,
    ) -> Result<(send::Plan, Open), Error> {
        let uri = request.uri();
        let scheme = uri.scheme_str().unwrap_or("https").to_ascii_lowercase();
        let host = uri.host().unwrap_or_default().to_string();
        let port = uri.port_u16().unwrap_or(rules::default_port(&scheme));
        let origin = cut(format!("{scheme}://{host}:{port}"), MAX_ORIGIN);
        let max = self.max_requests();
        self.sent = self.sent.saturating_add(1);
        // Past the limit, one more entry says so; later ones are not kept.
        let index = (self.sent <= max.saturating_add(1))
            .then(|| self.record(request.method().as_str(), &origin));
        let refuse = |error: Error, why: String| {
            let code = error_code(&error);
            if let Some(index) = index {
                self.traffic.update(index, |c| c.error = Some(code.clone()));
                self.traffic.note(format!(
                    "http: {} {origin} refused ({code}): {why}",
                    request.method()
                ));
            }
            error
        };
        if self.sent > max {
            return Err(refuse(
                Error::ConnectionLimitReached,
                format!("the limit is {max} requests per job"),
            ));
        }
        let index = index.unwrap_or_default();
        let outbound = match self.judge(uri, &scheme, &host, port) {
            Ok(outbound) => outbound,
            Err((error, why)) => return Err(refuse(error, why)),
        };
        // A private address is reached only when the operator named its
        // host in the tenant's ceiling (never a tenant's own rule, nor `*`
        // or `*.domain`: a tenant controls its manifest and its DNS).
        let named = self
            .grant
            .ceiling
            .as_ref()
            .is_some_and(|a| a.names(&scheme, &host, port));
        let plan = send::Plan::new(
            &scheme,
            host,
            port,
            &outbound.limits,
            options,
            self.deadline,
        )
        .private_ok(named);
        Ok((plan, Open::new(&self.traffic, index)))
    }

    /// The most requests the job may make.
    fn max_requests(&self) -> u32 {
        let limits = self.outbound.as_ref().map(|o| &o.limits);
        limits.map_or(HttpLimits::default().max_requests, |l| l.max_requests)
    }

    /// Whether the job may send a request to `scheme://host:port` now:
    /// the worker's outbound settings if so, else the error and why.
    fn judge(
        &self,
        uri: &http::Uri,
        scheme: &str,
        host: &str,
        port: u16,
    ) -> Result<&Arc<Outbound>, (Error, String)> {
        let denied = |why: String| (Error::HttpRequestDenied, why);
        let (Some(allow), Some(outbound)) = (&self.grant.allow, &self.outbound) else {
            return Err(denied(
                "this worker gives the plugin no outbound HTTP".into(),
            ));
        };
        if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
            return Err(denied("a user name in the URL is not allowed".into()));
        }
        if !allow.allows(scheme, host, port) {
            return Err(denied(format!(
                "not on the plugin's [http] allow list {allow}"
            )));
        }
        if let Some(ceiling) = &self.grant.ceiling
            && !ceiling.allows(scheme, host, port)
        {
            let t = &self.grant.tenant;
            return Err(denied(format!(
                "outside tenant {t}'s ceiling {ceiling}, which the operator sets (spool tenants set {t} --http-allow)"
            )));
        }
        if self.traffic.in_flight.load(Ordering::Relaxed) >= MAX_IN_FLIGHT {
            return Err((
                Error::ConnectionLimitReached,
                format!(
                    "{MAX_IN_FLIGHT} of the job's requests are still open (read or drop their responses)"
                ),
            ));
        }
        Ok(outbound)
    }

    /// A new entry of the job's requests; its index.
    fn record(&self, method: &str, origin: &str) -> usize {
        let mut calls = crate::locks::lock(&self.traffic.calls);
        calls.push(HttpCall {
            method: method.to_string(),
            origin: origin.to_string(),
            status: None,
            error: None,
            bytes_out: 0,
            bytes_in: 0,
            ms: 0,
        });
        calls.len() - 1
    }
}

/// Bytes one write into a request body may hand over, and writes the
/// body buffers before the request is sent: 2 x 8 KiB, so that a small body
/// can be written whole before `handle` (it then leaves with the request's
/// head, and a server that answers before reading it cannot cut it off),
/// while a body that is never sent holds little of the host's memory.
const BODY_CHUNK: usize = 8 << 10;
const BODY_CHUNKS: usize = 2;

impl WasiHttpHooks for JobHttp {
    fn p2_outgoing_body_buffer_chunks(&mut self) -> usize {
        BODY_CHUNKS
    }

    fn p2_outgoing_body_chunk_size(&mut self) -> usize {
        BODY_CHUNK
    }

    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), Error>> + Send>,
    ) -> Box<
        dyn Future<
                Output = Result<
                    (
                        http::Response<WasiBody>,
                        Box<dyn Future<Output = Result<(), Error>> + Send>,
                    ),
                    Error,
                >,
            > + Send,
    > {
        let admitted = self.admit(&request, options);
        let traffic = Arc::clone(&self.traffic);
        let outbound = self.outbound.clone();
        Box::new(async move {
            let (plan, open) = admitted?;
            let Some(outbound) = outbound else {
                return Err(Error::HttpRequestDenied);
            };
            send::send(plan, request, outbound, traffic, open).await
        })
    }
}

/// The wasi:http `error-code` name of `e`, e.g. `http-request-denied`.
fn error_code(e: &Error) -> String {
    let debug = format!("{e:?}");
    let name = debug
        .split(|c: char| !c.is_ascii_alphanumeric())
        .next()
        .unwrap_or("internal-error");
    let mut out = String::with_capacity(name.len() + 4);
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('-');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    match out.as_str() {
        "hyper" | "connect" | "tls" => format!("{out}-error"),
        _ => out,
    }
}
