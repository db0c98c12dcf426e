//! What a registry tells about itself: the versions it serves and the files
//! and pinned versions it refused, in the shape worker reports publish
//! (`spool plugins list`).

use super::{Entry, Registry};
use crate::ids::{PluginName, Version};
use crate::locks::read;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// One plugin a worker serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Serving {
    /// `tenant/name`.
    pub name: String,
    /// Version digest.
    pub version: Version,
    /// The SDK version that built it, when it says.
    pub sdk: Option<String>,
    /// When this worker loaded it (µs since the epoch).
    pub loaded_us: u64,
    /// `deployed` (pinned through Redis), `directory` or `embedded`.
    pub source: String,
    /// The file, or `redis:NAME@DIGEST` for a deployed version.
    pub path: String,
    /// A directory file this worker does not serve because a pinned
    /// version wins, when there is one.
    #[serde(default)]
    pub shadowed: Option<String>,
}

/// A file or deployed version a worker refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejection {
    /// The file, or `redis:NAME@DIGEST`.
    pub path: String,
    /// Why, naming the file and the reason.
    pub why: String,
}

impl Registry {
    /// What this worker serves, sorted by name: for `spool plugins list`.
    pub fn serving(&self) -> Vec<Serving> {
        let pinned = read(&self.pinned);
        let plugins = read(&self.plugins);
        let describe = |name: &PluginName, e: &Entry, source: &str| Serving {
            name: name.to_string(),
            version: e.plugin.version.clone(),
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
        let mut list: Vec<_> = read(&self.rejected)
            .iter()
            .map(|(path, (_, why))| (path.clone(), why.clone()))
            .collect();
        list.sort();
        list
    }
}
