//! The hash type: a map from field to value, both byte strings, in one of Redis's two
//! encodings.
//!
//! - `listpack`: one [`Pairpack`] of (field, value) pairs; a lookup is a linear walk. It is
//!   kept while the hash has at most `hash-max-listpack-entries` fields and every field and value
//!   written to it is at most `hash-max-listpack-value` bytes long. Its buffer is kept at its
//!   exact size ([`Hash::shrink`]), so a small hash costs one small allocation.
//! - `hashtable`: an insertion-ordered map ([`IndexMap`]), so that a random field is an O(1) pick
//!   and a scan cursor is a plain index (walked downwards, as the keyspace's SCAN does: a field
//!   present for a whole scan is returned at least once, whatever is deleted meanwhile).
//!
//! Conversion is one-way and happens exactly when Redis converts: [`Hash::try_conversion`]
//! before a write whose arguments are too long (Redis's `hashTypeTryConversion`), and inside
//! [`Hash::set`] for a too-long field or value, or when the field count passes the limit
//! (`hashTypeSet`).

use super::pairpack::Pairpack;
use super::SmallBytes;
use indexmap::IndexMap;

/// The big encoding's map.
pub type Table = IndexMap<SmallBytes, SmallBytes, ahash::RandomState>;

/// The largest listpack Redis lets a write produce (its `LISTPACK_MAX_SAFETY_SIZE`): a write
/// that could pass it converts the hash first.
const LISTPACK_BYTES_MAX: usize = 1 << 30;

/// The thresholds of the small encoding, from `hash-max-listpack-entries` and
/// `hash-max-listpack-value`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_entries: usize,
    pub max_value: usize,
}

/// A hash value.
#[derive(Debug, Clone)]
pub enum Hash {
    /// Alternating field, value.
    Listpack(Pairpack),
    /// Boxed, so that a small hash keeps `Value` small.
    Table(Box<Table>),
}

impl Default for Hash {
    fn default() -> Self {
        Hash::new()
    }
}

impl PartialEq for Hash {
    /// Equal when they hold the same fields and values, whatever the encodings and orders.
    fn eq(&self, other: &Hash) -> bool {
        self.len() == other.len() && self.iter().all(|(f, v)| other.get(f) == Some(v))
    }
}

impl Hash {
    /// An empty hash in the small encoding.
    pub fn new() -> Hash {
        Hash::Listpack(Pairpack::new())
    }

    /// Number of fields.
    pub fn len(&self) -> usize {
        match self {
            Hash::Listpack(lp) => lp.len(),
            Hash::Table(t) => t.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The name OBJECT ENCODING reports.
    pub fn encoding(&self) -> &'static str {
        match self {
            Hash::Listpack(_) => "listpack",
            Hash::Table(_) => "hashtable",
        }
    }

    /// The value of `field`.
    pub fn get(&self, field: &[u8]) -> Option<&[u8]> {
        match self {
            Hash::Listpack(lp) => lp.get(field),
            Hash::Table(t) => t.get(field).map(|v| &v[..]),
        }
    }

    pub fn contains(&self, field: &[u8]) -> bool {
        self.get(field).is_some()
    }

    /// Estimated heap bytes (MEMORY USAGE): the pair buffer of a small hash; for a table, its
    /// entry array and index, and the fields' and values' own allocations extrapolated from
    /// the first `samples` entries (all when 0).
    pub fn heap_estimate(&self, samples: usize) -> usize {
        use super::mem::{alloc_size, extrapolate, table_bytes, vec_bytes};
        match self {
            Hash::Listpack(lp) => alloc_size(lp.bytes()),
            Hash::Table(t) => {
                // IndexMap's entry: the field, the value and the cached hash.
                type Entry = (SmallBytes, SmallBytes, u64);
                let elements = t.iter().map(|(f, v)| f.heap_bytes() + v.heap_bytes());
                alloc_size(std::mem::size_of::<Table>())
                    + vec_bytes::<Entry>(t.capacity())
                    + table_bytes::<usize>(t.capacity())
                    + extrapolate(elements, t.len(), samples)
            }
        }
    }

    /// Converts to the big encoding (nothing if already there).
    pub fn convert(&mut self) {
        if let Hash::Listpack(lp) = self {
            let mut t = Table::with_capacity_and_hasher(lp.len(), Default::default());
            for (f, v) in lp.iter() {
                t.insert(f.into(), v.into());
            }
            *self = Hash::Table(Box::new(t));
        }
    }

    /// Converts before a write of `args` (fields and values) when one of them is too long for
    /// the small encoding, or the listpack could grow past its safety size (Redis's
    /// `hashTypeTryConversion`). Whether the fields exist does not matter.
    pub fn try_conversion<'a>(&mut self, args: impl IntoIterator<Item = &'a [u8]>, lim: Limits) {
        let Hash::Listpack(lp) = self else {
            return;
        };
        let mut sum = 0usize;
        for a in args {
            if a.len() > lim.max_value {
                self.convert();
                return;
            }
            sum = sum.saturating_add(a.len());
        }
        if lp.bytes().saturating_add(sum) > LISTPACK_BYTES_MAX {
            self.convert();
        }
    }

    /// Sets `field` to `value` (Redis's `hashTypeSet`): converts first if either is too long
    /// for the small encoding, and after if the field count passes the limit. Returns whether
    /// the field is new.
    pub fn set(&mut self, field: &[u8], value: &[u8], lim: Limits) -> bool {
        if field.len() > lim.max_value || value.len() > lim.max_value {
            self.convert();
        }
        match self {
            Hash::Listpack(lp) => {
                if !lp.set(field, value) {
                    return false;
                }
                if lp.len() > lim.max_entries {
                    self.convert();
                }
                true
            }
            Hash::Table(t) => match t.get_mut(field) {
                Some(v) => {
                    *v = value.into();
                    false
                }
                None => {
                    t.insert(field.into(), value.into());
                    true
                }
            },
        }
    }

    /// Removes `field`. Returns whether it was there.
    pub fn remove(&mut self, field: &[u8]) -> bool {
        match self {
            Hash::Listpack(lp) => lp.remove(field),
            // swap_remove keeps removal O(1) and moves the last entry, one a downward scan has
            // already passed, into the hole.
            Hash::Table(t) => t.swap_remove(field).is_some(),
        }
    }

    /// Gives back spare memory after writes: a listpack to its exact size, a table when it is
    /// mostly empty (as Redis shrinks its dicts).
    pub fn shrink(&mut self) {
        match self {
            Hash::Listpack(lp) => lp.shrink(),
            Hash::Table(t) => {
                if t.len() * 8 < t.capacity() {
                    t.shrink_to_fit();
                }
            }
        }
    }

    /// Every (field, value), in the encoding's order.
    pub fn iter(&self) -> Iter<'_> {
        match self {
            Hash::Listpack(lp) => Iter::Listpack(lp.iter()),
            Hash::Table(t) => Iter::Table(t.iter()),
        }
    }

    /// Positional access to the pairs, for random picks: O(1) per pick for both encodings
    /// (a listpack's pairs are collected once).
    pub fn indexed(&self) -> Indexed<'_> {
        match self {
            Hash::Listpack(lp) => Indexed::Pairs(lp.iter().collect()),
            Hash::Table(t) => Indexed::Table(t),
        }
    }

    /// One step of HSCAN. A listpack is returned whole with cursor 0, as Redis does. For a
    /// table, `cursor` is the number of positions still to visit (0 starts a scan); about
    /// `count` positions are visited from there downwards, and the next cursor is returned
    /// (0 when done).
    pub fn scan(&self, cursor: u64, count: usize, mut f: impl FnMut(&[u8], &[u8])) -> u64 {
        match self {
            Hash::Listpack(lp) => {
                for (k, v) in lp.iter() {
                    f(k, v);
                }
                0
            }
            Hash::Table(t) => {
                let mut pos = match cursor {
                    0 => t.len(),
                    c => usize::try_from(c).unwrap_or(usize::MAX).min(t.len()),
                };
                let mut visited = 0;
                while pos > 0 && visited < count.max(1) {
                    pos -= 1;
                    visited += 1;
                    if let Some((k, v)) = t.get_index(pos) {
                        f(k, v);
                    }
                }
                pos as u64
            }
        }
    }
}

/// Iterator over a hash's (field, value) pairs.
pub enum Iter<'a> {
    Listpack(super::pairpack::Iter<'a>),
    Table(indexmap::map::Iter<'a, SmallBytes, SmallBytes>),
}

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Iter::Listpack(it) => it.next(),
            Iter::Table(it) => it.next().map(|(f, v)| (&f[..], &v[..])),
        }
    }
}

/// A hash's pairs by position (see [`Hash::indexed`]).
pub enum Indexed<'a> {
    Pairs(Vec<(&'a [u8], &'a [u8])>),
    Table(&'a Table),
}

impl<'a> Indexed<'a> {
    pub fn len(&self) -> usize {
        match self {
            Indexed::Pairs(p) => p.len(),
            Indexed::Table(t) => t.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The pair at position `i` (`i < len`).
    pub fn get(&self, i: usize) -> Option<(&'a [u8], &'a [u8])> {
        match self {
            Indexed::Pairs(p) => p.get(i).copied(),
            Indexed::Table(t) => t.get_index(i).map(|(f, v)| (&f[..], &v[..])),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::{HashMap, HashSet};

    const LIM: Limits = Limits {
        max_entries: 4,
        max_value: 8,
    };

    fn b(s: &str) -> &[u8] {
        s.as_bytes()
    }

    #[test]
    fn small_then_big() {
        let mut h = Hash::new();
        assert!(h.set(b("a"), b("1"), LIM));
        assert!(!h.set(b("a"), b("2"), LIM));
        assert_eq!(h.get(b("a")), Some(b("2")));
        // A value equal to a field name is not a field.
        assert!(h.set(b("b"), b("c"), LIM));
        assert_eq!(h.get(b("c")), None);
        for f in ["c", "d"] {
            h.set(b(f), b("v"), LIM);
        }
        assert_eq!((h.len(), h.encoding()), (4, "listpack"));
        h.set(b("e"), b("v"), LIM);
        assert_eq!((h.len(), h.encoding()), (5, "hashtable"));
        // One-way: back under the limit, still a table.
        assert!(h.remove(b("e")) && h.remove(b("d")));
        assert!(!h.remove(b("d")));
        assert_eq!(h.encoding(), "hashtable");
        let mut small = Hash::new();
        for (f, v) in h.iter() {
            small.set(f, v, LIM);
        }
        assert_eq!(small.encoding(), "listpack");
        assert_eq!(small, h);
    }

    #[test]
    fn long_strings_convert() {
        let mut h = Hash::new();
        h.set(b("a"), b("12345678"), LIM);
        assert_eq!(h.encoding(), "listpack");
        h.set(b("a"), b("123456789"), LIM);
        assert_eq!(h.encoding(), "hashtable");
        let mut h = Hash::new();
        h.try_conversion([b("short"), b("123456789")], LIM);
        assert_eq!((h.encoding(), h.len()), ("hashtable", 0));
        let mut h = Hash::new();
        h.try_conversion([b("short"), b("12345678")], LIM);
        assert_eq!(h.encoding(), "listpack");
    }

    #[test]
    fn listpack_is_kept_exact() {
        let mut h = Hash::new();
        for i in 0..5 {
            h.set(
                format!("f{i}").as_bytes(),
                b("v"),
                Limits {
                    max_entries: 128,
                    max_value: 64,
                },
            );
        }
        h.shrink();
        let Hash::Listpack(lp) = &h else { panic!() };
        // 5 pairs of 1 header byte + 2 + 1 bytes.
        assert_eq!(lp.bytes(), 20);
    }

    #[test]
    fn stays_small() {
        // A hash must not make every value bigger: it fits in a string's 40 bytes.
        assert_eq!(std::mem::size_of::<Hash>(), 32);
    }

    #[test]
    fn scan_table_survives_deletes() {
        let mut h = Hash::new();
        for i in 0..200 {
            h.set(format!("f{i}").as_bytes(), b("v"), LIM);
        }
        let mut seen = HashSet::new();
        let mut cursor = 0;
        let mut round = 0;
        loop {
            cursor = h.scan(cursor, 7, |f, _| {
                seen.insert(f.to_vec());
            });
            h.remove(format!("f{}", 2 * round + 1).as_bytes());
            round += 1;
            if cursor == 0 {
                break;
            }
        }
        for i in (0..200).step_by(2) {
            assert!(seen.contains(format!("f{i}").as_bytes()), "missing f{i}");
        }
    }

    /// One step of the model test.
    #[derive(Debug, Clone)]
    enum Op {
        Set(u8, Vec<u8>),
        Del(u8),
        Incr(u8, i8),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u8..12, proptest::collection::vec(b'0'..=b'9', 0..12)).prop_map(|(f, v)| Op::Set(f, v)),
            2 => (0u8..12).prop_map(Op::Del),
            2 => (0u8..12, any::<i8>()).prop_map(|(f, by)| Op::Incr(f, by)),
        ]
    }

    /// Field names: some too long for the small encoding.
    fn field(f: u8) -> Vec<u8> {
        if f == 11 {
            b"a-long-field-name".to_vec()
        } else {
            format!("f{f}").into_bytes()
        }
    }

    proptest! {
        /// A hash behaves like a HashMap under any sequence of writes, and converts exactly
        /// when a write makes it too big for the small encoding, never back.
        #[test]
        fn matches_hashmap_model(ops in proptest::collection::vec(op(), 0..80)) {
            let mut h = Hash::new();
            let mut model: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
            let mut big = false;
            for op in ops {
                match op {
                    Op::Set(f, v) => {
                        let f = field(f);
                        big |= f.len() > LIM.max_value || v.len() > LIM.max_value;
                        prop_assert_eq!(h.set(&f, &v, LIM), model.insert(f, v).is_none());
                    }
                    Op::Del(f) => {
                        let f = field(f);
                        prop_assert_eq!(h.remove(&f), model.remove(&f).is_some());
                    }
                    Op::Incr(f, by) => {
                        let f = field(f);
                        let old = h.get(&f).map(|v| v.to_vec());
                        prop_assert_eq!(&old, &model.get(&f).cloned());
                        let n = old.and_then(|v| crate::util::parse_i64(&v)).unwrap_or(0);
                        let v = (n as i128 + by as i128).to_string().into_bytes();
                        big |= f.len() > LIM.max_value || v.len() > LIM.max_value;
                        h.set(&f, &v, LIM);
                        model.insert(f, v);
                    }
                }
                big |= model.len() > LIM.max_entries;
                h.shrink();
                prop_assert_eq!(h.len(), model.len());
                prop_assert_eq!(h.encoding(), if big { "hashtable" } else { "listpack" });
            }
            let got: HashMap<Vec<u8>, Vec<u8>> =
                h.iter().map(|(f, v)| (f.to_vec(), v.to_vec())).collect();
            prop_assert_eq!(&got, &model);
            for f in 0..12 {
                let f = field(f);
                prop_assert_eq!(h.get(&f), model.get(&f).map(|v| &v[..]));
            }
            let ix = h.indexed();
            let picked: HashMap<Vec<u8>, Vec<u8>> = (0..ix.len())
                .filter_map(|i| ix.get(i))
                .map(|(f, v)| (f.to_vec(), v.to_vec()))
                .collect();
            prop_assert_eq!(&picked, &model);
            let mut scanned = HashMap::new();
            let mut cursor = 0;
            loop {
                cursor = h.scan(cursor, 3, |f, v| { scanned.insert(f.to_vec(), v.to_vec()); });
                if cursor == 0 { break; }
            }
            prop_assert_eq!(&scanned, &model);
        }
    }
}
