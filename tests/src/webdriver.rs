//! A WebDriver client of a few calls, for the dashboard's browser tests:
//! it starts Debian's `chromedriver` on a free port, opens a headless
//! Chromium session and speaks the W3C protocol (JSON over HTTP/1.1) to it.
//! Small on purpose: the tests need navigation, finding, typing, clicking,
//! reading text, running a script and screenshots, nothing more.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The key W3C WebDriver names element references with.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A headless Chromium driven through chromedriver; both end when dropped.
#[derive(Debug)]
pub struct Browser {
    driver: Child,
    port: u16,
    session: String,
    profile: PathBuf,
}

/// A reference to an element on the current page.
#[derive(Debug, Clone)]
pub struct Element(String);

fn find_program(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    for dir in std::env::split_paths(&path) {
        for n in names {
            let p = dir.join(n);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// One JSON request to `127.0.0.1:port`; the reply's JSON.
fn call(
    port: u16,
    method: &str,
    path: &str,
    body: Option<&serde_json::Value>,
) -> std::io::Result<serde_json::Value> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    let body = body.map(ToString::to_string).unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut reader = BufReader::new(s);
    let mut length = None;
    let mut chunked = false;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let lower = line.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            length = v.trim().parse::<usize>().ok();
        }
        if lower.starts_with("transfer-encoding:") && lower.contains("chunked") {
            chunked = true;
        }
    }
    let mut raw = Vec::new();
    if chunked {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size)?;
            let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if n == 0 {
                break;
            }
            let mut chunk = vec![0; n + 2];
            reader.read_exact(&mut chunk)?;
            raw.extend_from_slice(&chunk[..n]);
        }
    } else if let Some(n) = length {
        raw.resize(n, 0);
        reader.read_exact(&mut raw)?;
    } else {
        reader.read_to_end(&mut raw)?;
    }
    serde_json::from_slice(&raw).map_err(std::io::Error::other)
}

impl Browser {
    /// Start chromedriver and a headless Chromium (1280×900) whose profile
    /// lives under `dir`. Panics, saying what to install, when either is
    /// missing (`scripts/setup.sh` installs both).
    pub fn start(dir: &Path) -> Browser {
        let driver_bin = find_program(&["chromedriver"]).expect(
            "chromedriver is not installed: run scripts/setup.sh (apt-get install chromium-driver)",
        );
        let chrome = find_program(&["chromium", "chromium-browser"])
            .expect("chromium is not installed: run scripts/setup.sh (apt-get install chromium)");
        let port = free_port();
        let driver = Command::new(driver_bin)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting chromedriver");
        let started = Instant::now();
        while call(port, "GET", "/status", None)
            .ok()
            .and_then(|v| v["value"]["ready"].as_bool())
            != Some(true)
        {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "chromedriver did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let profile = dir.join("chromium-profile");
        std::fs::create_dir_all(&profile).unwrap();
        // The flags the machine's notes name: no background traffic on a
        // closed network, no sandbox as root, a fresh profile.
        let args = [
            "--headless=new".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-dev-shm-usage".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--window-size=1280,900".into(),
            format!("--user-data-dir={}", profile.display()),
        ];
        let caps = serde_json::json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chrome.display().to_string(), "args": args},
        }}});
        let mut browser = Browser {
            driver,
            port,
            session: String::new(),
            profile,
        };
        let made = call(port, "POST", "/session", Some(&caps)).expect("a WebDriver session");
        browser.session = made["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {made}"))
            .to_string();
        browser
    }

    fn cmd(&self, method: &str, path: &str, body: Option<serde_json::Value>) -> serde_json::Value {
        let path = format!("/session/{}{path}", self.session);
        let reply = call(self.port, method, &path, body.as_ref())
            .unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}"));
        if let Some(error) = reply["value"]["error"].as_str() {
            panic!(
                "WebDriver {method} {path}: {error}: {}",
                reply["value"]["message"]
            );
        }
        reply["value"].clone()
    }

    /// Open `url`.
    pub fn goto(&self, url: &str) {
        self.cmd("POST", "/url", Some(serde_json::json!({ "url": url })));
    }

    /// The first element matching CSS `selector`, once there is one
    /// (waits up to `within`).
    pub fn wait_for(&self, selector: &str, within: Duration) -> Element {
        let started = Instant::now();
        loop {
            if let Some(e) = self.try_find(selector) {
                return e;
            }
            assert!(
                started.elapsed() < within,
                "no {selector} on the page within {within:?}; it shows:\n{}",
                self.text("body")
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The first element matching CSS `selector`, if any now.
    pub fn try_find(&self, selector: &str) -> Option<Element> {
        let path = format!("/session/{}/element", self.session);
        let body = serde_json::json!({"using": "css selector", "value": selector});
        let reply = call(self.port, "POST", &path, Some(&body)).ok()?;
        reply["value"][ELEMENT]
            .as_str()
            .map(|id| Element(id.to_string()))
    }

    /// Type `text` into `element`.
    pub fn type_into(&self, element: &Element, text: &str) {
        self.cmd(
            "POST",
            &format!("/element/{}/value", element.0),
            Some(serde_json::json!({ "text": text })),
        );
    }

    /// Click `element`.
    pub fn click(&self, element: &Element) {
        self.cmd(
            "POST",
            &format!("/element/{}/click", element.0),
            Some(serde_json::json!({})),
        );
    }

    /// The visible text of the first element matching `selector` ("" if
    /// there is none). The page re-renders as jobs move: an element found
    /// and replaced before its text was read is found again.
    pub fn text(&self, selector: &str) -> String {
        for _ in 0..10 {
            let Some(e) = self.try_find(selector) else {
                return String::new();
            };
            let path = format!("/session/{}/element/{}/text", self.session, e.0);
            let reply = call(self.port, "GET", &path, None)
                .unwrap_or_else(|err| panic!("WebDriver GET {path}: {err}"));
            match reply["value"]["error"].as_str() {
                None => return reply["value"].as_str().unwrap_or_default().to_string(),
                Some("stale element reference") => {}
                Some(error) => panic!(
                    "WebDriver GET {path}: {error}: {}",
                    reply["value"]["message"]
                ),
            }
        }
        panic!("{selector} was replaced on every one of 10 reads of its text")
    }

    /// Wait until the text of `selector` satisfies `ok`; returns it.
    pub fn wait_text(&self, selector: &str, within: Duration, ok: impl Fn(&str) -> bool) -> String {
        let started = Instant::now();
        loop {
            let t = self.text(selector);
            if ok(&t) {
                return t;
            }
            assert!(
                started.elapsed() < within,
                "{selector} never showed what was expected within {within:?}; it shows:\n{t}"
            );
            std::thread::sleep(Duration::from_millis(150));
        }
    }

    /// Run `script` (a function body) in the page; its return value.
    pub fn run(&self, script: &str) -> serde_json::Value {
        self.cmd(
            "POST",
            "/execute/sync",
            Some(serde_json::json!({"script": script, "args": []})),
        )
    }

    /// Accept the page's `confirm()` dialog, once one is open.
    pub fn accept_dialog(&self) {
        let started = Instant::now();
        loop {
            let path = format!("/session/{}/alert/accept", self.session);
            let reply = call(self.port, "POST", &path, Some(&serde_json::json!({})));
            if reply.is_ok_and(|r| r["value"].is_null()) {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "no dialog opened"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Save a screenshot of the window as PNG at `path`.
    pub fn screenshot(&self, path: &Path) {
        use base64::Engine as _;
        let b64 = self.cmd("GET", "/screenshot", None);
        let png = base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().unwrap_or_default())
            .expect("a base64 screenshot");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::fs::write(path, png).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = call(
                self.port,
                "DELETE",
                &format!("/session/{}", self.session),
                None,
            );
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}
