//! The set type, with Redis 7.0's two encodings:
//!
//! - **intset**: a sorted array of integers stored at the narrowest width (2, 4 or 8 bytes) that
//!   holds them all, used while every member is the canonical decimal form of an i64 (Redis's
//!   `string2ll`) and the set has at most `set-max-intset-entries` members;
//! - **hashtable**: an insertion-ordered hash set of byte strings, for everything else.
//!
//! Conversions are one-way, as in Redis: a set becomes a hashtable when it is given a member that
//! is not an integer or grows past the intset limit, and never goes back (a new set built from it
//! may start again as an intset). Redis 7.0 has no listpack encoding for sets; that came in 7.2.
//!
//! The hashtable keeps members in an `IndexSet`, so a random member is one index away and a scan
//! cursor is a plain position (see [`Set::scan`]).

use super::SmallBytes;
use crate::rng::Rng;
use crate::util::parse_i64;
use indexmap::IndexSet;

/// Redis caps the intset limit at 2^30 entries, whatever the configuration says.
const INTSET_ENTRIES_CAP: usize = 1 << 30;

/// The members of a hashtable-encoded set.
pub type MemberTable = IndexSet<SmallBytes, ahash::RandomState>;

/// A member as stored: an intset member is a number, a hashtable member bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Member<'a> {
    Int(i64),
    Bytes(&'a [u8]),
}

impl Member<'_> {
    /// The member's bytes (an integer in decimal).
    pub fn to_bytes(self) -> SmallBytes {
        match self {
            Member::Int(n) => SmallBytes::from(itoa::Buffer::new().format(n).as_bytes()),
            Member::Bytes(b) => SmallBytes::from(b),
        }
    }

    /// The integer this member stands for, if it is one in canonical form.
    fn as_int(self) -> Option<i64> {
        match self {
            Member::Int(n) => Some(n),
            Member::Bytes(b) => parse_i64(b),
        }
    }
}

/// A sorted array of distinct integers, each stored in `width` little-endian bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Intset {
    width: usize,
    data: Vec<u8>,
}

impl Default for Intset {
    fn default() -> Self {
        Intset {
            width: 2,
            data: Vec::new(),
        }
    }
}

/// The narrowest width that holds `v`.
fn width_for(v: i64) -> usize {
    if i16::try_from(v).is_ok() {
        2
    } else if i32::try_from(v).is_ok() {
        4
    } else {
        8
    }
}

fn decode(b: &[u8]) -> i64 {
    match *b {
        [a, b] => i16::from_le_bytes([a, b]).into(),
        [a, b, c, d] => i32::from_le_bytes([a, b, c, d]).into(),
        [a, b, c, d, e, f, g, h] => i64::from_le_bytes([a, b, c, d, e, f, g, h]),
        _ => unreachable!("intset entries are 2, 4 or 8 bytes"),
    }
}

fn encode(v: i64, width: usize) -> impl Iterator<Item = u8> {
    v.to_le_bytes().into_iter().take(width)
}

impl Intset {
    pub fn len(&self) -> usize {
        self.data.len() / self.width
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The `i`-th smallest member.
    pub fn get(&self, i: usize) -> Option<i64> {
        let start = i.checked_mul(self.width)?;
        self.data.get(start..start + self.width).map(decode)
    }

    /// The members in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = i64> + '_ {
        self.data.chunks_exact(self.width).map(decode)
    }

    /// Where `v` is, or where it would go.
    fn search(&self, v: i64) -> Result<usize, usize> {
        let (mut lo, mut hi) = (0, self.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.get(mid).map(|m| m.cmp(&v)) {
                Some(std::cmp::Ordering::Less) => lo = mid + 1,
                Some(std::cmp::Ordering::Greater) => hi = mid,
                _ => return Ok(mid),
            }
        }
        Err(lo)
    }

    pub fn contains(&self, v: i64) -> bool {
        width_for(v) <= self.width && self.search(v).is_ok()
    }

    /// Adds `v`; returns whether it was new. Widens every entry first when `v` needs more bytes
    /// (it is then smaller or larger than every member, so it goes at one end).
    pub fn insert(&mut self, v: i64) -> bool {
        let width = width_for(v);
        if width > self.width {
            let mut data = Vec::with_capacity((self.len() + 1) * width);
            if v < 0 {
                data.extend(encode(v, width));
            }
            for m in self.iter() {
                data.extend(encode(m, width));
            }
            if v >= 0 {
                data.extend(encode(v, width));
            }
            *self = Intset { width, data };
            return true;
        }
        match self.search(v) {
            Ok(_) => false,
            Err(i) => {
                let at = i * self.width;
                self.data.splice(at..at, encode(v, self.width));
                true
            }
        }
    }

    /// Removes `v`; returns whether it was there. The width never shrinks, as in Redis.
    pub fn remove(&mut self, v: i64) -> bool {
        if width_for(v) > self.width {
            return false;
        }
        match self.search(v) {
            Ok(i) => {
                let at = i * self.width;
                self.data.drain(at..at + self.width);
                true
            }
            Err(_) => false,
        }
    }
}

/// A set value.
#[derive(Debug, Clone, PartialEq)]
pub enum Set {
    Intset(Intset),
    /// Boxed: a hash table is several words, and keeping `Value` small helps every key.
    Hash(Box<MemberTable>),
}

impl Default for Set {
    fn default() -> Self {
        Set::Intset(Intset::default())
    }
}

/// Iterator over a set's members: ascending for an intset, insertion order (as changed by
/// removals) for a hashtable.
pub enum Iter<'a> {
    Int(std::slice::ChunksExact<'a, u8>),
    Hash(indexmap::set::Iter<'a, SmallBytes>),
}

impl<'a> Iterator for Iter<'a> {
    type Item = Member<'a>;
    fn next(&mut self) -> Option<Member<'a>> {
        match self {
            Iter::Int(it) => it.next().map(|b| Member::Int(decode(b))),
            Iter::Hash(it) => it.next().map(|b| Member::Bytes(b)),
        }
    }
}

impl Set {
    /// An empty set of the encoding Redis picks for a set whose first member is `first`
    /// (Redis's `setTypeCreate`).
    pub fn for_member(first: &[u8]) -> Set {
        if parse_i64(first).is_some() {
            Set::default()
        } else {
            Set::Hash(Box::default())
        }
    }

    /// Estimated heap bytes (MEMORY USAGE): an intset's array; for a table, its entry array
    /// and index, and the members' own allocations extrapolated from the first `samples`
    /// members (all when 0).
    pub fn heap_estimate(&self, samples: usize) -> usize {
        use super::mem::{alloc_size, extrapolate, table_bytes, vec_bytes};
        match self {
            Set::Intset(i) => alloc_size(i.data.capacity()),
            Set::Hash(t) => {
                // IndexSet's entry: the member and the cached hash.
                type Entry = (SmallBytes, u64);
                let members = t.iter().map(SmallBytes::heap_bytes);
                alloc_size(std::mem::size_of::<MemberTable>())
                    + vec_bytes::<Entry>(t.capacity())
                    + table_bytes::<usize>(t.capacity())
                    + extrapolate(members, t.len(), samples)
            }
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Set::Intset(s) => s.len(),
            Set::Hash(h) => h.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The name OBJECT ENCODING reports.
    pub fn encoding(&self) -> &'static str {
        match self {
            Set::Intset(_) => "intset",
            Set::Hash(_) => "hashtable",
        }
    }

    /// Moves every member into a hash table (one-way).
    fn convert_to_hash(&mut self) -> &mut MemberTable {
        if let Set::Intset(s) = self {
            let mut table = MemberTable::with_capacity_and_hasher(s.len(), Default::default());
            table.extend(s.iter().map(|n| Member::Int(n).to_bytes()));
            *self = Set::Hash(Box::new(table));
        }
        match self {
            Set::Hash(h) => h,
            Set::Intset(_) => unreachable!("converted above"),
        }
    }

    /// Adds `m`; returns whether it was new. An intset becomes a hashtable when `m` is not an
    /// integer or when it would hold more than `intset_max` members.
    pub fn add(&mut self, m: &[u8], intset_max: usize) -> bool {
        self.add_member(Member::Bytes(m), intset_max)
    }

    /// [`Set::add`] for a member read from another set.
    pub fn add_member(&mut self, m: Member, intset_max: usize) -> bool {
        match self {
            Set::Intset(s) => match m.as_int() {
                Some(n) => {
                    if !s.insert(n) {
                        return false;
                    }
                    if s.len() > intset_max.min(INTSET_ENTRIES_CAP) {
                        self.convert_to_hash();
                    }
                    true
                }
                None => self.convert_to_hash().insert(m.to_bytes()),
            },
            Set::Hash(h) => match m {
                Member::Bytes(b) => !h.contains(b) && h.insert(SmallBytes::from(b)),
                Member::Int(_) => h.insert(m.to_bytes()),
            },
        }
    }

    /// Removes `m`; returns whether it was there.
    pub fn remove(&mut self, m: &[u8]) -> bool {
        self.remove_member(Member::Bytes(m))
    }

    /// [`Set::remove`] for a member read from another set.
    pub fn remove_member(&mut self, m: Member) -> bool {
        match self {
            Set::Intset(s) => m.as_int().is_some_and(|n| s.remove(n)),
            Set::Hash(h) => match m {
                Member::Bytes(b) => h.swap_remove(b),
                Member::Int(n) => h.swap_remove(itoa::Buffer::new().format(n).as_bytes()),
            },
        }
    }

    pub fn contains(&self, m: &[u8]) -> bool {
        self.contains_member(Member::Bytes(m))
    }

    /// [`Set::contains`] for a member read from another set.
    pub fn contains_member(&self, m: Member) -> bool {
        match self {
            Set::Intset(s) => m.as_int().is_some_and(|n| s.contains(n)),
            Set::Hash(h) => match m {
                Member::Bytes(b) => h.contains(b),
                Member::Int(n) => h.contains(itoa::Buffer::new().format(n).as_bytes()),
            },
        }
    }

    pub fn iter(&self) -> Iter<'_> {
        match self {
            Set::Intset(s) => Iter::Int(s.data.chunks_exact(s.width)),
            Set::Hash(h) => Iter::Hash(h.iter()),
        }
    }

    /// The member at position `i` of [`Set::iter`]'s order.
    pub fn get(&self, i: usize) -> Option<Member<'_>> {
        match self {
            Set::Intset(s) => s.get(i).map(Member::Int),
            Set::Hash(h) => h.get_index(i).map(|b| Member::Bytes(b)),
        }
    }

    /// A uniformly chosen member, or `None` when empty.
    pub fn random(&self, rng: &mut Rng) -> Option<Member<'_>> {
        if self.is_empty() {
            return None;
        }
        self.get(rng.below(self.len()))
    }

    /// Removes and returns a uniformly chosen member, or `None` when empty.
    pub fn pop_random(&mut self, rng: &mut Rng) -> Option<SmallBytes> {
        if self.is_empty() {
            return None;
        }
        let i = rng.below(self.len());
        match self {
            Set::Intset(s) => {
                let n = s.get(i)?;
                s.remove(n);
                Some(Member::Int(n).to_bytes())
            }
            Set::Hash(h) => h.swap_remove_index(i),
        }
    }

    /// One step of SSCAN. An intset is small: every member is visited and the cursor is 0.
    /// A hashtable's cursor is the number of positions still to visit (`cursor - 1` down to 0;
    /// 0 starts from the top): about `count` positions are visited per call. A member present
    /// for the whole scan is visited at least once, because removals only move the last member
    /// (already visited, or below the cursor) into the freed position.
    pub fn scan(&self, cursor: u64, count: usize, mut f: impl FnMut(Member)) -> u64 {
        let Set::Hash(h) = self else {
            self.iter().for_each(f);
            return 0;
        };
        let mut pos = match usize::try_from(cursor) {
            Ok(0) | Err(_) => h.len(),
            Ok(c) => c.min(h.len()),
        };
        let mut visited = 0;
        while pos > 0 && visited < count.max(1) {
            pos -= 1;
            visited += 1;
            if let Some(b) = h.get_index(pos) {
                f(Member::Bytes(b));
            }
        }
        pos as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;

    fn members(s: &Set) -> Vec<Vec<u8>> {
        s.iter().map(|m| m.to_bytes().into_vec()).collect()
    }

    #[test]
    fn intset_widens_and_stays_sorted() {
        let mut s = Intset::default();
        assert!(s.insert(5));
        assert!(s.insert(-3));
        assert!(!s.insert(5));
        assert_eq!(s.width, 2);
        assert!(s.insert(70_000));
        assert_eq!(s.width, 4);
        assert!(s.insert(i64::MIN));
        assert_eq!(s.width, 8);
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![i64::MIN, -3, 5, 70_000]);
        assert!(s.contains(70_000) && !s.contains(6));
        assert!(s.remove(i64::MIN) && !s.remove(i64::MIN));
        assert_eq!(s.width, 8, "the width never shrinks");
        assert_eq!(s.get(2), Some(70_000));
        assert_eq!(s.get(3), None);
        let mut narrow = Intset::default();
        narrow.insert(1);
        assert!(!narrow.contains(1 << 40) && !narrow.remove(1 << 40));
    }

    #[test]
    fn encodings_convert_one_way() {
        let mut s = Set::for_member(b"1");
        assert_eq!(s.encoding(), "intset");
        for i in 0..4 {
            assert!(s.add(i.to_string().as_bytes(), 4));
        }
        assert_eq!(s.encoding(), "intset");
        assert!(s.add(b"4", 4));
        assert_eq!(s.encoding(), "hashtable");
        assert!(s.remove(b"4") && s.remove(b"3"));
        assert_eq!(s.encoding(), "hashtable");
        let mut t = Set::for_member(b"7");
        for m in ["-0", "01", " 1", "1.0", "x"] {
            let mut u = t.clone();
            assert!(u.add(m.as_bytes(), 512));
            assert_eq!(u.encoding(), "hashtable", "{m}");
            assert!(u.contains(m.as_bytes()));
        }
        assert!(t.add(b"-9223372036854775808", 512));
        assert_eq!(t.encoding(), "intset");
        assert_eq!(Set::for_member(b"a").encoding(), "hashtable");
        assert!(t.contains_member(Member::Int(i64::MIN)));
        assert!(!t.contains(b"+7"));
    }

    #[test]
    fn scan_visits_everything() {
        let mut s = Set::for_member(b"a");
        for i in 0..100 {
            s.add(format!("m{i}").as_bytes(), 512);
        }
        let mut seen = HashSet::new();
        let mut cursor = 0;
        loop {
            cursor = s.scan(cursor, 7, |m| {
                seen.insert(m.to_bytes().into_vec());
            });
            if cursor == 0 {
                break;
            }
        }
        assert_eq!(seen.len(), 100);
        let small = Set::for_member(b"1");
        assert_eq!(small.scan(12345, 1, |_| {}), 0);
    }

    /// One step of a random workload: add, remove or pop, over a member space that mixes
    /// integers (small and wide) with other strings so every conversion is crossed.
    #[derive(Debug, Clone)]
    enum Op {
        Add(Vec<u8>),
        Remove(Vec<u8>),
        Pop,
    }

    fn member() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            6 => (0i64..40).prop_map(|n| n.to_string().into_bytes()),
            1 => any::<i64>().prop_map(|n| n.to_string().into_bytes()),
            1 => "[a-c0-9 -]{0,3}".prop_map(String::into_bytes),
        ]
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            5 => member().prop_map(Op::Add),
            3 => member().prop_map(Op::Remove),
            1 => Just(Op::Pop),
        ]
    }

    proptest! {
        /// A set behaves like a `HashSet<Vec<u8>>`, and its encoding is intset exactly while
        /// Redis would keep one (conversions being one-way).
        #[test]
        fn matches_hashset_model(ops in proptest::collection::vec(op(), 0..300), max in 1usize..20) {
            let mut s = Set::default();
            let mut model: HashSet<Vec<u8>> = HashSet::new();
            let mut rng = crate::rng::Rng::new(3);
            let mut was_hash = false;
            for op in ops {
                match op {
                    Op::Add(m) => {
                        let fits = parse_i64(&m).is_some() && model.len() < max;
                        let expect_intset = s.encoding() == "intset" && (fits || model.contains(&m));
                        prop_assert_eq!(s.add(&m, max), model.insert(m));
                        prop_assert_eq!(s.encoding() == "intset", expect_intset);
                    }
                    Op::Remove(m) => prop_assert_eq!(s.remove(&m), model.remove(&m)),
                    Op::Pop => match s.pop_random(&mut rng) {
                        Some(m) => prop_assert!(model.remove(&m.into_vec())),
                        None => prop_assert!(model.is_empty()),
                    },
                }
                if was_hash {
                    prop_assert_eq!(s.encoding(), "hashtable");
                }
                was_hash = s.encoding() == "hashtable";
                prop_assert_eq!(s.len(), model.len());
            }
            let got: HashSet<Vec<u8>> = members(&s).into_iter().collect();
            prop_assert_eq!(got.len(), s.len());
            prop_assert_eq!(&got, &model);
            for m in &model {
                prop_assert!(s.contains(m));
            }
            if let Set::Intset(i) = &s {
                let v: Vec<i64> = i.iter().collect();
                prop_assert!(v.windows(2).all(|w| w[0] < w[1]));
            }
        }
    }
}
