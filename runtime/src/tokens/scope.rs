//! What a token may do ([`Scope`]) and for whom ([`Tenants`]).

use std::fmt;
use std::str::FromStr;

/// One kind of access. A route names the scope it needs; a token carries
/// a set of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// Enqueue and cancel jobs.
    Submit,
    /// Read records, wait for results, list dead letters, stats.
    Read,
    /// Deploy, roll back and unpin plugins.
    Deploy,
    /// Retry and purge dead letters, purge the cache, set limits.
    Admin,
}

impl Scope {
    /// Every scope, in the order they are shown.
    pub const ALL: [Scope; 4] = [Scope::Submit, Scope::Read, Scope::Deploy, Scope::Admin];

    /// The name used on the command line and in Redis.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Submit => "submit",
            Scope::Read => "read",
            Scope::Deploy => "deploy",
            Scope::Admin => "admin",
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Scope {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        Scope::ALL
            .into_iter()
            .find(|s| s.as_str() == text)
            .ok_or_else(|| {
                format!("unknown scope {text:?}: expected submit, read, deploy or admin")
            })
    }
}

/// A comma-separated list of scopes (`submit,read`), each once.
pub fn parse_scopes(text: &str) -> Result<Vec<Scope>, String> {
    let mut scopes = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let scope: Scope = part.parse()?;
        if !scopes.contains(&scope) {
            scopes.push(scope);
        }
    }
    if scopes.is_empty() {
        return Err(format!(
            "no scope in {text:?}: expected a list such as submit,read"
        ));
    }
    scopes.sort();
    Ok(scopes)
}

/// Whose jobs, plugins and settings a token reaches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tenants {
    /// One tenant's.
    One(String),
    /// Every tenant's: an operator's token (`--all-tenants`).
    All,
}

impl Tenants {
    /// Whether `tenant`'s things are within reach.
    pub fn reaches(&self, tenant: &str) -> bool {
        match self {
            Tenants::One(t) => t == tenant,
            Tenants::All => true,
        }
    }

    /// As stored: the tenant's name, or `*` for every tenant (`*` is no
    /// tenant name: names are checked by `PluginName`).
    pub fn stored(&self) -> &str {
        match self {
            Tenants::One(t) => t,
            Tenants::All => "*",
        }
    }

    /// The stored form read back.
    pub fn from_stored(text: &str) -> Self {
        if text == "*" {
            Tenants::All
        } else {
            Tenants::One(text.to_string())
        }
    }
}

impl fmt::Display for Tenants {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tenants::One(t) => f.write_str(t),
            Tenants::All => f.write_str("all tenants"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_parse_once_each_in_order() {
        assert_eq!(
            parse_scopes("read, submit,read"),
            Ok(vec![Scope::Submit, Scope::Read])
        );
        assert!(parse_scopes("").unwrap_err().contains("no scope"));
        assert!(parse_scopes("read,root").unwrap_err().contains("\"root\""));
    }

    #[test]
    fn a_tenant_token_reaches_only_its_tenant() {
        assert!(Tenants::One("acme".into()).reaches("acme"));
        assert!(!Tenants::One("acme".into()).reaches("beta"));
        assert!(Tenants::All.reaches("beta"));
        assert_eq!(Tenants::from_stored("*"), Tenants::All);
    }
}
