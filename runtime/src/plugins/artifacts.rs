//! The compiled-artifact cache: a plugin version compiled once is kept on
//! disk as native code, so that a restarted worker loads its plugins in
//! milliseconds instead of compiling each again.
//!
//! Files are `DIR/<version digest>-<engine key>.cwasm`: a new plugin version
//! or a different engine (wasmtime version, settings, CPU) simply misses.
//! Artifacts are native code run as they are, so nobody else may be able to
//! place one: [`ArtifactCache::open`] creates the directory with mode 0700
//! and refuses it when it belongs to someone else or others can write it,
//! or when any directory above it can be written by others without the
//! sticky bit (they could swap the whole directory). Each artifact is read
//! without following symlinks and must be a regular file of ours that only
//! we can write. Each starts with a header holding the plugin's digest and
//! a blake3 hash of the code: an artifact of another plugin, or one damaged
//! anywhere, is compiled again and replaced, never run.
//!
//! The cache is pruned when it is opened: artifacts unused for
//! [`UNUSED_FOR`] go, and those of another engine (an older wasmtime, other
//! settings) once they are [`OTHER_ENGINE_AFTER`] old. An artifact's
//! modification time is its last use (refreshed at most daily).

use crate::ids::Version;
use crate::sandbox::Sandbox;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Artifacts not used for this long are deleted when a cache is opened.
pub const UNUSED_FOR: Duration = Duration::from_secs(30 * 24 * 3600);

/// Artifacts of another engine are deleted once unused for this long (not
/// at once: a worker with other settings may share the directory).
pub const OTHER_ENGINE_AFTER: Duration = Duration::from_secs(24 * 3600);

/// How stale a used artifact's modification time may get before it is
/// refreshed (so that loading does not write every time).
const TOUCH_AFTER: Duration = Duration::from_secs(24 * 3600);

/// An opened artifact cache.
#[derive(Debug, Clone)]
pub struct ArtifactCache {
    dir: PathBuf,
    engine_key: String,
    uid: u32,
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
        // Our effective uid, without writing anything: /proc/self is ours.
        let us = std::fs::metadata("/proc/self").map_err(io)?.uid();
        let meta = std::fs::symlink_metadata(&dir).map_err(io)?;
        let mode = meta.permissions().mode() & 0o777;
        if !meta.is_dir() || mode & 0o022 != 0 || meta.uid() != us {
            return Err(ArtifactCacheError::NotPrivate {
                dir,
                mode,
                owner: meta.uid(),
                us,
            });
        }
        // Every directory above must be safe from others too: whoever can
        // write one of them can swap this whole directory.
        let canonical = std::fs::canonicalize(&dir).map_err(io)?;
        for parent in canonical.ancestors().skip(1) {
            let m = std::fs::metadata(parent).map_err(io)?;
            let pmode = m.permissions().mode();
            let writable_by_others = pmode & 0o022 != 0 && pmode & 0o1000 == 0;
            if writable_by_others || (m.uid() != us && m.uid() != 0) {
                return Err(ArtifactCacheError::NotPrivate {
                    dir: parent.to_path_buf(),
                    mode: pmode & 0o7777,
                    owner: m.uid(),
                    us,
                });
            }
        }
        let cache = ArtifactCache {
            dir,
            engine_key: sandbox.artifact_key(),
            uid: us,
        };
        cache.prune();
        Ok(cache)
    }

    /// Delete leftovers of interrupted writes, artifacts unused for
    /// [`UNUSED_FOR`], and other engines' after [`OTHER_ENGINE_AFTER`].
    /// Returns how many files went.
    pub fn prune(&self) -> usize {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return 0;
        };
        let ours = format!("-{}.cwasm", self.engine_key);
        let now = SystemTime::now();
        let mut removed = 0;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let age = entry
                .metadata()
                .ok()
                .and_then(|m| m.modified().ok())
                .and_then(|m| now.duration_since(m).ok())
                .unwrap_or_default();
            let stale = if name.contains(".tmp-") {
                age > Duration::from_secs(3600) // not one being written now
            } else if name.ends_with(&ours) {
                age > UNUSED_FOR
            } else {
                name.ends_with(".cwasm") && age > OTHER_ENGINE_AFTER
            };
            if stale && std::fs::remove_file(entry.path()).is_ok() {
                removed += 1;
            }
        }
        if removed > 0 {
            tracing::info!(dir = %self.dir.display(), removed, "pruned unused compiled artifacts");
        }
        removed
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the artifact of `version` lives.
    pub fn path(&self, version: &Version) -> PathBuf {
        self.dir
            .join(format!("{}-{}.cwasm", version.as_str(), self.engine_key))
    }

    /// The cached artifact of `version`, if there is a sound one: a regular
    /// file of ours that only we can write, made for this very version, and
    /// undamaged.
    pub fn get(&self, version: &Version) -> Option<Vec<u8>> {
        let path = self.path(version);
        let (bytes, meta) =
            super::safe_read::read_beneath(&self.dir, &path, super::MAX_PLUGIN_BYTES * 4, true)
                .ok()?;
        if meta.uid() != self.uid || meta.permissions().mode() & 0o022 != 0 || meta.nlink() != 1 {
            tracing::warn!(path = %path.display(), "ignoring an artifact that is not exclusively ours");
            return None;
        }
        match unwrap_artifact(&bytes, version) {
            Some(code) => {
                touch(&path, &meta);
                Some(code.to_vec())
            }
            None => {
                tracing::warn!(path = %path.display(), "ignoring a damaged or foreign artifact");
                None
            }
        }
    }

    /// Store the artifact of `version`: written to a new temporary file
    /// (mode 0600, never an existing one) and renamed, so a reader never
    /// sees half a file.
    pub fn put(&self, version: &Version, artifact: &[u8]) -> std::io::Result<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let path = self.path(version);
        let tmp = path.with_extension(format!(
            "tmp-{}-{:016x}",
            std::process::id(),
            fastrand::u64(..)
        ));
        let mut file = std::fs::File::options()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)?;
        file.write_all(MAGIC)?;
        file.write_all(version.as_str().as_bytes())?;
        file.write_all(blake3::hash(artifact).as_bytes())?;
        file.write_all(artifact)?;
        file.sync_all()?;
        std::fs::rename(&tmp, &path)
    }
}

/// Mark an artifact used (its modification time), at most once a day.
fn touch(path: &Path, meta: &std::fs::Metadata) {
    let stale = meta
        .modified()
        .ok()
        .and_then(|m| m.elapsed().ok())
        .is_some_and(|age| age > TOUCH_AFTER);
    if stale && let Ok(file) = std::fs::File::options().append(true).open(path) {
        let _ = file.set_modified(SystemTime::now());
    }
}

/// First bytes of every artifact file; then the 64-hex-digit plugin digest,
/// the 32-byte blake3 hash of the code, and the code.
const MAGIC: &[u8] = b"spool-artifact-1\n";

/// The code of an artifact file, if its header names `version` and the
/// code matches its hash.
fn unwrap_artifact<'a>(bytes: &'a [u8], version: &Version) -> Option<&'a [u8]> {
    let rest = bytes.strip_prefix(MAGIC)?;
    let (digest, rest) = rest.split_at_checked(64)?;
    let (hash, code) = rest.split_at_checked(32)?;
    (digest == version.as_str().as_bytes() && blake3::hash(code).as_bytes() == hash).then_some(code)
}
