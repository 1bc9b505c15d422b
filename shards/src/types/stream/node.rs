//! One stream node in Redis's layout (`t_stream.c`): a listpack ([`redis_listpack`]) keyed by
//! its master id (the id of the entry that created it), holding
//!
//! - the master entry: `live-count | deleted-count | num-fields | field… | 0`;
//! - then each entry: `flags | ms-diff | seq-diff | [num-fields | field, value…] | lp-count`,
//!   where `SAMEFIELDS` entries store only values (their fields are the master's), the id is
//!   the difference from the master id (wrapping, as Redis stores it), and `lp-count` counts
//!   the entry's other elements so the node can be walked backwards.
//!
//! Deleted entries stay in place, flagged, until their whole node goes.
//!
//! Nodes built here, or checked by [`check`], are well formed; the walking functions rely on
//! it (a malformed node is a bug, and they assert).
//!
//! [`redis_listpack`]: crate::types::redis_listpack

use super::StreamId;
use crate::types::redis_listpack::{self as lp, Entry};

/// Entry flag: the entry was deleted.
pub(super) const DELETED: i64 = 1;
/// Entry flag: the entry has the master entry's fields.
pub(super) const SAMEFIELDS: i64 = 2;

/// The element at `pos` of a well-formed node and the position after it.
pub(super) fn at(node: &[u8], pos: usize) -> (Entry<'_>, usize) {
    lp::decode(node, pos).expect("stream node is a well-formed listpack")
}

/// The integer at `pos` of a well-formed node and the position after it.
pub(super) fn int_at(node: &[u8], pos: usize) -> (i64, usize) {
    let (e, next) = at(node, pos);
    (e.int().expect("stream node integer"), next)
}

/// Whether `pos` is the node's end byte.
pub(super) fn is_end(node: &[u8], pos: usize) -> bool {
    pos + 1 == node.len()
}

/// The master entry's layout.
pub(super) struct Master {
    pub live: i64,
    pub deleted: i64,
    /// Where the deleted count is (the live count is at the header's end).
    pub deleted_pos: usize,
    pub num_fields: i64,
    /// Where the first master field is.
    pub fields_pos: usize,
    /// Where the first entry's flags are.
    pub first_entry: usize,
}

/// Reads the master entry.
pub(super) fn master(node: &[u8]) -> Master {
    let (live, deleted_pos) = int_at(node, lp::HEADER);
    let (deleted, nf_pos) = int_at(node, deleted_pos);
    let (num_fields, fields_pos) = int_at(node, nf_pos);
    let mut pos = fields_pos;
    for _ in 0..num_fields {
        pos = at(node, pos).1;
    }
    let first_entry = at(node, pos).1; // the master entry's terminating 0
    Master {
        live,
        deleted,
        deleted_pos,
        num_fields,
        fields_pos,
        first_entry,
    }
}

/// One entry's layout.
#[derive(Debug, Clone, Copy)]
pub(super) struct EntryAt {
    /// Where its flags are.
    pub pos: usize,
    pub flags: i64,
    pub id: StreamId,
    /// Its number of fields.
    pub num_fields: i64,
    /// Where its first field (or, with `SAMEFIELDS`, its first value) is.
    pub body: usize,
}

impl EntryAt {
    pub fn deleted(&self) -> bool {
        self.flags & DELETED != 0
    }

    pub fn same_fields(&self) -> bool {
        self.flags & SAMEFIELDS != 0
    }
}

/// Adds a stored difference to the master id (wrapping, as Redis's `streamID` arithmetic).
fn with_diff(master: StreamId, ms: i64, seq: i64) -> StreamId {
    StreamId::new(
        master.ms.wrapping_add(ms as u64),
        master.seq.wrapping_add(seq as u64),
    )
}

/// Reads the head (flags, id, field count) of the entry whose flags are at `pos`.
pub(super) fn entry(node: &[u8], pos: usize, master_id: StreamId, m: &Master) -> EntryAt {
    let (flags, p) = int_at(node, pos);
    let (ms, p) = int_at(node, p);
    let (seq, p) = int_at(node, p);
    let (num_fields, body) = if flags & SAMEFIELDS != 0 {
        (m.num_fields, p)
    } else {
        int_at(node, p)
    };
    EntryAt {
        pos,
        flags,
        id: with_diff(master_id, ms, seq),
        num_fields,
        body,
    }
}

/// Where the entry after `e` (or the end byte) is: past its body and its lp-count.
pub(super) fn end_of(node: &[u8], e: &EntryAt) -> usize {
    let elements = if e.same_fields() {
        e.num_fields
    } else {
        e.num_fields * 2
    };
    let mut end = e.body;
    for _ in 0..elements {
        end = at(node, end).1;
    }
    at(node, end).1
}

/// The position of the flags of the entry that ends at `pos` (the position after its
/// lp-count), or `None` when the master entry ends there.
pub(super) fn entry_before(node: &[u8], pos: usize) -> Option<usize> {
    let count_pos = lp::prev(node, pos)?;
    let (count, _) = int_at(node, count_pos);
    if count == 0 {
        return None;
    }
    let mut p = count_pos;
    for _ in 0..count {
        p = lp::prev(node, p)?;
    }
    Some(p)
}

/// A new node for the entry `id` (which becomes its master id) with these fields, as
/// `streamAppendItem` starts one.
pub(super) fn create(id: StreamId, fields: &[&[u8]]) -> Vec<u8> {
    let mut node = lp::new();
    let num_fields = (fields.len() / 2) as i64;
    lp::append_int(&mut node, 1);
    lp::append_int(&mut node, 0);
    lp::append_int(&mut node, num_fields);
    for f in fields.iter().step_by(2) {
        lp::append_str(&mut node, f);
    }
    lp::append_int(&mut node, 0);
    push_entry(&mut node, id, id, fields, true);
    node
}

/// Appends an entry to an existing node (the caller checked it has room), counting it in the
/// master entry and storing only its values when its fields are the master's.
pub(super) fn append(node: &mut Vec<u8>, master_id: StreamId, id: StreamId, fields: &[&[u8]]) {
    let m = master(node);
    lp::replace_int(node, lp::HEADER, m.live + 1);
    // The replacement may have moved everything after the live count.
    let m = master(node);
    let same = m.num_fields == (fields.len() / 2) as i64 && {
        let mut pos = m.fields_pos;
        fields.iter().step_by(2).all(|f| {
            let (e, next) = at(node, pos);
            pos = next;
            e.eq_bytes(f)
        })
    };
    push_entry(node, master_id, id, fields, same);
}

fn push_entry(node: &mut Vec<u8>, master_id: StreamId, id: StreamId, fields: &[&[u8]], same: bool) {
    let num_fields = (fields.len() / 2) as i64;
    lp::append_int(node, if same { SAMEFIELDS } else { 0 });
    lp::append_int(node, id.ms.wrapping_sub(master_id.ms) as i64);
    lp::append_int(node, id.seq.wrapping_sub(master_id.seq) as i64);
    if !same {
        lp::append_int(node, num_fields);
    }
    for pair in fields.chunks_exact(2) {
        if !same {
            lp::append_str(node, pair[0]);
        }
        lp::append_str(node, pair[1]);
    }
    let lp_count = if same {
        num_fields + 3
    } else {
        num_fields * 2 + 4
    };
    lp::append_int(node, lp_count);
}

/// Marks the entry at `e` deleted and moves it from the live to the deleted count
/// (`streamIteratorRemoveEntry`, for a node that keeps other live entries).
pub(super) fn mark_deleted(node: &mut Vec<u8>, e: &EntryAt) {
    // Flags fit one byte either way, so nothing moves.
    lp::replace_int(node, e.pos, e.flags | DELETED);
    add_counts(node, -1, 1);
}

/// Adds to the master entry's live and deleted counts.
pub(super) fn add_counts(node: &mut Vec<u8>, live: i64, deleted: i64) {
    let m = master(node);
    lp::replace_int(node, lp::HEADER, m.live + live);
    let m2 = master(node);
    lp::replace_int(node, m2.deleted_pos, m.deleted + deleted);
}

/// What [`check`] learned about a node.
#[derive(Debug, Clone, Copy)]
pub(super) struct Summary {
    pub live: u64,
    /// The last entry's id, deleted or not.
    pub last_any: StreamId,
    pub last_live: Option<StreamId>,
}

/// Checks a node from a client or a file: a valid listpack in the layout above, counts that
/// match the flags, every `lp-count` right, entries at or after `master_id` and live entries
/// strictly ascending, and every integer of the layout stored as an integer (as Redis writes
/// them; the in-place edits rely on their sizes). `None` when anything is off.
pub(super) fn check(master_id: StreamId, node: &[u8]) -> Option<Summary> {
    let items = lp::parse(node)?;
    let mut it = items.iter().map(|e| e.stored_int());
    let live = it.next()??;
    let deleted = it.next()??;
    let num_fields = it.next()??;
    if live < 0 || deleted < 0 || num_fields < 0 || num_fields as usize > items.len() {
        return None;
    }
    let mut rest = items.get(3 + num_fields as usize..)?.iter();
    if rest.next()?.stored_int()? != 0 {
        return None;
    }
    let mut sum = Summary {
        live: 0,
        last_any: master_id,
        last_live: None,
    };
    let mut dead = 0;
    while let Some(flags) = rest.next() {
        let (id, is_deleted) = check_entry(flags.stored_int()?, &mut rest, master_id, num_fields)?;
        if id < master_id {
            return None;
        }
        sum.last_any = id;
        if is_deleted {
            dead += 1;
            continue;
        }
        if sum.last_live.is_some_and(|l| l >= id) {
            return None;
        }
        sum.last_live = Some(id);
        sum.live += 1;
    }
    let entries = sum.live + dead;
    (entries > 0 && sum.live == live as u64 && dead == deleted as u64).then_some(sum)
}

/// Checks one entry after its flags; returns its id and whether it is deleted.
fn check_entry<'a>(
    flags: i64,
    rest: &mut impl Iterator<Item = &'a Entry<'a>>,
    master_id: StreamId,
    master_fields: i64,
) -> Option<(StreamId, bool)> {
    if !(0..=DELETED | SAMEFIELDS).contains(&flags) {
        return None;
    }
    let ms = rest.next()?.stored_int()?;
    let seq = rest.next()?.stored_int()?;
    let (num_fields, elements, extra) = if flags & SAMEFIELDS != 0 {
        (master_fields, master_fields, 3)
    } else {
        let n = rest.next()?.stored_int()?;
        if !(0..=i64::MAX / 4).contains(&n) {
            return None;
        }
        (n, n * 2, n + 4)
    };
    for _ in 0..elements {
        rest.next()?;
    }
    if rest.next()?.stored_int()? != num_fields + extra {
        return None;
    }
    Some((with_diff(master_id, ms, seq), flags & DELETED != 0))
}
