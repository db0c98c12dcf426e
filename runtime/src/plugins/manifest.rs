//! A plugin's optional manifest, `NAME.toml` beside `NAME.wasm`:
//!
//! ```toml
//! timeout = "5s"          # per-job deadline (default: the worker's --timeout)
//! memory = "128MiB"       # per-job memory cap (default: the worker's --memory)
//!
//! [config]                # values the handler reads with config::get
//! width = 128
//! mode = "fast"
//!
//! [capabilities]          # beyond the always-allowed imports
//! network = false
//!
//! [cache]                 # result cache (used by the result cache; off by default)
//! ttl = "1h"
//!
//! [http]                  # hosts the plugin may call (none by default)
//! allow = ["https://api.example.com", "https://*.s3.amazonaws.com:443"]
//! ```
//!
//! Unknown keys are errors (a typo must not silently do nothing), and every
//! error names the file and the key.

use super::policy::Capabilities;
use crate::config::{parse_duration, parse_size};
use crate::sandbox::http::AllowList;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What a manifest sets. Empty when there is no manifest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Manifest {
    /// Per-job deadline.
    pub timeout: Option<Duration>,
    /// Per-job memory cap in bytes.
    pub memory: Option<u64>,
    /// Config values for `config::get`.
    pub config: BTreeMap<String, String>,
    /// Capabilities granted beyond the defaults.
    pub capabilities: Capabilities,
    /// How long results may be cached; none = not cacheable.
    pub cache_ttl: Option<Duration>,
}

/// A manifest that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("manifest {path}: {reason}")]
pub struct ManifestError {
    /// The manifest file.
    pub path: PathBuf,
    /// What is wrong, naming the key.
    pub reason: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    timeout: Option<String>,
    memory: Option<toml::Value>,
    #[serde(default)]
    config: BTreeMap<String, toml::Value>,
    #[serde(default)]
    capabilities: RawCapabilities,
    cache: Option<RawCache>,
    http: Option<RawHttp>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    allow: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawCapabilities {
    #[serde(default)]
    network: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCache {
    ttl: String,
}

/// Longest `[cache] ttl`.
pub const MAX_CACHE_TTL: Duration = Duration::from_secs(365 * 24 * 3600);

/// The manifest path of the plugin file `wasm` (`x.wasm` → `x.toml`).
pub fn path_for(wasm: &Path) -> PathBuf {
    wasm.with_extension("toml")
}

/// Read the manifest beside `wasm`; an absent file is an empty manifest.
/// `root`: the watched directory it must be read beneath (see
/// [`super::safe_read::read_beneath`]); none for a file the operator names.
pub fn read_for(root: Option<&Path>, wasm: &Path) -> Result<Manifest, ManifestError> {
    match read_text_for(root, wasm)? {
        Some(text) => parse(&path_for(wasm), &text),
        None => Ok(Manifest::default()),
    }
}

/// The text of the manifest beside `wasm`, none when there is no file.
pub fn read_text_for(root: Option<&Path>, wasm: &Path) -> Result<Option<String>, ManifestError> {
    let path = path_for(wasm);
    let read = match root {
        Some(root) => super::safe_read::read_beneath(root, &path, MAX_MANIFEST_BYTES, false),
        None => super::safe_read::read_regular(&path, MAX_MANIFEST_BYTES, false),
    };
    match read {
        Ok((bytes, _)) => match String::from_utf8(bytes) {
            Ok(text) => Ok(Some(text)),
            Err(_) => Err(ManifestError {
                path,
                reason: "not UTF-8 text".into(),
            }),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ManifestError {
            path,
            reason: format!("could not read it: {e}"),
        }),
    }
}

/// Largest manifest read.
pub const MAX_MANIFEST_BYTES: u64 = 64 << 10;

/// `memory`: bytes as a whole number, or a size such as "64MiB".
fn memory_size(value: toml::Value) -> Result<u64, String> {
    match value {
        toml::Value::Integer(n) => {
            u64::try_from(n).map_err(|_| format!("memory: {n} is negative; expected a size"))
        }
        toml::Value::String(s) => parse_size(&s).map_err(|e| format!("memory: {e}")),
        other => Err(format!(
            "memory: expected a size such as \"64MiB\", got a {}",
            other.type_str()
        )),
    }
}

/// `[config]`: each value a string, number or boolean, kept as text.
fn config_values(
    raw: impl IntoIterator<Item = (String, toml::Value)>,
) -> Result<BTreeMap<String, String>, String> {
    let mut config = BTreeMap::new();
    for (key, value) in raw {
        let text = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(n) => n.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            other => {
                return Err(format!(
                    "config.{key}: expected a string, number or boolean, got {}",
                    other.type_str()
                ));
            }
        };
        config.insert(key, text);
    }
    Ok(config)
}

/// Why `text` is not a manifest, without quoting it: a symlinked or
/// misnamed file must not have its contents published in a refusal
/// (workers report refusals to Redis). The line and column, and the
/// parser's message, cut to 200 characters and escaped.
fn toml_reason(e: &toml::de::Error, text: &str) -> String {
    let mut message: String = e.message().trim().chars().take(200).collect();
    message = message.escape_debug().to_string();
    match e.span() {
        Some(span) => {
            let before = &text.as_bytes()[..span.start.min(text.len())];
            let line = before.iter().filter(|b| **b == b'\n').count() + 1;
            let column = before.iter().rev().take_while(|b| **b != b'\n').count() + 1;
            format!("not a valid manifest at line {line}, column {column}: {message}")
        }
        None => format!("not a valid manifest: {message}"),
    }
}

/// Parse manifest `text`; `path` names it in errors.
pub fn parse(path: &Path, text: &str) -> Result<Manifest, ManifestError> {
    let fail = |reason: String| ManifestError {
        path: path.to_path_buf(),
        reason,
    };
    let raw: Raw = toml::from_str(text).map_err(|e| fail(toml_reason(&e, text)))?;
    let timeout = raw
        .timeout
        .map(|t| parse_duration(&t).map_err(|e| fail(format!("timeout: {e}"))))
        .transpose()?;
    let memory = raw.memory.map(memory_size).transpose().map_err(fail)?;
    let config = config_values(raw.config).map_err(fail)?;
    let cache_ttl = raw
        .cache
        .map(|c| parse_duration(&c.ttl).map_err(|e| fail(format!("cache.ttl: {e}"))))
        .transpose()?;
    if let Some(ttl) = cache_ttl
        && ttl > MAX_CACHE_TTL
    {
        return Err(fail(format!(
            "cache.ttl: {} is longer than the longest allowed, 365 days",
            humantime::format_duration(ttl)
        )));
    }
    let http = match raw.http {
        Some(h) => AllowList::parse(&h.allow).map_err(|e| fail(format!("http.allow: {e}")))?,
        None => AllowList::default(),
    };
    Ok(Manifest {
        timeout,
        memory,
        config,
        capabilities: Capabilities {
            network: raw.capabilities.network,
            http,
        },
        cache_ttl,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(text: &str) -> Result<Manifest, ManifestError> {
        parse(Path::new("acme/resize.toml"), text)
    }

    #[test]
    fn every_key_is_read() {
        let m = parse_str(
            "timeout = \"5s\"\nmemory = \"128MiB\"\n[config]\nwidth = 128\nmode = \"fast\"\nsharp = true\n[capabilities]\nnetwork = true\n[cache]\nttl = \"1h\"\n",
        )
        .unwrap();
        assert_eq!(m.timeout, Some(Duration::from_secs(5)));
        assert_eq!(m.memory, Some(128 << 20));
        assert_eq!(m.config["width"], "128");
        assert_eq!(m.config["mode"], "fast");
        assert_eq!(m.config["sharp"], "true");
        assert!(m.capabilities.network);
        assert_eq!(m.cache_ttl, Some(Duration::from_secs(3600)));
        assert_eq!(parse_str("").unwrap(), Manifest::default());
    }

    #[test]
    fn mistakes_name_the_file_and_the_key() {
        let e = parse_str("timeuot = \"5s\"").unwrap_err();
        assert!(
            e.to_string().starts_with("manifest acme/resize.toml: "),
            "{e}"
        );
        assert!(e.reason.contains("timeuot"), "{e}");
        let e = parse_str("timeout = \"soon\"").unwrap_err();
        assert!(e.reason.starts_with("timeout: "), "{e}");
        let e = parse_str("memory = \"lots\"").unwrap_err();
        assert!(e.reason.starts_with("memory: "), "{e}");
        let e = parse_str("[config]\nsizes = [1, 2]").unwrap_err();
        assert!(e.reason.contains("config.sizes"), "{e}");
        let e = parse_str("[capabilities]\nsecrets = true").unwrap_err();
        assert!(e.reason.contains("secrets"), "{e}");
    }
}
