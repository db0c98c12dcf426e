//! The tenants' limits in Redis: one hash of fleet defaults and one hash
//! of overrides per tenant, field = [`Limit::name`], value = a decimal
//! number (`0`: no limit). Both live in the `{tenants}` slot; readers fetch
//! them in one pipeline and pass the numbers into the scripts that enforce
//! them, so no script crosses a slot.

use super::limits::{HTTP_ALLOW_FIELD, Limit, Limits, Source};
use std::collections::HashMap;

/// Whose limits to change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The fleet's defaults, for every tenant without its own value.
    Defaults,
    /// One tenant.
    Tenant(String),
}

/// The Redis keys of the tenants' limits under one prefix.
#[derive(Debug, Clone)]
pub struct TenantStore {
    prefix: String,
}

type Fields = HashMap<String, String>;

impl TenantStore {
    /// Keys under `prefix` (e.g. `spool`).
    pub fn new(prefix: &str) -> Self {
        TenantStore {
            prefix: prefix.to_string(),
        }
    }

    /// The hash that holds `target`'s values.
    pub fn key(&self, target: &Target) -> String {
        match target {
            Target::Defaults => format!("{}:{{tenants}}:defaults", self.prefix),
            Target::Tenant(t) => format!("{}:{{tenants}}:t:{t}", self.prefix),
        }
    }

    /// One pipeline: the defaults, then each tenant's overrides.
    fn read_pipe(&self, tenants: &[&str]) -> redis::Pipeline {
        let mut pipe = redis::pipe();
        // A key of the wrong type answers an error in its place instead of
        // failing the whole read.
        pipe.ignore_errors();
        pipe.hgetall(self.key(&Target::Defaults));
        for t in tenants {
            pipe.hgetall(self.key(&Target::Tenant((*t).to_string())));
        }
        pipe
    }

    /// The fleet's defaults (the built-in values where the fleet sets none).
    pub fn read_defaults(&self, conn: &mut crate::redis::SyncConn) -> redis::RedisResult<Limits> {
        let replies = self.read_pipe(&[]).query(conn);
        Ok(effective_all(replies, 0)?.0)
    }

    /// The effective limits of each of `tenants`, in one round trip.
    pub fn read(
        &self,
        conn: &mut crate::redis::SyncConn,
        tenants: &[&str],
    ) -> redis::RedisResult<Vec<Limits>> {
        let replies = self.read_pipe(tenants).query(conn);
        effective(replies, tenants.len())
    }

    /// [`TenantStore::read`] on an async connection.
    pub async fn read_async(
        &self,
        conn: &mut impl redis::aio::ConnectionLike,
        tenants: &[&str],
    ) -> redis::RedisResult<Vec<Limits>> {
        let replies = self.read_pipe(tenants).query_async(conn).await;
        effective(replies, tenants.len())
    }

    /// Set `target`'s `http-allow` ceiling to `rules` (empty: no host at
    /// all), or remove it (`None`: the fleet's, or no ceiling).
    pub fn set_http_allow(
        &self,
        conn: &mut crate::redis::SyncConn,
        target: &Target,
        rules: Option<&[String]>,
    ) -> redis::RedisResult<()> {
        let key = self.key(target);
        match rules {
            Some(rules) => redis::cmd("HSET")
                .arg(key)
                .arg(HTTP_ALLOW_FIELD)
                .arg(serde_json::to_string(rules).unwrap_or_else(|_| "[]".into()))
                .query(conn),
            None => redis::cmd("HDEL")
                .arg(key)
                .arg(HTTP_ALLOW_FIELD)
                .query(conn),
        }
    }

    /// Set `limit` of `target` to `value`, or remove it (`None`: the
    /// tenant falls back to the fleet default, the fleet to the built-in).
    pub fn set(
        &self,
        conn: &mut crate::redis::SyncConn,
        target: &Target,
        limit: Limit,
        value: Option<u64>,
    ) -> redis::RedisResult<()> {
        let key = self.key(target);
        match value {
            Some(v) => redis::cmd("HSET")
                .arg(key)
                .arg(limit.name())
                .arg(v)
                .query(conn),
            None => redis::cmd("HDEL").arg(key).arg(limit.name()).query(conn),
        }
    }
}

/// Limits from the replies: built-in values, overridden by the fleet's,
/// overridden by the tenant's. A hash of the wrong type or a value that is
/// not a number (written by hand) is skipped with a warning: enforcement
/// goes on with the level below.
fn effective(
    replies: redis::RedisResult<Vec<redis::Value>>,
    n: usize,
) -> redis::RedisResult<Vec<Limits>> {
    Ok(effective_all(replies, n)?.1)
}

/// The fleet's limits and each tenant's (`n` of them).
fn effective_all(
    replies: redis::RedisResult<Vec<redis::Value>>,
    n: usize,
) -> redis::RedisResult<(Limits, Vec<Limits>)> {
    let replies = replies?;
    let mut hashes = replies
        .into_iter()
        .map(|v| match redis::from_redis_value::<Fields>(v) {
            Ok(fields) => fields,
            Err(e) => {
                tracing::warn!(
                    "tenant limits in Redis are not a hash of numbers ({e}); using the defaults"
                );
                Fields::new()
            }
        });
    let fleet = hashes.next().unwrap_or_default();
    let mut base = Limits::default();
    apply(&mut base, &fleet, Source::Fleet);
    let mut out: Vec<Limits> = hashes
        .map(|tenant| {
            let mut limits = base.clone();
            apply(&mut limits, &tenant, Source::Tenant);
            limits
        })
        .collect();
    out.resize(n, base.clone());
    Ok((base, out))
}

fn apply(limits: &mut Limits, fields: &Fields, source: Source) {
    for (name, value) in fields {
        if name == HTTP_ALLOW_FIELD {
            match serde_json::from_str::<Vec<String>>(value) {
                Ok(rules) => limits.http_allow = Some((rules, source)),
                Err(e) => {
                    // A bound that cannot be read bounds to nothing.
                    tracing::warn!(
                        value = %value.escape_debug(),
                        "malformed http-allow ceiling in Redis ({e}); expected a JSON array of rules: no host allowed"
                    );
                    limits.http_allow = Some((Vec::new(), source));
                }
            }
            continue;
        }
        match (Limit::named(name), value.trim().parse::<u64>()) {
            (Some(limit), Ok(v)) => limits.set(limit, v, source),
            _ => tracing::warn!(
                field = %name.escape_debug(),
                value = %value.escape_debug(),
                "ignoring an unknown or malformed tenant limit in Redis"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(pairs: &[(&str, &str)]) -> redis::Value {
        redis::Value::Map(
            pairs
                .iter()
                .map(|(k, v)| {
                    (
                        redis::Value::BulkString(k.as_bytes().to_vec()),
                        redis::Value::BulkString(v.as_bytes().to_vec()),
                    )
                })
                .collect(),
        )
    }

    #[test]
    fn tenant_values_override_fleet_values_override_built_ins() {
        let replies = vec![
            hash(&[("kv-bytes", "1000"), ("max-attempts", "3")]),
            hash(&[("kv-bytes", "50"), ("bogus", "1"), ("kv-keys", "many")]),
            hash(&[]),
        ];
        let limits = effective(Ok(replies), 2).unwrap();
        assert_eq!(limits[0].get(Limit::KvBytes), 50);
        assert_eq!(limits[0].source(Limit::KvBytes), Source::Tenant);
        assert_eq!(limits[0].get(Limit::MaxAttempts), 3);
        assert_eq!(limits[0].source(Limit::MaxAttempts), Source::Fleet);
        // The malformed value falls back to the level below.
        assert_eq!(limits[0].get(Limit::KvKeys), Limit::KvKeys.builtin());
        assert_eq!(limits[1].get(Limit::KvBytes), 1000);
        assert_eq!(limits[1].source(Limit::KvWrites), Source::BuiltIn);
    }

    #[test]
    fn a_reply_that_is_not_a_hash_means_defaults() {
        let replies = vec![redis::Value::Int(7), hash(&[("kv-keys", "9")])];
        let limits = effective(Ok(replies), 1).unwrap();
        assert_eq!(limits[0].get(Limit::KvKeys), 9);
        assert_eq!(limits[0].get(Limit::KvBytes), Limit::KvBytes.builtin());
    }
}
