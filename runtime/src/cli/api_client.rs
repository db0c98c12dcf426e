//! `spool --api URL --token T …`: the commands that can go through a
//! `spool serve` instead of Redis, so a tenant needs a token, never Redis
//! credentials. A blocking HTTP/1.1 client of one request per connection
//! (plain, or TLS with rustls against the system's or `--api-ca`'s roots).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Where the API is and the token to show it.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ApiTarget {
    /// Go through this `spool serve` (`http://HOST:PORT` or
    /// `https://HOST[:PORT]`) instead of Redis: `enqueue` only, for now.
    #[arg(long, global = true, env = "SPOOL_API", value_name = "URL")]
    pub api: Option<String>,
    /// The tenant token for `--api` (`spool tokens create`).
    #[arg(long, global = true, env = "SPOOL_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Trust this CA (PEM) for an `https` `--api`, instead of the system's.
    #[arg(long, global = true, env = "SPOOL_API_CA", value_name = "PEM")]
    pub api_ca: Option<PathBuf>,
}

/// An answer: status and body.
pub(crate) struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Answer {
    /// The body as JSON (`null` if it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_default()
    }

    /// The API's error message, or the status.
    pub fn message(&self) -> String {
        let j = self.json();
        j["error"]["message"]
            .as_str()
            .map_or_else(|| format!("HTTP {}", self.status), str::to_string)
    }

    /// Whether a retry may help: the API says so, or (without its word,
    /// say from a proxy) the status is 408, 429 or 5xx.
    pub fn retryable(&self) -> bool {
        self.json()["error"]["retryable"]
            .as_bool()
            .unwrap_or(matches!(self.status, 408 | 429 | 500..=599))
    }
}

/// A request that got no answer: what failed (a retry may help).
pub(crate) struct Unreached(pub String);

/// A checked `--api` and `--token`.
pub(crate) struct Api {
    host: String,
    port: u16,
    token: String,
    roots: Option<Arc<tokio_rustls::rustls::ClientConfig>>,
}

impl ApiTarget {
    /// The client, or what is wrong with the options.
    pub fn client(&self) -> Result<Api, String> {
        let url = self
            .api
            .as_deref()
            .unwrap_or_default()
            .trim_end_matches('/');
        let (tls, rest) = match url.split_once("://") {
            Some(("http", rest)) => (false, rest),
            Some(("https", rest)) => (true, rest),
            _ => {
                return Err("--api: expected http://HOST:PORT or https://HOST[:PORT]".to_string());
            }
        };
        let (host, port) = split_host(rest, if tls { 443 } else { 80 })?;
        let token = self
            .token
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or("--api needs --token (or SPOOL_TOKEN): a token from `spool tokens create`")?
            .to_string();
        if token.chars().any(|c| c.is_control() || c == ' ') {
            return Err("--token: not a token (it holds spaces or control characters)".to_string());
        }
        let loopback = host == "localhost"
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        if !tls && !loopback {
            eprintln!(
                "spool: warning: --api {host} is plain http: the token crosses the network in the clear; use https"
            );
        }
        let roots = if tls { Some(self.tls_config()?) } else { None };
        Ok(Api {
            host,
            port,
            token,
            roots,
        })
    }

    fn tls_config(&self) -> Result<Arc<tokio_rustls::rustls::ClientConfig>, String> {
        use tokio_rustls::rustls::pki_types::CertificateDer;
        use tokio_rustls::rustls::pki_types::pem::PemObject;
        let file = self
            .api_ca
            .clone()
            .unwrap_or_else(|| PathBuf::from("/etc/ssl/certs/ca-certificates.crt"));
        let mut roots = tokio_rustls::rustls::RootCertStore::empty();
        let certs = CertificateDer::pem_file_iter(&file)
            .and_then(Iterator::collect::<Result<Vec<_>, _>>)
            .map_err(|e| {
                format!(
                    "{}: {e}; give the API's CA with --api-ca PEM",
                    file.display()
                )
            })?;
        roots.add_parsable_certificates(certs);
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let config = tokio_rustls::rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Arc::new(config))
    }
}

/// Host and port of `HOST[:PORT]` or `[V6][:PORT]`; no user, path or
/// control characters (the error never repeats the text: it may hold a
/// password).
fn split_host(rest: &str, default: u16) -> Result<(String, u16), String> {
    if rest.is_empty() || rest.contains(['/', '@']) || rest.chars().any(char::is_control) {
        return Err(
            "--api: expected http://HOST:PORT or https://HOST[:PORT], with no user, path or control characters"
                .to_string(),
        );
    }
    let port = |p: &str| {
        p.parse::<u16>()
            .map_err(|_| format!("--api: port {p:?} is not a number"))
    };
    if let Some(v6) = rest.strip_prefix('[') {
        let (h, after) = v6
            .split_once(']')
            .ok_or("--api: an IPv6 address needs its closing ]")?;
        return match after.strip_prefix(':') {
            Some(p) => Ok((h.to_string(), port(p)?)),
            None if after.is_empty() => Ok((h.to_string(), default)),
            None => Err("--api: expected :PORT after the IPv6 address".to_string()),
        };
    }
    match rest.rsplit_once(':') {
        Some((h, p)) => Ok((h.to_string(), port(p)?)),
        None => Ok((rest.to_string(), default)),
    }
}

impl Api {
    /// One request; the answer, whatever its status.
    pub fn send(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        body: &[u8],
        timeout: Duration,
    ) -> Result<Answer, Unreached> {
        let where_ = format!("{}:{}", self.host, self.port);
        let unreached = |e: std::io::Error| Unreached(format!("{method} {path} on {where_}: {e}"));
        let sock = TcpStream::connect((self.host.as_str(), self.port)).map_err(unreached)?;
        sock.set_read_timeout(Some(timeout)).map_err(unreached)?;
        sock.set_write_timeout(Some(timeout)).map_err(unreached)?;
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {where_}\r\nConnection: close\r\nAuthorization: Bearer {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
            self.token,
            body.len()
        );
        let raw = match &self.roots {
            None => exchange(sock, head.as_bytes(), body, timeout),
            Some(config) => {
                let name = tokio_rustls::rustls::pki_types::ServerName::try_from(self.host.clone())
                    .map_err(|e| Unreached(format!("--api host {:?}: {e}", self.host)))?;
                let conn = tokio_rustls::rustls::ClientConnection::new(Arc::clone(config), name)
                    .map_err(|e| Unreached(format!("TLS to {where_}: {e}")))?;
                exchange(
                    tokio_rustls::rustls::StreamOwned::new(conn, sock),
                    head.as_bytes(),
                    body,
                    timeout,
                )
            }
        }
        .map_err(unreached)?;
        parse(&raw)
            .ok_or_else(|| Unreached(format!("{method} {path} on {where_}: not an HTTP answer")))
    }
}

/// The most of an answer read (a job record with its output, at most).
const MAX_ANSWER: usize = 64 << 20;

/// Send the request; read the whole answer within `timeout` (checked
/// between reads too, so a trickle cannot last for ever), at most
/// [`MAX_ANSWER`] bytes.
fn exchange(
    mut s: impl Read + Write,
    head: &[u8],
    body: &[u8],
    timeout: Duration,
) -> std::io::Result<Vec<u8>> {
    let until = std::time::Instant::now() + timeout;
    s.write_all(head)?;
    s.write_all(body)?;
    s.flush()?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 << 10];
    loop {
        let n = match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            // An end without TLS close_notify: whether the answer is whole
            // is for `parse` to say.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => break,
            Err(e) => return Err(e),
        };
        raw.extend_from_slice(&buf[..n]);
        if raw.len() > MAX_ANSWER {
            return Err(std::io::Error::other("the answer is over 64 MiB"));
        }
        if std::time::Instant::now() > until {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the answer took too long",
            ));
        }
    }
    Ok(raw)
}

/// Status and body (de-chunked) of a whole HTTP/1.1 answer.
fn parse(raw: &[u8]) -> Option<Answer> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    let status = head.split(' ').nth(1)?.parse().ok()?;
    let mut body = raw[split + 4..].to_vec();
    if head.contains("transfer-encoding: chunked") {
        let mut out = Vec::new();
        let mut rest = body.as_slice();
        loop {
            // A chunked answer is whole only with its last, empty chunk.
            let end = rest.windows(2).position(|w| w == b"\r\n")?;
            let size =
                usize::from_str_radix(String::from_utf8_lossy(&rest[..end]).trim(), 16).ok()?;
            if size == 0 {
                break;
            }
            let stop = end.checked_add(2)?.checked_add(size)?;
            out.extend_from_slice(rest.get(end + 2..stop)?);
            rest = rest.get(stop.checked_add(2)?..)?;
        }
        body = out;
    } else if let Some(len) = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
    {
        // Cut short: not an answer to act on.
        if body.len() < len {
            return None;
        }
        body.truncate(len);
    }
    Some(Answer { status, body })
}
