//! Applying a rescan [`super::plan`]: load what it names, record what was
//! refused, drop what is gone, and count whether anything changed.

use super::plan::{Plan, Served, plan};
use super::{Entry, Registry};
use crate::ids::PluginName;
use crate::locks::{lock, read, write};
use crate::plugins::loader::{LoadedVersion, VersionError};
use crate::plugins::manifest;
use crate::plugins::scan::{self, Scan, Stamp};
use crate::sandbox::http::AllowList;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::SystemTime;

impl Registry {
    /// Rescan the directory and load every changed plugin; returns how
    /// many plugins changed.
    pub fn refresh(&self) -> usize {
        self.rescan(false)
    }

    /// Rescan, but leave files changed within [`scan::SETTLE`] for a later
    /// call (see [`Registry::has_unsettled`]): what the watcher uses, so
    /// that a file still being written is not loaded (and rejected) half.
    pub fn refresh_settled(&self) -> usize {
        self.rescan(true)
    }

    fn rescan(&self, settle: bool) -> usize {
        // One rescan at a time: two would race on inserts and removals.
        let _one = lock(&self.rescanning);
        let scan = scan::scan(&self.dir);
        self.warn_invalid(&scan);
        let served: HashMap<PluginName, Served> = read(&self.plugins)
            .iter()
            .map(|(name, e)| {
                let path = e.plugin.path.clone();
                (
                    name.clone(),
                    Served {
                        stamp: e.stamp,
                        path,
                    },
                )
            })
            .collect();
        let rejected: HashMap<PathBuf, Stamp> = read(&self.rejected)
            .iter()
            .map(|(path, (stamp, _))| (path.clone(), *stamp))
            .collect();
        let plan = plan(&scan, &served, &rejected, settle, SystemTime::now());
        self.unsettled.store(plan.unsettled, Ordering::Relaxed);
        self.apply(plan, &scan)
    }

    /// Warn once per file about files that name no valid plugin.
    fn warn_invalid(&self, scan: &Scan) {
        let mut warned = lock(&self.warned);
        for (path, why) in &scan.invalid {
            if warned.insert(path.clone()) {
                tracing::warn!(path = %path.display(), "ignoring plugin file: {why}");
            }
        }
    }

    fn apply(&self, plan: Plan, scan: &Scan) -> usize {
        let mut changed = 0;
        let mut refused = plan.reject;
        for (name, path, stamp) in plan.load {
            match self.load_file(&path) {
                Ok(loaded) => {
                    self.serve_file(&name, &path, stamp, loaded);
                    changed += 1;
                }
                Err(error) => {
                    tracing::warn!(plugin = %name, "plugin rejected: {error}");
                    changed += usize::from(self.revoke_if_needed(&name, &path));
                    refused.push((path, stamp, error.to_string()));
                }
            }
        }
        let rejections_changed = self.record_refusals(plan.settled, refused, scan);
        let mut plugins = write(&self.plugins);
        for name in &plan.remove {
            if plugins.remove(name).is_some() {
                tracing::info!(plugin = %name, "plugin file removed; no longer served");
                changed += 1;
            }
        }
        drop(plugins);
        if changed > 0 || rejections_changed {
            self.changed();
        }
        changed
    }

    /// Read the file and its manifest, and load the version.
    fn load_file(&self, path: &Path) -> Result<LoadedVersion, VersionError> {
        let text = manifest::read_text_for(Some(&self.dir), path)?;
        let manifest_path = manifest::path_for(path);
        let manifest = text.as_deref().map(|t| (manifest_path.as_path(), t));
        self.loader.load_file(path, manifest)
    }

    fn serve_file(&self, name: &PluginName, path: &Path, stamp: Stamp, loaded: LoadedVersion) {
        if self.is_pinned(name) {
            tracing::warn!(
                plugin = %name,
                file = %path.display(),
                "a version is pinned through `spool plugins deploy`/`rollback`: it keeps serving instead of this file (`spool plugins unpin {name}` serves the file)"
            );
        }
        let entry = Entry::loaded(name, "plugin", loaded, Some(stamp));
        write(&self.plugins).insert(name.clone(), entry);
        write(&self.rejected).remove(path);
    }

    /// A bad file never replaces a good version, except when the manifest
    /// now takes away a capability the serving version has: then it must
    /// stop serving. Returns whether it stopped.
    fn revoke_if_needed(&self, name: &PluginName, path: &Path) -> bool {
        let (serving_network, serving_http) = read(&self.plugins)
            .get(name)
            .map(|e| (e.caps.network, e.caps.http.clone()))
            .unwrap_or_default();
        // A manifest that no longer grants a host the serving version may
        // call takes the version out too.
        let revoked = manifest::read_for(Some(&self.dir), path).is_ok_and(|m| {
            let network = serving_network && !(self.loader.caps.network || m.capabilities.network);
            let mut now = self.loader.caps.http.rules().to_vec();
            now.extend(m.capabilities.http.rules().iter().cloned());
            network || serving_http.beyond(&AllowList::from_rules(now)).is_some()
        });
        if revoked {
            tracing::warn!(plugin = %name, "network or http capability revoked: no longer served");
            write(&self.plugins).remove(name);
        }
        revoked
    }

    /// Forget complaints about files now serving or gone, record the new
    /// ones; returns whether the list changed.
    fn record_refusals(
        &self,
        settled: Vec<PathBuf>,
        refused: Vec<(PathBuf, Stamp, String)>,
        scan: &Scan,
    ) -> bool {
        let mut rejected = write(&self.rejected);
        let before: Vec<(PathBuf, String)> = rejected
            .iter()
            .map(|(p, (_, why))| (p.clone(), why.clone()))
            .collect();
        for path in settled {
            rejected.remove(&path);
        }
        for (path, stamp, why) in refused {
            rejected.insert(path, (stamp, why));
        }
        rejected.retain(|path, _| scan.mentions(path));
        before.len() != rejected.len()
            || before
                .iter()
                .any(|(p, why)| rejected.get(p).is_none_or(|(_, w)| w != why))
    }
}
