//! Keyspace notifications (Redis's `notify-keyspace-events`): the event classes, the parsing
//! of the setting, and the events the engine records while commands run. The engine only
//! records ([`crate::Shard::notify`] pushes onto `Shard::events`); the server publishes them.
//!
//! Guarantees: a command records exactly the events Redis 7.0 fires for it, in Redis's order,
//! with its names and classes; recording costs one branch while notifications are off.

/// Event classes, Redis's flags.
pub mod class {
    /// `K`: publish on `__keyspace@<db>__:<key>`.
    pub const KEYSPACE: u32 = 1 << 0;
    /// `E`: publish on `__keyevent@<db>__:<event>`.
    pub const KEYEVENT: u32 = 1 << 1;
    /// `g`: generic commands (DEL, EXPIRE, RENAME, …).
    pub const GENERIC: u32 = 1 << 2;
    /// `$`: string commands.
    pub const STRING: u32 = 1 << 3;
    /// `l`: list commands.
    pub const LIST: u32 = 1 << 4;
    /// `s`: set commands.
    pub const SET: u32 = 1 << 5;
    /// `h`: hash commands.
    pub const HASH: u32 = 1 << 6;
    /// `z`: sorted set commands.
    pub const ZSET: u32 = 1 << 7;
    /// `x`: a key deleted because it expired.
    pub const EXPIRED: u32 = 1 << 8;
    /// `e`: a key evicted for maxmemory.
    pub const EVICTED: u32 = 1 << 9;
    /// `t`: stream commands.
    pub const STREAM: u32 = 1 << 10;
    /// `m`: a key read that was missing (not part of `A`).
    pub const KEY_MISS: u32 = 1 << 11;
    /// `d`: module events.
    pub const MODULE: u32 = 1 << 12;
    /// `n`: a key created (not part of `A`).
    pub const NEW: u32 = 1 << 13;
    /// `A`: `g$lshzxetd`, as Redis 7.0 defines NOTIFY_ALL.
    pub const ALL: u32 =
        GENERIC | STRING | LIST | SET | HASH | ZSET | EXPIRED | EVICTED | STREAM | MODULE;
}

use class::*;

/// The letters of the classes, in the order Redis writes them (after `A`).
const LETTERS: [(u32, char); 13] = [
    (GENERIC, 'g'),
    (STRING, '$'),
    (LIST, 'l'),
    (SET, 's'),
    (HASH, 'h'),
    (ZSET, 'z'),
    (EXPIRED, 'x'),
    (EVICTED, 'e'),
    (STREAM, 't'),
    (MODULE, 'd'),
    (NEW, 'n'),
    (KEYSPACE, 'K'),
    (KEYEVENT, 'E'),
];

/// Parses a `notify-keyspace-events` string into flags as Redis's
/// `keyspaceEventsStringToFlags` does; `None` for an unknown character.
pub fn parse_flags(s: &str) -> Option<u32> {
    let mut flags = 0;
    for ch in s.chars() {
        flags |= match ch {
            'A' => ALL,
            'm' => KEY_MISS,
            _ => LETTERS.iter().find(|(_, l)| *l == ch)?.0,
        };
    }
    Some(flags)
}

/// The string CONFIG GET shows for `flags` (Redis's `keyspaceEventsFlagsToString`): `A` when
/// every class of `A` is set, otherwise their letters and `n` (so `n` does not show beside `A`,
/// as in Redis 7.0); then `K`, `E`, `m`.
pub fn flags_to_string(flags: u32) -> String {
    let mut s = String::new();
    if flags & ALL == ALL {
        s.push('A');
    } else {
        for (c, l) in &LETTERS[..11] {
            if flags & c != 0 {
                s.push(*l);
            }
        }
    }
    for (c, l) in [(KEYSPACE, 'K'), (KEYEVENT, 'E'), (KEY_MISS, 'm')] {
        if flags & c != 0 {
            s.push(l);
        }
    }
    s
}

/// One event: class, event name, database, key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub class: u32,
    pub event: &'static str,
    pub db: usize,
    pub key: Vec<u8>,
}

/// What a database noted about its keys while notifications are on (it knows nothing of
/// events; the shard turns these into events in order with the commands' own).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyNote {
    /// The key was created (Redis's `dbAdd`).
    New,
    /// The key was deleted because it expired.
    Expired,
    /// A read lookup did not find the key.
    Miss,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shard::testing::TestShard;

    #[test]
    fn flags_round_trip_as_redis_shows_them() {
        // (set, what CONFIG GET returns on redis-server 7.0.15)
        for (set, shown) in [
            ("KEA", "AKE"),
            ("", ""),
            ("Ex", "xE"),
            ("Kg$", "g$K"),
            ("AKEnm", "AKEm"),
            ("Elshz", "lshzE"),
            ("g$lshzxetd", "A"),
            ("g$lshzxet", "g$lshzxet"),
            ("KEm", "KEm"),
            ("En", "nE"),
        ] {
            let f = parse_flags(set).unwrap();
            assert_eq!(flags_to_string(f), shown, "{set}");
        }
        assert_eq!(parse_flags("KEq"), None);
        assert_eq!(parse_flags("A"), Some(ALL));
    }

    fn events(t: &mut TestShard) -> Vec<String> {
        t.shard
            .events
            .drain(..)
            .map(|e| format!("{}:{}:{}", e.db, e.event, String::from_utf8_lossy(&e.key)))
            .collect()
    }

    #[test]
    fn nothing_is_recorded_while_off() {
        let mut t = TestShard::new();
        t.run("SET k v PX 1");
        t.now_ms += 10;
        t.run("GET k");
        assert!(t.shard.events.is_empty());
        assert!(t.shard.dbs.iter().all(|d| d.key_notes.is_none()));
        // Classes without K or E publish nothing, as in Redis.
        t.shard.notify_flags = parse_flags("A").unwrap();
        t.run("SET k v");
        assert!(t.shard.events.is_empty());
    }

    #[test]
    fn classes_filter_and_notes_keep_their_place() {
        let mut t = TestShard::new();
        t.shard.notify_flags = parse_flags("Eg$xnm").unwrap();
        t.run("SET k v PX 1");
        t.now_ms += 10;
        t.run("APPEND k w");
        t.run("LPUSH l a");
        assert_eq!(
            events(&mut t),
            [
                "0:new:k",
                "0:set:k",
                "0:expire:k",
                "0:expired:k",
                "0:new:k",
                "0:append:k",
                "0:new:l"
            ]
        );
        t.run("GET nosuch");
        assert_eq!(events(&mut t), ["0:keymiss:nosuch"]);
        // Turned off, the databases stop noting.
        t.shard.notify_flags = 0;
        t.run("SET n v");
        assert!(t.shard.events.is_empty());
        assert!(t.shard.dbs.iter().all(|d| d.key_notes.is_none()));
    }

    #[test]
    fn active_expiry_records_expired() {
        let mut t = TestShard::new();
        t.shard.notify_flags = parse_flags("Ex").unwrap();
        t.db = 3;
        t.run("SET k v PX 5");
        t.shard.active_expire(t.now_ms + 10);
        assert_eq!(events(&mut t), ["3:expired:k"]);
    }
}
