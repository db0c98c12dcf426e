//! Purges: delete exactly the entries a scope names, in Redis (a `SCAN`
//! over the matching keys) and, through an event every worker follows, in
//! the workers' memory.

use super::key::EntryKey;
use crate::ids::Version;
use serde::{Deserialize, Serialize};

/// Which entries a purge removes: all the given conditions hold.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scope {
    /// Entries of this tenant.
    pub tenant: Option<String>,
    /// Entries of this plugin (within `tenant`, which it sets).
    pub plugin: Option<String>,
    /// Entries of this plugin version digest.
    pub version: Option<Version>,
    /// The entry with this key hash.
    pub key: Option<String>,
}

impl Scope {
    /// The scope that names these (each checked; `plugin` is
    /// `tenant/name` or `name` of tenant `default`). An error names the
    /// field at fault (`flag` before it in the message: `--` on the
    /// command line) and says what was expected.
    pub fn parse(
        plugin: Option<String>,
        version: Option<String>,
        tenant: Option<String>,
        key: Option<String>,
        flag: &str,
    ) -> Result<Scope, (&'static str, String)> {
        let hex64 = |what: &'static str, v: &str| {
            Version::parse_hex(v).ok_or_else(|| {
                (
                    what,
                    format!("{flag}{what} {v:?}: expected 64 hex digits (as job records show it)"),
                )
            })
        };
        if let Some(t) = &tenant {
            crate::ids::check_tenant(t).map_err(|_| {
                (
                    "tenant",
                    format!(
                        "{flag}tenant {t:?}: expected 1-64 of [A-Za-z0-9_.-], not starting with '.'"
                    ),
                )
            })?;
        }
        let mut scope = Scope {
            tenant,
            version: version.map(|v| hex64("version", &v)).transpose()?,
            key: key
                .map(|k| hex64("key", &k).map(|v| v.as_str().to_string()))
                .transpose()?,
            plugin: None,
        };
        if let Some(plugin) = plugin {
            let name =
                crate::ids::PluginName::parse(&plugin).map_err(|e| ("plugin", e.to_string()))?;
            if scope.tenant.as_ref().is_some_and(|t| *t != name.tenant) {
                return Err((
                    "plugin",
                    format!(
                        "{flag}plugin {name} is not in {flag}tenant {}",
                        scope.tenant.as_deref().unwrap_or_default()
                    ),
                ));
            }
            scope.tenant = Some(name.tenant);
            scope.plugin = Some(name.name);
        }
        Ok(scope)
    }

    /// Whether the scope names nothing (it would purge everything).
    pub fn is_everything(&self) -> bool {
        *self == Scope::default()
    }

    /// Whether `key` is in the scope.
    pub fn matches(&self, key: &EntryKey) -> bool {
        self.tenant.as_ref().is_none_or(|t| *t == key.tenant)
            && self.plugin.as_ref().is_none_or(|p| *p == key.plugin)
            && self.version.as_ref().is_none_or(|v| *v == key.version)
            && self.key.as_ref().is_none_or(|h| *h == key.hash)
    }

    /// The `SCAN MATCH` pattern of the result keys in the scope under
    /// `prefix` (every entry it matches is checked with [`Scope::matches`]).
    pub fn pattern(&self, prefix: &str) -> String {
        let part = |v: &Option<String>| v.as_deref().map_or_else(|| "*".to_string(), glob_escape);
        format!(
            "{}:{{cache:{}}}:r:{}:{}:{}",
            glob_escape(prefix),
            part(&self.tenant),
            part(&self.plugin),
            part(&self.version.as_ref().map(|v| v.as_str().to_string())),
            part(&self.key)
        )
    }

    /// A scope's description for messages: `plugin acme/resize, version …`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        match (&self.tenant, &self.plugin) {
            (Some(t), Some(p)) => parts.push(format!("plugin {t}/{p}")),
            (Some(t), None) => parts.push(format!("tenant {t}")),
            (None, Some(p)) => parts.push(format!("plugin {p} of any tenant")),
            (None, None) => {}
        }
        if let Some(v) = &self.version {
            parts.push(format!("version {v}"));
        }
        if let Some(k) = &self.key {
            parts.push(format!("key {k}"));
        }
        if parts.is_empty() {
            "every entry".to_string()
        } else {
            parts.join(", ")
        }
    }
}

/// The entry named by the result key `key` under `prefix`, if it is one.
pub fn parse_key(prefix: &str, key: &str) -> Option<EntryKey> {
    let rest = key.strip_prefix(prefix)?.strip_prefix(":{cache:")?;
    let (tenant, rest) = rest.split_once("}:r:")?;
    let mut parts = rest.splitn(3, ':');
    let (plugin, version, hash) = (parts.next()?, parts.next()?, parts.next()?);
    Some(EntryKey {
        tenant: tenant.to_string(),
        plugin: plugin.to_string(),
        version: Version::from_hex(version),
        hash: hash.to_string(),
    })
}

fn glob_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Delete the result entries `scope` names under `prefix`; `progress` gets
/// the number of keys scanned and deleted so far. Returns the number
/// deleted. Workers drop the same entries from memory when they see the
/// purge event (see `spool cache purge`).
pub fn purge(
    redis: &crate::redis::SyncRedis,
    prefix: &str,
    scope: &Scope,
    mut progress: impl FnMut(u64, u64),
) -> redis::RedisResult<u64> {
    let (mut scanned, mut deleted) = (0u64, 0u64);
    let forget = crate::redis::script_with_prelude(
        crate::redis::ledger::LUA,
        include_str!("lua/forget.lua"),
    );
    scan(redis, &scope.pattern(prefix), |keys| {
        scanned += keys.len() as u64;
        // Per tenant, in one script with its ledger (one slot each): the
        // quota the entries took is given back with them.
        let mut doomed: std::collections::BTreeMap<String, Vec<&String>> = Default::default();
        for key in &keys {
            if let Some(entry) = parse_key(prefix, key).filter(|e| scope.matches(e)) {
                doomed.entry(entry.tenant).or_default().push(key);
            }
        }
        for (tenant, entries) in doomed {
            let n: u64 = redis.with_connection(|c| {
                forget
                    .key(super::ledger_base(prefix, &tenant))
                    .key(&entries)
                    .invoke(c)
            })?;
            deleted += n;
        }
        progress(scanned, deleted);
        Ok(())
    })?;
    Ok(deleted)
}

/// Every key matching `pattern`, a batch (one `SCAN` call) at a time, on
/// every master of a cluster.
pub(crate) fn scan(
    redis: &crate::redis::SyncRedis,
    pattern: &str,
    each: impl FnMut(Vec<String>) -> redis::RedisResult<()>,
) -> redis::RedisResult<()> {
    redis.scan(pattern, 1000, each)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(tenant: &str, plugin: &str, version: &str, hash: &str) -> EntryKey {
        EntryKey {
            tenant: tenant.into(),
            plugin: plugin.into(),
            version: Version::from_hex(version),
            hash: hash.into(),
        }
    }

    #[test]
    fn scopes_match_only_what_they_name() {
        let k = key("acme", "resize", "v1", "h1");
        assert!(Scope::default().matches(&k));
        let plugin = Scope {
            tenant: Some("acme".into()),
            plugin: Some("resize".into()),
            ..Scope::default()
        };
        assert!(plugin.matches(&k));
        assert!(!plugin.matches(&key("beta", "resize", "v1", "h1")));
        assert!(!plugin.matches(&key("acme", "crop", "v1", "h1")));
        let version = Scope {
            version: Some(Version::from_hex("v2")),
            ..Scope::default()
        };
        assert!(!version.matches(&k));
    }

    #[test]
    fn keys_round_trip_and_patterns_escape_globs() {
        let k = key("acme", "resize", "v1", "h1");
        let redis_key = k.redis_key("spool", 'r');
        assert_eq!(parse_key("spool", &redis_key), Some(k));
        assert_eq!(parse_key("spool", "spool:{cache:acme}:l:a:b:c"), None);
        let scope = Scope {
            tenant: Some("acme".into()),
            ..Scope::default()
        };
        assert_eq!(scope.pattern("sp*ol"), "sp\\*ol:{cache:acme}:r:*:*:*");
    }
}
