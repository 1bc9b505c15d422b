//! Bitmaps: a string seen as an array of bits, the first bit being the most significant bit of
//! the first byte (Redis's convention for SETBIT, BITPOS and BITFIELD alike). Everything here
//! works on plain byte slices and knows nothing of keys or RESP.
//!
//! Guarantees: no function panics on any input; reads past the end of a slice see zero bits;
//! writes are only ever given ranges the caller has grown the string to cover (asserted).
//! Counting and combining work a 64-bit word at a time.

/// Bytes per machine word used by the word-at-a-time loops.
const WORD: usize = 8;

/// Number of set bits in `bytes`.
pub fn popcount(bytes: &[u8]) -> u64 {
    let mut words = bytes.chunks_exact(WORD);
    let mut n: u64 = 0;
    for w in &mut words {
        let mut buf = [0u8; WORD];
        buf.copy_from_slice(w);
        n += u64::from_ne_bytes(buf).count_ones() as u64;
    }
    n + words
        .remainder()
        .iter()
        .map(|b| b.count_ones() as u64)
        .sum::<u64>()
}

/// The bit at `offset` (false past the end).
pub fn get_bit(bytes: &[u8], offset: u64) -> bool {
    let Ok(byte) = usize::try_from(offset >> 3) else {
        return false;
    };
    bytes
        .get(byte)
        .is_some_and(|b| b & (0x80 >> (offset & 7)) != 0)
}

/// Sets or clears the bit at `offset`; returns its old value. The slice must cover it.
pub fn set_bit(bytes: &mut [u8], offset: u64, on: bool) -> bool {
    let mask = 0x80u8 >> (offset & 7);
    let byte = &mut bytes[(offset >> 3) as usize];
    let old = *byte & mask != 0;
    if on {
        *byte |= mask;
    } else {
        *byte &= !mask;
    }
    old
}

/// Set bits between bit `first` and bit `last`, both included (the caller keeps both within
/// the slice).
pub fn count_bits(bytes: &[u8], first: u64, last: u64) -> u64 {
    if first > last {
        return 0;
    }
    let (fb, lb) = ((first >> 3) as usize, (last >> 3) as usize);
    let Some(span) = bytes.get(fb..=lb) else {
        return 0;
    };
    let mut n = popcount(span);
    // Bits of the edge bytes outside the range were counted: take them off again.
    let head = !(0xFFu8 >> (first & 7));
    let tail = 0xFFu8.checked_shr((last & 7) as u32 + 1).unwrap_or(0);
    n -= (span[0] & head).count_ones() as u64;
    n -= (span[span.len() - 1] & tail).count_ones() as u64;
    n
}

/// The position of the first bit equal to `bit` between bit `first` and bit `last`, both
/// included (bits past the end of the slice read as zero).
pub fn find_bit(bytes: &[u8], first: u64, last: u64, bit: bool) -> Option<u64> {
    if first > last {
        return None;
    }
    // A byte that holds no wanted bit: 0x00 when looking for ones, 0xFF for zeros.
    let skip = if bit { 0x00u8 } else { 0xFF };
    let byte_at = |i: u64| -> u8 {
        usize::try_from(i)
            .ok()
            .and_then(|i| bytes.get(i))
            .copied()
            .unwrap_or(0)
    };
    let wanted = |b: u8, from: u32, to: u32| -> Option<u32> {
        // Bits `from..=to` of `b` (0 = most significant) that equal `bit`.
        let b = if bit { b } else { !b };
        let window = (0xFFu8 >> from) & !(0xFFu8.checked_shr(to + 1).unwrap_or(0));
        let hits = b & window;
        (hits != 0).then(|| hits.leading_zeros())
    };
    let (fb, lb) = (first >> 3, last >> 3);
    let (fbit, lbit) = ((first & 7) as u32, (last & 7) as u32);
    if fb == lb {
        return wanted(byte_at(fb), fbit, lbit).map(|p| fb * 8 + p as u64);
    }
    if let Some(p) = wanted(byte_at(fb), fbit, 7) {
        return Some(fb * 8 + p as u64);
    }
    // Whole bytes strictly between the edges: skip uninteresting words, then bytes.
    let mut i = fb + 1;
    let stored_end = (bytes.len() as u64).min(lb);
    while i + WORD as u64 <= stored_end {
        let at = i as usize;
        let mut buf = [0u8; WORD];
        buf.copy_from_slice(&bytes[at..at + WORD]);
        if buf != [skip; WORD] {
            break;
        }
        i += WORD as u64;
    }
    while i < lb {
        if i >= bytes.len() as u64 {
            // Past the end every bit is zero: a zero is right here, a one nowhere before `lb`.
            if !bit {
                return Some(i * 8);
            }
            break;
        }
        let b = byte_at(i);
        if b != skip {
            return wanted(b, 0, 7).map(|p| i * 8 + p as u64);
        }
        i += 1;
    }
    wanted(byte_at(lb), 0, lbit).map(|p| lb * 8 + p as u64)
}

/// A BITOP operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BitOp {
    And,
    Or,
    Xor,
    Not,
}

/// Combines `sources` (shorter ones read as zero-padded) into a string as long as the longest;
/// NOT takes the first source only.
pub fn bitop(op: BitOp, sources: &[&[u8]]) -> Vec<u8> {
    let len = sources.iter().map(|s| s.len()).max().unwrap_or(0);
    let mut out = vec![0u8; len];
    let Some((first, rest)) = sources.split_first() else {
        return out;
    };
    out[..first.len()].copy_from_slice(first);
    if op == BitOp::Not {
        combine(&mut out, &[], |a, _| !a, |a, _| !a);
        return out;
    }
    for src in rest {
        match op {
            BitOp::And => {
                combine(&mut out[..src.len()], src, |a, b| a & b, |a, b| a & b);
                out[src.len()..].fill(0);
            }
            BitOp::Or => combine(&mut out[..src.len()], src, |a, b| a | b, |a, b| a | b),
            BitOp::Xor => combine(&mut out[..src.len()], src, |a, b| a ^ b, |a, b| a ^ b),
            BitOp::Not => {}
        }
    }
    out
}

/// `dst[i] = f(dst[i], src[i])` a word at a time (`src` empty: `f(dst[i], 0)`).
fn combine(dst: &mut [u8], src: &[u8], word: fn(u64, u64) -> u64, byte: fn(u8, u8) -> u8) {
    let src_at = |i: usize| src.get(i).copied().unwrap_or(0);
    let whole = dst.len() / WORD * WORD;
    let (head, tail) = dst.split_at_mut(whole);
    for (n, d) in head.chunks_exact_mut(WORD).enumerate() {
        let mut a = [0u8; WORD];
        a.copy_from_slice(d);
        let mut b = [0u8; WORD];
        if let Some(s) = src.get(n * WORD..(n + 1) * WORD) {
            b.copy_from_slice(s);
        }
        let r = word(u64::from_ne_bytes(a), u64::from_ne_bytes(b));
        d.copy_from_slice(&r.to_ne_bytes());
    }
    for (i, d) in tail.iter_mut().enumerate() {
        *d = byte(*d, src_at(whole + i));
    }
}

// ---------------------------------------------------------------------------------------------
// BITFIELD integers.

/// A BITFIELD integer type: `i1`..`i64` or `u1`..`u63`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldType {
    pub signed: bool,
    pub bits: u32,
}

impl FieldType {
    /// Parses `i<bits>` / `u<bits>` as Redis does (the number is read up to a NUL byte).
    pub fn parse(arg: &[u8]) -> Option<FieldType> {
        let (&kind, rest) = arg.split_first()?;
        let signed = match kind {
            b'i' => true,
            b'u' => false,
            _ => return None,
        };
        let digits = rest.split(|&b| b == 0).next().unwrap_or_default();
        let bits = crate::util::parse_i64(digits)?;
        let max = if signed { 64 } else { 63 };
        (1..=max).contains(&bits).then_some(FieldType {
            signed,
            bits: bits as u32,
        })
    }

    /// The largest value of the type.
    fn max(self) -> i128 {
        if self.signed {
            (1i128 << (self.bits - 1)) - 1
        } else {
            (1i128 << self.bits) - 1
        }
    }

    /// The smallest value of the type.
    fn min(self) -> i128 {
        if self.signed {
            -(1i128 << (self.bits - 1))
        } else {
            0
        }
    }

    /// `v` reduced modulo 2^bits into the type's range (two's complement wrap-around).
    fn wrap(self, v: i128) -> i128 {
        let modulus = 1i128 << self.bits;
        let r = v.rem_euclid(modulus);
        if self.signed && r > self.max() {
            r - modulus
        } else {
            r
        }
    }
}

/// What BITFIELD does when a SET or INCRBY leaves the type's range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overflow {
    Wrap,
    Sat,
    Fail,
}

/// The value to store for `value` under the overflow policy, or `None` for FAIL.
///
/// Redis checks an unsigned SET by reinterpreting a negative value as a huge unsigned one, so
/// it overflows upwards (SAT then stores the maximum): `value` is given the same way here.
pub fn fit(ty: FieldType, value: i128, ow: Overflow) -> Option<i128> {
    if (ty.min()..=ty.max()).contains(&value) {
        return Some(value);
    }
    match ow {
        Overflow::Wrap => Some(ty.wrap(value)),
        Overflow::Sat => Some(if value > ty.max() { ty.max() } else { ty.min() }),
        Overflow::Fail => None,
    }
}

/// The raw `bits`-bit field at bit `offset`, most significant bit first (bits past the end
/// read as zero).
fn get_raw(bytes: &[u8], offset: u64, bits: u32) -> u64 {
    // A field of up to 64 bits spans at most 9 bytes.
    let start = offset >> 3;
    let mut window: u128 = 0;
    for i in 0..9u64 {
        let b = usize::try_from(start.saturating_add(i))
            .ok()
            .and_then(|i| bytes.get(i))
            .copied()
            .unwrap_or(0);
        window = (window << 8) | b as u128;
    }
    let shift = 72 - (offset & 7) as u32 - bits;
    ((window >> shift) & ((1u128 << bits) - 1)) as u64
}

/// The field of type `ty` at bit `offset`, as an integer.
pub fn get_field(bytes: &[u8], offset: u64, ty: FieldType) -> i128 {
    let raw = get_raw(bytes, offset, ty.bits);
    if ty.signed {
        // Sign-extend from the field's top bit.
        let unused = 64 - ty.bits;
        (((raw << unused) as i64) >> unused) as i128
    } else {
        raw as i128
    }
}

/// Stores the low `ty.bits` bits of `value` at bit `offset`. The slice must cover the field.
pub fn set_field(bytes: &mut [u8], offset: u64, ty: FieldType, value: i128) {
    let bits = ty.bits as u64;
    let v = value as u64;
    for j in 0..bits {
        let on = (v >> (bits - 1 - j)) & 1 == 1;
        set_bit(bytes, offset + j, on);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn model_bits(bytes: &[u8]) -> Vec<bool> {
        (0..bytes.len() as u64 * 8)
            .map(|i| get_bit(bytes, i))
            .collect()
    }

    #[test]
    fn bits_and_counts() {
        let mut b = vec![0u8; 3];
        assert!(!set_bit(&mut b, 1, true));
        assert!(set_bit(&mut b, 1, true));
        assert_eq!(b, [0x40, 0, 0]);
        assert!(get_bit(&b, 1));
        assert!(!get_bit(&b, 1000));
        assert!(!get_bit(&b, u64::MAX));
        assert_eq!(popcount(b"foobar"), 26);
        assert_eq!(count_bits(b"foobar", 0, 47), 26);
        assert_eq!(count_bits(b"foobar", 5, 30), 17);
        assert_eq!(count_bits(b"\xff", 3, 3), 1);
        assert_eq!(count_bits(b"\xff", 3, 2), 0);
    }

    #[test]
    fn find() {
        assert_eq!(find_bit(b"\xff\xf0\x00", 0, 23, false), Some(12));
        assert_eq!(find_bit(b"\x00\xff\xf0", 0, 23, true), Some(8));
        assert_eq!(find_bit(b"\x00\x00\x00", 0, 23, true), None);
        assert_eq!(find_bit(b"\xff\xff\xff", 0, 23, false), None);
        assert_eq!(find_bit(b"\xff\xff\xff", 0, 31, false), Some(24));
        assert_eq!(find_bit(b"\xff", 3, 5, false), None);
        assert_eq!(find_bit(&[0xff; 40], 1, 400, false), Some(320));
        assert_eq!(find_bit(&[0; 40], 1, 400, true), None);
        let mut long = vec![0u8; 100];
        long[77] = 1;
        assert_eq!(find_bit(&long, 3, 799, true), Some(77 * 8 + 7));
        assert_eq!(find_bit(&long, 3, 600, true), None);
    }

    #[test]
    fn bitops() {
        assert_eq!(bitop(BitOp::And, &[b"\xff\x0f", b"\x0f"]), b"\x0f\x00");
        assert_eq!(bitop(BitOp::Or, &[b"\xf0", b"\x0f\x01"]), b"\xff\x01");
        assert_eq!(bitop(BitOp::Xor, &[b"\xff", b"\x0f", b""]), b"\xf0");
        assert_eq!(bitop(BitOp::Not, &[b"\x0f\x00"]), b"\xf0\xff");
        assert_eq!(bitop(BitOp::And, &[b"", b""]), b"");
        let a: Vec<u8> = (0..100u8).collect();
        let b: Vec<u8> = (0..77u8).map(|x| x.wrapping_mul(37)).collect();
        let and = bitop(BitOp::And, &[&a, &b]);
        for i in 0..100 {
            let want = a[i] & b.get(i).copied().unwrap_or(0);
            assert_eq!(and[i], want, "{i}");
        }
    }

    #[test]
    fn field_types() {
        let t = |s: &[u8]| FieldType::parse(s).map(|t| (t.signed, t.bits));
        assert_eq!(t(b"i64"), Some((true, 64)));
        assert_eq!(t(b"u63"), Some((false, 63)));
        assert_eq!(t(b"u64"), None);
        assert_eq!(t(b"i0"), None);
        assert_eq!(t(b"I8"), None);
        assert_eq!(t(b"i08"), None);
        assert_eq!(t(b"i8\x00junk"), Some((true, 8)));
        assert_eq!(t(b""), None);
        assert_eq!(t(b"u"), None);
    }

    #[test]
    fn fields() {
        let i8t = FieldType::parse(b"i8").unwrap();
        let u4 = FieldType::parse(b"u4").unwrap();
        let i64t = FieldType::parse(b"i64").unwrap();
        let mut b = vec![0u8; 9];
        set_field(&mut b, 3, i8t, -1);
        assert_eq!(b[..2], [0x1f, 0xe0]);
        assert_eq!(get_field(&b, 3, i8t), -1);
        assert_eq!(get_field(&b, 3, u4), 15);
        set_field(&mut b, 5, i64t, i64::MIN as i128);
        assert_eq!(get_field(&b, 5, i64t), i64::MIN as i128);
        assert_eq!(get_field(b"\xff", 4, i8t), -16);
        assert_eq!(fit(u4, 16, Overflow::Wrap), Some(0));
        assert_eq!(fit(u4, -1, Overflow::Wrap), Some(15));
        assert_eq!(fit(u4, 16, Overflow::Sat), Some(15));
        assert_eq!(fit(u4, -1, Overflow::Sat), Some(0));
        assert_eq!(fit(i8t, 128, Overflow::Wrap), Some(-128));
        assert_eq!(fit(i8t, -129, Overflow::Sat), Some(-128));
        assert_eq!(fit(i8t, 200, Overflow::Fail), None);
        assert_eq!(
            fit(i64t, i64::MAX as i128 + 1, Overflow::Wrap),
            Some(i64::MIN as i128)
        );
    }

    proptest! {
        #[test]
        fn find_and_count_match_a_bool_model(
            bytes in proptest::collection::vec(prop_oneof![Just(0u8), Just(0xff), any::<u8>()], 0..40),
            first in 0u64..400,
            len in 0u64..400,
            bit: bool,
        ) {
            let model = model_bits(&bytes);
            let last = first + len;
            let want = (first..=last).find(|&i| model.get(i as usize).copied().unwrap_or(false) == bit);
            prop_assert_eq!(find_bit(&bytes, first, last, bit), want);
            let stored = bytes.len() as u64 * 8;
            if last < stored {
                let want = (first..=last).filter(|&i| model[i as usize]).count() as u64;
                prop_assert_eq!(count_bits(&bytes, first, last), want);
            }
        }

        #[test]
        fn fields_match_a_u64_model(
            bytes in proptest::collection::vec(any::<u8>(), 16..24),
            offset in 0u64..64,
            bits in 1u32..=64,
            value: u64,
        ) {
            let mut b = bytes.clone();
            let ty = FieldType { signed: true, bits };
            set_field(&mut b, offset, ty, value as i64 as i128);
            // The model: the same bits one at a time.
            for j in 0..bits as u64 {
                let want = (value >> (bits as u64 - 1 - j)) & 1 == 1;
                prop_assert_eq!(get_bit(&b, offset + j), want);
            }
            // Bits outside the field are untouched.
            for i in (0..offset).chain(offset + bits as u64..b.len() as u64 * 8) {
                prop_assert_eq!(get_bit(&b, i), get_bit(&bytes, i));
            }
            let raw = if bits == 64 { value } else { value & ((1u64 << bits) - 1) };
            let unsigned = FieldType { signed: false, bits: bits.min(63) };
            if bits <= 63 {
                prop_assert_eq!(get_field(&b, offset, unsigned), raw as i128);
            }
            let signed = get_field(&b, offset, ty);
            prop_assert_eq!(ty.wrap(signed), signed);
            prop_assert_eq!(signed.rem_euclid(1i128 << bits), raw as i128);
        }

        #[test]
        fn bitop_matches_a_bytewise_model(
            srcs in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..50), 1..4),
            op in 0usize..4,
        ) {
            let op = [BitOp::And, BitOp::Or, BitOp::Xor, BitOp::Not][op];
            let refs: Vec<&[u8]> = srcs.iter().map(|s| s.as_slice()).collect();
            let got = bitop(op, &refs);
            let len = srcs.iter().map(|s| s.len()).max().unwrap_or(0);
            prop_assert_eq!(got.len(), len);
            for (i, &g) in got.iter().enumerate() {
                let at = |s: &Vec<u8>| s.get(i).copied().unwrap_or(0);
                let want = match op {
                    BitOp::Not => !at(&srcs[0]),
                    BitOp::And => srcs.iter().map(at).fold(0xff, |a, b| a & b),
                    BitOp::Or => srcs.iter().map(at).fold(0, |a, b| a | b),
                    BitOp::Xor => srcs.iter().map(at).fold(0, |a, b| a ^ b),
                };
                prop_assert_eq!(g, want);
            }
        }
    }
}
