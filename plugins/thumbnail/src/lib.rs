//! `thumbnail`: PNG or JPEG bytes in, a PNG thumbnail out.
//!
//! The box the thumbnail must fit in comes from the plugin config (`width`,
//! `height`, default 128×128), or from a JSON wrapper that carries the image
//! too:
//!
//! ```text
//! $ spool call target/plugins/thumbnail.wasm --input @cat.jpg -c width=64 -o thumb.png
//! $ spool call target/plugins/thumbnail.wasm --input '{"image":"<base64>","width":32,"height":32}'
//! ```
//!
//! The aspect ratio is kept; the image is never enlarged.

use base64::Engine as _;
use serde::Deserialize;
use spool_sdk::{Job, JobError, config, handler, progress};

mod resize;

#[derive(Deserialize)]
struct Wrapped {
    image: String,
    width: Option<u32>,
    height: Option<u32>,
}

#[handler(bytes)]
fn thumbnail(input: Vec<u8>, job: &Job) -> Result<Vec<u8>, JobError> {
    let (bytes, width, height) = if job.content_type.starts_with("application/json") {
        let wrapped: Wrapped = serde_json::from_slice(&input).map_err(|e| {
            JobError::invalid_input(
                "$",
                r#"{"image": "<base64 PNG or JPEG>", "width": N, "height": N}"#,
                e.to_string(),
            )
        })?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(wrapped.image.as_bytes())
            .map_err(|e| JobError::invalid_input("image", "base64", e.to_string()))?;
        (bytes, wrapped.width, wrapped.height)
    } else {
        (input, config::parse("width")?, config::parse("height")?)
    };
    let width = resize::side("width", width.unwrap_or(128))?;
    let height = resize::side("height", height.unwrap_or(128))?;

    progress::report(1, 2);
    let out = resize::to_png(&bytes, width, height)?;
    progress::report(2, 2);
    Ok(out)
}
