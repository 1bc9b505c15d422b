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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    /// One step of a random PEL history (ids and consumers drawn from small ranges so steps
    /// collide often).
    #[derive(Debug, Clone)]
    enum Op {
        /// A delivery or claim: `assign`.
        Assign {
            id: u64,
            consumer: u8,
            time: u64,
            count: u64,
        },
        Ack(u64),
        DeleteConsumer(u8),
        /// XGROUP CREATECONSUMER: `consumer`.
        Create(u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0..20u64, 0..4u8, 0..1000u64, 0..5u64)
                .prop_map(|(id, consumer, time, count)| Op::Assign { id, consumer, time, count }),
            2 => (0..20u64).prop_map(Op::Ack),
            1 => (0..4u8).prop_map(Op::DeleteConsumer),
            1 => (0..4u8).prop_map(Op::Create),
        ]
    }

    fn name(c: u8) -> Box<[u8]> {
        Box::from(format!("c{c}").as_bytes())
    }

    /// The model: pending ids with (owner, time, count), and the consumers that exist.
    #[derive(Default)]
    struct Model {
        pel: BTreeMap<u64, (u8, u64, u64)>,
        consumers: BTreeSet<u8>,
    }

    impl Model {
        /// Applies `op`; returns what the group's method should answer (if it answers).
        fn apply(&mut self, op: &Op) -> Option<i64> {
            match *op {
                Op::Assign {
                    id,
                    consumer,
                    time,
                    count,
                } => {
                    self.consumers.insert(consumer);
                    self.pel.insert(id, (consumer, time, count));
                    None
                }
                Op::Ack(id) => Some(i64::from(self.pel.remove(&id).is_some())),
                Op::DeleteConsumer(c) => {
                    if !self.consumers.remove(&c) {
                        return Some(-1);
                    }
                    let before = self.pel.len();
                    self.pel.retain(|_, (owner, _, _)| *owner != c);
                    Some((before - self.pel.len()) as i64)
                }
                Op::Create(c) => Some(i64::from(self.consumers.insert(c))),
            }
        }
    }

    fn run(g: &mut Group, op: &Op) -> Option<i64> {
        match *op {
            Op::Assign {
                id,
                consumer,
                time,
                count,
            } => {
                g.assign(StreamId::new(id, 0), &name(consumer), time, count, 7);
                None
            }
            Op::Ack(id) => Some(i64::from(g.ack(StreamId::new(id, 0)))),
            Op::DeleteConsumer(c) => Some(g.delete_consumer(&name(c)).map_or(-1, |n| n as i64)),
            Op::Create(c) => Some(i64::from(g.consumer(&name(c), 7).1)),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// Random deliveries, claims, acknowledgements and consumer deletions keep the PEL and
        /// the consumers' views in step, and match the model.
        #[test]
        fn pel_bookkeeping_matches_a_model(ops in prop::collection::vec(op(), 1..120)) {
            let mut g = Group::new(StreamId::MIN, None);
            let mut m = Model::default();
            for op in &ops {
                prop_assert_eq!(run(&mut g, op), m.apply(op), "{:?}", op);
                prop_assert!(g.consistent(), "{:?}", op);
            }
            let pel: BTreeMap<u64, (Box<[u8]>, u64, u64)> = g
                .pel
                .iter()
                .map(|(id, n)| (id.ms, (n.consumer.clone(), n.delivery_time_ms, n.delivery_count)))
                .collect();
            let want: BTreeMap<u64, (Box<[u8]>, u64, u64)> = m
                .pel
                .iter()
                .map(|(&id, &(c, t, n))| (id, (name(c), t, n)))
                .collect();
            prop_assert_eq!(pel, want);
            let consumers: Vec<Box<[u8]>> = g.consumers.keys().cloned().collect();
            let want: Vec<Box<[u8]>> = m.consumers.iter().map(|&c| name(c)).collect();
            prop_assert_eq!(consumers, want);
        }
    }

    #[test]
    fn consistent_catches_a_stray_pending_id() {
        let mut g = Group::new(StreamId::MIN, None);
        g.assign(StreamId::new(1, 0), b"a", 5, 1, 5);
        g.assign(StreamId::new(1, 0), b"b", 6, 2, 6);
        assert!(g.consistent());
        assert!(g.consumers[&b"a"[..]].pending.is_empty());
        g.consumer(b"a", 0).0.pending.insert(StreamId::new(1, 0));
        assert!(!g.consistent());
    }
}
