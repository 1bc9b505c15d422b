//! Consumer groups: the last id delivered, the entries-read counter, the pending entries list
//! (PEL: entries delivered and not yet acknowledged, with their owner, delivery time and
//! count) and the consumers, each with its own view of the PEL.
//!
//! Invariant: an id is in a consumer's `pending` exactly when the group's `pel` has it with
//! that consumer as owner.

use super::StreamId;
use std::collections::{BTreeMap, BTreeSet};

/// One pending entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nack {
    /// Unix ms of the last delivery.
    pub delivery_time_ms: u64,
    pub delivery_count: u64,
    /// The consumer that owns it.
    pub consumer: Box<[u8]>,
}

/// A consumer of a group.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Consumer {
    /// Unix ms of its last interaction (Redis 7.0's `seen-time`).
    pub seen_time_ms: u64,
    /// The ids it owns in the group's PEL.
    pub pending: BTreeSet<StreamId>,
}

/// A consumer group.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Group {
    pub last_id: StreamId,
    /// Entries read by the group (`None`: Redis's invalid counter, -1).
    pub entries_read: Option<u64>,
    pub pel: BTreeMap<StreamId, Nack>,
    /// Consumers by name, in byte order.
    pub consumers: BTreeMap<Box<[u8]>, Consumer>,
}

impl Group {
    pub fn new(last_id: StreamId, entries_read: Option<u64>) -> Group {
        Group {
            last_id,
            entries_read,
            ..Group::default()
        }
    }

    /// The consumer `name`, created if missing (returns it and whether it was created).
    pub fn consumer(&mut self, name: &[u8], now_ms: u64) -> (&mut Consumer, bool) {
        let created = !self.consumers.contains_key(name);
        let c = self
            .consumers
            .entry(Box::from(name))
            .or_insert_with(|| Consumer {
                seen_time_ms: now_ms,
                pending: BTreeSet::new(),
            });
        (c, created)
    }

    /// Deletes a consumer and its pending entries; returns how many it had (None: no such
    /// consumer).
    pub fn delete_consumer(&mut self, name: &[u8]) -> Option<usize> {
        let c = self.consumers.remove(name)?;
        for id in &c.pending {
            self.pel.remove(id);
        }
        Some(c.pending.len())
    }

    /// Acknowledges `id`; true if it was pending.
    pub fn ack(&mut self, id: StreamId) -> bool {
        let Some(n) = self.pel.remove(&id) else {
            return false;
        };
        if let Some(c) = self.consumers.get_mut(&n.consumer) {
            c.pending.remove(&id);
        }
        true
    }

    /// Makes `id` pending for `consumer` (created if missing), moving it from its previous
    /// owner if it had one, with this delivery time and count.
    pub fn assign(
        &mut self,
        id: StreamId,
        consumer: &[u8],
        delivery_time_ms: u64,
        delivery_count: u64,
        now_ms: u64,
    ) {
        if let Some(old) = self.pel.get(&id) {
            if *old.consumer != *consumer {
                let old_owner = old.consumer.clone();
                if let Some(c) = self.consumers.get_mut(&old_owner) {
                    c.pending.remove(&id);
                }
            }
        }
        self.consumer(consumer, now_ms).0.pending.insert(id);
        self.pel.insert(
            id,
            Nack {
                delivery_time_ms,
                delivery_count,
                consumer: Box::from(consumer),
            },
        );
    }

    /// Checks the invariant between `pel` and the consumers' `pending` (for tests).
    pub fn consistent(&self) -> bool {
        let owned: usize = self.consumers.values().map(|c| c.pending.len()).sum();
        owned == self.pel.len()
            && self.consumers.iter().all(|(name, c)| {
                c.pending
                    .iter()
                    .all(|id| self.pel.get(id).is_some_and(|n| n.consumer == *name))
            })
    }
}
