//! Plugin bytes, keyed by digest: `PREFIX:blob:{DIGEST}:NAME`, one slot
//! per digest, so that on a Redis Cluster the bytes of many plugins spread
//! over the masters instead of filling the `{plugins}` slot's node. No
//! script can reach them (a script's keys share one slot), so the store
//! writes them around its scripts:
//!
//! 1. `stage_blob`, `SET … NX EX 3600`: bytes that expire unless a version
//!    entry comes to name them (a deploy that dies here leaves nothing
//!    behind for long). A rollback stages the bytes of its target too
//!    when they are only under the earlier key (`stage_for_pin`);
//! 2. `put.lua` records the entry and names the versions it dropped;
//! 3. `retire_blobs`: the dropped versions' bytes get an hour to live
//!    rather than a `DEL`, so that a deploy of that very version racing
//!    the trim (its `SET NX` found them, its put named them again) still
//!    finds them at step 4;
//! 4. `keep_blob`, `PERSIST`, after every put that names the bytes
//!    (`recorded` or `unchanged`: a retried deploy heals a first one that
//!    died before this step).
//!
//! A forget deletes at once (it is refused while a version is pinned).
//!
//! What this does not cover, each needing two commands on the same plugin
//! at once or a reply lost mid-way: a trim whose step 3 stalls past a
//! racing deploy's step 4 leaves a pinned version expiring within the
//! hour; a forget racing a deploy of the same plugin can delete the bytes
//! the deploy pins; a deploy whose put ran but whose reply was lost
//! (a retryable error) leaves its bytes staged, expiring, until it is
//! sent again; a put or forget whose reply was lost leaves the dropped
//! versions' bytes stored (nothing names them, and no one deletes them).
//! Workers refuse a pin whose bytes are gone, by name, and deploying the
//! file again repairs it. Bytes stored before this layout, under
//! `PREFIX:{plugins}:blob:NAME:DIGEST`, are still read, and deleted by the
//! scripts that drop versions.

use super::{DeployError, FleetStore};
use crate::ids::{PluginName, Version};
use redis::AsyncCommands;

/// How long staged bytes live before a version entry names them.
const STAGED_SECS: u64 = 3600;

impl FleetStore {
    /// `PREFIX:blob:{DIGEST}:NAME`: where version `digest` of `name` keeps
    /// its bytes.
    pub fn blob_key(&self, name: &PluginName, digest: &Version) -> String {
        format!("{}:blob:{{{digest}}}:{name}", self.prefix)
    }

    /// Where the bytes were kept before (in the `{plugins}` slot).
    fn legacy_blob_key(&self, name: &PluginName, digest: &Version) -> String {
        self.key(&format!("blob:{name}:{digest}"))
    }

    /// Store `bytes` as version `digest` of `name` unless they are stored
    /// already, expiring until [`FleetStore::keep_blob`].
    pub(super) async fn stage_blob(
        &self,
        name: &PluginName,
        digest: &Version,
        bytes: &[u8],
    ) -> Result<(), DeployError> {
        let mut conn = self.redis.conn();
        let _: Option<String> = redis::cmd("SET")
            .arg(self.blob_key(name, digest))
            .arg(bytes)
            .arg("NX")
            .arg("EX")
            .arg(STAGED_SECS)
            .query_async(&mut conn)
            .await
            .map_err(|e| self.error("store a plugin version's bytes", e))?;
        Ok(())
    }

    /// Keep staged bytes for good: a version entry names them now.
    pub(super) async fn keep_blob(
        &self,
        name: &PluginName,
        digest: &Version,
    ) -> Result<(), DeployError> {
        let mut conn = self.redis.conn();
        conn.persist::<_, ()>(self.blob_key(name, digest))
            .await
            .map_err(|e| self.error("keep a plugin version's bytes", e))
    }

    /// Whether the bytes of version `digest` of `name` are stored (either
    /// layout).
    pub(super) async fn has_blob(
        &self,
        name: &PluginName,
        digest: &Version,
    ) -> Result<bool, DeployError> {
        Ok(self.exists(&self.blob_key(name, digest)).await?
            || self.exists(&self.legacy_blob_key(name, digest)).await?)
    }

    async fn exists(&self, key: &str) -> Result<bool, DeployError> {
        let mut conn = self.redis.conn();
        conn.exists(key)
            .await
            .map_err(|e| self.error("look for a plugin version's bytes", e))
    }

    /// Let the bytes of versions of `name` no entry names any more expire
    /// within the hour (see the module docs). A failure is logged, not
    /// returned: the put it follows took effect, and the bytes are only
    /// kept longer.
    pub(super) async fn retire_blobs(&self, name: &PluginName, digests: &[Version]) {
        let mut conn = self.redis.conn();
        for digest in digests {
            let key = self.blob_key(name, digest);
            let done: redis::RedisResult<bool> = conn.expire(&key, STAGED_SECS as i64).await;
            if let Err(e) = done {
                tracing::warn!(plugin = %name, version = digest.short(), error = %e,
                    "could not retire the bytes of a dropped version; they stay stored");
            }
        }
    }

    /// Make sure the bytes of version `digest` of `name` are under their
    /// own key before a rollback pins it: bytes only under the earlier key
    /// are copied (checked against the digest), since a put that trims
    /// that version deletes the earlier key inside its script.
    pub(super) async fn stage_for_pin(
        &self,
        name: &PluginName,
        digest: &Version,
    ) -> Result<(), DeployError> {
        if self.exists(&self.blob_key(name, digest)).await? {
            return Ok(());
        }
        let bytes = self.blob(name, digest).await?;
        self.stage_blob(name, digest, &bytes).await
    }

    /// Delete the bytes of versions of `name` (a forget). Returns how many
    /// were stored.
    pub(super) async fn delete_blobs(
        &self,
        name: &PluginName,
        digests: &[Version],
    ) -> Result<u64, DeployError> {
        let mut conn = self.redis.conn();
        let mut deleted = 0;
        for digest in digests {
            deleted += conn
                .del::<_, u64>(self.blob_key(name, digest))
                .await
                .map_err(|e| self.error("delete a plugin version's bytes", e))?;
        }
        Ok(deleted)
    }

    /// The bytes of version `digest` of `name`, checked against the digest.
    pub async fn blob(&self, name: &PluginName, digest: &Version) -> Result<Vec<u8>, DeployError> {
        let mut conn = self.redis.conn();
        let mut bytes: Option<Vec<u8>> = None;
        for key in [
            self.blob_key(name, digest),
            self.legacy_blob_key(name, digest),
        ] {
            bytes = conn
                .get(&key)
                .await
                .map_err(|e| self.error("read a plugin version", e))?;
            if bytes.is_some() {
                break;
            }
        }
        let bytes = bytes.ok_or_else(|| DeployError::BlobMissing {
            name: name.to_string(),
            digest: digest.clone(),
        })?;
        let found = Version::of(&bytes);
        if found != *digest {
            return Err(DeployError::Corrupt {
                name: name.to_string(),
                digest: digest.clone(),
                found,
            });
        }
        Ok(bytes)
    }
}
