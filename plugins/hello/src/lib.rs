//! `hello`: greets by name. The smallest JSON-in, JSON-out handler.
//!
//! ```text
//! $ spool call target/plugins/hello.wasm --input '{"name":"Ada"}'
//! {"greeting":"Hello, Ada!"}
//! ```

use serde::{Deserialize, Serialize};
use spool_sdk::{JobError, handler};

#[derive(Deserialize)]
struct Input {
    name: String,
}

#[derive(Serialize)]
struct Output {
    greeting: String,
}

#[handler]
fn greet(input: Input) -> Result<Output, JobError> {
    if input.name.is_empty() {
        return Err(JobError::invalid_input(
            "name",
            "a non-empty string",
            "\"\"",
        ));
    }
    spool_sdk::log::info!("greeting {}", input.name);
    Ok(Output {
        greeting: format!("Hello, {}!", input.name),
    })
}
