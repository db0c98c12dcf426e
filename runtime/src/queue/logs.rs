//! A job's guest log as its record keeps it: `[[level, message], …]`,
//! then the number of dropped lines when there were any.
//!
//! Why not the `{"lines": [{"level", "message"}], "dropped": n}` that
//! `spool job` shows: Redis keeps a small hash compact (a listpack) only
//! while every value is at most 64 bytes (`hash-max-listpack-value`).
//! One log line in the long form is already past that, and the whole
//! record then becomes a hash table: 2–3× the memory, and more Redis CPU
//! for every write to it. The short form keeps a one-line log of a short
//! message under the limit. Readers expand it with [`shown`], and still
//! read the long form that records written before it hold.

use serde::ser::{SerializeSeq, Serializer};
use serde_json::{Value, json};

/// `lines` (level, message) and the count of dropped lines, as the record's
/// `logs` field holds them.
pub fn stored<'a, L: AsRef<str>>(
    lines: impl ExactSizeIterator<Item = (L, &'a str)>,
    dropped: usize,
) -> String {
    let mut out = Vec::with_capacity(16 + 32 * lines.len());
    let mut ser = serde_json::Serializer::new(&mut out);
    let written = (|| {
        let mut seq = ser.serialize_seq(Some(lines.len() + usize::from(dropped > 0)))?;
        for (level, message) in lines {
            seq.serialize_element(&(level.as_ref(), message))?;
        }
        if dropped > 0 {
            seq.serialize_element(&dropped)?;
        }
        seq.end()
    })();
    match written {
        Ok(()) => String::from_utf8(out).unwrap_or_default(),
        Err(_) => "[]".to_string(),
    }
}

/// The stored field as `spool job` shows it: `{"lines": [{"level",
/// "message"}], "dropped": n}`. The long form passes through; anything
/// else that is JSON is shown as it is (a record written by hand).
pub fn shown(stored: &str) -> Option<Value> {
    let value: Value = serde_json::from_str(stored).ok()?;
    let Value::Array(items) = value else {
        return Some(value);
    };
    let mut lines = Vec::with_capacity(items.len());
    let mut dropped = 0;
    for item in items {
        match item {
            Value::Array(pair) if pair.len() == 2 => {
                lines.push(json!({"level": pair[0], "message": pair[1]}));
            }
            Value::Number(n) => dropped = n.as_u64().unwrap_or(0),
            other => lines.push(json!({"level": null, "message": other})),
        }
    }
    Some(json!({"lines": lines, "dropped": dropped}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_one_line_log_stays_under_the_listpack_value_limit_and_reads_back_long() {
        let text = stored([("info", "greeting bench-000123")].into_iter(), 0);
        assert_eq!(text, r#"[["info","greeting bench-000123"]]"#);
        assert!(text.len() <= 64, "{} bytes", text.len());
        assert_eq!(
            shown(&text).unwrap(),
            json!({"lines": [{"level": "info", "message": "greeting bench-000123"}], "dropped": 0})
        );
    }

    #[test]
    fn dropped_lines_and_escapes_survive_the_round_trip() {
        let text = stored(
            [("stderr", "panicked at \"x\"\n\u{1b}[31m"), ("warn", "")].into_iter(),
            7,
        );
        let read = shown(&text).unwrap();
        assert_eq!(read["dropped"], 7);
        assert_eq!(read["lines"][0]["message"], "panicked at \"x\"\n\u{1b}[31m");
        assert_eq!(read["lines"][1]["level"], "warn");
        assert_eq!(stored(std::iter::empty::<(&str, &str)>(), 0), "[]");
    }

    #[test]
    fn the_long_form_of_older_records_and_garbage_are_read_without_panics() {
        let long = json!({"lines": [{"level": "info", "message": "m"}], "dropped": 0});
        assert_eq!(shown(&long.to_string()).unwrap(), long);
        assert_eq!(shown("not json"), None);
        assert_eq!(
            shown("[1.5, \"x\", [1]]").unwrap()["lines"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
    }
}
