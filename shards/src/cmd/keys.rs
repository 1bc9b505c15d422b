//! Keyspace commands (Redis's `db.c` and `expire.c`).

use super::spec::{acl, flag, kflag, Arg, CommandSpec, Group, KeySpec, Merge, Route, Split};
use super::Call;
use crate::{Result, Shard};

const KEYSPACE: CommandSpec = CommandSpec { group: Group::Generic, acl: acl::KEYSPACE, ..CommandSpec::DEFAULT };

pub const COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        name: "del",
        arity: -2,
        flags: flag::WRITE,
        keys: &[KeySpec::range(1, -1, 1, kflag::RM | kflag::DELETE)],
        route: Route::Keys(Split::PerKey(Merge::Sum)),
        run: Some(del),
        summary: "Deletes one or more keys.",
        complexity: "O(N) where N is the number of keys that will be removed. When a key to remove holds a value other than a string, the individual complexity for this key is O(M) where M is the number of elements in the list, set, sorted set or hash. Removing a single key that holds a string value is O(1).",
        tips: &["request_policy:multi_shard", "response_policy:agg_sum"],
        args: &[Arg::key("key", 0).multiple()],
        ..KEYSPACE
    },
    CommandSpec {
        name: "exists",
        arity: -2,
        flags: flag::READONLY | flag::FAST,
        keys: &[KeySpec::range(1, -1, 1, kflag::RO)],
        route: Route::Keys(Split::PerKey(Merge::Sum)),
        run: Some(exists),
        summary: "Counts how many of the given keys exist.",
        since: "1.0.0",
        complexity: "O(N) where N is the number of keys to check.",
        history: &[("3.0.3", "Accepts multiple `key` arguments.")],
        tips: &["request_policy:multi_shard", "response_policy:agg_sum"],
        args: &[Arg::key("key", 0).multiple()],
        ..KEYSPACE
    },
];

fn del(sh: &mut Shard, c: &mut Call) -> Result<()> {
    let mut n = 0;
    for key in &c.argv[1..] {
        let db = &mut sh.dbs[c.db];
        if db.contains(key, c.now_ms) {
            db.remove(key);
            n += 1;
        }
    }
    sh.stats.dirty += n as u64;
    c.out.int(n);
    Ok(())
}

fn exists(sh: &mut Shard, c: &mut Call) -> Result<()> {
    let db = &mut sh.dbs[c.db];
    let n = c.argv[1..].iter().filter(|k| db.contains(k, c.now_ms)).count();
    c.out.int(n as i64);
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::shard::testing::TestShard;

    #[test]
    fn del_exists() {
        let mut t = TestShard::new();
        t.run("SET a 1");
        t.run("SET b 2");
        assert_eq!(t.run("EXISTS a b c a"), ":3\r\n");
        assert_eq!(t.run("DEL a c"), ":1\r\n");
        assert_eq!(t.run("EXISTS a"), ":0\r\n");
    }
}

/// The shard a SCAN cursor names (placeholder until SCAN lands: always shard 0).
pub fn scan_shard_of(_cursor: &[u8]) -> Option<usize> {
    None
}
