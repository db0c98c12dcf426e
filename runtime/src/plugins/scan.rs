//! The directory scan behind [`super::registry::Registry`]: which plugin
//! files are there, with what identity, and which of them conflict.
//! `DIR/NAME.wasm` is `default/NAME`, `DIR/TENANT/NAME.wasm` is
//! `TENANT/NAME` ([`plugin_name`]).

use super::manifest;
use crate::ids::{NameError, PluginName};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// What tells a changed plugin: its file's and its manifest's identity.
pub(crate) type Stamp = [FileStamp; 2];

/// Size, times and identity of one file: a file replaced by another with
/// the same size and modification time (`cp -p`, `rsync -a`, tar) still
/// has another inode and change time; a `chmod` changes the change time,
/// so a file rejected as unreadable is tried again.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct FileStamp {
    len: u64,
    modified: Option<SystemTime>,
    dev: u64,
    ino: u64,
    ctime_ns: i128,
}

impl FileStamp {
    pub(crate) fn of(meta: &std::fs::Metadata) -> Self {
        use std::os::unix::fs::MetadataExt;
        FileStamp {
            len: meta.len(),
            modified: meta.modified().ok(),
            dev: meta.dev(),
            ino: meta.ino(),
            ctime_ns: i128::from(meta.ctime()) * 1_000_000_000 + i128::from(meta.ctime_nsec()),
        }
    }

    /// A stamp of a file of `len` bytes last written at `modified` (for
    /// tests of decisions made on stamps).
    #[cfg(test)]
    pub(crate) fn written(len: u64, modified: SystemTime) -> Self {
        FileStamp {
            len,
            modified: Some(modified),
            ..FileStamp::default()
        }
    }
}

/// A file changed less than this long ago may still be being written: it
/// is loaded at a recheck once it has been left alone this long.
pub const SETTLE: Duration = Duration::from_millis(100);

/// Whether the plugin file or its manifest changed within [`SETTLE`] of
/// `now`.
pub(crate) fn is_fresh(stamp: &Stamp, now: SystemTime) -> bool {
    stamp.iter().any(|f| {
        f.modified
            .and_then(|m| now.duration_since(m).ok())
            .is_some_and(|age| age < SETTLE)
    })
}

/// What a directory scan found.
#[derive(Debug, Default)]
pub(crate) struct Scan {
    /// `(name, path, stamp)` of every usable `.wasm` file.
    pub found: Vec<(PluginName, PathBuf, Stamp)>,
    /// Names defined by more than one file, with those files.
    pub conflicts: Vec<(PluginName, Vec<PathBuf>)>,
    /// Files ignored, and why.
    pub invalid: Vec<(PathBuf, String)>,
    /// Directories that exist but could not be read (not a deletion).
    pub unreadable_dirs: Vec<PathBuf>,
}

impl Scan {
    /// Whether `path` lies in a directory that could not be read (so its
    /// absence from the scan is no deletion).
    pub fn unreadable(&self, path: &Path) -> bool {
        self.unreadable_dirs.iter().any(|d| path.starts_with(d))
    }

    /// Whether the scan saw `path`: found, in a conflict, or unreadable.
    pub fn mentions(&self, path: &Path) -> bool {
        self.found.iter().any(|(_, p, _)| p == path)
            || self
                .conflicts
                .iter()
                .any(|(_, ps)| ps.iter().any(|p| p == path))
            || self.unreadable(path)
    }
}

/// Every `.wasm` file one or two levels down.
pub(crate) fn scan(dir: &Path) -> Scan {
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
        // A tenant folder is a real directory: a symlinked one could list
        // (and name in refusals) files outside the plugins directory.
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
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

/// The plugin a file serves: `TENANT/STEM` in a tenant's folder, `STEM`
/// (tenant `default`) at the top.
pub fn plugin_name(tenant: Option<&str>, stem: &str) -> Result<PluginName, NameError> {
    match tenant {
        Some(tenant) => PluginName::parse(&format!("{tenant}/{stem}")),
        None => PluginName::parse(stem),
    }
}

/// The file that serves `name` in `dir` (the inverse of [`plugin_name`]).
pub fn file_for(dir: &Path, name: &PluginName) -> PathBuf {
    let file = format!("{}.wasm", name.name);
    if name.tenant == crate::ids::DEFAULT_TENANT {
        dir.join(file)
    } else {
        dir.join(&name.tenant).join(file)
    }
}

fn push(scan: &mut Scan, tenant: Option<&str>, path: PathBuf) {
    if path.extension().and_then(|e| e.to_str()) != Some("wasm") {
        return;
    }
    let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else {
        return;
    };
    let name = match plugin_name(tenant, stem) {
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
