//! `markdown`: CommonMark (plus tables, strikethrough, task lists and
//! footnotes) in, HTML out.
//!
//! ```text
//! $ spool call target/plugins/markdown.wasm --input @README.md
//! ```

use pulldown_cmark::{Options, Parser, html};
use spool_sdk::{JobError, handler};

#[handler(bytes)]
fn render(input: &[u8]) -> Result<Vec<u8>, JobError> {
    let text = std::str::from_utf8(input)
        .map_err(|e| JobError::invalid_input("$", "UTF-8 Markdown text", e.to_string()))?;
    let options = Options::ENABLE_TABLES
        | Options::ENABLE_STRIKETHROUGH
        | Options::ENABLE_TASKLISTS
        | Options::ENABLE_FOOTNOTES;
    let mut out = String::with_capacity(text.len() * 3 / 2);
    html::push_html(&mut out, Parser::new_ext(text, options));
    Ok(out.into_bytes())
}
