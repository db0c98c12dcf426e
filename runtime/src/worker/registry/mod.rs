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
//!
//! Versions pinned through the fleet store ([`crate::deploy`]) are held
//! beside the directory's (see [`pinned`]) and win over them.

mod pinned;

use super::scan::{self, Stamp, is_fresh};
use crate::deploy::{Rejection, Serving};
use crate::plugins::{self, ArtifactCache, Capabilities, Plugin, manifest};
use crate::queue::{PluginName, now_us};
use crate::sandbox::{Limits, PluginConfig, Sandbox};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

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
    /// Versions pinned through the fleet store; they win over `plugins`.
    pinned: RwLock<HashMap<PluginName, Entry>>,
    /// Pinned versions this worker refused: digest, manifest, why.
    pin_rejected: RwLock<HashMap<PluginName, pinned::Refused>>,
    /// Bumped on every change of what is served or rejected.
    generation: AtomicU64,
}

impl Entry {
    /// A version just loaded (`what`: "plugin" or "pinned version"), logged.
    fn loaded(
        name: &PluginName,
        what: &str,
        plugin: Plugin,
        settings: Settings,
        caps: Capabilities,
        stamp: Option<Stamp>,
        manifest: Option<String>,
    ) -> Self {
        tracing::info!(
            plugin = %name,
            version = %plugin.version.short(),
            load_ms = plugin.compile_time.as_millis(),
            cached = plugin.from_cache,
            "{what} loaded"
        );
        Entry {
            plugin: Arc::new(plugin),
            settings: Arc::new(settings),
            caps,
            stamp,
            loaded_us: now_us(),
            manifest,
        }
    }
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
    /// None for plugins added with [`Registry::insert`] or pinned: not
    /// from the directory, so a rescan leaves them alone.
    stamp: Option<Stamp>,
    /// When it was loaded (µs since the epoch).
    loaded_us: u64,
    /// The manifest text it runs with (pinned versions carry theirs).
    manifest: Option<String>,
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
            pinned: RwLock::default(),
            pin_rejected: RwLock::default(),
            generation: AtomicU64::new(0),
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

    /// [`Registry::insert`] with its own settings (limits, config, cache).
    pub fn insert_with(&self, name: PluginName, plugin: Arc<Plugin>, settings: Settings) {
        self.plugins
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                name,
                Entry {
                    plugin,
                    caps: self.caps.clone(),
                    settings: Arc::new(settings),
                    stamp: None,
                    loaded_us: now_us(),
                    manifest: None,
                },
            );
        self.changed();
    }

    /// Serve `plugin` as `name`, whatever the directory holds (embedders and
    /// tests that compiled it already).
    pub fn insert(&self, name: PluginName, plugin: Arc<Plugin>) {
        let settings = Settings {
            limits: self.limits.clone(),
            ..Settings::default()
        };
        self.insert_with(name, plugin, settings);
    }

    /// Count a change of what is served or rejected.
    fn changed(&self) {
        self.generation.fetch_add(1, Ordering::Relaxed);
    }

    /// A number that changes whenever what is served or rejected changes:
    /// compare it to know when to report again.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Relaxed)
    }

    /// The plugin serving `name`, if loaded.
    pub fn get(&self, name: &PluginName) -> Option<Arc<Plugin>> {
        self.serve(name).map(|(plugin, _)| plugin)
    }

    /// The plugin serving `name` with the settings it runs under (one
    /// lookup, so both belong to the same load). A pinned version wins.
    pub fn serve(&self, name: &PluginName) -> Option<(Arc<Plugin>, Arc<Settings>)> {
        let pick = |e: &Entry| (Arc::clone(&e.plugin), Arc::clone(&e.settings));
        if let Some(pinned) = self
            .pinned
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
        {
            return Some(pick(pinned));
        }
        let plugins = self.plugins.read().unwrap_or_else(|p| p.into_inner());
        plugins.get(name).map(pick)
    }

    /// What this worker serves, sorted by name: for `spool plugins list`.
    pub fn serving(&self) -> Vec<Serving> {
        let pinned = self.pinned.read().unwrap_or_else(|p| p.into_inner());
        let plugins = self.plugins.read().unwrap_or_else(|p| p.into_inner());
        let describe = |name: &PluginName, e: &Entry, source: &str| Serving {
            name: name.to_string(),
            version: e.plugin.version.0.clone(),
            sdk: e.plugin.sdk_version.clone(),
            loaded_us: e.loaded_us,
            source: source.to_string(),
            path: e.plugin.path.display().to_string(),
            shadowed: None,
        };
        let mut all: Vec<Serving> = pinned
            .iter()
            .map(|(name, e)| Serving {
                shadowed: plugins
                    .get(name)
                    .map(|d| format!("{} ({})", d.plugin.path.display(), d.plugin.version.short())),
                ..describe(name, e, "deployed")
            })
            .collect();
        all.extend(
            plugins
                .iter()
                .filter(|(name, _)| !pinned.contains_key(*name))
                .map(|(name, e)| {
                    let source = if e.stamp.is_some() {
                        "directory"
                    } else {
                        "embedded"
                    };
                    describe(name, e, source)
                }),
        );
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// Directory files and pinned versions refused, as of now.
    pub fn refusals(&self) -> Vec<Rejection> {
        let mut all: Vec<Rejection> = self
            .rejected()
            .into_iter()
            .map(|(path, why)| Rejection {
                path: path.display().to_string(),
                why,
            })
            .collect();
        all.extend(self.pin_refusals());
        all
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

    /// Names of the loaded plugins (directory and pinned), sorted.
    pub fn names(&self) -> Vec<PluginName> {
        sorted_names(&self.plugins, &self.pinned)
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
        let scan = scan::scan(&self.dir);
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
                Ok((plugin, settings, caps, manifest)) => {
                    if self.is_pinned(name) {
                        tracing::warn!(
                            plugin = %name,
                            file = %path.display(),
                            "a version is pinned through `spool plugins deploy`/`rollback`: it keeps serving instead of this file (`spool plugins unpin {name}` serves the file)"
                        );
                    }
                    let entry = Entry::loaded(
                        name,
                        "plugin",
                        plugin,
                        settings,
                        caps,
                        Some(*stamp),
                        manifest,
                    );
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
        let rejections_changed;
        {
            let mut rejected = self.rejected.write().unwrap_or_else(|p| p.into_inner());
            let before: Vec<(PathBuf, String)> = rejected
                .iter()
                .map(|(p, (_, why))| (p.clone(), why.clone()))
                .collect();
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
            rejections_changed = before.len() != rejected.len()
                || before
                    .iter()
                    .any(|(p, why)| rejected.get(p).is_none_or(|(_, w)| w != why));
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
        let changed = changed + (before - plugins.len());
        drop(plugins);
        if changed > 0 || rejections_changed {
            self.changed();
        }
        changed
    }
}

impl Registry {
    /// Read the manifest, then load the plugin with its capabilities.
    /// Returns the manifest text too.
    #[allow(clippy::type_complexity)]
    fn load(
        &self,
        path: &Path,
    ) -> Result<(Plugin, Settings, Capabilities, Option<String>), String> {
        let text = manifest::read_text_for(path).map_err(|e| e.to_string())?;
        let parsed = match &text {
            Some(text) => manifest::parse(&manifest::path_for(path), text),
            None => Ok(manifest::Manifest::default()),
        }
        .map_err(|e| e.to_string())?;
        let (settings, caps) = self.settings(path, parsed)?;
        let plugin = plugins::load_cached(&self.sandbox, path, &caps, self.cache.as_ref())
            .map_err(|e| e.to_string())?;
        warn_if_varying(&plugin, &settings);
        Ok((plugin, settings, caps, text))
    }

    /// The limits, config and capabilities a manifest gives the plugin at
    /// `path` on this worker.
    fn settings(
        &self,
        path: &Path,
        manifest: manifest::Manifest,
    ) -> Result<(Settings, Capabilities), String> {
        let caps = Capabilities {
            network: self.caps.network || manifest.capabilities.network,
        };
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
        Ok((settings, caps))
    }
}

/// A cacheable plugin's purity is its author's promise; say so when its
/// imports make results vary (a cached result may differ from a new run).
pub(super) fn warn_if_varying(plugin: &Plugin, settings: &Settings) {
    if settings.cache_ttl.is_none() {
        return;
    }
    let varying = plugin.varying_imports();
    if !varying.is_empty() {
        tracing::warn!(
            file = %plugin.path.display(),
            imports = %varying.join(", "),
            "results are cached ([cache] ttl) but the plugin imports what can make them vary: a cached result is served as if the handler were pure"
        );
    }
}

/// The names in either map, sorted, each once.
pub(super) fn sorted_names<A, B>(
    a: &RwLock<HashMap<PluginName, A>>,
    b: &RwLock<HashMap<PluginName, B>>,
) -> Vec<PluginName> {
    let mut names: Vec<PluginName> = a
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .keys()
        .cloned()
        .collect();
    names.extend(b.read().unwrap_or_else(|p| p.into_inner()).keys().cloned());
    names.sort();
    names.dedup();
    names
}
