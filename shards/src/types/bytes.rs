//! `SmallBytes`: a byte string stored inline when short (up to 30 bytes, the size of the value
//! itself) and on the heap otherwise. Keys and string values use it, so the common small key
//! or value costs no separate allocation and no extra cache miss on lookup.

use std::borrow::Borrow;
use std::hash::{Hash, Hasher};
use std::ops::Deref;

/// Bytes kept inline.
pub const INLINE_MAX: usize = 30;

/// A byte string, inline when it fits.
#[derive(Clone)]
pub enum SmallBytes {
    Inline { len: u8, buf: [u8; INLINE_MAX] },
    Heap(Vec<u8>),
}

impl SmallBytes {
    /// Bytes allocated outside the value itself (none when inline).
    pub fn heap_bytes(&self) -> usize {
        match self {
            SmallBytes::Inline { .. } => 0,
            SmallBytes::Heap(v) => super::mem::alloc_size(v.capacity()),
        }
    }

    pub fn as_slice(&self) -> &[u8] {
        match self {
            SmallBytes::Inline { len, buf } => &buf[..*len as usize],
            SmallBytes::Heap(v) => v,
        }
    }

    /// The bytes as a growable vector (moving inline bytes to the heap), for in-place edits.
    pub fn make_vec(&mut self) -> &mut Vec<u8> {
        if let SmallBytes::Inline { len, buf } = self {
            *self = SmallBytes::Heap(buf[..*len as usize].to_vec());
        }
        match self {
            SmallBytes::Heap(v) => v,
            SmallBytes::Inline { .. } => unreachable!("converted to the heap above"),
        }
    }

    pub fn into_vec(self) -> Vec<u8> {
        match self {
            SmallBytes::Inline { len, buf } => buf[..len as usize].to_vec(),
            SmallBytes::Heap(v) => v,
        }
    }
}

impl Deref for SmallBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl AsRef<[u8]> for SmallBytes {
    fn as_ref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl Borrow<[u8]> for SmallBytes {
    fn borrow(&self) -> &[u8] {
        self.as_slice()
    }
}

impl From<&[u8]> for SmallBytes {
    fn from(s: &[u8]) -> Self {
        if s.len() <= INLINE_MAX {
            let mut buf = [0u8; INLINE_MAX];
            buf[..s.len()].copy_from_slice(s);
            SmallBytes::Inline {
                len: s.len() as u8,
                buf,
            }
        } else {
            SmallBytes::Heap(s.to_vec())
        }
    }
}

impl From<Vec<u8>> for SmallBytes {
    fn from(v: Vec<u8>) -> Self {
        if v.len() <= INLINE_MAX {
            SmallBytes::from(v.as_slice())
        } else {
            SmallBytes::Heap(v)
        }
    }
}

impl Hash for SmallBytes {
    /// Hashes exactly as `[u8]` does, so lookups by `&[u8]` find it.
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_slice().hash(state)
    }
}

impl PartialEq for SmallBytes {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for SmallBytes {}

impl std::fmt::Debug for SmallBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(self.as_slice()))
    }
}

/// Bytes of a key kept inline.
pub const KEY_INLINE_MAX: usize = 22;

/// An immutable byte string for key names: inline up to 22 bytes, otherwise one exact-size heap
/// allocation; 24 bytes either way (a key never grows, so it needs no spare capacity).
#[derive(Clone)]
pub enum SmallKey {
    Inline { len: u8, buf: [u8; KEY_INLINE_MAX] },
    Heap(Box<[u8]>),
}

impl SmallKey {
    /// Bytes allocated outside the key itself (none when inline).
    pub fn heap_bytes(&self) -> usize {
        match self {
            SmallKey::Inline { .. } => 0,
            SmallKey::Heap(b) => super::mem::alloc_size(b.len()),
        }
    }

    pub fn as_slice(&self) -> &[u8] {
        match self {
            SmallKey::Inline { len, buf } => &buf[..*len as usize],
            SmallKey::Heap(b) => b,
        }
    }
}

impl Deref for SmallKey {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl AsRef<[u8]> for SmallKey {
    fn as_ref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl Borrow<[u8]> for SmallKey {
    fn borrow(&self) -> &[u8] {
        self.as_slice()
    }
}

impl From<&[u8]> for SmallKey {
    fn from(s: &[u8]) -> Self {
        if s.len() <= KEY_INLINE_MAX {
            let mut buf = [0u8; KEY_INLINE_MAX];
            buf[..s.len()].copy_from_slice(s);
            SmallKey::Inline {
                len: s.len() as u8,
                buf,
            }
        } else {
            SmallKey::Heap(s.into())
        }
    }
}

impl Hash for SmallKey {
    /// Hashes exactly as `[u8]` does, so lookups by `&[u8]` find it.
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_slice().hash(state)
    }
}

impl PartialEq for SmallKey {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for SmallKey {}

impl std::fmt::Debug for SmallKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(self.as_slice()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::hash_map::DefaultHasher;

    fn h<T: Hash + ?Sized>(t: &T) -> u64 {
        let mut s = DefaultHasher::new();
        t.hash(&mut s);
        s.finish()
    }

    #[test]
    fn inline_and_heap() {
        assert_eq!(std::mem::size_of::<SmallBytes>(), 32);
        let short = SmallBytes::from(&b"hello"[..]);
        assert!(matches!(short, SmallBytes::Inline { .. }));
        assert_eq!(&*short, b"hello");
        assert_eq!(h(&short), h(&b"hello"[..]));
        let long = SmallBytes::from(vec![7u8; 31]);
        assert!(matches!(long, SmallBytes::Heap(_)));
        assert_eq!(long.len(), 31);
        let mut m = short.clone();
        m.make_vec().extend_from_slice(b" world");
        assert_eq!(&*m, b"hello world");
        assert_eq!(m, SmallBytes::from(&b"hello world"[..]));
        assert_eq!(SmallBytes::from(&b""[..]).into_vec(), b"");
        assert_eq!(std::mem::size_of::<SmallKey>(), 24);
        let k = SmallKey::from(&[9u8; 22][..]);
        assert!(matches!(k, SmallKey::Inline { .. }));
        let k2 = SmallKey::from(&[9u8; 23][..]);
        assert!(matches!(k2, SmallKey::Heap(_)));
        assert_eq!(k2.len(), 23);
        assert_eq!(h(&k), h(&[9u8; 22][..]));
    }
}
