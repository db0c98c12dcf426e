//! Why a plugin file could not be loaded. Every variant names the file and
//! says what was expected, so the message alone tells the author what to fix.

use crate::sandbox::CompileError;
use std::path::PathBuf;

/// A plugin file was rejected. None of these is fixed by retrying the same
/// file; the author must rebuild or replace it.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// No file at the path.
    #[error("plugin {}: no such file", path.display())]
    NotFound {
        /// The path.
        path: PathBuf,
    },
    /// The file exists but could not be read.
    #[error("plugin {}: could not read it: {source}", path.display())]
    Read {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is empty (perhaps still being written).
    #[error("plugin {}: the file is empty; expected a WebAssembly component", path.display())]
    Empty {
        /// The path.
        path: PathBuf,
    },
    /// The file does not start with the wasm magic bytes.
    #[error("plugin {}: not a WebAssembly file (it starts with {found}; expected \\0asm)", path.display())]
    NotWasm {
        /// The path.
        path: PathBuf,
        /// The first bytes, escaped.
        found: String,
    },
    /// A core module where a component was expected.
    #[error("plugin {}: a core wasm module, not a component; build it with `cargo build --target wasm32-wasip2` and the spool SDK", path.display())]
    CoreModule {
        /// The path.
        path: PathBuf,
    },
    /// The binary is cut short or malformed.
    #[error("plugin {}: malformed or truncated WebAssembly: {reason}", path.display())]
    Malformed {
        /// The path.
        path: PathBuf,
        /// The parser's reason.
        reason: String,
    },
    /// Built by an SDK version this host does not speak to.
    #[error("plugin {}: built with spool-sdk {found}; this host runs plugins built with spool-sdk {supported}", path.display())]
    IncompatibleSdk {
        /// The path.
        path: PathBuf,
        /// The version in the plugin.
        found: String,
        /// What this host accepts.
        supported: String,
    },
    /// An import the plugin's capabilities do not allow.
    #[error("plugin {}: import {import} is not allowed: {reason}", path.display())]
    ForbiddenImport {
        /// The path.
        path: PathBuf,
        /// The import's name.
        import: String,
        /// Why.
        reason: String,
    },
    /// An import this host does not provide.
    #[error("plugin {}: import {import} is not provided by this host (it provides spool:job and WASI 0.2 cli, io, clocks, random, filesystem)", path.display())]
    UnknownImport {
        /// The path.
        path: PathBuf,
        /// The import's name.
        import: String,
    },
    /// wasmtime could not compile or link it.
    #[error("plugin {}: {source}", path.display())]
    Compile {
        /// The path.
        path: PathBuf,
        /// The compile error.
        source: CompileError,
    },
}
