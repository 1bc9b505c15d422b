//! Redis's listpack byte format (`listpack.c`), byte for byte: a 6-byte header (total bytes
//! u32 LE, element count u16 LE, 65535 meaning "unknown"), the elements, and an end byte 0xff.
//! Each element is its encoding (7-bit, 13-bit, 16/24/32/64-bit integers; 6-bit, 12-bit and
//! 32-bit length strings) followed by a back length so the list can be walked both ways.
//!
//! The RDB codec uses it for the listpack forms of lists, hashes and sorted sets, and streams
//! keep their nodes in it (so a node's bytes are what Redis would hold and DUMP). Strings that
//! are canonical integers are stored as integers, as `lpAppend` does.
//!
//! Reading functions take bytes that may come from a client: they are bounds-checked and
//! return `None` on anything malformed. Writing functions assume a well-formed listpack.

use crate::types::SmallBytes;
use crate::util::parse_i64;

/// Bytes of the header (total bytes, element count).
pub(crate) const HEADER: usize = 6;
/// The end byte.
const END: u8 = 0xff;
/// The header count meaning "too many to count".
const COUNT_UNKNOWN: u16 = 65535;

/// One listpack element.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Entry<'a> {
    Int(i64),
    Str(&'a [u8]),
}

impl Entry<'_> {
    /// The element as bytes (integers in decimal).
    pub(crate) fn to_bytes(self) -> SmallBytes {
        match self {
            Entry::Int(n) => SmallBytes::from(itoa::Buffer::new().format(n).as_bytes()),
            Entry::Str(s) => SmallBytes::from(s),
        }
    }

    /// The element as an integer, as `lpGetIntegerIfValid` reads it (a string element counts
    /// when it is a canonical integer).
    pub(crate) fn int(self) -> Option<i64> {
        match self {
            Entry::Int(n) => Some(n),
            Entry::Str(s) => parse_i64(s),
        }
    }

    /// The element as an integer only when it is stored as one (what Redis writes for the
    /// integers of a stream node; the in-place edits of a node rely on it).
    pub(crate) fn stored_int(self) -> Option<i64> {
        match self {
            Entry::Int(n) => Some(n),
            Entry::Str(_) => None,
        }
    }

    /// Appends the element's bytes (integers in decimal) to `out`.
    pub(crate) fn write(self, out: &mut Vec<u8>) {
        match self {
            Entry::Int(n) => out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes()),
            Entry::Str(s) => out.extend_from_slice(s),
        }
    }

    /// Whether the element equals `b` as Redis compares them (`lpGet` then memcmp).
    pub(crate) fn eq_bytes(self, b: &[u8]) -> bool {
        match self {
            Entry::Str(s) => s == b,
            Entry::Int(n) => itoa::Buffer::new().format(n).as_bytes() == b,
        }
    }
}

pub(crate) fn sign_extend(v: u64, bits: u32) -> i64 {
    let shift = 64 - bits;
    ((v << shift) as i64) >> shift
}

fn take(lp: &[u8], pos: usize, n: usize) -> Option<&[u8]> {
    lp.get(pos..pos.checked_add(n)?)
}

fn arr<const N: usize>(lp: &[u8], pos: usize) -> Option<[u8; N]> {
    let mut a = [0u8; N];
    a.copy_from_slice(take(lp, pos, N)?);
    Some(a)
}

/// Reads the element at `pos` (checking its back length); returns it and the position of the
/// next element (or of the end byte). `None` if it is malformed or `pos` is the end byte.
pub(crate) fn decode(lp: &[u8], pos: usize) -> Option<(Entry<'_>, usize)> {
    let b = *lp.get(pos)?;
    let p = pos + 1;
    let (entry, end) = if b & 0x80 == 0 {
        (Entry::Int((b & 0x7f) as i64), p)
    } else if b & 0xc0 == 0x80 {
        let n = (b & 0x3f) as usize;
        (Entry::Str(take(lp, p, n)?), p + n)
    } else if b & 0xe0 == 0xc0 {
        let v = (((b & 0x1f) as u64) << 8) | *lp.get(p)? as u64;
        (Entry::Int(sign_extend(v, 13)), p + 1)
    } else if b & 0xf0 == 0xe0 {
        let n = (((b & 0x0f) as usize) << 8) | *lp.get(p)? as usize;
        (Entry::Str(take(lp, p + 1, n)?), p + 1 + n)
    } else {
        match b {
            0xf0 => {
                let n = u32::from_le_bytes(arr(lp, p)?) as usize;
                (Entry::Str(take(lp, p + 4, n)?), p + 4 + n)
            }
            0xf1 => (Entry::Int(i16::from_le_bytes(arr(lp, p)?) as i64), p + 2),
            0xf2 => {
                let [x, y, z] = arr(lp, p)?;
                let v = u32::from_le_bytes([x, y, z, 0]) as u64;
                (Entry::Int(sign_extend(v, 24)), p + 3)
            }
            0xf3 => (Entry::Int(i32::from_le_bytes(arr(lp, p)?) as i64), p + 4),
            0xf4 => (Entry::Int(i64::from_le_bytes(arr(lp, p)?)), p + 8),
            _ => return None,
        }
    };
    let mut back = [0u8; 5];
    let n = backlen((end - pos) as u64, &mut back);
    if take(lp, end, n)? != &back[..n] {
        return None;
    }
    Some((entry, end + n))
}

/// The position of the element before the one at `pos` (`None` when `pos` is the first).
/// Reads the back length, so `lp` must be well formed up to `pos`.
pub(crate) fn prev(lp: &[u8], pos: usize) -> Option<usize> {
    let mut at = pos;
    let mut len = 0u64;
    let mut shift = 0;
    while at > HEADER {
        at -= 1;
        let b = lp[at];
        len |= ((b & 127) as u64) << shift;
        shift += 7;
        if b & 128 == 0 {
            return at.checked_sub(usize::try_from(len).ok()?);
        }
    }
    None
}

/// Parses and validates a whole listpack: header size, elements with their back lengths, the
/// end byte, and the header count (unless it is the "unknown" 65535).
pub(crate) fn parse(lp: &[u8]) -> Option<Vec<Entry<'_>>> {
    let total = u32::from_le_bytes(arr(lp, 0)?) as usize;
    let count = u16::from_le_bytes(arr(lp, 4)?);
    if total != lp.len() {
        return None;
    }
    let mut out = Vec::new();
    let mut pos = HEADER;
    while *lp.get(pos)? != END {
        let (e, next) = decode(lp, pos)?;
        out.push(e);
        pos = next;
    }
    if pos + 1 != lp.len() || (count != COUNT_UNKNOWN && count as usize != out.len()) {
        return None;
    }
    Some(out)
}

/// Appends the element for `item` (an integer when it is a canonical one, as `lpAppend`).
pub(crate) fn encode_str(out: &mut Vec<u8>, item: &[u8]) {
    if let Some(n) = parse_i64(item) {
        return encode_int(out, n);
    }
    let start = out.len();
    let len = item.len();
    if len < 64 {
        out.push(0x80 | len as u8);
    } else if len < 4096 {
        out.push(0xe0 | (len >> 8) as u8);
        out.push(len as u8);
    } else {
        out.push(0xf0);
        out.extend_from_slice(&(len as u32).to_le_bytes());
    }
    out.extend_from_slice(item);
    push_backlen(out, start);
}

/// Appends the element for the integer `n` in its smallest encoding.
pub(crate) fn encode_int(out: &mut Vec<u8>, n: i64) {
    let start = out.len();
    match n {
        0..=127 => out.push(n as u8),
        -4096..=4095 => {
            let u = (n as u64) & 0x1fff;
            out.push(0xc0 | (u >> 8) as u8);
            out.push(u as u8);
        }
        _ if i16::try_from(n).is_ok() => {
            out.push(0xf1);
            out.extend_from_slice(&(n as i16).to_le_bytes());
        }
        -8_388_608..=8_388_607 => {
            out.push(0xf2);
            out.extend_from_slice(&(n as i32).to_le_bytes()[..3]);
        }
        _ if i32::try_from(n).is_ok() => {
            out.push(0xf3);
            out.extend_from_slice(&(n as i32).to_le_bytes());
        }
        _ => {
            out.push(0xf4);
            out.extend_from_slice(&n.to_le_bytes());
        }
    }
    push_backlen(out, start);
}

fn push_backlen(out: &mut Vec<u8>, start: usize) {
    let mut back = [0u8; 5];
    let n = backlen((out.len() - start) as u64, &mut back);
    out.extend_from_slice(&back[..n]);
}

/// Writes the backward length of an element of `len` bytes (encoding and data) into `buf`;
/// returns how many bytes it takes. Read right to left, each byte holds 7 bits, and a set
/// high bit says another byte follows.
pub(crate) fn backlen(len: u64, buf: &mut [u8; 5]) -> usize {
    let n = match len {
        0..=127 => 1,
        128..=16382 => 2,
        16383..=2_097_150 => 3,
        2_097_151..=268_435_454 => 4,
        _ => 5,
    };
    for (i, slot) in buf.iter_mut().take(n).enumerate() {
        let shift = 7 * (n - 1 - i);
        let bits = ((len >> shift) & 127) as u8;
        *slot = if i == 0 { bits } else { bits | 128 };
    }
    n
}

/// An empty listpack.
pub(crate) fn new() -> Vec<u8> {
    let mut lp = Vec::with_capacity(64);
    lp.extend_from_slice(&7u32.to_le_bytes());
    lp.extend_from_slice(&0u16.to_le_bytes());
    lp.push(END);
    lp
}

/// Rewrites the header's total after the size changed, and adds `added` to its count (which
/// stays "unknown" once it gets there, as `lpInsert` keeps it).
fn fix_header(lp: &mut [u8], added: u16) {
    let total = lp.len() as u32;
    lp[..4].copy_from_slice(&total.to_le_bytes());
    let count = u16::from_le_bytes([lp[4], lp[5]]);
    if added > 0 && count != COUNT_UNKNOWN {
        lp[4..6].copy_from_slice(&count.saturating_add(added).to_le_bytes());
    }
}

/// Appends `item` at the end (`lpAppend`).
pub(crate) fn append_str(lp: &mut Vec<u8>, item: &[u8]) {
    lp.pop();
    encode_str(lp, item);
    lp.push(END);
    fix_header(lp, 1);
}

/// Appends the integer `n` at the end (`lpAppendInteger`).
pub(crate) fn append_int(lp: &mut Vec<u8>, n: i64) {
    lp.pop();
    encode_int(lp, n);
    lp.push(END);
    fix_header(lp, 1);
}

/// Replaces the element at `pos` with the integer `n` (`lpReplaceInteger`); the elements after
/// it move when the encoding's size changes.
pub(crate) fn replace_int(lp: &mut Vec<u8>, pos: usize, n: i64) {
    let Some((_, end)) = decode(lp, pos) else {
        debug_assert!(false, "replace_int on a malformed element");
        return;
    };
    let mut v = Vec::with_capacity(16);
    encode_int(&mut v, n);
    if v.len() == end - pos {
        lp[pos..end].copy_from_slice(&v);
    } else {
        lp.splice(pos..end, v);
        fix_header(lp, 0);
    }
}

/// Builds a listpack element by element (for RDB payloads).
#[derive(Default)]
pub(crate) struct Writer {
    body: Vec<u8>,
    count: usize,
}

impl Writer {
    /// Elements written so far.
    pub(crate) fn count(&self) -> usize {
        self.count
    }

    /// Whether adding an element of `item_len` bytes could take the listpack past `max` bytes
    /// (counting the header, the end byte and the worst-case encoding overhead).
    pub(crate) fn would_exceed(&self, item_len: usize, max: usize) -> bool {
        HEADER + 1 + self.body.len() + item_len + 10 > max
    }

    pub(crate) fn push(&mut self, item: &[u8]) {
        encode_str(&mut self.body, item);
        self.count += 1;
    }

    pub(crate) fn finish(self) -> Vec<u8> {
        let total = HEADER + self.body.len() + 1;
        let mut out = Vec::with_capacity(total);
        out.extend_from_slice(&(total as u32).to_le_bytes());
        out.extend_from_slice(&(self.count.min(COUNT_UNKNOWN as usize) as u16).to_le_bytes());
        out.extend_from_slice(&self.body);
        out.push(END);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_walk_back() {
        let mut lp = new();
        let items: Vec<Vec<u8>> = vec![
            b"0".to_vec(),
            b"127".to_vec(),
            b"-4096".to_vec(),
            b"30000".to_vec(),
            b"-8388608".to_vec(),
            b"2147483647".to_vec(),
            b"-9223372036854775808".to_vec(),
            b"007".to_vec(),
            vec![b'x'; 63],
            vec![b'y'; 64],
            vec![b'z'; 5000],
            vec![b'w'; 300],
        ];
        for it in &items {
            append_str(&mut lp, it);
        }
        let parsed = parse(&lp).unwrap();
        let mut w = Writer::default();
        for it in &items {
            w.push(it);
        }
        assert_eq!(w.finish(), lp);
        assert_eq!(parsed.len(), items.len());
        for (e, it) in parsed.iter().zip(&items) {
            assert!(e.eq_bytes(it));
        }
        assert!(matches!(parsed[7], Entry::Str(b"007")));
        // Walk back from the end byte to the first element.
        let mut pos = lp.len() - 1;
        let mut n = 0;
        while let Some(p) = prev(&lp, pos) {
            assert!(decode(&lp, p)
                .unwrap()
                .0
                .eq_bytes(&items[items.len() - 1 - n]));
            pos = p;
            n += 1;
        }
        assert_eq!(n, items.len());
    }

    #[test]
    fn replace_int_resizes() {
        let mut lp = new();
        for n in [5, 6, 7] {
            append_int(&mut lp, n);
        }
        let second = decode(&lp, HEADER).unwrap().1;
        replace_int(&mut lp, second, 100_000);
        replace_int(&mut lp, HEADER, 1);
        let got: Vec<i64> = parse(&lp)
            .unwrap()
            .iter()
            .map(|e| e.int().unwrap())
            .collect();
        assert_eq!(got, [1, 100_000, 7]);
        replace_int(&mut lp, second, 2);
        assert_eq!(lp.len(), 7 + 6);
        assert!(parse(&lp).is_some());
    }
}
