//! The plugins a worker serves, loaded from a directory:
//! `DIR/NAME.wasm` is `default/NAME`, `DIR/TENANT/NAME.wasm` is `TENANT/NAME`.
//!
//! An optional manifest `NAME.toml` beside `NAME.wasm` sets the plugin's
//! limits, config values and capabilities (see [`crate::plugins::manifest`]).
//!
//! [`Registry::refresh`] rescans the directory and (re)loads plugins whose
//! file or manifest changed (size or modification time), and drops plugins
//! whose file is gone. A file or manifest that fails to load is logged with
//! its reason and never replaces the version already serving.

use crate::plugins::{self, ArtifactCache, Capabilities, Plugin, manifest};
use crate::queue::PluginName;
use crate::sandbox::{Limits, PluginConfig, Sandbox};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

/// A file changed less than this long ago may still be being written: it
/// is loaded at a recheck once it has been left alone this long.
pub const SETTLE: Duration = Duration::from_millis(100);

/// Loaded plugins by name.
#[derive(Debug)]
pub struct Registry {
    sandbox: Sandbox,
    dir: PathBuf,
    caps: Capabilities,
    limits: Limits,
    cache: Option<ArtifactCache>,
    plugins: RwLock<HashMap<PluginName, Entry>>,
    rejected: RwLock<HashMap<PathBuf, (Stamp, String)>>,
    /// The last rescan left a changed file for later (it was still fresh).
    unsettled: AtomicBool,
    /// Held for a whole rescan.
    rescanning: std::sync::Mutex<()>,
    /// Ignored files already warned about (warn once, not every rescan).
    warned: std::sync::Mutex<std::collections::HashSet<PathBuf>>,
}

/// How a plugin's jobs run: the worker's limits with the manifest's
/// overrides, and the manifest's config values.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// Per-job limits.
    pub limits: Limits,
    /// Values for `config::get`.
    pub config: PluginConfig,
    /// How long results may be cached (manifest `[cache] ttl`).
    pub cache_ttl: Option<std::time::Duration>,
}

#[derive(Debug, Clone)]
struct Entry {
    plugin: Arc<Plugin>,
    settings: Arc<Settings>,
    /// The capabilities it was loaded with.
    caps: Capabilities,
    /// None for plugins added with [`Registry::insert`]: not from the
    /// directory, so a rescan leaves them alone.
    stamp: Option<Stamp>,
}

/// What tells a changed plugin: its file's and its manifest's identity.
type Stamp = [FileStamp; 2];

/// Size, times and identity of one file: a file replaced by another with
/// the same size and modification time (`cp -p`, `rsync -a`, tar) still
/// has another inode and change time; a `chmod` changes the change time,
/// so a file rejected as unreadable is tried again.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct FileStamp {
    len: u64,
    modified: Option<SystemTime>,
    dev: u64,
    ino: u64,
    ctime_ns: i128,
}

impl FileStamp {
    fn of(meta: &std::fs::Metadata) -> Self {
        use std::os::unix::fs::MetadataExt;
        FileStamp {
            len: meta.len(),
            modified: meta.modified().ok(),
            dev: meta.dev(),
            ino: meta.ino(),
            ctime_ns: i128::from(meta.ctime()) * 1_000_000_000 + i128::from(meta.ctime_nsec()),
        }
    }
}

impl Registry {
    /// An empty registry over `dir`; call [`Registry::refresh`] to load.
    pub fn new(sandbox: Sandbox, dir: impl Into<PathBuf>, caps: Capabilities) -> Self {
        Registry {
            sandbox,
            dir: dir.into(),
            caps,
            limits: Limits::default(),
            cache: None,
            plugins: RwLock::new(HashMap::new()),
            rejected: RwLock::new(HashMap::new()),
            unsettled: AtomicBool::new(false),
            rescanning: std::sync::Mutex::new(()),
            warned: std::sync::Mutex::default(),
        }
    }

    /// Load through `cache`: a version compiled before is not compiled again.
    #[must_use]
    pub fn with_artifact_cache(mut self, cache: ArtifactCache) -> Self {
        self.cache = Some(cache);
        self
    }

    /// Per-job limits of plugins whose manifest does not set them.
    #[must_use]
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Serve `plugin` as `name`, whatever the directory holds (embedders and
    /// tests that compiled it already).
    pub fn insert(&self, name: PluginName, plugin: Arc<Plugin>) {
        self.plugins
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                name,
                Entry {
                    plugin,
                    caps: self.caps.clone(),
                    settings: Arc::new(Settings {
                        limits: self.limits.clone(),
                        ..Settings::default()
                    }),
                    stamp: None,
                },
            );
    }

    /// The plugin serving `name`, if loaded.
    pub fn get(&self, name: &PluginName) -> Option<Arc<Plugin>> {
        let plugins = self.plugins.read().unwrap_or_else(|p| p.into_inner());
        plugins.get(name).map(|e| Arc::clone(&e.plugin))
    }

    /// The plugin serving `name` with the settings it runs under (one
    /// lookup, so both belong to the same load).
    pub fn serve(&self, name: &PluginName) -> Option<(Arc<Plugin>, Arc<Settings>)> {
        let plugins = self.plugins.read().unwrap_or_else(|p| p.into_inner());
        plugins
            .get(name)
            .map(|e| (Arc::clone(&e.plugin), Arc::clone(&e.settings)))
    }

    /// Files (or their manifests) that were rejected and why, as of the last
    /// rescan, sorted by path. A rejected file never replaced a serving one.
    pub fn rejected(&self) -> Vec<(PathBuf, String)> {
        let rejected = self.rejected.read().unwrap_or_else(|p| p.into_inner());
        let mut list: Vec<_> = rejected
            .iter()
            .map(|(path, (_, why))| (path.clone(), why.clone()))
            .collect();
        list.sort();
        list
    }

    /// Whether the last [`Registry::refresh`] left a changed file for later
    /// because it was modified within [`SETTLE`]: refresh again after that.
    pub fn has_unsettled(&self) -> bool {
        self.unsettled.load(Ordering::Relaxed)
    }

    /// Names of the loaded plugins, sorted.
    pub fn names(&self) -> Vec<PluginName> {
        let plugins = self.plugins.read().unwrap_or_else(|p| p.into_inner());
        let mut names: Vec<_> = plugins.keys().cloned().collect();
        names.sort();
        names
    }

    /// The directory served.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Rescan the directory and load every changed plugin; returns how
    /// many plugins changed.
    pub fn refresh(&self) -> usize {
        self.rescan(false)
    }

    /// Rescan, but leave files changed within [`SETTLE`] for a later call
    /// (see [`Registry::has_unsettled`]): what the watcher uses, so that a
    /// file still being written is not loaded (and rejected) half-way.
    pub fn refresh_settled(&self) -> usize {
        self.rescan(true)
    }

    fn rescan(&self, settle: bool) -> usize {
        // One rescan at a time: two would race on inserts and removals.
        let _one = self.rescanning.lock().unwrap_or_else(|p| p.into_inner());
        let scan = scan(&self.dir);
        for (path, why) in &scan.invalid {
            let mut warned = self.warned.lock().unwrap_or_else(|p| p.into_inner());
            if warned.insert(path.clone()) {
                tracing::warn!(path = %path.display(), "ignoring plugin file: {why}");
            }
        }
        let mut changed = 0;
        let current: HashMap<PluginName, (Option<Stamp>, Capabilities)> = {
            let plugins = self.plugins.read().unwrap_or_else(|p| p.into_inner());
            plugins
                .iter()
                .map(|(k, e)| (k.clone(), (e.stamp, e.caps.clone())))
                .collect()
        };
        let mut rejected_now: Vec<(PathBuf, Stamp, String)> = Vec::new();
        for (name, paths) in &scan.conflicts {
            let list: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
            let why = format!(
                "plugin {name} is defined twice ({}): remove one",
                list.join(" and ")
            );
            for path in paths {
                rejected_now.push((path.clone(), Stamp::default(), why.clone()));
            }
        }
        let mut unsettled = false;
        let mut settled: Vec<&PathBuf> = Vec::new();
        for (name, path, stamp) in &scan.found {
            let serving = current.get(name);
            match serving {
                Some((Some(s), _)) if s == stamp => {
                    // Serving this very file: any old complaint is moot.
                    settled.push(path);
                    continue;
                }
                Some((None, _)) => continue,
                _ => {}
            }
            {
                let rejected = self.rejected.read().unwrap_or_else(|p| p.into_inner());
                if rejected.get(path).is_some_and(|(s, _)| s == stamp) {
                    continue;
                }
            }
            if settle && is_fresh(stamp) {
                // Possibly still being written: look again once it settles.
                unsettled = true;
                continue;
            }
            match self.load(path) {
                Ok((plugin, settings, caps)) => {
                    tracing::info!(
                        plugin = %name,
                        version = %plugin.version.short(),
                        load_ms = plugin.compile_time.as_millis(),
                        cached = plugin.from_cache,
                        "plugin loaded"
                    );
                    let entry = Entry {
                        plugin: Arc::new(plugin),
                        settings: Arc::new(settings),
                        caps,
                        stamp: Some(*stamp),
                    };
                    self.plugins
                        .write()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(name.clone(), entry);
                    self.rejected
                        .write()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(path);
                    changed += 1;
                }
                Err(error) => {
                    tracing::warn!(plugin = %name, "plugin rejected: {error}");
                    // A bad file never replaces a good version, except when
                    // the manifest now takes away a capability the serving
                    // version has: then it must stop serving.
                    if let Some((_, serving_caps)) = serving
                        && let Ok(m) = manifest::read_for(path)
                        && serving_caps.network
                        && !(self.caps.network || m.capabilities.network)
                    {
                        tracing::warn!(plugin = %name, "network capability revoked: no longer served");
                        self.plugins
                            .write()
                            .unwrap_or_else(|p| p.into_inner())
                            .remove(name);
                        changed += 1;
                    }
                    rejected_now.push((path.clone(), *stamp, error));
                }
            }
        }
        self.unsettled.store(unsettled, Ordering::Relaxed);
        {
            let mut rejected = self.rejected.write().unwrap_or_else(|p| p.into_inner());
            for path in settled {
                rejected.remove(path);
            }
            for (path, stamp, why) in rejected_now {
                rejected.insert(path, (stamp, why));
            }
            rejected.retain(|path, _| {
                scan.found.iter().any(|(_, p, _)| p == path)
                    || scan.conflicts.iter().any(|(_, ps)| ps.contains(path))
                    || scan.unreadable(path)
            });
        }
        let mut plugins = self.plugins.write().unwrap_or_else(|p| p.into_inner());
        let before = plugins.len();
        plugins.retain(|name, entry| {
            let keep = entry.stamp.is_none()
                || scan.found.iter().any(|(n, _, _)| n == name)
                // Defined twice: the version serving stays until it is resolved.
                || scan.conflicts.iter().any(|(n, _)| n == name)
                // A directory we could not read is not a deletion.
                || scan.unreadable(&entry.plugin.path);
            if !keep {
                tracing::info!(plugin = %name, "plugin file removed; no longer served");
            }
            keep
        });
        changed + (before - plugins.len())
    }
}

impl Registry {
    /// Read the manifest, then load the plugin with its capabilities.
    fn load(&self, path: &Path) -> Result<(Plugin, Settings, Capabilities), String> {
        let manifest = manifest::read_for(path).map_err(|e| e.to_string())?;
        let caps = Capabilities {
            network: self.caps.network || manifest.capabilities.network,
        };
        let plugin = plugins::load_cached(&self.sandbox, path, &caps, self.cache.as_ref())
            .map_err(|e| e.to_string())?;
        let mut limits = self.limits.clone();
        if let Some(timeout) = manifest.timeout {
            limits.timeout = timeout;
        }
        if let Some(memory) = manifest.memory {
            let ceiling = self.sandbox.config().max_memory;
            if memory > ceiling {
                return Err(format!(
                    "manifest {}: memory: {memory} bytes is above this worker's limit of {ceiling} bytes (--memory)",
                    manifest::path_for(path).display()
                ));
            }
            limits.memory = memory;
        }
        let settings = Settings {
            limits,
            config: Arc::new(manifest.config),
            cache_ttl: manifest.cache_ttl,
        };
        Ok((plugin, settings, caps))
    }
}

/// Whether the plugin file or its manifest changed within [`SETTLE`].
fn is_fresh(stamp: &Stamp) -> bool {
    stamp.iter().any(|f| {
        f.modified
            .and_then(|m| m.elapsed().ok())
            .is_some_and(|age| age < SETTLE)
    })
}

/// What a directory scan found.
#[derive(Debug, Default)]
struct Scan {
    /// `(name, path, stamp)` of every usable `.wasm` file.
    found: Vec<(PluginName, PathBuf, Stamp)>,
    /// Names defined by more than one file, with those files.
    conflicts: Vec<(PluginName, Vec<PathBuf>)>,
    /// Files ignored, and why.
    invalid: Vec<(PathBuf, String)>,
    /// Directories that exist but could not be read (not a deletion).
    unreadable_dirs: Vec<PathBuf>,
}

impl Scan {
    fn unreadable(&self, path: &Path) -> bool {
        self.unreadable_dirs.iter().any(|d| path.starts_with(d))
    }
}

/// Every `.wasm` file one or two levels down.
fn scan(dir: &Path) -> Scan {
    let mut scan = Scan::default();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return scan,
        Err(_) => {
            scan.unreadable_dirs.push(dir.to_path_buf());
            return scan;
        }
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            let Some(tenant) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let inner = match std::fs::read_dir(&path) {
                Ok(inner) => inner,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(_) => {
                    scan.unreadable_dirs.push(path.clone());
                    continue;
                }
            };
            for file in inner.flatten() {
                push(&mut scan, Some(tenant), file.path());
            }
        } else {
            push(&mut scan, None, path);
        }
    }
    let mut by_name: HashMap<PluginName, Vec<PathBuf>> = HashMap::new();
    for (name, path, _) in &scan.found {
        by_name.entry(name.clone()).or_default().push(path.clone());
    }
    let mut conflicts: Vec<(PluginName, Vec<PathBuf>)> = by_name
        .into_iter()
        .filter(|(_, paths)| paths.len() > 1)
        .collect();
    conflicts.sort();
    scan.found
        .retain(|(name, _, _)| !conflicts.iter().any(|(n, _)| n == name));
    scan.conflicts = conflicts;
    scan
}

fn push(scan: &mut Scan, tenant: Option<&str>, path: PathBuf) {
    if path.extension().and_then(|e| e.to_str()) != Some("wasm") {
        return;
    }
    let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else {
        return;
    };
    let full = match tenant {
        Some(tenant) => format!("{tenant}/{stem}"),
        None => stem.to_string(),
    };
    let name = match PluginName::parse(&full) {
        Ok(name) => name,
        Err(e) => {
            scan.invalid.push((path, e.to_string()));
            return;
        }
    };
    let Ok(meta) = std::fs::metadata(&path) else {
        return;
    };
    if !meta.is_file() {
        scan.invalid.push((path, "not a regular file".into()));
        return;
    }
    let manifest = std::fs::metadata(manifest::path_for(&path))
        .map_or(FileStamp::default(), |m| FileStamp::of(&m));
    scan.found
        .push((name, path, [FileStamp::of(&meta), manifest]));
}
