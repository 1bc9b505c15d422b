//! RDB files against the real thing: files redis-server 7.0 SAVEs read back key for key, and
//! files we write (whole, and from copy-on-write snapshots) pass `redis-check-rdb` and load
//! into redis-server with the same contents.
//!
//! Skipped, with a message, where redis-server or redis-check-rdb is not installed. The server
//! runs on port 7395 in a temporary directory; the test checks that the server it talks to is
//! its own (its `dir`) before writing anything.

use shards::keyspace::{Db, Entry};
use shards::limits::DATABASES;
use shards::rdb::file::{self, Aux, FileReader, FileWriter};
use shards::rdb::{decode, verify_payload};
use shards::shard::ShardConfig;
use shards::types::Value;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const PORT: u16 = 7395;

/// (db, key) → (value, deadline ms).
type Model = BTreeMap<(usize, Vec<u8>), (Value, Option<u64>)>;

/// (db, key) → (type byte, object bytes as a DUMP payload holds them).
type RawObjects = BTreeMap<(usize, Vec<u8>), (u8, Vec<u8>)>;

fn installed(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("shardis-rdb-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[derive(Debug, PartialEq)]
enum Reply {
    Status(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Vec<Reply>),
}

/// A redis-server of our own, killed when dropped.
struct Server {
    child: Child,
    conn: BufReader<TcpStream>,
}

impl Server {
    /// Starts redis-server in `dir`, loading `dbfilename` there if it exists.
    fn start(dir: &Path, dbfilename: &str) -> Server {
        let mut child = Command::new("redis-server")
            .args(["--port", &PORT.to_string(), "--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(dir)
            .args([
                "--dbfilename",
                dbfilename,
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        let deadline = Instant::now() + Duration::from_secs(20);
        let stream = loop {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("redis-server exited ({status}); is port {PORT} taken?");
            }
            if let Ok(s) = TcpStream::connect(("127.0.0.1", PORT)) {
                break s;
            }
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut server = Server {
            child,
            conn: BufReader::new(stream),
        };
        // Wait for the load to finish, then make sure this is our server.
        while server.cmd(&["ping"]) != Reply::Status("PONG".into()) {
            assert!(Instant::now() < deadline, "redis-server still loading");
            std::thread::sleep(Duration::from_millis(20));
        }
        let want = dir.to_string_lossy().into_owned();
        let got = server.cmd(&["config", "get", "dir"]);
        assert!(
            matches!(&got, Reply::Array(a) if a.get(1) == Some(&Reply::Bulk(Some(want.clone().into_bytes())))),
            "the server on port {PORT} is not ours: {got:?}"
        );
        server
    }

    fn cmd<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Reply {
        let mut req = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            let a = a.as_ref();
            req.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            req.extend_from_slice(a);
            req.extend_from_slice(b"\r\n");
        }
        self.conn.get_mut().write_all(&req).unwrap();
        self.read_reply()
    }

    fn read_reply(&mut self) -> Reply {
        let mut line = Vec::new();
        self.conn.read_until(b'\n', &mut line).unwrap();
        let text = String::from_utf8_lossy(&line[1..line.len() - 2]).into_owned();
        match line[0] {
            b'+' => Reply::Status(text),
            b'-' => Reply::Error(text),
            b':' => Reply::Int(text.parse().unwrap()),
            b'$' => {
                let n: i64 = text.parse().unwrap();
                if n < 0 {
                    return Reply::Bulk(None);
                }
                let mut data = vec![0; n as usize + 2];
                std::io::Read::read_exact(&mut self.conn, &mut data).unwrap();
                data.truncate(n as usize);
                Reply::Bulk(Some(data))
            }
            b'*' => {
                let n: usize = text.parse().unwrap();
                Reply::Array((0..n).map(|_| self.read_reply()).collect())
            }
            c => panic!("unexpected reply type {c}"),
        }
    }

    fn ok<A: AsRef<[u8]>>(&mut self, args: &[A]) {
        let r = self.cmd(args);
        assert!(!matches!(r, Reply::Error(_)), "{r:?}");
    }

    fn int<A: AsRef<[u8]>>(&mut self, args: &[A]) -> i64 {
        match self.cmd(args) {
            Reply::Int(n) => n,
            r => panic!("{r:?}"),
        }
    }

    /// The value of `key` in `db`, read through DUMP, and its deadline.
    fn value(&mut self, db: usize, key: &[u8]) -> (Value, Option<u64>) {
        self.ok(&["select".as_bytes(), db.to_string().as_bytes()]);
        let Reply::Bulk(Some(payload)) = self.cmd(&[b"dump".as_slice(), key]) else {
            panic!("no key {}", String::from_utf8_lossy(key));
        };
        let v = decode(verify_payload(&payload).unwrap(), &ShardConfig::default()).unwrap();
        let t = self.int(&[b"pexpiretime".as_slice(), key]);
        (v, u64::try_from(t).ok())
    }

    /// The object bytes DUMP gives for `key` in `db` (the payload less its footer).
    fn object(&mut self, db: usize, key: &[u8]) -> Vec<u8> {
        self.ok(&["select".as_bytes(), db.to_string().as_bytes()]);
        let Reply::Bulk(Some(mut payload)) = self.cmd(&[b"dump".as_slice(), key]) else {
            panic!("no key");
        };
        payload.truncate(payload.len() - 10);
        payload
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn args(words: &str, extra: impl IntoIterator<Item = String>) -> Vec<Vec<u8>> {
    words
        .split(' ')
        .map(|w| w.as_bytes().to_vec())
        .chain(extra.into_iter().map(String::into_bytes))
        .collect()
}

/// Fills the server with every type in its small and big encodings, with deadlines, in
/// databases 0, 3 and 15; returns the type byte each key is expected to have in the file.
fn fill(s: &mut Server) -> BTreeMap<(usize, Vec<u8>), u8> {
    let far = now_ms() + 86_400_000;
    let mut kinds = BTreeMap::new();
    let mut put = |s: &mut Server, db: usize, cmd: Vec<Vec<u8>>, kind: u8| {
        s.ok(&["select".as_bytes(), db.to_string().as_bytes()]);
        kinds.insert((db, cmd[1].clone()), kind);
        s.ok(&cmd);
    };
    let n = |k: usize, f: fn(usize) -> String| (0..k).map(f).collect::<Vec<_>>();
    put(s, 0, args("set s:int 12345", []), 0);
    put(s, 0, args("set s:neg -7", []), 0);
    put(s, 0, args("set s:big 12345678901234", []), 0);
    put(s, 0, args("set s:short hello", []), 0);
    put(s, 0, args("set s:empty", [String::new()]), 0);
    put(s, 0, args("set s:lzf", ["abcdefgh".repeat(20)]), 0);
    put(
        s,
        0,
        args(
            "set s:raw",
            [n(40, |i| format!("{:x}", i * 7919 % 251)).concat()],
        ),
        0,
    );
    put(s, 0, args("rpush l:small a 1 -5000 100000 b", []), 18);
    put(
        s,
        0,
        args("rpush l:big", n(2000, |i| format!("element-{i}"))),
        18,
    );
    put(
        s,
        0,
        args("rpush l:huge", n(3, |i| format!("{i}").repeat(9000))),
        18,
    );
    put(s, 0, args("sadd set:int 1 2 3 -70000 5000000000", []), 11);
    put(s, 0, args("sadd set:bigint", n(600, |i| i.to_string())), 2);
    put(s, 0, args("sadd set:str a b c", []), 2);
    put(s, 0, args("hset h:small f v n 10", []), 16);
    put(
        s,
        0,
        args("hset h:big", n(1200, |i| format!("f{}", i / 2))),
        4,
    );
    put(s, 0, args("hset h:longval f", ["v".repeat(100)]), 4);
    put(s, 0, args("zadd z:small 1 a 2.5 b -3 c", []), 17);
    let scored = |i: usize| match i % 2 {
        0 => format!("{}", (i / 2) as f64 / 7.0),
        _ => format!("m{}", i / 2),
    };
    put(s, 0, args("zadd z:big", n(800, scored)), 5);
    put(s, 0, args("zadd z:long 1", ["m".repeat(100)]), 5);
    put(s, 0, args("pfadd hll:sparse a b c", []), 0);
    put(
        s,
        0,
        args("pfadd hll:dense", n(3000, |i| format!("e{i}"))),
        0,
    );
    put(s, 0, args("set t:px x px 86400000", []), 0);
    put(s, 0, args("rpush t:list a b", []), 18);
    s.ok(&args("pexpireat t:list", [far.to_string()]));
    put(s, 3, args("set db3:s v", []), 0);
    put(s, 3, args("hset db3:h a 1", []), 16);
    s.ok(&args("expire db3:h 100000", []));
    put(s, 15, args("zadd db15:z 1 x", []), 17);
    kinds
}

/// Reads a whole file into a model, checking each value's extent against its decoding.
fn read_file(data: &[u8]) -> (Model, RawObjects) {
    let mut r = FileReader::new(data).unwrap();
    let mut model = Model::new();
    let mut raw = BTreeMap::new();
    while let Some(e) = r.next_entry().unwrap() {
        let v = e.decode(&ShardConfig::default()).unwrap();
        raw.insert((e.db, e.key.clone()), (e.kind, e.object()));
        model.insert((e.db, e.key), (v, e.expire_ms));
    }
    (model, raw)
}

fn check_rdb(path: &Path, keys: usize) {
    let out = Command::new("redis-check-rdb").arg(path).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "redis-check-rdb failed:\n{text}");
    assert!(
        text.contains(&format!("[info] {keys} keys read")),
        "wrong key count:\n{text}"
    );
}

/// Loads `file` into redis-server and compares every key and each database's size.
fn check_loads(dir: &Path, name: &str, model: &Model) {
    let mut s = Server::start(dir, name);
    for db in 0..DATABASES {
        s.ok(&["select".as_bytes(), db.to_string().as_bytes()]);
        let want = model.keys().filter(|(d, _)| *d == db).count() as i64;
        assert_eq!(s.int(&["dbsize"]), want, "db {db}");
    }
    for ((db, key), want) in model {
        assert_eq!(
            &s.value(*db, key),
            want,
            "{db} {}",
            String::from_utf8_lossy(key)
        );
    }
}

fn dbs_of(model: &Model) -> Vec<Db> {
    let mut dbs: Vec<Db> = (0..DATABASES).map(|_| Db::default()).collect();
    for ((db, key), (v, t)) in model {
        dbs[*db].insert(key, Entry::with_expiry(v.clone(), *t));
    }
    dbs
}

#[test]
fn rdb_files_match_redis() {
    if !installed("redis-server") || !installed("redis-check-rdb") {
        eprintln!("skipped: redis-server / redis-check-rdb 7.0 not installed");
        return;
    }
    // Redis → us: a file redis-server SAVEs reads back key for key.
    let dir = temp_dir("from-redis");
    let model = {
        let mut s = Server::start(&dir, "dump.rdb");
        let kinds = fill(&mut s);
        s.ok(&["save"]);
        let data = std::fs::read(dir.join("dump.rdb")).unwrap();
        let (model, raw) = read_file(&data);
        assert_eq!(model.len(), kinds.len());
        for ((db, key), kind) in &kinds {
            let name = String::from_utf8_lossy(key);
            let (got_kind, object) = &raw[&(*db, key.clone())];
            assert_eq!(got_kind, kind, "type of {name}");
            assert_eq!(&model[&(*db, key.clone())], &s.value(*db, key), "{name}");
            // Hashtable iteration order may change between SAVE and DUMP; others may not.
            if !matches!(kind, 2 | 4) {
                assert_eq!(object, &s.object(*db, key), "object of {name}");
            }
        }
        let expiring = model.values().filter(|(_, t)| t.is_some()).count();
        assert_eq!(expiring, 3);
        let mut r = FileReader::new(&data).unwrap();
        while r.next_entry().unwrap().is_some() {}
        assert_eq!(r.aux_get("redis-ver"), Some(&b"7.0.15"[..]));
        model
    };

    // Us → Redis: the same keys written by our writer.
    let out = temp_dir("to-redis");
    let dbs = dbs_of(&model);
    let aux = Aux {
        ctime_s: now_ms() / 1000,
        used_mem: 1 << 20,
        aof_base: false,
    };
    let mut f = std::fs::File::create(out.join("ours.rdb")).unwrap();
    file::save_to(&mut f, &dbs, now_ms(), &aux).unwrap();
    drop(f);
    check_rdb(&out.join("ours.rdb"), model.len());
    check_loads(&out, "ours.rdb", &model);

    // A copy-on-write snapshot of every database, taken while they change: the file holds the
    // keys as they were at the start, databases re-selected as pieces interleave.
    let mut dbs = dbs_of(&model);
    let start = now_ms();
    for (i, db) in dbs.iter_mut().enumerate() {
        db.begin_snapshot(i, start);
    }
    let mut w = FileWriter::new(&aux);
    let mut round = 0;
    loop {
        round += 1;
        let mut more = false;
        for db in dbs.iter_mut().rev() {
            db.remove(format!("s:{}", ["int", "short", "lzf"][round % 3]).as_bytes());
            db.insert(
                format!("new{round}").as_bytes(),
                Entry::new(model[&(0, b"s:int".to_vec())].0.clone()),
            );
            if let Some(item) = db.get_mut(b"db3:s", start) {
                item.value = model[&(0, b"l:small".to_vec())].0.clone();
            }
            db.set_expire(b"h:small", Some(start + 5));
            more |= db.snapshot_step(1);
            w.append(&db.snapshot_take());
        }
        if !more {
            break;
        }
    }
    assert!(dbs.iter().all(|d| !d.snapshot_active()));
    w.finish();
    let snap = temp_dir("snapshot");
    std::fs::write(snap.join("snap.rdb"), w.take_pending()).unwrap();
    check_rdb(&snap.join("snap.rdb"), model.len());
    check_loads(&snap, "snap.rdb", &model);

    for d in [dir, out, snap] {
        let _ = std::fs::remove_dir_all(d);
    }
}
