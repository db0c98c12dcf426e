//! Small shared ids: a plugin's name, a plugin version's digest, and the
//! clock every record is stamped with. Imports no other Spool module, so
//! every layer can use them without depending on any other.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The tenant a plugin name without a `/` belongs to.
pub const DEFAULT_TENANT: &str = "default";

/// A tenant name as plugin names allow it (1–64 of `[A-Za-z0-9_.-]`, not
/// starting with `.`); the error names the value.
pub fn check_tenant(tenant: &str) -> Result<(), String> {
    PluginName::parse(&format!("{tenant}/x"))
        .map(|_| ())
        .map_err(|_| {
            format!(
                "tenant {:?}: expected 1-64 of [A-Za-z0-9_.-], not starting with '.'",
                tenant.escape_debug().to_string()
            )
        })
}

/// A plugin's full name: `tenant/name`. `name` alone means tenant `default`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct PluginName {
    /// The owning tenant.
    pub tenant: String,
    /// The plugin within the tenant.
    pub name: String,
}

/// A plugin name that is not `name` or `tenant/name`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid plugin name {name:?}: {reason}")]
pub struct NameError {
    /// The name as given.
    pub name: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl PluginName {
    /// Parse `name` or `tenant/name`. Both parts are 1–64 characters of
    /// `[A-Za-z0-9_.-]`, so they are safe in Redis keys and file paths.
    pub fn parse(text: &str) -> Result<Self, NameError> {
        let bad = |reason| NameError {
            name: text.to_string(),
            reason,
        };
        let (tenant, name) = text.split_once('/').unwrap_or((DEFAULT_TENANT, text));
        for part in [tenant, name] {
            if part.is_empty() || part.len() > 64 {
                return Err(bad("expected NAME or TENANT/NAME, each 1-64 characters"));
            }
            if !part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
                || part.starts_with('.')
            {
                return Err(bad(
                    "only letters, digits, '_', '-' and '.' are allowed (not leading '.')",
                ));
            }
        }
        Ok(PluginName {
            tenant: tenant.to_string(),
            name: name.to_string(),
        })
    }
}

impl fmt::Display for PluginName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.tenant, self.name)
    }
}

/// A plugin version: the blake3 digest of the component bytes, in lowercase
/// hex. Stored and shown as that string, so records, pins and cache keys
/// written before this type existed read back as is; read from JSON (a pin,
/// a history entry, a worker's report in Redis) it must be 64 lowercase hex
/// digits, so a hand-written or corrupted entry is refused as unreadable,
/// never taken for a version.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Version(String);

impl TryFrom<String> for Version {
    type Error = String;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        if text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            Ok(Version(text))
        } else {
            Err(format!(
                "{:?} is not a version (expected 64 lowercase hex digits)",
                text.chars().take(80).collect::<String>()
            ))
        }
    }
}

impl From<Version> for String {
    fn from(version: Version) -> Self {
        version.0
    }
}

impl Version {
    /// Digest `bytes`: the one place the recipe lives.
    pub fn of(bytes: &[u8]) -> Self {
        Version(blake3::hash(bytes).to_hex().to_string())
    }

    /// A digest as stored (in Redis, a record, an artifact file name); not
    /// checked: a wrong one simply names no version.
    pub fn from_hex(hex: impl Into<String>) -> Self {
        Version(hex.into())
    }

    /// A digest given by a person (`--version`): 64 hex digits, any case.
    pub fn parse_hex(text: &str) -> Option<Self> {
        (text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| Version(text.to_ascii_lowercase()))
    }

    /// The whole digest, hex.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first 12 hex digits, enough to tell versions apart in logs.
    pub fn short(&self) -> &str {
        // `from_hex` takes any text: never cut inside a character.
        self.0.get(..12).unwrap_or(&self.0)
    }

    /// Whether `bytes` are the bytes of this version.
    pub fn matches(&self, bytes: &[u8]) -> bool {
        blake3::hash(bytes).to_hex().as_str() == self.0
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Microseconds since the Unix epoch, by this machine's clock.
pub fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_name_belongs_to_the_default_tenant() {
        let name = PluginName::parse("resize").unwrap();
        assert_eq!(
            (name.tenant.as_str(), name.name.as_str()),
            ("default", "resize")
        );
        assert_eq!(
            PluginName::parse("acme/resize").unwrap().to_string(),
            "acme/resize"
        );
        for bad in ["", "a/", "/b", "a/b/c", ".hidden", "a b", &"x".repeat(65)] {
            assert!(PluginName::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn a_version_is_the_blake3_hex_of_the_bytes() {
        let v = Version::of(b"abc");
        assert_eq!(v.as_str(), blake3::hash(b"abc").to_hex().as_str());
        assert_eq!(v.short().len(), 12);
        assert!(v.matches(b"abc") && !v.matches(b"abd"));
        assert_eq!(serde_json::to_string(&v).unwrap(), format!("\"{v}\""));
        let back: Version = serde_json::from_str(&format!("\"{v}\"")).unwrap();
        assert_eq!(back, v);
    }

    #[test]
    fn a_digest_read_from_json_must_be_64_lowercase_hex_digits() {
        for bad in ["", "abc", &"A".repeat(64), &"é".repeat(32), &"0".repeat(65)] {
            let json = serde_json::to_string(bad).unwrap();
            let read = serde_json::from_str::<Version>(&json);
            assert!(read.is_err(), "{bad:?} was read as a version");
        }
        // Unchecked digests (artifact names, stored records) never panic.
        let odd = format!("a{}", "é".repeat(6)); // byte 12 is inside an "é"
        assert_eq!(Version::from_hex(odd.clone()).short(), odd);
        assert_eq!(Version::from_hex("ab").short(), "ab");
    }
}
