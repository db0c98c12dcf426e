//! A private `redis-server` child process, for `spool dev`, `spool bench`
//! and the tests: started on a free loopback port with its data (AOF on) in
//! a directory of the caller's, and shut down with it.

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `redis-server` we started.
#[derive(Debug)]
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    fsync: &'static str,
    /// More `redis-server` arguments (cluster mode, for one).
    extra: Vec<String>,
}

/// Why a private Redis could not be started.
#[derive(Debug, thiserror::Error)]
pub enum RedisServerError {
    /// No `redis-server` on `PATH`.
    #[error(
        "redis-server was not found on PATH; install it (Debian/Ubuntu: `apt-get install -y redis-server`, macOS: `brew install redis`) or pass --redis URL to use a running Redis"
    )]
    NotInstalled,
    /// It started but did not answer, or exited.
    #[error("redis-server on port {port} did not start: {reason} (its log: {log})")]
    DidNotStart {
        /// The port tried.
        port: u16,
        /// What happened.
        reason: String,
        /// Its log file.
        log: PathBuf,
    },
    /// The data directory could not be created.
    #[error("could not create the redis data directory {path}: {source}")]
    Dir {
        /// The directory.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

impl RedisServer {
    /// Start on a free port with data in `dir`. `fsync` is Redis'
    /// `appendfsync`: `always` loses nothing even on kill -9, `everysec`
    /// at most a second.
    pub fn start(dir: &Path, fsync: &'static str) -> Result<Self, RedisServerError> {
        Self::start_with(dir, fsync, &[])
    }

    /// [`RedisServer::start`] with more `redis-server` arguments.
    pub fn start_with(
        dir: &Path,
        fsync: &'static str,
        extra: &[String],
    ) -> Result<Self, RedisServerError> {
        let mut last = None;
        for _ in 0..5 {
            let port = free_port();
            match Self::start_on_with(dir, port, fsync, extra) {
                Ok(server) => return Ok(server),
                Err(e @ RedisServerError::DidNotStart { .. }) => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or(RedisServerError::NotInstalled))
    }

    /// Start on `port` with data in `dir`.
    pub fn start_on(dir: &Path, port: u16, fsync: &'static str) -> Result<Self, RedisServerError> {
        Self::start_on_with(dir, port, fsync, &[])
    }

    fn start_on_with(
        dir: &Path,
        port: u16,
        fsync: &'static str,
        extra: &[String],
    ) -> Result<Self, RedisServerError> {
        std::fs::create_dir_all(dir).map_err(|source| RedisServerError::Dir {
            path: dir.to_path_buf(),
            source,
        })?;
        // Absolute: redis-server changes into --dir before opening its log.
        let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
        let mut server = RedisServer {
            child: None,
            port,
            dir,
            fsync,
            extra: extra.to_vec(),
        };
        server.spawn()?;
        Ok(server)
    }

    fn spawn(&mut self) -> Result<(), RedisServerError> {
        let log = self.dir.join("redis.log");
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(&self.dir)
            .args(["--appendonly", "yes", "--appendfsync", self.fsync])
            .args(["--save", "", "--daemonize", "no", "--protected-mode", "no"])
            .args(&self.extra)
            .arg("--logfile")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own process group: Ctrl-C in a terminal must reach only
            // us, so that the worker can still ack its last jobs before we
            // shut Redis down.
            .process_group(0)
            .spawn()
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => RedisServerError::NotInstalled,
                _ => RedisServerError::DidNotStart {
                    port: self.port,
                    reason: e.to_string(),
                    log: log.clone(),
                },
            })?;
        self.child = Some(child);
        let started = Instant::now();
        loop {
            if self.ping() {
                return Ok(());
            }
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if let Some(status) = exited {
                self.child = None;
                return Err(RedisServerError::DidNotStart {
                    port: self.port,
                    reason: format!("it exited with {status}"),
                    log,
                });
            }
            if started.elapsed() > Duration::from_secs(10) {
                self.kill();
                return Err(RedisServerError::DidNotStart {
                    port: self.port,
                    reason: "no answer to PING within 10s".into(),
                    log,
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether our child answers on the port: the server's own process id
    /// must be the child's, so that a server someone else started on the
    /// same port (a race for a free port) is never taken for ours.
    fn ping(&self) -> bool {
        let Ok(client) = redis::Client::open(self.url()) else {
            return false;
        };
        let Some(pid) = self.pid() else {
            return false;
        };
        client
            .get_connection_with_timeout(Duration::from_millis(200))
            .and_then(|mut c| redis::cmd("INFO").arg("server").query::<String>(&mut c))
            .is_ok_and(|info| {
                info.lines()
                    .any(|l| l.trim() == format!("process_id:{pid}"))
            })
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Its data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Shut down cleanly (`SHUTDOWN`: the AOF is flushed), then reap.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Ok(client) = redis::Client::open(self.url())
            && let Ok(mut c) = client.get_connection_with_timeout(Duration::from_secs(1))
        {
            let _: redis::RedisResult<()> = redis::cmd("SHUTDOWN").query(&mut c);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Kill at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Start again on the same port and data directory (after stop or kill).
    /// No other server of this process was given the port meanwhile (see
    /// [`free_port`]).
    pub fn restart(&mut self) -> Result<(), RedisServerError> {
        self.stop();
        self.spawn()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Ports handed out by [`free_port`]: below the kernel's ephemeral range
/// (32768 and up on Linux), which `bind(…:0)` and outgoing connections draw
/// from, so no client socket or other free-port probe takes one while its
/// server is down for a restart.
const PORTS: std::ops::Range<u16> = 20_000..32_000;

/// A port that is free right now and that this process has not handed out
/// before (a restarted server gets its port back; another server of this
/// process never takes it). Each process starts at its own offset, so two
/// processes rarely try the same ports; when they do, the second bind
/// fails and [`RedisServer::start`] tries the next one.
pub(super) fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let span = u32::from(PORTS.end - PORTS.start);
    let _ = NEXT.compare_exchange(
        u32::MAX,
        std::process::id().wrapping_mul(97) % span,
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    for _ in 0..span {
        let offset = NEXT.fetch_add(1, Ordering::Relaxed) % span;
        let port = PORTS.start + u16::try_from(offset).unwrap_or(0);
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_or(16379, |a| a.port())
}
