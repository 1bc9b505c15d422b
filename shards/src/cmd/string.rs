//! String commands (Redis's `t_string.c`).

use super::spec::{acl, flag, kflag, Arg, ArgType, CommandSpec, Group, KeySpec};
use super::Call;
use crate::keyspace::Entry;
use crate::types::{Str, Value};
use crate::util::eq_ic;
use crate::{Error, Result, Shard};

const STRING: CommandSpec = CommandSpec { group: Group::String, acl: acl::STRING, ..CommandSpec::DEFAULT };

pub const COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        name: "get",
        arity: 2,
        flags: flag::READONLY | flag::FAST,
        keys: &[KeySpec::one(1, kflag::RO | kflag::ACCESS)],
        run: Some(get),
        summary: "Returns the string value of a key.",
        args: &[Arg::key("key", 0)],
        ..STRING
    },
    CommandSpec {
        name: "set",
        arity: -3,
        flags: flag::WRITE | flag::DENYOOM,
        keys: &[KeySpec {
            flags: kflag::RW | kflag::ACCESS | kflag::UPDATE | kflag::VARIABLE_FLAGS,
            ..KeySpec::one(1, 0)
        }],
        run: Some(set),
        summary: "Sets the string value of a key, optionally only if it exists or not, with an expiry, returning the old value.",
        history: &[
            ("2.6.12", "Added the `EX`, `PX`, `NX` and `XX` options."),
            ("6.0.0", "Added the `KEEPTTL` option."),
            ("6.2.0", "Added the `GET`, `EXAT` and `PXAT` option."),
            ("7.0.0", "Allowed the `NX` and `GET` options to be used together."),
        ],
        args: &[
            Arg::key("key", 0),
            Arg::new("value", ArgType::String),
            Arg::oneof("condition", &[Arg::token("nx", "NX"), Arg::token("xx", "XX")]).since("2.6.12").optional(),
            Arg::token("get", "GET").since("6.2.0").optional(),
            Arg::oneof(
                "expiration",
                &[
                    Arg::new("seconds", ArgType::Integer).with_token("EX").since("2.6.12"),
                    Arg::new("milliseconds", ArgType::Integer).with_token("PX").since("2.6.12"),
                    Arg::new("unix-time-seconds", ArgType::UnixTime).with_token("EXAT").since("6.2.0"),
                    Arg::new("unix-time-milliseconds", ArgType::UnixTime).with_token("PXAT").since("6.2.0"),
                    Arg::token("keepttl", "KEEPTTL").since("6.0.0"),
                ],
            )
            .optional(),
        ],
        ..STRING
    },
];

/// The string under `key`, or `WRONGTYPE` if the key holds another type.
pub fn get_str<'s>(sh: &'s mut Shard, db: usize, key: &[u8], now_ms: u64) -> Result<Option<&'s Str>> {
    match sh.dbs[db].get(key, now_ms) {
        None => Ok(None),
        Some(Entry { value: Value::Str(s), .. }) => Ok(Some(s)),
    }
}

fn get(sh: &mut Shard, c: &mut Call) -> Result<()> {
    let found = get_str(sh, c.db, c.argv[1], c.now_ms)?;
    match found {
        Some(s) => {
            let s = s.as_bytes();
            c.out.bulk(&s);
            sh.stats.keyspace_hits += 1;
        }
        None => {
            c.out.null();
            sh.stats.keyspace_misses += 1;
        }
    }
    Ok(())
}

/// SET's options, parsed.
#[derive(Default)]
struct SetOpts {
    nx: bool,
    xx: bool,
    get: bool,
    keepttl: bool,
    expire_at_ms: Option<u64>,
}

/// Parses an expiry given relative (`EX`/`PX`) or absolute (`EXAT`/`PXAT`) into a deadline,
/// with Redis's error for non-positive or overflowing values.
pub fn expire_deadline(arg: &[u8], unit_ms: i64, absolute: bool, now_ms: u64, cmd: &str) -> Result<u64> {
    let n = crate::util::parse_i64(arg).ok_or(Error::NotInteger)?;
    let invalid = || Error::err(format!("invalid expire time in '{cmd}' command"));
    if n <= 0 {
        return Err(invalid());
    }
    let ms = n.checked_mul(unit_ms).ok_or_else(invalid)?;
    if absolute {
        Ok(ms as u64)
    } else {
        let at = ms.checked_add(now_ms as i64).ok_or_else(invalid)?;
        Ok(at as u64)
    }
}

fn parse_set(c: &Call) -> Result<SetOpts> {
    let mut o = SetOpts::default();
    let mut a = c.args(3);
    let mut have_expire = false;
    while let Some(word) = a.next() {
        if eq_ic(word, "nx") && !o.xx {
            o.nx = true;
        } else if eq_ic(word, "xx") && !o.nx {
            o.xx = true;
        } else if eq_ic(word, "get") {
            o.get = true;
        } else if eq_ic(word, "keepttl") && !have_expire {
            o.keepttl = true;
            have_expire = true;
        } else if !have_expire
            && (eq_ic(word, "ex") || eq_ic(word, "px") || eq_ic(word, "exat") || eq_ic(word, "pxat"))
        {
            let value = a.next().ok_or(Error::Syntax)?;
            let unit = if eq_ic(word, "ex") || eq_ic(word, "exat") { 1000 } else { 1 };
            let absolute = eq_ic(word, "exat") || eq_ic(word, "pxat");
            o.expire_at_ms = Some(expire_deadline(value, unit, absolute, c.now_ms, "set")?);
            have_expire = true;
        } else {
            return Err(Error::Syntax);
        }
    }
    Ok(o)
}

fn set(sh: &mut Shard, c: &mut Call) -> Result<()> {
    let o = parse_set(c)?;
    let key = c.argv[1];
    let db = &mut sh.dbs[c.db];
    let old = db.get(key, c.now_ms);
    let exists = old.is_some();
    if o.get {
        match old {
            Some(Entry { value: Value::Str(s), .. }) => {
                let s = s.as_bytes().into_owned();
                if !((o.nx && exists) || (o.xx && !exists)) {
                    store(sh, c, &o);
                }
                c.out.bulk(&s);
            }
            None => {
                if !o.xx {
                    store(sh, c, &o);
                }
                c.out.null();
            }
        }
        return Ok(());
    }
    if (o.nx && exists) || (o.xx && !exists) {
        c.out.null();
        return Ok(());
    }
    store(sh, c, &o);
    c.out.ok();
    Ok(())
}

fn store(sh: &mut Shard, c: &Call, o: &SetOpts) {
    let key = c.argv[1];
    let value = Value::Str(Str::from_bytes(c.argv[2]));
    let db = &mut sh.dbs[c.db];
    if o.keepttl {
        db.set_value_keep_ttl(key, value);
    } else {
        db.insert(key, Entry { value, expire_at_ms: o.expire_at_ms });
    }
    sh.stats.dirty += 1;
}

#[cfg(test)]
mod tests {
    use crate::shard::testing::TestShard;

    #[test]
    fn get_set() {
        let mut t = TestShard::new();
        assert_eq!(t.run("GET k"), "$-1\r\n");
        assert_eq!(t.run("SET k v"), "+OK\r\n");
        assert_eq!(t.run("GET k"), "$1\r\nv\r\n");
        assert_eq!(t.run("SET k w NX"), "$-1\r\n");
        assert_eq!(t.run("SET k w XX GET"), "$1\r\nv\r\n");
        assert_eq!(t.run("SET k w NX XX"), "-ERR syntax error\r\n");
        assert_eq!(t.run("SET k w EX 0"), "-ERR invalid expire time in 'set' command\r\n");
        assert_eq!(t.run("SET k w EX x"), "-ERR value is not an integer or out of range\r\n");
        assert_eq!(t.run("SET k w PX 100"), "+OK\r\n");
        t.now_ms += 100;
        assert_eq!(t.run("GET k"), "$-1\r\n");
    }
}
