//! The example plugins do their real work.

use super::{job, output_json, run_with};
use base64::Engine as _;
use image::{GenericImageView, ImageFormat, RgbImage};
use spool_runtime::sandbox::{JobFailure, Limits, Progress};
use std::io::Cursor;

fn encoded(width: u32, height: u32, format: ImageFormat) -> Vec<u8> {
    let image = RgbImage::from_fn(width, height, |x, y| image::Rgb([x as u8, y as u8, 128]));
    let mut out = Cursor::new(Vec::new());
    image.write_to(&mut out, format).unwrap();
    out.into_inner()
}

fn png_size(bytes: &[u8]) -> (u32, u32) {
    let image = image::load_from_memory_with_format(bytes, ImageFormat::Png).expect("a PNG");
    image.dimensions()
}

#[test]
fn thumbnail_of_a_jpeg_fits_the_configured_box() {
    let input = job("image/jpeg", encoded(400, 200, ImageFormat::Jpeg));
    let run = run_with(
        "thumbnail",
        input,
        &Limits::default(),
        &[("width", "100"), ("height", "100")],
    );
    let output = run.result.expect("a thumbnail");
    assert_eq!(png_size(&output), (100, 50));
    assert_eq!(run.progress, Some(Progress { done: 2, total: 2 }));
}

#[test]
fn thumbnail_of_a_png_defaults_to_128() {
    let run = run_with(
        "thumbnail",
        job("image/png", encoded(300, 600, ImageFormat::Png)),
        &Limits::default(),
        &[],
    );
    assert_eq!(png_size(&run.result.unwrap()), (64, 128));
}

#[test]
fn thumbnail_from_a_json_wrapper() {
    let png = encoded(50, 50, ImageFormat::Png);
    let payload = format!(
        r#"{{"image":"{}","width":10,"height":20}}"#,
        base64::engine::general_purpose::STANDARD.encode(&png)
    );
    let run = run_with(
        "thumbnail",
        job("application/json", payload.into_bytes()),
        &Limits::default(),
        &[],
    );
    assert_eq!(png_size(&run.result.unwrap()), (10, 10));
}

#[test]
fn thumbnail_rejects_non_images_and_bad_sizes() {
    let run = run_with(
        "thumbnail",
        job("image/png", b"not an image".to_vec()),
        &Limits::default(),
        &[],
    );
    assert!(
        matches!(run.result.unwrap_err(), JobFailure::InvalidInput { field, .. } if field == "$")
    );
    let png = encoded(10, 10, ImageFormat::Png);
    let run = run_with(
        "thumbnail",
        job("image/png", png),
        &Limits::default(),
        &[("width", "wide")],
    );
    assert!(
        matches!(run.result.unwrap_err(), JobFailure::InvalidInput { field, .. } if field == "config.width")
    );
}

#[test]
fn markdown_renders_html() {
    let run = run_with(
        "markdown",
        job(
            "text/markdown",
            b"# Title\n\nSome *text* and ~~old~~.\n".to_vec(),
        ),
        &Limits::default(),
        &[],
    );
    let html = String::from_utf8(run.result.unwrap()).unwrap();
    assert_eq!(
        html,
        "<h1>Title</h1>\n<p>Some <em>text</em> and <del>old</del>.</p>\n"
    );
}

#[test]
fn markdown_rejects_invalid_utf8() {
    let run = run_with(
        "markdown",
        job("text/markdown", vec![b'#', 0xff, 0xfe]),
        &Limits::default(),
        &[],
    );
    assert!(
        matches!(run.result.unwrap_err(), JobFailure::InvalidInput { expected, .. } if expected == "UTF-8 Markdown text")
    );
}

#[test]
fn hello_output_is_plain_json() {
    let run = run_with(
        "hello",
        super::json_job(r#"{"name":"Grace"}"#),
        &Limits::default(),
        &[],
    );
    assert_eq!(output_json(&run)["greeting"], "Hello, Grace!");
}
