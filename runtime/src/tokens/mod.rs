//! Tenant tokens: what `spool serve` checks on every request, so that a
//! client needs no Redis credentials and reaches only its tenant.
//!
//! A token is `spool_ID_SECRET`: `ID` (12 hex digits) names it in lists and
//! revocations, `SECRET` (64 hex digits, 256 random bits from the OS) is
//! shown once, at creation. Redis keeps only the blake3 hash of the secret,
//! with the token's tenant, scopes, name, creation, expiry and last use, in
//! `PREFIX:{tokens}:t:ID`; `PREFIX:{tokens}:all` lists the ids. Someone who
//! reads Redis learns no usable token; a guessed id without its secret is
//! worth nothing, and hashes are compared in constant time.
//!
//! - [`scope`]: the scopes ([`Scope`]) and reach ([`Tenants`]) of a token.

pub mod scope;

pub use scope::{Scope, Tenants, parse_scopes};

use crate::redis::{AsyncRedis, RedisError};
use redis::AsyncCommands;
use std::collections::HashMap;
use std::time::Duration;

/// A token's last use is written at most this often (a busy client must
/// not turn every request into a write).
const TOUCH_EVERY_US: u64 = 60_000_000;

/// A token's settings and history, as `spool tokens list` shows them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TokenInfo {
    /// The public part of the token: `spool_ID_…`.
    pub id: String,
    /// Whose things it reaches.
    #[serde(serialize_with = "tenants_text")]
    pub tenants: Tenants,
    /// What it may do.
    #[serde(serialize_with = "scopes_text")]
    pub scopes: Vec<Scope>,
    /// What its creator called it (`--name`).
    pub name: String,
    /// When it was made (µs since the epoch).
    pub created_us: u64,
    /// When it stops working, if ever.
    pub expires_us: Option<u64>,
    /// When it was last used (to within a minute), if ever.
    pub last_used_us: Option<u64>,
}

fn tenants_text<S: serde::Serializer>(t: &Tenants, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(t.stored())
}

fn scopes_text<S: serde::Serializer>(scopes: &[Scope], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(scopes.iter().map(|x| x.as_str()))
}

impl TokenInfo {
    /// Whether it may do `scope` to `tenant`'s things.
    pub fn allows(&self, scope: Scope, tenant: &str) -> bool {
        self.scopes.contains(&scope) && self.tenants.reaches(tenant)
    }
}

/// Why a token was not accepted, or a token operation failed.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// Not of the form `spool_ID_SECRET`.
    #[error("malformed token: expected spool_ followed by 12 and 64 hex digits")]
    Malformed,
    /// No such token (never made, or revoked), or the secret is wrong.
    #[error("unknown or revoked token {id}")]
    Unknown {
        /// The token's id.
        id: String,
    },
    /// Past its expiry.
    #[error("token {id} expired")]
    Expired {
        /// The token's id.
        id: String,
    },
    /// A token's settings are not valid (at creation).
    #[error("invalid token settings: {reason}")]
    Invalid {
        /// What is wrong.
        reason: String,
    },
    /// The OS gave no random bytes.
    #[error("no random bytes for a token: {reason}; retrying can help")]
    Random {
        /// The OS's error.
        reason: String,
    },
    /// Redis failed.
    #[error(transparent)]
    Redis(#[from] RedisError),
}

/// What a new token is for.
#[derive(Debug, Clone)]
pub struct NewToken {
    /// Whose things it reaches.
    pub tenants: Tenants,
    /// What it may do.
    pub scopes: Vec<Scope>,
    /// A name for people (`ci`, `alice`).
    pub name: String,
    /// How long it works; none: until revoked.
    pub expires_in: Option<Duration>,
}

/// The tokens of one Spool installation (one key prefix).
#[derive(Debug, Clone)]
pub struct TokenStore {
    redis: AsyncRedis,
    prefix: String,
}

impl TokenStore {
    /// Tokens under `prefix` (e.g. `spool`) in `redis`.
    pub fn new(redis: AsyncRedis, prefix: &str) -> Self {
        TokenStore {
            redis,
            prefix: prefix.to_string(),
        }
    }

    fn key(&self, id: &str) -> String {
        format!("{}:{{tokens}}:t:{id}", self.prefix)
    }

    fn index(&self) -> String {
        format!("{}:{{tokens}}:all", self.prefix)
    }

    /// Make a token; returns it (the only time its secret is seen) and its
    /// settings.
    pub async fn create(&self, new: &NewToken) -> Result<(String, TokenInfo), TokenError> {
        if let Tenants::One(t) = &new.tenants {
            crate::ids::PluginName::parse(&format!("{t}/x")).map_err(|e| TokenError::Invalid {
                reason: format!("tenant {t:?}: {e}"),
            })?;
        }
        if new.scopes.is_empty() {
            return Err(TokenError::Invalid {
                reason: "no scope: expected at least one of submit, read, deploy, admin".into(),
            });
        }
        let bytes = random_bytes()?;
        let id = hex(&bytes[..6]);
        let secret = hex(&bytes[6..]);
        let now = crate::ids::now_us();
        let info = TokenInfo {
            id: id.clone(),
            tenants: new.tenants.clone(),
            scopes: new.scopes.clone(),
            name: new.name.clone(),
            created_us: now,
            expires_us: new
                .expires_in
                .map(|d| now.saturating_add(u64::try_from(d.as_micros()).unwrap_or(u64::MAX))),
            last_used_us: None,
        };
        let scopes: Vec<&str> = info.scopes.iter().map(|s| s.as_str()).collect();
        let mut fields = vec![
            ("hash", blake3::hash(secret.as_bytes()).to_hex().to_string()),
            ("tenant", info.tenants.stored().to_string()),
            ("scopes", scopes.join(",")),
            ("name", info.name.clone()),
            ("created_us", now.to_string()),
        ];
        if let Some(at) = info.expires_us {
            fields.push(("expires_us", at.to_string()));
        }
        let mut conn = self.redis.conn();
        let () = redis::pipe()
            .atomic()
            .hset_multiple(self.key(&id), &fields)
            .ignore()
            .sadd(self.index(), &id)
            .ignore()
            .query_async(&mut conn)
            .await
            .map_err(|e| self.redis.error("create token", e))?;
        Ok((format!("spool_{id}_{secret}"), info))
    }

    /// Every token, oldest first.
    pub async fn list(&self) -> Result<Vec<TokenInfo>, TokenError> {
        let mut conn = self.redis.conn();
        let ids: Vec<String> = conn
            .smembers(self.index())
            .await
            .map_err(|e| self.redis.error("list tokens", e))?;
        let mut pipe = redis::pipe();
        for id in &ids {
            pipe.hgetall(self.key(id));
        }
        let hashes: Vec<HashMap<String, String>> = pipe
            .query_async(&mut conn)
            .await
            .map_err(|e| self.redis.error("list tokens", e))?;
        let mut out: Vec<TokenInfo> = ids
            .iter()
            .zip(hashes)
            .filter_map(|(id, h)| info_from(id, &h))
            .collect();
        out.sort_by_key(|t| (t.created_us, t.id.clone()));
        Ok(out)
    }

    /// Revoke token `id` (the `ID` of `spool_ID_…`, or the whole token);
    /// whether it existed.
    pub async fn revoke(&self, id: &str) -> Result<bool, TokenError> {
        let id = parse(id).map_or(id, |(id, _)| id);
        let mut conn = self.redis.conn();
        let (deleted,): (u64,) = redis::pipe()
            .atomic()
            .del(self.key(id))
            .srem(self.index(), id)
            .ignore()
            .query_async(&mut conn)
            .await
            .map_err(|e| self.redis.error("revoke token", e))?;
        Ok(deleted > 0)
    }

    /// The settings of `token` if it is valid now; its last use is noted.
    pub async fn authenticate(&self, token: &str) -> Result<TokenInfo, TokenError> {
        let (id, secret) = parse(token).ok_or(TokenError::Malformed)?;
        let unknown = || TokenError::Unknown { id: id.to_string() };
        let mut conn = self.redis.conn();
        let h: HashMap<String, String> = conn
            .hgetall(self.key(id))
            .await
            .map_err(|e| self.redis.error("read token", e))?;
        let stored = h
            .get("hash")
            .and_then(|x| blake3::Hash::from_hex(x).ok())
            .ok_or_else(unknown)?;
        // blake3::Hash compares in constant time.
        if stored != blake3::hash(secret.as_bytes()) {
            return Err(unknown());
        }
        let info = info_from(id, &h).ok_or_else(unknown)?;
        let now = crate::ids::now_us();
        if info.expires_us.is_some_and(|at| at <= now) {
            return Err(TokenError::Expired { id: id.to_string() });
        }
        if info
            .last_used_us
            .is_none_or(|at| now.saturating_sub(at) >= TOUCH_EVERY_US)
        {
            // Best effort: a lost write only dates the last use.
            let _: Result<(), _> = conn.hset(self.key(id), "last_used_us", now).await;
        }
        Ok(info)
    }
}

/// `(id, secret)` of `spool_ID_SECRET`.
fn parse(token: &str) -> Option<(&str, &str)> {
    let rest = token.strip_prefix("spool_")?;
    let (id, secret) = rest.split_once('_')?;
    let hex_of = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    (hex_of(id, 12) && hex_of(secret, 64)).then_some((id, secret))
}

/// A token's settings as stored; none (the token is refused) when a field
/// that limits it cannot be read: a damaged expiry must not mean "never",
/// nor a damaged tenant someone else's.
fn info_from(id: &str, h: &HashMap<String, String>) -> Option<TokenInfo> {
    let num = |k: &str| h.get(k).and_then(|v| v.parse::<u64>().ok());
    if h.contains_key("expires_us") && num("expires_us").is_none() {
        return None;
    }
    let tenant = h.get("tenant")?;
    if tenant != "*" && crate::ids::PluginName::parse(&format!("{tenant}/x")).is_err() {
        return None;
    }
    Some(TokenInfo {
        id: id.to_string(),
        tenants: Tenants::from_stored(tenant),
        scopes: parse_scopes(h.get("scopes")?).ok()?,
        name: h.get("name").cloned().unwrap_or_default(),
        created_us: num("created_us").unwrap_or(0),
        expires_us: num("expires_us"),
        last_used_us: num("last_used_us"),
    })
}

fn random_bytes() -> Result<[u8; 38], TokenError> {
    let mut bytes = [0u8; 38];
    getrandom::fill(&mut bytes).map_err(|e| TokenError::Random {
        reason: e.to_string(),
    })?;
    Ok(bytes)
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_well_formed_tokens_parse() {
        let good = format!("spool_{}_{}", "a1".repeat(6), "0f".repeat(32));
        assert_eq!(parse(&good).map(|(id, _)| id), Some("a1a1a1a1a1a1"));
        for bad in [
            "spool_abc_def".to_string(),
            good.replace("spool_", "spoo1_"),
            format!("{good}0"),
            good.replacen('a', "g", 1),
            String::new(),
        ] {
            assert_eq!(parse(&bad), None, "{bad}");
        }
    }

    #[test]
    fn damaged_limits_refuse_the_token() {
        let h = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
                .collect()
        };
        let good = [("tenant", "acme"), ("scopes", "read")];
        assert!(info_from("a", &h(&good)).is_some());
        let mut bad = good.to_vec();
        bad.push(("expires_us", "soon"));
        assert!(info_from("a", &h(&bad)).is_none());
        assert!(info_from("a", &h(&[("tenant", "a}b"), ("scopes", "read")])).is_none());
    }

    #[test]
    fn hex_is_two_digits_a_byte() {
        assert_eq!(hex(&[0, 15, 255]), "000fff");
    }
}
