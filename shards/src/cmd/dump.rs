//! DUMP and RESTORE (Redis's `cluster.c`): a key's value as an RDB payload, and a key made
//! from one. The payload format is [`crate::rdb`]'s.
//!
//! Both commands have one key and run on its shard. Access times and frequencies are not kept
//! (see OBJECT IDLETIME), so RESTORE checks IDLETIME and FREQ as Redis does and then has
//! nothing to set.

use super::spec::{acl, flag, kflag, Arg, ArgType, CommandSpec, Group, KeySpec};
use super::Call;
use crate::keyspace::Entry;
use crate::notify::class;
use crate::util::{eq_ic, parse_i64};
use crate::{rdb, Error, Result, Shard};

pub const COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        name: "dump",
        arity: 2,
        flags: flag::READONLY,
        acl: acl::KEYSPACE,
        group: Group::Generic,
        keys: &[KeySpec::one(1, kflag::RO | kflag::ACCESS)],
        run: Some(dump),
        summary: "Serializes a key's value in the RDB format, for RESTORE.",
        since: "2.6.0",
        complexity: "O(1) to access the key and additional O(N*M) to serialize it, where N is the number of Redis objects composing the value and M their average size. For small string values the time complexity is thus O(1)+O(1*M) where M is small, so simply O(1).",
        tips: &["nondeterministic_output"],
        args: &[Arg::key("key", 0)],
        ..CommandSpec::DEFAULT
    },
    CommandSpec {
        name: "restore",
        arity: -4,
        flags: flag::WRITE | flag::DENYOOM,
        acl: acl::KEYSPACE | acl::DANGEROUS,
        group: Group::Generic,
        keys: &[KeySpec::one(1, kflag::OW | kflag::UPDATE)],
        run: Some(restore),
        summary: "Creates a key from a value serialized by DUMP.",
        since: "2.6.0",
        complexity: "O(1) to create the new key and additional O(N*M) to reconstruct the serialized value, where N is the number of Redis objects composing the value and M their average size. For small string values the time complexity is thus O(1)+O(1*M) where M is small, so simply O(1). However for sorted set values the complexity is O(N*M*log(N)) because inserting values into sorted sets is O(log(N)).",
        history: &[
            ("3.0.0", "Added the `REPLACE` modifier."),
            ("5.0.0", "Added the `ABSTTL` modifier."),
            ("5.0.0", "Added the `IDLETIME` and `FREQ` options."),
        ],
        args: &[
            Arg::key("key", 0),
            Arg::new("ttl", ArgType::Integer),
            Arg::new("serialized-value", ArgType::String),
            Arg::token("replace", "REPLACE").since("3.0.0").optional(),
            Arg::token("absttl", "ABSTTL").since("5.0.0").optional(),
            Arg::new("seconds", ArgType::Integer)
                .with_token("IDLETIME")
                .since("5.0.0")
                .optional(),
            Arg::new("frequency", ArgType::Integer)
                .with_token("FREQ")
                .since("5.0.0")
                .optional(),
        ],
        ..CommandSpec::DEFAULT
    },
    CommandSpec {
        name: "restore-asking",
        arity: -4,
        flags: flag::WRITE | flag::DENYOOM | flag::ASKING,
        acl: acl::KEYSPACE | acl::DANGEROUS,
        group: Group::Server,
        keys: &[KeySpec::one(1, kflag::OW | kflag::UPDATE)],
        run: Some(restore),
        summary: "An internal command for migrating keys in a cluster.",
        since: "3.0.0",
        complexity: "O(1) to create the new key and additional O(N*M) to reconstruct the serialized value, where N is the number of Redis objects composing the value and M their average size. For small string values the time complexity is thus O(1)+O(1*M) where M is small, so simply O(1). However for sorted set values the complexity is O(N*M*log(N)) because inserting values into sorted sets is O(log(N)).",
        history: &[
            ("3.0.0", "Added the `REPLACE` modifier."),
            ("5.0.0", "Added the `ABSTTL` modifier."),
            ("5.0.0", "Added the `IDLETIME` and `FREQ` options."),
        ],
        syscmd: true,
        ..CommandSpec::DEFAULT
    },
];

/// DUMP key
fn dump(sh: &mut Shard, c: &mut Call) -> Result<()> {
    let Some(item) = sh.dbs[c.db].get_read(c.argv[1], c.now_ms) else {
        sh.stats.keyspace_misses += 1;
        c.out.null();
        return Ok(());
    };
    let payload = rdb::dump(&item.value);
    sh.stats.keyspace_hits += 1;
    c.out.bulk(&payload);
    Ok(())
}

/// RESTORE key ttl serialized-value [REPLACE] [ABSTTL] [IDLETIME seconds] [FREQ frequency]
///
/// Checks in Redis's order: options, an existing key (without REPLACE), the TTL, the payload's
/// footer, then its contents. A deadline already past replies OK and leaves no key (deleting
/// the old one under REPLACE).
fn restore(sh: &mut Shard, c: &mut Call) -> Result<()> {
    let (mut replace, mut absttl) = (false, false);
    let (mut idle, mut freq): (Option<i64>, Option<i64>) = (None, None);
    let mut j = 4;
    while let Some(&word) = c.argv.get(j) {
        let value = c.argv.get(j + 1).copied();
        if eq_ic(word, "replace") {
            replace = true;
        } else if eq_ic(word, "absttl") {
            absttl = true;
        } else if let (true, Some(v), None) = (eq_ic(word, "idletime"), value, freq) {
            let n = parse_i64(v).ok_or(Error::NotInteger)?;
            if n < 0 {
                return Err(Error::err("Invalid IDLETIME value, must be >= 0"));
            }
            idle = Some(n);
            j += 1;
        } else if let (true, Some(v), None) = (eq_ic(word, "freq"), value, idle) {
            let n = parse_i64(v).ok_or(Error::NotInteger)?;
            if !(0..=255).contains(&n) {
                return Err(Error::err("Invalid FREQ value, must be >= 0 and <= 255"));
            }
            freq = Some(n);
            j += 1;
        } else {
            return Err(Error::Syntax);
        }
        j += 1;
    }
    let key = c.argv[1];
    if !replace && sh.dbs[c.db].contains(key, c.now_ms) {
        return Err(Error::Other(
            "BUSYKEY Target key name already exists.".into(),
        ));
    }
    let ttl = parse_i64(c.argv[2]).ok_or(Error::NotInteger)?;
    if ttl < 0 {
        return Err(Error::err("Invalid TTL value, must be >= 0"));
    }
    let payload = c.argv[3];
    rdb::verify_payload(payload)
        .map_err(|_| Error::err("DUMP payload version or checksum are wrong"))?;
    // Redis reads the object from the whole payload, footer included.
    let value = rdb::decode(payload, &sh.config).map_err(|_| Error::err("Bad data format"))?;
    let db = &mut sh.dbs[c.db];
    let deleted = replace && db.contains(key, c.now_ms);
    // Redis adds the clock to a relative TTL in signed arithmetic; an overflow wraps negative
    // and so reads as already expired.
    let now = i64::try_from(c.now_ms).unwrap_or(i64::MAX);
    let when = if ttl != 0 && !absttl {
        ttl.wrapping_add(now)
    } else {
        ttl
    };
    if when != 0 && when <= now {
        if deleted {
            db.remove(key);
            sh.stats.dirty += 1;
            sh.notify(class::GENERIC, "del", c.db, key);
            sh.rewrite(c.db, &[b"DEL", key]);
        }
        c.out.ok();
        return Ok(());
    }
    let expire = (when != 0).then_some(when.unsigned_abs());
    // The old value goes first, so the key is created anew (Redis's dbAdd).
    db.remove(key);
    db.insert(key, Entry::with_expiry(value, expire));
    if idle.is_some() || freq.is_some() {
        db.set_restored_clock(key, idle, freq);
    }
    sh.stats.dirty += 1;
    sh.notify(class::GENERIC, "restore", c.db, key);
    if ttl != 0 && !absttl && sh.propagating() {
        // Logged with the deadline it got, as Redis does: the same arguments plus ABSTTL.
        let mut at = itoa::Buffer::new();
        let mut argv = c.argv.to_vec();
        argv[2] = at.format(when).as_bytes();
        argv.push(b"ABSTTL");
        sh.rewrite(c.db, &argv);
    }
    c.out.ok();
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::shard::testing::TestShard;

    #[test]
    fn dump_and_restore() {
        let mut t = TestShard::new();
        assert_eq!(t.run("dump nokey"), "$-1\r\n");
        t.run("set k hello");
        let payload = t.run_bytes(&[b"dump", b"k"]);
        let body = payload
            .strip_prefix(b"$17\r\n")
            .and_then(|p| p.strip_suffix(b"\r\n"))
            .unwrap()
            .to_vec();
        assert_eq!(
            t.run_bytes(&[b"restore", b"k", b"0", &body]),
            b"-BUSYKEY Target key name already exists.\r\n"
        );
        assert_eq!(t.run_bytes(&[b"restore", b"k2", b"0", &body]), b"+OK\r\n");
        assert_eq!(t.run("get k2"), "$5\r\nhello\r\n");
        assert_eq!(
            t.run_bytes(&[b"restore", b"k2", b"-1", &body, b"replace"]),
            b"-ERR Invalid TTL value, must be >= 0\r\n"
        );
        assert_eq!(
            t.run_bytes(&[b"restore", b"k2", b"0", &body, b"replace", b"freq", b"256"]),
            b"-ERR Invalid FREQ value, must be >= 0 and <= 255\r\n"
        );
        assert_eq!(
            t.run_bytes(&[
                b"restore",
                b"k2",
                b"0",
                &body,
                b"replace",
                b"idletime",
                b"-1"
            ]),
            b"-ERR Invalid IDLETIME value, must be >= 0\r\n"
        );
        assert_eq!(
            t.run_bytes(&[
                b"restore",
                b"k2",
                b"0",
                &body,
                b"replace",
                b"idletime",
                b"1",
                b"freq",
                b"1"
            ]),
            b"-ERR syntax error\r\n"
        );
        assert_eq!(
            t.run_bytes(&[b"restore", b"k2", b"0", &body, b"bogus"]),
            b"-ERR syntax error\r\n"
        );
        let mut bad = body.clone();
        bad[1] ^= 1;
        assert_eq!(
            t.run_bytes(&[b"restore", b"k3", b"0", &bad]),
            b"-ERR DUMP payload version or checksum are wrong\r\n"
        );
        // A past absolute deadline: OK, and the replaced key is gone.
        assert_eq!(
            t.run_bytes(&[b"restore", b"k2", b"1", &body, b"replace", b"absttl"]),
            b"+OK\r\n"
        );
        assert_eq!(t.run("exists k2"), ":0\r\n");
        assert_eq!(
            t.run_bytes(&[b"restore", b"k2", b"100000", &body]),
            b"+OK\r\n"
        );
        assert_eq!(t.run("ttl k2"), ":100\r\n");
    }
}
