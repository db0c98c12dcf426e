//! The thumbnail itself: PNG or JPEG bytes in, a PNG that fits a box
//! out, aspect ratio kept, never enlarged. Shared with `fetch-thumbnail`
//! (which includes this file), so both make the same thumbnails.

use spool_sdk::{JobError, log};
use std::io::Cursor;

/// A PNG thumbnail of `bytes` that fits `width` × `height`.
pub fn to_png(bytes: &[u8], width: u32, height: u32) -> Result<Vec<u8>, JobError> {
    let image = image::load_from_memory(bytes)
        .map_err(|e| JobError::invalid_input("$", "PNG or JPEG image bytes", e.to_string()))?;
    let thumb = if image.width() <= width && image.height() <= height {
        image
    } else {
        image.thumbnail(width, height)
    };
    log::info!(
        "thumbnail {}x{} in a {}x{} box",
        thumb.width(),
        thumb.height(),
        width,
        height
    );
    let mut out = Cursor::new(Vec::new());
    thumb
        .write_to(&mut out, image::ImageFormat::Png)
        .map_err(|e| JobError::fatal(format!("could not encode the PNG: {e}")))?;
    Ok(out.into_inner())
}

/// Largest box side accepted, so a typo cannot ask for a huge output.
const MAX_SIDE: u32 = 4096;

/// A box side from 1 to [`MAX_SIDE`], or an invalid-input error naming it.
pub fn side(name: &str, value: u32) -> Result<u32, JobError> {
    if value == 0 || value > MAX_SIDE {
        return Err(JobError::invalid_input(
            name,
            format!("a size from 1 to {MAX_SIDE}"),
            value.to_string(),
        ));
    }
    Ok(value)
}
