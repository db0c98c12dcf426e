//! The check a deploy passes before it is stored: the component loads and
//! compiles, its manifest parses, as on a worker (`spool plugins deploy`
//! runs the same check on the operator's machine). A version that fails
//! here never reaches the fleet store.

use super::ApiError;
use crate::ids::PluginName;
use crate::plugins::{Loader, VersionError};
use crate::sandbox::{Sandbox, SandboxConfig};
use axum::http::StatusCode;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

/// Compiles uploaded components; the engine is made at the first deploy
/// (a server that never deploys pays nothing for it).
#[derive(Debug, Clone, Default)]
pub struct Checker {
    loader: Arc<OnceLock<Result<Loader, String>>>,
}

/// A checked version: its bytes, manifest and the SDK that built it.
pub type Checked = (Vec<u8>, Option<String>, Option<String>);

impl Checker {
    /// Check `bytes` (and `manifest`) as the version of `name`. Blocking:
    /// it compiles.
    pub fn check(
        &self,
        name: &PluginName,
        bytes: Vec<u8>,
        manifest: Option<String>,
    ) -> Result<Checked, ApiError> {
        let loader = self
            .loader
            .get_or_init(|| {
                let sandbox = Sandbox::new(SandboxConfig {
                    pool_size: 1,
                    ..SandboxConfig::default()
                })
                .map_err(|e| e.to_string())?;
                // Workers hold manifests to their own `--memory`, unknown
                // here: they refuse (and report) one above it.
                Ok(Loader {
                    memory_ceiling: None,
                    ..Loader::new(sandbox)
                })
            })
            .as_ref()
            .map_err(|e| {
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    format!("the engine that checks deploys could not start: {e}"),
                )
            })?;
        // The names errors give: what the client sent, not a server path.
        let file = PathBuf::from(format!("{name}.wasm"));
        let manifest_path = PathBuf::from(format!("{name}.toml"));
        let loaded = loader
            .load_version(
                &file,
                &bytes,
                manifest.as_deref().map(|t| (manifest_path.as_path(), t)),
            )
            .map_err(|e| {
                let field = match e {
                    VersionError::Load(_) => "component",
                    VersionError::Manifest(_)
                    | VersionError::MemoryAboveLimit { .. }
                    | VersionError::TimeoutAboveLimit { .. } => "manifest",
                };
                ApiError {
                    field: Some(field.into()),
                    ..ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "invalid-plugin",
                        format!("not deployed: {e}"),
                    )
                }
            })?;
        let sdk = loaded.plugin.sdk_version.clone();
        Ok((bytes, manifest, sdk))
    }
}
