//! HyperLogLog, kept in the very bytes Redis keeps it in, so that a value made by either server
//! can be read, counted and merged by the other (and GET returns the same bytes for the same
//! PFADD calls).
//!
//! Layout: a 16-byte header — the magic `HYLL`, an encoding byte (0 dense, 1 sparse), three
//! unused bytes, and the last computed cardinality as a little-endian u64 whose top bit, when
//! set, says the cached value is stale — followed by 16384 six-bit registers, either:
//! - **dense**: packed little-endian-first, register `i` in bits `6i..6i+6` of the byte array
//!   (12288 bytes);
//! - **sparse**: a run-length code of three opcodes: `00xxxxxx` (ZERO, 1..=64 zero registers),
//!   `01xxxxxx yyyyyyyy` (XZERO, 1..=16384 zero registers, 14-bit length) and `1vvvvvxx` (VAL,
//!   1..=4 registers holding 1..=32).
//!
//! An element is hashed with MurmurHash64A (seed `0xadc83b19`); the low 14 bits pick the
//! register, and the register keeps the longest run seen of the remaining 50 bits' trailing
//! zeros plus one. The estimate is Otmar Ertl's improved raw estimator (arXiv:1702.01284), with
//! the same floating point steps as Redis so cached cardinalities match to the bit.
//!
//! A sparse value grows in place (splitting the opcode that covers a register, then merging
//! neighbouring VAL opcodes) and turns dense when a register needs more than 32 or when the
//! string would pass `hll-sparse-max-bytes`. Corrupted values (a sparse code that does not
//! cover exactly 16384 registers) give [`Corrupt`]; nothing here panics on any input.

use std::fmt::Write as _;

/// log2 of the register count.
const P: u32 = 14;
/// Hash bits left after the register index.
const Q: usize = 64 - P as usize;
/// Number of registers.
pub const REGISTERS: usize = 1 << P;
/// Bits per dense register.
const REG_BITS: usize = 6;
/// Header length: magic, encoding, 3 unused bytes, cached cardinality.
pub const HEADER_LEN: usize = 16;
/// Length of a dense value.
pub const DENSE_LEN: usize = HEADER_LEN + (REGISTERS * REG_BITS).div_ceil(8);
/// Default of `hll-sparse-max-bytes`.
pub const SPARSE_MAX_BYTES_DEFAULT: usize = 3000;

const MAGIC: &[u8; 4] = b"HYLL";
const ENC_DENSE: u8 = 0;
const ENC_SPARSE: u8 = 1;
/// Where the encoding byte sits in the header.
const ENC_AT: usize = 4;
/// The cached cardinality's bytes, and the byte whose top bit marks it stale.
const CARD_AT: usize = 8;
const CARD_STALE_BYTE: usize = 15;
/// The largest register value and the longest run a VAL opcode holds.
const VAL_MAX: u8 = 32;
const VAL_RUN_MAX: usize = 4;
/// The longest run of zeros a one-byte ZERO opcode holds (longer runs take XZERO).
const ZERO_RUN_MAX: usize = 64;
/// MurmurHash64A's seed in Redis's HyperLogLog.
const SEED: u64 = 0xadc8_3b19;
/// 1 / (2 ln 2), the estimator's limit constant.
const ALPHA_INF: f64 = 0.721_347_520_444_481_7;

/// How the registers are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Dense,
    Sparse,
}

impl Encoding {
    /// The name PFDEBUG ENCODING answers.
    pub fn name(self) -> &'static str {
        match self {
            Encoding::Dense => "dense",
            Encoding::Sparse => "sparse",
        }
    }
}

/// A sparse value whose opcodes do not describe exactly 16384 registers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Corrupt;

/// The encoding of `s` if it passes Redis's checks for a HyperLogLog string: long enough for
/// the header, the magic, a known encoding, and for dense the exact length. (A sparse body is
/// only checked when it is read.)
pub fn encoding_of(s: &[u8]) -> Option<Encoding> {
    if s.len() < HEADER_LEN || &s[..4] != MAGIC {
        return None;
    }
    match s[ENC_AT] {
        ENC_DENSE if s.len() == DENSE_LEN => Some(Encoding::Dense),
        ENC_SPARSE => Some(Encoding::Sparse),
        _ => None,
    }
}

/// A new, empty HyperLogLog: sparse, every register zero (one XZERO), cached cardinality 0.
pub fn new_sparse() -> Vec<u8> {
    let mut s = Vec::with_capacity(HEADER_LEN + 2);
    s.extend_from_slice(MAGIC);
    s.push(ENC_SPARSE);
    s.extend_from_slice(&[0; 11]);
    s.extend_from_slice(&xzero(REGISTERS));
    s
}

/// The cached cardinality, if it is current.
pub fn cached(s: &[u8]) -> Option<u64> {
    let card: [u8; 8] = s.get(CARD_AT..HEADER_LEN)?.try_into().ok()?;
    (card[7] & 0x80 == 0).then(|| u64::from_le_bytes(card))
}

/// Records a freshly computed cardinality in the header.
pub fn store_cached(s: &mut [u8], card: u64) {
    if let Some(c) = s.get_mut(CARD_AT..HEADER_LEN) {
        c.copy_from_slice(&card.to_le_bytes());
    }
}

/// Marks the cached cardinality stale.
pub fn invalidate(s: &mut [u8]) {
    if let Some(b) = s.get_mut(CARD_STALE_BYTE) {
        *b |= 0x80;
    }
}

// ---------------------------------------------------------------------------------------------
// Hashing.

/// MurmurHash64A (Austin Appleby), reading 8-byte blocks little-endian as Redis does on every
/// architecture.
pub fn murmur64a(data: &[u8], seed: u64) -> u64 {
    const M: u64 = 0xc6a4_a793_5bd1_e995;
    const R: u32 = 47;
    let mut h = seed ^ (data.len() as u64).wrapping_mul(M);
    let mut blocks = data.chunks_exact(8);
    for block in &mut blocks {
        let mut b = [0u8; 8];
        b.copy_from_slice(block);
        let mut k = u64::from_le_bytes(b).wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h ^= k;
        h = h.wrapping_mul(M);
    }
    let tail = blocks.remainder();
    if !tail.is_empty() {
        for (i, &b) in tail.iter().enumerate() {
            h ^= (b as u64) << (8 * i);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> R;
    h = h.wrapping_mul(M);
    h ^= h >> R;
    h
}

/// The register an element lands in and the value it offers: one plus the number of trailing
/// zero bits of the hash above the index bits (at most Q + 1).
pub fn locate(element: &[u8]) -> (usize, u8) {
    let h = murmur64a(element, SEED);
    let index = (h & (REGISTERS as u64 - 1)) as usize;
    // A guard bit at position Q bounds the run when the remaining bits are all zero.
    let rest = (h >> P) | (1u64 << Q);
    (index, rest.trailing_zeros() as u8 + 1)
}

// ---------------------------------------------------------------------------------------------
// Dense registers.

/// Register `i` of a dense register array.
fn dense_get(regs: &[u8], i: usize) -> u8 {
    let bit = i * REG_BITS;
    let (byte, shift) = (bit / 8, bit % 8);
    let lo = regs.get(byte).copied().unwrap_or(0) as u16;
    let hi = regs.get(byte + 1).copied().unwrap_or(0) as u16;
    (((lo | hi << 8) >> shift) & 0x3f) as u8
}

/// Sets register `i` of a dense register array to `v`.
fn dense_put(regs: &mut [u8], i: usize, v: u8) {
    let bit = i * REG_BITS;
    let (byte, shift) = (bit / 8, bit % 8);
    let lo = regs.get(byte).copied().unwrap_or(0) as u16;
    let hi = regs.get(byte + 1).copied().unwrap_or(0) as u16;
    let w = ((lo | hi << 8) & !(0x3f << shift)) | ((v as u16 & 0x3f) << shift);
    if let Some(b) = regs.get_mut(byte) {
        *b = w as u8;
    }
    if let Some(b) = regs.get_mut(byte + 1) {
        *b = (w >> 8) as u8;
    }
}

/// Raises register `i` of a dense value to `v`; returns whether it changed.
fn dense_raise(s: &mut [u8], i: usize, v: u8) -> bool {
    let Some(regs) = s.get_mut(HEADER_LEN..) else {
        return false;
    };
    if v > dense_get(regs, i) {
        dense_put(regs, i, v);
        true
    } else {
        false
    }
}

/// The four registers packed in three bytes of a dense register array.
fn unpack4(c: &[u8]) -> [u8; 4] {
    let (b0, b1, b2) = (c[0], c[1], c[2]);
    [
        b0 & 0x3f,
        (b0 >> 6 | b1 << 2) & 0x3f,
        (b1 >> 4 | b2 << 4) & 0x3f,
        b2 >> 2,
    ]
}

/// Four registers (each below 64) packed into three bytes.
fn pack4(r: [u8; 4]) -> [u8; 3] {
    [
        r[0] | r[1] << 6,
        r[1] >> 2 | r[2] << 4,
        r[2] >> 4 | r[3] << 2,
    ]
}

/// Calls `f(index, value)` for every register of a dense register array, four registers (three
/// bytes) at a time.
fn dense_each(regs: &[u8], mut f: impl FnMut(usize, u8)) {
    for (n, c) in regs.chunks_exact(3).take(REGISTERS / 4).enumerate() {
        for (k, v) in unpack4(c).into_iter().enumerate() {
            f(4 * n + k, v);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Sparse opcodes.

/// One sparse opcode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    /// A run of zero registers (ZERO or XZERO).
    Zeros(usize),
    /// `run` registers holding `value`.
    Val { value: u8, run: usize },
}

impl Op {
    fn run(self) -> usize {
        match self {
            Op::Zeros(n) => n,
            Op::Val { run, .. } => run,
        }
    }
}

/// The opcode at `at` and its length in bytes. An XZERO cut short by the end of the string
/// reads its second byte as zero, as Redis (which finds the string's terminating NUL there)
/// does.
fn op_at(s: &[u8], at: usize) -> (Op, usize) {
    let b = s.get(at).copied().unwrap_or(0);
    match b & 0xc0 {
        0x00 => (Op::Zeros((b & 0x3f) as usize + 1), 1),
        0x40 => {
            let lo = s.get(at + 1).copied().unwrap_or(0) as usize;
            (Op::Zeros((((b & 0x3f) as usize) << 8 | lo) + 1), 2)
        }
        _ => (
            Op::Val {
                value: ((b >> 2) & 0x1f) + 1,
                run: (b & 0x03) as usize + 1,
            },
            1,
        ),
    }
}

fn is_val(b: u8) -> bool {
    b & 0x80 != 0
}

/// A VAL opcode (value 1..=32, run 1..=4).
fn val(value: u8, run: usize) -> u8 {
    0x80 | (value - 1) << 2 | (run - 1) as u8
}

/// An XZERO opcode for a run of 1..=16384 zeros.
fn xzero(run: usize) -> [u8; 2] {
    let n = run - 1;
    [0x40 | (n >> 8) as u8, n as u8]
}

/// The shortest opcode for a run of zeros (a run of up to 64 takes one byte).
fn push_zeros(seq: &mut Vec<u8>, run: usize) {
    if run > ZERO_RUN_MAX {
        seq.extend_from_slice(&xzero(run));
    } else {
        seq.push((run - 1) as u8);
    }
}

/// Calls `f(first, op)` for each opcode of a sparse value, `first` being the index of the
/// first register it covers. Returns the number of registers covered.
fn sparse_each(s: &[u8], mut f: impl FnMut(usize, Op)) -> usize {
    let (mut at, mut idx) = (HEADER_LEN, 0usize);
    while at < s.len() {
        let (op, len) = op_at(s, at);
        f(idx, op);
        idx = idx.saturating_add(op.run());
        at += len;
    }
    idx
}

/// Raises register `index` of a sparse value to `count`, rewriting the opcode that covers it;
/// turns the value dense when the register or the string would outgrow the sparse form.
/// Returns whether the register changed.
fn sparse_raise(
    s: &mut Vec<u8>,
    index: usize,
    count: u8,
    max_bytes: usize,
) -> Result<bool, Corrupt> {
    if count > VAL_MAX {
        return promote(s, index, count);
    }
    // Find the opcode covering `index`, and the one before it.
    let (mut at, mut first, mut prev) = (HEADER_LEN, 0usize, None);
    let mut found = None;
    while at < s.len() {
        let (op, len) = op_at(s, at);
        if index < first + op.run() {
            found = Some((op, len));
            break;
        }
        prev = Some(at);
        at += len;
        first += op.run();
    }
    let Some((op, len)) = found else {
        return Err(Corrupt);
    };
    if at + len > s.len() {
        return Err(Corrupt);
    }
    match op {
        Op::Val { value, .. } if value >= count => return Ok(false),
        // A single register: rewrite the opcode in place.
        Op::Val { run: 1, .. } | Op::Zeros(1) if len == 1 => s[at] = val(count, 1),
        _ => {
            // Split the run around `index`: before, the register itself, after.
            let last = first + op.run() - 1;
            let mut seq = Vec::with_capacity(5);
            let side = |seq: &mut Vec<u8>, run: usize| match op {
                Op::Zeros(_) => push_zeros(seq, run),
                Op::Val { value, .. } => seq.push(val(value, run)),
            };
            if index != first {
                side(&mut seq, index - first);
            }
            seq.push(val(count, 1));
            if index != last {
                side(&mut seq, last - index);
            }
            if seq.len() > len && s.len() + (seq.len() - len) > max_bytes {
                return promote(s, index, count);
            }
            s.splice(at..at + len, seq);
        }
    }
    merge_vals(s, prev.unwrap_or(HEADER_LEN));
    invalidate(s);
    Ok(true)
}

/// Joins neighbouring VAL opcodes of equal value (up to a run of 4), looking at no more than
/// five opcodes from `at`: exactly the window Redis looks at, so the bytes stay identical.
fn merge_vals(s: &mut Vec<u8>, mut at: usize) {
    let mut budget = 5;
    while at < s.len() && budget > 0 {
        budget -= 1;
        let b = s[at];
        if !is_val(b) {
            at += if b & 0xc0 == 0x40 { 2 } else { 1 };
            continue;
        }
        if let Some(&next) = s.get(at + 1) {
            if is_val(next) {
                if let ((Op::Val { value: v1, run: r1 }, _), (Op::Val { value: v2, run: r2 }, _)) =
                    (op_at(s, at), op_at(s, at + 1))
                {
                    if v1 == v2 && r1 + r2 <= VAL_RUN_MAX {
                        s[at + 1] = val(v1, r1 + r2);
                        s.remove(at);
                        // Try the merged opcode against its right neighbour too.
                        continue;
                    }
                }
            }
        }
        at += 1;
    }
}

/// Turns a sparse value dense, then raises register `index` to `count`.
fn promote(s: &mut Vec<u8>, index: usize, count: u8) -> Result<bool, Corrupt> {
    to_dense(s)?;
    dense_raise(s, index, count);
    invalidate(s);
    Ok(true)
}

/// Converts a sparse value to the dense encoding (a dense value is left alone). The header is
/// kept, cached cardinality included.
pub fn to_dense(s: &mut Vec<u8>) -> Result<(), Corrupt> {
    if s.get(ENC_AT) != Some(&ENC_SPARSE) {
        return Ok(());
    }
    let header = s.get(..HEADER_LEN).ok_or(Corrupt)?;
    let mut dense = vec![0u8; DENSE_LEN];
    dense[..HEADER_LEN].copy_from_slice(header);
    dense[ENC_AT] = ENC_DENSE;
    let regs = &mut dense[HEADER_LEN..];
    let mut overflow = false;
    let covered = sparse_each(s, |first, op| {
        if let Op::Val { value, run } = op {
            if overflow || first + run > REGISTERS {
                overflow = true;
                return;
            }
            for i in first..first + run {
                dense_put(regs, i, value);
            }
        }
    });
    if overflow || covered != REGISTERS {
        return Err(Corrupt);
    }
    *s = dense;
    Ok(())
}

/// Raises register `index` to `count` in a value of either encoding; returns whether it
/// changed. The caller has checked the value with [`encoding_of`].
pub fn raise(s: &mut Vec<u8>, index: usize, count: u8, max_bytes: usize) -> Result<bool, Corrupt> {
    match s.get(ENC_AT) {
        Some(&ENC_DENSE) => Ok(dense_raise(s, index, count)),
        Some(&ENC_SPARSE) => sparse_raise(s, index, count, max_bytes),
        _ => Err(Corrupt),
    }
}

/// Raises every register to at least `max[i]` (PFMERGE's write). A sparse value takes the
/// registers one by one, in order, exactly as Redis writes them (so the bytes match); once it is
/// dense, all remaining registers are raised four at a time. A register a damaged sparse value
/// cannot take is skipped, as Redis does.
pub fn raise_all(s: &mut Vec<u8>, max: &[u8; REGISTERS], max_bytes: usize) {
    for (i, &m) in max.iter().enumerate() {
        if s.get(ENC_AT) == Some(&ENC_DENSE) {
            // Raising the registers already done again changes nothing.
            if let Some(regs) = s.get_mut(HEADER_LEN..DENSE_LEN) {
                for (c, m) in regs.chunks_exact_mut(3).zip(max.chunks_exact(4)) {
                    let mut r = unpack4(c);
                    for (r, &m) in r.iter_mut().zip(m) {
                        *r = (*r).max(m & 0x3f);
                    }
                    c.copy_from_slice(&pack4(r));
                }
            }
            return;
        }
        if m != 0 {
            let _ = raise(s, i, m, max_bytes);
        }
    }
}

/// Adds an element; returns whether a register changed (the cache is then stale).
pub fn add(s: &mut Vec<u8>, element: &[u8], max_bytes: usize) -> Result<bool, Corrupt> {
    let (index, count) = locate(element);
    raise(s, index, count, max_bytes)
}

// ---------------------------------------------------------------------------------------------
// Counting and merging.

/// How many registers hold each value.
pub type Histogram = [u64; 64];

/// The register histogram of a value of either encoding.
pub fn histogram(s: &[u8]) -> Result<Histogram, Corrupt> {
    let mut h = [0u64; 64];
    match encoding_of(s) {
        Some(Encoding::Dense) => dense_each(&s[HEADER_LEN..], |_, v| h[v as usize] += 1),
        Some(Encoding::Sparse) => {
            let covered = sparse_each(s, |_, op| match op {
                Op::Zeros(n) => h[0] = h[0].saturating_add(n as u64),
                Op::Val { value, run } => h[value as usize] += run as u64,
            });
            if covered != REGISTERS {
                return Err(Corrupt);
            }
        }
        None => return Err(Corrupt),
    }
    Ok(h)
}

/// The histogram of plain one-byte registers (a merge result).
pub fn histogram_of_registers(regs: &[u8; REGISTERS]) -> Histogram {
    let mut h = [0u64; 64];
    for &r in regs {
        h[(r & 0x3f) as usize] += 1;
    }
    h
}

/// Ertl's sigma function.
fn sigma(mut x: f64) -> f64 {
    if x == 1.0 {
        return f64::INFINITY;
    }
    let (mut y, mut z) = (1.0, x);
    loop {
        x *= x;
        let before = z;
        z += x * y;
        y += y;
        if z == before {
            return z;
        }
    }
}

/// Ertl's tau function.
fn tau(mut x: f64) -> f64 {
    if x == 0.0 || x == 1.0 {
        return 0.0;
    }
    let (mut y, mut z) = (1.0, 1.0 - x);
    loop {
        x = x.sqrt();
        let before = z;
        y *= 0.5;
        let d = 1.0 - x;
        z -= d * d * y;
        if z == before {
            return z / 3.0;
        }
    }
}

/// The cardinality estimate of a register histogram (Ertl's improved raw estimator), computed
/// with the same floating point operations, in the same order, as Redis.
pub fn estimate(h: &Histogram) -> u64 {
    let m = REGISTERS as f64;
    let mut z = m * tau((m - h[Q + 1] as f64) / m);
    for &n in h[1..=Q].iter().rev() {
        z += n as f64;
        z *= 0.5;
    }
    z += m * sigma(h[0] as f64 / m);
    (ALPHA_INF * m * m / z).round() as u64
}

/// Raises `max[i]` to each register of `s` (a value of either encoding).
pub fn merge_into(max: &mut [u8; REGISTERS], s: &[u8]) -> Result<(), Corrupt> {
    match encoding_of(s) {
        Some(Encoding::Dense) => {
            for (c, m) in s[HEADER_LEN..].chunks_exact(3).zip(max.chunks_exact_mut(4)) {
                for (m, v) in m.iter_mut().zip(unpack4(c)) {
                    *m = (*m).max(v);
                }
            }
        }
        Some(Encoding::Sparse) => {
            let mut overflow = false;
            let covered = sparse_each(s, |first, op| {
                if let Op::Val { value, run } = op {
                    if overflow || first + run > REGISTERS {
                        overflow = true;
                        return;
                    }
                    for m in &mut max[first..first + run] {
                        *m = (*m).max(value);
                    }
                }
            });
            if overflow || covered != REGISTERS {
                return Err(Corrupt);
            }
        }
        None => return Err(Corrupt),
    }
    Ok(())
}

/// Every register of a value, as PFDEBUG GETREG lists them (the value must be dense).
pub fn registers(s: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; REGISTERS];
    if let Some(regs) = s.get(HEADER_LEN..DENSE_LEN) {
        dense_each(regs, |i, v| out[i] = v);
    }
    out
}

/// The opcodes of a sparse value as PFDEBUG DECODE shows them: `Z:n` (XZERO), `z:n` (ZERO),
/// `v:value,run` (VAL), separated by spaces.
pub fn decode_sparse(s: &[u8]) -> String {
    let mut out = String::new();
    let mut at = HEADER_LEN;
    while at < s.len() {
        let (op, len) = op_at(s, at);
        let _ = match op {
            Op::Zeros(n) if len == 2 => write!(out, "Z:{n} "),
            Op::Zeros(n) => write!(out, "z:{n} "),
            Op::Val { value, run } => write!(out, "v:{value},{run} "),
        };
        at += len;
    }
    out.trim_matches(' ').to_string()
}

/// Checks the implementation against itself, for PFSELFTEST: register packing, then a sparse
/// and a dense value fed the same `elements` elements, which must agree, use the sparse form
/// while small (under `sparse_max` bytes) and stay within six standard errors of the truth at
/// every power of ten. Returns the first failure as PFSELFTEST reports it.
pub fn self_test(
    rng: &mut crate::rng::Rng,
    elements: u64,
    sparse_max: usize,
) -> Result<(), String> {
    let mut regs = vec![0u8; DENSE_LEN - HEADER_LEN];
    let mut model = vec![0u8; REGISTERS];
    for round in 0..8 {
        for (i, m) in model.iter_mut().enumerate() {
            *m = (rng.next_u64() & 0x3f) as u8;
            dense_put(&mut regs, i, *m);
        }
        if let Some(i) = (0..REGISTERS).find(|&i| dense_get(&regs, i) != model[i]) {
            return Err(format!(
                "TESTFAILED Register error: round {round}, register {i}"
            ));
        }
    }
    let mut sparse = new_sparse();
    let mut dense = new_sparse();
    to_dense(&mut dense).map_err(|_| "TESTFAILED empty value does not convert".to_string())?;
    let seed = rng.next_u64();
    let std_err = 1.04 / (REGISTERS as f64).sqrt();
    let mut checkpoint = 1u64;
    for n in 1..=elements {
        let el = (n ^ seed).to_le_bytes();
        let (a, b) = (
            add(&mut sparse, &el, sparse_max),
            add(&mut dense, &el, sparse_max),
        );
        if a.is_err() || a != b {
            return Err(format!(
                "TESTFAILED dense/sparse disagree adding element {n}"
            ));
        }
        if n != checkpoint {
            continue;
        }
        checkpoint *= 10;
        if (n as usize) < sparse_max / 2 && encoding_of(&sparse) != Some(Encoding::Sparse) {
            return Err("TESTFAILED sparse encoding not used".into());
        }
        let (Ok(hs), Ok(hd)) = (histogram(&sparse), histogram(&dense)) else {
            return Err(format!("TESTFAILED corrupted value after {n} elements"));
        };
        let est = estimate(&hd);
        if estimate(&hs) != est {
            return Err("TESTFAILED dense/sparse disagree".into());
        }
        // Ten elements may collide in a register now and then: allow one off there.
        let max_err = if n == 10 {
            1
        } else {
            (6.0 * std_err * n as f64).ceil() as u64
        };
        if est.abs_diff(n) > max_err {
            return Err(format!(
                "TESTFAILED Too big error. card:{n} abserr:{}",
                est.abs_diff(n)
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Every register of a value of either encoding.
    fn regs_of(s: &[u8]) -> Vec<u8> {
        let mut max = [0u8; REGISTERS];
        merge_into(&mut max, s).unwrap();
        max.to_vec()
    }

    #[test]
    fn elements_land_where_redis_puts_them() {
        // MurmurHash64A with seed 0 hashes the empty string to 0.
        assert_eq!(murmur64a(b"", 0), 0);
        // Register and run of a few elements, as redis-server 7.0's PFDEBUG DECODE shows them
        // after a single PFADD (covering every tail length of the hash, and a whole block).
        for (element, index, run) in [
            (&b"a"[..], 12711, 2),
            (b"hello", 9216, 1),
            (b"", 5938, 2),
            (b"12345678", 10579, 3),
            (b"123456789", 9293, 2),
        ] {
            assert_eq!(locate(element), (index, run), "{element:?}");
        }
    }

    #[test]
    fn new_value_layout() {
        let s = new_sparse();
        assert_eq!(s, b"HYLL\x01\0\0\0\0\0\0\0\0\0\0\0\x7f\xff");
        assert_eq!(encoding_of(&s), Some(Encoding::Sparse));
        assert_eq!(cached(&s), Some(0));
        assert_eq!(decode_sparse(&s), "Z:16384");
        let mut d = s.clone();
        to_dense(&mut d).unwrap();
        assert_eq!(d.len(), DENSE_LEN);
        assert_eq!(encoding_of(&d), Some(Encoding::Dense));
        assert_eq!(estimate(&histogram(&d).unwrap()), 0);
    }

    #[test]
    fn validity() {
        assert_eq!(encoding_of(b"HYLL"), None);
        assert_eq!(encoding_of(b"HYLX\x01\0\0\0\0\0\0\0\0\0\0\0"), None);
        assert_eq!(encoding_of(b"HYLL\x02\0\0\0\0\0\0\0\0\0\0\0"), None);
        assert_eq!(encoding_of(b"HYLL\x00\0\0\0\0\0\0\0\0\0\0\0"), None);
        assert_eq!(
            encoding_of(b"HYLL\x01\0\0\0\0\0\0\0\0\0\0\0"),
            Some(Encoding::Sparse)
        );
        // A sparse value that covers too few or too many registers is corrupt.
        let short = b"HYLL\x01\0\0\0\0\0\0\0\0\0\0\0\x7f\xfe".to_vec();
        assert_eq!(histogram(&short), Err(Corrupt));
        assert_eq!(to_dense(&mut short.clone()), Err(Corrupt));
        let mut long = new_sparse();
        long.push(0x00);
        assert_eq!(histogram(&long), Err(Corrupt));
        let mut max = [0u8; REGISTERS];
        assert_eq!(merge_into(&mut max, &long), Err(Corrupt));
        // A VAL run past the last register.
        let mut over = b"HYLL\x01\0\0\0\0\0\0\0\0\0\0\0".to_vec();
        over.extend_from_slice(&xzero(16382));
        over.push(val(3, 4));
        assert_eq!(to_dense(&mut over.clone()), Err(Corrupt));
        assert_eq!(merge_into(&mut max, &over), Err(Corrupt));
        // Nothing covers the register: raising it fails.
        let mut empty = b"HYLL\x01\0\0\0\0\0\0\0\0\0\0\0".to_vec();
        assert_eq!(raise(&mut empty, 5, 1, 3000), Err(Corrupt));
    }

    #[test]
    fn sparse_splits_and_merges() {
        let mut s = new_sparse();
        assert_eq!(sparse_raise(&mut s, 1000, 2, 3000), Ok(true));
        assert_eq!(decode_sparse(&s), "Z:1000 v:2,1 Z:15383");
        assert_eq!(cached(&s), None);
        assert_eq!(sparse_raise(&mut s, 1000, 1, 3000), Ok(false));
        assert_eq!(sparse_raise(&mut s, 1001, 2, 3000), Ok(true));
        assert_eq!(decode_sparse(&s), "Z:1000 v:2,2 Z:15382");
        assert_eq!(sparse_raise(&mut s, 1003, 2, 3000), Ok(true));
        assert_eq!(decode_sparse(&s), "Z:1000 v:2,2 z:1 v:2,1 Z:15380");
        // Filling the gap turns ZERO:1 into VAL in place and then merges the run.
        assert_eq!(sparse_raise(&mut s, 1002, 2, 3000), Ok(true));
        assert_eq!(decode_sparse(&s), "Z:1000 v:2,4 Z:15380");
        // Raising one register in the middle of a VAL run splits it.
        assert_eq!(sparse_raise(&mut s, 1001, 5, 3000), Ok(true));
        assert_eq!(decode_sparse(&s), "Z:1000 v:2,1 v:5,1 v:2,2 Z:15380");
        assert_eq!(sparse_raise(&mut s, 0, 1, 3000), Ok(true));
        assert_eq!(decode_sparse(&s), "v:1,1 Z:999 v:2,1 v:5,1 v:2,2 Z:15380");
        assert_eq!(sparse_raise(&mut s, 16383, 1, 3000), Ok(true));
        assert_eq!(
            decode_sparse(&s),
            "v:1,1 Z:999 v:2,1 v:5,1 v:2,2 Z:15379 v:1,1"
        );
        assert_eq!(sparse_raise(&mut s, 16300, 7, 3000), Ok(true));
        assert_eq!(
            decode_sparse(&s),
            "v:1,1 Z:999 v:2,1 v:5,1 v:2,2 Z:15296 v:7,1 Z:82 v:1,1"
        );
        // A value above 32 needs the dense encoding.
        assert_eq!(sparse_raise(&mut s, 3, 33, 3000), Ok(true));
        assert_eq!(encoding_of(&s), Some(Encoding::Dense));
        let regs = regs_of(&s);
        assert_eq!((regs[0], regs[3], regs[1001], regs[16300]), (1, 33, 5, 7));
    }

    #[test]
    fn sparse_promotes_at_the_size_limit() {
        let mut s = new_sparse();
        // Each isolated register costs bytes; a tiny limit promotes quickly.
        let mut promoted_at = None;
        for i in 0..100 {
            raise(&mut s, i * 100, 1, 40).unwrap();
            if encoding_of(&s) == Some(Encoding::Dense) {
                promoted_at = Some(i);
                break;
            }
            assert!(s.len() <= 40);
        }
        let last = promoted_at.expect("promoted");
        let regs = regs_of(&s);
        assert!((0..=last).all(|i| regs[i * 100] == 1));
        assert_eq!(regs.iter().filter(|&&r| r != 0).count(), last + 1);
    }

    #[test]
    fn raise_all_matches_one_by_one() {
        let mut rng = crate::rng::Rng::new(9);
        for limit in [3000, 200, usize::MAX] {
            let mut max = [0u8; REGISTERS];
            for _ in 0..300 {
                let i = rng.below(REGISTERS);
                max[i] = max[i].max(1 + rng.below(if limit == 200 { 40 } else { 20 }) as u8);
            }
            let mut base = new_sparse();
            for e in 0..50u32 {
                add(&mut base, &e.to_le_bytes(), limit).unwrap();
            }
            for start_dense in [false, true] {
                let mut a = base.clone();
                if start_dense {
                    to_dense(&mut a).unwrap();
                }
                let mut b = a.clone();
                raise_all(&mut a, &max, limit);
                for (i, &m) in max.iter().enumerate() {
                    if m != 0 {
                        raise(&mut b, i, m, limit).unwrap();
                    }
                }
                invalidate(&mut a);
                invalidate(&mut b);
                assert_eq!(a, b, "limit {limit}, dense {start_dense}");
            }
        }
    }

    #[test]
    fn dense_packing() {
        let mut regs = vec![0u8; DENSE_LEN - HEADER_LEN];
        dense_put(&mut regs, 1, 63);
        assert_eq!(regs[..2], [0xc0, 0x0f]);
        dense_put(&mut regs, REGISTERS - 1, 63);
        assert_eq!(dense_get(&regs, REGISTERS - 1), 63);
        assert_eq!(*regs.last().unwrap(), 0xfc);
        dense_put(&mut regs, 1, 0);
        assert!(regs[..2].iter().all(|&b| b == 0));
        let mut seen = 0;
        dense_each(&regs, |i, v| {
            if v != 0 {
                assert_eq!((i, v), (REGISTERS - 1, 63));
                seen += 1;
            }
        });
        assert_eq!(seen, 1);
    }

    #[test]
    fn estimator_edges() {
        let mut h = [0u64; 64];
        h[0] = REGISTERS as u64;
        assert_eq!(estimate(&h), 0);
        // Every register at the largest possible run.
        let mut h = [0u64; 64];
        h[Q + 1] = REGISTERS as u64;
        assert!(estimate(&h) > 1 << 60);
    }

    /// The estimate's relative error over a wide range of cardinalities stays within a few
    /// standard errors (1.04 / sqrt(m) = 0.81%).
    #[test]
    fn error_is_within_bounds() {
        let mut s = new_sparse();
        let mut next_check = 1u64;
        let mut worst: f64 = 0.0;
        let mut total_sq = 0.0;
        let mut checks = 0;
        for n in 1..=100_000u64 {
            let el = n.to_le_bytes();
            add(&mut s, &el, SPARSE_MAX_BYTES_DEFAULT).unwrap();
            if n == next_check {
                next_check = (n as f64 * 1.15).ceil() as u64;
                let est = estimate(&histogram(&s).unwrap()) as f64;
                let err = (est - n as f64) / n as f64;
                worst = worst.max(err.abs());
                total_sq += err * err;
                checks += 1;
                // Small cardinalities are almost exact (linear counting region).
                let bound = if n < 1000 {
                    0.01 + 2.0 / n as f64
                } else {
                    4.0 * 0.0081
                };
                assert!(err.abs() <= bound, "n={n} est={est} err={err}");
            }
        }
        let rms = (total_sq / checks as f64).sqrt();
        assert!(rms < 0.0081 * 1.5, "rms error {rms}, worst {worst}");
        assert_eq!(encoding_of(&s), Some(Encoding::Dense));
    }

    #[test]
    fn self_test_passes() {
        let mut rng = crate::rng::Rng::new(1);
        assert_eq!(
            self_test(&mut rng, 20_000, SPARSE_MAX_BYTES_DEFAULT),
            Ok(())
        );
    }

    proptest! {
        /// Sparse and dense values fed the same registers hold the same registers, and the
        /// sparse form never outgrows its limit.
        #[test]
        fn sparse_matches_dense(
            writes in proptest::collection::vec((0usize..REGISTERS, 1u8..40), 0..300),
            limit in 20usize..600,
        ) {
            let mut sparse = new_sparse();
            let mut dense = new_sparse();
            to_dense(&mut dense).unwrap();
            let mut model = vec![0u8; REGISTERS];
            for &(i, v) in &writes {
                let changed = raise(&mut sparse, i, v, limit).unwrap();
                prop_assert_eq!(changed, v > model[i]);
                raise(&mut dense, i, v, limit).unwrap();
                model[i] = model[i].max(v);
                if encoding_of(&sparse) == Some(Encoding::Sparse) {
                    prop_assert!(sparse.len() <= limit.max(HEADER_LEN + 2));
                }
            }
            prop_assert_eq!(regs_of(&sparse), model.clone());
            prop_assert_eq!(regs_of(&dense), model);
            prop_assert_eq!(histogram(&sparse).unwrap(), histogram(&dense).unwrap());
        }

        /// Reading arbitrary bytes as a HyperLogLog never panics.
        #[test]
        fn garbage_never_panics(body in proptest::collection::vec(any::<u8>(), 0..64), enc in 0u8..2) {
            let mut s = b"HYLL".to_vec();
            s.push(enc);
            s.extend_from_slice(&[0; 11]);
            s.extend_from_slice(&body);
            let _ = histogram(&s);
            let _ = decode_sparse(&s);
            let mut max = [0u8; REGISTERS];
            let _ = merge_into(&mut max, &s);
            if encoding_of(&s).is_some() {
                let mut t = s.clone();
                let _ = add(&mut t, b"x", 3000);
                let mut t = s.clone();
                let _ = to_dense(&mut t);
            }
        }
    }
}
