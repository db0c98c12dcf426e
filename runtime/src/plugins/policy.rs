//! Which imports a plugin may have. Checked at load time, so a plugin that
//! reaches for a capability its tenant may not use is rejected with the
//! import's name instead of failing mid-job.

use crate::sandbox::http::AllowList;

/// Capabilities a plugin may import beyond the always-allowed set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// `wasi:sockets/*`. Even when allowed, the sandbox permits no address
    /// yet: the import links, every connect is refused.
    pub network: bool,
    /// The hosts the plugin may call over `wasi:http` (`[http] allow`);
    /// empty: the import is refused.
    pub http: AllowList,
}

/// How an import is judged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Allowed.
    Allowed,
    /// The host provides it, but this plugin's capabilities exclude it.
    Forbidden(&'static str),
    /// The host does not provide it at all.
    Unknown,
}

/// Interfaces every plugin may import. They are harmless with the empty
/// WASI context the sandbox gives each job (no preopens, no env, captured
/// stdio), and Rust's std imports most of them whatever the handler does.
const ALWAYS: &[&str] = &[
    "spool:job/",
    "wasi:cli/",
    "wasi:io/",
    "wasi:clocks/",
    "wasi:random/",
    "wasi:filesystem/",
];

/// Judge one import name such as `wasi:sockets/tcp@0.2.6`.
pub fn judge(import: &str, caps: &Capabilities) -> Verdict {
    if ALWAYS.iter().any(|prefix| import.starts_with(prefix)) {
        return Verdict::Allowed;
    }
    if import.starts_with("wasi:http/outgoing-handler") || import.starts_with("wasi:http/types") {
        return if caps.http.is_empty() {
            Verdict::Forbidden(
                "outbound HTTP is not granted to this plugin: list the hosts it may call in its manifest, [http] allow = [\"https://api.example.com\"]",
            )
        } else {
            Verdict::Allowed
        };
    }
    if import.starts_with("wasi:sockets/") {
        return if caps.network {
            Verdict::Allowed
        } else {
            Verdict::Forbidden("network access (wasi:sockets) is not granted to this plugin")
        };
    }
    Verdict::Unknown
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockets_need_the_network_capability() {
        let none = Capabilities::default();
        let net = Capabilities {
            network: true,
            ..Capabilities::default()
        };
        assert!(matches!(
            judge("wasi:sockets/tcp@0.2.6", &none),
            Verdict::Forbidden(_)
        ));
        assert_eq!(judge("wasi:sockets/tcp@0.2.6", &net), Verdict::Allowed);
        assert_eq!(judge("wasi:cli/stdout@0.2.0", &none), Verdict::Allowed);
        assert_eq!(
            judge("wasi:http/incoming-handler@0.2.0", &net),
            Verdict::Unknown
        );
    }

    #[test]
    fn http_needs_an_allow_list() {
        let none = Capabilities {
            network: true,
            ..Capabilities::default()
        };
        let Verdict::Forbidden(why) = judge("wasi:http/outgoing-handler@0.2.12", &none) else {
            panic!("allowed without a grant");
        };
        assert!(why.contains("[http] allow"), "{why}");
        let granted = Capabilities {
            http: AllowList::parse(&["https://api.example.com"]).unwrap(),
            ..Capabilities::default()
        };
        assert_eq!(
            judge("wasi:http/outgoing-handler@0.2.12", &granted),
            Verdict::Allowed
        );
        assert_eq!(judge("wasi:http/types@0.2.4", &granted), Verdict::Allowed);
    }
}
