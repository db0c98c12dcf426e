//! Outbound HTTP: a small synchronous client over `wasi:http`.
//!
//! ```ignore
//! use spool_sdk::http;
//!
//! let page = http::get("https://api.example.com/items/7")?.error_for_status()?;
//! let item: Item = page.json()?;
//! http::post_json("https://hooks.example.com/done", &item)?;
//!
//! let reply = http::Request::post("https://api.example.com/v1/jobs")
//!     .header("authorization", format!("Bearer {token}"))
//!     .json(&body)?
//!     .timeout(std::time::Duration::from_secs(5))
//!     .send()?;
//! ```
//!
//! The host only lets a plugin call the hosts its manifest lists:
//!
//! ```toml
//! [http]
//! allow = ["https://api.example.com", "https://*.s3.amazonaws.com"]
//! ```
//!
//! and never private, loopback or link-local addresses unless the operator
//! opened them. Every failure is an [`HttpError`] that converts into a
//! [`JobError`] with `?`: a timeout, a refused connection, a 5xx or a 429
//! is retryable; a denied host, a 4xx or a body over the host's cap is
//! fatal. Redirects are followed (at most [`MAX_REDIRECTS`]), each one a
//! new request the host checks against the allow list again.

use crate::JobError;
use crate::bindings::wasi::http::outgoing_handler;
use crate::bindings::wasi::http::types::FutureIncomingResponse;
use crate::bindings::wasi::http::types::{
    ErrorCode, Fields, IncomingBody, Method, OutgoingBody, OutgoingRequest, RequestOptions, Scheme,
};
use crate::bindings::wasi::io::poll::poll;
use crate::bindings::wasi::io::streams::{OutputStream, StreamError};
use std::fmt;
use std::time::Duration;

/// Most redirects one [`Request::send`] follows.
pub const MAX_REDIRECTS: u32 = 5;

/// A request to build and send.
#[derive(Debug, Clone)]
pub struct Request {
    method: String,
    url: String,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
    timeout: Option<Duration>,
    connect_timeout: Option<Duration>,
    follow: bool,
}

/// A response: status, headers and the whole body.
#[derive(Debug, Clone)]
pub struct Response {
    /// The status code, e.g. 200.
    pub status: u16,
    /// The URL that answered (after redirects), without its query.
    pub url: String,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
}

/// Why a request failed. `url` never carries the query string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpError {
    /// The host refused the request: the URL is not on the plugin's
    /// `[http] allow` list (the job's log names the rules). Fatal.
    Denied {
        /// The URL, without its query.
        url: String,
    },
    /// The host name resolved only to addresses the worker may not reach
    /// (private, loopback, link-local, metadata). Fatal.
    Prohibited {
        /// The URL, without its query.
        url: String,
    },
    /// A connection or response timeout, or the job's deadline. Retryable.
    Timeout {
        /// The URL, without its query.
        url: String,
    },
    /// The response body is larger than the host allows. Fatal.
    ResponseTooLarge {
        /// The URL, without its query.
        url: String,
        /// The host's cap in bytes, when it said.
        limit: Option<u64>,
    },
    /// The job sent more request bytes than the host allows. Fatal.
    RequestTooLarge {
        /// The URL, without its query.
        url: String,
        /// The host's cap in bytes, when it said.
        limit: Option<u64>,
    },
    /// The job has made as many requests as the host allows. Fatal.
    TooManyRequests {
        /// The URL, without its query.
        url: String,
    },
    /// The server answered with an error status (from
    /// [`Response::error_for_status`]); 5xx and 429 are retryable.
    Status {
        /// The URL, without its query.
        url: String,
        /// The status code.
        status: u16,
    },
    /// The URL cannot be requested (no scheme, no host, bad header). Fatal.
    Invalid {
        /// The URL, without its query.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// The connection failed (refused, reset, DNS, TLS). Retryable.
    Connect {
        /// The URL, without its query.
        url: String,
        /// The wasi:http error.
        reason: String,
    },
}

impl HttpError {
    /// Whether the same request may succeed when the job is retried.
    pub fn is_retryable(&self) -> bool {
        match self {
            HttpError::Timeout { .. } | HttpError::Connect { .. } => true,
            HttpError::Status { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        }
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpError::Denied { url } => write!(
                f,
                "http-request-denied: {url} is not on this plugin's [http] allow list (the job's log names the rules)"
            ),
            HttpError::Prohibited { url } => write!(
                f,
                "destination-ip-prohibited: {url} resolves to an address the worker may not reach (private, loopback or link-local)"
            ),
            HttpError::Timeout { url } => write!(f, "timeout: {url} did not answer in time"),
            HttpError::ResponseTooLarge { url, limit } => {
                write!(
                    f,
                    "http-response-body-size: the response of {url} is larger than"
                )?;
                match limit {
                    Some(l) => write!(f, " {l} bytes, the host's cap"),
                    None => write!(f, " the host's cap"),
                }
            }
            HttpError::RequestTooLarge { url, limit } => {
                write!(
                    f,
                    "http-request-body-size: the request to {url} brings the job past"
                )?;
                match limit {
                    Some(l) => write!(f, " {l} bytes sent, the host's cap"),
                    None => write!(f, " the host's cap on bytes sent"),
                }
            }
            HttpError::TooManyRequests { url } => write!(
                f,
                "connection-limit-reached: {url}: the job has made as many requests as the host allows"
            ),
            HttpError::Status { url, status } => write!(f, "{url} answered {status}"),
            HttpError::Invalid { url, reason } => write!(f, "invalid request to {url}: {reason}"),
            HttpError::Connect { url, reason } => write!(f, "could not reach {url}: {reason}"),
        }
    }
}

impl std::error::Error for HttpError {}

impl From<HttpError> for JobError {
    fn from(e: HttpError) -> Self {
        if e.is_retryable() {
            JobError::retryable(e.to_string())
        } else {
            JobError::fatal(e.to_string())
        }
    }
}

/// `GET url`.
pub fn get(url: &str) -> Result<Response, HttpError> {
    Request::get(url).send()
}

/// `POST url` with `value` as a JSON body.
pub fn post_json<T: serde::Serialize + ?Sized>(
    url: &str,
    value: &T,
) -> Result<Response, HttpError> {
    Request::post(url).json(value)?.send()
}

impl Request {
    /// A request with any method (`GET`, `PUT`, `PATCH`, ...).
    pub fn new(method: &str, url: &str) -> Self {
        Request {
            method: method.to_ascii_uppercase(),
            url: url.to_string(),
            headers: Vec::new(),
            body: Vec::new(),
            timeout: None,
            connect_timeout: None,
            follow: true,
        }
    }

    /// `GET url`.
    pub fn get(url: &str) -> Self {
        Request::new("GET", url)
    }

    /// `POST url`.
    pub fn post(url: &str) -> Self {
        Request::new("POST", url)
    }

    /// Add a header (repeat a name for several values).
    pub fn header(mut self, name: &str, value: impl AsRef<[u8]>) -> Self {
        self.headers
            .push((name.to_ascii_lowercase(), value.as_ref().to_vec()));
        self
    }

    /// The request body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// `value` as a JSON body, with `content-type: application/json`.
    pub fn json<T: serde::Serialize + ?Sized>(self, value: &T) -> Result<Self, HttpError> {
        let body = serde_json::to_vec(value).map_err(|e| HttpError::Invalid {
            url: shown(&self.url),
            reason: format!("the body is not JSON: {e}"),
        })?;
        Ok(self.header("content-type", "application/json").body(body))
    }

    /// Wait at most this long for the response to start (the host also
    /// bounds it, and never lets it outlive the job).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Wait at most this long for the connection.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = Some(timeout);
        self
    }

    /// Return a redirect as it is instead of following it.
    pub fn no_redirects(mut self) -> Self {
        self.follow = false;
        self
    }

    /// Send it and read the whole response.
    pub fn send(self) -> Result<Response, HttpError> {
        let mut request = self;
        for _ in 0..=MAX_REDIRECTS {
            let response = send_once(&request)?;
            let location = match response.status {
                301 | 302 | 303 | 307 | 308 if request.follow => response.header("location"),
                _ => None,
            };
            let Some(location) = location else {
                return Ok(response);
            };
            let next = resolve(&request.url, &String::from_utf8_lossy(location))?;
            // Credentials are for the origin they were meant for: not sent
            // on to another scheme, host or port.
            if origin(&next) != origin(&request.url) {
                request.headers.retain(|(n, _)| {
                    !matches!(
                        n.as_str(),
                        "authorization" | "cookie" | "proxy-authorization"
                    )
                });
            }
            request.url = next;
            // 303, and 301/302 after a POST as browsers do: GET, no body.
            if response.status == 303
                || (matches!(response.status, 301 | 302) && request.method == "POST")
            {
                request.method = "GET".into();
                request.body.clear();
                request.headers.retain(|(n, _)| n != "content-type");
            }
        }
        Err(HttpError::Invalid {
            url: shown(&request.url),
            reason: format!("more than {MAX_REDIRECTS} redirects"),
        })
    }
}

impl Response {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    /// All headers, names in lowercase.
    pub fn headers(&self) -> &[(String, Vec<u8>)] {
        &self.headers
    }

    /// The body bytes.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// The body, taken.
    pub fn into_body(self) -> Vec<u8> {
        self.body
    }

    /// The body as UTF-8 text (invalid sequences replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body decoded from JSON; a body that does not decode is a fatal
    /// error naming the URL.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, JobError> {
        serde_json::from_slice(&self.body).map_err(|e| {
            JobError::fatal(format!(
                "the response of {} is not the JSON expected: {e}",
                self.url
            ))
        })
    }

    /// The response itself for 1xx-3xx, else [`HttpError::Status`].
    pub fn error_for_status(self) -> Result<Self, HttpError> {
        if self.status >= 400 {
            return Err(HttpError::Status {
                url: self.url,
                status: self.status,
            });
        }
        Ok(self)
    }
}

/// The URL without user name, query or fragment, for messages and errors.
fn shown(url: &str) -> String {
    let url = url.split(['?', '#']).next().unwrap_or_default();
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let end = rest.find('/').unwrap_or(rest.len());
            let authority = &rest[..end];
            let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            format!("{scheme}://{host}{}", &rest[end..])
        }
        None => url.to_string(),
    }
}

/// `scheme://authority` of a URL, lowercase.
fn origin(url: &str) -> Option<String> {
    let (scheme, authority, _) = split_url(url).ok()?;
    Some(format!("{scheme}://{}", authority.to_ascii_lowercase()))
}

/// `scheme`, `authority` and `path?query` of an absolute URL.
fn split_url(url: &str) -> Result<(String, String, String), HttpError> {
    let invalid = |reason: &str| HttpError::Invalid {
        url: shown(url),
        reason: reason.to_string(),
    };
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| invalid("no scheme; expected http:// or https://"))?;
    let rest = rest.split('#').next().unwrap_or_default();
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    if authority.is_empty() {
        return Err(invalid("no host"));
    }
    let path = match path {
        "" => "/".to_string(),
        p if p.starts_with('?') => format!("/{p}"),
        p => p.to_string(),
    };
    Ok((scheme.to_ascii_lowercase(), authority.to_string(), path))
}

/// A redirect's `Location`, absolute or relative to `base`.
fn resolve(base: &str, location: &str) -> Result<String, HttpError> {
    let absolute = location.split_once("://").is_some_and(|(scheme, _)| {
        !scheme.is_empty()
            && scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
    });
    if absolute {
        return Ok(location.to_string());
    }
    let (scheme, authority, path) = split_url(base)?;
    if let Some(rest) = location.strip_prefix("//") {
        return Ok(format!("{scheme}://{rest}"));
    }
    if location.starts_with('/') {
        return Ok(format!("{scheme}://{authority}{location}"));
    }
    let dir = path.split('?').next().unwrap_or("/");
    let dir = &dir[..=dir.rfind('/').unwrap_or(0)];
    Ok(format!("{scheme}://{authority}{dir}{location}"))
}

fn send_once(request: &Request) -> Result<Response, HttpError> {
    let url = shown(&request.url);
    let (scheme, authority, path) = split_url(&request.url)?;
    let invalid = |reason: String| HttpError::Invalid {
        url: url.clone(),
        reason,
    };
    let headers = Fields::from_list(&request.headers)
        .map_err(|e| invalid(format!("a header is not allowed: {e:?}")))?;
    let outgoing = OutgoingRequest::new(headers);
    let method = match request.method.as_str() {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        "DELETE" => Method::Delete,
        "PATCH" => Method::Patch,
        "OPTIONS" => Method::Options,
        other => Method::Other(other.to_string()),
    };
    let scheme = match scheme.as_str() {
        "https" => Scheme::Https,
        "http" => Scheme::Http,
        other => return Err(invalid(format!("scheme {other:?}; expected http or https"))),
    };
    let ok = outgoing.set_method(&method).is_ok()
        && outgoing.set_scheme(Some(&scheme)).is_ok()
        && outgoing.set_authority(Some(&authority)).is_ok()
        && outgoing.set_path_with_query(Some(&path)).is_ok();
    if !ok {
        return Err(invalid("the method, host or path is malformed".into()));
    }
    let options = RequestOptions::new();
    let nanos = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
    if let Some(t) = request.timeout {
        let _ = options.set_first_byte_timeout(Some(nanos(t)));
        let _ = options.set_between_bytes_timeout(Some(nanos(t)));
    }
    if let Some(t) = request.connect_timeout {
        let _ = options.set_connect_timeout(Some(nanos(t)));
    }
    let body = outgoing
        .body()
        .map_err(|()| invalid("no request body".into()))?;
    let stream = body
        .write()
        .map_err(|()| invalid("no request body stream".into()))?;
    // As much of the body as the host buffers goes before the request: a
    // small body then leaves with the head, so a server that answers early
    // cannot cut it off. The rest streams after.
    let mut rest = request.body.as_slice();
    let written = write_ready(&stream, &mut rest, &url);
    let pending =
        outgoing_handler::handle(outgoing, Some(options)).map_err(|e| from_code(&url, &e))?;
    // A body the host stopped taking (over its cap, or the request failed)
    // fails the request too: the response's error says why, so it is the
    // one returned. A server that answers before the body is all sent
    // stops the writing: its answer counts.
    let written = written.and_then(|()| write_rest(&stream, rest, &pending, &url));
    drop(stream);
    let written =
        written.and_then(|()| OutgoingBody::finish(body, None).map_err(|e| from_code(&url, &e)));
    let answer = loop {
        if let Some(answer) = pending.get() {
            break answer;
        }
        pending.subscribe().block();
    };
    let response = answer
        .map_err(|()| invalid("the response was already taken".into()))?
        .map_err(|e| from_code(&url, &e))?;
    written?;
    let status = response.status();
    let headers = response.headers().entries();
    let incoming = response
        .consume()
        .map_err(|()| invalid("the response body was already taken".into()))?;
    let body = read_body(&incoming, &url)?;
    drop(IncomingBody::finish(incoming));
    Ok(Response {
        status,
        url,
        headers,
        body,
    })
}

/// Write what the host takes now without waiting (`check-write`); no
/// flush, which would wait for a reader the body has only once its
/// request is sent.
fn write_ready(stream: &OutputStream, rest: &mut &[u8], url: &str) -> Result<(), HttpError> {
    while !rest.is_empty() {
        let room = stream.check_write().map_err(|e| from_stream(url, e))?;
        if room == 0 {
            return Ok(());
        }
        let n = rest.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        stream.write(&rest[..n]).map_err(|e| from_stream(url, e))?;
        *rest = &rest[n..];
    }
    Ok(())
}

/// Write the rest of the body once the request is sent, waiting for room,
/// until it is all written or the response has come.
fn write_rest(
    stream: &OutputStream,
    mut rest: &[u8],
    pending: &FutureIncomingResponse,
    url: &str,
) -> Result<(), HttpError> {
    loop {
        write_ready(stream, &mut rest, url)?;
        if rest.is_empty() {
            return Ok(());
        }
        let room = stream.subscribe();
        let answered = pending.subscribe();
        let ready = poll(&[&room, &answered]);
        if ready.contains(&1) {
            return Ok(());
        }
    }
}

fn read_body(incoming: &IncomingBody, url: &str) -> Result<Vec<u8>, HttpError> {
    let stream = incoming.stream().map_err(|()| HttpError::Invalid {
        url: url.to_string(),
        reason: "the response body stream was already taken".into(),
    })?;
    let mut out = Vec::new();
    loop {
        match stream.blocking_read(64 * 1024) {
            Ok(chunk) => out.extend_from_slice(&chunk),
            Err(StreamError::Closed) => return Ok(out),
            Err(e) => return Err(from_stream(url, e)),
        }
    }
}

fn from_stream(url: &str, e: StreamError) -> HttpError {
    match e {
        StreamError::LastOperationFailed(io) => {
            match crate::bindings::wasi::http::types::http_error_code(&io) {
                Some(code) => from_code(url, &code),
                None => from_text(url, &io.to_debug_string()),
            }
        }
        StreamError::Closed => HttpError::Connect {
            url: url.to_string(),
            reason: "the connection closed early".into(),
        },
    }
}

/// A body error the host gave as text only (wasmtime-wasi-http 48 does
/// not type the errors of a response body's stream): its first line, as
/// that crate words it.
fn from_text(url: &str, text: &str) -> HttpError {
    let line = text.lines().next().unwrap_or_default();
    let url = url.to_string();
    if let Some(rest) = line.strip_prefix("HTTP response body size exceeds limit") {
        let limit = rest
            .trim_start_matches(": ")
            .trim_end_matches(" bytes")
            .parse()
            .ok();
        return HttpError::ResponseTooLarge { url, limit };
    }
    if let Some(rest) = line.strip_prefix("HTTP request body size exceeds limit") {
        let limit = rest
            .trim_start_matches(": ")
            .trim_end_matches(" bytes")
            .parse()
            .ok();
        return HttpError::RequestTooLarge { url, limit };
    }
    match line {
        "HTTP response timeout" | "connection read timeout" | "connection timeout" => {
            HttpError::Timeout { url }
        }
        _ => HttpError::Connect {
            url,
            reason: line.to_string(),
        },
    }
}

fn from_code(url: &str, code: &ErrorCode) -> HttpError {
    let url = url.to_string();
    match code {
        ErrorCode::HttpRequestDenied => HttpError::Denied { url },
        ErrorCode::DestinationIpProhibited => HttpError::Prohibited { url },
        ErrorCode::ConnectionTimeout
        | ErrorCode::ConnectionReadTimeout
        | ErrorCode::ConnectionWriteTimeout
        | ErrorCode::HttpResponseTimeout
        | ErrorCode::DnsTimeout => HttpError::Timeout { url },
        ErrorCode::HttpResponseBodySize(limit) => {
            HttpError::ResponseTooLarge { url, limit: *limit }
        }
        ErrorCode::HttpRequestBodySize(limit) => HttpError::RequestTooLarge { url, limit: *limit },
        ErrorCode::ConnectionLimitReached => HttpError::TooManyRequests { url },
        ErrorCode::HttpRequestUriInvalid
        | ErrorCode::HttpRequestMethodInvalid
        | ErrorCode::HttpProtocolError => HttpError::Invalid {
            url,
            reason: format!("{code:?}"),
        },
        other => HttpError::Connect {
            url,
            reason: format!("{other:?}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_and_redirects_resolve() {
        assert_eq!(
            split_url("https://a.example:8443/x/y?q=1#f").unwrap(),
            ("https".into(), "a.example:8443".into(), "/x/y?q=1".into())
        );
        assert_eq!(
            split_url("http://a.example?q").unwrap().2,
            "/?q".to_string()
        );
        assert!(split_url("a.example/x").is_err());
        let base = "http://a.example/dir/page?x=1";
        assert_eq!(resolve(base, "/top").unwrap(), "http://a.example/top");
        assert_eq!(resolve(base, "next").unwrap(), "http://a.example/dir/next");
        assert_eq!(
            resolve(base, "//b.example/z").unwrap(),
            "http://b.example/z"
        );
        assert_eq!(
            resolve(base, "https://c.example/").unwrap(),
            "https://c.example/"
        );
        assert_eq!(
            shown("https://a.example/x?token=secret"),
            "https://a.example/x"
        );
        assert_eq!(shown("https://me:pw@a.example/x"), "https://a.example/x");
        assert_eq!(
            resolve(base, "/p?next=http://b.example/").unwrap(),
            "http://a.example/p?next=http://b.example/"
        );
        assert_eq!(origin("HTTP://A.example/x"), origin("http://a.example/y"));
    }

    #[test]
    fn timeouts_connections_and_5xx_are_retryable_denials_are_not() {
        let url = "https://a.example".to_string();
        assert!(HttpError::Timeout { url: url.clone() }.is_retryable());
        assert!(
            HttpError::Status {
                url: url.clone(),
                status: 503
            }
            .is_retryable()
        );
        assert!(
            HttpError::Status {
                url: url.clone(),
                status: 429
            }
            .is_retryable()
        );
        assert!(
            !HttpError::Status {
                url: url.clone(),
                status: 404
            }
            .is_retryable()
        );
        assert!(!HttpError::Denied { url: url.clone() }.is_retryable());
        assert!(matches!(
            JobError::from(HttpError::Denied { url }),
            JobError::Fatal(m) if m.contains("http-request-denied")
        ));
    }
}
