//! One way in for every plugin version a worker or a command serves:
//! (bytes, manifest text, the loader's settings) → a [`LoadedVersion`].
//! The directory scan, the fleet's pinned versions and `spool plugins
//! deploy` all come through [`Loader::load_version`], so a version is
//! judged the same wherever it comes from.

use super::{ArtifactCache, Capabilities, LoadError, ManifestError, Plugin, manifest};
use crate::sandbox::http::AllowList;
use crate::sandbox::{Limits, PluginConfig, Sandbox};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// How a plugin's jobs run: the worker's limits with the manifest's
/// overrides, and the manifest's config values.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// Per-job limits.
    pub limits: Limits,
    /// Values for `config::get`.
    pub config: PluginConfig,
    /// How long results may be cached (manifest `[cache] ttl`).
    pub cache_ttl: Option<Duration>,
    /// The hosts its jobs may call (manifest `[http] allow`).
    pub http_allow: Option<Arc<AllowList>>,
}

/// A version validated and compiled, with what its manifest gives it.
#[derive(Debug)]
pub struct LoadedVersion {
    /// The compiled plugin.
    pub plugin: Plugin,
    /// Limits, config and cache TTL its jobs run with.
    pub settings: Settings,
    /// The capabilities it was granted (the loader's and the manifest's).
    pub caps: Capabilities,
    /// The manifest text it runs with, none for defaults.
    pub manifest: Option<String>,
}

/// Why a version was not loaded. The message names the file (or
/// `redis:NAME@DIGEST`) and the reason; none is fixed by a retry.
#[derive(Debug, thiserror::Error)]
pub enum VersionError {
    /// The manifest does not parse or names an unknown key.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// The manifest asks for more memory than this worker allows.
    #[error("manifest {}: memory: {memory} bytes is above this worker's limit of {ceiling} bytes (--memory)", manifest.display())]
    MemoryAboveLimit {
        /// The manifest.
        manifest: PathBuf,
        /// What it asks for.
        memory: u64,
        /// This worker's `--memory`.
        ceiling: u64,
    },
    /// The manifest asks for a longer deadline than this worker allows.
    #[error("manifest {}: timeout: {} is above this worker's limit of {} (the larger of {} and its --timeout)", manifest.display(), humantime::format_duration(*timeout), humantime::format_duration(*ceiling), humantime::format_duration(MAX_MANIFEST_TIMEOUT))]
    TimeoutAboveLimit {
        /// The manifest.
        manifest: PathBuf,
        /// What it asks for.
        timeout: Duration,
        /// The most this worker allows.
        ceiling: Duration,
    },
    /// The component itself was rejected.
    #[error(transparent)]
    Load(#[from] LoadError),
}

/// The longest deadline a manifest may ask for, unless the worker's own
/// `--timeout` is longer: a plugin (a tenant's deploy, say) cannot hold a
/// worker's threads for longer than its operator chose.
pub const MAX_MANIFEST_TIMEOUT: Duration = Duration::from_secs(600);

/// What a worker (or a command) applies to every version it loads.
#[derive(Debug, Clone)]
pub struct Loader {
    /// Compiles the components.
    pub sandbox: Sandbox,
    /// Limits of plugins whose manifest does not set them.
    pub limits: Limits,
    /// Capabilities granted to every plugin (a manifest may add more).
    pub caps: Capabilities,
    /// Compiled versions kept between runs, when set.
    pub artifacts: Option<ArtifactCache>,
    /// Most memory a manifest may ask for; none for no check here (a
    /// command that deploys to workers of unknown `--memory`).
    pub memory_ceiling: Option<u64>,
    /// The watched directory: its files are read beneath it, never through
    /// a path or symlink that leads out. None: files named by the operator.
    pub root: Option<PathBuf>,
}

impl Loader {
    /// A loader for a worker over `sandbox`: default limits and
    /// capabilities, no artifact cache, manifests held to the sandbox's
    /// memory ceiling.
    pub fn new(sandbox: Sandbox) -> Self {
        Loader {
            memory_ceiling: Some(sandbox.config().max_memory),
            sandbox,
            limits: Limits::default(),
            caps: Capabilities::default(),
            artifacts: None,
            root: None,
        }
    }

    /// Load version `bytes` named `path` with `manifest` (its path, for
    /// errors, and its text), or the loader's defaults without one.
    pub fn load_version(
        &self,
        path: &Path,
        bytes: &[u8],
        manifest: Option<(&Path, &str)>,
    ) -> Result<LoadedVersion, VersionError> {
        let (settings, caps) = self.prepare(path, manifest)?;
        self.compile(path, bytes, settings, caps, manifest)
    }

    /// [`Loader::load_version`] of the plugin file at `path`, read only
    /// once its manifest passed (a bad manifest is named first).
    pub fn load_file(
        &self,
        path: &Path,
        manifest: Option<(&Path, &str)>,
    ) -> Result<LoadedVersion, VersionError> {
        let (settings, caps) = self.prepare(path, manifest)?;
        let bytes = super::read_file_in(self.root.as_deref(), path)?;
        self.compile(path, &bytes, settings, caps, manifest)
    }

    /// Parse the manifest and derive what the version runs with.
    fn prepare(
        &self,
        path: &Path,
        manifest: Option<(&Path, &str)>,
    ) -> Result<(Settings, Capabilities), VersionError> {
        let parsed = match manifest {
            Some((manifest_path, text)) => manifest::parse(manifest_path, text)?,
            None => manifest::Manifest::default(),
        };
        let manifest_path =
            manifest.map_or_else(|| manifest::path_for(path), |(p, _)| p.to_path_buf());
        self.settings(&manifest_path, parsed)
    }

    /// Validate and compile (through the artifact cache, if any).
    fn compile(
        &self,
        path: &Path,
        bytes: &[u8],
        settings: Settings,
        caps: Capabilities,
        manifest: Option<(&Path, &str)>,
    ) -> Result<LoadedVersion, VersionError> {
        let plugin =
            super::load_bytes_cached(&self.sandbox, path, bytes, &caps, self.artifacts.as_ref())?;
        Ok(LoadedVersion {
            plugin,
            settings,
            caps,
            manifest: manifest.map(|(_, text)| text.to_string()),
        })
    }

    /// The limits, config and capabilities `manifest` gives a plugin here.
    fn settings(
        &self,
        manifest_path: &Path,
        manifest: manifest::Manifest,
    ) -> Result<(Settings, Capabilities), VersionError> {
        let mut http = self.caps.http.rules().to_vec();
        http.extend(manifest.capabilities.http.rules().iter().cloned());
        let caps = Capabilities {
            network: self.caps.network || manifest.capabilities.network,
            http: AllowList::from_rules(http),
        };
        let mut limits = self.limits.clone();
        if let Some(timeout) = manifest.timeout {
            let ceiling = self.limits.timeout.max(MAX_MANIFEST_TIMEOUT);
            if timeout > ceiling {
                return Err(VersionError::TimeoutAboveLimit {
                    manifest: manifest_path.to_path_buf(),
                    timeout,
                    ceiling,
                });
            }
            limits.timeout = timeout;
        }
        if let Some(memory) = manifest.memory {
            if let Some(ceiling) = self.memory_ceiling
                && memory > ceiling
            {
                return Err(VersionError::MemoryAboveLimit {
                    manifest: manifest_path.to_path_buf(),
                    memory,
                    ceiling,
                });
            }
            limits.memory = memory;
        }
        let settings = Settings {
            limits,
            config: Arc::new(manifest.config),
            cache_ttl: manifest.cache_ttl,
            http_allow: (!caps.http.is_empty()).then(|| Arc::new(caps.http.clone())),
        };
        Ok((settings, caps))
    }
}
