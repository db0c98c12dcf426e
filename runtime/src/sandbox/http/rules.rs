//! The hosts a plugin may call: `[http] allow` in its manifest.
//!
//! A rule is a scheme, a host and an optional port, nothing else:
//!
//! | rule | matches |
//! |---|---|
//! | `https://api.example.com` | that host, port 443 only |
//! | `https://api.example.com:8443` | that host, port 8443 only |
//! | `https://*.example.com` | any subdomain (`a.example.com`, `a.b.example.com`), not `example.com` itself |
//! | `http://127.0.0.1:*` | that address, any port |
//! | `https://*` | any host, port 443 |
//!
//! A path, query, user name or anything else in a rule is an error that
//! says so, never silently dropped: a rule that looks narrower than it is
//! (`https://api.example.com/v1`) would grant more than its author meant.
//! Host names compare case-insensitively, without a trailing dot.

use std::fmt;

/// One `[http] allow` rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowRule {
    /// `http` or `https`.
    scheme: String,
    host: HostPattern,
    /// None: any port.
    port: Option<u16>,
    /// The rule as written, for messages.
    text: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    /// Exactly this host (lowercase, an IP literal without brackets).
    Exact(String),
    /// A subdomain of this one: `*.example.com` holds `example.com`.
    Below(String),
    /// `*`: any host.
    Any,
}

/// Why a rule cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("http rule {rule:?}: {reason}")]
pub struct RuleError {
    /// The rule as written.
    pub rule: String,
    /// What is wrong and what was expected.
    pub reason: String,
}

/// Most rules in one list: each request is compared with every rule.
pub const MAX_RULES: usize = 256;

impl AllowRule {
    /// Parse one rule such as `https://*.example.com:443`.
    pub fn parse(text: &str) -> Result<Self, RuleError> {
        let fail = |reason: &str| RuleError {
            rule: text.to_string(),
            reason: format!(
                "{reason}; expected SCHEME://HOST[:PORT], e.g. \"https://api.example.com\" or \"https://*.example.com:8443\""
            ),
        };
        let (scheme, rest) = text.split_once("://").ok_or_else(|| fail("no scheme"))?;
        let scheme = scheme.to_ascii_lowercase();
        if scheme != "http" && scheme != "https" {
            return Err(fail(&format!("scheme {scheme:?} is not http or https")));
        }
        if let Some(c) = rest.chars().find(|c| matches!(c, '/' | '?' | '#' | '@')) {
            let what = match c {
                '/' => "a path",
                '@' => "a user name",
                _ => "a query or fragment",
            };
            return Err(fail(&format!(
                "it has {what}, and rules name hosts, not URLs"
            )));
        }
        let (host, port) = split_port(rest).map_err(|r| fail(&r))?;
        let port = match port {
            None => Some(default_port(&scheme)),
            Some("*") => None,
            Some(p) => Some(
                p.parse::<u16>()
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| fail(&format!("port {p:?} is not 1-65535 or *")))?,
            ),
        };
        let host = parse_host(host).map_err(|r| fail(&r))?;
        Ok(AllowRule {
            scheme,
            host,
            port,
            text: text.to_string(),
        })
    }

    /// Whether a request to `scheme://host:port` is allowed by this rule.
    /// `host` as the URL has it (case and a trailing dot do not matter).
    pub fn allows(&self, scheme: &str, host: &str, port: u16) -> bool {
        self.scheme.eq_ignore_ascii_case(scheme)
            && self.port.is_none_or(|p| p == port)
            && self.host_matches(&normal_host(host))
    }

    fn host_matches(&self, host: &str) -> bool {
        match &self.host {
            HostPattern::Any => true,
            HostPattern::Exact(h) => h == host,
            HostPattern::Below(suffix) => host
                .strip_suffix(suffix.as_str())
                .and_then(|head| head.strip_suffix('.'))
                .is_some_and(|head| !head.is_empty()),
        }
    }

    /// Whether everything this rule allows, `ceiling` allows too (an
    /// operator's per-tenant ceiling bounds what a manifest may grant).
    pub fn within(&self, ceiling: &AllowRule) -> bool {
        if self.scheme != ceiling.scheme || (ceiling.port.is_some() && ceiling.port != self.port) {
            return false;
        }
        match (&self.host, &ceiling.host) {
            (_, HostPattern::Any) => true,
            (HostPattern::Exact(h), _) => ceiling.host_matches(h),
            // `*.eu.example.com` is within `*.example.com`: every host it
            // covers ends in `.example.com`.
            (HostPattern::Below(s), HostPattern::Below(_)) => {
                s == c_suffix(ceiling) || ceiling.host_matches(s)
            }
            _ => false,
        }
    }
}

fn c_suffix(rule: &AllowRule) -> &str {
    match &rule.host {
        HostPattern::Below(s) | HostPattern::Exact(s) => s,
        HostPattern::Any => "",
    }
}

impl fmt::Display for AllowRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// A plugin's rules: a request is allowed when any rule allows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList {
    rules: Vec<AllowRule>,
}

impl AllowList {
    /// Parse every rule; the first bad one is the error.
    pub fn parse<S: AsRef<str>>(rules: &[S]) -> Result<Self, RuleError> {
        if rules.len() > MAX_RULES {
            return Err(RuleError {
                rule: format!("({} rules)", rules.len()),
                reason: format!("at most {MAX_RULES} rules per list"),
            });
        }
        let rules = rules
            .iter()
            .map(|r| AllowRule::parse(r.as_ref()))
            .collect::<Result<_, _>>()?;
        Ok(AllowList { rules })
    }

    /// A list of parsed rules.
    pub fn from_rules(rules: Vec<AllowRule>) -> Self {
        AllowList { rules }
    }

    /// No rule: nothing is allowed.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The rules, as written.
    pub fn rules(&self) -> &[AllowRule] {
        &self.rules
    }

    /// Whether any rule allows `scheme://host:port`.
    pub fn allows(&self, scheme: &str, host: &str, port: u16) -> bool {
        self.rules.iter().any(|r| r.allows(scheme, host, port))
    }

    /// Whether a rule that names this very host (not `*` or `*.domain`)
    /// allows `scheme://host:port`.
    pub fn names(&self, scheme: &str, host: &str, port: u16) -> bool {
        self.rules
            .iter()
            .any(|r| matches!(r.host, HostPattern::Exact(_)) && r.allows(scheme, host, port))
    }

    /// The first rule of this list that `ceiling` does not cover.
    pub fn beyond<'a>(&'a self, ceiling: &AllowList) -> Option<&'a AllowRule> {
        self.rules
            .iter()
            .find(|r| !ceiling.rules.iter().any(|c| r.within(c)))
    }
}

impl fmt::Display for AllowList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (i, r) in self.rules.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{:?}", r.text)?;
        }
        f.write_str("]")
    }
}

/// The port a URL without one uses.
pub fn default_port(scheme: &str) -> u16 {
    if scheme.eq_ignore_ascii_case("https") {
        443
    } else {
        80
    }
}

/// `host[:port]` (IPv6 in brackets) into host and port text.
fn split_port(rest: &str) -> Result<(&str, Option<&str>), String> {
    if let Some(inner) = rest.strip_prefix('[') {
        let (host, after) = inner
            .split_once(']')
            .ok_or("an IPv6 address without its closing ]")?;
        return match after {
            "" => Ok((host, None)),
            p => p
                .strip_prefix(':')
                .map(|p| (host, Some(p)))
                .ok_or_else(|| format!("{p:?} after the IPv6 address")),
        };
    }
    Ok(match rest.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (rest, None),
    })
}

fn parse_host(host: &str) -> Result<HostPattern, String> {
    if host == "*" {
        return Ok(HostPattern::Any);
    }
    let (below, name) = match host.strip_prefix("*.") {
        Some(name) => (true, name),
        None => (false, host),
    };
    let name = normal_host(name);
    if name.is_empty() {
        return Err("no host".into());
    }
    if name.contains('*') {
        return Err("a * may only stand alone or open the host as \"*.\"".into());
    }
    let ip = name.parse::<std::net::IpAddr>().is_ok();
    if below && ip {
        return Err("\"*.\" before an IP address".into());
    }
    if !ip
        && !name
            .split('.')
            .all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
    {
        return Err(format!(
            "host {name:?} is not a host name (letters, digits, '-' and '.'; punycode for others)"
        ));
    }
    Ok(if below {
        HostPattern::Below(name)
    } else {
        HostPattern::Exact(name)
    })
}

/// Lowercase, no trailing dot, no IPv6 brackets.
fn normal_host(host: &str) -> String {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.trim_end_matches('.').to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(s: &str) -> AllowRule {
        AllowRule::parse(s).unwrap()
    }

    #[test]
    fn a_rule_allows_its_host_on_its_port_only() {
        let r = rule("https://api.example.com");
        assert!(r.allows("https", "api.example.com", 443));
        assert!(r.allows("HTTPS", "API.Example.COM.", 443));
        assert!(!r.allows("https", "api.example.com", 8443));
        assert!(!r.allows("http", "api.example.com", 443));
        assert!(!r.allows("https", "evil-api.example.com", 443));
        assert!(!r.allows("https", "api.example.com.evil.net", 443));
        let any_port = rule("http://127.0.0.1:*");
        assert!(any_port.allows("http", "127.0.0.1", 9));
        assert!(!any_port.allows("http", "127.0.0.2", 9));
        let v6 = rule("http://[::1]:8080");
        assert!(v6.allows("http", "[::1]", 8080));
    }

    #[test]
    fn a_wildcard_covers_subdomains_not_the_domain_or_lookalikes() {
        let r = rule("https://*.s3.amazonaws.com:443");
        assert!(r.allows("https", "bucket.s3.amazonaws.com", 443));
        assert!(r.allows("https", "a.b.s3.amazonaws.com", 443));
        assert!(!r.allows("https", "s3.amazonaws.com", 443));
        assert!(!r.allows("https", "evils3.amazonaws.com", 443));
        assert!(!r.allows("https", "s3.amazonaws.com.evil.net", 443));
        assert!(rule("https://*").allows("https", "anything.example", 443));
        assert!(!rule("https://*").allows("https", "anything.example", 80));
    }

    #[test]
    fn a_rule_with_more_than_a_host_is_refused_naming_what_is_wrong() {
        for (bad, says) in [
            ("api.example.com", "no scheme"),
            ("ftp://example.com", "not http or https"),
            ("https://example.com/v1", "a path"),
            ("https://example.com?x=1", "a query"),
            ("https://user@example.com", "a user name"),
            ("https://example.com:0", "not 1-65535"),
            ("https://example.com:http", "not 1-65535"),
            ("https://ex*ample.com", "may only stand alone"),
            ("https://*.10.0.0.1", "before an IP"),
            ("https://", "no host"),
            ("https://exa mple.com", "not a host name"),
        ] {
            let e = AllowRule::parse(bad).unwrap_err();
            assert_eq!(e.rule, bad);
            assert!(e.reason.contains(says), "{bad}: {}", e.reason);
            assert!(e.reason.contains("expected SCHEME://HOST"), "{bad}");
        }
    }

    #[test]
    fn a_ceiling_bounds_what_a_list_may_grant() {
        let ceiling = AllowList::parse(&["https://*.example.com", "http://10.0.0.5:*"]).unwrap();
        let inside = AllowList::parse(&[
            "https://api.example.com",
            "https://*.eu.example.com",
            "http://10.0.0.5:81",
        ])
        .unwrap();
        assert_eq!(inside.beyond(&ceiling), None);
        for outside in [
            "https://example.com",
            "https://api.example.com:8443",
            "http://api.example.com",
            "https://*",
            "https://*.com",
            "http://10.0.0.6:81",
        ] {
            let list = AllowList::parse(&[outside]).unwrap();
            assert!(list.beyond(&ceiling).is_some(), "{outside}");
        }
    }
}
