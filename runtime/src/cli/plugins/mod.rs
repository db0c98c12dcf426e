//! `spool plugins list | history | deploy | rollback | unpin`: what the
//! fleet serves, the versions of a plugin, and changing them on every worker
//! at once through the fleet store ([`crate::deploy`]).

mod confirm;
mod show;

use super::connect::{RedisArgs, runtime};
use super::exit;
use crate::deploy::{DeployError, FleetStore, MAX_DEPLOY_BYTES};
use crate::ids::PluginName;
use crate::plugins::{Loader, Plugin, VersionError, manifest, safe_read};
use crate::sandbox::{Sandbox, SandboxConfig};
use std::path::{Path, PathBuf};

#[derive(Debug, clap::Args)]
pub(crate) struct PluginsArgs {
    #[command(flatten)]
    redis: RedisArgs,

    /// Set the versions kept per plugin, fleet-wide (stored in Redis; the
    /// default is 10). Older ones are dropped with their bytes at the
    /// plugin's next change.
    #[arg(long, global = true)]
    keep_versions: Option<u32>,

    #[command(subcommand)]
    command: PluginsCommand,
}

#[derive(Debug, clap::Subcommand)]
enum PluginsCommand {
    /// What the running workers serve: version, SDK, source, when loaded,
    /// how many workers; and the files or versions they refused, and why.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// The recorded versions of a plugin, newest first.
    History {
        /// The plugin: `tenant/name`, or `name` for tenant `default`.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Store a component in Redis and pin it on every worker.
    Deploy {
        /// The component (`.wasm`). Its manifest is `--manifest`, else the
        /// `.toml` beside it, if any.
        file: PathBuf,
        /// The plugin to deploy it as: `tenant/name` or `name`.
        #[arg(long = "as", value_name = "NAME")]
        name: String,
        /// The manifest to deploy with it (limits, config, capabilities).
        #[arg(long)]
        manifest: Option<PathBuf>,
        #[command(flatten)]
        wait: super::fleet_wait::WaitArgs,
    },
    /// Pin the version before the current one (or `--to DIGEST`) on every
    /// worker. Run it again to go further back.
    Rollback {
        /// The plugin.
        name: String,
        /// A digest (or a unique prefix of one) from `spool plugins history`.
        #[arg(long, value_name = "DIGEST")]
        to: Option<String>,
        #[command(flatten)]
        wait: super::fleet_wait::WaitArgs,
    },
    /// Remove the pin a deploy or a rollback set: every worker serves the
    /// file in its own plugins directory again.
    Unpin {
        /// The plugin.
        name: String,
        #[command(flatten)]
        wait: super::fleet_wait::WaitArgs,
    },
    /// Delete a plugin's history and the stored bytes of its versions (a
    /// plugin no longer used). Refused while a version is pinned.
    Forget {
        /// The plugin.
        name: String,
    },
}

pub(crate) fn run(args: PluginsArgs) -> u8 {
    runtime().block_on(async {
        let url = args.redis.queue_config().url;
        let store = match FleetStore::connect(&url, &args.redis.prefix).await {
            Ok(store) => store,
            Err(e) => return fail(&e),
        };
        if let Some(keep) = args.keep_versions
            && let Err(e) = store.set_keep(keep).await
        {
            return fail(&e);
        }
        match args.command {
            PluginsCommand::List { json } => show::list(&store, json).await,
            PluginsCommand::History { name, json } => match parse_name(&name) {
                Ok(name) => show::history(&store, &name, json).await,
                Err(code) => code,
            },
            PluginsCommand::Deploy {
                file,
                name,
                manifest,
                wait,
            } => match parse_name(&name) {
                Ok(name) => deploy(&store, &file, &name, manifest.as_deref(), &wait).await,
                Err(code) => code,
            },
            PluginsCommand::Rollback { name, to, wait } => match parse_name(&name) {
                Ok(name) => rollback(&store, &name, to.as_deref(), &wait).await,
                Err(code) => code,
            },
            PluginsCommand::Unpin { name, wait } => match parse_name(&name) {
                Ok(name) => unpin(&store, &name, &wait).await,
                Err(code) => code,
            },
            PluginsCommand::Forget { name } => match parse_name(&name) {
                Ok(name) => forget(&store, &name).await,
                Err(code) => code,
            },
        }
    })
}

/// Pin an earlier version (the previous one, or `to`), then wait for the
/// workers to serve it.
async fn rollback(
    store: &FleetStore,
    name: &PluginName,
    to: Option<&str>,
    wait: &super::fleet_wait::WaitArgs,
) -> u8 {
    match store.rollback(name, to, &who()).await {
        Ok((from, to)) => {
            println!(
                "{name}: rolled back from {} to {} (recorded by {} at {}, {})",
                from.short(),
                to.short(),
                to.action.as_str(),
                super::job::time(to.at_us),
                to.by
            );
            confirm::pinned(store, name, &to.digest, wait).await
        }
        Err(e) => fail(&e),
    }
}

/// Remove the pin, then wait for the workers to serve their files.
async fn unpin(store: &FleetStore, name: &PluginName, wait: &super::fleet_wait::WaitArgs) -> u8 {
    match store.unpin(name).await {
        Ok(Some(entry)) => {
            println!(
                "{name}: {} is no longer pinned; workers serve their directory's file",
                entry.short()
            );
            confirm::unpinned(store, name, wait).await
        }
        Ok(None) => {
            println!("{name}: nothing pinned");
            exit::OK
        }
        Err(e) => fail(&e),
    }
}

/// Delete the history and the stored bytes.
async fn forget(store: &FleetStore, name: &PluginName) -> u8 {
    match store.forget(name).await {
        Ok(n) => {
            println!("{name}: history deleted, with the bytes of {n} versions");
            exit::OK
        }
        Err(e) => fail(&e),
    }
}

/// Validate here (the same checks a worker runs), then store and pin.
async fn deploy(
    store: &FleetStore,
    file: &Path,
    name: &PluginName,
    manifest_path: Option<&Path>,
    wait: &super::fleet_wait::WaitArgs,
) -> u8 {
    let (bytes, text) = match read_inputs(file, manifest_path) {
        Ok(inputs) => inputs,
        Err(message) => {
            eprintln!("spool: {message}");
            return exit::USAGE;
        }
    };
    let manifest_shown = manifest_path.map_or_else(|| manifest::path_for(file), Path::to_path_buf);
    let plugin = match check(
        file,
        &bytes,
        text.as_deref().map(|t| (manifest_shown.as_path(), t)),
    ) {
        Ok(plugin) => plugin,
        Err(CheckError::Manifest(e)) => {
            eprintln!("spool: {e}");
            return exit::USAGE;
        }
        Err(CheckError::Plugin(why)) => {
            eprintln!("spool: not deployed: {why}");
            return exit::USAGE;
        }
    };
    match store
        .deploy(name, &bytes, plugin.sdk_version.clone(), text, &who())
        .await
    {
        Ok((entry, new)) => {
            if !new {
                println!("{name}: {} is deployed already", entry.short());
                return confirm::pinned(store, name, &entry.digest, wait).await;
            }
            println!(
                "{name}: deployed {} ({} bytes{})",
                entry.short(),
                entry.size,
                entry
                    .sdk
                    .as_ref()
                    .map(|s| format!(", spool-sdk {s}"))
                    .unwrap_or_default()
            );
            confirm::pinned(store, name, &entry.digest, wait).await
        }
        Err(e) => fail(&e),
    }
}

/// The component's bytes and its manifest's text (`--manifest`, else the
/// one beside the file, if any); the error says which could not be read.
fn read_inputs(
    file: &Path,
    manifest_path: Option<&Path>,
) -> Result<(Vec<u8>, Option<String>), String> {
    let (bytes, _) = safe_read::read_regular(file, MAX_DEPLOY_BYTES, false)
        .map_err(|e| format!("{}: {e}", file.display()))?;
    let text = match manifest_path {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .map_err(|e| format!("manifest {}: {e}", path.display()))?,
        ),
        None => manifest::read_text_for(None, file).map_err(|e| e.to_string())?,
    };
    Ok((bytes, text))
}

/// Why a version is not deployed.
enum CheckError {
    /// Its manifest does not parse.
    Manifest(crate::plugins::ManifestError),
    /// The component itself (or the sandbox) failed.
    Plugin(String),
}

/// Load the version as a worker would (workers grant what the manifest
/// grants, and their own defaults; their `--memory` is not known here).
fn check(file: &Path, bytes: &[u8], manifest: Option<(&Path, &str)>) -> Result<Plugin, CheckError> {
    // The manifest is named first, before any other check.
    if let Some((path, text)) = manifest {
        manifest::parse(path, text).map_err(CheckError::Manifest)?;
    }
    let sandbox = Sandbox::new(SandboxConfig {
        pool_size: 1,
        ..SandboxConfig::default()
    })
    .map_err(|e| CheckError::Plugin(e.to_string()))?;
    let loader = Loader {
        memory_ceiling: None,
        ..Loader::new(sandbox)
    };
    match loader.load_version(file, bytes, manifest) {
        Ok(loaded) => Ok(loaded.plugin),
        Err(VersionError::Manifest(e)) => Err(CheckError::Manifest(e)),
        Err(e) => Err(CheckError::Plugin(e.to_string())),
    }
}

fn parse_name(name: &str) -> Result<PluginName, u8> {
    PluginName::parse(name).map_err(|e| {
        eprintln!("spool: {e}");
        exit::USAGE
    })
}

/// `user@host`, for the history.
fn who() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| {
            use std::os::unix::fs::MetadataExt;
            std::fs::metadata("/proc/self")
                .map_or_else(|_| "unknown".into(), |m| format!("uid {}", m.uid()))
        });
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into());
    format!("{user}@{host}")
}

/// Print an error with its retry hint, return the matching exit code.
fn fail(error: &DeployError) -> u8 {
    eprintln!("spool: {error}");
    if error.is_retryable() {
        exit::RETRYABLE
    } else {
        exit::FAILED
    }
}
