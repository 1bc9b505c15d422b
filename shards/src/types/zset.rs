//! The sorted-set type: members (byte strings) with a score each, ordered by score and then by
//! member bytes, in one of Redis 7.0's two encodings.
//!
//! - `listpack`: one packed buffer of (member, score) entries in order ([`Packed`]); lookups and
//!   inserts walk it. Kept while the set has at most `zset-max-listpack-entries` members and
//!   every member added was at most `zset-max-listpack-value` bytes long. An integral score
//!   (below 2^53) takes 1–8 bytes, any other 9, so a small set costs one small allocation.
//!   Like Redis's listpack, it stores a score of -0 as 0 (Redis writes integral scores as
//!   integers); the big encoding keeps -0.
//! - `skiplist` (the name OBJECT ENCODING reports, Redis's): a [`ScoreTree`], an
//!   order-statistic B+tree with a member index, O(log n) for rank and range work.
//!
//! Conversion is one-way, as in Redis 7.0: a set grows into the big encoding when an add would
//! pass either limit, and never goes back (a set built anew, such as a ZUNIONSTORE result, picks
//! its encoding from its final size).
//!
//! This module knows nothing of commands: it gives the operations the sorted-set commands (and
//! GEO, whose points are members scored by geohash) are built from — add or update a score,
//! remove, score and rank of a member, access by rank, the ranks a score or lex range covers,
//! and walks in either direction.

use super::listpack::{read_varint, write_varint};
use super::ztree::ScoreTree;
use super::SmallBytes;
use std::cmp::Ordering;

/// The largest listpack Redis lets an add produce (its `LISTPACK_MAX_SAFETY_SIZE`).
const LISTPACK_BYTES_MAX: usize = 1 << 30;

/// Integral scores below this magnitude are stored as integers in a listpack.
const PACKED_INT_MAX: f64 = 9_007_199_254_740_992.0; // 2^53

/// The small-encoding thresholds, from `zset-max-listpack-entries` and
/// `zset-max-listpack-value`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_entries: usize,
    pub max_value: usize,
}

// ---------------------------------------------------------------------------------------------
// The listpack encoding.

/// Powers of ten that a double holds exactly.
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// A score with few decimal digits as `m / 10^k` (1 ≤ k ≤ 22, |m| < 2^53), when that gives the
/// same double back: its shortest decimal form has at most 15 or so digits, so both `m` and
/// `10^k` are exact and the one rounding of the division lands on the score (the fast path of
/// Clinger's algorithm). 0.1 is (1, 1), 123.45 is (12345, 2).
fn decimal_parts(score: f64) -> Option<(i64, usize)> {
    use std::io::Write;
    let mut buf = [0u8; 40];
    let mut w = &mut buf[..];
    write!(w, "{score:e}").ok()?;
    let len = 40 - w.len();
    let text = std::str::from_utf8(&buf[..len]).ok()?;
    let (digits, exp) = text.split_once('e')?;
    let exp: i64 = exp.parse().ok()?;
    let (neg, digits) = match digits.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, digits),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if int.len() + frac.len() > 16 {
        return None;
    }
    let m: i64 = format!("{int}{frac}").parse().ok()?;
    let k = usize::try_from(frac.len() as i64 - exp).ok()?;
    let m = if neg { -m } else { m };
    let exact = (1..POW10.len()).contains(&k)
        && m.unsigned_abs() < 1 << 53
        && (m as f64 / POW10[k]).to_bits() == score.to_bits();
    exact.then_some((m, k))
}

fn zigzag(i: i64) -> u64 {
    ((i << 1) ^ (i >> 63)) as u64
}

fn unzigzag(z: u64) -> i64 {
    (z >> 1) as i64 ^ -((z & 1) as i64)
}

/// Appends one entry: the member's length and bytes, then the score, led by a varint tag:
/// - even: an integral score below 2^53, zigzagged, is the tag's upper bits;
/// - odd, 3 and up: a decimal `m / 10^k` (see [`decimal_parts`]) with `k` the tag's upper bits,
///   then `m` zigzagged in a varint;
/// - 1: the 8 bytes of the double follow.
///
/// So `5` takes 1 byte, `1.5` 2, `123.45` 4, and other doubles 9.
fn encode_entry(out: &mut Vec<u8>, member: &[u8], score: f64) {
    write_varint(out, member.len() as u64);
    out.extend_from_slice(member);
    if score.fract() == 0.0 && score.abs() < PACKED_INT_MAX {
        write_varint(out, zigzag(score as i64) << 1);
    } else if let Some((m, k)) = decimal_parts(score) {
        write_varint(out, ((k as u64) << 1) | 1);
        write_varint(out, zigzag(m));
    } else {
        out.push(1);
        out.extend_from_slice(&score.to_le_bytes());
    }
}

/// One decoded entry of a [`Packed`] buffer.
#[derive(Debug, Clone, Copy)]
struct PackedEntry<'a> {
    member: &'a [u8],
    score: f64,
    /// Byte range of the entry in the buffer.
    start: usize,
    end: usize,
}

/// Decodes the entry at byte `pos`.
fn decode_entry(buf: &[u8], pos: usize) -> Option<PackedEntry<'_>> {
    if pos >= buf.len() {
        return None;
    }
    let (len, used) = read_varint(buf, pos);
    let m_start = pos + used;
    let m_end = m_start.checked_add(usize::try_from(len).ok()?)?;
    let member = buf.get(m_start..m_end)?;
    let (tag, used) = read_varint(buf, m_end);
    let at = m_end + used;
    let (score, end) = if tag == 1 {
        let bytes: [u8; 8] = buf.get(at..at + 8)?.try_into().ok()?;
        (f64::from_le_bytes(bytes), at + 8)
    } else if tag & 1 == 1 {
        let pow = POW10.get(usize::try_from(tag >> 1).ok()?)?;
        let (m, used) = read_varint(buf, at);
        (unzigzag(m) as f64 / pow, at + used)
    } else {
        (unzigzag(tag >> 1) as f64, at)
    };
    Some(PackedEntry {
        member,
        score,
        start: pos,
        end,
    })
}

/// The small encoding: entries in (score, member) order in one buffer.
#[derive(Debug, Clone, Default)]
pub struct Packed {
    buf: Vec<u8>,
    len: u32,
}

/// Iterator over a [`Packed`] set's (member, score) pairs, in order.
pub struct PackedIter<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Iterator for PackedIter<'a> {
    type Item = (&'a [u8], f64);
    fn next(&mut self) -> Option<Self::Item> {
        let e = decode_entry(self.buf, self.pos)?;
        self.pos = e.end;
        Some((e.member, e.score))
    }
}

impl Packed {
    pub fn len(&self) -> usize {
        self.len as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn iter(&self) -> PackedIter<'_> {
        PackedIter {
            buf: &self.buf,
            pos: 0,
        }
    }

    fn entries(&self) -> impl Iterator<Item = PackedEntry<'_>> {
        let mut pos = 0;
        std::iter::from_fn(move || {
            let e = decode_entry(&self.buf, pos)?;
            pos = e.end;
            Some(e)
        })
    }

    /// The entry of `member`, and its rank.
    fn find(&self, member: &[u8]) -> Option<(usize, PackedEntry<'_>)> {
        self.entries().enumerate().find(|(_, e)| e.member == member)
    }

    /// Inserts an entry at its place in the order (the member must be absent). A score of -0
    /// is stored as 0, as Redis stores integral scores as integers.
    fn insert(&mut self, member: &[u8], score: f64) {
        let score = if score == 0.0 { 0.0 } else { score };
        let at = self
            .entries()
            .find(|e| cmp_entry(e.score, e.member, score, member) == Ordering::Greater)
            .map_or(self.buf.len(), |e| e.start);
        let mut enc = Vec::with_capacity(member.len() + 11);
        encode_entry(&mut enc, member, score);
        // Exact growth: a listpack is kept at its size (many small sets are the common case).
        self.buf.reserve_exact(enc.len());
        self.buf.splice(at..at, enc);
        self.len += 1;
    }

    fn remove_range(&mut self, start: usize, end: usize) {
        self.buf.drain(start..end);
        self.len -= 1;
        // A listpack is kept at its exact size: many small sets are the common case.
        if self.buf.capacity() > self.buf.len() + 64 {
            self.buf.shrink_to_fit();
        }
    }

    fn shrink(&mut self) {
        self.buf.shrink_to_fit();
    }
}

/// Orders (score, member) pairs: by score, then by member bytes.
fn cmp_entry(a_score: f64, a_member: &[u8], b_score: f64, b_member: &[u8]) -> Ordering {
    match a_score.partial_cmp(&b_score) {
        Some(Ordering::Equal) | None => a_member.cmp(b_member),
        Some(o) => o,
    }
}

// ---------------------------------------------------------------------------------------------
// Ranges.

/// A score range, each end inclusive or exclusive (Redis's `zrangespec`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScoreRange {
    pub min: f64,
    pub min_ex: bool,
    pub max: f64,
    pub max_ex: bool,
}

impl ScoreRange {
    /// Whether `score` is at or above the lower end.
    pub fn above_min(&self, score: f64) -> bool {
        if self.min_ex {
            score > self.min
        } else {
            score >= self.min
        }
    }

    /// Whether `score` is at or below the upper end.
    pub fn below_max(&self, score: f64) -> bool {
        if self.max_ex {
            score < self.max
        } else {
            score <= self.max
        }
    }

    pub fn contains(&self, score: f64) -> bool {
        self.above_min(score) && self.below_max(score)
    }
}

/// One end of a lex range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LexBound {
    /// `-`: below every string.
    Min,
    /// `+`: above every string.
    Max,
    Inclusive(Vec<u8>),
    Exclusive(Vec<u8>),
}

/// A range of members by their bytes (Redis's `zlexrangespec`). Meaningful when every member
/// has the same score, as for Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LexRange {
    pub min: LexBound,
    pub max: LexBound,
}

impl LexRange {
    /// Whether `m` is at or above the lower end.
    pub fn above_min(&self, m: &[u8]) -> bool {
        match &self.min {
            LexBound::Min => true,
            LexBound::Max => false,
            LexBound::Inclusive(b) => m >= b.as_slice(),
            LexBound::Exclusive(b) => m > b.as_slice(),
        }
    }

    /// Whether `m` is at or below the upper end.
    pub fn below_max(&self, m: &[u8]) -> bool {
        match &self.max {
            LexBound::Min => false,
            LexBound::Max => true,
            LexBound::Inclusive(b) => m <= b.as_slice(),
            LexBound::Exclusive(b) => m < b.as_slice(),
        }
    }

    pub fn contains(&self, m: &[u8]) -> bool {
        self.above_min(m) && self.below_max(m)
    }
}

// ---------------------------------------------------------------------------------------------
// The sorted set.

/// A sorted-set value.
#[derive(Debug, Clone)]
pub enum ZSet {
    Listpack(Packed),
    /// Boxed: the tree is several words, and keeping `Value` small helps every key.
    Tree(Box<ScoreTree>),
}

impl Default for ZSet {
    fn default() -> Self {
        ZSet::Listpack(Packed::default())
    }
}

impl PartialEq for ZSet {
    /// Equal when they are in the same encoding and hold the same members with bit-identical
    /// scores: a command gathered from other shards sends a value back when it is not equal to
    /// what it was, and a score going from -0 to 0 or a conversion is a change to send.
    fn eq(&self, other: &ZSet) -> bool {
        self.encoding() == other.encoding()
            && self.len() == other.len()
            && self
                .iter()
                .zip(other.iter())
                .all(|((m1, s1), (m2, s2))| m1 == m2 && s1.to_bits() == s2.to_bits())
    }
}

/// What [`ZSet::add`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Added {
    /// A new member.
    New,
    /// An existing member's score changed.
    Updated,
    /// The member already had that score.
    Same,
}

impl ZSet {
    /// An empty sorted set in the small encoding.
    pub fn new() -> ZSet {
        ZSet::default()
    }

    /// The empty set ZADD creates for a first member of `first_len` bytes (Redis 7.0 decides
    /// on the first member alone; later adds convert as needed).
    pub fn for_first_member(first_len: usize, lim: Limits) -> ZSet {
        if lim.max_entries == 0 || first_len > lim.max_value {
            ZSet::Tree(Box::default())
        } else {
            ZSet::new()
        }
    }

    /// The empty set a result of `n` members goes into when `n` is known in advance (Redis's
    /// ZRANGESTORE): the big encoding if `n` passes the entry limit.
    pub fn for_size(n: usize, lim: Limits) -> ZSet {
        if n > lim.max_entries {
            ZSet::Tree(Box::new(ScoreTree::with_capacity(n)))
        } else {
            ZSet::new()
        }
    }

    /// A finished result (ZUNIONSTORE & co.) from pairs in order: the small encoding when it
    /// fits both limits, else the big one.
    pub fn from_sorted(pairs: &[(SmallBytes, f64)], lim: Limits) -> ZSet {
        let longest = pairs.iter().map(|(m, _)| m.len()).max().unwrap_or(0);
        let total: usize = pairs.iter().map(|(m, _)| m.len()).sum();
        if pairs.len() <= lim.max_entries && longest <= lim.max_value && total <= LISTPACK_BYTES_MAX
        {
            let mut p = Packed::default();
            for (m, s) in pairs {
                let s = if *s == 0.0 { 0.0 } else { *s };
                encode_entry(&mut p.buf, m, s);
                p.len += 1;
            }
            p.shrink();
            return ZSet::Listpack(p);
        }
        let mut t = ScoreTree::with_capacity(pairs.len());
        for (m, s) in pairs {
            t.insert_new(m, *s);
        }
        ZSet::Tree(Box::new(t))
    }

    pub fn len(&self) -> usize {
        match self {
            ZSet::Listpack(p) => p.len(),
            ZSet::Tree(t) => t.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The name OBJECT ENCODING reports.
    pub fn encoding(&self) -> &'static str {
        match self {
            ZSet::Listpack(_) => "listpack",
            ZSet::Tree(_) => "skiplist",
        }
    }

    /// Moves every member into the big encoding (one-way; nothing if already there).
    pub fn convert(&mut self) {
        if let ZSet::Listpack(p) = self {
            let mut t = ScoreTree::with_capacity(p.len());
            for (m, s) in p.iter() {
                t.insert_new(m, s);
            }
            *self = ZSet::Tree(Box::new(t));
        }
    }

    /// The score of `member`.
    pub fn score(&self, member: &[u8]) -> Option<f64> {
        match self {
            ZSet::Listpack(p) => p.find(member).map(|(_, e)| e.score),
            ZSet::Tree(t) => t.score(member),
        }
    }

    /// Sets the score of `member` (not NaN), adding the member if needed; converts to the big
    /// encoding first when a new member would pass a limit (Redis's `zsetAdd`).
    pub fn add(&mut self, member: &[u8], score: f64, lim: Limits) -> Added {
        let done = self.upsert(member, lim, |_| {
            Ok::<_, std::convert::Infallible>(Some(score))
        });
        match done {
            Ok(Some(added)) => added,
            _ => Added::Same,
        }
    }

    /// Looks `member` up once and lets `decide` pick its new score (not NaN) from its current
    /// one (`None`: absent). `decide` answers `None` to leave the set unchanged (then so does
    /// this), or fails. A new member that would pass a limit converts the set first.
    pub fn upsert<E>(
        &mut self,
        member: &[u8],
        lim: Limits,
        decide: impl FnOnce(Option<f64>) -> Result<Option<f64>, E>,
    ) -> Result<Option<Added>, E> {
        let p = match self {
            ZSet::Tree(t) => return upsert_tree(t, member, decide),
            ZSet::Listpack(p) => p,
        };
        if let Some((_, e)) = p.find(member) {
            let (cur, start, end) = (e.score, e.start, e.end);
            let Some(score) = decide(Some(cur))? else {
                return Ok(None);
            };
            debug_assert!(!score.is_nan());
            if score == cur {
                return Ok(Some(Added::Same));
            }
            p.remove_range(start, end);
            p.insert(member, score);
            return Ok(Some(Added::Updated));
        }
        let Some(score) = decide(None)? else {
            return Ok(None);
        };
        debug_assert!(!score.is_nan());
        if p.len() < lim.max_entries
            && member.len() <= lim.max_value
            && p.buf.len() + member.len() <= LISTPACK_BYTES_MAX
        {
            p.insert(member, score);
        } else {
            self.convert();
            if let ZSet::Tree(t) = self {
                t.insert_new(member, score);
            }
        }
        Ok(Some(Added::New))
    }

    /// Removes `member`; returns its score.
    pub fn remove(&mut self, member: &[u8]) -> Option<f64> {
        match self {
            ZSet::Listpack(p) => {
                let (_, e) = p.find(member)?;
                let (score, start, end) = (e.score, e.start, e.end);
                p.remove_range(start, end);
                Some(score)
            }
            ZSet::Tree(t) => t.remove(member),
        }
    }

    /// The 0-based rank of `member` from the lowest score, and its score.
    pub fn rank(&self, member: &[u8]) -> Option<(usize, f64)> {
        match self {
            ZSet::Listpack(p) => p.find(member).map(|(i, e)| (i, e.score)),
            ZSet::Tree(t) => t.rank(member),
        }
    }

    /// The member and score at `rank` (0 = lowest).
    pub fn get(&self, rank: usize) -> Option<(&[u8], f64)> {
        match self {
            ZSet::Listpack(p) => p.iter().nth(rank),
            ZSet::Tree(t) => t.get(rank),
        }
    }

    /// Every (member, score), lowest score first.
    pub fn iter(&self) -> Iter<'_> {
        match self {
            ZSet::Listpack(p) => Iter::Packed(p.iter()),
            ZSet::Tree(t) => Iter::Tree(t.iter()),
        }
    }

    /// Calls `f` with members in order from `rank` — ascending, or descending with `rev` —
    /// while it returns true.
    pub fn walk(&self, rank: usize, rev: bool, mut f: impl FnMut(&[u8], f64) -> bool) {
        match self {
            ZSet::Listpack(p) if rev => {
                let all: Vec<(&[u8], f64)> = p.iter().take(rank.saturating_add(1)).collect();
                for &(m, s) in all.iter().rev() {
                    if !f(m, s) {
                        return;
                    }
                }
            }
            ZSet::Listpack(p) => {
                for (m, s) in p.iter().skip(rank) {
                    if !f(m, s) {
                        return;
                    }
                }
            }
            ZSet::Tree(t) => t.walk(rank, rev, f),
        }
    }

    /// How many members, from the lowest, satisfy `before` — a predicate that holds for a
    /// prefix of the order (the rank where it first fails).
    pub fn partition_point(&self, before: impl Fn(f64, &[u8]) -> bool) -> usize {
        match self {
            ZSet::Listpack(p) => p.iter().take_while(|&(m, s)| before(s, m)).count(),
            ZSet::Tree(t) => t.partition_point(before),
        }
    }

    /// [`ZSet::partition_point`] for a predicate on scores alone.
    pub fn partition_point_by_score(&self, before: impl Fn(f64) -> bool) -> usize {
        match self {
            ZSet::Listpack(p) => p.iter().take_while(|&(_, s)| before(s)).count(),
            ZSet::Tree(t) => t.partition_point_by_score(before),
        }
    }

    /// The ranks `start..end` of the members whose scores fall in `range` (empty when none).
    pub fn score_range(&self, range: &ScoreRange) -> std::ops::Range<usize> {
        let start = self.partition_point_by_score(|s| !range.above_min(s));
        let end = self.partition_point_by_score(|s| range.below_max(s));
        start..end.max(start)
    }

    /// The ranks `start..end` of the members in the lex `range` (for sets whose members all
    /// have the same score).
    pub fn lex_range(&self, range: &LexRange) -> std::ops::Range<usize> {
        let start = self.partition_point(|_, m| !range.above_min(m));
        let end = self.partition_point(|_, m| range.below_max(m));
        start..end.max(start)
    }

    /// Removes and returns the member with the lowest score (or the highest, with `max`).
    pub fn pop(&mut self, max: bool) -> Option<(SmallBytes, f64)> {
        let rank = if max { self.len().checked_sub(1)? } else { 0 };
        let (m, s) = self.get(rank)?;
        let m = SmallBytes::from(m);
        self.remove(&m);
        Some((m, s))
    }

    /// Gives spare memory back after writes.
    pub fn shrink(&mut self) {
        if let ZSet::Listpack(p) = self {
            p.shrink();
        }
    }

    /// One step of ZSCAN. A listpack is returned whole with cursor 0, as Redis does. For the
    /// big encoding `cursor` is the number of slots still to visit (0 starts a scan); about
    /// `count` members are visited, and the next cursor is returned (0 when done).
    pub fn scan(&self, cursor: u64, count: usize, mut f: impl FnMut(&[u8], f64)) -> u64 {
        match self {
            ZSet::Listpack(p) => {
                p.iter().for_each(|(m, s)| f(m, s));
                0
            }
            ZSet::Tree(t) => t.scan(cursor, count, f),
        }
    }

    /// Estimated heap bytes (MEMORY USAGE): the packed buffer, or the tree with its members'
    /// own allocations extrapolated from the first `samples` members (all when 0).
    pub fn heap_estimate(&self, samples: usize) -> usize {
        use super::mem::alloc_size;
        match self {
            ZSet::Listpack(p) => alloc_size(p.buf.capacity()),
            ZSet::Tree(t) => {
                alloc_size(std::mem::size_of::<ScoreTree>()) + t.heap_estimate(samples)
            }
        }
    }

    /// Approximate bytes this value holds beyond its own size.
    pub fn heap_bytes(&self) -> usize {
        match self {
            ZSet::Listpack(p) => p.buf.capacity(),
            ZSet::Tree(t) => std::mem::size_of::<ScoreTree>() + t.heap_bytes(),
        }
    }
}

/// [`ZSet::upsert`] for the big encoding.
fn upsert_tree<E>(
    t: &mut ScoreTree,
    member: &[u8],
    decide: impl FnOnce(Option<f64>) -> Result<Option<f64>, E>,
) -> Result<Option<Added>, E> {
    match t.find(member) {
        Some(id) => {
            let cur = t.score_at(id);
            let Some(score) = decide(Some(cur))? else {
                return Ok(None);
            };
            if score == cur {
                return Ok(Some(Added::Same));
            }
            t.rescore(id, score);
            Ok(Some(Added::Updated))
        }
        None => {
            let Some(score) = decide(None)? else {
                return Ok(None);
            };
            t.insert_new(member, score);
            Ok(Some(Added::New))
        }
    }
}

/// Iterator over a sorted set's (member, score) pairs, lowest score first.
pub enum Iter<'a> {
    Packed(PackedIter<'a>),
    Tree(super::ztree::TreeIter<'a>),
}

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a [u8], f64);

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Iter::Packed(it) => it.next(),
            Iter::Tree(it) => it.next(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    const LIM: Limits = Limits {
        max_entries: 8,
        max_value: 10,
    };

    fn pairs(z: &ZSet) -> Vec<(Vec<u8>, f64)> {
        z.iter().map(|(m, s)| (m.to_vec(), s)).collect()
    }

    #[test]
    fn packed_round_trips_scores() {
        let mut z = ZSet::new();
        let scores = [
            0.0,
            -0.0,
            1.0,
            -1.0,
            63.0,
            64.0,
            -65.0,
            1e15,
            9_007_199_254_740_991.0,
            9_007_199_254_740_992.0,
            -9_007_199_254_740_992.0,
            0.1,
            1e300,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::MIN_POSITIVE,
        ];
        let lim = Limits {
            max_entries: 128,
            max_value: 64,
        };
        for (i, s) in scores.iter().enumerate() {
            assert_eq!(z.add(format!("m{i}").as_bytes(), *s, lim), Added::New);
        }
        assert_eq!(z.encoding(), "listpack");
        for (i, s) in scores.iter().enumerate() {
            let got = z.score(format!("m{i}").as_bytes());
            assert_eq!(got, Some(*s), "score {s}");
            assert_eq!(
                got.map(f64::is_sign_negative),
                Some(*s < 0.0),
                "sign of {s}"
            );
        }
        // Small integers take one byte, short decimals a few.
        for (score, bytes) in [
            (5.0, 1),
            (1.5, 2),
            (-0.25, 2),
            (123.45, 4),
            (0.1, 2),
            (1e-300, 9),
        ] {
            let mut p = Packed::default();
            p.insert(b"a", score);
            assert_eq!(p.buf.len(), 2 + bytes, "{score}");
            assert_eq!(
                p.iter().next().map(|e| e.1.to_bits()),
                Some(f64::to_bits(score))
            );
        }
    }

    #[test]
    fn conversions_follow_redis() {
        let mut z = ZSet::new();
        for i in 0..8 {
            z.add(format!("m{i}").as_bytes(), i as f64, LIM);
        }
        assert_eq!(z.encoding(), "listpack");
        // Updating an existing member never converts.
        assert_eq!(z.add(b"m3", 30.0, LIM), Added::Updated);
        assert_eq!(z.add(b"m3", 30.0, LIM), Added::Same);
        assert_eq!(z.encoding(), "listpack");
        assert_eq!(z.add(b"m8", 8.0, LIM), Added::New);
        assert_eq!(z.encoding(), "skiplist");
        for i in 0..9 {
            z.remove(format!("m{i}").as_bytes());
        }
        assert!(z.is_empty());
        assert_eq!(z.encoding(), "skiplist", "one-way");
        let mut z = ZSet::new();
        z.add(b"short", 1.0, LIM);
        z.add(b"longer-than-10", 1.0, LIM);
        assert_eq!(z.encoding(), "skiplist");
        assert_eq!(
            ZSet::for_first_member(11, LIM).encoding(),
            "skiplist",
            "a long first member"
        );
        assert_eq!(ZSet::for_first_member(10, LIM).encoding(), "listpack");
        let none = Limits {
            max_entries: 0,
            max_value: 10,
        };
        assert_eq!(ZSet::for_first_member(1, none).encoding(), "skiplist");
    }

    #[test]
    fn negative_zero_is_zero_in_a_listpack_only() {
        let mut small = ZSet::new();
        small.add(b"a", -0.0, LIM);
        assert!(small.score(b"a").is_some_and(|s| s.is_sign_positive()));
        let mut big = ZSet::Tree(Box::default());
        big.add(b"a", -0.0, LIM);
        assert!(big.score(b"a").is_some_and(|s| s.is_sign_negative()));
        let built = ZSet::from_sorted(&[(SmallBytes::from(&b"a"[..]), -0.0)], LIM);
        assert!(built.score(b"a").is_some_and(|s| s.is_sign_positive()));
        // Equality sees the sign of zero and the encoding (a gathered command's changes are
        // found by comparing).
        let mut zero = ZSet::Tree(Box::default());
        zero.add(b"a", 0.0, LIM);
        assert!(zero != big);
        let mut converted = small.clone();
        converted.convert();
        assert!(converted != small);
        assert!(converted == zero);
    }

    #[test]
    fn ranges() {
        for big in [false, true] {
            let mut z = ZSet::new();
            if big {
                z.convert();
            }
            for (m, s) in [("a", 1.0), ("b", 2.0), ("c", 2.0), ("d", 3.0), ("e", 5.0)] {
                z.add(m.as_bytes(), s, LIM);
            }
            let r = |min, min_ex, max, max_ex| ScoreRange {
                min,
                min_ex,
                max,
                max_ex,
            };
            assert_eq!(z.score_range(&r(2.0, false, 3.0, false)), 1..4);
            assert_eq!(z.score_range(&r(2.0, true, 3.0, true)), 3..3);
            assert_eq!(z.score_range(&r(5.0, false, 1.0, false)), 4..4);
            assert_eq!(
                z.score_range(&r(f64::NEG_INFINITY, false, f64::INFINITY, false)),
                0..5
            );
            let lex = |min, max| LexRange { min, max };
            use LexBound::*;
            assert_eq!(z.lex_range(&lex(Min, Max)), 0..5);
            assert_eq!(z.lex_range(&lex(Max, Min)), 5..5);
            assert_eq!(
                z.lex_range(&lex(Inclusive(b"b".to_vec()), Exclusive(b"d".to_vec()))),
                1..3
            );
            let mut back = Vec::new();
            z.walk(3, true, |m, _| {
                back.push(m.to_vec());
                true
            });
            assert_eq!(
                back,
                vec![b"d".to_vec(), b"c".to_vec(), b"b".to_vec(), b"a".to_vec()]
            );
            assert_eq!(z.rank(b"c"), Some((2, 2.0)));
            assert_eq!(z.get(4), Some((&b"e"[..], 5.0)));
            assert_eq!(z.pop(true), Some((SmallBytes::from(&b"e"[..]), 5.0)));
            assert_eq!(z.pop(false), Some((SmallBytes::from(&b"a"[..]), 1.0)));
            assert_eq!(z.len(), 3);
        }
    }

    proptest! {
        /// Every double (NaN aside) comes back bit for bit from the packed encoding.
        #[test]
        fn packed_scores_round_trip(bits in any::<u64>(), decimals in 0u32..8, m in any::<i32>()) {
            let exotic = f64::from_bits(bits);
            let short = m as f64 / 10f64.powi(decimals as i32);
            for score in [exotic, short] {
                if score.is_nan() {
                    continue;
                }
                let mut buf = Vec::new();
                encode_entry(&mut buf, b"m", score);
                let e = decode_entry(&buf, 0);
                let want = if score == 0.0 { 0.0 } else { score };
                prop_assert_eq!(e.map(|e| (e.score + 0.0).to_bits()), Some((want + 0.0).to_bits()));
                prop_assert_eq!(e.map(|e| e.end), Some(buf.len()));
            }
        }
    }

    #[test]
    fn stays_small() {
        assert!(std::mem::size_of::<ZSet>() <= 32);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Add(u8, i8),
        Remove(u8),
        Pop(bool),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            5 => (0u8..20, any::<i8>()).prop_map(|(m, s)| Op::Add(m, s)),
            2 => (0u8..20).prop_map(Op::Remove),
            1 => any::<bool>().prop_map(Op::Pop),
        ]
    }

    fn member(m: u8) -> Vec<u8> {
        if m == 19 {
            b"a-member-too-long".to_vec()
        } else {
            format!("m{m}").into_bytes()
        }
    }

    proptest! {
        /// A sorted set behaves like a member → score map kept in (score, member) order, in
        /// either encoding, and converts exactly when Redis would.
        #[test]
        fn matches_model(ops in proptest::collection::vec(op(), 0..120)) {
            let mut z = ZSet::new();
            let mut model: BTreeMap<Vec<u8>, f64> = BTreeMap::new();
            let mut big = false;
            for op in ops {
                match op {
                    Op::Add(m, s) => {
                        let m = member(m);
                        let s = s as f64 / 4.0;
                        let new = !model.contains_key(&m);
                        big |= new && (model.len() + 1 > LIM.max_entries || m.len() > LIM.max_value);
                        let want = match model.insert(m.clone(), s) {
                            None => Added::New,
                            Some(old) if old == s => Added::Same,
                            Some(_) => Added::Updated,
                        };
                        prop_assert_eq!(z.add(&m, s, LIM), want);
                    }
                    Op::Remove(m) => {
                        let m = member(m);
                        prop_assert_eq!(z.remove(&m), model.remove(&m));
                    }
                    Op::Pop(max) => {
                        let popped = z.pop(max).map(|(m, s)| (m.into_vec(), s));
                        let mut sorted: Vec<(Vec<u8>, f64)> = model.iter().map(|(m, s)| (m.clone(), *s)).collect();
                        sorted.sort_by(|a, b| cmp_entry(a.1, &a.0, b.1, &b.0));
                        let want = if max { sorted.last().cloned() } else { sorted.first().cloned() };
                        if let Some((m, _)) = &want {
                            model.remove(m);
                        }
                        prop_assert_eq!(popped, want);
                    }
                }
                prop_assert_eq!(z.encoding(), if big { "skiplist" } else { "listpack" });
                prop_assert_eq!(z.len(), model.len());
            }
            let mut sorted: Vec<(Vec<u8>, f64)> = model.iter().map(|(m, s)| (m.clone(), *s)).collect();
            sorted.sort_by(|a, b| cmp_entry(a.1, &a.0, b.1, &b.0));
            prop_assert_eq!(pairs(&z), sorted.clone());
            for (i, (m, s)) in sorted.iter().enumerate() {
                prop_assert_eq!(z.rank(m), Some((i, *s)));
                prop_assert_eq!(z.score(m), Some(*s));
            }
            let rebuilt = ZSet::from_sorted(
                &sorted.iter().map(|(m, s)| (SmallBytes::from(m.as_slice()), *s)).collect::<Vec<_>>(),
                LIM,
            );
            prop_assert_eq!(pairs(&rebuilt), pairs(&z));
        }
    }
}
