//! Streams (Redis's `t_stream.c` data structure): entries with ids that only grow, each a list
//! of (field, value) pairs, plus the stream's bookkeeping (last id, first id, the largest id
//! deleted, the count of entries ever added) and its consumer groups ([`group`]).
//!
//! This module knows nothing of RESP or commands. The commands (`cmd::stream`) check every
//! argument before calling in; the methods here assert their preconditions (an appended id is
//! greater than the last one).
//!
//! Storage: Redis's own. Entries live in nodes of at most `stream-node-max-entries` entries and
//! about `stream-node-max-bytes` bytes, keyed by their first entry's id, each node a listpack in
//! Redis's byte format and layout ([`node`]). Nodes grow, are marked and are dropped exactly as
//! Redis's `streamAppendItem`, `streamIteratorRemoveEntry` and `streamTrim` do, so after the
//! same commands a stream's nodes are byte for byte Redis's, and so is its DUMP payload.

pub mod group;
#[cfg(test)]
mod model;
mod node;

pub use group::{Consumer, Group, Nack};

use crate::types::redis_listpack as lp;
use std::collections::BTreeMap;

/// A stream entry id, `ms-seq`. Ordered by (ms, seq).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct StreamId {
    pub ms: u64,
    pub seq: u64,
}

impl StreamId {
    pub const MIN: StreamId = StreamId { ms: 0, seq: 0 };
    pub const MAX: StreamId = StreamId {
        ms: u64::MAX,
        seq: u64::MAX,
    };

    pub const fn new(ms: u64, seq: u64) -> StreamId {
        StreamId { ms, seq }
    }

    /// The smallest id greater than this one (`None` after `MAX`).
    pub fn next(self) -> Option<StreamId> {
        if self.seq < u64::MAX {
            Some(StreamId::new(self.ms, self.seq + 1))
        } else if self.ms < u64::MAX {
            Some(StreamId::new(self.ms + 1, 0))
        } else {
            None
        }
    }

    /// The greatest id smaller than this one (`None` before `MIN`).
    pub fn prev(self) -> Option<StreamId> {
        if self.seq > 0 {
            Some(StreamId::new(self.ms, self.seq - 1))
        } else if self.ms > 0 {
            Some(StreamId::new(self.ms - 1, u64::MAX))
        } else {
            None
        }
    }

    /// Appends `ms-seq`.
    pub fn write(self, out: &mut Vec<u8>) {
        let mut b = itoa::Buffer::new();
        out.extend_from_slice(b.format(self.ms).as_bytes());
        out.push(b'-');
        out.extend_from_slice(b.format(self.seq).as_bytes());
    }

    /// `ms-seq` as bytes.
    pub fn to_bytes(self) -> Vec<u8> {
        let mut v = Vec::with_capacity(24);
        self.write(&mut v);
        v
    }

    /// The 16-byte big-endian form (Redis's rax key and RDB "raw id").
    pub fn to_be_bytes(self) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&self.ms.to_be_bytes());
        out[8..].copy_from_slice(&self.seq.to_be_bytes());
        out
    }

    pub fn from_be_bytes(b: [u8; 16]) -> StreamId {
        let mut ms = [0u8; 8];
        let mut seq = [0u8; 8];
        ms.copy_from_slice(&b[..8]);
        seq.copy_from_slice(&b[8..]);
        StreamId::new(u64::from_be_bytes(ms), u64::from_be_bytes(seq))
    }
}

impl std::fmt::Display for StreamId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// `stream-node-max-bytes` and `stream-node-max-entries` (Redis 7.0's defaults: 4096, 100).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub node_max_bytes: usize,
    pub node_max_entries: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            node_max_bytes: 4096,
            node_max_entries: 100,
        }
    }
}

/// What XADD/XTRIM trim by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrimBy {
    /// MAXLEN: keep at most this many entries.
    MaxLen(u64),
    /// MINID: drop entries with an id below this one.
    MinId(StreamId),
}

/// A trim request, as XADD/XTRIM parse it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trim {
    pub by: TrimBy,
    /// `~`: only whole nodes are removed (Redis's approximate trimming).
    pub approx: bool,
    /// LIMIT: the most entries removed (0: no limit). The commands accept it only with
    /// `approx` (and give `~` without LIMIT Redis's default, 100 × node max entries);
    /// [`Stream::trim`] honours it either way, as `streamTrim` does.
    pub limit: u64,
}

/// The most bytes a node may reach whatever the configuration (Redis's
/// `STREAM_LISTPACK_MAX_SIZE`).
const NODE_BYTES_CAP: usize = 1 << 30;

/// A stream.
///
/// Entries live in nodes keyed by master id (see the module doc); `length` counts the live
/// ones. Every node holds at least one entry, live or deleted; a node whose entries are all
/// deleted goes (except when trimming by MINID leaves one, as Redis's does).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Stream {
    nodes: BTreeMap<StreamId, Vec<u8>>,
    length: u64,
    /// The id of the last entry added (kept when that entry is deleted).
    pub last_id: StreamId,
    /// The id of the first entry (0-0 when empty).
    pub first_id: StreamId,
    /// The greatest id deleted by XDEL or set by XSETID MAXDELETEDID (trimming leaves it, as
    /// Redis 7.0's does).
    pub max_deleted_id: StreamId,
    /// How many entries were ever added.
    pub entries_added: u64,
    /// Consumer groups by name, in byte order (as Redis's rax lists them).
    pub groups: BTreeMap<Box<[u8]>, Group>,
}

/// A piece of an entry on its way to a scan callback: bytes inside a node, or an integer
/// element written in decimal into the scan's text buffer (`start..end`).
enum Piece<'a> {
    Bytes(&'a [u8]),
    Text(usize, usize),
}

/// The reusable buffers of one scan: nothing is allocated per entry once they have grown.
struct Scratch<'a> {
    pieces: Vec<Piece<'a>>,
    text: Vec<u8>,
    /// The slice list handed to the callback, kept empty between entries (see [`recycle`]).
    flat: Vec<&'static [u8]>,
}

/// Empties a slice list and gives its allocation back with another lifetime (an in-place
/// collect of an empty vector reuses the buffer).
fn recycle<'b>(mut v: Vec<&[u8]>) -> Vec<&'b [u8]> {
    v.clear();
    v.into_iter().map(|_| &[][..]).collect()
}

impl<'a> Scratch<'a> {
    fn new() -> Self {
        Scratch {
            pieces: Vec::new(),
            text: Vec::new(),
            flat: Vec::new(),
        }
    }

    fn push(&mut self, e: lp::Entry<'a>) {
        match e {
            lp::Entry::Str(s) => self.pieces.push(Piece::Bytes(s)),
            lp::Entry::Int(_) => {
                let start = self.text.len();
                e.write(&mut self.text);
                self.pieces.push(Piece::Text(start, self.text.len()));
            }
        }
    }

    /// Reads the fields and values of entry `e` into `pieces`.
    fn load(&mut self, n: &'a [u8], e: &node::EntryAt, m: &node::Master) {
        self.pieces.clear();
        self.text.clear();
        if e.same_fields() {
            let (mut fp, mut vp) = (m.fields_pos, e.body);
            for _ in 0..e.num_fields {
                let (f, next_f) = node::at(n, fp);
                let (v, next_v) = node::at(n, vp);
                self.push(f);
                self.push(v);
                (fp, vp) = (next_f, next_v);
            }
        } else {
            let mut p = e.body;
            for _ in 0..e.num_fields * 2 {
                let (x, next) = node::at(n, p);
                self.push(x);
                p = next;
            }
        }
    }

    /// Hands the loaded entry to `f`; returns what `f` returns.
    fn call(&mut self, id: StreamId, f: &mut dyn FnMut(StreamId, &[&[u8]]) -> bool) -> bool {
        let mut flat: Vec<&[u8]> = recycle(std::mem::take(&mut self.flat));
        let text = &self.text;
        flat.extend(self.pieces.iter().map(|p| match *p {
            Piece::Bytes(b) => b,
            Piece::Text(s, e) => &text[s..e],
        }));
        let go = f(id, &flat);
        self.flat = recycle(flat);
        go
    }
}

impl Stream {
    pub fn new() -> Stream {
        Stream::default()
    }

    /// Number of entries.
    pub fn len(&self) -> u64 {
        self.length
    }

    pub fn is_empty(&self) -> bool {
        self.length == 0
    }

    /// Appends an entry (`fields`: field, value, field, value, …; at least one pair).
    /// `id` must be greater than `last_id`. Starts a new node exactly when Redis's
    /// `streamAppendItem` would: the last node's bytes plus the new fields' and values'
    /// lengths reach `node_max_bytes`, or it has `node_max_entries` entries (deleted ones
    /// count).
    pub fn append(&mut self, id: StreamId, fields: &[&[u8]], lim: Limits) {
        assert!(id > self.last_id || (self.entries_added == 0 && id > StreamId::MIN));
        assert!(!fields.is_empty() && fields.len().is_multiple_of(2));
        let added_bytes: usize = fields.iter().map(|f| f.len()).sum();
        let max_bytes = match lim.node_max_bytes {
            0 => NODE_BYTES_CAP,
            n => n.min(NODE_BYTES_CAP),
        };
        let last = self.nodes.iter_mut().next_back().filter(|(_, n)| {
            let m = node::master(n);
            let entries = (m.live + m.deleted) as u64;
            n.len() + added_bytes < max_bytes
                && (lim.node_max_entries == 0 || entries < lim.node_max_entries as u64)
        });
        match last {
            Some((&master_id, n)) => node::append(n, master_id, id, fields),
            None => {
                // The last node is complete: give back its growth room.
                if let Some((_, n)) = self.nodes.iter_mut().next_back() {
                    n.shrink_to_fit();
                }
                self.nodes.insert(id, node::create(id, fields));
            }
        }
        self.length += 1;
        // Wraps as Redis's counter does (XSETID or a RESTOREd value may set it at the top).
        self.entries_added = self.entries_added.wrapping_add(1);
        self.last_id = id;
        if self.length == 1 {
            self.first_id = id;
        }
    }

    /// Calls `f(id, fields)` for the entries with ids in `start..=end`, ascending (or
    /// descending when `rev`), until `f` returns false. `fields` is field, value, field, ….
    pub fn scan(
        &self,
        start: StreamId,
        end: StreamId,
        rev: bool,
        f: &mut dyn FnMut(StreamId, &[&[u8]]) -> bool,
    ) {
        if start > end {
            return;
        }
        let mut scratch = Scratch::new();
        if rev {
            for (&mid, n) in self.nodes.range(..=end).rev() {
                if !scan_node_rev(n, mid, start, end, &mut scratch, f) || mid <= start {
                    return;
                }
            }
        } else {
            // Entries at or after `start` may sit in the node before the first master above it.
            let from = self
                .nodes
                .range(..=start)
                .next_back()
                .map_or(StreamId::MIN, |(&k, _)| k);
            for (&mid, n) in self.nodes.range(from..=end) {
                if !scan_node(n, mid, start, end, &mut scratch, f) {
                    return;
                }
            }
        }
    }

    /// Whether an entry with this id exists.
    pub fn contains(&self, id: StreamId) -> bool {
        self.nodes
            .range(..=id)
            .next_back()
            .is_some_and(|(&mid, n)| find_live(n, mid, id).is_some())
    }

    /// The first (or, with `last`, the last) live entry's id.
    pub fn edge_id(&self, last: bool) -> Option<StreamId> {
        let edge = |(&mid, n): (&StreamId, &Vec<u8>)| node_edge(n, mid, last);
        if last {
            self.nodes.iter().rev().find_map(edge)
        } else {
            self.nodes.iter().find_map(edge)
        }
    }

    /// Deletes one entry (XDEL); true if it existed. Marks it deleted in its node, or drops
    /// the node when it was the node's last live entry (Redis's `streamIteratorRemoveEntry`).
    /// Keeps `first_id` current; the caller (XDEL) raises `max_deleted_id`, as Redis's
    /// command does.
    pub fn delete(&mut self, id: StreamId) -> bool {
        let Some((&mid, n)) = self.nodes.range_mut(..=id).next_back() else {
            return false;
        };
        let Some(e) = find_live(n, mid, id) else {
            return false;
        };
        if node::master(n).live == 1 {
            self.nodes.remove(&mid);
        } else {
            node::mark_deleted(n, &e);
        }
        self.length -= 1;
        if self.length == 0 {
            self.first_id = StreamId::MIN;
        } else if id == self.first_id {
            self.first_id = self.edge_id(false).unwrap_or(StreamId::MIN);
        }
        true
    }

    /// Trims as Redis 7.0's `streamTrim` does; returns how many entries were removed. Whole
    /// nodes go first; then, unless `approx`, entries of the next node are marked deleted
    /// until the condition holds. A nonzero `limit` stops before a node that would take the
    /// count past it. `first_id` follows; `max_deleted_id` and `entries_added` stay.
    pub fn trim(&mut self, t: Trim, _lim: Limits) -> u64 {
        let mut removed = 0u64;
        while let Some((&mid, n)) = self.nodes.iter_mut().next() {
            if matches!(t.by, TrimBy::MaxLen(max) if self.length <= max) {
                break;
            }
            let live = node::master(n).live as u64;
            if t.limit > 0 && removed + live > t.limit {
                break;
            }
            let whole = match t.by {
                TrimBy::MaxLen(max) => self.length - live >= max,
                TrimBy::MinId(min) => node_last_any(n, mid) < min,
            };
            if whole {
                self.nodes.remove(&mid);
                self.length -= live;
                removed += live;
                continue;
            }
            if !t.approx {
                let marked = trim_node(n, mid, t.by, self.length);
                self.length -= marked;
                removed += marked;
            }
            break;
        }
        self.first_id = match self.length {
            0 => StreamId::MIN,
            _ => self.edge_id(false).unwrap_or(StreamId::MIN),
        };
        removed
    }

    /// Bytes of memory this stream holds, approximately (MEMORY USAGE, bench figures): the
    /// nodes' buffers and tree slots, and the groups' names, PEL entries and consumers.
    pub fn mem_bytes(&self) -> usize {
        const TREE_SLOT: usize = 48;
        let nodes: usize = self.nodes.values().map(|n| n.capacity() + TREE_SLOT).sum();
        let groups: usize = self
            .groups
            .iter()
            .map(|(name, g)| {
                let pel: usize = g.pel.values().map(|n| 64 + n.consumer.len()).sum();
                let consumers: usize = g
                    .consumers
                    .iter()
                    .map(|(c, v)| 64 + c.len() + v.pending.len() * 32)
                    .sum();
                128 + name.len() + pel + consumers
            })
            .sum();
        nodes + groups
    }

    /// Estimated heap bytes (MEMORY USAGE): the node buffers extrapolated from the first
    /// `samples` nodes (all when 0) with a tree slot each, and each group's bookkeeping, its
    /// PEL's entries by count (consumer names sampled the same way) and its consumers.
    pub fn heap_estimate(&self, samples: usize) -> usize {
        use crate::types::mem::{alloc_size, extrapolate};
        const TREE_SLOT: usize = 48;
        const NACK: usize = 64;
        const CONSUMER: usize = 64;
        let node_costs = self
            .nodes
            .values()
            .map(|n| alloc_size(n.capacity()) + TREE_SLOT);
        let nodes = extrapolate(node_costs, self.nodes.len(), samples);
        let groups: usize = self
            .groups
            .iter()
            .map(|(name, g)| {
                let names = g.pel.values().map(|n| NACK + alloc_size(n.consumer.len()));
                let pel = extrapolate(names, g.pel.len(), samples);
                let consumers: usize = g
                    .consumers
                    .iter()
                    .map(|(c, v)| CONSUMER + alloc_size(c.len()) + v.pending.len() * 32)
                    .sum();
                128 + alloc_size(name.len()) + pel + consumers
            })
            .sum();
        nodes + groups
    }

    /// The nodes, by master id, with their bytes (Redis's listpacks; the RDB codec writes
    /// them as they are).
    pub fn nodes(&self) -> impl ExactSizeIterator<Item = (StreamId, &[u8])> + '_ {
        self.nodes.iter().map(|(&k, v)| (k, &v[..]))
    }

    /// A stream of the nodes `nodes` (master id, bytes), as an RDB payload holds them, with
    /// its length counted from them and the rest of its bookkeeping zero. `None` unless every
    /// node is a well-formed stream listpack, no master id repeats, and every node's entries
    /// sit between its master id and the next node's, so live ids ascend.
    pub fn from_nodes(nodes: Vec<(StreamId, Vec<u8>)>) -> Option<Stream> {
        let mut s = Stream::new();
        let mut last_any = BTreeMap::new();
        for (mid, n) in nodes {
            let sum = node::check(mid, &n)?;
            s.length = s.length.checked_add(sum.live)?;
            last_any.insert(mid, sum.last_any);
            if s.nodes.insert(mid, n).is_some() {
                return None;
            }
        }
        let masters: Vec<StreamId> = s.nodes.keys().copied().collect();
        for w in masters.windows(2) {
            if last_any.get(&w[0]).is_none_or(|&l| l >= w[1]) {
                return None;
            }
        }
        Some(s)
    }

    /// Redis's `streamRangeHasTombstones`: whether an entry was ever deleted between `start`
    /// and `end` (inclusive), as far as the stream's bookkeeping can tell.
    pub fn range_has_tombstones(&self, start: StreamId, end: StreamId) -> bool {
        if self.is_empty() || self.max_deleted_id == StreamId::MIN {
            return false;
        }
        let start = start.max(self.first_id);
        start <= self.max_deleted_id && self.max_deleted_id <= end
    }

    /// Redis's `streamEstimateDistanceFromFirstEverEntry`: the entries-read counter a group
    /// whose last delivered id is `id` has, or `None` when it cannot be known.
    pub fn estimate_entries_read(&self, id: StreamId) -> Option<u64> {
        if self.entries_added == 0 {
            return Some(0);
        }
        if self.is_empty() && id < self.last_id {
            return Some(self.entries_added);
        }
        if id == self.last_id {
            return Some(self.entries_added);
        }
        if id > self.last_id {
            return None;
        }
        if self.max_deleted_id == StreamId::MIN || self.max_deleted_id < self.first_id {
            // Loaded payloads keep entries_added >= length; saturate all the same.
            let before_first = self.entries_added.saturating_sub(self.len());
            if id < self.first_id {
                return Some(before_first);
            }
            if id == self.first_id {
                return Some(before_first + 1);
            }
        }
        None
    }

    /// The lag XINFO reports for a group (`None`: nil), as Redis 7.0 computes it.
    pub fn group_lag(&self, g: &Group) -> Option<u64> {
        if self.entries_added == 0 {
            return Some(0);
        }
        match g.entries_read {
            Some(read) if !self.range_has_tombstones(g.last_id, StreamId::MAX) => {
                Some(self.entries_added.saturating_sub(read))
            }
            _ => {
                // The counter is unknown or deletions make it unreliable; estimate again.
                self.estimate_entries_read(g.last_id)
                    .map(|read| self.entries_added.saturating_sub(read))
            }
        }
    }
}

/// Scans one node forward (see [`Stream::scan`]); false once the scan is over.
fn scan_node<'a>(
    n: &'a [u8],
    mid: StreamId,
    start: StreamId,
    end: StreamId,
    scratch: &mut Scratch<'a>,
    f: &mut dyn FnMut(StreamId, &[&[u8]]) -> bool,
) -> bool {
    let m = node::master(n);
    let mut pos = m.first_entry;
    while !node::is_end(n, pos) {
        let e = node::entry(n, pos, mid, &m);
        pos = node::end_of(n, &e);
        // Deleted entries are skipped before comparing: only live ids are known to ascend.
        if e.deleted() || e.id < start {
            continue;
        }
        if e.id > end {
            return false;
        }
        scratch.load(n, &e, &m);
        if !scratch.call(e.id, f) {
            return false;
        }
    }
    true
}

/// Scans one node backward, walking the entries by their lp-counts; false once the scan is
/// over.
fn scan_node_rev<'a>(
    n: &'a [u8],
    mid: StreamId,
    start: StreamId,
    end: StreamId,
    scratch: &mut Scratch<'a>,
    f: &mut dyn FnMut(StreamId, &[&[u8]]) -> bool,
) -> bool {
    let m = node::master(n);
    let mut pos = n.len() - 1;
    while let Some(p) = node::entry_before(n, pos) {
        pos = p;
        let e = node::entry(n, p, mid, &m);
        if e.deleted() || e.id > end {
            continue;
        }
        if e.id < start {
            return false;
        }
        scratch.load(n, &e, &m);
        if !scratch.call(e.id, f) {
            return false;
        }
    }
    true
}

/// The live entry `id` in node `n`.
fn find_live(n: &[u8], mid: StreamId, id: StreamId) -> Option<node::EntryAt> {
    let m = node::master(n);
    let mut pos = m.first_entry;
    while !node::is_end(n, pos) {
        let e = node::entry(n, pos, mid, &m);
        if !e.deleted() && e.id >= id {
            return (e.id == id).then_some(e);
        }
        pos = node::end_of(n, &e);
    }
    None
}

/// The first (or last) live id of node `n`.
fn node_edge(n: &[u8], mid: StreamId, last: bool) -> Option<StreamId> {
    let m = node::master(n);
    if m.live == 0 {
        return None;
    }
    if last {
        let mut pos = n.len() - 1;
        while let Some(p) = node::entry_before(n, pos) {
            let e = node::entry(n, p, mid, &m);
            if !e.deleted() {
                return Some(e.id);
            }
            pos = p;
        }
    } else {
        let mut pos = m.first_entry;
        while !node::is_end(n, pos) {
            let e = node::entry(n, pos, mid, &m);
            if !e.deleted() {
                return Some(e.id);
            }
            pos = node::end_of(n, &e);
        }
    }
    None
}

/// The id of node `n`'s last entry, deleted or not (what `streamTrim` compares with MINID).
fn node_last_any(n: &[u8], mid: StreamId) -> StreamId {
    let m = node::master(n);
    node::entry_before(n, n.len() - 1).map_or(mid, |p| node::entry(n, p, mid, &m).id)
}

/// Marks entries of node `n` deleted from its start until the trim condition holds (an
/// exact trim's last step in `streamTrim`); returns how many it marked. `length` is the
/// stream's length before.
fn trim_node(n: &mut Vec<u8>, mid: StreamId, by: TrimBy, mut length: u64) -> u64 {
    let m = node::master(n);
    let mut pos = m.first_entry;
    let mut marked = 0;
    while !node::is_end(n, pos) {
        let e = node::entry(n, pos, mid, &m);
        let stop = match by {
            TrimBy::MaxLen(max) => length <= max,
            TrimBy::MinId(min) => e.id >= min,
        };
        if stop {
            break;
        }
        pos = node::end_of(n, &e);
        if !e.deleted() {
            // Flags fit one byte either way, so `pos` and `m` stay valid.
            lp::replace_int(n, e.pos, e.flags | node::DELETED);
            marked += 1;
            length -= 1;
        }
    }
    node::add_counts(n, -(marked as i64), marked as i64);
    marked
}

#[cfg(test)]
mod tests {
    use super::model::Model;
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn id_order_next_prev() {
        let a = StreamId::new(1, u64::MAX);
        let b = StreamId::new(2, 0);
        assert!(a < b && StreamId::MIN < a && b < StreamId::MAX);
        assert_eq!(a.next(), Some(b));
        assert_eq!(b.prev(), Some(a));
        assert_eq!(StreamId::new(3, 4).next(), Some(StreamId::new(3, 5)));
        assert_eq!(StreamId::new(3, 4).prev(), Some(StreamId::new(3, 3)));
        assert_eq!(StreamId::MAX.next(), None);
        assert_eq!(StreamId::MIN.prev(), None);
        assert_eq!(StreamId::from_be_bytes(a.to_be_bytes()), a);
        assert_eq!(b.to_bytes(), b"2-0");
    }

    #[test]
    fn nodes_split_by_entries_and_bytes() {
        let lim = Limits::default();
        let mut s = Stream::new();
        for i in 1..=250 {
            s.append(StreamId::new(i, 0), &[b"f", b"v"], lim);
        }
        assert_eq!(s.nodes().len(), 3);
        let mut s = Stream::new();
        let big = vec![b'x'; 1000];
        for i in 1..=10 {
            s.append(StreamId::new(i, 0), &[b"f", &big], lim);
        }
        // 4 entries of ~1 KiB fit under 4096 bytes; the fifth starts a node.
        assert!(s.nodes().len() >= 3, "{}", s.nodes().len());
        assert!(s.nodes().all(|(_, n)| n.len() < 4096 + 1100));
    }

    #[test]
    fn minid_can_leave_a_hollow_node() {
        let lim = Limits::default();
        let mut s = Stream::new();
        for i in 1..=5 {
            s.append(StreamId::new(i, 0), &[b"f", b"v"], lim);
        }
        assert!(s.delete(StreamId::new(5, 0)));
        let t = Trim {
            by: TrimBy::MinId(StreamId::new(5, 0)),
            approx: false,
            limit: 0,
        };
        assert_eq!(s.trim(t, lim), 4);
        assert!(s.is_empty());
        assert_eq!(s.nodes().len(), 1);
        assert_eq!(s.first_id, StreamId::MIN);
        s.append(StreamId::new(6, 0), &[b"f", b"v"], lim);
        assert_eq!(s.edge_id(false), Some(StreamId::new(6, 0)));
    }

    #[derive(Debug, Clone)]
    enum Op {
        Add {
            fields: u8,
            gap: u8,
            seq: u8,
        },
        Del(usize),
        Trim {
            max: bool,
            n: u16,
            approx: bool,
            limit: u8,
        },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (0..6u8, 0..3u8, 0..3u8).prop_map(|(fields, gap, seq)| Op::Add { fields, gap, seq }),
            2 => any::<usize>().prop_map(Op::Del),
            1 => (any::<bool>(), 0..60u16, any::<bool>(), 0..20u8)
                .prop_map(|(max, n, approx, limit)| Op::Trim { max, n, approx, limit }),
        ]
    }

    fn fields_of(kind: u8, i: u64) -> Vec<Vec<u8>> {
        let v = i.to_string().into_bytes();
        let f = |s: &str| s.as_bytes().to_vec();
        match kind {
            0 | 1 => vec![f("a"), v, f("b"), f("x")],
            2 => vec![f("a"), f("-12345678901")],
            3 => vec![f("7"), f("v"), f("b"), vec![b'z'; 70]],
            4 => vec![f("a"), v.repeat(40), f("b"), f("x")],
            _ => vec![f("c"), f("")],
        }
    }

    /// Every observable of `s` matches `m`, and the nodes are well formed.
    fn check(s: &Stream, m: &Model, probes: &[StreamId]) {
        assert_eq!(s.len(), m.len());
        assert_eq!(s.is_empty(), m.is_empty());
        assert_eq!(s.first_id, m.first_id);
        assert_eq!(s.last_id, m.last_id);
        assert_eq!(s.max_deleted_id, m.max_deleted_id);
        assert_eq!(s.entries_added, m.entries_added);
        assert_eq!(s.edge_id(false), m.edge_id(false));
        assert_eq!(s.edge_id(true), m.edge_id(true));
        let nodes: Vec<(StreamId, Vec<u8>)> = s.nodes().map(|(k, n)| (k, n.to_vec())).collect();
        let again = Stream::from_nodes(nodes).expect("nodes are well formed");
        assert_eq!(again.len(), s.len());
        for &a in probes {
            assert_eq!(s.contains(a), m.contains(a));
            for &b in probes {
                for rev in [false, true] {
                    assert_eq!(collect(s, a, b, rev, 3), collect_model(m, a, b, rev, 3));
                }
            }
        }
        for rev in [false, true] {
            let all = (StreamId::MIN, StreamId::MAX);
            assert_eq!(
                collect(s, all.0, all.1, rev, usize::MAX),
                collect_model(m, all.0, all.1, rev, usize::MAX)
            );
        }
    }

    type Seen = Vec<(StreamId, Vec<Vec<u8>>)>;

    fn collect(s: &Stream, a: StreamId, b: StreamId, rev: bool, max: usize) -> Seen {
        let mut out = Vec::new();
        s.scan(a, b, rev, &mut |id, f| {
            out.push((id, f.iter().map(|x| x.to_vec()).collect()));
            out.len() < max
        });
        out
    }

    fn collect_model(m: &Model, a: StreamId, b: StreamId, rev: bool, max: usize) -> Seen {
        let mut out = Vec::new();
        m.scan(a, b, rev, &mut |id, f| {
            out.push((id, f.iter().map(|x| x.to_vec()).collect()));
            out.len() < max
        });
        out
    }

    /// Applies a trim to both; approximate ones remove whole nodes only, never more than the
    /// exact trim would, and within the limit.
    fn trim_both(s: &mut Stream, m: &mut Model, t: Trim, lim: Limits) {
        let before: Vec<(StreamId, Vec<u8>)> = s.nodes().map(|(k, n)| (k, n.to_vec())).collect();
        let removed = s.trim(t, lim);
        if !t.approx {
            assert_eq!(removed, m.trim(t, lim));
            return;
        }
        let exact = Trim {
            approx: false,
            limit: 0,
            ..t
        };
        assert!(removed <= m.clone().trim(exact, lim));
        assert!(t.limit == 0 || removed <= t.limit);
        let after: Vec<(StreamId, Vec<u8>)> = s.nodes().map(|(k, n)| (k, n.to_vec())).collect();
        assert_eq!(after[..], before[before.len() - after.len()..]);
        let keep = m.len() - removed;
        m.trim(
            Trim {
                by: TrimBy::MaxLen(keep),
                approx: false,
                limit: 0,
            },
            lim,
        );
    }

    fn run(ops: &[Op], lim: Limits) -> Stream {
        let (mut s, mut m) = (Stream::new(), Model::new());
        let mut ms = 1u64;
        for (i, op) in ops.iter().enumerate() {
            match *op {
                Op::Add { fields, gap, seq } => {
                    ms += gap as u64;
                    let id = StreamId::new(ms, seq as u64).max(s.last_id.next().unwrap());
                    let f = fields_of(fields, i as u64);
                    let f: Vec<&[u8]> = f.iter().map(|x| &x[..]).collect();
                    s.append(id, &f, lim);
                    m.append(id, &f, lim);
                    ms = id.ms;
                }
                Op::Del(k) => {
                    let mut ids = Vec::new();
                    m.scan(StreamId::MIN, StreamId::MAX, false, &mut |id, _| {
                        ids.push(id);
                        true
                    });
                    let id = match ids.len() {
                        0 => StreamId::new(ms, 9),
                        n => ids[k % n],
                    };
                    assert_eq!(s.delete(id), m.delete(id));
                    s.max_deleted_id = s.max_deleted_id.max(id);
                    m.max_deleted_id = m.max_deleted_id.max(id);
                }
                Op::Trim {
                    max,
                    n,
                    approx,
                    limit,
                } => {
                    let by = if max {
                        TrimBy::MaxLen(n as u64)
                    } else {
                        TrimBy::MinId(StreamId::new(n as u64, 1))
                    };
                    let limit = if approx { limit as u64 } else { 0 };
                    trim_both(&mut s, &mut m, Trim { by, approx, limit }, lim);
                }
            }
            let probes = [
                StreamId::MIN,
                StreamId::new(ms / 2, 1),
                StreamId::new(ms, 0),
                s.first_id,
                StreamId::MAX,
            ];
            check(&s, &m, &probes);
        }
        s
    }

    /// A node whose listpack is well formed but whose stream layout may not be: `from_nodes`
    /// refuses it, or everything the commands do with it works.
    fn mutated_node(muts: &[(prop::sample::Index, i64)], cut: Option<prop::sample::Index>) {
        let lim = Limits {
            node_max_bytes: 0,
            node_max_entries: 6,
        };
        let mut s = Stream::new();
        for i in 1..=9u64 {
            let f = fields_of((i % 6) as u8, i);
            let f: Vec<&[u8]> = f.iter().map(|x| &x[..]).collect();
            s.append(StreamId::new(i, 0), &f, lim);
        }
        s.delete(StreamId::new(3, 0));
        let mut nodes: Vec<(StreamId, Vec<u8>)> = s.nodes().map(|(k, n)| (k, n.to_vec())).collect();
        let mut items: Vec<Vec<u8>> = lp::parse(&nodes[0].1)
            .unwrap()
            .iter()
            .map(|e| e.to_bytes().as_slice().to_vec())
            .collect();
        for (at, v) in muts {
            let i = at.index(items.len());
            items[i] = v.to_string().into_bytes();
        }
        if let Some(at) = cut {
            items.remove(at.index(items.len()));
        }
        let mut w = lp::Writer::default();
        items.iter().for_each(|x| w.push(x));
        nodes[0].1 = w.finish();
        let Some(mut t) = Stream::from_nodes(nodes) else {
            return;
        };
        t.last_id = StreamId::new(9, 0);
        let mut seen = Vec::new();
        t.scan(StreamId::MIN, StreamId::MAX, true, &mut |id, _| {
            seen.push(id);
            true
        });
        assert_eq!(seen.len() as u64, t.len());
        for id in seen.iter().rev() {
            assert!(t.contains(*id));
        }
        if let Some(&id) = seen.get(1) {
            assert!(t.delete(id));
        }
        let minid = TrimBy::MinId(StreamId::new(4, 0));
        t.trim(
            Trim {
                by: minid,
                approx: true,
                limit: 0,
            },
            lim,
        );
        t.trim(
            Trim {
                by: minid,
                approx: false,
                limit: 0,
            },
            lim,
        );
        t.append(StreamId::new(10, 0), &[b"a", b"1"], lim);
        t.trim(
            Trim {
                by: TrimBy::MaxLen(1),
                approx: false,
                limit: 0,
            },
            lim,
        );
        assert_eq!(t.len(), 1);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        #[test]
        fn mutated_nodes_are_refused_or_work(
            muts in proptest::collection::vec((any::<prop::sample::Index>(), -3i64..300), 0..3),
            cut in proptest::option::of(any::<prop::sample::Index>()),
        ) {
            mutated_node(&muts, cut);
        }

        #[test]
        fn matches_the_model(
            ops in proptest::collection::vec(op(), 1..120),
            entries in prop_oneof![Just(0usize), 1..6usize],
            bytes in prop_oneof![Just(0usize), 40..400usize],
        ) {
            let lim = Limits { node_max_bytes: bytes, node_max_entries: entries };
            let s = run(&ops, lim);
            // The RDB codec gives the same stream back.
            let v = crate::types::Value::Stream(Box::new(s));
            let mut body = Vec::new();
            crate::rdb::encode(&v, &mut body);
            let back = crate::rdb::decode(&body, &crate::shard::ShardConfig::default());
            prop_assert_eq!(back, Ok(v));
        }
    }
}
