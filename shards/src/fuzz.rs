//! The bodies of the fuzz targets (`fuzz/fuzz_targets/*.rs`), as plain functions.
//!
//! Each takes arbitrary bytes and panics only if the engine breaks one of its promises about
//! hostile input: no panic, no unbounded allocation, and (where a result comes back) a result
//! that is consistent (well-formed replies, values that survive DUMP and RESTORE unchanged).
//! libFuzzer calls them under cargo-fuzz on nightly; `shards/tests/fuzz_corpus.rs` calls them
//! on stable with the saved corpora (`fuzz/corpus/<target>/`), the crash inputs found so far
//! (`fuzz/regressions/<target>/`) and seeded mutations of both, so CI needs neither.

use crate::cmd::registry::{self, Lookup};
use crate::cmd::spec::{CommandSpec, Group};
use crate::keyspace::{Db, Entry};
use crate::limits::DATABASES;
use crate::rdb::{self, file::FileReader};
use crate::resp::{parse_command, split_args, ParseLimits, Parsed, Proto};
use crate::shard::ShardConfig;
use crate::types::Value;
use crate::Shard;
use std::sync::OnceLock;

/// A target's body: takes any bytes, panics only on a broken promise.
pub type Target = fn(&[u8]);

/// Every target, by the name of its corpus folder, with its function.
pub const TARGETS: &[(&str, Target)] = &[
    ("resp_parse", resp_parse),
    ("restore_payload", restore_payload),
    ("rdb_load", rdb_load),
    ("command_args", command_args),
];

/// Parses `data` as a stream of requests (RESP multibulk or inline), checking that every
/// argument range stays inside its buffer and that every complete command consumes bytes.
pub fn resp_parse(data: &[u8]) {
    let mut args = Vec::new();
    let mut scratch = Vec::new();
    let limits = ParseLimits {
        bulk_len_max: 1 << 20,
    };
    let mut pos = 0;
    while pos < data.len() {
        match parse_command(&data[pos..], &mut args, &mut scratch, limits) {
            Ok(Parsed::Command { consumed }) => {
                assert!(args.iter().all(|r| r.end <= data.len() - pos));
                assert!(consumed > 0);
                pos += consumed;
            }
            Ok(Parsed::Inline { consumed }) => {
                assert!(args.iter().all(|r| r.end <= scratch.len()));
                assert!(consumed > 0);
                pos += consumed;
            }
            Ok(Parsed::Empty { consumed }) => {
                assert!(consumed > 0);
                pos += consumed;
            }
            Ok(Parsed::Incomplete) | Err(_) => break,
        }
    }
}

/// Decodes `data` as RESTORE does (footer check, then the object), and again with a valid
/// footer appended so that the decoder itself is reached. A value that loads must DUMP to a
/// payload that loads back to the same value, under Redis's default encoding thresholds and
/// under tiny ones (which force conversions while loading).
pub fn restore_payload(data: &[u8]) {
    if rdb::verify_payload(data).is_ok() {
        decodes_consistently(data, &ShardConfig::default());
    }
    let mut payload = data.to_vec();
    payload.extend_from_slice(&rdb::RDB_VERSION.to_le_bytes());
    let crc = rdb::crc64(0, &payload);
    payload.extend_from_slice(&crc.to_le_bytes());
    assert!(rdb::verify_payload(&payload).is_ok());
    decodes_consistently(&payload, &ShardConfig::default());
    decodes_consistently(&payload, &tiny_config());
}

/// Encoding thresholds small enough that a few elements already take the big encodings.
fn tiny_config() -> ShardConfig {
    ShardConfig {
        list_max_listpack_size: 2,
        hash_max_listpack_entries: 2,
        hash_max_listpack_value: 4,
        set_max_intset_entries: 2,
        zset_max_listpack_entries: 2,
        zset_max_listpack_value: 4,
        ..ShardConfig::default()
    }
}

/// If `payload` decodes, its value survives DUMP and RESTORE unchanged.
fn decodes_consistently(payload: &[u8], cfg: &ShardConfig) {
    if let Ok(value) = rdb::decode(payload, cfg) {
        round_trips(&value, cfg);
    }
}

fn round_trips(value: &Value, cfg: &ShardConfig) {
    let again = rdb::dump(value);
    let body = rdb::verify_payload(&again).expect("DUMP writes a valid footer");
    let back = rdb::decode(body, cfg).expect("a DUMPed value loads back");
    assert_eq!(&back, value, "value changed across DUMP and RESTORE");
}

/// Reads `data` as a whole RDB file the way the server loads one: every key decoded and put
/// in its database (`next_entry` steps over a value before anything decodes it). Every
/// decoded value must survive DUMP and RESTORE; a file that loads completely must save to a
/// file that loads back with the same number of keys. Function libraries are read but not
/// loaded: that is Lua's business, not the RDB reader's.
pub fn rdb_load(data: &[u8]) {
    let Ok(mut reader) = FileReader::new(data) else {
        return;
    };
    let cfg = ShardConfig::default();
    let mut dbs: Vec<Db> = (0..DATABASES).map(|_| Db::default()).collect();
    let complete = loop {
        match reader.next_entry() {
            Ok(Some(e)) => {
                assert!(e.db < DATABASES);
                let Ok(value) = e.decode(&cfg) else {
                    break false;
                };
                round_trips(&value, &cfg);
                dbs[e.db].insert(&e.key, Entry::with_expiry(value, e.expire_ms));
            }
            Ok(None) => break true,
            Err(_) => break false,
        }
    };
    if complete {
        let keys: usize = dbs.iter().map(Db::len).sum();
        let saved = rdb::file::save::<&[u8]>(&[], &dbs, 0, &Default::default());
        let mut again = FileReader::new(&saved).expect("a saved file has a valid header");
        let mut n = 0;
        while let Some(e) = again.next_entry().expect("a saved file reads back") {
            e.decode(&cfg).expect("a saved value decodes");
            n += 1;
        }
        assert_eq!(n, keys, "keys lost across SAVE and load");
    }
}

/// The most commands one `command_args` input runs.
const COMMANDS_PER_INPUT_MAX: usize = 32;

/// The largest count or offset that the commands which allocate in proportion to one
/// (SETRANGE, SETBIT, BITFIELD, SRANDMEMBER and the like) are run with.
const ALLOCATING_ARG_MAX: u64 = 1 << 16;

/// Runs the commands in `data` against a fresh shard holding a key of every type. Each line
/// is one command in redis-cli's inline syntax (quotes and `\xHH` escapes); a first word that
/// names no command is replaced by the command its first byte picks from the registry. A first
/// line `HELLO 3` switches the replies to RESP3. Every reply must be exactly one well-formed
/// RESP frame.
pub fn command_args(data: &[u8]) {
    let mut shard = Shard::new(0, 1, 7);
    let now_us = 1_700_000_000_000_000;
    let mut proto = Proto::Resp2;
    let mut out = Vec::new();
    for line in FIXTURE.iter().map(|l| l.as_bytes()) {
        run_line(&mut shard, line, now_us, proto, &mut out);
    }
    for (i, line) in data.split(|&b| b == b'\n').enumerate() {
        if i == COMMANDS_PER_INPUT_MAX {
            break;
        }
        if i == 0 && line.eq_ignore_ascii_case(b"hello 3") {
            proto = Proto::Resp3;
            continue;
        }
        run_line(&mut shard, line, now_us, proto, &mut out);
    }
}

/// Commands that make the keys every `command_args` input starts with.
const FIXTURE: &[&str] = &[
    "SET str hello",
    "SET int 12345",
    "RPUSH list a b 1 2 c",
    "HSET hash f1 v1 f2 2",
    "SADD set a b c",
    "SADD intset 1 2 3",
    "ZADD zset 1 a 2 b 3.5 c",
    "XADD stream 1-1 f v",
    "XADD stream 2-1 f w",
    "XGROUP CREATE stream g 0",
    "XREADGROUP GROUP g c COUNT 1 STREAMS stream >",
    "PFADD hll a b c",
    "SETBIT bits 100 1",
    "GEOADD geo 13.36 38.11 palermo 15.08 37.50 catania",
];

/// Every command and subcommand the fuzzer may pick, in registry order. Scripts are left out:
/// a script may loop for as long as it likes, which the server (not the shard) interrupts.
fn commands() -> &'static [(&'static CommandSpec, Option<&'static CommandSpec>)] {
    static LIST: OnceLock<Vec<(&'static CommandSpec, Option<&'static CommandSpec>)>> =
        OnceLock::new();
    LIST.get_or_init(|| {
        let mut list = Vec::new();
        for c in registry::all().filter(|c| c.group != Group::Scripting) {
            list.push((c, None));
            list.extend(c.subcommands.iter().map(|s| (c, Some(s))));
        }
        list
    })
}

fn run_line(shard: &mut Shard, line: &[u8], now_us: u64, proto: Proto, out: &mut Vec<u8>) {
    let mut ranges = Vec::new();
    let mut words = Vec::new();
    if !split_args(line, &mut ranges, &mut words) || ranges.is_empty() {
        return;
    }
    let mut argv: Vec<&[u8]> = ranges.iter().map(|r| &words[r.clone()]).collect();
    if registry::find(argv[0]).is_none() {
        let all = commands();
        let (c, sub) = all[argv[0].first().map_or(0, |&b| b as usize) % all.len()];
        argv[0] = c.name.as_bytes();
        if let Some(s) = sub {
            argv.insert(1, s.name.as_bytes());
        }
    }
    let Ok(cmd) = registry::lookup(&argv) else {
        return;
    };
    if cmd.parent.unwrap_or(cmd.spec).group == Group::Scripting || allocates_much(cmd, &argv) {
        return;
    }
    out.clear();
    let blocked = shard.execute_reply(cmd, &argv, 0, now_us, proto, out);
    if blocked.is_some() && out.is_empty() {
        return;
    }
    assert_eq!(
        frame_len(out, 0),
        Some(out.len()),
        "not one RESP frame: {:?} -> {:?}",
        argv.iter()
            .map(|a| String::from_utf8_lossy(a))
            .collect::<Vec<_>>(),
        String::from_utf8_lossy(out)
    );
}

/// Whether `argv` asks a command that allocates in proportion to a count or an offset for
/// more than [`ALLOCATING_ARG_MAX`]. Redis allocates that much too (up to 512 MB); the fuzzer
/// would spend its time there and hit its memory limit, finding nothing.
fn allocates_much(cmd: Lookup, argv: &[&[u8]]) -> bool {
    const NAMES: &[&str] = &[
        "setrange",
        "setbit",
        "bitfield",
        "srandmember",
        "zrandmember",
        "hrandfield",
    ];
    NAMES.contains(&cmd.spec.name)
        && argv[1..].iter().any(|a| {
            let digits = a.strip_prefix(b"#").unwrap_or(a);
            crate::util::parse_i64(digits).is_some_and(|n| n.unsigned_abs() > ALLOCATING_ARG_MAX)
        })
}

/// The length of the RESP2/RESP3 frame starting at `buf[at..]`, if one is complete there.
pub fn frame_len(buf: &[u8], at: usize) -> Option<usize> {
    let line_end = at + buf.get(at..)?.windows(2).position(|w| w == b"\r\n")?;
    let head = buf.get(at + 1..line_end)?;
    let next = line_end + 2;
    let count = || -> Option<i64> { std::str::from_utf8(head).ok()?.parse().ok() };
    match buf.get(at)? {
        b'+' | b'-' | b':' | b',' | b'#' | b'_' | b'(' => Some(next - at),
        b'$' | b'=' | b'!' => match count()? {
            -1 => Some(next - at),
            n if n >= 0 => {
                let end = next + n as usize;
                (buf.get(end..end + 2)? == b"\r\n").then_some(end + 2 - at)
            }
            _ => None,
        },
        kind @ (b'*' | b'~' | b'>' | b'%' | b'|') => {
            let n = count()?;
            if n == -1 && *kind == b'*' {
                return Some(next - at);
            }
            let items = usize::try_from(n).ok()? * if matches!(kind, b'%' | b'|') { 2 } else { 1 };
            let mut pos = next;
            for _ in 0..items {
                pos += frame_len(buf, pos)?;
            }
            Some(pos - at)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames() {
        assert_eq!(frame_len(b"+OK\r\n", 0), Some(5));
        assert_eq!(frame_len(b"$3\r\nabc\r\n", 0), Some(9));
        assert_eq!(frame_len(b"*2\r\n:1\r\n$-1\r\n", 0), Some(13));
        assert_eq!(frame_len(b"%1\r\n+a\r\n+b\r\n", 0), Some(12));
        assert_eq!(frame_len(b"$3\r\nab\r\n", 0), None);
        assert_eq!(frame_len(b"*2\r\n:1\r\n", 0), None);
    }

    #[test]
    fn every_target_takes_empty_and_seed_like_input() {
        for (_, f) in TARGETS {
            f(b"");
            f(b"\x00");
        }
        command_args(b"GET str\nLPUSH list x\nHGETALL hash\nXINFO STREAM stream FULL");
        command_args(b"HELLO 3\nHGETALL hash\nZRANGE zset 0 -1 WITHSCORES");
        rdb_load(b"REDIS0010\xff\x00\x00\x00\x00\x00\x00\x00\x00");
    }
}
