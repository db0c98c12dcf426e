//! A TCP proxy in front of a test's Redis that can lose one reply: Redis
//! applies the request, and the proxy drops the reply that carries a marker
//! and cuts the connection. That is what a network cut at the worst moment
//! looks like to a worker, made deterministic.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// A proxy on a free loopback port; stops accepting when dropped.
#[derive(Debug)]
pub struct Proxy {
    port: u16,
    shared: Arc<Shared>,
}

#[derive(Debug, Default)]
struct Shared {
    /// The next reply containing this is lost.
    armed: Mutex<Option<Vec<u8>>>,
    /// How many replies were lost so far.
    lost: AtomicUsize,
    stopped: AtomicBool,
    /// Refuse new connections from the next cut on.
    refuse_after_cut: AtomicBool,
    /// New connections are closed at once (see [`Proxy::accept_again`]).
    refusing: AtomicBool,
    /// The client side of every connection made, to cut them all.
    clients: Mutex<Vec<TcpStream>>,
}

impl Proxy {
    /// Forward a free loopback port to `127.0.0.1:upstream`.
    pub fn start(upstream: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let shared = Arc::new(Shared::default());
        let accept = Arc::clone(&shared);
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if accept.stopped.load(Ordering::Relaxed) {
                    return;
                }
                let Ok(client) = client else { continue };
                if accept.refusing.load(Ordering::Relaxed) {
                    continue; // dropped: the client sees a closed connection
                }
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue; // the client sees a closed connection
                };
                if let Ok(c) = client.try_clone() {
                    accept.clients.lock().unwrap().push(c);
                }
                pipe(client, server, Arc::clone(&accept));
            }
        });
        Proxy { port, shared }
    }

    /// `redis://127.0.0.1:PORT` of the proxy.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Lose the next reply whose bytes contain `marker` (the request was
    /// applied by Redis) and cut that connection: every reply in the same
    /// read is lost with it, as in a real cut. One cut only; markers up
    /// to 64 bytes are found even when split across reads.
    pub fn lose_reply_with(&self, marker: &str) {
        *self.shared.armed.lock().unwrap() = Some(marker.as_bytes().to_vec());
    }

    /// As [`Proxy::lose_reply_with`], and from that cut on refuse new
    /// connections (Redis unreachable) until [`Proxy::accept_again`].
    pub fn lose_reply_with_then_refuse(&self, marker: &str) {
        self.shared.refuse_after_cut.store(true, Ordering::Relaxed);
        self.lose_reply_with(marker);
    }

    /// Cut every connection and refuse new ones until
    /// [`Proxy::accept_again`]: Redis out of reach for every client.
    pub fn cut_everything(&self) {
        self.shared.refusing.store(true, Ordering::Relaxed);
        for c in self.shared.clients.lock().unwrap().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
    }

    /// Accept connections again.
    pub fn accept_again(&self) {
        self.shared.refusing.store(false, Ordering::Relaxed);
    }

    /// How many replies were lost so far.
    pub fn lost(&self) -> usize {
        self.shared.lost.load(Ordering::Relaxed)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stopped.store(true, Ordering::Relaxed);
        // Wake the accept loop so that it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Copy both ways between `client` and `server`; a reply carrying the
/// armed marker is dropped and both connections are cut.
fn pipe(client: TcpStream, server: TcpStream, shared: Arc<Shared>) {
    let (Ok(mut from_client), Ok(mut to_server)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n @ 1..) = from_client.read(&mut buf) {
            if to_server.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = to_server.shutdown(Shutdown::Both);
    });
    std::thread::spawn(move || {
        let (mut client, mut server) = (client, server);
        let mut buf = vec![0u8; 64 * 1024];
        // The end of the previous read: a marker split across two reads is
        // still found.
        let mut tail: Vec<u8> = Vec::new();
        while let Ok(n @ 1..) = server.read(&mut buf) {
            let mut seen = std::mem::take(&mut tail);
            seen.extend_from_slice(&buf[..n]);
            if shared.take_marker_in(&seen) {
                if shared.refuse_after_cut.swap(false, Ordering::Relaxed) {
                    shared.refusing.store(true, Ordering::Relaxed);
                }
                shared.lost.fetch_add(1, Ordering::Relaxed);
                break;
            }
            if client.write_all(&buf[..n]).is_err() {
                break;
            }
            tail = seen.split_off(seen.len().saturating_sub(64));
        }
        let _ = client.shutdown(Shutdown::Both);
        let _ = server.shutdown(Shutdown::Both);
    });
}

impl Shared {
    /// Whether `bytes` hold the armed marker; disarms when they do.
    fn take_marker_in(&self, bytes: &[u8]) -> bool {
        let mut armed = self.armed.lock().unwrap();
        let hit = armed
            .as_deref()
            .is_some_and(|m| bytes.windows(m.len()).any(|w| w == m));
        if hit {
            *armed = None;
        }
        hit
    }
}
