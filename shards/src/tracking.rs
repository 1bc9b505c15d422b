//! Client-side caching, the shard's half: which clients read which of this shard's keys, which
//! key prefixes broadcasting clients (on any shard) follow, and the invalidations a write, an
//! expiry or an eviction owes them.
//!
//! As in Redis the table is keyed by key name alone (a read in one database and a write in
//! another still invalidate) and an entry is used once: the key leaves the table when its
//! invalidation goes out. Messages are only produced here; the server delivers them to the
//! clients' connections, which may live on other shards, and checks there what the client's
//! mode is now (a client that turned tracking off since it read a key is skipped then).

use std::collections::{BTreeMap, HashMap};

/// Set in the client id a shard is given for a command (`Shard::client`) when the command's
/// reads are to be remembered for that client.
pub const READS_TRACKED: u64 = 1 << 63;

/// Keys a client must forget: one key for a client that read it, or for a broadcasting client
/// every key under one of its prefixes changed since the last flush (sorted), each with the id
/// of the client whose command changed it (0: none, an expiry or an eviction) for NOLOOP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub to: u64,
    pub keys: Vec<(Vec<u8>, u64)>,
    pub bcast: bool,
}

#[derive(Debug, Default)]
struct Prefix {
    clients: Vec<u64>,
    /// Keys changed under this prefix since the last flush → the client that changed each last.
    pending: BTreeMap<Vec<u8>, u64>,
}

/// One shard's tracking state.
#[derive(Debug)]
pub struct Tracking {
    /// Key → the clients that read it since it last changed.
    table: HashMap<Vec<u8>, Vec<u64>, ahash::RandomState>,
    items: usize,
    prefixes: BTreeMap<Vec<u8>, Prefix>,
    /// A script run for `reader` called a read-only command: the script's own keys are
    /// remembered when it ends (as Redis 7.0 remembers the caller's keys).
    pub script_read: bool,
    /// Most keys this shard remembers (its share of `tracking-table-max-keys`; 0 = no limit).
    pub max_keys: usize,
    /// Messages waiting for the server to deliver them.
    pub out: Vec<Message>,
    /// A flush happened: every tracking client gets a null invalidation.
    pub flushed: bool,
}

impl Default for Tracking {
    fn default() -> Self {
        Tracking {
            table: HashMap::default(),
            items: 0,
            prefixes: BTreeMap::new(),
            script_read: false,
            max_keys: 1_000_000,
            out: Vec::new(),
            flushed: false,
        }
    }
}

impl Tracking {
    /// Whether a change to a key may owe anyone a message (one branch on the write path while
    /// nobody tracks).
    #[inline]
    pub fn active(&self) -> bool {
        !self.table.is_empty() || !self.prefixes.is_empty()
    }

    /// Remembers that `reader` read `key`; beyond the size limit, keys picked at random are
    /// invalidated to make room, as Redis does.
    pub fn remember(&mut self, key: &[u8], reader: u64) {
        let readers = match self.table.get_mut(key) {
            Some(r) => r,
            None => self.table.entry(key.to_vec()).or_default(),
        };
        if !readers.contains(&reader) {
            readers.push(reader);
            self.items += 1;
        }
        if self.max_keys != 0 && self.table.len() > self.max_keys {
            self.shrink();
        }
    }

    #[cold]
    fn shrink(&mut self) {
        let excess = self.table.len().saturating_sub(self.max_keys);
        // The table's hash order is as good as random for picking victims.
        let victims: Vec<Vec<u8>> = self.table.keys().take(excess).cloned().collect();
        for k in victims {
            self.invalidate_reads(&k, 0);
        }
    }

    /// `key` changed (written, deleted, expired or evicted; `by` is the client whose command
    /// changed it, 0 for none): its readers are told once and forgotten, and broadcasting
    /// clients following a prefix of it will hear of it at the next flush.
    pub fn invalidate(&mut self, key: &[u8], by: u64) {
        if !self.table.is_empty() {
            self.invalidate_reads(key, by);
        }
        if !self.prefixes.is_empty() {
            for (p, state) in self.prefixes.iter_mut() {
                if key.starts_with(p) {
                    state.pending.insert(key.to_vec(), by);
                }
            }
        }
    }

    fn invalidate_reads(&mut self, key: &[u8], by: u64) {
        let Some(readers) = self.table.remove(key) else {
            return;
        };
        self.items -= readers.len();
        for to in readers {
            self.out.push(Message {
                to,
                keys: vec![(key.to_vec(), by)],
                bcast: false,
            });
        }
    }

    /// Turns the keys changed under each prefix since the last call into one message per
    /// prefix and follower (Redis sends these before it sleeps).
    pub fn flush_broadcasts(&mut self) {
        for state in self.prefixes.values_mut() {
            if state.pending.is_empty() {
                continue;
            }
            let keys: Vec<(Vec<u8>, u64)> =
                std::mem::take(&mut state.pending).into_iter().collect();
            for &to in &state.clients {
                self.out.push(Message {
                    to,
                    keys: keys.clone(),
                    bcast: true,
                });
            }
        }
    }

    /// FLUSHALL / FLUSHDB: every tracking client is told to forget everything, and the table
    /// is emptied.
    pub fn flush_all(&mut self) {
        self.table = HashMap::default();
        self.items = 0;
        self.flushed = true;
    }

    /// A broadcasting client follows these prefixes from now on (`add`), or no longer follows
    /// any (`!add`).
    pub fn follow(&mut self, who: u64, prefixes: &[Vec<u8>], add: bool) {
        if add {
            for p in prefixes {
                let state = self.prefixes.entry(p.clone()).or_default();
                if !state.clients.contains(&who) {
                    state.clients.push(who);
                }
            }
            return;
        }
        self.prefixes.retain(|_, state| {
            state.clients.retain(|c| *c != who);
            !state.clients.is_empty()
        });
    }

    /// (keys, key-client pairs, prefixes) for INFO's `tracking_total_*`.
    pub fn totals(&self) -> (usize, usize, usize) {
        (self.table.len(), self.items, self.prefixes.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(id: u64) -> u64 {
        id
    }

    #[test]
    fn a_read_key_is_invalidated_once() {
        let mut t = Tracking::default();
        assert!(!t.active());
        t.remember(b"k", client(1));
        t.remember(b"k", client(1));
        t.remember(b"k", client(2));
        assert_eq!(t.totals(), (1, 2, 0));
        t.invalidate(b"other", 9);
        assert!(t.out.is_empty());
        t.invalidate(b"k", 9);
        assert_eq!(t.out.len(), 2);
        assert_eq!(t.out[0].keys, vec![(b"k".to_vec(), 9)]);
        assert!(!t.out[0].bcast);
        assert_eq!(t.totals(), (0, 0, 0));
        t.out.clear();
        t.invalidate(b"k", 9);
        assert!(t.out.is_empty());
    }

    #[test]
    fn broadcasts_group_sorted_keys_per_prefix() {
        let mut t = Tracking::default();
        t.follow(client(1), &[b"a".to_vec(), b"b".to_vec()], true);
        t.follow(client(2), &[b"".to_vec()], true);
        assert_eq!(t.totals(), (0, 0, 3));
        t.invalidate(b"a2", 5);
        t.invalidate(b"a1", 6);
        t.invalidate(b"c", 0);
        t.flush_broadcasts();
        let to1: Vec<_> = t.out.iter().filter(|m| m.to == 1).collect();
        assert_eq!(to1.len(), 1);
        assert_eq!(to1[0].keys, vec![(b"a1".to_vec(), 6), (b"a2".to_vec(), 5)]);
        let to2: Vec<_> = t.out.iter().filter(|m| m.to == 2).collect();
        assert_eq!(to2[0].keys.len(), 3);
        t.out.clear();
        t.flush_broadcasts();
        assert!(t.out.is_empty());
        t.follow(client(1), &[], false);
        assert_eq!(t.totals(), (0, 0, 1));
        t.follow(client(2), &[], false);
        assert!(!t.active());
    }

    #[test]
    fn the_table_stays_under_its_limit() {
        let mut t = Tracking {
            max_keys: 10,
            ..Tracking::default()
        };
        for i in 0..100 {
            t.remember(format!("k{i}").as_bytes(), client(1));
        }
        assert_eq!(t.totals().0, 10);
        assert_eq!(t.out.len(), 90);
    }

    #[test]
    fn flush_empties_the_table() {
        let mut t = Tracking::default();
        t.remember(b"k", client(1));
        t.flush_all();
        assert!(t.flushed);
        assert_eq!(t.totals(), (0, 0, 0));
    }
}
