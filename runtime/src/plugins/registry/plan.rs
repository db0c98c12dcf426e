//! What one rescan of the plugins directory must do, decided from the scan
//! and from what is served and rejected now, without reading any plugin:
//! which files to load, which names to drop, which rejections to record
//! or forget. [`super::Registry`] applies it (the part with the I/O).

use crate::ids::PluginName;
use crate::plugins::scan::{Scan, Stamp, is_fresh};
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::SystemTime;

/// A directory plugin served now: the stamp of what it was loaded from
/// (none: inserted or embedded, so no rescan touches it) and its file.
#[derive(Debug, Clone)]
pub(crate) struct Served {
    pub stamp: Option<Stamp>,
    pub path: PathBuf,
}

/// The decisions of one rescan.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Plan {
    /// Files to load, new or changed since they were served or rejected.
    pub load: Vec<(PluginName, PathBuf, Stamp)>,
    /// Files serving as they are: any old complaint about them is moot.
    pub settled: Vec<PathBuf>,
    /// Files rejected without loading (a name defined twice), and why.
    pub reject: Vec<(PathBuf, Stamp, String)>,
    /// Directory plugins whose file is gone: no longer served.
    pub remove: Vec<PluginName>,
    /// A changed file was left for later: it changed within the settle time.
    pub unsettled: bool,
}

/// Plan a rescan. With `settle`, files changed within
/// [`crate::plugins::scan::SETTLE`] of `now` are left for a later rescan
/// (a file still being written is not loaded half).
pub(crate) fn plan(
    scan: &Scan,
    served: &HashMap<PluginName, Served>,
    rejected: &HashMap<PathBuf, Stamp>,
    settle: bool,
    now: SystemTime,
) -> Plan {
    let mut plan = Plan::default();
    for (name, paths) in &scan.conflicts {
        let list: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
        let why = format!(
            "plugin {name} is defined twice ({}): remove one",
            list.join(" and ")
        );
        for path in paths {
            plan.reject
                .push((path.clone(), Stamp::default(), why.clone()));
        }
    }
    for (name, path, stamp) in &scan.found {
        match served.get(name).map(|s| s.stamp) {
            Some(Some(s)) if s == *stamp => {
                plan.settled.push(path.clone());
                continue;
            }
            Some(None) => continue,
            _ => {}
        }
        if rejected.get(path) == Some(stamp) {
            continue;
        }
        if settle && is_fresh(stamp, now) {
            plan.unsettled = true;
            continue;
        }
        plan.load.push((name.clone(), path.clone(), *stamp));
    }
    let mut gone: Vec<PluginName> = served
        .iter()
        .filter(|(name, s)| {
            s.stamp.is_some()
                && !scan.found.iter().any(|(n, _, _)| n == *name)
                // Defined twice: the version serving stays until it is resolved.
                && !scan.conflicts.iter().any(|(n, _)| n == *name)
                // A directory we could not read is not a deletion.
                && !scan.unreadable(&s.path)
        })
        .map(|(name, _)| name.clone())
        .collect();
    gone.sort();
    plan.remove = gone;
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::scan::FileStamp;
    use std::time::Duration;

    fn name(n: &str) -> PluginName {
        PluginName::parse(n).unwrap()
    }

    fn stamp(len: u64, age: Duration, now: SystemTime) -> Stamp {
        [FileStamp::written(len, now - age), FileStamp::default()]
    }

    fn served(stamp: Option<Stamp>, path: &str) -> Served {
        Served {
            stamp,
            path: PathBuf::from(path),
        }
    }

    #[test]
    fn only_new_or_changed_files_are_loaded() {
        let now = SystemTime::now();
        let old = stamp(10, Duration::from_secs(60), now);
        let changed = stamp(11, Duration::from_secs(1), now);
        let scan = Scan {
            found: vec![
                (name("same"), "d/same.wasm".into(), old),
                (name("edited"), "d/edited.wasm".into(), changed),
                (name("new"), "d/new.wasm".into(), old),
            ],
            ..Scan::default()
        };
        let served = HashMap::from([
            (name("same"), served(Some(old), "d/same.wasm")),
            (name("edited"), served(Some(old), "d/edited.wasm")),
        ]);
        let plan = plan(&scan, &served, &HashMap::new(), true, now);
        let loaded: Vec<_> = plan.load.iter().map(|(n, _, _)| n.name.as_str()).collect();
        assert_eq!(loaded, ["edited", "new"]);
        assert_eq!(plan.settled, [PathBuf::from("d/same.wasm")]);
        assert!(plan.remove.is_empty() && plan.reject.is_empty() && !plan.unsettled);
    }

    #[test]
    fn a_file_still_being_written_waits_only_when_settling() {
        let now = SystemTime::now();
        let fresh = stamp(5, Duration::from_millis(10), now);
        let scan = Scan {
            found: vec![(name("x"), "d/x.wasm".into(), fresh)],
            ..Scan::default()
        };
        let settling = plan(&scan, &HashMap::new(), &HashMap::new(), true, now);
        assert!(settling.load.is_empty() && settling.unsettled);
        let periodic = plan(&scan, &HashMap::new(), &HashMap::new(), false, now);
        assert_eq!(periodic.load.len(), 1);
        assert!(!periodic.unsettled);
    }

    #[test]
    fn a_rejected_file_is_retried_only_once_it_changes() {
        let now = SystemTime::now();
        let bad = stamp(3, Duration::from_secs(5), now);
        let mut scan = Scan {
            found: vec![(name("x"), "d/x.wasm".into(), bad)],
            ..Scan::default()
        };
        let rejected = HashMap::from([(PathBuf::from("d/x.wasm"), bad)]);
        assert!(
            plan(&scan, &HashMap::new(), &rejected, true, now)
                .load
                .is_empty()
        );
        scan.found[0].2 = stamp(4, Duration::from_secs(1), now);
        assert_eq!(
            plan(&scan, &HashMap::new(), &rejected, true, now)
                .load
                .len(),
            1
        );
    }

    #[test]
    fn removals_spare_embedded_conflicting_and_unreadable_plugins() {
        let now = SystemTime::now();
        let s = Some(stamp(1, Duration::from_secs(9), now));
        let scan = Scan {
            conflicts: vec![(
                name("twice"),
                vec!["d/twice.wasm".into(), "d/default/twice.wasm".into()],
            )],
            unreadable_dirs: vec!["d/locked".into()],
            ..Scan::default()
        };
        let served = HashMap::from([
            (name("gone"), served(s, "d/gone.wasm")),
            (name("embedded"), served(None, "mem")),
            (name("twice"), served(s, "d/twice.wasm")),
            (name("locked/x"), served(s, "d/locked/x.wasm")),
        ]);
        let plan = plan(&scan, &served, &HashMap::new(), false, now);
        assert_eq!(plan.remove, [name("gone")]);
        assert_eq!(plan.reject.len(), 2);
        assert!(
            plan.reject[0].2.contains("is defined twice"),
            "{}",
            plan.reject[0].2
        );
    }
}
