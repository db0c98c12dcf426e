//! Versions, history and pins: deploy, record, roll back, unpin, forget,
//! and read them back. The bytes of a version are stored once per digest
//! and checked against it when read.

use super::history::{current, pick, previous};
use super::model::{Action, VersionEntry};
use super::{DEFAULT_KEEP, DeployError, FleetStore, MAX_DEPLOY_BYTES};
use crate::ids::{PluginName, Version, now_us};
use redis::AsyncCommands;
use std::collections::BTreeMap;

/// What `put.lua` did (a conflict is an error).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Put {
    Recorded,
    Unchanged,
}

/// What [`FleetStore::record_directory`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// A new history entry.
    New,
    /// The history already names it as the newest directory version.
    Unchanged,
}

impl FleetStore {
    /// Keep `keep` versions per plugin from now on, fleet-wide (at least 2,
    /// so a rollback has one). Histories shrink at their next change.
    pub async fn set_keep(&self, keep: u32) -> Result<(), DeployError> {
        let mut conn = self.redis.conn();
        conn.set::<_, _, ()>(self.key("keep"), keep.max(2))
            .await
            .map_err(|e| self.error("set the versions kept", e))
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
        self.stage_blob(name, &entry.digest, bytes).await?;
        let done = self.put(name, &entry, Some("*")).await?;
        Ok((entry, done != Put::Unchanged))
    }

    /// Record a version a worker loaded from its directory (bytes sent only
    /// when the store lacks them: every worker records the same files).
    pub async fn record_directory(
        &self,
        name: &PluginName,
        bytes: &[u8],
        sdk: Option<String>,
        manifest: Option<String>,
        by: &str,
    ) -> Result<Recorded, DeployError> {
        let entry = self.entry(name, bytes, sdk, manifest, Action::Directory, by)?;
        if !self.has_blob(name, &entry.digest).await? {
            self.stage_blob(name, &entry.digest, bytes).await?;
        }
        let done = self.put(name, &entry, None).await?;
        Ok(match done {
            Put::Unchanged => Recorded::Unchanged,
            Put::Recorded => Recorded::New,
        })
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
            digest: Version::of(bytes),
            size,
            sdk,
            manifest,
            at_us: now_us(),
            action,
            by: by.to_string(),
        })
    }

    /// Run `put.lua`; then keep the bytes it names for good, and let those
    /// of the versions it dropped expire;
    /// `pin` is the digest expected pinned now (`""` for none, `"*"` for
    /// any), or none to record without pinning.
    async fn put(
        &self,
        name: &PluginName,
        entry: &VersionEntry,
        pin: Option<&str>,
    ) -> Result<Put, DeployError> {
        let json = serde_json::to_string(entry).expect("a version entry serializes");
        let (name_arg, keep) = (name.to_string(), DEFAULT_KEEP.to_string());
        let args: [&[u8]; 6] = [
            name_arg.as_bytes(),
            entry.digest.as_str().as_bytes(),
            json.as_bytes(),
            if pin.is_some() { b"1" } else { b"0" },
            pin.unwrap_or_default().as_bytes(),
            keep.as_bytes(),
        ];
        let reply: Vec<String> = self
            .redis
            .eval_once(&self.scripts.put, &self.keys, &args)
            .await
            .and_then(|v| Ok(redis::from_redis_value(v)?))
            .map_err(|e| self.error("record a plugin version", e))?;
        match reply.split_first() {
            Some((done, _)) if done == "unchanged" => {
                // What is named may still be staged (a send whose PERSIST
                // never came): keep it now.
                self.keep_blob(name, &entry.digest).await?;
                Ok(Put::Unchanged)
            }
            Some((done, _)) if done == "conflict" => Err(DeployError::Conflict {
                name: name.to_string(),
            }),
            Some((done, dropped)) if done == "recorded" => {
                let dropped: Vec<Version> = dropped
                    .iter()
                    .filter_map(|d| Version::parse_hex(d))
                    .collect();
                // Retire first: a failed PERSIST must not leave the
                // dropped bytes stored for good (put.lua never drops the
                // version it records).
                self.retire_blobs(name, &dropped).await;
                self.keep_blob(name, &entry.digest).await?;
                Ok(Put::Recorded)
            }
            _ => Err(Self::protocol(
                "record a plugin version",
                format!("{reply:?}"),
            )),
        }
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
            .map(|p| p.digest.as_str().to_string())
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
        self.stage_for_pin(name, &entry.digest).await?;
        self.put(name, &entry, Some(&expected)).await?;
        Ok((current, target))
    }

    /// Remove the pin of `name`; workers serve their directory file again.
    /// Returns the entry that was pinned, if any.
    pub async fn unpin(&self, name: &PluginName) -> Result<Option<VersionEntry>, DeployError> {
        let reply = self
            .for_plugin(&self.scripts.unpin, name, "unpin a plugin")
            .await?;
        let entry = match reply {
            redis::Value::Nil => return Ok(None),
            redis::Value::BulkString(bytes) => String::from_utf8(bytes)
                .map_err(|_| Self::protocol("unpin", "an entry that is not UTF-8"))?,
            other => return Err(Self::protocol("unpin", format!("{other:?}"))),
        };
        serde_json::from_str(&entry)
            .map(Some)
            .map_err(|err| Self::protocol("unpin", err))
    }

    /// Delete the history of `name` and the bytes of its versions (refused
    /// while a version is pinned). Returns how many versions' bytes went.
    pub async fn forget(&self, name: &PluginName) -> Result<u64, DeployError> {
        let reply = self
            .for_plugin(&self.scripts.forget, name, "forget a plugin")
            .await?;
        let redis::Value::Array(reply) = reply else {
            return Err(Self::protocol("forget a plugin", format!("{reply:?}")));
        };
        match reply.as_slice() {
            [
                redis::Value::BulkString(done),
                redis::Value::Int(legacy),
                digests @ ..,
            ] if done == b"forgot" => {
                let digests: Vec<Version> = digests
                    .iter()
                    .filter_map(|d| match d {
                        redis::Value::BulkString(hex) => {
                            Version::parse_hex(&String::from_utf8_lossy(hex))
                        }
                        _ => None,
                    })
                    .collect();
                let deleted = self.delete_blobs(name, &digests).await?;
                Ok(deleted + u64::try_from(*legacy).unwrap_or(0))
            }
            _ => Err(DeployError::Pinned {
                name: name.to_string(),
            }),
        }
    }

    /// Every pinned version, by plugin. Entries that do not parse are
    /// skipped with a warning (someone wrote the hash by hand).
    pub async fn pinned(&self) -> Result<BTreeMap<PluginName, VersionEntry>, DeployError> {
        let mut conn = self.redis.conn();
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
                _ => tracing::warn!(
                    plugin = %name.escape_debug(),
                    "ignoring an unreadable pinned version (expected a plugin name and JSON with a 64-hex-digit digest)"
                ),
            }
        }
        Ok(pins)
    }

    /// The history of `name`, newest first.
    pub async fn history(&self, name: &PluginName) -> Result<Vec<VersionEntry>, DeployError> {
        let mut conn = self.redis.conn();
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
        let mut conn = self.redis.conn();
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

    /// Run one of the store's scripts on plugin `name` (its only argument).
    async fn for_plugin(
        &self,
        script: &str,
        name: &PluginName,
        op: &'static str,
    ) -> Result<redis::Value, DeployError> {
        let name = name.to_string();
        self.redis
            .eval_once(script, &self.keys, &[name.as_bytes()])
            .await
            .map_err(|e| self.error(op, e))
    }
}
