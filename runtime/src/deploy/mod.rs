//! Fleet deploys: plugin versions kept in Redis, so that every worker on
//! every machine serves the same version and one rollback reaches them all.
//! Knows nothing of wasm: workers validate and compile what it hands them.
//!
//! # Keys
//!
//! Every key starts with `PREFIX:{plugins}` (one Redis Cluster slot, so each
//! script's keys share it). The store is per prefix, not per queue: a deploy
//! reaches the workers of every queue.
//!
//! | key | type | what |
//! |---|---|---|
//! | `…:blob:NAME:DIGEST` | string | component bytes, content-addressed |
//! | `…:pinned` | hash | NAME → the version entry every worker serves |
//! | `…:history:NAME` | list | version entries (JSON), newest first, capped |
//! | `…:names` | set | plugins with a history |
//! | `…:events` | stream | an entry per pin change (or result-cache purge); workers block on it |
//! | `…:keep` | string | versions kept per plugin (default 10) |
//! | `…:workers` | zset | worker id → time of its last report (ms) |
//! | `…:worker:ID` | string | the worker's report (JSON), expires |
//!
//! # Pins and directories
//!
//! A deploy or a rollback *pins* a version: every worker serves the pinned
//! version whatever its directory holds, so the fleet agrees. A version a
//! worker loads from its directory is recorded in the history (bytes
//! included, so it can be rolled back to) but pinned nowhere.
//! [`Store::unpin`] hands the plugin back to the directories.

mod error;
mod model;

pub use error::DeployError;
pub use model::{Action, Rejection, Serving, VersionEntry, WorkerStatus, has_seen};

use crate::queue::{PluginName, QueueError, classify, now_us, open, open_blocking, redact};
use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use std::collections::BTreeMap;
use std::time::Duration;

/// Largest component the store takes (Redis strings go to 512 MiB, but a
/// plugin this size is already a mistake).
pub const MAX_DEPLOY_BYTES: u64 = 64 << 20;

/// Versions kept per plugin unless `PREFIX:{plugins}:keep` says otherwise.
pub const DEFAULT_KEEP: u32 = 10;

/// How long a worker's report outlives its last refresh.
pub const REPORT_TTL: Duration = Duration::from_secs(30);

/// A handle on the fleet store. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    url: String,
    keys: String,
    client: redis::Client,
    conn: ConnectionManager,
    scripts: std::sync::Arc<Scripts>,
}

#[derive(Debug)]
struct Scripts {
    put: redis::Script,
    unpin: redis::Script,
    forget: redis::Script,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("url", &redact(&self.url))
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

/// An entry of the events stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Its stream id.
    pub id: String,
    /// A cache purge's scope (JSON); none for a pin change.
    pub purge: Option<String>,
}

/// What [`Store::record_directory`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// A new history entry.
    New,
    /// The history already names it as the newest directory version.
    Unchanged,
}

impl Store {
    /// Connect to the store under `prefix` at `url`.
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, DeployError> {
        let (client, conn) = open(url).await?;
        Ok(Store {
            url: url.to_string(),
            keys: format!("{prefix}:{{plugins}}"),
            client,
            conn,
            scripts: std::sync::Arc::new(Scripts {
                put: redis::Script::new(include_str!("lua/put.lua")),
                unpin: redis::Script::new(include_str!("lua/unpin.lua")),
                forget: redis::Script::new(include_str!("lua/forget.lua")),
            }),
        })
    }

    /// Keep `keep` versions per plugin from now on, fleet-wide (at least 2,
    /// so a rollback has one). Histories shrink at their next change.
    pub async fn set_keep(&self, keep: u32) -> Result<(), DeployError> {
        let mut conn = self.conn.clone();
        conn.set::<_, _, ()>(self.key("keep"), keep.max(2))
            .await
            .map_err(|e| self.error("set the versions kept", e))
    }

    /// `PREFIX:{plugins}`.
    pub fn key_prefix(&self) -> &str {
        &self.keys
    }

    fn key(&self, suffix: &str) -> String {
        format!("{}:{suffix}", self.keys)
    }

    fn error(&self, op: &'static str, source: redis::RedisError) -> DeployError {
        DeployError::Redis(classify(&redact(&self.url), op, source))
    }

    fn protocol(op: &'static str, reply: impl std::fmt::Display) -> DeployError {
        DeployError::Redis(QueueError::Protocol {
            op,
            reply: reply.to_string(),
        })
    }

    /// Pin `bytes` as the version of `name` on every worker. Returns the
    /// entry and whether it was new (false: exactly this was pinned already).
    pub async fn deploy(
        &self,
        name: &PluginName,
        bytes: &[u8],
        sdk: Option<String>,
        manifest: Option<String>,
        by: &str,
    ) -> Result<(VersionEntry, bool), DeployError> {
        let entry = self.entry(name, bytes, sdk, manifest, Action::Deploy, by)?;
        let done = self.put(name, &entry, Some(bytes), Some("*")).await?;
        Ok((entry, done != "unchanged"))
    }

    /// Record a version a worker loaded from its directory (bytes sent only
    /// when the store lacks them).
    pub async fn record_directory(
        &self,
        name: &PluginName,
        bytes: &[u8],
        sdk: Option<String>,
        manifest: Option<String>,
        by: &str,
    ) -> Result<Recorded, DeployError> {
        let entry = self.entry(name, bytes, sdk, manifest, Action::Directory, by)?;
        match self.put(name, &entry, None, None).await?.as_str() {
            "need_blob" => self.put(name, &entry, Some(bytes), None).await.map(|r| {
                if r == "unchanged" {
                    Recorded::Unchanged
                } else {
                    Recorded::New
                }
            }),
            "unchanged" => Ok(Recorded::Unchanged),
            _ => Ok(Recorded::New),
        }
    }

    fn entry(
        &self,
        name: &PluginName,
        bytes: &[u8],
        sdk: Option<String>,
        manifest: Option<String>,
        action: Action,
        by: &str,
    ) -> Result<VersionEntry, DeployError> {
        let size = bytes.len() as u64;
        if size > MAX_DEPLOY_BYTES {
            return Err(DeployError::TooLarge {
                name: name.to_string(),
                size,
                max: MAX_DEPLOY_BYTES,
            });
        }
        Ok(VersionEntry {
            digest: blake3::hash(bytes).to_hex().to_string(),
            size,
            sdk,
            manifest,
            at_us: now_us(),
            action,
            by: by.to_string(),
        })
    }

    /// Run `put.lua`; `pin` is the digest expected pinned now (`""` for
    /// none, `"*"` for any), or none to record without pinning.
    async fn put(
        &self,
        name: &PluginName,
        entry: &VersionEntry,
        bytes: Option<&[u8]>,
        pin: Option<&str>,
    ) -> Result<String, DeployError> {
        let json = serde_json::to_string(entry).expect("a version entry serializes");
        let mut conn = self.conn.clone();
        let done: String = self
            .scripts
            .put
            .key(&self.keys)
            .arg(name.to_string())
            .arg(&entry.digest)
            .arg(json)
            .arg(if pin.is_some() { "1" } else { "0" })
            .arg(bytes.unwrap_or_default())
            .arg(pin.unwrap_or_default())
            .invoke_async(&mut conn)
            .await
            .map_err(|e| self.error("record a plugin version", e))?;
        if done == "conflict" {
            return Err(DeployError::Conflict {
                name: name.to_string(),
            });
        }
        Ok(done)
    }

    /// Pin an earlier version of `name`: the one before the current version
    /// when `to` is none, else the one whose digest starts with `to`.
    /// Returns `(from, to)`: the entry that was current and the history
    /// entry rolled back to.
    pub async fn rollback(
        &self,
        name: &PluginName,
        to: Option<&str>,
        by: &str,
    ) -> Result<(VersionEntry, VersionEntry), DeployError> {
        let history = self.history(name).await?;
        let pinned = self.pinned().await?.remove(name);
        let expected = pinned
            .as_ref()
            .map(|p| p.digest.clone())
            .unwrap_or_default();
        let current = current(pinned, &history).ok_or_else(|| DeployError::NoHistory {
            name: name.to_string(),
        })?;
        let target = match to {
            Some(prefix) => pick(name, &history, prefix)?,
            None => previous(&history, &current.digest).ok_or_else(|| DeployError::NoPrevious {
                name: name.to_string(),
                current: current.short().to_string(),
            })?,
        };
        let entry = VersionEntry {
            at_us: now_us(),
            action: Action::Rollback,
            by: by.to_string(),
            ..target.clone()
        };
        match self
            .put(name, &entry, None, Some(&expected))
            .await?
            .as_str()
        {
            "need_blob" => Err(DeployError::BlobMissing {
                name: name.to_string(),
                digest: entry.digest,
            }),
            _ => Ok((current, target)),
        }
    }

    /// Remove the pin of `name`; workers serve their directory file again.
    /// Returns the entry that was pinned, if any.
    pub async fn unpin(&self, name: &PluginName) -> Result<Option<VersionEntry>, DeployError> {
        let mut conn = self.conn.clone();
        let entry: Option<String> = self
            .scripts
            .unpin
            .key(&self.keys)
            .arg(name.to_string())
            .invoke_async(&mut conn)
            .await
            .map_err(|e| self.error("unpin a plugin", e))?;
        entry
            .map(|e| serde_json::from_str(&e).map_err(|err| Self::protocol("unpin", err)))
            .transpose()
    }

    /// Delete the history of `name` and the bytes of its versions (refused
    /// while a version is pinned). Returns how many versions' bytes went.
    pub async fn forget(&self, name: &PluginName) -> Result<u64, DeployError> {
        let mut conn = self.conn.clone();
        let reply: redis::Value = self
            .scripts
            .forget
            .key(&self.keys)
            .arg(name.to_string())
            .invoke_async(&mut conn)
            .await
            .map_err(|e| self.error("forget a plugin", e))?;
        match reply {
            redis::Value::Int(n) => Ok(u64::try_from(n).unwrap_or(0)),
            _ => Err(DeployError::Pinned {
                name: name.to_string(),
            }),
        }
    }

    /// Every pinned version, by plugin. Entries that do not parse are
    /// skipped with a warning (someone wrote the hash by hand).
    pub async fn pinned(&self) -> Result<BTreeMap<PluginName, VersionEntry>, DeployError> {
        let mut conn = self.conn.clone();
        let raw: BTreeMap<String, String> = conn
            .hgetall(self.key("pinned"))
            .await
            .map_err(|e| self.error("read the pinned versions", e))?;
        let mut pins = BTreeMap::new();
        for (name, json) in raw {
            match (PluginName::parse(&name), serde_json::from_str(&json)) {
                (Ok(name), Ok(entry)) => {
                    pins.insert(name, entry);
                }
                _ => tracing::warn!(plugin = %name, "ignoring an unreadable pinned version"),
            }
        }
        Ok(pins)
    }

    /// The history of `name`, newest first.
    pub async fn history(&self, name: &PluginName) -> Result<Vec<VersionEntry>, DeployError> {
        let mut conn = self.conn.clone();
        let raw: Vec<String> = conn
            .lrange(self.key(&format!("history:{name}")), 0, -1)
            .await
            .map_err(|e| self.error("read a plugin history", e))?;
        Ok(raw
            .iter()
            .filter_map(|e| serde_json::from_str(e).ok())
            .collect())
    }

    /// Plugins with a history, sorted.
    pub async fn names(&self) -> Result<Vec<PluginName>, DeployError> {
        let mut conn = self.conn.clone();
        let raw: Vec<String> = conn
            .smembers(self.key("names"))
            .await
            .map_err(|e| self.error("list plugins", e))?;
        let mut names: Vec<_> = raw
            .iter()
            .filter_map(|n| PluginName::parse(n).ok())
            .collect();
        names.sort();
        Ok(names)
    }

    /// The bytes of version `digest` of `name`, checked against the digest.
    pub async fn blob(&self, name: &PluginName, digest: &str) -> Result<Vec<u8>, DeployError> {
        let mut conn = self.conn.clone();
        let bytes: Option<Vec<u8>> = conn
            .get(self.key(&format!("blob:{name}:{digest}")))
            .await
            .map_err(|e| self.error("read a plugin version", e))?;
        let bytes = bytes.ok_or_else(|| DeployError::BlobMissing {
            name: name.to_string(),
            digest: digest.to_string(),
        })?;
        let found = blake3::hash(&bytes).to_hex().to_string();
        if found != digest {
            return Err(DeployError::Corrupt {
                name: name.to_string(),
                digest: digest.to_string(),
                found,
            });
        }
        Ok(bytes)
    }

    /// A connection for [`Store::wait_event`]: no response timeout.
    pub async fn blocking_connection(&self) -> Result<ConnectionManager, DeployError> {
        Ok(open_blocking(&self.client, &self.url).await?)
    }

    /// The id of the newest pin event, `0-0` when there is none: wait for
    /// events after it.
    pub async fn last_event(&self) -> Result<String, DeployError> {
        let mut conn = self.conn.clone();
        let newest: Vec<(String, Vec<(String, String)>)> = redis::cmd("XREVRANGE")
            .arg(self.key("events"))
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query_async(&mut conn)
            .await
            .map_err(|e| self.error("read the deploy events", e))?;
        Ok(newest
            .into_iter()
            .next()
            .map_or_else(|| "0-0".to_string(), |(id, _)| id))
    }

    /// Block up to `timeout` for events after `after`; returns them, oldest
    /// first (none on timeout).
    pub async fn wait_event(
        &self,
        conn: &mut ConnectionManager,
        after: &str,
        timeout: Duration,
    ) -> Result<Vec<Event>, DeployError> {
        type Reply = Option<Vec<(String, Vec<(String, Vec<(String, String)>)>)>>;
        let reply: Reply = redis::cmd("XREAD")
            .arg("COUNT")
            .arg(1000)
            .arg("BLOCK")
            .arg(
                u64::try_from(timeout.as_millis())
                    .unwrap_or(u64::MAX)
                    .max(1),
            )
            .arg("STREAMS")
            .arg(self.key("events"))
            .arg(after)
            .query_async(conn)
            .await
            .map_err(|e| self.error("wait for deploy events", e))?;
        Ok(reply
            .into_iter()
            .flatten()
            .flat_map(|(_, entries)| entries)
            .map(|(id, fields)| Event {
                id,
                purge: fields
                    .into_iter()
                    .find(|(k, _)| k == "purge")
                    .map(|(_, v)| v),
            })
            .collect())
    }

    /// Tell every worker to drop what a cache purge removed from its
    /// memory: `scope` is the purge's scope, JSON. Returns the event's id
    /// (see [`WorkerStatus::events_seen`]).
    pub async fn announce_purge(&self, scope: &str) -> Result<String, DeployError> {
        let mut conn = self.conn.clone();
        redis::cmd("XADD")
            .arg(self.key("events"))
            .arg("MAXLEN")
            .arg("~")
            .arg(1000)
            .arg("*")
            .arg("purge")
            .arg(scope)
            .query_async::<String>(&mut conn)
            .await
            .map_err(|e| self.error("announce a cache purge", e))
    }

    /// Publish what a worker serves (expires after [`REPORT_TTL`]).
    pub async fn report(&self, status: &WorkerStatus) -> Result<(), DeployError> {
        let json = serde_json::to_string(status).expect("a worker status serializes");
        let now_ms = status.reported_us / 1000;
        let stale = now_ms.saturating_sub(u64::try_from(REPORT_TTL.as_millis()).unwrap_or(0) * 4);
        let mut conn = self.conn.clone();
        redis::pipe()
            .set_ex(
                self.key(&format!("worker:{}", status.worker)),
                json,
                REPORT_TTL.as_secs(),
            )
            .ignore()
            .zadd(self.key("workers"), &status.worker, now_ms)
            .ignore()
            .zrembyscore(self.key("workers"), 0, stale)
            .ignore()
            .query_async::<()>(&mut conn)
            .await
            .map_err(|e| self.error("publish the worker status", e))
    }

    /// Withdraw a worker's report (it is stopping).
    pub async fn withdraw(&self, worker: &str) -> Result<(), DeployError> {
        let mut conn = self.conn.clone();
        redis::pipe()
            .del(self.key(&format!("worker:{worker}")))
            .ignore()
            .zrem(self.key("workers"), worker)
            .ignore()
            .query_async::<()>(&mut conn)
            .await
            .map_err(|e| self.error("withdraw the worker status", e))
    }

    /// The reports of the workers alive now (reports expire), by worker id.
    pub async fn workers(&self) -> Result<Vec<WorkerStatus>, DeployError> {
        let mut conn = self.conn.clone();
        let ids: Vec<String> = conn
            .zrange(self.key("workers"), 0, -1)
            .await
            .map_err(|e| self.error("list workers", e))?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = ids
            .iter()
            .map(|id| self.key(&format!("worker:{id}")))
            .collect();
        let raw: Vec<Option<String>> = redis::cmd("MGET")
            .arg(&keys)
            .query_async(&mut conn)
            .await
            .map_err(|e| self.error("read worker reports", e))?;
        let mut all: Vec<WorkerStatus> = raw
            .into_iter()
            .flatten()
            .filter_map(|json| serde_json::from_str(&json).ok())
            .collect();
        all.sort_by(|a, b| a.worker.cmp(&b.worker));
        Ok(all)
    }
}

/// What serves `name` now: the pin, else the newest version loaded from a
/// directory.
pub fn current(pinned: Option<VersionEntry>, history: &[VersionEntry]) -> Option<VersionEntry> {
    pinned.or_else(|| {
        history
            .iter()
            .find(|e| e.action == Action::Directory)
            .cloned()
    })
}

/// The version before `current`. The history is replayed oldest first as a
/// stack: a deploy or a directory version goes on top, a rollback to X
/// takes off what is above X. The answer is the nearest other version below
/// `current`'s place. So a rollback never returns to a version that was
/// rolled back from, and rolling back again walks further back.
fn previous(history: &[VersionEntry], current: &str) -> Option<VersionEntry> {
    let mut stack: Vec<&VersionEntry> = Vec::new();
    for e in history.iter().rev() {
        if e.action == Action::Rollback
            && let Some(at) = stack.iter().rposition(|s| s.digest == e.digest)
        {
            stack.truncate(at + 1);
            continue;
        }
        if stack.last().is_none_or(|top| top.digest != e.digest) {
            stack.push(e);
        }
    }
    let at = stack.iter().rposition(|e| e.digest == current)?;
    stack[..at]
        .iter()
        .rev()
        .find(|e| e.digest != current)
        .map(|e| (*e).clone())
}

/// The entry whose digest starts with `prefix`.
fn pick(
    name: &PluginName,
    history: &[VersionEntry],
    prefix: &str,
) -> Result<VersionEntry, DeployError> {
    let prefix = prefix.to_ascii_lowercase();
    let matches: Vec<&VersionEntry> = history
        .iter()
        .filter(|e| !prefix.is_empty() && e.digest.starts_with(&prefix))
        .collect();
    let distinct: std::collections::BTreeSet<&str> =
        matches.iter().map(|e| e.digest.as_str()).collect();
    match distinct.len() {
        0 => Err(DeployError::UnknownVersion {
            name: name.to_string(),
            digest: prefix,
        }),
        1 => Ok(matches[0].clone()),
        n => Err(DeployError::AmbiguousVersion {
            name: name.to_string(),
            digest: prefix,
            matches: n,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(digest: &str, action: Action) -> VersionEntry {
        VersionEntry {
            digest: digest.into(),
            size: 1,
            sdk: None,
            manifest: None,
            at_us: 0,
            action,
            by: "t".into(),
        }
    }

    #[test]
    fn repeated_rollbacks_walk_back_through_the_history() {
        use Action::*;
        // Newest first: C deployed after B after A; then rolled back to B.
        let mut history = vec![
            entry("c", Deploy),
            entry("b", Deploy),
            entry("a", Directory),
        ];
        assert_eq!(previous(&history, "c").unwrap().digest, "b");
        history.insert(0, entry("b", Rollback));
        assert_eq!(previous(&history, "b").unwrap().digest, "a");
        history.insert(0, entry("a", Rollback));
        assert!(previous(&history, "a").is_none());
    }

    #[test]
    fn a_rollback_never_returns_to_a_version_rolled_back_from() {
        use Action::*;
        // A, B (bad), back to A, C (bad): the version before C is A.
        let history = vec![
            entry("c", Deploy),
            entry("a", Rollback),
            entry("b", Deploy),
            entry("a", Deploy),
        ];
        assert_eq!(previous(&history, "c").unwrap().digest, "a");
        assert!(previous(&history, "a").is_none());
    }

    #[test]
    fn without_a_pin_the_newest_directory_version_is_current() {
        use Action::*;
        let history = vec![entry("x", Deploy), entry("d", Directory)];
        assert_eq!(current(None, &history).unwrap().digest, "d");
        let pin = entry("x", Deploy);
        assert_eq!(current(Some(pin), &history).unwrap().digest, "x");
    }

    #[test]
    fn a_digest_prefix_must_name_one_version() {
        let name = PluginName::parse("acme/resize").unwrap();
        let history = vec![
            entry("abc1", Action::Deploy),
            entry("abc2", Action::Deploy),
            entry("abc1", Action::Rollback),
        ];
        assert_eq!(pick(&name, &history, "ABC1").unwrap().digest, "abc1");
        assert!(matches!(
            pick(&name, &history, "abc"),
            Err(DeployError::AmbiguousVersion { matches: 2, .. })
        ));
        assert!(matches!(
            pick(&name, &history, "f"),
            Err(DeployError::UnknownVersion { .. })
        ));
    }
}
