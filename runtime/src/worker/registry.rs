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
    /// None for plugins added with [`Registry::insert`]: not from the
    /// directory, so a rescan leaves them alone.
    stamp: Option<Stamp>,
}

/// What tells a changed plugin: size and modification time of its file and
/// of its manifest (if any).
type Stamp = [(u64, Option<SystemTime>); 2];

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
        let found = scan(&self.dir);
        let mut changed = 0;
        let current: HashMap<PluginName, Option<Stamp>> = {
            let plugins = self.plugins.read().unwrap_or_else(|p| p.into_inner());
            plugins.iter().map(|(k, e)| (k.clone(), e.stamp)).collect()
        };
        let mut unsettled = false;
        for (name, path, stamp) in &found {
            match current.get(name) {
                Some(Some(s)) if s == stamp => continue,
                Some(None) => continue,
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
                Ok((plugin, settings)) => {
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
                    self.rejected
                        .write()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(path.clone(), (*stamp, error));
                }
            }
        }
        self.unsettled.store(unsettled, Ordering::Relaxed);
        self.rejected
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|path, _| found.iter().any(|(_, p, _)| p == path));
        let mut plugins = self.plugins.write().unwrap_or_else(|p| p.into_inner());
        let before = plugins.len();
        plugins.retain(|name, entry| {
            let keep = entry.stamp.is_none() || found.iter().any(|(n, _, _)| n == name);
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
    fn load(&self, path: &Path) -> Result<(Plugin, Settings), String> {
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
            limits.memory = memory;
        }
        let settings = Settings {
            limits,
            config: Arc::new(manifest.config),
            cache_ttl: manifest.cache_ttl,
        };
        Ok((plugin, settings))
    }
}

/// Whether the plugin file or its manifest changed within [`SETTLE`].
fn is_fresh(stamp: &Stamp) -> bool {
    stamp.iter().any(|(_, modified)| {
        modified
            .and_then(|m| m.elapsed().ok())
            .is_some_and(|age| age < SETTLE)
    })
}

/// `(name, path, stamp)` of every `.wasm` file one or two levels down.
fn scan(dir: &Path) -> Vec<(PluginName, PathBuf, Stamp)> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            let Some(tenant) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let Ok(inner) = std::fs::read_dir(&path) else {
                continue;
            };
            for file in inner.flatten() {
                push(&mut found, Some(tenant), file.path());
            }
        } else {
            push(&mut found, None, path);
        }
    }
    found
}

fn push(found: &mut Vec<(PluginName, PathBuf, Stamp)>, tenant: Option<&str>, path: PathBuf) {
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
    let Ok(name) = PluginName::parse(&full) else {
        tracing::warn!(path = %path.display(), "ignoring plugin file: {full:?} is not a valid plugin name");
        return;
    };
    let Ok(meta) = std::fs::metadata(&path) else {
        return;
    };
    let manifest = std::fs::metadata(manifest::path_for(&path))
        .map_or((0, None), |m| (m.len(), m.modified().ok()));
    found.push((name, path, [(meta.len(), meta.modified().ok()), manifest]));
}
