//! The list type: a sequence of byte strings, cheap to change at both ends.
//!
//! A small list is one [`Listpack`]: all its elements in one allocation. When an insertion would
//! take that listpack past the node limit that `list-max-listpack-size` sets (see [`Fill`]), the
//! list becomes a quicklist: a deque of listpack nodes, each kept within the same limit. Pushes
//! and pops then touch one small node at an end, an index lookup skips whole nodes (walking from
//! the nearer end), and an insertion into a full node splits it. Nodes that shrink next to a
//! neighbour with room are merged, so a list that loses elements in the middle stays compact.
//! A list never goes back to a single listpack, as in Redis.
//!
//! Redis 7.0 reports every list as `quicklist` (its small lists are quicklists of one node), so
//! [`List::encoding`] does too, whichever form is in use.
//!
//! Invariants: a quicklist has no empty node, its `len` is the sum of its node lengths, and a
//! node over the limit holds a single element (one element too big for any node gets its own).

use super::listpack::{self, Listpack};
use std::collections::{vec_deque, VecDeque};

/// Node byte limits for `list-max-listpack-size` -1 to -5.
const NODE_BYTES_LEVELS: [usize; 5] = [4096, 8192, 16384, 32768, 65536];
/// With a positive setting (an entry count), a node also stays within this many bytes.
const NODE_BYTES_SAFETY: usize = 8192;
/// The largest entry count a positive setting may ask for (Redis's `FILL_MAX`).
const NODE_ENTRIES_MAX: i64 = 1 << 15;

/// One end of a list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    Head,
    Tail,
}

/// How full one listpack node may get: `list-max-listpack-size`, clamped as Redis clamps it.
/// Negative values -1 to -5 limit a node's bytes (4 to 64 KiB); a positive value limits its
/// entries (and its bytes to 8 KiB); 0 allows one element per node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fill(i64);

impl Fill {
    pub fn new(list_max_listpack_size: i64) -> Fill {
        Fill(list_max_listpack_size.clamp(-5, NODE_ENTRIES_MAX))
    }

    /// Whether a node of `count` elements packed in `bytes` bytes is within the limit.
    fn fits(self, count: usize, bytes: usize) -> bool {
        if self.0 < 0 {
            let level = self.0.unsigned_abs() as usize - 1;
            NODE_BYTES_LEVELS
                .get(level)
                .is_some_and(|&max| bytes <= max)
        } else {
            bytes <= NODE_BYTES_SAFETY && count as u64 <= self.0 as u64
        }
    }

    /// Whether `node` may take one more element of `len` bytes. An empty node takes anything.
    fn allows(self, node: &Listpack, len: usize) -> bool {
        node.is_empty() || self.allows_strictly(node, len)
    }

    /// Whether `lp` stays within the limit with one more element of `len` bytes. A small list
    /// converts as soon as this fails, even when empty (so one element over the limit makes a
    /// quicklist, as in Redis).
    fn allows_strictly(self, lp: &Listpack, len: usize) -> bool {
        self.fits(lp.len() + 1, lp.used_bytes() + packed_len(len))
    }

    /// Whether `node`'s element `old_len` bytes long may be replaced by one `new_len` long.
    fn allows_replace(self, node: &Listpack, old_len: usize, new_len: usize) -> bool {
        node.len() == 1
            || self.fits(
                node.len(),
                node.used_bytes() - packed_len(old_len) + packed_len(new_len),
            )
    }

    /// Whether two nodes may become one.
    fn allows_merge(self, a: &Listpack, b: &Listpack) -> bool {
        self.fits(a.len() + b.len(), a.used_bytes() + b.used_bytes())
    }
}

impl Default for Fill {
    /// Redis's default, -2: nodes of at most 8 KiB.
    fn default() -> Fill {
        Fill(-2)
    }
}

/// Bytes an element of `len` bytes takes in a listpack: its LEB128 length, then its bytes.
fn packed_len(len: usize) -> usize {
    let bits = (usize::BITS - len.leading_zeros()).max(1) as usize;
    len + bits.div_ceil(7)
}

/// Gives back a node's spare capacity once it passes a quarter of what the node uses, keeping
/// an eighth as room to grow: memory stays within about a quarter of the packed size while
/// reallocations stay amortised O(1) per byte.
fn tidy(lp: &mut Listpack) {
    let used = lp.used_bytes();
    if lp.bytes() > used + used / 4 + 16 {
        lp.shrink_to(used + used / 8);
    }
}

fn single(item: &[u8]) -> Listpack {
    let mut lp = Listpack::new();
    lp.push_back(item);
    lp
}

/// Moves the elements of `node` from `at` on into a new node.
fn split_off(node: &mut Listpack, at: usize) -> Listpack {
    let right: Listpack = node.iter().skip(at).collect();
    node.retain(|i, _| i < at);
    tidy(node);
    right
}

/// Calls `f` on the `take` elements at `end` of `node`, in the order popping them gives.
fn emit_end(node: &Listpack, end: End, take: usize, f: &mut impl FnMut(&[u8])) {
    match end {
        End::Head => node.iter().take(take).for_each(f),
        End::Tail => {
            let skip = node.len().saturating_sub(take);
            let tail: Vec<&[u8]> = node.iter().skip(skip).collect();
            tail.into_iter().rev().for_each(f);
        }
    }
}

/// Removes the `take` elements at `end` of `node`.
fn drop_end(node: &mut Listpack, end: End, take: usize) {
    let len = node.len();
    match end {
        End::Head => node.retain(|i, _| i >= take),
        End::Tail => node.retain(|i, _| i + take < len),
    };
    tidy(node);
}

/// Removes up to `want` elements equal to `item` from `node`, the first ones (`Head`) or the
/// last ones (`Tail`). Returns how many went.
fn remove_hits(node: &mut Listpack, item: &[u8], want: usize, from: End) -> usize {
    let hits: Vec<usize> = node
        .iter()
        .enumerate()
        .filter(|(_, e)| *e == item)
        .map(|(i, _)| i)
        .collect();
    let chosen = match from {
        End::Head => &hits[..hits.len().min(want)],
        End::Tail => &hits[hits.len().saturating_sub(want)..],
    };
    if chosen.is_empty() {
        return 0;
    }
    let mut next = chosen.iter().peekable();
    node.retain(|i, _| {
        if next.peek() == Some(&&i) {
            next.next();
            false
        } else {
            true
        }
    });
    tidy(node);
    chosen.len()
}

/// A list value.
#[derive(Debug, Clone, Default)]
pub struct List {
    repr: Repr,
}

#[derive(Debug, Clone)]
enum Repr {
    /// A small list: one listpack within the node limit.
    Packed(Listpack),
    /// A deque of listpack nodes (boxed: big lists are rare and the box keeps `Value` small).
    Quick(Box<Quicklist>),
}

impl Default for Repr {
    fn default() -> Repr {
        Repr::Packed(Listpack::new())
    }
}

impl PartialEq for List {
    /// Lists are equal when their elements are, however they are laid out.
    fn eq(&self, other: &List) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl List {
    pub fn new() -> List {
        List::default()
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        match &self.repr {
            Repr::Packed(lp) => lp.len(),
            Repr::Quick(q) => q.len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The name OBJECT ENCODING reports: Redis 7.0 calls every list a quicklist.
    pub fn encoding(&self) -> &'static str {
        "quicklist"
    }

    /// Whether the list has outgrown a single listpack.
    pub fn is_quicklist(&self) -> bool {
        matches!(self.repr, Repr::Quick(_))
    }

    /// Number of listpack nodes (1 for a small list, even an empty one).
    pub fn node_count(&self) -> usize {
        match &self.repr {
            Repr::Packed(_) => 1,
            Repr::Quick(q) => q.nodes.len(),
        }
    }

    /// Heap bytes the list holds (node buffers with their spare room, and the node deque).
    pub fn heap_bytes(&self) -> usize {
        match &self.repr {
            Repr::Packed(lp) => lp.bytes(),
            Repr::Quick(q) => {
                std::mem::size_of::<Quicklist>()
                    + q.nodes.capacity() * std::mem::size_of::<Listpack>()
                    + q.nodes.iter().map(Listpack::bytes).sum::<usize>()
            }
        }
    }

    /// Estimated heap bytes (MEMORY USAGE): the node deque, and the node buffers extrapolated
    /// from the first `samples` nodes (all when 0), as Redis samples quicklist nodes.
    pub fn heap_estimate(&self, samples: usize) -> usize {
        use super::mem::{alloc_size, extrapolate, vec_bytes};
        match &self.repr {
            Repr::Packed(lp) => alloc_size(lp.bytes()),
            Repr::Quick(q) => {
                let nodes = q.nodes.iter().map(|n| alloc_size(n.bytes()));
                alloc_size(std::mem::size_of::<Quicklist>())
                    + vec_bytes::<Listpack>(q.nodes.capacity())
                    + extrapolate(nodes, q.nodes.len(), samples)
            }
        }
    }

    /// Turns a small list into a quicklist whose first node is its listpack.
    fn quick(&mut self) -> &mut Quicklist {
        if let Repr::Packed(lp) = &mut self.repr {
            let lp = std::mem::take(lp);
            self.repr = Repr::Quick(Box::new(Quicklist {
                len: lp.len(),
                nodes: VecDeque::from([lp]),
            }));
        }
        match &mut self.repr {
            Repr::Quick(q) => q,
            Repr::Packed(_) => unreachable!("converted above"),
        }
    }

    /// Adds `item` at `end`.
    pub fn push(&mut self, end: End, item: &[u8], fill: Fill) {
        match &mut self.repr {
            Repr::Packed(lp) if fill.allows_strictly(lp, item.len()) => {
                match end {
                    End::Head => lp.push_front(item),
                    End::Tail => lp.push_back(item),
                }
                tidy(lp);
            }
            _ => self.quick().push(end, item, fill),
        }
    }

    /// Removes and returns the element at `end`.
    pub fn pop(&mut self, end: End) -> Option<Vec<u8>> {
        match &mut self.repr {
            Repr::Packed(lp) => {
                let i = match end {
                    End::Head => 0,
                    End::Tail => lp.len().checked_sub(1)?,
                };
                let item = lp.remove(i);
                tidy(lp);
                item
            }
            Repr::Quick(q) => q.pop(end),
        }
    }

    /// Removes up to `count` elements at `end`, calling `f` on each in the order popped.
    /// Returns how many were removed.
    pub fn pop_many(&mut self, end: End, count: usize, mut f: impl FnMut(&[u8])) -> usize {
        match &mut self.repr {
            Repr::Packed(lp) => {
                let take = count.min(lp.len());
                emit_end(lp, end, take, &mut f);
                drop_end(lp, end, take);
                take
            }
            Repr::Quick(q) => q.pop_many(end, count, &mut f),
        }
    }

    /// The element at `index` (from the head).
    pub fn get(&self, index: usize) -> Option<&[u8]> {
        match &self.repr {
            Repr::Packed(lp) => lp.get(index),
            Repr::Quick(q) => q.get(index),
        }
    }

    /// Replaces the element at `index`. Returns false when there is none.
    pub fn set(&mut self, index: usize, item: &[u8], fill: Fill) -> bool {
        match &mut self.repr {
            Repr::Packed(lp) => {
                let Some(old_len) = lp.get(index).map(<[u8]>::len) else {
                    return false;
                };
                let bytes = lp.used_bytes() - packed_len(old_len) + packed_len(item.len());
                if fill.fits(lp.len(), bytes) {
                    lp.replace(index, item);
                    tidy(lp);
                    true
                } else {
                    self.quick().set(index, item, fill)
                }
            }
            Repr::Quick(q) => q.set(index, item, fill),
        }
    }

    /// Inserts `item` before the element at `index` (`index >= len` appends).
    pub fn insert(&mut self, index: usize, item: &[u8], fill: Fill) {
        match &mut self.repr {
            Repr::Packed(lp) if fill.allows_strictly(lp, item.len()) => {
                lp.insert(index.min(lp.len()), item);
                tidy(lp);
            }
            _ => self.quick().insert(index, item, fill),
        }
    }

    /// Removes and returns the element at `index`.
    pub fn remove(&mut self, index: usize, fill: Fill) -> Option<Vec<u8>> {
        match &mut self.repr {
            Repr::Packed(lp) => {
                let item = lp.remove(index);
                tidy(lp);
                item
            }
            Repr::Quick(q) => q.remove(index, fill),
        }
    }

    /// The index of the first element equal to `item`.
    pub fn position(&self, item: &[u8]) -> Option<usize> {
        self.iter().position(|e| e == item)
    }

    /// Removes up to `limit` elements equal to `item`, the first ones (`Head`) or the last ones
    /// (`Tail`). Returns how many were removed.
    pub fn remove_matching(&mut self, item: &[u8], limit: usize, from: End, fill: Fill) -> usize {
        match &mut self.repr {
            Repr::Packed(lp) => remove_hits(lp, item, limit, from),
            Repr::Quick(q) => q.remove_matching(item, limit, from, fill),
        }
    }

    /// Removes `front` elements from the head and `back` from the tail (all of them when the
    /// two add up to the length or more).
    pub fn trim(&mut self, front: usize, back: usize) {
        match &mut self.repr {
            Repr::Packed(lp) => {
                let len = lp.len();
                let keep_end = len.saturating_sub(back);
                lp.retain(|i, _| i >= front && i < keep_end);
                tidy(lp);
            }
            Repr::Quick(q) => q.trim(front, back),
        }
    }

    /// The elements from the head.
    pub fn iter(&self) -> Iter<'_> {
        self.iter_from(0)
    }

    /// The elements from index `start` on.
    pub fn iter_from(&self, start: usize) -> Iter<'_> {
        match &self.repr {
            Repr::Packed(lp) => {
                let mut cur = lp.iter();
                for _ in 0..start.min(lp.len()) {
                    cur.next();
                }
                Iter {
                    nodes: Nodes::One(None),
                    cur: Some(cur),
                }
            }
            Repr::Quick(q) => q.iter_from(start),
        }
    }

    /// The elements from the tail.
    pub fn iter_rev(&self) -> RevIter<'_> {
        let nodes = match &self.repr {
            Repr::Packed(lp) => Nodes::One(Some(lp)),
            Repr::Quick(q) => Nodes::Many(q.nodes.iter()),
        };
        RevIter {
            nodes,
            buf: Vec::new(),
        }
    }

    /// Checks the structure's invariants against `fill` (for tests).
    #[cfg(test)]
    fn check(&self, fill: Fill) {
        match &self.repr {
            Repr::Packed(lp) => assert!(lp.is_empty() || fill.fits(lp.len(), lp.used_bytes())),
            Repr::Quick(q) => {
                assert_eq!(q.len, q.nodes.iter().map(Listpack::len).sum::<usize>());
                for n in &q.nodes {
                    assert!(!n.is_empty(), "empty node");
                    assert!(n.len() == 1 || fill.fits(n.len(), n.used_bytes()));
                }
            }
        }
    }
}

/// A deque of listpack nodes.
#[derive(Debug, Clone, Default)]
struct Quicklist {
    nodes: VecDeque<Listpack>,
    len: usize,
}

impl Quicklist {
    fn push(&mut self, end: End, item: &[u8], fill: Fill) {
        self.len += 1;
        let node = match end {
            End::Head => self.nodes.front_mut(),
            End::Tail => self.nodes.back_mut(),
        };
        match (node, end) {
            (Some(n), End::Head) if fill.allows(n, item.len()) => {
                n.push_front(item);
                tidy(n);
            }
            (Some(n), End::Tail) if fill.allows(n, item.len()) => {
                n.push_back(item);
                tidy(n);
            }
            (_, End::Head) => self.nodes.push_front(single(item)),
            (_, End::Tail) => self.nodes.push_back(single(item)),
        }
    }

    fn pop(&mut self, end: End) -> Option<Vec<u8>> {
        let ni = match end {
            End::Head => 0,
            End::Tail => self.nodes.len().checked_sub(1)?,
        };
        let node = self.nodes.get_mut(ni)?;
        let off = match end {
            End::Head => 0,
            End::Tail => node.len().saturating_sub(1),
        };
        let item = node.remove(off)?;
        self.len -= 1;
        self.settle(ni, None);
        Some(item)
    }

    fn pop_many(&mut self, end: End, count: usize, f: &mut impl FnMut(&[u8])) -> usize {
        let total = count.min(self.len);
        let mut left = total;
        while left > 0 {
            let node = match end {
                End::Head => self.nodes.front_mut(),
                End::Tail => self.nodes.back_mut(),
            };
            let Some(node) = node else { break };
            let take = node.len().min(left);
            emit_end(node, end, take, f);
            if take == node.len() {
                match end {
                    End::Head => self.nodes.pop_front(),
                    End::Tail => self.nodes.pop_back(),
                };
            } else {
                drop_end(node, end, take);
            }
            left -= take;
        }
        self.len -= total - left;
        total - left
    }

    /// The node holding element `index` and the element's offset in it, walking from the
    /// nearer end.
    fn locate(&self, index: usize) -> Option<(usize, usize)> {
        if index >= self.len {
            return None;
        }
        if index < self.len / 2 {
            let mut skipped = 0;
            for (ni, n) in self.nodes.iter().enumerate() {
                if index < skipped + n.len() {
                    return Some((ni, index - skipped));
                }
                skipped += n.len();
            }
        } else {
            // Counting from the tail: `from_tail` elements lie after `index`.
            let mut from_tail = self.len - 1 - index;
            for (ni, n) in self.nodes.iter().enumerate().rev() {
                if from_tail < n.len() {
                    return Some((ni, n.len() - 1 - from_tail));
                }
                from_tail -= n.len();
            }
        }
        None
    }

    fn get(&self, index: usize) -> Option<&[u8]> {
        let (ni, off) = self.locate(index)?;
        self.nodes.get(ni)?.get(off)
    }

    fn set(&mut self, index: usize, item: &[u8], fill: Fill) -> bool {
        let Some((ni, off)) = self.locate(index) else {
            return false;
        };
        let Some(node) = self.nodes.get_mut(ni) else {
            return false;
        };
        let old_len = node.get(off).map_or(0, <[u8]>::len);
        if fill.allows_replace(node, old_len, item.len()) {
            node.replace(off, item);
            tidy(node);
        } else {
            // Too big for this node: take the old element out and insert the new one where it
            // was, which may split the node.
            node.remove(off);
            self.insert_at(ni, off, item, fill);
            self.merge_between(ni.saturating_sub(1), ni + 3, fill);
        }
        true
    }

    fn insert(&mut self, index: usize, item: &[u8], fill: Fill) {
        if index == 0 {
            return self.push(End::Head, item, fill);
        }
        if index >= self.len {
            return self.push(End::Tail, item, fill);
        }
        let Some((ni, off)) = self.locate(index) else {
            return;
        };
        self.len += 1;
        self.insert_at(ni, off, item, fill);
        self.merge_between(ni.saturating_sub(1), ni + 3, fill);
    }

    /// Inserts `item` before element `off` of node `ni` (`off` may be the node's length:
    /// after its last element). Does not change `len`.
    fn insert_at(&mut self, ni: usize, off: usize, item: &[u8], fill: Fill) {
        let Some(node) = self.nodes.get_mut(ni) else {
            return;
        };
        if fill.allows(node, item.len()) {
            node.insert(off, item);
            tidy(node);
            return;
        }
        let node_len = node.len();
        if off == 0 {
            // The head of this node is also the tail of the previous one.
            match ni.checked_sub(1).and_then(|p| self.nodes.get_mut(p)) {
                Some(prev) if fill.allows(prev, item.len()) => {
                    prev.push_back(item);
                    tidy(prev);
                }
                _ => self.nodes.insert(ni, single(item)),
            }
            return;
        }
        if off >= node_len {
            match self.nodes.get_mut(ni + 1) {
                Some(next) if fill.allows(next, item.len()) => {
                    next.push_front(item);
                    tidy(next);
                }
                _ => self.nodes.insert(ni + 1, single(item)),
            }
            return;
        }
        // Inside a full node: split it there, then the item goes at the end of the left half,
        // the start of the right half, or into a node of its own between them.
        let right = split_off(node, off);
        self.nodes.insert(ni + 1, right);
        self.insert_at(ni, off, item, fill);
    }

    fn remove(&mut self, index: usize, fill: Fill) -> Option<Vec<u8>> {
        let (ni, off) = self.locate(index)?;
        let item = self.nodes.get_mut(ni)?.remove(off)?;
        self.len -= 1;
        self.settle(ni, Some(fill));
        Some(item)
    }

    /// After elements left node `ni`: drops it when empty; otherwise releases spare capacity
    /// and, given a fill, merges it with a neighbour when the two fit in one node.
    fn settle(&mut self, ni: usize, merge: Option<Fill>) {
        let Some(node) = self.nodes.get_mut(ni) else {
            return;
        };
        if node.is_empty() {
            self.nodes.remove(ni);
            return;
        }
        tidy(node);
        if let Some(fill) = merge {
            self.merge_between(ni.saturating_sub(1), ni + 1, fill);
        }
    }

    /// Merges neighbours among nodes `lo..=hi` wherever two fit in one node.
    fn merge_between(&mut self, lo: usize, hi: usize, fill: Fill) {
        let hi = hi.min(self.nodes.len().saturating_sub(1));
        for i in (lo + 1..=hi).rev() {
            let (Some(a), Some(b)) = (self.nodes.get(i - 1), self.nodes.get(i)) else {
                continue;
            };
            if !fill.allows_merge(a, b) {
                continue;
            }
            if let Some(b) = self.nodes.remove(i) {
                if let Some(a) = self.nodes.get_mut(i - 1) {
                    b.iter().for_each(|e| a.push_back(e));
                    tidy(a);
                }
            }
        }
    }

    fn remove_matching(&mut self, item: &[u8], limit: usize, from: End, fill: Fill) -> usize {
        let n = self.nodes.len();
        let mut removed = 0;
        for k in 0..n {
            if removed >= limit {
                break;
            }
            let ni = match from {
                End::Head => k,
                End::Tail => n - 1 - k,
            };
            if let Some(node) = self.nodes.get_mut(ni) {
                removed += remove_hits(node, item, limit - removed, from);
            }
        }
        if removed > 0 {
            self.len -= removed;
            self.nodes.retain(|node| !node.is_empty());
            self.merge_between(0, self.nodes.len(), fill);
        }
        removed
    }

    fn trim(&mut self, front: usize, back: usize) {
        let front = front.min(self.len);
        let back = back.min(self.len - front);
        for (end, count) in [(End::Head, front), (End::Tail, back)] {
            let mut left = count;
            while left > 0 {
                let node = match end {
                    End::Head => self.nodes.front_mut(),
                    End::Tail => self.nodes.back_mut(),
                };
                let Some(node) = node else { break };
                if node.len() <= left {
                    left -= node.len();
                    match end {
                        End::Head => self.nodes.pop_front(),
                        End::Tail => self.nodes.pop_back(),
                    };
                } else {
                    drop_end(node, end, left);
                    left = 0;
                }
            }
        }
        self.len -= front + back;
    }

    fn iter_from(&self, start: usize) -> Iter<'_> {
        let Some((ni, off)) = self.locate(start) else {
            return Iter {
                nodes: Nodes::One(None),
                cur: None,
            };
        };
        let mut cur = self.nodes.get(ni).map(Listpack::iter);
        if let Some(cur) = &mut cur {
            for _ in 0..off {
                cur.next();
            }
        }
        Iter {
            nodes: Nodes::Many(self.nodes.range(ni + 1..)),
            cur,
        }
    }
}

/// The nodes of a list, in order.
enum Nodes<'a> {
    One(Option<&'a Listpack>),
    Many(vec_deque::Iter<'a, Listpack>),
}

impl<'a> Iterator for Nodes<'a> {
    type Item = &'a Listpack;
    fn next(&mut self) -> Option<&'a Listpack> {
        match self {
            Nodes::One(n) => n.take(),
            Nodes::Many(it) => it.next(),
        }
    }
}

impl<'a> DoubleEndedIterator for Nodes<'a> {
    fn next_back(&mut self) -> Option<&'a Listpack> {
        match self {
            Nodes::One(n) => n.take(),
            Nodes::Many(it) => it.next_back(),
        }
    }
}

/// The elements of a list from the head.
pub struct Iter<'a> {
    nodes: Nodes<'a>,
    cur: Option<listpack::Iter<'a>>,
}

impl<'a> Iterator for Iter<'a> {
    type Item = &'a [u8];
    fn next(&mut self) -> Option<&'a [u8]> {
        loop {
            if let Some(e) = self.cur.as_mut().and_then(Iterator::next) {
                return Some(e);
            }
            self.cur = Some(self.nodes.next()?.iter());
        }
    }
}

/// The elements of a list from the tail. Listpacks are read forwards, so each node's elements
/// are gathered first (a node is small).
pub struct RevIter<'a> {
    nodes: Nodes<'a>,
    buf: Vec<&'a [u8]>,
}

impl<'a> Iterator for RevIter<'a> {
    type Item = &'a [u8];
    fn next(&mut self) -> Option<&'a [u8]> {
        loop {
            if let Some(e) = self.buf.pop() {
                return Some(e);
            }
            self.buf.extend(self.nodes.next_back()?.iter());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn items(l: &List) -> Vec<Vec<u8>> {
        l.iter().map(<[u8]>::to_vec).collect()
    }

    #[test]
    fn value_stays_small() {
        assert_eq!(std::mem::size_of::<List>(), 32);
    }

    #[test]
    fn fill_rules() {
        assert_eq!(packed_len(0), 1);
        assert_eq!(packed_len(127), 128);
        assert_eq!(packed_len(128), 130);
        let f = Fill::new(-2);
        assert!(f.fits(1000, 8192) && !f.fits(1, 8193));
        assert!(Fill::new(-100).fits(1, 65536) && !Fill::new(-100).fits(1, 65537));
        assert!(Fill::new(3).fits(3, 100) && !Fill::new(3).fits(4, 100));
        assert!(!Fill::new(3).fits(2, 8193));
        assert!(!Fill::new(0).fits(1, 1));
        assert_eq!(Fill::new(i64::MAX), Fill(NODE_ENTRIES_MAX));
    }

    #[test]
    fn small_list_converts_once_past_the_node_limit() {
        let fill = Fill::default();
        let mut l = List::new();
        // 100-byte elements pack in 101 bytes: 81 fit in 8 KiB, the 82nd does not.
        for _ in 0..81 {
            l.push(End::Tail, &[b'x'; 100], fill);
        }
        assert!(!l.is_quicklist());
        l.push(End::Tail, &[b'y'; 100], fill);
        assert!(l.is_quicklist());
        assert_eq!(l.node_count(), 2);
        while l.len() > 1 {
            l.pop(End::Tail);
        }
        assert!(l.is_quicklist(), "never converts back");
        // A single element over the limit converts at once.
        let mut big = List::new();
        big.push(End::Head, &[0; 9000], fill);
        assert!(big.is_quicklist());
        big.check(fill);
        // A positive fill counts entries.
        let mut counted = List::new();
        for i in 0..4u8 {
            counted.push(End::Tail, &[i], Fill::new(3));
        }
        assert!(counted.is_quicklist());
        assert_eq!(counted.node_count(), 2);
    }

    #[test]
    fn ends_ranges_and_edits() {
        let fill = Fill::new(2);
        let mut l = List::new();
        for i in 0..10u8 {
            l.push(End::Tail, &[b'a' + i], fill);
        }
        assert_eq!(l.node_count(), 5);
        assert_eq!(l.get(9), Some(&b"j"[..]));
        assert_eq!(l.get(10), None);
        assert_eq!(l.iter_from(8).collect::<Vec<_>>(), vec![&b"i"[..], b"j"]);
        assert_eq!(l.iter_rev().next(), Some(&b"j"[..]));
        let mut popped = Vec::new();
        assert_eq!(l.pop_many(End::Tail, 3, |e| popped.push(e.to_vec())), 3);
        assert_eq!(popped, vec![b"j".to_vec(), b"i".to_vec(), b"h".to_vec()]);
        l.insert(3, b"X", fill);
        assert!(l.set(0, b"A", fill));
        assert_eq!(l.remove(1, fill), Some(b"b".to_vec()));
        assert_eq!(l.position(b"X"), Some(2));
        l.trim(1, 1);
        assert_eq!(
            items(&l),
            vec![
                b"c".to_vec(),
                b"X".to_vec(),
                b"d".to_vec(),
                b"e".to_vec(),
                b"f".to_vec()
            ]
        );
        l.check(fill);
    }

    /// One edit of the property test.
    #[derive(Debug, Clone)]
    enum Op {
        Push(bool, Vec<u8>),
        Pop(bool),
        PopMany(bool, usize),
        Insert(usize, Vec<u8>),
        Remove(usize),
        Set(usize, Vec<u8>),
        RemoveMatching(Vec<u8>, usize, bool),
        Trim(usize, usize),
    }

    fn item() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            4 => proptest::collection::vec(b'a'..b'd', 0..3),
            2 => proptest::collection::vec(any::<u8>(), 0..300),
            1 => proptest::collection::vec(any::<u8>(), 3000..5000),
        ]
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (any::<bool>(), item()).prop_map(|(h, e)| Op::Push(h, e)),
            2 => any::<bool>().prop_map(Op::Pop),
            1 => (any::<bool>(), 0usize..20).prop_map(|(h, n)| Op::PopMany(h, n)),
            3 => (0usize..200, item()).prop_map(|(i, e)| Op::Insert(i, e)),
            2 => (0usize..200).prop_map(Op::Remove),
            2 => (0usize..200, item()).prop_map(|(i, e)| Op::Set(i, e)),
            1 => (proptest::collection::vec(b'a'..b'd', 0..3), 0usize..4, any::<bool>())
                .prop_map(|(e, n, h)| Op::RemoveMatching(e, n, h)),
            1 => (0usize..10, 0usize..10).prop_map(|(a, b)| Op::Trim(a, b)),
        ]
    }

    fn end(head: bool) -> End {
        if head {
            End::Head
        } else {
            End::Tail
        }
    }

    /// Applies one edit to both the list and the model.
    fn apply(l: &mut List, m: &mut VecDeque<Vec<u8>>, op: Op, fill: Fill) {
        match op {
            Op::Push(true, e) => {
                l.push(End::Head, &e, fill);
                m.push_front(e);
            }
            Op::Push(false, e) => {
                l.push(End::Tail, &e, fill);
                m.push_back(e);
            }
            Op::Pop(h) => {
                let want = if h { m.pop_front() } else { m.pop_back() };
                assert_eq!(l.pop(end(h)), want);
            }
            Op::PopMany(h, n) => {
                let mut got = Vec::new();
                let k = l.pop_many(end(h), n, |e| got.push(e.to_vec()));
                let want: Vec<Vec<u8>> = (0..n)
                    .map_while(|_| if h { m.pop_front() } else { m.pop_back() })
                    .collect();
                assert_eq!(k, want.len());
                assert_eq!(got, want);
            }
            Op::Insert(i, e) => {
                let i = i % (m.len() + 1);
                l.insert(i, &e, fill);
                m.insert(i, e);
            }
            Op::Remove(i) => {
                if m.is_empty() {
                    assert_eq!(l.remove(i, fill), None);
                } else {
                    let i = i % m.len();
                    assert_eq!(l.remove(i, fill), m.remove(i));
                }
            }
            Op::Set(i, e) => {
                let ok = i < m.len();
                assert_eq!(l.set(i, &e, fill), ok);
                if ok {
                    m[i] = e;
                }
            }
            Op::RemoveMatching(e, n, h) => {
                let limit = if n == 0 { usize::MAX } else { n };
                let mut want = 0;
                let idx: Vec<usize> = if h {
                    (0..m.len()).collect()
                } else {
                    (0..m.len()).rev().collect()
                };
                let mut drop = vec![false; m.len()];
                for i in idx {
                    if want < limit && m[i] == e {
                        drop[i] = true;
                        want += 1;
                    }
                }
                let mut k = 0;
                m.retain(|_| {
                    k += 1;
                    !drop[k - 1]
                });
                assert_eq!(l.remove_matching(&e, limit, end(h), fill), want);
            }
            Op::Trim(a, b) => {
                l.trim(a, b);
                let a = a.min(m.len());
                m.drain(..a);
                let b = b.min(m.len());
                m.truncate(m.len() - b);
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// A list behaves like a VecDeque<Vec<u8>> under any sequence of edits, for node limits
        /// that force splits and merges (a few entries, 4 KiB) and the default.
        #[test]
        fn matches_vecdeque_model(
            fill in prop_oneof![Just(1i64), Just(3), Just(-1), Just(-2), Just(0)],
            ops in proptest::collection::vec(op(), 0..120),
        ) {
            let fill = Fill::new(fill);
            let mut l = List::new();
            let mut m: VecDeque<Vec<u8>> = VecDeque::new();
            for op in ops {
                apply(&mut l, &mut m, op, fill);
                prop_assert_eq!(l.len(), m.len());
                l.check(fill);
            }
            prop_assert_eq!(items(&l), m.iter().cloned().collect::<Vec<_>>());
            let rev: Vec<Vec<u8>> = l.iter_rev().map(<[u8]>::to_vec).collect();
            prop_assert_eq!(rev, m.iter().rev().cloned().collect::<Vec<_>>());
            for (i, e) in m.iter().enumerate() {
                prop_assert_eq!(l.get(i), Some(&e[..]));
                prop_assert_eq!(l.iter_from(i).next(), Some(&e[..]));
            }
        }
    }
}
