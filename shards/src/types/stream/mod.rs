//! Streams (Redis's `t_stream.c` data structure): entries with ids that only grow, each a list
//! of (field, value) pairs, plus the stream's bookkeeping (last id, first id, the largest id
//! deleted, the count of entries ever added) and its consumer groups ([`group`]).
//!
//! This module knows nothing of RESP or commands. The commands (`cmd::stream`) check every
//! argument before calling in; the methods here assert their preconditions (an appended id is
//! greater than the last one).
//!
//! Storage: see [`Stream`].

pub mod group;

pub use group::{Consumer, Group, Nack};

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
    /// LIMIT: the most entries removed (0: no limit). Only meaningful with `approx`.
    pub limit: u64,
}

/// An entry's flat field, value, … list (reference storage).
type Fields = Box<[Box<[u8]>]>;

/// A stream.
///
/// Storage (first version): a `BTreeMap` from id to the entry's flat `[field, value, …]` list.
/// It is the reference the compact representation is tested against.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Stream {
    entries: BTreeMap<StreamId, Fields>,
    /// The id of the last entry added (kept when that entry is deleted).
    pub last_id: StreamId,
    /// The id of the first entry (0-0 when empty).
    pub first_id: StreamId,
    /// The greatest id ever deleted (XDEL, trimming) or set by XSETID MAXDELETEDID.
    pub max_deleted_id: StreamId,
    /// How many entries were ever added.
    pub entries_added: u64,
    /// Consumer groups by name, in byte order (as Redis's rax lists them).
    pub groups: BTreeMap<Box<[u8]>, Group>,
}

impl Stream {
    pub fn new() -> Stream {
        Stream::default()
    }

    /// Number of entries.
    pub fn len(&self) -> u64 {
        self.entries.len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Appends an entry (`fields`: field, value, field, value, …; at least one pair).
    /// `id` must be greater than `last_id`.
    pub fn append(&mut self, id: StreamId, fields: &[&[u8]], _lim: Limits) {
        assert!(id > self.last_id || (self.entries_added == 0 && id > StreamId::MIN));
        assert!(!fields.is_empty() && fields.len().is_multiple_of(2));
        self.entries
            .insert(id, fields.iter().map(|f| Box::<[u8]>::from(*f)).collect());
        if self.entries.len() == 1 {
            self.first_id = id;
        }
        self.last_id = id;
        self.entries_added += 1;
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
        let mut flat: Vec<&[u8]> = Vec::new();
        let range = self.entries.range(start..=end);
        let iter: Box<dyn Iterator<Item = (&StreamId, &Fields)>> = if rev {
            Box::new(range.rev())
        } else {
            Box::new(range)
        };
        for (id, fields) in iter {
            flat.clear();
            flat.extend(fields.iter().map(|x| &x[..]));
            if !f(*id, &flat) {
                return;
            }
        }
    }

    /// Whether an entry with this id exists.
    pub fn contains(&self, id: StreamId) -> bool {
        self.entries.contains_key(&id)
    }

    /// The first (or, with `last`, the last) live entry's id.
    pub fn edge_id(&self, last: bool) -> Option<StreamId> {
        if last {
            self.entries.keys().next_back().copied()
        } else {
            self.entries.keys().next().copied()
        }
    }

    /// Deletes one entry (XDEL); true if it existed. Keeps `first_id` current; the caller
    /// (XDEL) raises `max_deleted_id`, as Redis's command does.
    pub fn delete(&mut self, id: StreamId) -> bool {
        if self.entries.remove(&id).is_none() {
            return false;
        }
        self.first_id = self.edge_id(false).unwrap_or(StreamId::MIN);
        true
    }

    /// Trims as Redis's `streamTrim` does; returns how many entries were removed.
    pub fn trim(&mut self, t: Trim, _lim: Limits) -> u64 {
        let mut removed = 0;
        while let Some(&first) = self.entries.keys().next() {
            let go = match t.by {
                TrimBy::MaxLen(n) => self.len() > n,
                TrimBy::MinId(min) => first < min,
            };
            if !go || (t.approx && t.limit > 0 && removed >= t.limit) {
                break;
            }
            self.entries.remove(&first);
            removed += 1;
        }
        if removed > 0 {
            self.first_id = self.edge_id(false).unwrap_or(StreamId::MIN);
        }
        removed
    }

    /// Bytes of memory this stream holds, approximately (MEMORY USAGE, bench figures).
    pub fn mem_bytes(&self) -> usize {
        self.entries
            .values()
            .map(|f| 48 + f.iter().map(|x| 16 + x.len()).sum::<usize>())
            .sum()
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
            if id < self.first_id {
                return Some(self.entries_added - self.len());
            }
            if id == self.first_id {
                return Some(self.entries_added - self.len() + 1);
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
