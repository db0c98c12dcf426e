//! What the fleet serves, gathered from the workers' reports and the pins:
//! one row per (plugin, source, version), for `spool plugins list` and
//! `GET /v1/plugins`.

use super::model::{VersionEntry, WorkerStatus};
use crate::ids::PluginName;
use std::collections::BTreeMap;

/// One version of one plugin and the workers serving it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Served {
    /// `tenant/name`.
    pub name: String,
    /// The version digest.
    pub version: String,
    /// The SDK that built it, when it says.
    pub sdk: Option<String>,
    /// `deployed`, `directory` or `embedded`.
    pub source: String,
    /// The workers serving it (none yet for a fresh pin).
    pub workers: Vec<String>,
    /// When the last of them loaded it (µs since the epoch; 0 if none has).
    pub loaded_us: u64,
}

/// A row per (plugin, source, version) served, plus pinned versions no
/// worker serves yet; sorted by name.
pub fn served(
    workers: &[WorkerStatus],
    pinned: &BTreeMap<PluginName, VersionEntry>,
) -> Vec<Served> {
    let mut rows: BTreeMap<(String, String, String), Served> = BTreeMap::new();
    for w in workers {
        for p in &w.plugins {
            let row = rows
                .entry((p.name.clone(), p.source.clone(), p.version.to_string()))
                .or_insert_with(|| Served {
                    name: p.name.clone(),
                    version: p.version.to_string(),
                    sdk: p.sdk.clone(),
                    source: p.source.clone(),
                    workers: Vec::new(),
                    loaded_us: 0,
                });
            row.workers.push(w.worker.clone());
            row.loaded_us = row.loaded_us.max(p.loaded_us);
        }
    }
    for (name, entry) in pinned {
        let key = (
            name.to_string(),
            "deployed".to_string(),
            entry.digest.to_string(),
        );
        rows.entry(key).or_insert_with(|| Served {
            name: name.to_string(),
            version: entry.digest.to_string(),
            sdk: entry.sdk.clone(),
            source: "deployed".into(),
            workers: Vec::new(),
            loaded_us: 0,
        });
    }
    rows.into_values().collect()
}

/// The tenant a refusal is about: `redis:TENANT/NAME@DIGEST` for a
/// deployed version, else the file's folder under the worker's `dir`
/// (`DIR/TENANT/NAME.wasm`; a file at the top is tenant `default`'s).
pub fn refusal_tenant(dir: &str, path: &str) -> Option<String> {
    if let Some(rest) = path.strip_prefix("redis:") {
        let name = rest.split('@').next()?;
        return PluginName::parse(name).ok().map(|n| n.tenant);
    }
    let rel = std::path::Path::new(path)
        .strip_prefix(dir)
        .ok()?
        .to_str()?
        .to_string();
    match rel.split_once('/') {
        Some((tenant, _)) => Some(tenant.to_string()),
        None => Some(crate::ids::DEFAULT_TENANT.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::refusal_tenant;

    #[test]
    fn a_refusal_names_its_tenant_by_folder_or_store_name() {
        let t = |dir, path| refusal_tenant(dir, path);
        assert_eq!(t("/p", "redis:acme/resize@ab12").as_deref(), Some("acme"));
        assert_eq!(t("/p", "redis:resize@ab12").as_deref(), Some("default"));
        assert_eq!(t("/p", "/p/acme/resize.wasm").as_deref(), Some("acme"));
        assert_eq!(t("/p", "/p/resize.wasm").as_deref(), Some("default"));
        assert_eq!(t("/p", "/elsewhere/acme/x.wasm"), None);
        assert_eq!(t("/p", "redis:bad name@x"), None);
    }
}
