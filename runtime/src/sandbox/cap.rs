//! Caps on the text a guest hands the host: error messages, invalid-input
//! fields and log lines. A guest can return a 64 MiB error message as
//! easily as a short one; uncapped, it would become a 64 MiB job record in
//! the shared Redis and lines of that size in the worker's own log. Cut
//! texts keep their start and say how long they were.

/// Most bytes kept of an error message or of each invalid-input field.
pub const MAX_ERROR_TEXT: usize = 4 * 1024;

/// Most bytes kept of one log line (the job's log has its own budget in
/// lines and bytes on top).
pub const MAX_LOG_LINE: usize = 4 * 1024;

/// Most bytes of a guest log line copied into the host's own log.
pub const MAX_HOST_LOG_PREVIEW: usize = 256;

/// `text` cut to at most `max` bytes, at a character boundary, then
/// `… [truncated from N bytes]`; unchanged when it fits.
pub(crate) fn truncate(mut text: String, max: usize) -> String {
    if text.len() <= max {
        return text;
    }
    let size = text.len();
    text.truncate(floor_char_boundary(&text, max));
    text.push_str(&format!("… [truncated from {size} bytes]"));
    text
}

/// The start of `text`, at most `max` bytes, for a one-line preview.
pub(crate) fn preview(text: &str, max: usize) -> &str {
    &text[..floor_char_boundary(text, max)]
}

/// The largest index ≤ `at` on a character boundary of `text`.
fn floor_char_boundary(text: &str, at: usize) -> usize {
    let mut end = at.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    end
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_texts_keep_their_start_and_say_their_size() {
        assert_eq!(truncate("short".into(), 8), "short");
        assert_eq!(truncate("exactly8".into(), 8), "exactly8");
        assert_eq!(
            truncate("ninechars".into(), 4),
            "nine… [truncated from 9 bytes]"
        );
        // Never inside a character: "é" is two bytes.
        assert_eq!(truncate("aé".into(), 2), "a… [truncated from 3 bytes]");
        assert_eq!(preview("aéb", 2), "a");
        assert_eq!(preview("ab", 10), "ab");
    }
}
