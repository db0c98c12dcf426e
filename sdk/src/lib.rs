//! Write Spool job handlers in Rust.
//!
//! A handler is one function marked `#[handler]`. It takes typed input and
//! returns typed output or a [`JobError`] that says what failed, what was
//! expected, and whether a retry can help:
//!
//! ```ignore
//! use serde::{Deserialize, Serialize};
//! use spool_sdk::{handler, JobError};
//!
//! #[derive(Deserialize)] struct Input { name: String }
//! #[derive(Serialize)]   struct Output { greeting: String }
//!
//! #[handler]
//! fn greet(input: Input) -> Result<Output, JobError> {
//!     if input.name.is_empty() {
//!         return Err(JobError::invalid_input("name", "a non-empty string", "\"\""));
//!     }
//!     spool_sdk::log::info!("greeting {}", input.name);
//!     Ok(Output { greeting: format!("Hello, {}!", input.name) })
//! }
//! ```
//!
//! Build with `cargo build --release --target wasm32-wasip2`; the result is a
//! WebAssembly component that `spool call` and `spool worker` run.
//!
//! Two shapes are supported:
//!
//! - `#[handler]`: the payload is JSON, decoded into the input type with
//!   serde; the output is encoded as JSON. A payload that does not decode is
//!   answered with [`JobError::InvalidInput`] naming the field.
//! - `#[handler(bytes)]`: the payload arrives as `Vec<u8>` or `&[u8]` and the
//!   handler returns `Vec<u8>` (images, documents, anything not JSON).
//!
//! Either may take a second argument `&Job` to see the job's id, tenant,
//! attempt and content type.
//!
//! Every plugin built with this crate carries the SDK version in a custom
//! section named [`VERSION_SECTION`], so the host can refuse plugins built by
//! an SDK it does not speak to.
#![deny(missing_docs)]

pub mod config;
mod error;
pub mod http;
mod job;
pub mod kv;
pub mod log;
pub mod progress;

#[doc(hidden)]
pub mod __private;

pub use error::JobError;
pub use job::Job;
pub use spool_sdk_macros::handler;

/// The version of this SDK, embedded in every plugin it builds.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Name of the custom section that carries [`VERSION`] inside a plugin.
pub const VERSION_SECTION: &str = "spool-sdk-version";

/// The WIT bindings, generated from `wit/` at the repository root.
#[doc(hidden)]
#[allow(unsafe_code, missing_docs, clippy::too_many_arguments)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "handler-with-http",
        path: "../wit",
        generate_all,
        pub_export_macro: true,
        export_macro_name: "__export_handler",
        default_bindings_module: "::spool_sdk::bindings",
    });
}
