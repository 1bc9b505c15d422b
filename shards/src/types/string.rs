//! The string type: bytes, or an integer kept as a number (Redis's `int` encoding).

use super::SmallBytes;
use crate::limits::{EMBSTR_LEN_MAX, SHARED_INTEGERS};
use crate::util::parse_i64;
use std::borrow::Cow;

/// A string value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Str {
    /// A string that is the canonical decimal form of an i64.
    Int(i64),
    /// Bytes; `raw` marks strings Redis keeps in the `raw` encoding even when short (the
    /// results of APPEND and SETRANGE).
    Bytes { data: SmallBytes, raw: bool },
}

impl Str {
    /// Stores `data` with the encoding Redis would pick for a SET.
    pub fn from_bytes(data: &[u8]) -> Str {
        if data.len() <= 20 {
            if let Some(n) = parse_i64(data) {
                return Str::Int(n);
            }
        }
        Str::Bytes {
            data: SmallBytes::from(data),
            raw: false,
        }
    }

    /// Stores `data` as a `raw` string (APPEND and SETRANGE results).
    pub fn raw(data: Vec<u8>) -> Str {
        Str::Bytes {
            data: data.into(),
            raw: true,
        }
    }

    /// The bytes as a growable vector for changing them in place (SETBIT, BITFIELD, the
    /// HyperLogLog commands); the string reports the `raw` encoding from now on, as Redis's
    /// unshared copy does.
    pub fn bytes_mut(&mut self) -> &mut Vec<u8> {
        if let Str::Int(n) = *self {
            *self = Str::Bytes {
                data: SmallBytes::Heap(itoa::Buffer::new().format(n).as_bytes().to_vec()),
                raw: true,
            };
        }
        match self {
            Str::Bytes { data, raw } => {
                *raw = true;
                data.make_vec()
            }
            Str::Int(_) => unreachable!("converted to bytes above"),
        }
    }

    /// The string's bytes.
    pub fn as_bytes(&self) -> Cow<'_, [u8]> {
        match self {
            Str::Int(n) => Cow::Owned(itoa::Buffer::new().format(*n).as_bytes().to_vec()),
            Str::Bytes { data, .. } => Cow::Borrowed(data),
        }
    }

    /// Appends the string's bytes to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        match self {
            Str::Int(n) => out.extend_from_slice(itoa::Buffer::new().format(*n).as_bytes()),
            Str::Bytes { data, .. } => out.extend_from_slice(data),
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Str::Int(n) => itoa::Buffer::new().format(*n).len(),
            Str::Bytes { data, .. } => data.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The value as an integer, if it is one (for INCR and friends).
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Str::Int(n) => Some(*n),
            Str::Bytes { data, .. } => parse_i64(data),
        }
    }

    /// Takes the bytes out, converting an integer to its decimal form.
    pub fn into_bytes(self) -> Vec<u8> {
        match self {
            Str::Int(n) => itoa::Buffer::new().format(n).as_bytes().to_vec(),
            Str::Bytes { data, .. } => data.into_vec(),
        }
    }

    /// Bytes allocated outside the value (none for an integer or an inline string).
    pub fn heap_bytes(&self) -> usize {
        match self {
            Str::Int(_) => 0,
            Str::Bytes { data, .. } => data.heap_bytes(),
        }
    }

    /// OBJECT ENCODING's name.
    pub fn encoding(&self) -> &'static str {
        match self {
            Str::Int(_) => "int",
            Str::Bytes { raw: true, .. } => "raw",
            Str::Bytes { data, .. } if data.len() <= EMBSTR_LEN_MAX => "embstr",
            Str::Bytes { .. } => "raw",
        }
    }

    /// OBJECT REFCOUNT: Redis shares the objects of small non-negative integers.
    pub fn refcount(&self) -> i64 {
        match self {
            Str::Int(n) if (0..SHARED_INTEGERS).contains(n) => i32::MAX as i64,
            _ => 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings() {
        assert_eq!(Str::from_bytes(b"123").encoding(), "int");
        assert_eq!(Str::from_bytes(b"0123").encoding(), "embstr");
        assert_eq!(Str::from_bytes(&[b'a'; 44]).encoding(), "embstr");
        assert_eq!(Str::from_bytes(&[b'a'; 45]).encoding(), "raw");
        assert_eq!(Str::raw(b"a".to_vec()).encoding(), "raw");
        assert_eq!(Str::from_bytes(b"-42").as_bytes().as_ref(), b"-42");
        assert_eq!(Str::from_bytes(b"5").refcount(), i32::MAX as i64);
    }
}
