//! The reference implementation [`super::Stream`] is tested against (the first version of the
//! stream type): one `BTreeMap` entry per stream entry, trimming entry by entry.

use super::{Limits, StreamId, Trim, TrimBy};
use std::collections::BTreeMap;

/// An entry's flat field, value, … list (reference storage).
type Fields = Box<[Box<[u8]>]>;

/// The reference stream: a `BTreeMap` from id to the entry's flat `[field, value, …]` list.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Model {
    entries: BTreeMap<StreamId, Fields>,
    /// The id of the last entry added (kept when that entry is deleted).
    pub last_id: StreamId,
    /// The id of the first entry (0-0 when empty).
    pub first_id: StreamId,
    /// The greatest id ever deleted (XDEL, trimming) or set by XSETID MAXDELETEDID.
    pub max_deleted_id: StreamId,
    /// How many entries were ever added.
    pub entries_added: u64,
}

impl Model {
    pub fn new() -> Model {
        Model::default()
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
        self.entries_added = self.entries_added.wrapping_add(1);
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
}
