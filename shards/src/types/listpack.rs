//! `Listpack`: a compact sequence of byte strings in one allocation, the small encoding of
//! lists, hashes and sets (Redis's listpack, in spirit: not its byte format). Each element is a
//! LEB128 length followed by its bytes, so a 5-byte element costs 6 bytes. Access by position is
//! a linear walk, which is what small collections (at most a few hundred elements, bounded by
//! the `*-max-listpack-*` options) can afford.

/// Reads a LEB128 number at `pos` (bits past 64 are dropped); returns (number, bytes used).
/// The packed encodings of lists, hashes and sorted sets share it.
pub(crate) fn read_varint(buf: &[u8], pos: usize) -> (u64, usize) {
    let mut n = 0u64;
    let mut shift = 0;
    let mut i = pos;
    while let Some(&b) = buf.get(i) {
        if shift < 64 {
            n |= u64::from(b & 0x7f) << shift;
        }
        i += 1;
        if b & 0x80 == 0 {
            break;
        }
        shift += 7;
    }
    (n, i - pos)
}

/// Appends `n` in LEB128.
pub(crate) fn write_varint(out: &mut Vec<u8>, mut n: u64) {
    loop {
        let b = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

/// Reads a LEB128 length at `pos`; returns (length, bytes used).
fn read_len(buf: &[u8], pos: usize) -> (usize, usize) {
    let (n, used) = read_varint(buf, pos);
    (usize::try_from(n).unwrap_or(usize::MAX), used)
}

fn write_len(out: &mut Vec<u8>, n: usize) {
    write_varint(out, n as u64);
}

fn encoded(item: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(item.len() + 2);
    write_len(&mut v, item.len());
    v.extend_from_slice(item);
    v
}

/// A packed sequence of byte strings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listpack {
    buf: Vec<u8>,
    count: u32,
}

/// Iterator over a listpack's elements.
pub struct Iter<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Iterator for Iter<'a> {
    type Item = &'a [u8];
    fn next(&mut self) -> Option<&'a [u8]> {
        if self.pos >= self.buf.len() {
            return None;
        }
        let (len, used) = read_len(self.buf, self.pos);
        let start = self.pos + used;
        let end = (start + len).min(self.buf.len());
        self.pos = end;
        Some(&self.buf[start..end])
    }
}

impl Listpack {
    pub fn new() -> Listpack {
        Listpack::default()
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Bytes used by the packed elements (for memory accounting).
    pub fn bytes(&self) -> usize {
        self.buf.capacity()
    }

    pub fn iter(&self) -> Iter<'_> {
        Iter {
            buf: &self.buf,
            pos: 0,
        }
    }

    /// Byte offset of element `i` (or the end, for `i == len`).
    fn offset(&self, i: usize) -> usize {
        let mut pos = 0;
        for _ in 0..i {
            if pos >= self.buf.len() {
                break;
            }
            let (len, used) = read_len(&self.buf, pos);
            pos += used + len;
        }
        pos.min(self.buf.len())
    }

    /// Element `i`, if it exists.
    pub fn get(&self, i: usize) -> Option<&[u8]> {
        if i >= self.len() {
            return None;
        }
        self.iter().nth(i)
    }

    pub fn push_back(&mut self, item: &[u8]) {
        write_len(&mut self.buf, item.len());
        self.buf.extend_from_slice(item);
        self.count += 1;
    }

    pub fn push_front(&mut self, item: &[u8]) {
        self.insert(0, item);
    }

    /// Inserts before element `i` (`i == len` appends).
    pub fn insert(&mut self, i: usize, item: &[u8]) {
        let at = self.offset(i.min(self.len()));
        let enc = encoded(item);
        self.buf.splice(at..at, enc);
        self.count += 1;
    }

    /// Removes element `i` and returns it.
    pub fn remove(&mut self, i: usize) -> Option<Vec<u8>> {
        if i >= self.len() {
            return None;
        }
        let at = self.offset(i);
        let (len, used) = read_len(&self.buf, at);
        let item = self.buf[at + used..at + used + len].to_vec();
        self.buf.drain(at..at + used + len);
        self.count -= 1;
        Some(item)
    }

    /// Replaces element `i`.
    pub fn replace(&mut self, i: usize, item: &[u8]) {
        if i >= self.len() {
            return;
        }
        let at = self.offset(i);
        let (len, used) = read_len(&self.buf, at);
        self.buf.splice(at..at + used + len, encoded(item));
    }

    /// Position of the first element equal to `item`.
    pub fn find(&self, item: &[u8]) -> Option<usize> {
        self.iter().position(|e| e == item)
    }

    /// Keeps only the elements for which `keep` is true; returns how many were removed.
    pub fn retain(&mut self, mut keep: impl FnMut(usize, &[u8]) -> bool) -> usize {
        let mut out = Vec::with_capacity(self.buf.len());
        let mut kept = 0;
        for (i, e) in self.iter().enumerate() {
            if keep(i, e) {
                write_len(&mut out, e.len());
                out.extend_from_slice(e);
                kept += 1;
            }
        }
        let removed = self.count as usize - kept;
        self.buf = out;
        self.count = kept as u32;
        removed
    }

    /// Releases spare capacity.
    pub fn shrink(&mut self) {
        self.buf.shrink_to_fit();
    }

    /// Bytes the packed elements occupy (without spare capacity).
    pub fn used_bytes(&self) -> usize {
        self.buf.len()
    }

    /// Releases spare capacity beyond `capacity` bytes.
    pub fn shrink_to(&mut self, capacity: usize) {
        self.buf.shrink_to(capacity);
    }
}

impl<'a> FromIterator<&'a [u8]> for Listpack {
    fn from_iter<I: IntoIterator<Item = &'a [u8]>>(iter: I) -> Self {
        let mut lp = Listpack::new();
        for e in iter {
            lp.push_back(e);
        }
        lp
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn basics() {
        let mut lp = Listpack::new();
        lp.push_back(b"b");
        lp.push_front(b"a");
        lp.push_back(&[b'x'; 300]);
        lp.insert(2, b"c");
        assert_eq!(lp.len(), 4);
        assert_eq!(lp.get(0), Some(&b"a"[..]));
        assert_eq!(lp.get(2), Some(&b"c"[..]));
        assert_eq!(lp.get(3).map(|e| e.len()), Some(300));
        assert_eq!(lp.remove(1), Some(b"b".to_vec()));
        lp.replace(0, b"zz");
        assert_eq!(
            lp.iter().collect::<Vec<_>>(),
            vec![&b"zz"[..], b"c", &[b'x'; 300][..]]
        );
        assert_eq!(lp.find(b"c"), Some(1));
        assert_eq!(lp.retain(|_, e| e.len() < 10), 1);
        assert_eq!(lp.len(), 2);
    }

    proptest! {
        /// A listpack behaves like a Vec<Vec<u8>> under any sequence of edits.
        #[test]
        fn matches_vec_model(ops in proptest::collection::vec((0u8..5, 0usize..20, proptest::collection::vec(any::<u8>(), 0..200)), 0..60)) {
            let mut lp = Listpack::new();
            let mut model: Vec<Vec<u8>> = Vec::new();
            for (op, i, item) in ops {
                match op {
                    0 => { lp.push_back(&item); model.push(item); }
                    1 => { lp.push_front(&item); model.insert(0, item); }
                    2 => { let i = i.min(model.len()); lp.insert(i, &item); model.insert(i, item); }
                    3 => { if i < model.len() { prop_assert_eq!(lp.remove(i), Some(model.remove(i))); } }
                    _ => { if i < model.len() { lp.replace(i, &item); model[i] = item; } }
                }
                prop_assert_eq!(lp.len(), model.len());
            }
            let got: Vec<Vec<u8>> = lp.iter().map(|e| e.to_vec()).collect();
            prop_assert_eq!(got, model);
        }
    }
}
