//! The cache key: what makes two jobs "the same work".
//!
//! A blake3 hash, in key-derivation mode with the context
//! `"spool result cache v1"`, over these fields in this order, each written
//! as its length (8 bytes, little-endian) and then its bytes:
//!
//! 1. the WIT world version (`spool:job@0.1.0`): a new contract misses;
//! 2. the tenant and 3. the plugin name: each entry belongs to one plugin of
//!    one tenant, so a key names one entry;
//! 4. the plugin version digest (hex): a new plugin version misses;
//! 5. the content type;
//! 6. the number of config values (8 bytes, little-endian), then each key
//!    and value in key order: other settings miss;
//! 7. the input bytes.
//!
//! The tenant, plugin and version are also parts of the Redis key around the
//! hash, so that purges can name a tenant, plugin or version.

use crate::ids::Version;
use std::collections::BTreeMap;

/// The version of the WIT package the key includes (`wit/job.wit`).
pub const WORLD: &str = "spool:job@0.1.0";

const CONTEXT: &str = "spool result cache v1";

/// Everything that names one cache entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EntryKey {
    /// The tenant (the Redis hash tag).
    pub tenant: String,
    /// The plugin name within the tenant.
    pub plugin: String,
    /// The plugin version digest.
    pub version: Version,
    /// The hash of the work (see the module docs).
    pub hash: String,
}

impl EntryKey {
    /// The key of running version `version` of `tenant/plugin` on `input`
    /// of `content_type` with `config`.
    pub fn new(
        tenant: &str,
        plugin: &str,
        version: &Version,
        content_type: &str,
        config: &BTreeMap<String, String>,
        input: &[u8],
    ) -> Self {
        let mut h = blake3::Hasher::new_derive_key(CONTEXT);
        let mut field = |bytes: &[u8]| {
            h.update(&(bytes.len() as u64).to_le_bytes());
            h.update(bytes);
        };
        field(WORLD.as_bytes());
        field(tenant.as_bytes());
        field(plugin.as_bytes());
        field(version.as_str().as_bytes());
        field(content_type.as_bytes());
        h.update(&(config.len() as u64).to_le_bytes());
        for (k, v) in config {
            h.update(&(k.len() as u64).to_le_bytes());
            h.update(k.as_bytes());
            h.update(&(v.len() as u64).to_le_bytes());
            h.update(v.as_bytes());
        }
        h.update(&(input.len() as u64).to_le_bytes());
        h.update(input);
        EntryKey {
            tenant: tenant.to_string(),
            plugin: plugin.to_string(),
            version: version.clone(),
            hash: h.finalize().to_hex().to_string(),
        }
    }

    /// `tenant/plugin`.
    pub fn plugin_name(&self) -> String {
        format!("{}/{}", self.tenant, self.plugin)
    }

    /// `PREFIX:{cache:TENANT}:KIND:PLUGIN:VERSION:HASH`; `r` for results,
    /// `l` for the single-flight locks.
    pub fn redis_key(&self, prefix: &str, kind: char) -> String {
        format!(
            "{prefix}:{{cache:{}}}:{kind}:{}:{}:{}",
            self.tenant, self.plugin, self.version, self.hash
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(content_type: &str, config: &[(&str, &str)], input: &[u8]) -> String {
        let config = config
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        EntryKey::new(
            "acme",
            "resize",
            &Version::from_hex("v1"),
            content_type,
            &config,
            input,
        )
        .hash
    }

    #[test]
    fn every_field_changes_the_key_and_fields_cannot_run_together() {
        let base = key("image/png", &[("w", "1")], b"abc");
        assert_eq!(base, key("image/png", &[("w", "1")], b"abc"));
        assert_ne!(base, key("image/jpeg", &[("w", "1")], b"abc"));
        assert_ne!(base, key("image/png", &[("w", "2")], b"abc"));
        assert_ne!(base, key("image/png", &[], b"abc"));
        assert_ne!(base, key("image/png", &[("w", "1")], b"abd"));
        // Lengths frame every field: moving bytes between fields changes it.
        assert_ne!(key("a", &[("b", "")], b""), key("ab", &[], b""));
        let config = BTreeMap::new();
        let v = |hex: &str| Version::from_hex(hex);
        let hash = |t: &str, p: &str| EntryKey::new(t, p, &v("v"), "x", &config, b"").hash;
        assert_ne!(hash("acme", "resize"), hash("beta", "resize"));
        assert_ne!(hash("acme", "resize"), hash("acme", "crop"));
        assert_ne!(
            EntryKey::new("t", "p", &v("v1"), "x", &config, b"").hash,
            EntryKey::new("t", "p", &v("v2"), "x", &config, b"").hash
        );
    }

    /// The recipe in docs/cache.md, transcribed byte by byte: a change of the
    /// code's framing fails the first assertion, a change of blake3 or of
    /// both recipes together fails the pinned literal (every cached entry
    /// would silently miss after such a change).
    #[test]
    fn the_key_is_the_documented_recipe() {
        // Each field: its length as 8 bytes little-endian, then its bytes.
        fn field(out: &mut Vec<u8>, bytes: &[u8]) {
            out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
            out.extend_from_slice(bytes);
        }
        let version = "0".repeat(64);
        let config = BTreeMap::from([("w".to_string(), "1".to_string())]);
        let key = EntryKey::new(
            "acme",
            "resize",
            &Version::from_hex(version.clone()),
            "image/png",
            &config,
            b"abc",
        );

        let mut framed = Vec::new();
        field(&mut framed, b"spool:job@0.1.0");
        field(&mut framed, b"acme");
        field(&mut framed, b"resize");
        field(&mut framed, version.as_bytes());
        field(&mut framed, b"image/png");
        framed.extend_from_slice(&1u64.to_le_bytes()); // one config value
        field(&mut framed, b"w");
        field(&mut framed, b"1");
        field(&mut framed, b"abc");
        let expected = blake3::Hasher::new_derive_key("spool result cache v1")
            .update(&framed)
            .finalize();

        assert_eq!(key.hash, expected.to_hex().as_str());
        assert_eq!(
            key.hash,
            "91c42fa9831435ce4d47ffc08515d006f9f2ce6d194fee2e4acd49092f340bfa"
        );
    }
}
