//! Text that came from a guest or from Redis, made safe to print on the
//! operator's terminal. A hostile handler controls its error messages, log
//! lines and output; printed as they are, escape sequences in them could
//! rewrite the screen, hide lines or retitle the terminal, and bidi
//! controls could make a line read differently from what it is. Data a
//! command writes for a pipe (`spool call`'s output, `enqueue --wait`'s) is
//! left byte for byte: that is its promise; on a terminal it goes through
//! [`output_shown`].

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

/// A job's output as it may reach a terminal: lines and tabs kept, every
/// other control character, bidi control and byte that is not UTF-8
/// escaped (`\u{1b}`, `\xff`).
pub(crate) fn output_shown(output: &[u8]) -> Cow<'_, [u8]> {
    let keep = |c: char| c == '\n' || c == '\t' || !unsafe_char(c);
    match std::str::from_utf8(output) {
        Ok(text) if text.chars().all(keep) => Cow::Borrowed(output),
        _ => {
            let mut out = String::with_capacity(output.len() + 16);
            for chunk in output.utf8_chunks() {
                for c in chunk.valid().chars() {
                    if keep(c) {
                        out.push(c);
                    } else {
                        out.extend(c.escape_default());
                    }
                }
                for b in chunk.invalid() {
                    out.push_str(&format!("\\x{b:02x}"));
                }
            }
            Cow::Owned(out.into_bytes())
        }
    }
}

/// Write a job's output to stdout: byte for byte into a pipe or file, and
/// through [`output_shown`] on a terminal, where escape sequences a hostile
/// handler put in it would be obeyed. Returns whether stdout is a terminal.
pub(crate) fn write_output(output: &[u8]) -> bool {
    use std::io::{IsTerminal as _, Write as _};
    let mut stdout = std::io::stdout().lock();
    let terminal = stdout.is_terminal();
    let _ = if terminal {
        stdout.write_all(&output_shown(output))
    } else {
        stdout.write_all(output)
    };
    terminal
}

fn unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_for_a_terminal_keeps_lines_and_escapes_the_rest() {
        assert!(matches!(
            output_shown(b"{\"a\": 1}\n\tok"),
            Cow::Borrowed(_)
        ));
        assert_eq!(
            output_shown(b"red \x1b[31m\xff end\n").as_ref(),
            b"red \\u{1b}[31m\\xff end\n"
        );
        assert_eq!(
            output_shown("\u{202e}txt".as_bytes()).as_ref(),
            b"\\u{202e}txt"
        );
    }

    #[test]
    fn control_and_bidi_characters_are_escaped_and_the_rest_kept() {
        assert!(matches!(shown("plain, ünïcode ✓"), Cow::Borrowed(_)));
        assert_eq!(shown("\u{1b}]0;pwned\u{7}x"), "\\u{1b}]0;pwned\\u{7}x");
        assert_eq!(shown("a\nb\r\tc"), "a\\nb\\r\\tc");
        assert_eq!(shown("\u{9b}31m"), "\\u{9b}31m");
        assert_eq!(shown("abc\u{202e}fed"), "abc\\u{202e}fed");
    }
}
