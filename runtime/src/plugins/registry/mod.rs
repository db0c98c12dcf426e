//! The plugins a worker serves, by name: the versions loaded from its
//! directory (see [`crate::plugins::scan`]) and the versions pinned
//! through the fleet store (see [`pinned`]), which win over them.
//!
//! An optional manifest `NAME.toml` beside `NAME.wasm` sets the plugin's
//! limits, config values and capabilities (see [`crate::plugins::manifest`]).
//!
//! [`Registry::refresh`] rescans the directory and (re)loads plugins whose
//! file or manifest changed, and drops plugins whose file is gone (see
//! [`plan`] for the decisions and [`rescan`] for their application). A file
//! or manifest that fails to load is logged with its reason and never
//! replaces the version already serving.

mod pinned;
mod plan;
mod report;
mod rescan;

pub use pinned::DirectoryVersion;
pub use report::{Rejection, Serving};

use super::loader::{LoadedVersion, Loader, Settings};
use super::scan::Stamp;
use super::{ArtifactCache, Capabilities, Plugin};
use crate::ids::{PluginName, now_us};
use crate::locks::{read, write};
use crate::sandbox::{Limits, Sandbox};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

/// Loaded plugins by name.
#[derive(Debug)]
pub struct Registry {
    loader: Loader,
    dir: PathBuf,
    /// Versions loaded from the directory (or inserted).
    plugins: RwLock<HashMap<PluginName, Entry>>,
    /// Directory files refused, with the stamp they were refused at.
    rejected: RwLock<HashMap<PathBuf, (Stamp, String)>>,
    /// The last rescan left a changed file for later (it was still fresh).
    unsettled: AtomicBool,
    /// Held for a whole rescan.
    rescanning: Mutex<()>,
    /// Ignored files already warned about (warn once, not every rescan).
    warned: Mutex<HashSet<PathBuf>>,
    /// Versions pinned through the fleet store; they win over `plugins`.
    pinned: RwLock<HashMap<PluginName, Entry>>,
    /// Pinned versions this worker refused: digest, manifest, why.
    pin_rejected: RwLock<HashMap<PluginName, pinned::Refused>>,
    /// Bumped on every change of what is served or rejected.
    generation: AtomicU64,
}

/// One version serving a name.
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

impl Entry {
    /// A version just loaded (`what`: "plugin" or "pinned version"), logged.
    fn loaded(name: &PluginName, what: &str, loaded: LoadedVersion, stamp: Option<Stamp>) -> Self {
        let plugin = loaded.plugin;
        tracing::info!(
            plugin = %name,
            version = %plugin.version.short(),
            load_ms = plugin.compile_time.as_millis(),
            cached = plugin.from_cache,
            "{what} loaded"
        );
        warn_if_varying(&plugin, &loaded.settings);
        Entry {
            plugin: Arc::new(plugin),
            settings: Arc::new(loaded.settings),
            caps: loaded.caps,
            stamp,
            loaded_us: now_us(),
            manifest: loaded.manifest,
        }
    }
}

impl Registry {
    /// An empty registry over `dir`; call [`Registry::refresh`] to load.
    pub fn new(sandbox: Sandbox, dir: impl Into<PathBuf>, caps: Capabilities) -> Self {
        let dir = dir.into();
        let mut loader = Loader::new(sandbox);
        loader.caps = caps;
        loader.root = Some(dir.clone());
        Registry {
            loader,
            dir,
            plugins: RwLock::default(),
            rejected: RwLock::default(),
            unsettled: AtomicBool::new(false),
            rescanning: Mutex::new(()),
            warned: Mutex::default(),
            pinned: RwLock::default(),
            pin_rejected: RwLock::default(),
            generation: AtomicU64::new(0),
        }
    }

    /// Load through `artifacts`: a version compiled before is not compiled
    /// again.
    #[must_use]
    pub fn with_artifact_cache(mut self, artifacts: ArtifactCache) -> Self {
        self.loader.artifacts = Some(artifacts);
        self
    }

    /// Per-job limits of plugins whose manifest does not set them.
    #[must_use]
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.loader.limits = limits;
        self
    }

    /// [`Registry::insert`] with its own settings (limits, config, cache).
    pub fn insert_with(&self, name: PluginName, plugin: Arc<Plugin>, settings: Settings) {
        let entry = Entry {
            plugin,
            caps: self.loader.caps.clone(),
            settings: Arc::new(settings),
            stamp: None,
            loaded_us: now_us(),
            manifest: None,
        };
        write(&self.plugins).insert(name, entry);
        self.changed();
    }

    /// Serve `plugin` as `name`, whatever the directory holds (embedders and
    /// tests that compiled it already).
    pub fn insert(&self, name: PluginName, plugin: Arc<Plugin>) {
        let settings = Settings {
            limits: self.loader.limits.clone(),
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
        if let Some(pinned) = read(&self.pinned).get(name) {
            return Some(pick(pinned));
        }
        read(&self.plugins).get(name).map(pick)
    }

    /// Whether the last [`Registry::refresh_settled`] left a changed file
    /// for later because it was modified within
    /// [`crate::plugins::scan::SETTLE`]: refresh again after that.
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
}

/// A cacheable plugin's purity is its author's promise; say so when its
/// imports make results vary (a cached result may differ from a new run).
fn warn_if_varying(plugin: &Plugin, settings: &Settings) {
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
fn sorted_names<A, B>(
    a: &RwLock<HashMap<PluginName, A>>,
    b: &RwLock<HashMap<PluginName, B>>,
) -> Vec<PluginName> {
    let mut names: Vec<PluginName> = read(a).keys().cloned().collect();
    names.extend(read(b).keys().cloned());
    names.sort();
    names.dedup();
    names
}
