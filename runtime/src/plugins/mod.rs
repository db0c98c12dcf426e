//! Plugins: read a file, hash it, validate it, compile it through the
//! sandbox; and the plugins a worker serves, from its directory and from
//! the fleet's pins. Knows nothing of queues.
//!
//! A plugin is `tenant/name`; its version is the blake3 digest of its bytes
//! ([`crate::ids::Version`]). Validation runs cheapest first — magic bytes,
//! component or core module, SDK version, import policy — and only then
//! compiles, so a bad file is named with a specific reason before any
//! expensive work.
//!
//! - this file: one component's bytes → a compiled [`Plugin`];
//! - [`loader`]: bytes + manifest + the worker's settings → a served version;
//! - [`registry`]: the versions a worker serves, by name;
//! - [`scan`] and [`watcher`]: the plugins directory, rescanned on events;
//! - [`artifacts`]: compiled code kept on disk between runs;
//! - [`manifest`], [`policy`], [`inspect`], [`safe_read`]: the pieces.

mod artifacts;
mod error;
pub mod inspect;
pub mod loader;
pub mod manifest;
pub mod policy;
pub mod registry;
pub(crate) mod safe_read;
pub(crate) mod scan;
pub mod watcher;

pub use artifacts::{ArtifactCache, ArtifactCacheError};
pub use error::LoadError;
pub use loader::{LoadedVersion, Loader, Settings, VersionError};
pub use manifest::{Manifest, ManifestError};
pub use policy::Capabilities;
pub use registry::{DirectoryVersion, Registry, Rejection, Serving};

use crate::ids::Version;
use crate::sandbox::{Compiled, JobInput, JobRun, JobServices, Limits, PluginConfig, Sandbox};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Largest plugin file read (a component of this size is already unusual).
pub const MAX_PLUGIN_BYTES: u64 = 256 << 20;

/// SDK versions this host runs: any `0.1.x`.
pub const SUPPORTED_SDK: &str = "0.1";

/// A loaded, compiled plugin version.
#[derive(Debug, Clone)]
pub struct Plugin {
    /// Where it was loaded from.
    pub path: PathBuf,
    /// Digest of its bytes.
    pub version: Version,
    /// The SDK version that built it, when it says.
    pub sdk_version: Option<String>,
    /// Size of the component in bytes.
    pub size: usize,
    /// How long compiling (or loading the cached artifact) took.
    pub compile_time: Duration,
    /// Whether the compiled code came from the artifact cache.
    pub from_cache: bool,
    /// Its top-level imports (`wasi:clocks/wall-clock@0.2.6`, …).
    pub imports: Vec<String>,
    compiled: Compiled,
}

impl Plugin {
    /// Imports whose results vary from run to run (key-value, clocks,
    /// random): a cacheable plugin that uses them may cache a result that
    /// a later run would not give.
    pub fn varying_imports(&self) -> Vec<&str> {
        self.imports
            .iter()
            .map(String::as_str)
            .filter(|i| {
                i.starts_with("spool:job/kv")
                    || i.starts_with("wasi:clocks/")
                    || i.starts_with("wasi:random/")
            })
            .collect()
    }
}

impl Plugin {
    /// Run one job on this version, in its own span.
    pub fn run(&self, job: JobInput, limits: &Limits, config: PluginConfig) -> JobRun {
        let services = JobServices {
            config,
            ..JobServices::default()
        };
        self.run_with(job, limits, &services)
    }

    /// Run one job on this version with `services` (config, key-value).
    pub fn run_with(&self, job: JobInput, limits: &Limits, services: &JobServices) -> JobRun {
        // What logs inside a run are the guest's lines, at debug level in
        // `spool::guest`: the span is enabled exactly when they are (the
        // fmt layer formats a span's fields when it is created, logged or
        // not: 3.6% of a busy worker's CPU at the default `info`).
        let span = tracing::debug_span!(
            target: "spool::guest",
            "job",
            id = %job.id,
            tenant = %job.tenant,
            plugin = %job.plugin,
            version = %self.version.short(),
            attempt = job.attempt,
        );
        let _entered = span.enter();
        self.compiled.run_with(job, limits, services)
    }
}

/// Read, validate and compile the plugin at `path`.
pub fn load(sandbox: &Sandbox, path: &Path, caps: &Capabilities) -> Result<Plugin, LoadError> {
    load_cached(sandbox, path, caps, None)
}

/// Read, validate and compile the plugin at `path`, through the artifact
/// cache when one is given.
pub fn load_cached(
    sandbox: &Sandbox,
    path: &Path,
    caps: &Capabilities,
    cache: Option<&ArtifactCache>,
) -> Result<Plugin, LoadError> {
    let bytes = read_file(path)?;
    load_bytes_cached(sandbox, path, &bytes, caps, cache)
}

/// The bytes of the plugin file at `path` (a regular file, at most
/// [`MAX_PLUGIN_BYTES`]), named by the operator.
pub fn read_file(path: &Path) -> Result<Vec<u8>, LoadError> {
    read_file_in(None, path)
}

/// [`read_file`], beneath the watched directory `root` when given (see
/// [`safe_read::read_beneath`]).
pub fn read_file_in(root: Option<&Path>, path: &Path) -> Result<Vec<u8>, LoadError> {
    match root {
        Some(root) => safe_read::read_beneath(root, path, MAX_PLUGIN_BYTES, false),
        None => safe_read::read_regular(path, MAX_PLUGIN_BYTES, false),
    }
    .map(|(bytes, _)| bytes)
    .map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => LoadError::NotFound {
            path: path.to_path_buf(),
        },
        _ => LoadError::Read {
            path: path.to_path_buf(),
            source,
        },
    })
}

/// Validate and compile plugin bytes; `path` names them in errors.
pub fn load_bytes(
    sandbox: &Sandbox,
    path: &Path,
    bytes: &[u8],
    caps: &Capabilities,
) -> Result<Plugin, LoadError> {
    load_bytes_cached(sandbox, path, bytes, caps, None)
}

/// [`load_bytes`] through the artifact cache when one is given. The
/// validation runs either way (it is cheap); only compiling is skipped.
pub fn load_bytes_cached(
    sandbox: &Sandbox,
    path: &Path,
    bytes: &[u8],
    caps: &Capabilities,
    cache: Option<&ArtifactCache>,
) -> Result<Plugin, LoadError> {
    let info = validate(path, bytes, caps)?;
    let started = Instant::now();
    let version = Version::of(bytes);
    let (compiled, from_cache) = compile(sandbox, path, bytes, &version, cache)?;
    Ok(Plugin {
        path: path.to_path_buf(),
        version,
        sdk_version: info.sdk_version,
        size: bytes.len(),
        compile_time: started.elapsed(),
        from_cache,
        imports: info.imports,
        compiled,
    })
}

/// The cheap checks, cheapest first: not empty, wasm magic, a component
/// (not a core module), a supported SDK, imports the capabilities allow.
fn validate(
    path: &Path,
    bytes: &[u8],
    caps: &Capabilities,
) -> Result<inspect::Inspection, LoadError> {
    let path = path.to_path_buf();
    if bytes.is_empty() {
        return Err(LoadError::Empty { path });
    }
    if !bytes.starts_with(b"\0asm") {
        let found = bytes[..bytes.len().min(8)].escape_ascii().to_string();
        return Err(LoadError::NotWasm { path, found });
    }
    let info = inspect::inspect(bytes).map_err(|e| LoadError::Malformed {
        path: path.clone(),
        reason: e.0,
    })?;
    if info.core_module {
        return Err(LoadError::CoreModule { path });
    }
    if let Some(found) = &info.sdk_version
        && !sdk_compatible(found)
    {
        return Err(LoadError::IncompatibleSdk {
            path,
            found: found.clone(),
            supported: format!("{SUPPORTED_SDK}.x"),
        });
    }
    for import in &info.imports {
        match policy::judge(import, caps) {
            policy::Verdict::Allowed => {}
            policy::Verdict::Forbidden(reason) => {
                return Err(LoadError::ForbiddenImport {
                    path,
                    import: import.clone(),
                    reason: reason.to_string(),
                });
            }
            policy::Verdict::Unknown => {
                return Err(LoadError::UnknownImport {
                    path,
                    import: import.clone(),
                });
            }
        }
    }
    Ok(info)
}

/// Compile, or load the compiled code from the artifact cache (and put it
/// there after compiling). Returns whether it came from the cache.
fn compile(
    sandbox: &Sandbox,
    path: &Path,
    bytes: &[u8],
    version: &Version,
    cache: Option<&ArtifactCache>,
) -> Result<(Compiled, bool), LoadError> {
    let failed = |source| LoadError::Compile {
        path: path.to_path_buf(),
        source,
    };
    let Some(cache) = cache else {
        return sandbox.compile(bytes).map(|c| (c, false)).map_err(failed);
    };
    if let Some(artifact) = cache.get(version) {
        match sandbox.compile_from_artifact(&artifact) {
            Ok(compiled) => return Ok((compiled, true)),
            Err(e) => tracing::warn!(path = %cache.path(version).display(), "recompiling: {e}"),
        }
    }
    let (compiled, artifact) = sandbox.compile_to_artifact(bytes).map_err(failed)?;
    if let Err(e) = cache.put(version, &artifact) {
        tracing::warn!(dir = %cache.dir().display(), "could not cache the compiled plugin: {e}");
    }
    Ok((compiled, false))
}

/// `0.1.x` for any x; nothing else.
fn sdk_compatible(found: &str) -> bool {
    found
        .strip_prefix(SUPPORTED_SDK)
        .and_then(|rest| rest.strip_prefix('.'))
        .is_some_and(|patch| !patch.is_empty() && patch.chars().all(|c| c.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_supported_minor_is_compatible() {
        assert!(sdk_compatible("0.1.0"));
        assert!(sdk_compatible("0.1.17"));
        assert!(!sdk_compatible("0.2.0"));
        assert!(!sdk_compatible("0.10.0"));
        assert!(!sdk_compatible("0.1"));
        assert!(!sdk_compatible("garbage"));
    }
}
