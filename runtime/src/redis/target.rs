//! What a `--redis` value names: one server, or the seed nodes of a Redis
//! Cluster. `redis://h1:7000,h2:7001,h3:7002` lists seeds (the scheme and
//! credentials of the first apply to all); a single URL is asked whether
//! it is a cluster node when it is opened ([`super::AsyncRedis::open`]), so
//! pointing Spool at any node of a cluster is enough.

use super::{RedisError, redact};

/// The parsed `--redis` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// One URL: a standalone server, or a cluster node (found out on
    /// connect).
    One(String),
    /// Several seed nodes of one cluster, each a full URL.
    Seeds(Vec<String>),
}

impl Target {
    /// Parse `url`. A comma-separated list needs a host in every entry;
    /// the error names the entry and what was expected.
    pub fn parse(url: &str) -> Result<Target, RedisError> {
        let url = url.trim();
        let bad = |reason: String| RedisError::BadUrl {
            url: redact(url),
            reason,
        };
        // Credentials may hold commas: only the part after the last `@`
        // lists nodes.
        let (head, hosts) = match url.rsplit_once('@') {
            Some((auth, hosts)) => (format!("{auth}@"), hosts),
            None => match url.split_once("://") {
                Some((scheme, hosts)) => (format!("{scheme}://"), hosts),
                None => (String::new(), url),
            },
        };
        if !hosts.contains(',') {
            return Ok(Target::One(url.to_string()));
        }
        if !head.contains("://") {
            return Err(bad(
                "a list of cluster nodes needs a scheme, e.g. redis://".into()
            ));
        }
        let mut seeds = Vec::new();
        for host in hosts.split(',').map(str::trim) {
            if host.is_empty() || host.contains(['/', '?', '@']) {
                return Err(bad(format!(
                    "cluster node {host:?} must be HOST:PORT (credentials go before the first node; a cluster has no database number or options here)"
                )));
            }
            seeds.push(format!("{head}{host}"));
        }
        Ok(Target::Seeds(seeds))
    }
}

/// Whether an `INFO cluster` reply says the server runs in cluster mode.
pub(crate) fn says_cluster(info: &str) -> bool {
    info.lines().any(|l| l.trim() == "cluster_enabled:1")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_url_stays_one() {
        assert_eq!(
            Target::parse("redis://127.0.0.1:6379/2").unwrap(),
            Target::One("redis://127.0.0.1:6379/2".into())
        );
    }

    #[test]
    fn a_list_is_seed_nodes_sharing_the_first_ones_credentials() {
        assert_eq!(
            Target::parse("redis://:pw@h1:7000,h2:7001, h3:7002").unwrap(),
            Target::Seeds(vec![
                "redis://:pw@h1:7000".into(),
                "redis://:pw@h2:7001".into(),
                "redis://:pw@h3:7002".into(),
            ])
        );
        assert_eq!(
            Target::parse("rediss://a:1,b:2").unwrap(),
            Target::Seeds(vec!["rediss://a:1".into(), "rediss://b:2".into()])
        );
    }

    #[test]
    fn a_bad_list_says_which_entry() {
        for (url, names) in [
            ("h1:7000,h2:7001", "scheme"),
            ("redis://h1:7000,", "\"\""),
            ("redis://,h2:1", "\"\""),
            ("redis://:p@h1:7000/2,h2:7001", "h1:7000/2"),
        ] {
            let err = Target::parse(url).unwrap_err().to_string();
            assert!(err.contains(names), "{url}: {err}");
            assert!(!err.contains(":p@"), "{err} leaks a password");
        }
    }

    #[test]
    fn a_comma_in_a_password_is_not_a_list() {
        assert_eq!(
            Target::parse("redis://:a,b@h:6379").unwrap(),
            Target::One("redis://:a,b@h:6379".into())
        );
        assert_eq!(
            Target::parse("redis://:a,b@h1:1,h2:2").unwrap(),
            Target::Seeds(vec!["redis://:a,b@h1:1".into(), "redis://:a,b@h2:2".into()])
        );
    }

    #[test]
    fn cluster_mode_is_read_from_info() {
        assert!(says_cluster("# Cluster\r\ncluster_enabled:1\r\n"));
        assert!(!says_cluster("# Cluster\r\ncluster_enabled:0\r\n"));
    }
}
