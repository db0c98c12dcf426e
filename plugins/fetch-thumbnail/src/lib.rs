//! `fetch-thumbnail`: download a PNG or JPEG by URL and answer with a PNG
//! thumbnail of it (the same code as `thumbnail`).
//!
//! ```text
//! $ spool call target/plugins/fetch_thumbnail.wasm --http-allow https://images.example.com \
//!     --input '{"url": "https://images.example.com/cat.jpg", "width": 64}' -o thumb.png
//! ```
//!
//! Its manifest lists the hosts it may download from:
//!
//! ```toml
//! [http]
//! allow = ["https://images.example.com", "https://*.s3.amazonaws.com"]
//! ```
//!
//! A server error or a timeout is retryable; a 4xx, a host off the list or
//! something that is not an image is not.

use serde::Deserialize;
use spool_sdk::{JobError, handler, http, log, progress};

#[path = "../../thumbnail/src/resize.rs"]
mod resize;

#[derive(Deserialize)]
struct Input {
    url: String,
    width: Option<u32>,
    height: Option<u32>,
}

/// JSON in (`{"url", "width", "height"}`), PNG bytes out.
#[handler(bytes)]
fn fetch_thumbnail(input: Vec<u8>) -> Result<Vec<u8>, JobError> {
    let input: Input = serde_json::from_slice(&input).map_err(|e| {
        JobError::invalid_input(
            "$",
            r#"{"url": "https://...", "width": N, "height": N}"#,
            e.to_string(),
        )
    })?;
    let width = resize::side("width", input.width.unwrap_or(128))?;
    let height = resize::side("height", input.height.unwrap_or(128))?;
    let image = http::get(&input.url)?.error_for_status()?;
    log::info!("downloaded {} bytes", image.body().len());
    progress::report(1, 2);
    let png = resize::to_png(image.body(), width, height)?;
    progress::report(2, 2);
    Ok(png)
}
