//! Reply values → Rust values, for replies too mixed for `FromRedisValue`
//! (script replies with nils, integers or strings in one array).

use redis::Value;

/// The bytes of a bulk or simple string; none for anything else (nil).
pub fn bytes(v: Value) -> Option<Vec<u8>> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.into_bytes()),
        _ => None,
    }
}

/// [`bytes`] of a borrowed value.
pub fn bytes_ref(v: Option<&Value>) -> Option<&[u8]> {
    match v? {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.as_bytes()),
        _ => None,
    }
}

/// A string reply as text (invalid UTF-8 replaced; valid text is not
/// copied).
pub fn text(v: Value) -> Option<String> {
    bytes(v).map(|b| {
        String::from_utf8(b).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
    })
}

/// An integer or a string reply as text.
pub fn int_or_text(v: Value) -> Option<String> {
    match v {
        Value::Int(i) => Some(i.to_string()),
        other => text(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_and_integers_decode_and_nil_is_none() {
        assert_eq!(bytes(Value::BulkString(b"a".to_vec())), Some(b"a".to_vec()));
        assert_eq!(text(Value::SimpleString("ok".into())), Some("ok".into()));
        assert_eq!(int_or_text(Value::Int(7)), Some("7".into()));
        assert_eq!(bytes(Value::Nil), None);
        assert_eq!(
            text(Value::BulkString(b"a\xffb".to_vec())),
            Some("a\u{fffd}b".into())
        );
        assert_eq!(
            bytes_ref(Some(&Value::BulkString(b"x".to_vec()))),
            Some(&b"x"[..])
        );
        assert_eq!(bytes_ref(None), None);
    }
}
