//! Carrying out one admitted request: resolve once, check every address,
//! connect to a checked one, TLS, HTTP/1.1, all before the request's
//! deadline.

use super::body::{Incoming, Outgoing};
use super::{HttpLimits, Outbound, Traffic, addr};
use http_body_util::BodyExt;
use std::future::{Future, poll_fn};
use std::net::{IpAddr, SocketAddr};
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::Poll;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody};

/// Where and how long: what [`super::JobHttp::admit`] decided.
pub(super) struct Plan {
    https: bool,
    /// Without IPv6 brackets.
    host: String,
    port: u16,
    connect_timeout: Duration,
    first_byte_timeout: Option<Duration>,
    between_bytes_timeout: Option<Duration>,
    /// When the request ends, body included.
    deadline: tokio::time::Instant,
    /// That is the job's deadline (it came before the request's timeout).
    at_job_deadline: bool,
    max_response_bytes: u64,
    max_request_bytes: u64,
    /// The operator's private ranges apply (the URL's host was named by
    /// a rule, not matched by a wildcard).
    private_ok: bool,
}

impl Plan {
    pub(super) fn new(
        scheme: &str,
        host: String,
        port: u16,
        limits: &HttpLimits,
        options: Option<RequestOptions>,
        job_deadline: Instant,
    ) -> Self {
        let now = Instant::now();
        let own = now.checked_add(limits.timeout).unwrap_or(job_deadline);
        let at_job_deadline = job_deadline <= own;
        let options = options.unwrap_or_default();
        // The guest may ask for shorter timeouts, never longer ones.
        let shorter = |asked: Option<Duration>, most: Duration| asked.map_or(most, |a| a.min(most));
        Plan {
            https: scheme == "https",
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
            port,
            connect_timeout: shorter(options.connect_timeout, limits.connect_timeout),
            first_byte_timeout: options.first_byte_timeout,
            between_bytes_timeout: options.between_bytes_timeout,
            deadline: tokio::time::Instant::from_std(own.min(job_deadline)),
            at_job_deadline,
            max_response_bytes: limits.max_response_bytes,
            max_request_bytes: limits.max_request_bytes,
            private_ok: false,
        }
    }

    /// Let the operator's private ranges apply to this request.
    pub(super) fn private_ok(mut self, ok: bool) -> Self {
        self.private_ok = ok;
        self
    }
}

type Sent = (
    http::Response<WasiBody>,
    Box<dyn Future<Output = Result<(), Error>> + Send>,
);

/// Send `request` as `plan` says; every failure is also on the record.
pub(super) async fn send(
    plan: Plan,
    request: http::Request<WasiBody>,
    outbound: Arc<Outbound>,
    traffic: Arc<Traffic>,
    open: super::Open,
) -> Result<Sent, Error> {
    let started = Instant::now();
    let index = open.index;
    let deadline = plan.deadline;
    // Held here until the request is answered (then by the connection),
    // so that a failure is recorded before the count lets it go.
    let mut open = Some(open);
    let sent = tokio::time::timeout_at(
        deadline,
        exchange(&plan, request, &outbound, &traffic, &mut open, started),
    )
    .await
    .unwrap_or_else(|_| {
        if plan.at_job_deadline {
            traffic.overran.store(true, Ordering::Relaxed);
        }
        Err(Error::HttpResponseTimeout)
    });
    if let Err(e) = &sent {
        let ms = started.elapsed().as_millis() as u64;
        traffic.update(index, |c| {
            c.ms = ms;
            c.error = c.error.take().or_else(|| Some(super::error_code(e)));
        });
    }
    sent
}

async fn exchange(
    plan: &Plan,
    request: http::Request<WasiBody>,
    outbound: &Outbound,
    traffic: &Arc<Traffic>,
    open: &mut Option<super::Open>,
    started: Instant,
) -> Result<Sent, Error> {
    let index = open.as_ref().map_or(0, |o| o.index);
    let permit = Arc::clone(&outbound.permits)
        .acquire_owned()
        .await
        .map_err(|_| Error::ConnectionLimitReached)?;
    let connect_by = (tokio::time::Instant::now() + plan.connect_timeout).min(plan.deadline);
    let (mut sender, conn) = tokio::time::timeout_at(connect_by, async {
        let stream = connect(plan, outbound, traffic).await?;
        // A response head may take 64 KiB and 100 headers of the host's
        // memory, outside the guest's.
        hyper::client::conn::http1::Builder::new()
            .max_buf_size(64 << 10)
            .max_headers(100)
            .handshake::<_, Outgoing>(TokioIo::new(stream))
            .await
            .map_err(Error::from)
    })
    .await
    .map_err(|_| Error::ConnectionTimeout)??;
    let request = on_the_wire(request, traffic, index, plan.max_request_bytes)?;

    // The guest's first-byte timeout, if it set one before the request's
    // own deadline (which the caller enforces, as a response timeout).
    let first_byte = plan
        .first_byte_timeout
        .map(|t| tokio::time::Instant::now() + t)
        .filter(|at| *at < plan.deadline);
    let cap = plan.max_request_bytes;
    let response = pin!(async {
        let sent = match first_byte {
            Some(at) => tokio::time::timeout_at(at, sender.send_request(request))
                .await
                .map_err(|_| Error::ConnectionReadTimeout)?,
            None => sender.send_request(request).await,
        };
        // A body cut off at the cap fails the send as a hyper error: the
        // guest is told why.
        sent.map_err(|e| {
            if traffic.bytes_out.load(Ordering::Relaxed) > cap {
                Error::HttpRequestBodySize(Some(cap))
            } else {
                Error::from(e)
            }
        })
    });
    let (response, conn) = driving(response, conn).await?;
    let status = response.status().as_u16();
    traffic.update(index, |c| c.status = Some(status));
    let response = response.map(|inner| bounded(inner, plan, traffic, index, started));
    let held = (permit, open.take());
    Ok((response, Box::new(live_until(conn, plan.deadline, held))))
}

/// The connection lives on while the guest reads the body, and never
/// past the request's deadline; the worker's permit and the job's count
/// of open requests are held as long.
async fn live_until(
    conn: Option<Connection>,
    deadline: tokio::time::Instant,
    _held: (tokio::sync::OwnedSemaphorePermit, Option<super::Open>),
) -> Result<(), Error> {
    match conn {
        Some(c) => match tokio::time::timeout_at(deadline, c).await {
            Ok(r) => r.map_err(Error::from),
            Err(_) => Ok(()),
        },
        None => Ok(()),
    }
}

/// The request as HTTP/1.1 sends it: only the path in the request line
/// (the Host header, which wasmtime-wasi-http set from the URL, names the
/// host), and its body counted against the job's bytes out.
fn on_the_wire(
    mut request: http::Request<WasiBody>,
    traffic: &Arc<Traffic>,
    index: usize,
    cap: u64,
) -> Result<http::Request<Outgoing>, Error> {
    let path = request
        .uri()
        .path_and_query()
        .map_or("/", http::uri::PathAndQuery::as_str)
        .to_string();
    *request.uri_mut() = http::Uri::try_from(path).map_err(|_| Error::HttpRequestUriInvalid)?;
    Ok(request.map(|inner| Outgoing {
        inner,
        traffic: Arc::clone(traffic),
        index,
        cap,
    }))
}

type Connection = hyper::client::conn::http1::Connection<TokioIo<Box<dyn Stream>>, Outgoing>;

/// Wait for `response` while driving the connection's I/O; the
/// connection, unless it already ended, goes on after.
async fn driving<F>(
    mut response: Pin<&mut F>,
    conn: Connection,
) -> Result<(http::Response<hyper::body::Incoming>, Option<Connection>), Error>
where
    F: Future<Output = Result<http::Response<hyper::body::Incoming>, Error>>,
{
    let mut conn = Some(conn);
    let response = poll_fn(|cx| match response.as_mut().poll(cx) {
        Poll::Ready(r) => Poll::Ready(r),
        Poll::Pending => {
            let Some(c) = conn.as_mut() else {
                return Poll::Pending;
            };
            let ended = std::task::ready!(Pin::new(c).poll(cx));
            conn = None;
            match ended {
                Ok(()) => response.as_mut().poll(cx),
                // A server that answers before it has read the whole body
                // and closes: the connection fails writing the rest, but
                // the answer may have been read first. It is the answer.
                Err(e) => match response.as_mut().poll(cx) {
                    Poll::Ready(Ok(answer)) => Poll::Ready(Ok(answer)),
                    _ => Poll::Ready(Err(Error::from(e))),
                },
            }
        }
    })
    .await?;
    Ok((response, conn))
}

/// The response body with the plan's bounds on it.
fn bounded(
    inner: hyper::body::Incoming,
    plan: &Plan,
    traffic: &Arc<Traffic>,
    index: usize,
    started: Instant,
) -> WasiBody {
    Incoming {
        inner,
        deadline: Box::pin(tokio::time::sleep_until(plan.deadline)),
        at_job_deadline: plan.at_job_deadline,
        between: plan.between_bytes_timeout.map(|t| {
            let t = t.max(Duration::from_millis(1));
            (t, Box::pin(tokio::time::sleep(t)))
        }),
        cap: plan.max_response_bytes,
        read: 0,
        traffic: Arc::clone(traffic),
        index,
        started,
        done: false,
    }
    .boxed_unsync()
}

/// A connection to a checked address of the plan's host, TLS on top for
/// `https`.
async fn connect(
    plan: &Plan,
    outbound: &Outbound,
    traffic: &Traffic,
) -> Result<Box<dyn Stream>, Error> {
    let addrs = addresses(plan, outbound, traffic).await?;
    let mut last = Error::ConnectionRefused;
    let mut tcp = None;
    for a in addrs {
        match TcpStream::connect(a).await {
            Ok(s) => {
                tcp = Some(s);
                break;
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                last = Error::ConnectionRefused;
            }
            Err(e) => last = Error::Connect(e),
        }
    }
    let tcp = tcp.ok_or(last)?;
    let _ = tcp.set_nodelay(true);
    if !plan.https {
        return Ok(Box::new(tcp));
    }
    let name = match plan.host.parse::<IpAddr>() {
        Ok(ip) => rustls::pki_types::ServerName::from(ip),
        Err(_) => rustls::pki_types::ServerName::try_from(plan.host.clone())
            .map_err(|_| Error::HttpRequestUriInvalid)?,
    };
    let tls = outbound
        .tls
        .connect(name, tcp)
        .await
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::InvalidData => Error::TlsCertificateError,
            _ => Error::Tls(e),
        })?;
    Ok(Box::new(tls))
}

/// The host's addresses that may be reached: resolved once, each checked.
async fn addresses(
    plan: &Plan,
    outbound: &Outbound,
    traffic: &Traffic,
) -> Result<Vec<SocketAddr>, Error> {
    let found: Vec<SocketAddr> = match plan.host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, plan.port)],
        Err(_) => lookup(plan, outbound, traffic).await.map_err(|e| {
            traffic.note(format!("http: could not resolve {}: {e}", plan.host));
            Error::DnsError {
                rcode: None,
                info_code: None,
            }
        })?,
    };
    let private: &[addr::Cidr] = if plan.private_ok {
        &outbound.private
    } else {
        &[]
    };
    let mut refused = Vec::new();
    let allowed: Vec<SocketAddr> = found
        .iter()
        .copied()
        .filter(|a| match addr::check(a.ip(), private) {
            Ok(()) => true,
            Err(kind) => {
                refused.push(format!("{} is {kind}", a.ip()));
                false
            }
        })
        .collect();
    if allowed.is_empty() {
        if found.is_empty() {
            return Err(Error::DestinationNotFound);
        }
        traffic.note(format!(
            "http: {} refused (destination-ip-prohibited): {}; requests reach public addresses only, unless the operator allows a range (--http-allow-private CIDR) and a rule names the host (not * or *.domain)",
            plan.host,
            refused.join(", ")
        ));
        return Err(Error::DestinationIpProhibited);
    }
    Ok(allowed)
}

/// The host's addresses, from the system's resolver on a blocking thread.
/// A lookup holds one of the job's two and one of the process's lookup
/// permits until it returns, even after its request gave up on it: a
/// resolver that never answers ties up at most that many threads.
async fn lookup(
    plan: &Plan,
    outbound: &Outbound,
    traffic: &Traffic,
) -> std::io::Result<Vec<SocketAddr>> {
    use std::net::ToSocketAddrs;
    // The job's own share first, so that one job cannot take them all.
    let job = Arc::clone(&traffic.lookups)
        .acquire_owned()
        .await
        .map_err(std::io::Error::other)?;
    let permit = Arc::clone(&outbound.lookups)
        .acquire_owned()
        .await
        .map_err(std::io::Error::other)?;
    let (host, port) = (plan.host.clone(), plan.port);
    tokio::task::spawn_blocking(move || {
        let _permits = (job, permit);
        (host.as_str(), port)
            .to_socket_addrs()
            .map(Iterator::collect)
    })
    .await
    .map_err(std::io::Error::other)?
}

/// A TCP or TLS stream.
trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static> Stream for T {}

#[cfg(test)]
mod tests {
    use super::super::error_code as code;
    use wasmtime_wasi_http::Error;

    #[test]
    fn errors_are_named_as_wasi_http_names_them() {
        assert_eq!(code(&Error::HttpRequestDenied), "http-request-denied");
        assert_eq!(
            code(&Error::HttpResponseBodySize(Some(3))),
            "http-response-body-size"
        );
        assert_eq!(
            code(&Error::DestinationIpProhibited),
            "destination-ip-prohibited"
        );
    }
}
