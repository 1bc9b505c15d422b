//! `Pairpack`: a compact sequence of (field, value) byte-string pairs in one allocation, the small
//! encoding of hashes. Each pair starts with one header byte holding both lengths as nibbles
//! (a nibble of 15 means "15 or more": the rest follows as LEB128 just before those bytes), so
//! a pair of short strings costs one byte over its data, half of what a length byte per string
//! would. For the typical small hash that is the difference between a 64- and a 48-byte
//! allocation. Pairs are inserted and removed whole, so no edit ever re-encodes other pairs.

use super::listpack::{read_varint, write_varint};

/// Lengths below this fit their nibble.
const NIBBLE_MAX: usize = 15;

fn nibble(len: usize) -> u8 {
    len.min(NIBBLE_MAX) as u8
}

/// Appends the encoding of one string whose header nibble is already written.
fn put(out: &mut Vec<u8>, item: &[u8]) {
    if item.len() >= NIBBLE_MAX {
        write_varint(out, (item.len() - NIBBLE_MAX) as u64);
    }
    out.extend_from_slice(item);
}

fn encode(out: &mut Vec<u8>, field: &[u8], value: &[u8]) {
    out.push(nibble(field.len()) << 4 | nibble(value.len()));
    put(out, field);
    put(out, value);
}

/// Reads one string at `pos` whose header nibble is `nib`; returns it and the position after.
fn take(buf: &[u8], mut pos: usize, nib: u8) -> (&[u8], usize) {
    let mut len = nib as usize;
    if len == NIBBLE_MAX {
        let (extra, used) = read_varint(buf, pos);
        pos += used;
        len = len.saturating_add(usize::try_from(extra).unwrap_or(usize::MAX));
    }
    let end = pos.saturating_add(len).min(buf.len());
    (&buf[pos.min(end)..end], end)
}

/// Reads the pair at `pos`; returns it and the position of the next pair.
fn pair_at(buf: &[u8], pos: usize) -> Option<(&[u8], &[u8], usize)> {
    let &h = buf.get(pos)?;
    let (field, pos) = take(buf, pos + 1, h >> 4);
    let (value, pos) = take(buf, pos, h & 0x0f);
    Some((field, value, pos))
}

/// A packed sequence of (field, value) pairs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pairpack {
    buf: Vec<u8>,
    count: u32,
}

/// Iterator over a pairpack's pairs.
pub struct Iter<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a [u8], &'a [u8]);
    fn next(&mut self) -> Option<Self::Item> {
        let (f, v, next) = pair_at(self.buf, self.pos)?;
        self.pos = next;
        Some((f, v))
    }
}

impl Pairpack {
    pub fn new() -> Pairpack {
        Pairpack::default()
    }

    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn iter(&self) -> Iter<'_> {
        Iter {
            buf: &self.buf,
            pos: 0,
        }
    }

    /// The index, byte range and value of the pair whose field is `field`.
    fn locate(&self, field: &[u8]) -> Option<(usize, usize, usize, &[u8])> {
        let mut pos = 0;
        let mut i = 0;
        while let Some((f, v, next)) = pair_at(&self.buf, pos) {
            if f == field {
                return Some((i, pos, next, v));
            }
            pos = next;
            i += 1;
        }
        None
    }

    /// The value under `field`.
    pub fn get(&self, field: &[u8]) -> Option<&[u8]> {
        self.locate(field).map(|(_, _, _, v)| v)
    }

    /// Position of the pair whose field is `field`.
    pub fn find(&self, field: &[u8]) -> Option<usize> {
        self.locate(field).map(|(i, ..)| i)
    }

    /// Appends a pair (the caller knows `field` is not present).
    pub fn push(&mut self, field: &[u8], value: &[u8]) {
        encode(&mut self.buf, field, value);
        self.count += 1;
    }

    /// Sets the value of `field`, appending the pair if it is new. Returns whether it was new.
    pub fn set(&mut self, field: &[u8], value: &[u8]) -> bool {
        match self.locate(field) {
            Some((_, start, end, _)) => {
                let mut enc = Vec::with_capacity(field.len() + value.len() + 4);
                encode(&mut enc, field, value);
                self.buf.splice(start..end, enc);
                false
            }
            None => {
                self.push(field, value);
                true
            }
        }
    }

    /// Removes the pair whose field is `field`. Returns whether it was there.
    pub fn remove(&mut self, field: &[u8]) -> bool {
        match self.locate(field) {
            Some((_, start, end, _)) => {
                self.buf.drain(start..end);
                self.count -= 1;
                true
            }
            None => false,
        }
    }

    /// Bytes allocated (for memory accounting).
    pub fn bytes(&self) -> usize {
        self.buf.capacity()
    }

    /// Bytes the packed pairs occupy (without spare capacity).
    pub fn used_bytes(&self) -> usize {
        self.buf.len()
    }

    /// Releases spare capacity.
    pub fn shrink(&mut self) {
        self.buf.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn short_pairs_cost_one_byte_each() {
        let mut p = Pairpack::new();
        for (f, v) in [("name", "n123456"), ("age", "45"), ("city", "paris")] {
            assert!(p.set(f.as_bytes(), v.as_bytes()));
        }
        assert_eq!(p.used_bytes(), 3 + 4 + 7 + 3 + 2 + 4 + 5);
        assert_eq!(p.get(b"age"), Some(&b"45"[..]));
        assert_eq!(p.find(b"city"), Some(2));
        assert!(!p.set(b"age", &[b'x'; 15]));
        assert!(!p.set(b"name", &[b'y'; 200]));
        assert_eq!(p.get(b"age"), Some(&[b'x'; 15][..]));
        assert_eq!(p.get(b"name").map(|v| v.len()), Some(200));
        assert!(p.remove(b"age") && !p.remove(b"age"));
        let pairs: Vec<_> = p.iter().map(|(f, v)| (f.to_vec(), v.len())).collect();
        assert_eq!(pairs, vec![(b"name".to_vec(), 200), (b"city".to_vec(), 5)]);
        assert_eq!(p.len(), 2);
        assert!(p.set(b"", b""));
        assert_eq!(p.get(b""), Some(&b""[..]));
    }

    #[test]
    fn long_lengths_round_trip() {
        let mut p = Pairpack::new();
        for len in [14usize, 15, 16, 142, 143, 144, 16_400, 70_000] {
            let f = vec![b'f'; len];
            let v = vec![b'v'; len + 1];
            p.push(&f, &v);
            assert_eq!(p.get(&f), Some(v.as_slice()));
        }
        assert_eq!(p.len(), 8);
    }

    proptest! {
        /// A pairpack behaves like an ordered map under any sequence of sets and removes.
        #[test]
        fn matches_model(ops in proptest::collection::vec((any::<bool>(), 0u8..12, proptest::collection::vec(any::<u8>(), 0..40)), 0..80)) {
            let mut p = Pairpack::new();
            let mut model: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
            for (is_set, f, v) in ops {
                // Fields of varied lengths, some past the nibble limit.
                let field = vec![b'a' + f; (f as usize) * 3];
                if is_set {
                    let new = p.set(&field, &v);
                    match model.iter_mut().find(|(mf, _)| *mf == field) {
                        Some(e) => { prop_assert!(!new); e.1 = v; }
                        None => { prop_assert!(new); model.push((field, v)); }
                    }
                } else {
                    let had = model.iter().position(|(mf, _)| *mf == field);
                    prop_assert_eq!(p.remove(&field), had.is_some());
                    if let Some(i) = had { model.remove(i); }
                }
                prop_assert_eq!(p.len(), model.len());
            }
            let got: Vec<(Vec<u8>, Vec<u8>)> = p.iter().map(|(f, v)| (f.to_vec(), v.to_vec())).collect();
            prop_assert_eq!(got, model);
        }
    }
}
