//! What can go wrong with fleet deploys. Variants name the plugin and the
//! version; [`DeployError::is_retryable`] says whether trying again helps.

use crate::ids::Version;
use crate::redis::RedisError;

/// A fleet-store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    /// Redis is unreachable, refused the command, or the URL is bad.
    #[error(transparent)]
    Redis(#[from] RedisError),
    /// The component is bigger than the store takes.
    #[error("plugin {name}: the component is {size} bytes; fleet deploys take at most {max} bytes")]
    TooLarge {
        /// The plugin.
        name: String,
        /// Its size.
        size: u64,
        /// The cap.
        max: u64,
    },
    /// Nothing was ever recorded for this plugin.
    #[error(
        "plugin {name} has no recorded versions: no worker has loaded it and it was never deployed"
    )]
    NoHistory {
        /// The plugin.
        name: String,
    },
    /// A rollback with nothing before the current version.
    #[error(
        "plugin {name}: no version before {current} in its history (see `spool plugins history {name}`)"
    )]
    NoPrevious {
        /// The plugin.
        name: String,
        /// The current version (short digest).
        current: String,
    },
    /// `--to` names no version in the history.
    #[error(
        "plugin {name}: no version {digest} in its history (see `spool plugins history {name}`)"
    )]
    UnknownVersion {
        /// The plugin.
        name: String,
        /// The digest or prefix given.
        digest: String,
    },
    /// `--to` is a prefix of several versions.
    #[error("plugin {name}: {digest} matches {matches} versions; give more digits")]
    AmbiguousVersion {
        /// The plugin.
        name: String,
        /// The prefix given.
        digest: String,
        /// How many versions it matches.
        matches: usize,
    },
    /// The history names a version whose bytes are gone.
    #[error(
        "plugin {name}: the bytes of version {digest} are no longer stored (pruned or deleted); deploy the file again"
    )]
    BlobMissing {
        /// The plugin.
        name: String,
        /// The version.
        digest: Version,
    },
    /// The pin changed between reading it and replacing it.
    #[error(
        "plugin {name}: its pinned version changed while rolling back (another deploy or rollback); look at `spool plugins history {name}` and try again"
    )]
    Conflict {
        /// The plugin.
        name: String,
    },
    /// `forget` of a plugin with a pinned version.
    #[error("plugin {name} has a pinned version: `spool plugins unpin {name}` first")]
    Pinned {
        /// The plugin.
        name: String,
    },
    /// Stored bytes whose digest is not the one they are stored under.
    #[error("plugin {name}: the bytes stored as version {digest} hash to {found}; refusing them")]
    Corrupt {
        /// The plugin.
        name: String,
        /// The digest they are stored under.
        digest: Version,
        /// Their real digest.
        found: Version,
    },
}

impl DeployError {
    /// Whether the same operation may succeed later.
    pub fn is_retryable(&self) -> bool {
        match self {
            DeployError::Redis(e) => e.is_retryable(),
            DeployError::Conflict { .. } => true,
            _ => false,
        }
    }
}
