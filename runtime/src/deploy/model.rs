//! What the fleet store keeps: version entries (the history and the pins)
//! and the reports workers publish about what they serve.

use crate::ids::Version;
use crate::plugins::{Rejection, Serving};
use serde::{Deserialize, Serialize};

/// How a version entered the history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// `spool plugins deploy`: pinned on every worker.
    Deploy,
    /// `spool plugins rollback`: an earlier version pinned again.
    Rollback,
    /// A worker loaded it from its plugins directory (not pinned).
    Directory,
}

impl Action {
    /// `deploy`, `rollback` or `directory`.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Deploy => "deploy",
            Action::Rollback => "rollback",
            Action::Directory => "directory",
        }
    }
}

/// One version of a plugin, as the history and the pins keep it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionEntry {
    /// blake3 digest of the component bytes.
    pub digest: Version,
    /// Size of the component in bytes.
    pub size: u64,
    /// The SDK version that built it, when it says.
    #[serde(default)]
    pub sdk: Option<String>,
    /// The manifest (TOML) it runs with; none for defaults.
    #[serde(default)]
    pub manifest: Option<String>,
    /// When it was recorded (µs since the epoch).
    pub at_us: u64,
    /// How it was recorded.
    pub action: Action,
    /// Who recorded it: `user@host` for a command, the worker id and file
    /// for a directory load.
    pub by: String,
}

impl VersionEntry {
    /// The first 12 hex digits of the digest.
    pub fn short(&self) -> &str {
        self.digest.short()
    }
}

/// What one worker serves, published every few seconds and on changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerStatus {
    /// The worker's id.
    pub worker: String,
    /// Its plugins directory.
    pub dir: String,
    /// When it published this (µs since the epoch).
    pub reported_us: u64,
    /// The plugins it serves.
    pub plugins: Vec<Serving>,
    /// Files and deployed versions it refused, and why.
    pub rejected: Vec<Rejection>,
    /// The id of the last fleet event it has acted on (a pin change or a
    /// cache purge): a command waits for this to pass its own event.
    #[serde(default)]
    pub events_seen: String,
    /// Jobs whose thread wedged past the deadline and grace and is still
    /// not back: each holds a thread (capacity lost) until it returns.
    #[serde(default)]
    pub wedged: Vec<WedgedJob>,
    /// When the worker started (µs since the epoch; 0 from older workers).
    #[serde(default)]
    pub started_us: u64,
    /// Jobs it had claimed and not yet acked when it published this.
    #[serde(default)]
    pub in_flight: u64,
}

/// A job whose thread the worker's watchdog gave up on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WedgedJob {
    /// The job's id.
    pub job: String,
    /// Its plugin field.
    pub plugin: String,
    /// When the thread took it (µs since the epoch).
    pub since_us: u64,
}

/// Whether stream id `seen` is at or after `event` (ids are `MS-SEQ`).
pub fn has_seen(seen: &str, event: &str) -> bool {
    let parse = |id: &str| {
        let (ms, seq) = id.split_once('-').unwrap_or((id, "0"));
        (
            ms.parse::<u64>().unwrap_or(0),
            seq.parse::<u64>().unwrap_or(0),
        )
    };
    parse(seen) >= parse(event)
}
