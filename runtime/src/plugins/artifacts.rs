//! The compiled-artifact cache: a plugin version compiled once is kept on
//! disk as native code, so that a restarted worker loads its plugins in
//! milliseconds instead of compiling each again.
//!
//! Files are `DIR/<version digest>-<engine key>.cwasm`: a new plugin version
//! or a different engine (wasmtime version, settings, CPU) simply misses.
//! Artifacts are native code run as they are, so the directory must be
//! private to the user running Spool: [`ArtifactCache::open`] creates it
//! with mode 0700 and refuses one that others can write or that belongs to
//! someone else. A file that does not load (truncated, from another build)
//! is compiled again and replaced.

use super::Version;
use crate::sandbox::Sandbox;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// An opened artifact cache.
#[derive(Debug, Clone)]
pub struct ArtifactCache {
    dir: PathBuf,
    engine_key: String,
}

/// The cache directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactCacheError {
    /// It could not be created or read.
    #[error("artifact cache {dir}: {source}")]
    Io {
        /// The directory.
        dir: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Someone other than this user could put code there.
    #[error(
        "artifact cache {dir} is not private (mode {mode:o}, owner uid {owner}, we are uid {us}): compiled code from it would run as it is; use a directory only this user can write (chmod 700), or --no-artifact-cache"
    )]
    NotPrivate {
        /// The directory.
        dir: PathBuf,
        /// Its permission bits.
        mode: u32,
        /// Its owner.
        owner: u32,
        /// Our uid, as the owner of a file we just created.
        us: u32,
    },
}

impl ArtifactCache {
    /// Open (creating with mode 0700 if missing) the cache at `dir` for
    /// `sandbox`'s engine.
    pub fn open(dir: impl Into<PathBuf>, sandbox: &Sandbox) -> Result<Self, ArtifactCacheError> {
        let dir = dir.into();
        let io = |source| ArtifactCacheError::Io {
            dir: dir.clone(),
            source,
        };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(io)?;
        let meta = std::fs::metadata(&dir).map_err(io)?;
        // Our uid without libc: the owner of a file we create.
        let probe = dir.join(format!(".owner-{}", std::process::id()));
        std::fs::write(&probe, b"").map_err(io)?;
        let us = std::fs::metadata(&probe).map_err(io)?.uid();
        let _ = std::fs::remove_file(&probe);
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o022 != 0 || meta.uid() != us {
            return Err(ArtifactCacheError::NotPrivate {
                dir,
                mode,
                owner: meta.uid(),
                us,
            });
        }
        Ok(ArtifactCache {
            dir,
            engine_key: sandbox.artifact_key(),
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the artifact of `version` lives.
    pub fn path(&self, version: &Version) -> PathBuf {
        self.dir
            .join(format!("{}-{}.cwasm", version.0, self.engine_key))
    }

    /// The cached artifact of `version`, if any.
    pub fn get(&self, version: &Version) -> Option<Vec<u8>> {
        std::fs::read(self.path(version)).ok()
    }

    /// Store the artifact of `version`: written to a temporary file and
    /// renamed, so a reader never sees half a file.
    pub fn put(&self, version: &Version, artifact: &[u8]) -> std::io::Result<()> {
        let path = self.path(version);
        let tmp = path.with_extension(format!(
            "tmp-{}-{:016x}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::write(&tmp, artifact)?;
        std::fs::rename(&tmp, &path)
    }
}
