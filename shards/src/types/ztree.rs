//! `ScoreTree`: the big encoding of sorted sets (OBJECT ENCODING reports it as Redis's
//! "skiplist"). It keeps Redis's costs — O(1) score lookup, O(log n) insert, delete, rank and
//! access by rank — in well under half of Redis's memory:
//!
//! - a **slab** of `(member, score)` slots, indexed by a 4-byte id that never changes while the
//!   member lives (members up to 22 bytes are stored inline in the slot; freed slots are reused);
//! - a **hash index** of ids, hashed by member (a `hashbrown::HashTable<u32>`), so each member's
//!   bytes are stored once;
//! - an **order-statistic B+tree** of `(score, id)` keys ordered by score, then member bytes.
//!   Leaves hold up to [`LEAF_CAP`] keys in two packed arrays (exactly 1 KiB, one allocator size
//!   class); inner nodes hold, for each child, its key count and its largest key. The counts give
//!   rank and access by rank; the largest keys route searches. Keys in the tree always name live
//!   slots, so a search never compares against a freed member.
//!
//! Redis's skiplist + dict costs about 110 bytes per short member (a 48–80 byte node, a 24-byte
//! dict entry, an sds string, bucket pointers); this costs about 32 (slot) + 14–17 (tree, at
//! typical leaf fill) + 5–10 (index) bytes.
//!
//! Invariants (checked by [`ScoreTree::check`] in tests): every leaf is at the same depth; a
//! node other than the root holds at least a quarter of its capacity, except on the rightmost
//! path (a key added past the end of a full last leaf starts a new leaf, so that ascending
//! inserts fill leaves completely, and only the last leaf can be such a start); each child summary's
//! count and largest key match its subtree; the index, the slab and the tree hold the same
//! members.

use super::SmallKey;
use hashbrown::HashTable;
use std::cmp::Ordering;

/// Keys per leaf: 85 scores (680 bytes) + 85 ids (340) + a length (4) = 1024 bytes.
pub const LEAF_CAP: usize = 85;
/// Children per inner node.
const INNER_CAP: usize = 64;
/// Below these a non-root node is merged with, or refilled from, a sibling.
const LEAF_MIN: usize = LEAF_CAP / 4;
const INNER_MIN: usize = INNER_CAP / 4;

/// A leaf: keys in order, as two packed arrays.
#[derive(Clone, Debug)]
struct Leaf {
    scores: [f64; LEAF_CAP],
    ids: [u32; LEAF_CAP],
    len: u32,
}

impl Leaf {
    fn new() -> Box<Leaf> {
        Box::new(Leaf {
            scores: [0.0; LEAF_CAP],
            ids: [0; LEAF_CAP],
            len: 0,
        })
    }

    fn len(&self) -> usize {
        self.len as usize
    }

    fn insert_at(&mut self, pos: usize, score: f64, id: u32) {
        let len = self.len();
        debug_assert!(len < LEAF_CAP && pos <= len);
        self.scores.copy_within(pos..len, pos + 1);
        self.ids.copy_within(pos..len, pos + 1);
        self.scores[pos] = score;
        self.ids[pos] = id;
        self.len += 1;
    }

    fn remove_at(&mut self, pos: usize) {
        let len = self.len();
        self.scores.copy_within(pos + 1..len, pos);
        self.ids.copy_within(pos + 1..len, pos);
        self.len -= 1;
    }

    /// Moves the keys from `at` on into a new leaf.
    fn split_off(&mut self, at: usize) -> Box<Leaf> {
        let mut right = Leaf::new();
        let n = self.len() - at;
        right.scores[..n].copy_from_slice(&self.scores[at..self.len()]);
        right.ids[..n].copy_from_slice(&self.ids[at..self.len()]);
        right.len = n as u32;
        self.len = at as u32;
        right
    }

    /// Moves the first `n` keys of `right` to the end of `self`.
    fn take_front(&mut self, right: &mut Leaf, n: usize) {
        let len = self.len();
        self.scores[len..len + n].copy_from_slice(&right.scores[..n]);
        self.ids[len..len + n].copy_from_slice(&right.ids[..n]);
        self.len += n as u32;
        let rlen = right.len();
        right.scores.copy_within(n..rlen, 0);
        right.ids.copy_within(n..rlen, 0);
        right.len -= n as u32;
    }

    /// Moves the last `n` keys of `self` to the front of `right`.
    fn give_back(&mut self, right: &mut Leaf, n: usize) {
        let rlen = right.len();
        right.scores.copy_within(0..rlen, n);
        right.ids.copy_within(0..rlen, n);
        let from = self.len() - n;
        right.scores[..n].copy_from_slice(&self.scores[from..self.len()]);
        right.ids[..n].copy_from_slice(&self.ids[from..self.len()]);
        right.len += n as u32;
        self.len -= n as u32;
    }

    /// How many keys satisfy `before` (a predicate true for a prefix of the keys).
    fn partition_point(&self, before: &impl Fn(f64, u32) -> bool) -> usize {
        let (mut lo, mut hi) = (0, self.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if before(self.scores[mid], self.ids[mid]) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }
}

/// What an inner node knows of one child.
#[derive(Clone, Debug)]
struct Child {
    /// Keys in the subtree.
    count: usize,
    /// The subtree's largest key.
    max_score: f64,
    max_id: u32,
    node: Node,
}

impl Child {
    fn of(node: Node) -> Child {
        let (max_score, max_id) = node.max();
        Child {
            count: node.count(),
            max_score,
            max_id,
            node,
        }
    }

    /// Refreshes the summary after the subtree changed.
    fn refresh(&mut self) {
        self.count = self.node.count();
        (self.max_score, self.max_id) = self.node.max();
    }
}

#[derive(Clone, Debug)]
enum Node {
    Leaf(Box<Leaf>),
    Inner(Vec<Child>),
}

impl Node {
    fn count(&self) -> usize {
        match self {
            Node::Leaf(l) => l.len(),
            Node::Inner(ch) => ch.iter().map(|c| c.count).sum(),
        }
    }

    /// Keys (leaf) or children (inner).
    fn width(&self) -> usize {
        match self {
            Node::Leaf(l) => l.len(),
            Node::Inner(ch) => ch.len(),
        }
    }

    fn underfull(&self) -> bool {
        match self {
            Node::Leaf(l) => l.len() < LEAF_MIN,
            Node::Inner(ch) => ch.len() < INNER_MIN,
        }
    }

    /// The largest key; `(0.0, 0)` for an empty leaf (only the root may be empty).
    fn max(&self) -> (f64, u32) {
        match self {
            Node::Leaf(l) => match l.len() {
                0 => (0.0, 0),
                n => (l.scores[n - 1], l.ids[n - 1]),
            },
            Node::Inner(ch) => ch.last().map_or((0.0, 0), |c| (c.max_score, c.max_id)),
        }
    }

    /// Inserts `(score, id)` where `before` (true for keys ordered before it) says. Returns a
    /// new right sibling when the node had to split.
    fn insert(&mut self, score: f64, id: u32, before: &impl Fn(f64, u32) -> bool) -> Option<Child> {
        match self {
            Node::Leaf(leaf) => {
                let pos = leaf.partition_point(before);
                if leaf.len() < LEAF_CAP {
                    leaf.insert_at(pos, score, id);
                    return None;
                }
                // A full leaf splits in half, except when the key goes at its very end: then
                // the new key starts a leaf of its own, so ascending inserts fill leaves fully.
                let mut right = if pos == leaf.len() {
                    Leaf::new()
                } else {
                    leaf.split_off(LEAF_CAP / 2)
                };
                if pos <= leaf.len() && pos < LEAF_CAP {
                    leaf.insert_at(pos, score, id);
                } else {
                    right.insert_at(pos - leaf.len(), score, id);
                }
                Some(Child::of(Node::Leaf(right)))
            }
            Node::Inner(children) => {
                let i = route(children, before);
                let split = children[i].node.insert(score, id, before);
                children[i].refresh_after_insert(split.is_some());
                let right = split?;
                children.insert(i + 1, right);
                if children.len() <= INNER_CAP {
                    return None;
                }
                let right = children.split_off(children.len() / 2);
                Some(Child::of(Node::Inner(right)))
            }
        }
    }

    /// Removes the key `before` locates (the first key not ordered before the target), which
    /// must be `id`. Returns whether it was found.
    fn remove(&mut self, id: u32, before: &impl Fn(f64, u32) -> bool) -> bool {
        match self {
            Node::Leaf(leaf) => {
                let pos = leaf.partition_point(before);
                if pos >= leaf.len() || leaf.ids[pos] != id {
                    return false;
                }
                leaf.remove_at(pos);
                true
            }
            Node::Inner(children) => {
                let i = route(children, before);
                if !children[i].node.remove(id, before) {
                    return false;
                }
                if children[i].node.width() == 0 {
                    children.remove(i);
                } else {
                    children[i].count -= 1;
                    (children[i].max_score, children[i].max_id) = children[i].node.max();
                    if children[i].node.underfull() && children.len() > 1 {
                        rebalance(children, i);
                    }
                }
                true
            }
        }
    }

    fn partition_point(&self, before: &impl Fn(f64, u32) -> bool) -> usize {
        match self {
            Node::Leaf(l) => l.partition_point(before),
            Node::Inner(children) => {
                let mut acc = 0;
                for c in children {
                    if before(c.max_score, c.max_id) {
                        acc += c.count;
                    } else {
                        return acc + c.node.partition_point(before);
                    }
                }
                acc
            }
        }
    }

    fn get(&self, mut rank: usize) -> Option<(f64, u32)> {
        match self {
            Node::Leaf(l) => (rank < l.len()).then(|| (l.scores[rank], l.ids[rank])),
            Node::Inner(children) => {
                for c in children {
                    if rank < c.count {
                        return c.node.get(rank);
                    }
                    rank -= c.count;
                }
                None
            }
        }
    }

    /// Calls `f` on keys in order from rank `skip`, while it returns true. Returns false when
    /// `f` stopped the walk.
    fn walk(&self, mut skip: usize, f: &mut impl FnMut(f64, u32) -> bool) -> bool {
        match self {
            Node::Leaf(l) => (skip..l.len()).all(|k| f(l.scores[k], l.ids[k])),
            Node::Inner(children) => {
                for c in children {
                    if skip >= c.count {
                        skip -= c.count;
                        continue;
                    }
                    if !c.node.walk(skip, f) {
                        return false;
                    }
                    skip = 0;
                }
                true
            }
        }
    }

    /// Calls `f` on keys in reverse order from rank `from` (inclusive) down to the first.
    fn walk_back(&self, from: usize, f: &mut impl FnMut(f64, u32) -> bool) -> bool {
        match self {
            Node::Leaf(l) => (0..=from.min(l.len().saturating_sub(1)))
                .rev()
                .take(l.len())
                .all(|k| f(l.scores[k], l.ids[k])),
            Node::Inner(children) => {
                let mut start = 0;
                let mut at = children.len();
                for (i, c) in children.iter().enumerate() {
                    if from < start + c.count {
                        at = i;
                        break;
                    }
                    start += c.count;
                }
                if at == children.len() {
                    return true;
                }
                if !children[at].node.walk_back(from - start, f) {
                    return false;
                }
                children[..at]
                    .iter()
                    .rev()
                    .all(|c| c.node.walk_back(c.count - 1, f))
            }
        }
    }
}

impl Child {
    /// The summary after an insert below: one more key (a recount after a split); the
    /// largest key is read again (O(1) for either kind of node).
    fn refresh_after_insert(&mut self, split: bool) {
        if split {
            self.refresh();
        } else {
            self.count += 1;
            (self.max_score, self.max_id) = self.node.max();
        }
    }
}

/// The child a key goes to: the first whose largest key is not before it, else the last.
fn route(children: &[Child], before: &impl Fn(f64, u32) -> bool) -> usize {
    children
        .iter()
        .position(|c| !before(c.max_score, c.max_id))
        .unwrap_or(children.len() - 1)
}

/// Merges the underfull child `i` with a sibling, or evens out their sizes when together they
/// would not fit one node.
fn rebalance(children: &mut Vec<Child>, i: usize) {
    let j = if i + 1 < children.len() { i + 1 } else { i - 1 };
    let (a, b) = (i.min(j), i.max(j));
    let (left, right) = children.split_at_mut(b);
    let (l, r) = (&mut left[a], &mut right[0]);
    let merged = match (&mut l.node, &mut r.node) {
        (Node::Leaf(x), Node::Leaf(y)) => {
            let total = x.len() + y.len();
            if total <= LEAF_CAP {
                let n = y.len();
                x.take_front(y, n);
                true
            } else {
                let half = total / 2;
                if x.len() < half {
                    x.take_front(y, half - x.len());
                } else {
                    let n = x.len() - half;
                    x.give_back(y, n);
                }
                false
            }
        }
        (Node::Inner(x), Node::Inner(y)) => {
            let total = x.len() + y.len();
            if total <= INNER_CAP {
                x.append(y);
                true
            } else {
                let half = total / 2;
                if x.len() < half {
                    let n = half - x.len();
                    x.extend(y.drain(..n));
                } else {
                    let moved = x.split_off(half);
                    y.splice(0..0, moved);
                }
                false
            }
        }
        _ => unreachable!("siblings are at the same depth"),
    };
    l.refresh();
    if merged {
        children.remove(b);
    } else {
        children[b].refresh();
    }
}

/// In-order iterator over a [`ScoreTree`]: the path to the current leaf, then the leaf.
pub struct TreeIter<'a> {
    slots: &'a [Slot],
    /// Inner nodes on the path, with the index of the child being visited.
    stack: Vec<(&'a [Child], usize)>,
    leaf: Option<&'a Leaf>,
    pos: usize,
}

impl<'a> TreeIter<'a> {
    /// Goes down the leftmost path of `node`.
    fn descend(&mut self, mut node: &'a Node) {
        loop {
            match node {
                Node::Leaf(l) => {
                    self.leaf = Some(l);
                    self.pos = 0;
                    return;
                }
                Node::Inner(ch) => {
                    self.stack.push((ch, 0));
                    match ch.first() {
                        Some(c) => node = &c.node,
                        None => return,
                    }
                }
            }
        }
    }
}

impl<'a> Iterator for TreeIter<'a> {
    type Item = (&'a [u8], f64);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(l) = self.leaf {
                if self.pos < l.len() {
                    let k = self.pos;
                    self.pos += 1;
                    let member = self.slots[l.ids[k] as usize].member.as_slice();
                    return Some((member, l.scores[k]));
                }
                self.leaf = None;
            }
            // The next child of the deepest inner node that has one.
            let (children, i) = self.stack.pop()?;
            if i + 1 < children.len() {
                self.stack.push((children, i + 1));
                self.descend(&children[i + 1].node);
            }
        }
    }
}

/// A member and its score, in the slab. A free slot has a NaN score (scores never are NaN).
#[derive(Clone, Debug)]
struct Slot {
    member: SmallKey,
    score: f64,
}

/// Orders a stored key against a target: by score, then by member bytes.
#[inline]
fn cmp_key(slots: &[Slot], score: f64, id: u32, t_score: f64, t_member: &[u8]) -> Ordering {
    match score.partial_cmp(&t_score) {
        Some(Ordering::Equal) | None => slots[id as usize].member.as_slice().cmp(t_member),
        Some(o) => o,
    }
}

/// The big sorted-set encoding (see the module docs).
#[derive(Clone, Debug)]
pub struct ScoreTree {
    slots: Vec<Slot>,
    free: Vec<u32>,
    index: HashTable<u32>,
    hasher: ahash::RandomState,
    root: Node,
}

impl Default for ScoreTree {
    fn default() -> Self {
        ScoreTree::new()
    }
}

impl ScoreTree {
    pub fn new() -> ScoreTree {
        ScoreTree {
            slots: Vec::new(),
            free: Vec::new(),
            index: HashTable::new(),
            hasher: ahash::RandomState::new(),
            root: Node::Leaf(Leaf::new()),
        }
    }

    /// An empty tree with room for `n` members.
    pub fn with_capacity(n: usize) -> ScoreTree {
        let mut t = ScoreTree::new();
        t.slots.reserve_exact(n);
        t.index.reserve(n, |_| 0);
        t
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The slot id of `member`, for [`ScoreTree::score_at`] and [`ScoreTree::rescore`].
    pub fn find(&self, member: &[u8]) -> Option<u32> {
        let h = self.hasher.hash_one(member);
        let slots = &self.slots;
        self.index
            .find(h, |&id| slots[id as usize].member.as_slice() == member)
            .copied()
    }

    /// The score of `member`.
    pub fn score(&self, member: &[u8]) -> Option<f64> {
        self.find(member).map(|id| self.slots[id as usize].score)
    }

    /// The score of the member in slot `id` (from [`ScoreTree::find`]).
    pub fn score_at(&self, id: u32) -> f64 {
        self.slots[id as usize].score
    }

    /// Moves the member in slot `id` to `score`.
    pub fn rescore(&mut self, id: u32, score: f64) {
        self.tree_remove(id);
        self.slots[id as usize].score = score;
        self.tree_insert(id);
    }

    /// Adds `member` (which must be absent) with `score`.
    pub fn insert_new(&mut self, member: &[u8], score: f64) {
        debug_assert!(!score.is_nan());
        let slot = Slot {
            member: SmallKey::from(member),
            score,
        };
        let id = match self.free.pop() {
            Some(id) => {
                self.slots[id as usize] = slot;
                id
            }
            None => {
                self.slots.push(slot);
                (self.slots.len() - 1) as u32
            }
        };
        let (slots, hasher) = (&self.slots, &self.hasher);
        let h = hasher.hash_one(member);
        self.index.insert_unique(h, id, |&x| {
            hasher.hash_one(slots[x as usize].member.as_slice())
        });
        self.tree_insert(id);
    }

    /// Puts slot `id` into the tree at its score.
    fn tree_insert(&mut self, id: u32) {
        let slots = &self.slots;
        let slot = &slots[id as usize];
        let (score, member) = (slot.score, slot.member.as_slice());
        let before = |s: f64, i: u32| cmp_key(slots, s, i, score, member) == Ordering::Less;
        if let Some(right) = self.root.insert(score, id, &before) {
            let left = std::mem::replace(&mut self.root, Node::Inner(Vec::new()));
            self.root = Node::Inner(vec![Child::of(left), right]);
        }
    }

    /// Takes slot `id` out of the tree.
    fn tree_remove(&mut self, id: u32) {
        let slots = &self.slots;
        let slot = &slots[id as usize];
        let (score, member) = (slot.score, slot.member.as_slice());
        let before = |s: f64, i: u32| cmp_key(slots, s, i, score, member) == Ordering::Less;
        let found = self.root.remove(id, &before);
        debug_assert!(found, "a member in the index is in the tree");
        // The root shrinks to its only child, level by level.
        while let Node::Inner(ch) = &mut self.root {
            match ch.len() {
                0 => self.root = Node::Leaf(Leaf::new()),
                1 => {
                    let only = ch.pop().map(|c| c.node);
                    self.root = only.unwrap_or_else(|| Node::Leaf(Leaf::new()));
                }
                _ => break,
            }
        }
    }

    /// Sets the score of `member`, adding it if needed. Returns whether it was added.
    pub fn set(&mut self, member: &[u8], score: f64) -> bool {
        match self.find(member) {
            Some(id) => {
                if self.slots[id as usize].score.to_bits() != score.to_bits() {
                    self.rescore(id, score);
                }
                false
            }
            None => {
                self.insert_new(member, score);
                true
            }
        }
    }

    /// Removes `member`; returns its score.
    pub fn remove(&mut self, member: &[u8]) -> Option<f64> {
        let id = self.find(member)?;
        self.tree_remove(id);
        let h = self.hasher.hash_one(member);
        if let Ok(e) = self.index.find_entry(h, |&x| x == id) {
            e.remove();
        }
        let slot = &mut self.slots[id as usize];
        let score = slot.score;
        *slot = Slot {
            member: SmallKey::from(&b""[..]),
            score: f64::NAN,
        };
        self.free.push(id);
        self.shrink_if_sparse();
        Some(score)
    }

    /// Gives memory back when most of it is unused: the slab when at most a quarter of it is
    /// live (live slots are compacted and re-indexed), the index when it is mostly empty.
    fn shrink_if_sparse(&mut self) {
        let len = self.len();
        if self.slots.len() >= 64 && len * 4 <= self.slots.len() {
            let mut fresh = ScoreTree::with_capacity(len);
            fresh.hasher = self.hasher.clone();
            self.walk(0, false, |m, s| {
                fresh.insert_new(m, s);
                true
            });
            *self = fresh;
        } else if self.index.capacity() > 64 && len * 8 < self.index.capacity() {
            let (slots, hasher) = (&self.slots, &self.hasher);
            self.index.shrink_to(len, |&x| {
                hasher.hash_one(slots[x as usize].member.as_slice())
            });
        }
    }

    /// The 0-based rank of `member` from the lowest score, and its score.
    pub fn rank(&self, member: &[u8]) -> Option<(usize, f64)> {
        let id = self.find(member)?;
        let slots = &self.slots;
        let score = slots[id as usize].score;
        let before = |s: f64, i: u32| cmp_key(slots, s, i, score, member) == Ordering::Less;
        Some((self.root.partition_point(&before), score))
    }

    /// [`ScoreTree::partition_point`] for a predicate on scores alone (members are not read,
    /// which saves a slab access per comparison).
    pub fn partition_point_by_score(&self, before: impl Fn(f64) -> bool) -> usize {
        self.root.partition_point(&|s, _| before(s))
    }

    /// The member and score at `rank`.
    pub fn get(&self, rank: usize) -> Option<(&[u8], f64)> {
        let (score, id) = self.root.get(rank)?;
        Some((self.slots[id as usize].member.as_slice(), score))
    }

    /// How many members (from the lowest) satisfy `before`, a predicate that holds for a
    /// prefix of the order.
    pub fn partition_point(&self, before: impl Fn(f64, &[u8]) -> bool) -> usize {
        let slots = &self.slots;
        self.root
            .partition_point(&|s, id| before(s, slots[id as usize].member.as_slice()))
    }

    /// Calls `f` with members in order (descending with `rev`) from `rank`, while it returns
    /// true.
    pub fn walk(&self, rank: usize, rev: bool, mut f: impl FnMut(&[u8], f64) -> bool) {
        let slots = &self.slots;
        let mut g = |s: f64, id: u32| f(slots[id as usize].member.as_slice(), s);
        if rev {
            if rank < self.len() {
                self.root.walk_back(rank, &mut g);
            }
        } else {
            self.root.walk(rank, &mut g);
        }
    }

    /// Every (member, score) in order, lowest first.
    pub fn iter(&self) -> TreeIter<'_> {
        let mut it = TreeIter {
            slots: &self.slots,
            stack: Vec::new(),
            leaf: None,
            pos: 0,
        };
        it.descend(&self.root);
        it
    }

    /// One step of a scan over the slab: `cursor` is the number of slots still to visit (0
    /// starts a scan); about `count` slots are visited from there downwards, and the next
    /// cursor is returned (0 when done). Slots keep their members, so a member present for
    /// the whole scan is visited at least once.
    pub fn scan(&self, cursor: u64, count: usize, mut f: impl FnMut(&[u8], f64)) -> u64 {
        let mut pos = match usize::try_from(cursor) {
            Ok(0) | Err(_) => self.slots.len(),
            Ok(c) => c.min(self.slots.len()),
        };
        let mut visited = 0;
        while pos > 0 && visited < count.max(1) {
            pos -= 1;
            let slot = &self.slots[pos];
            if !slot.score.is_nan() {
                visited += 1;
                f(slot.member.as_slice(), slot.score);
            }
        }
        pos as u64
    }

    /// Bytes of memory this tree holds, approximately (for MEMORY USAGE and tests).
    pub fn heap_bytes(&self) -> usize {
        fn node_bytes(n: &Node) -> usize {
            match n {
                Node::Leaf(_) => std::mem::size_of::<Leaf>(),
                Node::Inner(ch) => {
                    ch.capacity() * std::mem::size_of::<Child>()
                        + ch.iter().map(|c| node_bytes(&c.node)).sum::<usize>()
                }
            }
        }
        let heap_members: usize = self
            .slots
            .iter()
            .filter(|s| matches!(s.member, SmallKey::Heap(_)))
            .map(|s| s.member.len())
            .sum();
        self.slots.capacity() * std::mem::size_of::<Slot>()
            + self.free.capacity() * 4
            + self.index.capacity() * 5
            + node_bytes(&self.root)
            + heap_members
    }

    /// Estimated heap bytes (MEMORY USAGE): the slot array, free list, member index and tree
    /// nodes, which cost the same whatever the members, and the members' own allocations
    /// extrapolated from the first `samples` live members (all when 0). Visits the inner
    /// nodes (one per `INNER_CAP` leaves), never the leaves' keys.
    pub fn heap_estimate(&self, samples: usize) -> usize {
        use super::mem::{alloc_size, extrapolate, table_bytes, vec_bytes};
        fn node_bytes(n: &Node) -> usize {
            match n {
                Node::Leaf(_) => alloc_size(std::mem::size_of::<Leaf>()),
                Node::Inner(ch) => {
                    vec_bytes::<Child>(ch.capacity())
                        + ch.iter().map(|c| node_bytes(&c.node)).sum::<usize>()
                }
            }
        }
        let live = self.slots.iter().filter(|s| !s.score.is_nan());
        let members = live.map(|s| s.member.heap_bytes());
        vec_bytes::<Slot>(self.slots.capacity())
            + vec_bytes::<u32>(self.free.capacity())
            + table_bytes::<u32>(self.index.capacity())
            + node_bytes(&self.root)
            + extrapolate(members, self.len(), samples)
    }

    /// Checks every invariant (see the module docs); panics with what is wrong.
    #[cfg(test)]
    pub fn check(&self) {
        // `lax`: the root, or a node on the rightmost path (see the module docs).
        fn depth_and_count(n: &Node, slots: &[Slot], is_root: bool, lax: bool) -> (usize, usize) {
            match n {
                Node::Leaf(l) => {
                    assert!(lax || l.len() >= LEAF_MIN, "underfull leaf {}", l.len());
                    assert!(is_root || l.len() > 0, "empty leaf");
                    for k in 1..l.len() {
                        let prev = (l.scores[k - 1], l.ids[k - 1]);
                        let member = slots[l.ids[k] as usize].member.as_slice();
                        assert_eq!(
                            cmp_key(slots, prev.0, prev.1, l.scores[k], member),
                            Ordering::Less
                        );
                    }
                    (0, l.len())
                }
                Node::Inner(ch) => {
                    assert!(!ch.is_empty() && ch.len() <= INNER_CAP);
                    assert!(lax || ch.len() >= INNER_MIN, "underfull inner {}", ch.len());
                    assert!(!is_root || ch.len() >= 2, "a root with one child");
                    let mut depth = None;
                    let mut total = 0;
                    for (k, c) in ch.iter().enumerate() {
                        let last = lax && k + 1 == ch.len();
                        let (d, n) = depth_and_count(&c.node, slots, false, last);
                        assert_eq!(c.count, n, "child count");
                        let (s, i) = c.node.max();
                        assert_eq!((s.to_bits(), i), (c.max_score.to_bits(), c.max_id));
                        assert!(depth.is_none_or(|x| x == d), "leaves at different depths");
                        depth = Some(d);
                        total += n;
                    }
                    (depth.unwrap_or(0) + 1, total)
                }
            }
        }
        let (_, n) = depth_and_count(&self.root, &self.slots, true, true);
        assert_eq!(n, self.len(), "tree and index sizes");
        let live = self.slots.iter().filter(|s| !s.score.is_nan()).count();
        assert_eq!(live, self.len(), "slab and index sizes");
        assert_eq!(live + self.free.len(), self.slots.len());
        let mut rank = 0;
        self.walk(0, false, |m, s| {
            assert_eq!(self.score(m).map(f64::to_bits), Some(s.to_bits()));
            assert_eq!(self.rank(m).map(|r| r.0), Some(rank));
            rank += 1;
            true
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::{BTreeSet, HashMap};

    /// A score that orders totally, for the model.
    #[derive(Debug, Clone, Copy, PartialEq)]
    struct Sc(f64);
    impl Eq for Sc {}
    impl PartialOrd for Sc {
        fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
            Some(self.cmp(o))
        }
    }
    impl Ord for Sc {
        fn cmp(&self, o: &Self) -> Ordering {
            self.0.partial_cmp(&o.0).unwrap_or(Ordering::Equal)
        }
    }

    /// The model: an ordered set of (score, member) plus a member → score map.
    #[derive(Default)]
    struct Model {
        order: BTreeSet<(Sc, Vec<u8>)>,
        scores: HashMap<Vec<u8>, f64>,
    }

    impl Model {
        fn set(&mut self, m: &[u8], s: f64) -> bool {
            let old = self.scores.insert(m.to_vec(), s);
            if let Some(o) = old {
                self.order.remove(&(Sc(o), m.to_vec()));
            }
            self.order.insert((Sc(s), m.to_vec()));
            old.is_none()
        }
        fn remove(&mut self, m: &[u8]) -> Option<f64> {
            let s = self.scores.remove(m)?;
            self.order.remove(&(Sc(s), m.to_vec()));
            Some(s)
        }
        fn sorted(&self) -> Vec<(Vec<u8>, f64)> {
            self.order.iter().map(|(s, m)| (m.clone(), s.0)).collect()
        }
    }

    fn contents(t: &ScoreTree) -> Vec<(Vec<u8>, f64)> {
        let mut v = Vec::new();
        t.walk(0, false, |m, s| {
            v.push((m.to_vec(), s));
            true
        });
        let iterated: Vec<(Vec<u8>, f64)> = t.iter().map(|(m, s)| (m.to_vec(), s)).collect();
        assert_eq!(iterated, v, "iter and walk agree");
        v
    }

    #[test]
    fn sizes() {
        assert_eq!(std::mem::size_of::<Leaf>(), 1024);
        assert_eq!(std::mem::size_of::<Slot>(), 32);
    }

    #[test]
    fn big_ascending_and_random_workloads() {
        let mut t = ScoreTree::new();
        let mut model = Model::default();
        for i in 0..20_000u32 {
            let m = format!("m{i}");
            assert!(t.set(m.as_bytes(), i as f64));
            model.set(m.as_bytes(), i as f64);
        }
        t.check();
        // Ascending inserts fill leaves: about 1024/85 bytes of tree per key.
        let leaves = 20_000usize.div_ceil(LEAF_CAP);
        assert!(t.heap_bytes() < 20_000 * 32 * 2 + leaves * 1024 * 12 / 10 + (1 << 20));
        let mut rng = crate::rng::Rng::new(5);
        for step in 0..60_000 {
            let m = format!("m{}", rng.below(30_000));
            match rng.below(4) {
                0 => assert_eq!(t.remove(m.as_bytes()), model.remove(m.as_bytes())),
                _ => {
                    let s = (rng.below(2000) as f64) / 4.0 - 100.0;
                    assert_eq!(t.set(m.as_bytes(), s), model.set(m.as_bytes(), s));
                }
            }
            if step % 10_000 == 0 {
                t.check();
            }
        }
        t.check();
        assert_eq!(contents(&t), model.sorted());
        // Delete almost everything: the tree shrinks and stays valid.
        let all: Vec<Vec<u8>> = model.scores.keys().cloned().collect();
        for m in &all[..all.len() - 3] {
            assert!(t.remove(m).is_some());
            model.remove(m);
        }
        t.check();
        assert_eq!(contents(&t), model.sorted());
        assert!(t.slots.len() < 64, "the slab is compacted");
    }

    #[test]
    fn ranks_ranges_and_walks() {
        let mut t = ScoreTree::new();
        for i in 0..1000 {
            t.set(format!("{i:04}").as_bytes(), (i / 10) as f64);
        }
        t.check();
        assert_eq!(t.rank(b"0000"), Some((0, 0.0)));
        assert_eq!(t.rank(b"0999"), Some((999, 99.0)));
        assert_eq!(t.get(500), Some((&b"0500"[..], 50.0)));
        assert_eq!(t.get(1000), None);
        // Members with score below 50: 500 of them.
        assert_eq!(t.partition_point(|s, _| s < 50.0), 500);
        assert_eq!(t.partition_point(|s, _| s <= 50.0), 510);
        let mut back = Vec::new();
        t.walk(505, true, |m, _| {
            back.push(m.to_vec());
            back.len() < 7
        });
        let want: Vec<Vec<u8>> = (499..=505)
            .rev()
            .map(|i| format!("{i:04}").into())
            .collect();
        assert_eq!(back, want);
        let mut n = 0;
        t.walk(990, false, |_, _| {
            n += 1;
            true
        });
        assert_eq!(n, 10);
        let mut n = 0;
        t.walk(5000, true, |_, _| {
            n += 1;
            true
        });
        assert_eq!(n, 0);
    }

    #[test]
    fn scan_survives_deletes() {
        let mut t = ScoreTree::new();
        for i in 0..300 {
            t.set(format!("m{i}").as_bytes(), i as f64);
        }
        let mut seen = std::collections::HashSet::new();
        let mut cursor = 0;
        let mut round = 0;
        loop {
            cursor = t.scan(cursor, 10, |m, _| {
                seen.insert(m.to_vec());
            });
            t.remove(format!("m{}", 2 * round + 1).as_bytes());
            round += 1;
            if cursor == 0 {
                break;
            }
        }
        for i in (0..300).step_by(2) {
            assert!(seen.contains(format!("m{i}").as_bytes()), "missing m{i}");
        }
    }

    #[derive(Debug, Clone)]
    enum Op {
        Set(u16, i16),
        Remove(u16),
    }

    fn op(space: u16) -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => (0..space, -50i16..50).prop_map(|(m, s)| Op::Set(m, s)),
            2 => (0..space).prop_map(Op::Remove),
        ]
    }

    fn member(m: u16) -> Vec<u8> {
        // Some members longer than the inline size, to exercise heap members.
        if m.is_multiple_of(7) {
            format!("a-long-member-name-over-22-bytes-{m}").into_bytes()
        } else {
            format!("m{m}").into_bytes()
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// The tree behaves like an ordered set plus a map under any sequence of writes, and
        /// keeps its invariants; ranks, access by rank and walks agree with the model.
        #[test]
        fn matches_btree_model(ops in proptest::collection::vec(op(600), 0..2500)) {
            let mut t = ScoreTree::new();
            let mut model = Model::default();
            for op in &ops {
                match *op {
                    Op::Set(m, s) => {
                        let m = member(m);
                        let s = s as f64 / 2.0;
                        prop_assert_eq!(t.set(&m, s), model.set(&m, s));
                    }
                    Op::Remove(m) => {
                        let m = member(m);
                        prop_assert_eq!(t.remove(&m), model.remove(&m));
                    }
                }
            }
            t.check();
            let sorted = model.sorted();
            prop_assert_eq!(contents(&t), sorted.clone());
            for (i, (m, s)) in sorted.iter().enumerate() {
                prop_assert_eq!(t.rank(m), Some((i, *s)));
                prop_assert_eq!(t.get(i), Some((&m[..], *s)));
            }
            let mut rev = Vec::new();
            if !sorted.is_empty() {
                t.walk(sorted.len() - 1, true, |m, s| { rev.push((m.to_vec(), s)); true });
            }
            let mut want = sorted.clone();
            want.reverse();
            prop_assert_eq!(rev, want);
            for cut in [-10.0, 0.0, 3.5, 20.0] {
                let n = sorted.iter().filter(|(_, s)| *s < cut).count();
                prop_assert_eq!(t.partition_point(|s, _| s < cut), n);
            }
        }
    }
}
