//! The differential determinism test of the propagation log: every write command of the
//! registry runs in scripted cases on a shard that logs its effects; the log, replayed on a
//! fresh shard with another seed (and, replay being time-free, at any later time), must rebuild
//! exactly the same data: every database, key, value and absolute deadline.

use crate::aof;
use crate::cmd::{flag, lookup, registry};
use crate::resp::Proto;
use crate::types::stream::StreamId;
use crate::types::Value;
use crate::Shard;
use std::collections::{BTreeMap, BTreeSet};

/// The clock the scripts start at (Unix ms).
const T0_MS: u64 = 1_700_000_000_000;

/// Write commands no case can run on one shard (keep it short): MIGRATE runs in the server
/// (its local effect is a DEL on each shard).
const NOT_APPLICABLE: &[&str] = &["migrate"];

/// A scripted case. Lines are space-separated words, except:
/// - `@+<ms>`: move the clock; `@active`: run the active expiry cycle; `@db <n>`: select;
/// - a leading `!` expects an error reply, a leading `~` expects the command to block;
/// - the word `$dump:<key>` is replaced by the DUMP payload of `<key>`, `$fdump` by FUNCTION
///   DUMP's payload; `\s` and `\n` in a word stand for a space and a newline.
struct Case {
    name: &'static str,
    script: &'static [&'static str],
}

/// FUNCTION DUMP's payload.
fn function_dump(sh: &mut Shard) -> Vec<u8> {
    let argv: [&[u8]; 2] = [b"FUNCTION", b"DUMP"];
    let mut out = Vec::new();
    sh.execute_reply(lookup(&argv).unwrap(), &argv, 0, 0, Proto::Resp2, &mut out);
    let start = out.iter().position(|&b| b == b'\n').unwrap() + 1;
    out[start..out.len() - 2].to_vec()
}

const CASES: &[Case] = &[
    Case {
        // Scripts are logged as the effects of their commands (several in one MULTI block),
        // never as EVAL; FUNCTION commands as themselves, so the libraries come back too.
        name: "scripts",
        script: &[
            "EVAL redis.call('set',KEYS[1],ARGV[1]);redis.call('expire',KEYS[1],100);return(redis.call('incr','cnt')) 1 sk v",
            "!EVAL return(redis.call('lpush',KEYS[1],'x')) 1 sk",
            "EVAL redis.call('rpush',KEYS[1],'a','b','c');return(redis.call('lpop',KEYS[1])) 1 sl",
            "SCRIPT LOAD return(redis.call('sadd',KEYS[1],ARGV[1]))",
            "EVALSHA 3fb33545b1eb4507611d4b0690ef5ef329b15649 1 ss m",
            "EVAL_RO return(redis.call('get',KEYS[1])) 1 sk",
            "FUNCTION LOAD #!lua\\sname=plib\\nredis.register_function('pf',function(k,a)return(redis.call('hset',k[1],'f',a[1]))end)",
            "FCALL pf 1 ph val",
            "FUNCTION LOAD REPLACE #!lua\\sname=plib\\nredis.register_function{function_name='pr',callback=function(k)return(redis.call('hget',k[1],'f'))end,flags={'no-writes'}}",
            "FCALL_RO pr 1 ph",
            "FUNCTION RESTORE $fdump REPLACE",
            "FUNCTION DELETE plib",
            "FUNCTION RESTORE $fdump",
            "FUNCTION FLUSH",
        ],
    },
    Case {
        // FT.* definitions are logged as themselves; FT.DROPINDEX DD and FT.DROP delete the
        // same documents on replay (the index holds the same keys then).
        name: "search",
        script: &[
            "HSET d:1 t a",
            "HSET d:2 t b",
            "HSET e:1 t a",
            "FT.CREATE i PREFIX 1 d: SCHEMA t TAG",
            "!FT.CREATE i SCHEMA t TAG",
            "FT.ALTER i SCHEMA ADD n NUMERIC",
            "FT.CREATE j PREFIX 1 e: SCHEMA t TAG",
            "FT.DROPINDEX i DD",
            "FT.DROP j KEEPDOCS",
            "FT.CREATE k PREFIX 1 e: SCHEMA t TAG",
            "FT.DROP k",
        ],
    },
    Case {
        name: "strings",
        script: &[
            "SET s1 v",
            "SET s2 v EX 100000",
            "SET s3 v PX 100000000 NX",
            "SET s4 v EXAT 1800000000",
            "SET s5 v PXAT 1800000000000 GET",
            "SET s2 w KEEPTTL",
            "SET s2 x XX GET",
            "SET s3 y NX",
            "SET s9 v PXAT 1000",
            "SETNX s6 v",
            "SETEX s7 100000 v",
            "PSETEX s8 100000000 v",
            "GETSET s1 new",
            "GETDEL s6",
            "GETDEL nosuch",
            "GETEX s1 EX 5000",
            "GETEX s3 PERSIST",
            "GETEX s4 PXAT 1000",
            "GETEX s5 EXAT 1900000000",
            "GETEX s7 PX 123456789",
            "MSET m1 1 m2 2",
            "MSETNX m3 3 m4 4",
            "MSETNX m3 3 m5 5",
            "APPEND s1 tail",
            "INCR n",
            "DECR n",
            "INCRBY n 10",
            "DECRBY n 3",
            "INCRBYFLOAT f 1.1",
            "INCRBYFLOAT f 2.2e1",
            "SET f2 5 EX 100000",
            "INCRBYFLOAT f2 0.5",
            "SETRANGE s1 10 xyz",
            "!INCR s1",
        ],
    },
    Case {
        name: "expiry",
        script: &[
            "SET e1 v",
            "EXPIRE e1 100000",
            "PEXPIRE e1 200000000 GT",
            "EXPIREAT e1 1800000000 LT",
            "PEXPIREAT e1 1800000000001",
            "EXPIRE e1 10 NX",
            "SET e2 v",
            "EXPIRE e2 -1",
            "SET e3 v",
            "PEXPIREAT e3 1000",
            "SET e4 v",
            "EXPIREAT e4 1 XX",
            "EXPIREAT e4 100",
            "SET e5 v EX 1000",
            "PERSIST e5",
            "SET e6 v PX 1000",
            "@+500",
            "PEXPIRE e6 100000000",
        ],
    },
    Case {
        name: "lazy and active expiry",
        script: &[
            "SET le1 v PX 1000",
            "SET le2 v PX 1000",
            "RPUSH le3 a b",
            "PEXPIRE le3 1000",
            "SET le4 v PX 1000",
            "SET le5 v PX 1000",
            "SET le6 v PX 1000",
            "SET keep v PX 100000000",
            "SET ae1 v PX 100",
            "SET ae2 v PX 100",
            "SET ae3 v PX 100",
            "SET ae4 v PX 100",
            "@+2000",
            "GET le1",
            "APPEND le2 x",
            "RPUSH le3 c",
            "DEL le4",
            "EXISTS le5",
            "RANDOMKEY",
            "SET le6 w NX",
            "@active",
            "@active",
        ],
    },
    Case {
        name: "keys",
        script: &[
            "SET a 1 EX 100000",
            "SET b 2",
            "RPUSH l x y",
            "DEL b nosuch",
            "UNLINK l",
            "SET c 3",
            "RENAME a a2",
            "RENAMENX c a2",
            "RENAMENX c c2",
            "COPY a2 a3",
            "COPY a2 c2 DB 3 REPLACE",
            "COPY a2 c2 REPLACE",
            "MOVE a3 2",
            "MOVE c2 3",
            "@db 3",
            "SET z 1",
            "@db 0",
            "!RENAME nosuch x",
        ],
    },
    Case {
        name: "lists",
        script: &[
            "LPUSH l a b c",
            "RPUSH l d e f g h",
            "LPUSHX l z",
            "RPUSHX nosuch z",
            "LPOP l",
            "RPOP l 2",
            "LSET l 0 first",
            "LINSERT l BEFORE d dd",
            "LREM l 0 dd",
            "LTRIM l 0 3",
            "LMOVE l l2 LEFT RIGHT",
            "RPOPLPUSH l l2",
            "RPUSH m1 1 2 3",
            "LMPOP 3 nosuch m1 l LEFT COUNT 2",
            "LMPOP 2 m1 l RIGHT COUNT 5",
            "BLPOP nosuch l2 0",
            "BRPOP l2 l 5",
            "RPUSH src 1 2 3",
            "BLMOVE src dst RIGHT LEFT 0",
            "BRPOPLPUSH src dst 0",
            "BLMPOP 0 2 src dst LEFT COUNT 10",
            "~BLPOP q 0",
            "RPUSH q a b",
            "BLPOP q 0",
            "~BLMOVE q2 dst LEFT LEFT 0",
            "RPUSH q2 x",
            "BLMOVE q2 dst LEFT LEFT 0",
        ],
    },
    Case {
        name: "sets",
        script: &[
            "SADD s a b c d e f g h i j k l m n o p q r s t u v w x y z",
            "SADD s aa bb cc dd ee ff gg hh ii jj kk ll mm nn oo pp qq rr ss tt uu vv ww xx",
            "SREM s a nosuch",
            "SPOP s",
            "SPOP s 3",
            "SPOP s 40",
            "SPOP s 0",
            "SADD i 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20",
            "SPOP i 3",
            "SPOP i 15",
            "SPOP i",
            "SADD t x y",
            "SPOP t 5",
            "SADD u 1",
            "SPOP u",
            "SADD s1 a b c",
            "SADD s2 b c d",
            "SMOVE s1 s2 a",
            "SINTERSTORE d1 s1 s2",
            "SUNIONSTORE d2 s1 s2 i",
            "SDIFFSTORE d3 s2 s1",
        ],
    },
    Case {
        name: "hashes",
        script: &[
            "HSET h a 1 b 2",
            "HSETNX h c 3",
            "HSETNX h a 9",
            "HMSET h d 4 e 5",
            "HDEL h e nosuch",
            "HINCRBY h a 10",
            "HINCRBYFLOAT h f 1.5",
            "HINCRBYFLOAT h f 0.1",
            "HINCRBYFLOAT h b 2.5e2",
        ],
    },
    Case {
        name: "sorted sets",
        script: &[
            "ZADD z 1 a 2 b 3 c 4 d 5 e 6 f 7 g",
            "ZADD z INCR 0.5 a",
            "ZADD z NX 9 h",
            "ZINCRBY z 1.25 b",
            "ZREM z g",
            "ZREMRANGEBYRANK z 0 0",
            "ZADD z2 1 a 2 b 3 c 4 d",
            "ZREMRANGEBYSCORE z2 1 2",
            "ZADD lex 0 a 0 b 0 c 0 d",
            "ZREMRANGEBYLEX lex [a [b",
            "ZRANGESTORE zr z 0 2",
            "ZPOPMIN z",
            "ZPOPMAX z 2",
            "BZPOPMIN nosuch z 0",
            "BZPOPMAX z 0",
            "ZMPOP 2 nosuch z2 MIN COUNT 5",
            "BZMPOP 0 1 lex MAX",
            "ZADD u1 1 a 2 b",
            "ZADD u2 3 b 4 c",
            "ZUNIONSTORE zu 2 u1 u2 WEIGHTS 2 3",
            "ZINTERSTORE zi 2 u1 u2 AGGREGATE MAX",
            "ZDIFFSTORE zd 2 u1 u2",
            "~BZPOPMIN bq 0",
            "ZADD bq 1 x",
            "BZPOPMIN bq 0",
        ],
    },
    Case {
        name: "bitmaps and hyperloglogs",
        script: &[
            "SETBIT b1 7 1",
            "SETBIT b2 100 1",
            "BITOP OR b3 b1 b2",
            "BITFIELD bf SET u8 0 200 INCRBY u8 0 100 OVERFLOW FAIL INCRBY u8 8 1",
            "PFADD h1 a b c",
            "PFADD h2 c d e",
            "PFCOUNT h1",
            "PFMERGE h3 h1 h2",
            "PFCOUNT h3",
            "PFDEBUG TODENSE h1",
        ],
    },
    Case {
        name: "geo and sort",
        script: &[
            "GEOADD g 13.361389 38.115556 Palermo 15.087269 37.502669 Catania",
            "GEOADD g 2.349014 48.864716 Paris",
            "GEORADIUS g 15 37 200 km STORE gr",
            "GEORADIUSBYMEMBER g Palermo 500 km STOREDIST grd",
            "GEOSEARCHSTORE gs g FROMLONLAT 15 37 BYRADIUS 400 km ASC COUNT 1 ANY",
            "SADD set c a b 10 2",
            "SORT set ALPHA STORE sorted",
            "SORT set BY nosort STORE unsorted",
            "RPUSH w 3 1 2",
            "SORT w DESC LIMIT 0 2 STORE wl",
        ],
    },
    Case {
        name: "restore",
        script: &[
            "RPUSH src a b c",
            "RESTORE r1 100000 $dump:src",
            "RESTORE r2 0 $dump:src",
            "RESTORE r3 1800000000000 $dump:src ABSTTL",
            "SET r4 v",
            "RESTORE r4 1000 $dump:src ABSTTL REPLACE",
            "RESTORE r5 5000 $dump:src REPLACE IDLETIME 10",
            "!RESTORE r5 0 $dump:src",
            "RESTORE-ASKING r6 0 $dump:src",
        ],
    },
    Case {
        name: "databases",
        script: &[
            "SET a 1",
            "@db 1",
            "SET b 2 EX 100000",
            "@db 2",
            "SET c 3",
            "SWAPDB 1 2",
            "FLUSHDB",
            "FLUSHDB",
            "@db 5",
            "SET d 4",
            "FLUSHALL",
            "SET e 5",
            "FLUSHALL ASYNC",
            "@db 0",
            "SET f 6",
            "FLUSHDB SYNC",
            "SET g 7",
        ],
    },
    Case {
        // Generated ids, `~` trims (logged as their outcome), deletions, XSETID, and
        // XREADGROUP's deliveries, history reads, NOACK and a blocked read.
        name: "streams",
        script: &[
            "XADD st * f 1",
            "@+5",
            "XADD st * f 2",
            "!XADD st 5-* f 3",
            "XADD st2 5-* f 1",
            "XADD st2 5-* f 2",
            "XADD st2 6 f 3",
            "XADD st2 MAXLEN ~ 1 * f 4",
            "XADD st2 MINID ~ 9999999999999 LIMIT 5 * f 5",
            "XADD st3 NOMKSTREAM * f 1",
            "XADD st2 MAXLEN 2 * f 6",
            "XADD st2 MAXLEN = 1 NOMKSTREAM 99999999999999-* f 7",
            "XTRIM st2 MAXLEN ~ 0",
            "XTRIM st MINID = 0",
            "XTRIM st MAXLEN ~ 1 LIMIT 10",
            "XTRIM st MINID 1800000000000",
            "XDEL st 1",
            "XADD st4 1 f 1",
            "XADD st4 2 f 2",
            "XDEL st4 1 2",
            "XSETID st4 99999999999999-5 ENTRIESADDED 100 MAXDELETEDID 3",
            "XADD st4 * f 6",
            "XADD rg 1 f 1",
            "XADD rg 2 f 2",
            "XADD rg 3 f 3",
            "XADD rg 4 f 4",
            "XGROUP CREATE rg g 0",
            "XREADGROUP GROUP g alice COUNT 1 STREAMS rg >",
            "@+10",
            "XREADGROUP GROUP g alice STREAMS rg 0",
            "XREADGROUP GROUP g bob STREAMS rg 0",
            "XREADGROUP GROUP g bob COUNT 1 STREAMS rg >",
            "XDEL rg 2",
            "XREADGROUP GROUP g bob STREAMS rg 0",
            "XREADGROUP GROUP g carol NOACK COUNT 1 STREAMS rg >",
            "XREADGROUP GROUP g alice STREAMS rg >",
            "~XREADGROUP GROUP g dave BLOCK 0 STREAMS rg >",
            "~XREAD BLOCK 0 STREAMS rg $",
            "XADD rg 5 f 5",
            "XREADGROUP GROUP g dave NOACK BLOCK 0 STREAMS rg >",
        ],
    },
    Case {
        // Consumer groups on empty streams (entries come with XADD's cases): the
        // subcommands, and XCLAIM's LASTID logged as XGROUP SETID.
        name: "stream groups",
        script: &[
            "XGROUP CREATE sg g $ MKSTREAM",
            "XGROUP CREATE sg g2 0 ENTRIESREAD 3",
            "!XGROUP CREATE sg g 0",
            "XGROUP CREATECONSUMER sg g alice",
            "XGROUP CREATECONSUMER sg g bob",
            "XGROUP DELCONSUMER sg g bob",
            "XGROUP SETID sg g2 7-1 ENTRIESREAD 9",
            "XGROUP DESTROY sg g2",
            "XACK sg g 1-0",
            "XCLAIM sg g alice 0 1-0 FORCE LASTID 5-5",
            "XCLAIM sg g carol 0 1-0 LASTID 4",
            "XAUTOCLAIM sg g alice 0 0",
        ],
    },
    Case {
        // Claims of entries, some deleted since: each is logged as an absolute XCLAIM.
        name: "stream claims",
        script: &[
            "XADD sc 1-0 f 1",
            "XADD sc 2-0 f 2",
            "XADD sc 3-0 f 3",
            "XADD sc 4-0 f 4",
            "XGROUP CREATE sc g 0",
            "XCLAIM sc g alice 0 1-0 2 3 4 FORCE TIME 1000",
            "@+100",
            "XCLAIM sc g bob 50 1-0 2-0 RETRYCOUNT 5",
            "XCLAIM sc g bob 0 3 IDLE 10 JUSTID LASTID 3-0",
            "XDEL sc 2-0",
            "XAUTOCLAIM sc g carol 10 0 COUNT 2",
            "XACK sc g 1-0",
            "XDEL sc 4-0",
            "XCLAIM sc g dave 0 4-0 3-0",
            "XAUTOCLAIM sc g erin 0 0 JUSTID",
        ],
    },
];

/// A key's value in a form that ignores encodings and member order where the type has none.
#[derive(Debug, PartialEq)]
enum Canon {
    Str(Vec<u8>),
    List(Vec<Vec<u8>>),
    Set(BTreeSet<Vec<u8>>),
    Hash(BTreeMap<Vec<u8>, Vec<u8>>),
    ZSet(Vec<(Vec<u8>, u64)>),
    /// Entries, then the bookkeeping and each group's last id, PEL ids with owners and counts,
    /// and consumers (times left out: a replay runs at its own time).
    Stream(Vec<(StreamId, Vec<Vec<u8>>)>, String),
}

fn canon(v: &Value) -> Canon {
    match v {
        Value::Str(s) => Canon::Str(s.as_bytes().into_owned()),
        Value::List(l) => Canon::List(l.iter().map(<[u8]>::to_vec).collect()),
        Value::Set(s) => Canon::Set(s.iter().map(|m| m.to_bytes().as_slice().to_vec()).collect()),
        Value::Hash(h) => Canon::Hash(h.iter().map(|(f, v)| (f.to_vec(), v.to_vec())).collect()),
        Value::ZSet(z) => Canon::ZSet(z.iter().map(|(m, s)| (m.to_vec(), s.to_bits())).collect()),
        Value::Stream(st) => {
            let mut entries = Vec::new();
            st.scan(StreamId::MIN, StreamId::MAX, false, &mut |id, f| {
                entries.push((id, f.iter().map(|x| x.to_vec()).collect()));
                true
            });
            let mut meta = format!(
                "{} {} {} {}",
                st.last_id, st.first_id, st.max_deleted_id, st.entries_added
            );
            for (name, g) in &st.groups {
                let pel: Vec<_> = g
                    .pel
                    .iter()
                    .map(|(id, n)| (id.to_string(), n.consumer.clone(), n.delivery_count))
                    .collect();
                let consumers: Vec<_> = g.consumers.keys().collect();
                meta += &format!(
                    " {name:?} {} {:?} {pel:?} {consumers:?}",
                    g.last_id, g.entries_read
                );
            }
            Canon::Stream(entries, meta)
        }
    }
}

type Snapshot = BTreeMap<(usize, Vec<u8>), (Canon, Option<u64>)>;

/// Every key the shard holds, expired or not (a key is gone only once deleted).
fn snapshot(sh: &Shard) -> Snapshot {
    let mut out = Snapshot::new();
    for (i, db) in sh.dbs.iter().enumerate() {
        db.for_each_key(0, |k, item, at| {
            out.insert((i, k.to_vec()), (canon(&item.value), at));
        });
    }
    out
}

/// Runs one script line on `sh` (logging), at `*now_ms` in `*db`.
fn run_line(sh: &mut Shard, line: &str, now_ms: &mut u64, db: &mut usize, case: &str) {
    if let Some(ms) = line.strip_prefix("@+") {
        *now_ms += ms.parse::<u64>().unwrap();
        return;
    }
    if line == "@active" {
        sh.active_expire(*now_ms);
        return;
    }
    if let Some(n) = line.strip_prefix("@db ") {
        *db = n.parse().unwrap();
        return;
    }
    let (expect_error, expect_block, line) = match line.as_bytes()[0] {
        b'!' => (true, false, &line[1..]),
        b'~' => (false, true, &line[1..]),
        _ => (false, false, line),
    };
    let mut dumps = Vec::new();
    for w in line.split(' ') {
        if let Some(k) = w.strip_prefix("$dump:") {
            dumps.push(dump(sh, k, *now_ms, *db));
        }
    }
    let mut dumps = dumps.iter();
    let words: Vec<Vec<u8>> = line
        .split(' ')
        .map(|w| match w {
            _ if w.starts_with("$dump:") => dumps.next().unwrap().clone(),
            "$fdump" => function_dump(sh),
            _ => w.replace("\\s", " ").replace("\\n", "\n").into_bytes(),
        })
        .collect();
    let argv: Vec<&[u8]> = words.iter().map(|w| w.as_slice()).collect();
    let l = lookup(&argv).unwrap_or_else(|e| panic!("{case}: {line}: {}", e.text()));
    let mut out = Vec::new();
    let blocked = sh.execute_reply(l, &argv, *db, *now_ms * 1000, Proto::Resp2, &mut out);
    assert_eq!(blocked.is_some(), expect_block, "{case}: {line}: blocking");
    let is_error = out.first() == Some(&b'-');
    assert_eq!(
        is_error,
        expect_error,
        "{case}: {line}: {}",
        String::from_utf8_lossy(&out)
    );
}

/// The DUMP payload of `key` (run without logging: DUMP is a read).
fn dump(sh: &mut Shard, key: &str, now_ms: u64, db: usize) -> Vec<u8> {
    let argv: [&[u8]; 2] = [b"DUMP", key.as_bytes()];
    let mut out = Vec::new();
    sh.execute_reply(
        lookup(&argv).unwrap(),
        &argv,
        db,
        now_ms * 1000,
        Proto::Resp2,
        &mut out,
    );
    // A bulk reply: `$<len>\r\n<payload>\r\n`, or a null one (nothing) for a missing key.
    if out.starts_with(b"$-1") {
        return Vec::new();
    }
    let start = out.iter().position(|&b| b == b'\n').unwrap() + 1;
    out[start..out.len() - 2].to_vec()
}

/// Runs a case on a logging shard and replays its log on a fresh one with another seed;
/// returns the log.
fn check_case(case: &Case) -> Vec<u8> {
    let mut a = Shard::new(0, 1, 11);
    a.prop = Some(Default::default());
    let (mut now_ms, mut db) = (T0_MS, 0);
    for line in case.script {
        run_line(&mut a, line, &mut now_ms, &mut db, case.name);
    }
    let log = a.prop.take().unwrap().buf;
    let mut b = Shard::new(0, 1, 99);
    let r = aof::replay(&mut b, &log, |_| true).unwrap();
    assert!(r.failed.is_empty() && !r.torn, "{}: {r:?}", case.name);
    let (sa, sb) = (snapshot(&a), snapshot(&b));
    if sa != sb {
        panic!(
            "{}: replay differs\nlog:\n{}\noriginal: {sa:?}\nreplayed: {sb:?}",
            case.name,
            String::from_utf8_lossy(&log)
        );
    }
    log
}

/// Every write command of the registry (subcommands included), by full name.
fn write_commands() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let writes = |flags: u32| flags & (flag::WRITE | flag::MAY_REPLICATE) != 0;
    for c in registry::all() {
        if writes(c.flags) {
            names.insert(c.name.to_string());
        }
        for s in c.subcommands {
            if writes(s.flags) {
                names.insert(format!("{}|{}", c.name, s.name));
            }
        }
    }
    names
}

#[test]
fn replayed_log_rebuilds_the_same_data() {
    let mut covered = BTreeSet::new();
    for case in CASES {
        check_case(case);
        for line in case.script {
            let line = line.trim_start_matches(['!', '~']);
            if !line.starts_with('@') {
                let mut words = line.split(' ');
                let name = words.next().unwrap().to_ascii_lowercase();
                // A container's subcommand counts as `name|sub`.
                if let Some(sub) = words.next() {
                    covered.insert(format!("{name}|{}", sub.to_ascii_lowercase()));
                }
                covered.insert(name);
            }
        }
    }
    let missing: Vec<String> = write_commands()
        .into_iter()
        .filter(|n| !covered.contains(n) && !NOT_APPLICABLE.contains(&n.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "write commands without a case: {missing:?}"
    );
}

/// The log holds effects only: no relative time, no blocking or random command.
#[test]
fn log_holds_effects_only() {
    let mut seen = BTreeSet::new();
    for case in CASES {
        let log = check_case(case);
        // A script's effects come as one MULTI block; its commands follow the same rules.
        let commands = aof::Reader::new(&log).flat_map(|e| match e.unwrap() {
            aof::Entry::Command(c) => vec![c],
            aof::Entry::Transaction { commands, .. } => {
                assert_eq!(case.name, "scripts", "a transaction in a plain log");
                commands
            }
        });
        for c in commands {
            let name = String::from_utf8_lossy(c.argv[0]).to_ascii_uppercase();
            for w in &c.argv[1..] {
                let w = String::from_utf8_lossy(w).to_ascii_uppercase();
                assert!(
                    !["EX", "PX", "EXAT"].contains(&w.as_str()) || name != "SET",
                    "{}: {name} with {w}",
                    case.name
                );
            }
            seen.insert(name);
        }
    }
    for banned in [
        "EXPIRE",
        "PEXPIRE",
        "EXPIREAT",
        "SETEX",
        "PSETEX",
        "GETEX",
        "GETDEL",
        "GETSET",
        "SPOP",
        "INCRBYFLOAT",
        "HINCRBYFLOAT",
        "BLPOP",
        "BRPOP",
        "BLMOVE",
        "BRPOPLPUSH",
        "BLMPOP",
        "BZPOPMIN",
        "BZPOPMAX",
        "BZMPOP",
        "LMPOP",
        "ZMPOP",
    ] {
        assert!(!seen.contains(banned), "{banned} logged as is");
    }
    for rewritten in [
        "PEXPIREAT",
        "SREM",
        "HSET",
        "LPOP",
        "RPOP",
        "LMOVE",
        "ZPOPMIN",
        "DEL",
    ] {
        assert!(seen.contains(rewritten), "no {rewritten} in any log");
    }
}

/// Expired keys are logged as DEL before the command that found them, in their database.
#[test]
fn expired_keys_logged_before_the_command() {
    let mut a = Shard::new(0, 1, 1);
    a.prop = Some(Default::default());
    let (mut now, mut db) = (T0_MS, 3);
    for line in [
        "SET k v PX 10",
        "@+20",
        "APPEND k x",
        "SET j v PX 10",
        "@+20",
        "@active",
    ] {
        run_line(&mut a, line, &mut now, &mut db, "order");
    }
    let text = String::from_utf8(a.prop.take().unwrap().buf).unwrap();
    let words: Vec<&str> = text
        .split("\r\n")
        .filter(|w| !w.starts_with(['*', '$']))
        .collect();
    let deadline = (T0_MS + 10).to_string();
    let deadline2 = (T0_MS + 30).to_string();
    assert_eq!(
        words,
        [
            "SELECT", "3", "SET", "k", "v", "PXAT", &deadline, "DEL", "k", "APPEND", "k", "x",
            "SET", "j", "v", "PXAT", &deadline2, "DEL", "j", ""
        ]
    );
}

/// With logging off nothing is recorded, not even expired keys.
#[test]
fn logging_off_records_nothing() {
    let mut a = Shard::new(0, 1, 1);
    let (mut now, mut db) = (T0_MS, 0);
    for line in [
        "SET k v PX 10",
        "@+20",
        "GET k",
        "SPOP s",
        "SET j v PX 10",
        "@+20",
        "@active",
    ] {
        run_line(&mut a, line, &mut now, &mut db, "off");
    }
    assert!(a.prop.is_none());
    assert!(a.dbs.iter().all(|d| d.expired_log.is_none()));
    // Turned on later, the log starts from that point.
    a.prop = Some(Default::default());
    run_line(&mut a, "SET x 1", &mut now, &mut db, "on");
    assert!(a.dbs.iter().all(|d| d.expired_log.is_some()));
    assert_eq!(
        a.prop.unwrap().buf,
        b"*2\r\n$6\r\nSELECT\r\n$1\r\n0\r\n*3\r\n$3\r\nSET\r\n$1\r\nx\r\n$1\r\n1\r\n"
    );
}

/// Command templates for the randomized test: `K` is a random key, `V` a random value, `N` a
/// small number, `D` a random database.
const RANDOM_TEMPLATES: &[&str] = &[
    "SET K V",
    "SET K V PX N",
    "SET K V EX N NX",
    "SET K V KEEPTTL GET",
    "SETEX K N V",
    "GETEX K PX N",
    "GETEX K PERSIST",
    "GETDEL K",
    "APPEND K V",
    "INCRBYFLOAT K 1.5",
    "EXPIRE K N",
    "PEXPIRE K N GT",
    "PEXPIREAT K N",
    "PERSIST K",
    "DEL K K",
    "RENAME K K",
    "COPY K K DB D REPLACE",
    "MOVE K D",
    "GET K",
    "EXISTS K",
    "RANDOMKEY",
    "RPUSH K V V",
    "LPOP K N",
    "BLMPOP 0 2 K K RIGHT COUNT N",
    "BRPOPLPUSH K K 0",
    "SADD K V V V V",
    "SPOP K",
    "SPOP K N",
    "SMOVE K K V",
    "HSET K V V",
    "HINCRBYFLOAT K V 0.25",
    "ZADD K N V N V",
    "BZMPOP 0 2 K K MAX COUNT N",
    "ZINCRBY K 1.5 V",
    "SWAPDB D D",
    "RESTORE K N $dump:K REPLACE",
];

/// Random scripts over a few keys, with the clock moving and expiry cycles between
/// commands: the replayed log always rebuilds the same data.
#[test]
fn random_scripts_replay_to_the_same_data() {
    let mut rng = crate::rng::Rng::new(2024);
    for round in 0..200 {
        let mut a = Shard::new(0, 1, round);
        a.prop = Some(Default::default());
        let (mut now_ms, mut db) = (T0_MS, 0);
        let mut script = Vec::new();
        for _ in 0..60 {
            let line = match rng.below(10) {
                0 => format!("@+{}", rng.below(3000)),
                1 => "@active".to_string(),
                2 => format!("@db {}", rng.below(3)),
                _ => random_command(&mut rng),
            };
            script.push(line);
        }
        for line in &script {
            run_random_line(&mut a, line, &mut now_ms, &mut db);
        }
        let log = a.prop.take().unwrap().buf;
        let mut b = Shard::new(0, 1, round + 1000);
        let r = aof::replay(&mut b, &log, |_| true).unwrap();
        assert!(r.failed.is_empty() && !r.torn, "round {round}: {r:?}");
        assert_eq!(snapshot(&a), snapshot(&b), "round {round}: {script:?}");
    }
}

fn random_command(rng: &mut crate::rng::Rng) -> String {
    let t = RANDOM_TEMPLATES[rng.below(RANDOM_TEMPLATES.len())];
    t.split(' ')
        .map(|w| match w {
            "K" => format!("k{}", rng.below(4)),
            "V" => ["a", "b", "c", "7", "2.5", "xyz"][rng.below(6)].to_string(),
            "N" => (1 + rng.below(2500)).to_string(),
            "D" => rng.below(3).to_string(),
            "$dump:K" => format!("$dump:k{}", rng.below(4)),
            w => w.to_string(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Like [`run_line`], for random commands: errors are allowed, blocking is allowed, and a
/// RESTORE of a key that is missing is skipped.
fn run_random_line(sh: &mut Shard, line: &str, now_ms: &mut u64, db: &mut usize) {
    if line.starts_with('@') {
        return run_line(sh, line, now_ms, db, "random");
    }
    let mut payload = None;
    if let Some(k) = line.split(' ').find_map(|w| w.strip_prefix("$dump:")) {
        let p = dump(sh, k, *now_ms, *db);
        if p.is_empty() {
            return;
        }
        payload = Some(p);
    }
    let argv: Vec<&[u8]> = line
        .split(' ')
        .map(|w| match w.starts_with("$dump:") {
            true => payload.as_deref().unwrap_or_default(),
            false => w.as_bytes(),
        })
        .collect();
    let l = lookup(&argv).unwrap();
    let mut out = Vec::new();
    sh.execute_reply(l, &argv, *db, *now_ms * 1000, Proto::Resp2, &mut out);
}

/// Keys a server-side export finds expired are logged as DEL at once.
#[test]
fn export_logs_expired_keys() {
    let mut a = Shard::new(0, 1, 1);
    a.prop = Some(Default::default());
    let (mut now, mut db) = (T0_MS, 1);
    for line in ["SET k v PX 10", "@+20"] {
        run_line(&mut a, line, &mut now, &mut db, "export");
    }
    let before = a.prop.as_ref().unwrap().buf.len();
    let entries = a.export(1, &[b"k"], now);
    assert!(entries[0].1.is_none());
    let buf = &a.prop.as_ref().unwrap().buf;
    assert_eq!(&buf[before..], b"*2\r\n$3\r\nDEL\r\n$1\r\nk\r\n");
}

/// A database replaced wholesale while logging (as a load does) still logs its expired keys.
#[test]
fn replaced_database_logs_expired_keys() {
    let mut a = Shard::new(0, 1, 1);
    a.prop = Some(Default::default());
    let (mut now, mut db) = (T0_MS, 2);
    run_line(&mut a, "SET x 1", &mut now, &mut db, "replaced");
    a.dbs[2] = crate::keyspace::Db::default();
    let v = Value::Str(crate::types::Str::from_bytes(b"v"));
    let e = crate::keyspace::Entry::with_expiry(v, Some(T0_MS + 10));
    a.dbs[2].insert(b"k", e);
    run_line(&mut a, "@+20", &mut now, &mut db, "replaced");
    run_line(&mut a, "GET k", &mut now, &mut db, "replaced");
    let buf = a.prop.take().unwrap().buf;
    assert!(buf.ends_with(b"*2\r\n$3\r\nDEL\r\n$1\r\nk\r\n"), "{buf:?}");
}
