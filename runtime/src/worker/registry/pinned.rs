//! Versions pinned through the fleet store (`spool plugins deploy` and
//! `rollback`): validated and compiled like a directory file, held beside
//! the directory's versions, and served in their place.

use super::{Entry, Registry};
use crate::deploy::{Rejection, VersionEntry};
use crate::plugins::{self, manifest};
use crate::queue::PluginName;
use std::path::PathBuf;

/// A version loaded from the plugins directory.
#[derive(Debug, Clone)]
pub struct DirectoryVersion {
    /// The plugin.
    pub name: PluginName,
    /// Its digest.
    pub version: String,
    /// The SDK that built it.
    pub sdk: Option<String>,
    /// The file.
    pub path: PathBuf,
    /// The manifest text it was loaded with.
    pub manifest: Option<String>,
}

/// A pinned version this worker refused, kept so it is not compiled again
/// at every sync, and shown in `spool plugins list`.
#[derive(Debug, Clone)]
pub(crate) struct Refused {
    digest: String,
    manifest: Option<String>,
    why: String,
}

impl Registry {
    /// Whether `name` has a pinned version serving.
    pub fn is_pinned(&self, name: &PluginName) -> bool {
        self.pinned
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(name)
    }

    /// Whether `entry` is what serves `name` already, or was refused already:
    /// either way there is nothing to load. A refusal of another version is
    /// forgotten once `entry` serves (it is no longer what the fleet asks).
    pub fn pin_is_settled(&self, name: &PluginName, entry: &VersionEntry) -> bool {
        let serving = self
            .pinned
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .is_some_and(|e| e.plugin.version.0 == entry.digest && e.manifest == entry.manifest);
        let mut refused = self.pin_rejected.write().unwrap_or_else(|p| p.into_inner());
        let refused_this = refused
            .get(name)
            .is_some_and(|r| r.digest == entry.digest && r.manifest == entry.manifest);
        if serving && refused.remove(name).is_some() {
            drop(refused);
            self.changed();
        }
        serving || refused_this
    }

    /// Record that the pinned `entry` of `name` cannot be served here, and
    /// why (its bytes are gone, loading it panicked): the version serving
    /// stays, and the reason shows in `spool plugins list`.
    pub fn refuse_pin(&self, name: &PluginName, entry: &VersionEntry, why: String) {
        tracing::warn!(plugin = %name, version = %entry.short(), "pinned version refused: {why}");
        self.pin_rejected
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                name.clone(),
                Refused {
                    digest: entry.digest.clone(),
                    manifest: entry.manifest.clone(),
                    why,
                },
            );
        self.changed();
    }

    /// Validate and compile `bytes` (version `entry` of `name`) and serve
    /// it in place of the directory's version. On failure the version
    /// serving now stays, and the reason is kept for `spool plugins list`.
    pub fn pin(&self, name: &PluginName, entry: &VersionEntry, bytes: &[u8]) -> Result<(), String> {
        let path = PathBuf::from(format!("redis:{name}@{}", entry.short()));
        let loaded = (|| {
            let parsed = match &entry.manifest {
                Some(text) => manifest::parse(&path.with_extension("toml"), text)
                    .map_err(|e| e.to_string())?,
                None => manifest::Manifest::default(),
            };
            let (settings, caps) = self.settings(&path, parsed)?;
            let plugin =
                plugins::load_bytes_cached(&self.sandbox, &path, bytes, &caps, self.cache.as_ref())
                    .map_err(|e| e.to_string())?;
            super::warn_if_varying(&plugin, &settings);
            Ok::<_, String>((plugin, settings, caps))
        })();
        match loaded {
            Ok((plugin, settings, caps)) => {
                let entry = Entry::loaded(
                    name,
                    "pinned version",
                    plugin,
                    settings,
                    caps,
                    None,
                    entry.manifest.clone(),
                );
                self.pinned
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(name.clone(), entry);
                self.pin_rejected
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(name);
                self.changed();
                Ok(())
            }
            Err(why) => {
                self.refuse_pin(name, entry, why.clone());
                Err(why)
            }
        }
    }

    /// Stop serving the pinned version of `name`: its directory file (if
    /// any) serves again.
    pub fn unpin(&self, name: &PluginName) {
        let removed = self
            .pinned
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
        let refused = self
            .pin_rejected
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
        if removed.is_some() || refused.is_some() {
            tracing::info!(plugin = %name, "no longer pinned; the directory's version serves");
            self.changed();
        }
    }

    /// Names with a pinned version serving or refused.
    pub fn pinned_names(&self) -> Vec<PluginName> {
        super::sorted_names(&self.pinned, &self.pin_rejected)
    }

    /// Directory plugins loaded from a file, for recording them in the
    /// fleet store's history.
    pub fn directory_versions(&self) -> Vec<DirectoryVersion> {
        self.plugins
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|(_, e)| e.stamp.is_some())
            .map(|(name, e)| DirectoryVersion {
                name: name.clone(),
                version: e.plugin.version.0.clone(),
                sdk: e.plugin.sdk_version.clone(),
                path: e.plugin.path.clone(),
                manifest: e.manifest.clone(),
            })
            .collect()
    }

    pub(super) fn pin_refusals(&self) -> Vec<Rejection> {
        let refused = self.pin_rejected.read().unwrap_or_else(|p| p.into_inner());
        let mut all: Vec<Rejection> = refused
            .iter()
            .map(|(name, r)| Rejection {
                path: format!("redis:{name}@{}", &r.digest[..12.min(r.digest.len())]),
                why: r.why.clone(),
            })
            .collect();
        all.sort_by(|a, b| a.path.cmp(&b.path));
        all
    }
}
