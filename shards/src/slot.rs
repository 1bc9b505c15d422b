//! Key to hash slot, as Redis Cluster computes it: CRC16-XMODEM of the key, or of the first
//! non-empty `{…}` section of it, modulo 16384.

use crate::limits::SLOTS;

/// A Redis Cluster hash slot, `0..16384`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Slot(pub u16);

/// The part of `key` that is hashed: the content of the first `{…}` if it is non-empty.
pub fn hashtag(key: &[u8]) -> &[u8] {
    if let Some(open) = key.iter().position(|&b| b == b'{') {
        if let Some(len) = key[open + 1..].iter().position(|&b| b == b'}') {
            if len > 0 {
                return &key[open + 1..open + 1 + len];
            }
        }
    }
    key
}

/// The hash slot of `key`.
pub fn key_slot(key: &[u8]) -> Slot {
    let crc = crc16::State::<crc16::XMODEM>::calculate(hashtag(key));
    Slot(crc % SLOTS as u16)
}

/// The shard owning `key` when a process runs `n` shards: its slot, modulo `n`.
#[inline]
pub fn shard_of(key: &[u8], n: usize) -> usize {
    key_slot(key).0 as usize % n.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_slots() {
        // Values from Redis's CLUSTER KEYSLOT.
        assert_eq!(key_slot(b"foo").0, 12182);
        assert_eq!(key_slot(b"bar").0, 5061);
        assert_eq!(
            key_slot(b"{user1000}.following"),
            key_slot(b"{user1000}.followers")
        );
        assert_eq!(key_slot(b"foo{}{bar}"), key_slot(b"foo{}{bar}"));
        assert_eq!(hashtag(b"foo{}{bar}"), b"foo{}{bar}");
        assert_eq!(hashtag(b"foo{{bar}}zap"), b"{bar");
        assert_eq!(hashtag(b"foo{bar}{zap}"), b"bar");
        assert_eq!(key_slot(b"").0, 0);
    }
}
