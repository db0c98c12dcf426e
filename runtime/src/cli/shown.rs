//! Text that came from a guest or from Redis, made safe to print on the
//! operator's terminal. A hostile handler controls its error messages, log
//! lines and output; printed as they are, escape sequences in them could
//! rewrite the screen, hide lines or retitle the terminal, and bidi
//! controls could make a line read differently from what it is. Data a
//! command writes for a pipe (`spool call`'s output, `enqueue --wait`'s) is
//! left byte for byte: that is its promise.

use std::borrow::Cow;

/// `text` with every control character (C0, DEL, C1, newlines included)
/// and every bidi control written as its escape (`\u{1b}`, `\n`); the same
/// text, unchanged, when it has none.
pub(crate) fn shown(text: &str) -> Cow<'_, str> {
    if !text.chars().any(unsafe_char) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if unsafe_char(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

fn unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_and_bidi_characters_are_escaped_and_the_rest_kept() {
        assert!(matches!(shown("plain, ünïcode ✓"), Cow::Borrowed(_)));
        assert_eq!(shown("\u{1b}]0;pwned\u{7}x"), "\\u{1b}]0;pwned\\u{7}x");
        assert_eq!(shown("a\nb\r\tc"), "a\\nb\\r\\tc");
        assert_eq!(shown("\u{9b}31m"), "\\u{9b}31m");
        assert_eq!(shown("abc\u{202e}fed"), "abc\\u{202e}fed");
    }
}
