//! DEBUG: testing aids (SLEEP, SET-ACTIVE-EXPIRE, DIGEST, DIGEST-VALUE, PROTOCOL, ERROR).

use crate::conn::Conn;
use crate::ctx::ShardCtx;
use crate::msg::{RepBody, ReqBody};
use shards::resp::Proto;
use shards::util::{eq_ic, parse_f64};
use shards::{Error, Shard};
use std::hash::{Hash, Hasher};

/// A 160-bit digest of one entry, the same for equal keys and values.
fn entry_digest(
    db: usize,
    key: &[u8],
    value: &shards::types::Value,
    expire: Option<u64>,
) -> [u8; 20] {
    let mut out = [0u8; 20];
    for (i, chunk) in out.chunks_mut(8).enumerate() {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (i as u8, db, key).hash(&mut h);
        match value {
            shards::types::Value::Str(s) => s.as_bytes().hash(&mut h),
            shards::types::Value::List(l) => {
                ("list", l.len()).hash(&mut h);
                l.iter().for_each(|e| e.hash(&mut h));
            }
            shards::types::Value::Set(s) => {
                // Order-independent: the same members give the same digest in any encoding.
                let mut members: Vec<_> = s.iter().map(|m| m.to_bytes()).collect();
                members.sort_by(|a, b| a.as_slice().cmp(b.as_slice()));
                ("set", members.len()).hash(&mut h);
                members.iter().for_each(|m| m.as_slice().hash(&mut h));
            }
            // Order-independent: the XOR of one digest per (field, value).
            shards::types::Value::Hash(hash) => {
                let mut acc = 0u64;
                for pair in hash.iter() {
                    let mut ph = std::collections::hash_map::DefaultHasher::new();
                    pair.hash(&mut ph);
                    acc ^= ph.finish();
                }
                ("hash", hash.len(), acc).hash(&mut h)
            }
            // In order: the same members and scores give the same digest in any encoding
            // (a score of -0 counts as 0, as a listpack stores it).
            shards::types::Value::ZSet(z) => {
                ("zset", z.len()).hash(&mut h);
                for (m, s) in z.iter() {
                    (m, (s + 0.0).to_bits()).hash(&mut h);
                }
            }
            // Entries in order, then the bookkeeping and the groups (in name order), without
            // delivery and seen times (an AOF replay sets those to its own clock).
            shards::types::Value::Stream(st) => {
                ("stream", st.len()).hash(&mut h);
                st.scan(
                    shards::types::stream::StreamId::MIN,
                    shards::types::stream::StreamId::MAX,
                    false,
                    &mut |id, fields| {
                        (id, fields).hash(&mut h);
                        true
                    },
                );
                (st.last_id, st.first_id, st.max_deleted_id, st.entries_added).hash(&mut h);
                for (name, g) in &st.groups {
                    (name, g.last_id, g.entries_read, g.pel.len()).hash(&mut h);
                    for (id, n) in &g.pel {
                        (id, &n.consumer).hash(&mut h);
                    }
                    for (cname, c) in &g.consumers {
                        (cname, c.pending.len()).hash(&mut h);
                    }
                }
            }
        }
        expire.hash(&mut h);
        let v = h.finish().to_be_bytes();
        chunk.copy_from_slice(&v[..chunk.len()]);
    }
    out
}

fn xor(acc: &mut [u8; 20], d: &[u8; 20]) {
    for (a, b) in acc.iter_mut().zip(d) {
        *a ^= b;
    }
}

/// The order-independent digest of a shard's whole dataset (all zeros when empty).
pub fn digest(engine: &mut Shard, now_ms: u64) -> [u8; 20] {
    let mut acc = [0u8; 20];
    for (i, db) in engine.dbs.iter().enumerate() {
        db.for_each_key(now_ms, |k, e, t| {
            xor(&mut acc, &entry_digest(i, k, &e.value, t))
        });
    }
    acc
}

fn hex(d: &[u8; 20]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn run(ctx: &ShardCtx, conn: &mut Conn, argv: &[&[u8]]) -> Result<(), Error> {
    let sub = argv[1];
    if eq_ic(sub, "help") {
        let lines = [
            "DEBUG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "DIGEST",
            "    Output a hex signature representing the current DB content.",
            "DIGEST-VALUE <key> [<key> ...]",
            "    Output a hex signature of the values of all the specified keys.",
            "ERROR <string>",
            "    Return a Redis protocol error with <string> as message.",
            "PROTOCOL <type>",
            "    Reply with a test value of the specified type.",
            "SET-ACTIVE-EXPIRE <0|1>",
            "    Setting it to 0 disables expiring keys in background.",
            "SLEEP <seconds>",
            "    Stop the server for <seconds>. Decimals allowed.",
            "HELP",
            "    Prints this help.",
        ];
        let mut r = conn.reply();
        r.array(lines.len());
        for l in lines {
            r.simple(l);
        }
        return Ok(());
    }
    if eq_ic(sub, "sleep") && argv.len() == 3 {
        let secs = parse_f64(argv[2]).unwrap_or(0.0).max(0.0);
        // Like Redis, this stops the server (here: this shard) for the given time.
        std::thread::sleep(std::time::Duration::from_secs_f64(secs.min(3600.0)));
        conn.reply().ok();
        return Ok(());
    }
    if eq_ic(sub, "set-active-expire") && argv.len() == 3 {
        let on = argv[2] != b"0";
        let parts = (0..ctx.n)
            .map(|s| (s, ReqBody::SetActiveExpire(on)))
            .collect();
        crate::dispatch::fan_out(ctx, conn, parts, Box::new(|_, conn, _| conn.reply().ok()));
        return Ok(());
    }
    if eq_ic(sub, "digest") && argv.len() == 2 {
        let parts = (0..ctx.n).map(|s| (s, ReqBody::Digest)).collect();
        crate::dispatch::fan_out(
            ctx,
            conn,
            parts,
            Box::new(|_, conn, results| {
                let mut acc = [0u8; 20];
                for (_, b) in results {
                    if let RepBody::Digest(d) = b {
                        xor(&mut acc, &d);
                    }
                }
                conn.reply().simple(&hex(&acc));
            }),
        );
        return Ok(());
    }
    if eq_ic(sub, "reload")
        && argv[2..]
            .iter()
            .all(|a| eq_ic(a, "nosave") || eq_ic(a, "noflush") || eq_ic(a, "merge"))
    {
        if ctx.shared.persist.bgsave_running() {
            return Err(Error::err("Background save already in progress"));
        }
        crate::save::start_cut(ctx, conn, crate::save::SnapKind::Reload);
        return Ok(());
    }
    if eq_ic(sub, "populate") && (3..=5).contains(&argv.len()) {
        let count = shards::util::parse_i64(argv[2])
            .filter(|&n| n >= 0)
            .ok_or_else(|| Error::err("count must be greater than or equal to 0"))?
            as u64;
        let prefix = argv.get(3).map_or(b"key".to_vec(), |p| p.to_vec());
        let size = match argv.get(4) {
            None => None,
            // Bounded as a client's bulk string is: the size is allocated for every key.
            Some(s) => Some(
                shards::util::parse_i64(s)
                    .filter(|&n| n >= 0 && n <= ctx.limits.get().bulk_len_max as i64)
                    .ok_or_else(|| Error::err("value is out of range"))? as usize,
            ),
        };
        let db = conn.db as u8;
        let parts = (0..ctx.n)
            .map(|s| {
                (
                    s,
                    ReqBody::Populate {
                        db,
                        count,
                        prefix: prefix.clone(),
                        size,
                    },
                )
            })
            .collect();
        crate::dispatch::fan_out(ctx, conn, parts, Box::new(|_, conn, _| conn.reply().ok()));
        return Ok(());
    }
    if eq_ic(sub, "object") && argv.len() == 3 {
        let key = shards::keyspace::Key::from(argv[2]);
        let shard = crate::dispatch::shard_of(ctx, argv[2]);
        let part = vec![(shard, ReqBody::DebugObject(conn.db as u8, key))];
        crate::dispatch::fan_out(
            ctx,
            conn,
            part,
            Box::new(|_, conn, results| match results.into_iter().next() {
                Some((_, RepBody::Lines(l))) => conn.reply().simple(&l),
                _ => conn.reply().error("ERR no such key"),
            }),
        );
        return Ok(());
    }
    if eq_ic(sub, "digest-value") {
        return digest_value(ctx, conn, argv);
    }
    if eq_ic(sub, "protocol") && argv.len() == 3 {
        return protocol(conn, argv[2]);
    }
    if eq_ic(sub, "error") && argv.len() == 3 {
        conn.error(&String::from_utf8_lossy(argv[2]));
        return Ok(());
    }
    Err(Error::err(format!(
        "unknown subcommand or wrong number of arguments for '{}'. Try DEBUG HELP.",
        String::from_utf8_lossy(sub)
    )))
}

/// DEBUG POPULATE on one shard: the absent keys `<prefix>:<i>` it owns get `value:<i>`
/// (cut or padded with zero bytes to `size`). Logged in the AOF like SETs.
pub fn populate(
    ctx: &ShardCtx,
    db: usize,
    count: u64,
    prefix: &[u8],
    size: Option<usize>,
    now_ms: u64,
) -> RepBody {
    let mut e = ctx.engine.borrow_mut();
    let mut key = prefix.to_vec();
    key.push(b':');
    let base = key.len();
    for i in 0..count {
        key.truncate(base);
        key.extend_from_slice(i.to_string().as_bytes());
        if crate::dispatch::shard_of(ctx, &key) != ctx.id || e.db(db).contains(&key, now_ms) {
            continue;
        }
        let mut val = format!("value:{i}").into_bytes();
        if let Some(n) = size {
            val.resize(n, 0);
        }
        e.db(db).insert(
            &key,
            shards::keyspace::Entry::new(shards::types::Value::Str(
                shards::types::Str::from_bytes(&val),
            )),
        );
        e.stats.dirty += 1;
        e.propagate(db, &[b"SET", &key, &val]);
    }
    RepBody::Ack
}

/// DEBUG OBJECT's line for `key`, as Redis prints it (no such key: an empty answer).
pub fn object(ctx: &ShardCtx, db: usize, key: &[u8], now_ms: u64) -> RepBody {
    let mut e = ctx.engine.borrow_mut();
    // Redis's raw 24 bits (under LFU, minutes and counter) and the idle time they mean as LRU.
    let (lru, idle_s) = e.db(db).clock_of(key).map_or((0, 0), |(clocks, id)| {
        (clocks.get(id), clocks.idle_ms(id, now_ms) / 1000)
    });
    let Some(item) = e.db(db).get_untouched(key, now_ms, false) else {
        return RepBody::Ack;
    };
    let value = &item.value;
    // The object as an RDB file holds it: its DUMP payload less the type byte and the footer.
    let serialized = shards::rdb::dump(value).len().saturating_sub(11);
    let addr = value as *const _ as usize;
    RepBody::Lines(format!(
        "Value at:{addr:#x} refcount:{} encoding:{} serializedlength:{serialized} lru:{lru} \
         lru_seconds_idle:{idle_s}",
        shards::cmd::keys::refcount(value),
        value.encoding()
    ))
}

fn digest_value(ctx: &ShardCtx, conn: &mut Conn, argv: &[&[u8]]) -> Result<(), Error> {
    let keys: Vec<Vec<u8>> = argv[2..].iter().map(|k| k.to_vec()).collect();
    let mut per_shard: Vec<Vec<(u8, shards::keyspace::Key)>> = vec![Vec::new(); ctx.n];
    for k in &keys {
        per_shard[crate::dispatch::shard_of(ctx, k)].push((conn.db as u8, k.as_slice().into()));
    }
    let parts = per_shard
        .into_iter()
        .enumerate()
        .filter(|(_, k)| !k.is_empty())
        .map(|(s, k)| (s, ReqBody::Export(k)))
        .collect();
    let db = conn.db;
    crate::dispatch::fan_out(
        ctx,
        conn,
        parts,
        Box::new(move |_, conn, results| {
            let mut found = std::collections::HashMap::new();
            for (_, b) in results {
                if let RepBody::Entries(es) = b {
                    for (_, k, e) in es {
                        if let Some(e) = e {
                            found.insert(k.to_vec(), entry_digest(db, &k, &e.value, e.expire_at()));
                        }
                    }
                }
            }
            let mut r = conn.reply();
            r.array(keys.len());
            for k in &keys {
                r.simple(&hex(&found.get(k).copied().unwrap_or([0; 20])));
            }
        }),
    );
    Ok(())
}

fn protocol(conn: &mut Conn, kind: &[u8]) -> Result<(), Error> {
    let resp3 = conn.proto == Proto::Resp3;
    let name = String::from_utf8_lossy(kind).to_ascii_lowercase();
    if name == "push" && !resp3 {
        return Err(Error::err("RESP2 is not supported by this command"));
    }
    let mut r = conn.reply();
    match name.as_str() {
        "string" => r.bulk(b"Hello World"),
        "integer" => r.int(12345),
        // Redis's fixed test value (not π).
        #[allow(clippy::approx_constant)]
        "double" => r.double(3.141),
        "bignum" => r.big_number("1234567999999999999999999999999999999"),
        "null" => r.null(),
        "array" | "set" => {
            if name == "set" { r.set(3) } else { r.array(3) }
            for j in 0..3 {
                r.int(j);
            }
        }
        "map" => {
            r.map(3);
            for j in 0..3 {
                r.int(j);
                r.boolean(j == 1);
            }
        }
        "attrib" => {
            if resp3 {
                r.raw(b"|1\r\n");
                r.bulk(b"key-popularity");
                r.array(2);
                r.bulk(b"key:123");
                r.int(90);
            }
            r.bulk(b"Some real reply following the attribute");
        }
        "push" => {
            r.push(2);
            r.bulk(b"server-cpu-usage");
            r.int(42);
            r.bulk(b"Some real reply following the push reply");
        }
        "true" => r.boolean(true),
        "false" => r.boolean(false),
        "verbatim" => r.verbatim(b"This is a verbatim\nstring"),
        _ => {
            return Err(Error::err(
                "Wrong protocol type name. Please use one of the following: string|integer|double|bignum|null|array|set|map|attrib|push|verbatim|true|false",
            ))
        }
    }
    Ok(())
}
