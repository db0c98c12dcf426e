//! Decoding the MessagePack that `claim.lua` packs its jobs in
//! (`cmsgpack.pack`, built into Redis' Lua) into [`Item`]s that borrow
//! their strings from the packed bytes.
//!
//! Why: a claim of 64 jobs answered as nested RESP arrays is ~900 values,
//! and the `redis` crate's parser spent more of the worker's main thread on
//! them than anything else. One bulk string per claim is one value to it;
//! this decoder walks the bytes once, and copies nothing: of a record's
//! ~30 strings the worker keeps a few (the envelope), so the rest are
//! never allocated. Only what `cmsgpack` writes for Lua
//! strings, booleans, whole numbers and arrays is accepted; anything else
//! (a map, a float, an extension, bytes cut short) is an error, never a
//! panic.

use redis::Value;

/// Arrays nest no deeper than this (the claim's are two deep).
const MAX_DEPTH: usize = 8;

/// One decoded value; strings stay in the bytes they were read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Item<'a> {
    Nil,
    Int(i64),
    Str(&'a [u8]),
    Array(Vec<Item<'a>>),
}

impl<'a> Item<'a> {
    /// A reply value seen as an item (the jobs of a claim that came as
    /// RESP arrays rather than packed): strings borrowed, anything that is
    /// not a string, integer or array is nil.
    pub(crate) fn of(value: &'a Value) -> Self {
        match value {
            Value::BulkString(b) => Item::Str(b),
            Value::SimpleString(s) => Item::Str(s.as_bytes()),
            Value::Int(n) => Item::Int(*n),
            Value::Array(items) => Item::Array(items.iter().map(Item::of).collect()),
            _ => Item::Nil,
        }
    }

    /// The bytes of a string.
    pub(crate) fn bytes(&self) -> Option<&'a [u8]> {
        match self {
            Item::Str(b) => Some(b),
            _ => None,
        }
    }

    /// A string as text (invalid UTF-8 replaced).
    pub(crate) fn text(&self) -> Option<String> {
        self.bytes()
            .map(|b| String::from_utf8_lossy(b).into_owned())
    }

    /// An integer or a string as text.
    pub(crate) fn int_or_text(&self) -> Option<String> {
        match self {
            Item::Int(n) => Some(n.to_string()),
            other => other.text(),
        }
    }
}

/// `bytes` as one item: strings and binaries as strings, `false` and
/// nil as nil, `true` as 1, whole numbers as integers, arrays as arrays.
pub(crate) fn decode(bytes: &[u8]) -> Result<Item<'_>, String> {
    let mut reader = Reader { bytes, at: 0 };
    let value = reader.value(0)?;
    if reader.at != bytes.len() {
        return Err(format!("{} bytes after the value", bytes.len() - reader.at));
    }
    Ok(value)
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.at.checked_add(n).filter(|e| *e <= self.bytes.len());
        let end = end.ok_or_else(|| format!("cut short at byte {} (wanted {n} more)", self.at))?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    /// A big-endian unsigned number of `n` bytes (1, 2, 4 or 8).
    fn uint(&mut self, n: usize) -> Result<u64, String> {
        Ok(self
            .take(n)?
            .iter()
            .fold(0, |acc, b| acc << 8 | u64::from(*b)))
    }

    fn len(&mut self, n: usize) -> Result<usize, String> {
        usize::try_from(self.uint(n)?).map_err(|_| "a length past memory".to_string())
    }

    fn value(&mut self, depth: usize) -> Result<Item<'a>, String> {
        let tag = self.take(1)?[0];
        let at = self.at - 1;
        Ok(match tag {
            0x00..=0x7f => Item::Int(i64::from(tag)),
            0xe0..=0xff => Item::Int(i64::from(tag as i8)),
            0xc0 | 0xc2 => Item::Nil,
            0xc3 => Item::Int(1),
            0xa0..=0xbf => self.string(usize::from(tag & 0x1f))?,
            0xd9 | 0xc4 => self.string_of(1)?,
            0xda | 0xc5 => self.string_of(2)?,
            0xdb | 0xc6 => self.string_of(4)?,
            0xcc => Item::Int(self.uint(1)? as i64),
            0xcd => Item::Int(self.uint(2)? as i64),
            0xce => Item::Int(self.uint(4)? as i64),
            0xcf => Item::Int(i64::try_from(self.uint(8)?).map_err(|_| "an integer past i64")?),
            0xd0 => Item::Int(i64::from(self.uint(1)? as u8 as i8)),
            0xd1 => Item::Int(i64::from(self.uint(2)? as u16 as i16)),
            0xd2 => Item::Int(i64::from(self.uint(4)? as u32 as i32)),
            0xd3 => Item::Int(self.uint(8)? as i64),
            0x90..=0x9f => self.array(usize::from(tag & 0x0f), depth)?,
            0xdc => {
                let n = self.len(2)?;
                self.array(n, depth)?
            }
            0xdd => {
                let n = self.len(4)?;
                self.array(n, depth)?
            }
            other => return Err(format!("unexpected type 0x{other:02x} at byte {at}")),
        })
    }

    fn string_of(&mut self, len_bytes: usize) -> Result<Item<'a>, String> {
        let n = self.len(len_bytes)?;
        self.string(n)
    }

    fn string(&mut self, n: usize) -> Result<Item<'a>, String> {
        Ok(Item::Str(self.take(n)?))
    }

    fn array(&mut self, n: usize, depth: usize) -> Result<Item<'a>, String> {
        if depth >= MAX_DEPTH {
            return Err(format!("arrays nested deeper than {MAX_DEPTH}"));
        }
        // Each element takes at least a byte: a length past what is left
        // is a lie, not a reason to allocate.
        let mut items = Vec::with_capacity(n.min(self.bytes.len() - self.at));
        for _ in 0..n {
            items.push(self.value(depth + 1)?);
        }
        Ok(Item::Array(items))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(text: &str) -> Item<'_> {
        Item::Str(text.as_bytes())
    }

    #[test]
    fn what_cmsgpack_writes_for_a_claim_decodes() {
        // cmsgpack.pack({{'a', false}, {}}) and ({'a', false, 12, 'x\0y'}).
        assert_eq!(
            decode(&[0x92, 0x92, 0xa1, b'a', 0xc2, 0x90]).unwrap(),
            Item::Array(vec![
                Item::Array(vec![s("a"), Item::Nil]),
                Item::Array(vec![])
            ])
        );
        assert_eq!(
            decode(&[0x94, 0xa1, b'a', 0xc2, 0x0c, 0xa3, b'x', 0, b'y']).unwrap(),
            Item::Array(vec![s("a"), Item::Nil, Item::Int(12), s("x\0y")])
        );
        // str16 and negative numbers.
        let mut long = vec![0xda, 0x01, 0x00];
        long.extend([b'z'; 256]);
        assert_eq!(decode(&long).unwrap(), Item::Str(&[b'z'; 256]));
        assert_eq!(decode(&[0xff]).unwrap(), Item::Int(-1));
        assert_eq!(decode(&[0xd1, 0xff, 0x00]).unwrap(), Item::Int(-256));
    }

    #[test]
    fn bad_bytes_are_errors_not_panics_or_huge_allocations() {
        for bad in [
            &[][..],
            &[0xa3, b'x'],                   // cut short
            &[0xdd, 0xff, 0xff, 0xff, 0xff], // an array of 4 billion
            &[0x80],                         // a map
            &[0xcb, 0, 0, 0, 0, 0, 0, 0, 0], // a float
            &[0x91, 0x01, 0x02],             // bytes after the value
        ] {
            assert!(decode(bad).is_err(), "{bad:02x?}");
        }
        let deep = [0x91; 20];
        assert!(decode(&deep).unwrap_err().contains("nested"));
    }

    #[test]
    fn reply_values_read_as_items_in_place() {
        let reply = Value::Array(vec![
            Value::BulkString(b"a\xffb".to_vec()),
            Value::SimpleString("ok".into()),
            Value::Int(7),
            Value::Nil,
            Value::Okay,
        ]);
        let Item::Array(items) = Item::of(&reply) else {
            panic!("not an array")
        };
        assert_eq!(items[0].bytes(), Some(&b"a\xffb"[..]));
        assert_eq!(items[0].text().as_deref(), Some("a\u{fffd}b"));
        assert_eq!(items[1].text().as_deref(), Some("ok"));
        assert_eq!(
            (items[2].text(), items[2].int_or_text()),
            (None, Some("7".into()))
        );
        assert_eq!(&items[3..], [Item::Nil, Item::Nil]);
    }
}
