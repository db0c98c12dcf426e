//! Reading a plugin's history: which version serves now, which one a
//! rollback returns to, and which one a digest prefix names. Pure
//! functions over the entries, unit-tested without Redis.

use super::DeployError;
use super::model::{Action, VersionEntry};
use crate::ids::{PluginName, Version};

/// What serves `name` now: the pin, else the newest version loaded from a
/// directory.
pub fn current(pinned: Option<VersionEntry>, history: &[VersionEntry]) -> Option<VersionEntry> {
    pinned.or_else(|| {
        history
            .iter()
            .find(|e| e.action == Action::Directory)
            .cloned()
    })
}

/// The version before `current`. The history is replayed oldest first as a
/// stack: a deploy or a directory version goes on top, a rollback to X
/// takes off what is above X. The answer is the nearest other version below
/// `current`'s place. So a rollback never returns to a version that was
/// rolled back from, and rolling back again walks further back.
pub(super) fn previous(history: &[VersionEntry], current: &Version) -> Option<VersionEntry> {
    let mut stack: Vec<&VersionEntry> = Vec::new();
    for e in history.iter().rev() {
        if e.action == Action::Rollback
            && let Some(at) = stack.iter().rposition(|s| s.digest == e.digest)
        {
            stack.truncate(at + 1);
            continue;
        }
        if stack.last().is_none_or(|top| top.digest != e.digest) {
            stack.push(e);
        }
    }
    let at = stack.iter().rposition(|e| e.digest == *current)?;
    stack[..at]
        .iter()
        .rev()
        .find(|e| e.digest != *current)
        .map(|e| (*e).clone())
}

/// The entry whose digest starts with `prefix`.
pub(super) fn pick(
    name: &PluginName,
    history: &[VersionEntry],
    prefix: &str,
) -> Result<VersionEntry, DeployError> {
    let prefix = prefix.to_ascii_lowercase();
    let matches: Vec<&VersionEntry> = history
        .iter()
        .filter(|e| !prefix.is_empty() && e.digest.as_str().starts_with(&prefix))
        .collect();
    let distinct: std::collections::BTreeSet<&str> =
        matches.iter().map(|e| e.digest.as_str()).collect();
    match distinct.len() {
        0 => Err(DeployError::UnknownVersion {
            name: name.to_string(),
            digest: prefix,
        }),
        1 => Ok(matches[0].clone()),
        n => Err(DeployError::AmbiguousVersion {
            name: name.to_string(),
            digest: prefix,
            matches: n,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(digest: &str) -> Version {
        Version::from_hex(digest)
    }

    fn entry(digest: &str, action: Action) -> VersionEntry {
        VersionEntry {
            digest: Version::from_hex(digest),
            size: 1,
            sdk: None,
            manifest: None,
            at_us: 0,
            action,
            by: "t".into(),
        }
    }

    #[test]
    fn repeated_rollbacks_walk_back_through_the_history() {
        use Action::*;
        // Newest first: C deployed after B after A; then rolled back to B.
        let mut history = vec![
            entry("c", Deploy),
            entry("b", Deploy),
            entry("a", Directory),
        ];
        assert_eq!(previous(&history, &v("c")).unwrap().digest.as_str(), "b");
        history.insert(0, entry("b", Rollback));
        assert_eq!(previous(&history, &v("b")).unwrap().digest.as_str(), "a");
        history.insert(0, entry("a", Rollback));
        assert!(previous(&history, &v("a")).is_none());
    }

    #[test]
    fn a_rollback_never_returns_to_a_version_rolled_back_from() {
        use Action::*;
        // A, B (bad), back to A, C (bad): the version before C is A.
        let history = vec![
            entry("c", Deploy),
            entry("a", Rollback),
            entry("b", Deploy),
            entry("a", Deploy),
        ];
        assert_eq!(previous(&history, &v("c")).unwrap().digest.as_str(), "a");
        assert!(previous(&history, &v("a")).is_none());
    }

    #[test]
    fn without_a_pin_the_newest_directory_version_is_current() {
        use Action::*;
        let history = vec![entry("x", Deploy), entry("d", Directory)];
        assert_eq!(current(None, &history).unwrap().digest.as_str(), "d");
        let pin = entry("x", Deploy);
        assert_eq!(current(Some(pin), &history).unwrap().digest.as_str(), "x");
    }

    #[test]
    fn a_digest_prefix_must_name_one_version() {
        let name = PluginName::parse("acme/resize").unwrap();
        let history = vec![
            entry("abc1", Action::Deploy),
            entry("abc2", Action::Deploy),
            entry("abc1", Action::Rollback),
        ];
        assert_eq!(
            pick(&name, &history, "ABC1").unwrap().digest.as_str(),
            "abc1"
        );
        assert!(matches!(
            pick(&name, &history, "abc"),
            Err(DeployError::AmbiguousVersion { matches: 2, .. })
        ));
        assert!(matches!(
            pick(&name, &history, "f"),
            Err(DeployError::UnknownVersion { .. })
        ));
    }
}
