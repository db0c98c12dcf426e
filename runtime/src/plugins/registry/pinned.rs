//! Versions pinned through the fleet store (`spool plugins deploy` and
//! `rollback`): validated and compiled like a directory file, held beside
//! the directory's versions, and served in their place. Knows the fleet
//! store only through what the worker hands it: a name, a digest, a
//! manifest and the bytes.

use super::report::Rejection;
use super::{Entry, Registry};
use crate::ids::{PluginName, Version};
use crate::locks::{read, write};
use crate::plugins::VersionError;
use std::path::PathBuf;

/// A version loaded from the plugins directory.
#[derive(Debug, Clone)]
pub struct DirectoryVersion {
    /// The plugin.
    pub name: PluginName,
    /// Its digest.
    pub version: Version,
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
    digest: Version,
    manifest: Option<String>,
    why: String,
}

/// How a pinned version is named where a file path would be.
fn pin_path(name: &PluginName, digest: &Version) -> String {
    format!("redis:{name}@{}", digest.short())
}

impl Registry {
    /// Whether `name` has a pinned version serving.
    pub fn is_pinned(&self, name: &PluginName) -> bool {
        read(&self.pinned).contains_key(name)
    }

    /// Whether version `digest` with `manifest` is what serves `name`
    /// already, or was refused already: either way there is nothing to
    /// load. A refusal of another version is forgotten once this one
    /// serves (it is no longer what the fleet asks).
    pub fn pin_is_settled(
        &self,
        name: &PluginName,
        digest: &Version,
        manifest: Option<&str>,
    ) -> bool {
        let serving = read(&self.pinned)
            .get(name)
            .is_some_and(|e| e.plugin.version == *digest && e.manifest.as_deref() == manifest);
        let mut refused = write(&self.pin_rejected);
        let refused_this = refused
            .get(name)
            .is_some_and(|r| r.digest == *digest && r.manifest.as_deref() == manifest);
        if serving && refused.remove(name).is_some() {
            drop(refused);
            self.changed();
        }
        serving || refused_this
    }

    /// Record that the pinned version `digest` (with `manifest`) of `name`
    /// cannot be served here, and why (its bytes are gone, loading it
    /// panicked): the version serving stays, and the reason shows in
    /// `spool plugins list`.
    pub fn refuse_pin(
        &self,
        name: &PluginName,
        digest: &Version,
        manifest: Option<&str>,
        why: String,
    ) {
        tracing::warn!(plugin = %name, version = %digest.short(), "pinned version refused: {why}");
        let refused = Refused {
            digest: digest.clone(),
            manifest: manifest.map(str::to_string),
            why,
        };
        write(&self.pin_rejected).insert(name.clone(), refused);
        self.changed();
    }

    /// Validate and compile `bytes` (version `digest` of `name`, with
    /// `manifest`) and serve it in place of the directory's version. On
    /// failure the version serving now stays, and the reason is kept for
    /// `spool plugins list`.
    pub fn pin(
        &self,
        name: &PluginName,
        digest: &Version,
        manifest: Option<&str>,
        bytes: &[u8],
    ) -> Result<(), VersionError> {
        let path = PathBuf::from(pin_path(name, digest));
        let manifest_path = path.with_extension("toml");
        let manifest_text = manifest.map(|text| (manifest_path.as_path(), text));
        match self.loader.load_version(&path, bytes, manifest_text) {
            Ok(loaded) => {
                let entry = Entry::loaded(name, "pinned version", loaded, None);
                write(&self.pinned).insert(name.clone(), entry);
                write(&self.pin_rejected).remove(name);
                self.changed();
                Ok(())
            }
            Err(error) => {
                self.refuse_pin(name, digest, manifest, error.to_string());
                Err(error)
            }
        }
    }

    /// Stop serving the pinned version of `name` (the fleet store no longer
    /// pins one): its directory file, if any, serves again.
    pub fn drop_pin(&self, name: &PluginName) {
        let removed = write(&self.pinned).remove(name);
        let refused = write(&self.pin_rejected).remove(name);
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
        read(&self.plugins)
            .iter()
            .filter(|(_, e)| e.stamp.is_some())
            .map(|(name, e)| DirectoryVersion {
                name: name.clone(),
                version: e.plugin.version.clone(),
                sdk: e.plugin.sdk_version.clone(),
                path: e.plugin.path.clone(),
                manifest: e.manifest.clone(),
            })
            .collect()
    }

    pub(super) fn pin_refusals(&self) -> Vec<Rejection> {
        let mut all: Vec<Rejection> = read(&self.pin_rejected)
            .iter()
            .map(|(name, r)| Rejection {
                path: pin_path(name, &r.digest),
                why: r.why.clone(),
            })
            .collect();
        all.sort_by(|a, b| a.path.cmp(&b.path));
        all
    }
}
