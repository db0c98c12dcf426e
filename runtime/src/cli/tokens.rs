//! `spool tokens create | list | revoke`: the tenant tokens `spool serve`
//! accepts. A token is printed once, at creation; Redis keeps its hash.

use super::connect::{RedisArgs, runtime};
use super::exit;
use crate::config::parse_duration;
use crate::redis::AsyncRedis;
use crate::tokens::{NewToken, Scope, Tenants, TokenError, TokenStore, parse_scopes};
use std::time::Duration;

#[derive(Debug, clap::Args)]
pub(crate) struct TokensArgs {
    #[command(flatten)]
    redis: RedisArgs,

    #[command(subcommand)]
    command: TokensCommand,
}

#[derive(Debug, clap::Subcommand)]
enum TokensCommand {
    /// Make a token and print it (the only time it is shown).
    Create {
        /// The tenant whose jobs, plugins and settings it reaches.
        #[arg(
            long,
            required_unless_present = "all_tenants",
            conflicts_with = "all_tenants"
        )]
        tenant: Option<String>,
        /// An operator's token: every tenant.
        #[arg(long)]
        all_tenants: bool,
        /// What it may do: submit, read, deploy, admin (comma-separated).
        #[arg(long, value_parser = scope_list, default_value = "submit,read")]
        scopes: ScopeList,
        /// How long it works (e.g. 90d); without it, until revoked.
        #[arg(long, value_parser = parse_duration)]
        expires: Option<Duration>,
        /// A name for people (e.g. ci).
        #[arg(long, default_value = "")]
        name: String,
        /// Print JSON: the token and its settings.
        #[arg(long)]
        json: bool,
    },
    /// Every token: id, tenant, scopes, name, expiry (--json: also when it
    /// was made and last used). Never a secret.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token by its id (or the whole token): it stops working at once.
    Revoke {
        /// The id (the 12 hex digits after `spool_`) or the token.
        id: String,
    },
}

pub(crate) fn run(args: TokensArgs) -> u8 {
    let url = args.redis.queue_config().url;
    runtime().block_on(async move {
        let redis = match AsyncRedis::open(&url).await {
            Ok(r) => r,
            Err(e) => return failed(&TokenError::Redis(e)),
        };
        let store = TokenStore::new(redis, &args.redis.prefix);
        match args.command {
            TokensCommand::Create {
                tenant,
                all_tenants: _,
                scopes,
                expires,
                name,
                json,
            } => {
                let new = NewToken {
                    tenants: tenant.map_or(Tenants::All, Tenants::One),
                    scopes: scopes.0,
                    name,
                    expires_in: expires,
                };
                create(&store, &new, json).await
            }
            TokensCommand::List { json } => list(&store, json).await,
            TokensCommand::Revoke { id } => revoke(&store, &id).await,
        }
    })
}

async fn create(store: &TokenStore, new: &NewToken, json: bool) -> u8 {
    match store.create(new).await {
        Ok((token, info)) if json => {
            println!("{}", serde_json::json!({"token": token, "info": info}));
            exit::OK
        }
        Ok((token, info)) => {
            println!("{token}");
            eprintln!(
                "token {} for {} ({}); shown once: keep it now",
                info.id,
                info.tenants,
                join(&info.scopes)
            );
            exit::OK
        }
        Err(e) => failed(&e),
    }
}

async fn list(store: &TokenStore, json: bool) -> u8 {
    let list = match store.list().await {
        Ok(list) => list,
        Err(e) => return failed(&e),
    };
    if json {
        println!("{}", serde_json::to_string(&list).unwrap_or_default());
        return exit::OK;
    }
    println!("ID            TENANT            SCOPES                    NAME          EXPIRES");
    for t in list {
        let expires = t.expires_us.map_or("never".to_string(), shown_time);
        println!(
            "{:<12}  {:<16}  {:<24}  {:<12}  {expires}",
            t.id,
            t.tenants.stored(),
            join(&t.scopes),
            t.name
        );
    }
    exit::OK
}

async fn revoke(store: &TokenStore, id: &str) -> u8 {
    // The id only, even when the whole token was given: a secret must not
    // end up in a terminal's scrollback or a CI log.
    let shown = id
        .strip_prefix("spool_")
        .and_then(|rest| rest.split('_').next())
        .unwrap_or(id);
    match store.revoke(id).await {
        Ok(true) => {
            eprintln!("revoked token {shown}");
            exit::OK
        }
        Ok(false) => {
            eprintln!("spool: no token {shown}: never made, or already revoked");
            exit::FAILED
        }
        Err(e) => failed(&e),
    }
}

/// `--scopes`: one value holding a list (clap would take a `Vec` for
/// repeated flags).
#[derive(Debug, Clone)]
struct ScopeList(Vec<Scope>);

fn scope_list(text: &str) -> Result<ScopeList, String> {
    parse_scopes(text).map(ScopeList)
}

fn join(scopes: &[Scope]) -> String {
    scopes
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

fn shown_time(us: u64) -> String {
    let t = std::time::UNIX_EPOCH + Duration::from_micros(us);
    humantime::format_rfc3339_seconds(t).to_string()
}

fn failed(e: &TokenError) -> u8 {
    eprintln!("spool: {e}");
    match e {
        TokenError::Redis(r) if r.is_retryable() => exit::RETRYABLE,
        TokenError::Random { .. } => exit::RETRYABLE,
        TokenError::Invalid { .. } => exit::USAGE,
        _ => exit::FAILED,
    }
}
