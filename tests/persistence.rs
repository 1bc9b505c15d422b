//! Persistence through the real binary: shard RDB files (SAVE, BGSAVE, save points, SHUTDOWN,
//! DEBUG RELOAD), the per-shard multi-part AOF (every fsync policy, crashes by SIGKILL, torn
//! tails, BGREWRITEAOF under load, turning it on at run time), loading with another shard count,
//! files exchanged with redis-server 7.0 both ways, and damaged files refused with a message
//! naming the file and the offset.
//!
//! Every test works in its own directory under the system temp dir (kept, and named on stderr,
//! when the test fails). Datasets are compared whole: every key of every database with its type,
//! contents and absolute deadline (`PEXPIRETIME`), plus shardis's `DEBUG DIGEST` where both
//! sides are shardis.
//!
//! Environment: `CRASH_ROUNDS=n` — kill-and-restart rounds of the crash tests (default 2).

mod common;

use common::data::{
    assert_same, bulk, bulks, dataset, int, ok, run_all, simple, views_of, Dataset,
};
use common::{encode, escape, shard_of, RawConn, RedisServer, Server};
use rand::Rng;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

// ---------------------------------------------------------------------------------------------
// Directories, processes, replies

/// A scratch directory, removed on drop unless the test failed.
struct TempDir(PathBuf);

impl TempDir {
    fn new(what: &str) -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let path = std::env::temp_dir().join(format!(
            "shardis-persistence-{}-{n}-{what}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }

    fn s(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!("keeping {} for inspection", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// Starts shardis (2 shards unless `extra` says otherwise) with its data in `dir`.
fn start(dir: &TempDir, extra: &[&str]) -> Server {
    let mut args = vec!["--dir", dir.s()];
    args.extend_from_slice(extra);
    Server::start(&args)
}

/// SIGKILL: no shutdown code runs, only what reached the kernel survives.
fn kill9(server: &mut Server) {
    // SAFETY: plain kill(2) on our own child's pid.
    unsafe {
        libc::kill(server.pid() as libc::pid_t, libc::SIGKILL);
    }
    assert!(
        server.wait_exit(Duration::from_secs(10)).is_some(),
        "the server survived SIGKILL"
    );
}

/// Runs shardis with the test defaults plus `extra` when it is expected to exit by itself
/// (a refused start-up, `--export-rdb`): its exit status and everything it printed. Panics if
/// it is still running after 60 s (listening instead of failing, say).
fn run_to_exit(extra: &[&str]) -> (ExitStatus, String) {
    let bin = env!("CARGO_BIN_EXE_shardis");
    let out_dir = TempDir::new("out");
    let out_path = out_dir.path().join("output");
    let out = std::fs::File::create(&out_path).unwrap();
    let mut args = vec![
        "--port",
        "0",
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--enable-debug-command",
        "yes",
    ];
    if !extra.contains(&"--shards") {
        args.extend(["--shards", "2"]);
    }
    args.extend_from_slice(extra);
    let mut child = Command::new(bin)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "shardis {args:?} still running after 60 s; output:\n{}",
                std::fs::read_to_string(&out_path).unwrap_or_default()
            );
        }
        thread::sleep(Duration::from_millis(20));
    };
    (status, std::fs::read_to_string(&out_path).unwrap())
}

/// One field of `INFO persistence`.
fn info(con: &mut RawConn, field: &str) -> String {
    let text = String::from_utf8(bulk(&con.cmd(&["INFO", "persistence"])).unwrap()).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .unwrap_or_else(|| panic!("INFO persistence has no {field}:\n{text}"))
        .to_string()
}

fn info_u64(con: &mut RawConn, field: &str) -> u64 {
    info(con, field).parse().unwrap()
}

/// Polls `cond` every 20 ms until it holds; panics with `what` after `limit`.
fn wait_for(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + limit;
    while !cond() {
        assert!(
            Instant::now() < end,
            "timed out after {limit:?} waiting for {what}"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

fn digest(con: &mut RawConn) -> String {
    simple(&con.cmd(&["DEBUG", "DIGEST"]))
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// A key on shard 0 and a key on shard 1 of a 2-shard server, both named from `prefix`.
fn pair(prefix: &str) -> (String, String) {
    let a = format!("{prefix}a");
    let b = (0..)
        .map(|j| format!("{prefix}b{j}"))
        .find(|b| shard_of(b.as_bytes(), 2) != shard_of(a.as_bytes(), 2))
        .unwrap();
    (a, b)
}

/// Values of `keys` by MGET (in batches).
fn mget(con: &mut RawConn, keys: &[String]) -> Vec<Option<Vec<u8>>> {
    let mut out = Vec::with_capacity(keys.len());
    for batch in keys.chunks(500) {
        let mut args = vec!["MGET"];
        args.extend(batch.iter().map(String::as_str));
        out.extend(bulks(&con.cmd(&args)));
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Datasets

fn words(s: &str) -> Vec<String> {
    s.split(' ').map(String::from).collect()
}

/// A command with many generated arguments.
fn many(head: &str, n: usize, f: impl Fn(usize) -> Vec<String>) -> Vec<String> {
    let mut c = words(head);
    for i in 0..n {
        c.extend(f(i));
    }
    c
}

/// Commands that build every type in its small and large encodings, keys with deadlines, and
/// keys in several databases. Deadlines are absolute and far away, so a restart keeps them.
fn every_type() -> Vec<Vec<String>> {
    let mut out = streams();
    out.extend(other_types());
    out
}

/// Streams: shared and own field names, several nodes, deletions, groups with pending entries
/// and consumers, an emptied stream, a deadline.
fn streams() -> Vec<Vec<String>> {
    let mut out = vec![
        words("XADD stream:small 1-1 a 1 b 2"),
        words("XADD stream:small 1-2 a 3 b 4"),
        words("XADD stream:small 2-0 c x"),
    ];
    for i in 0..250 {
        out.push(vec![
            "XADD".into(),
            "stream:big".into(),
            format!("{}-{}", 1000 + i / 3, i % 3),
            "field".into(),
            format!("value-{i}"),
            "n".into(),
            i.to_string(),
        ]);
    }
    out.extend([
        words("XDEL stream:big 1001-1 1040-0 1080-2"),
        words("XGROUP CREATE stream:big g1 0"),
        words("XREADGROUP GROUP g1 alice COUNT 10 STREAMS stream:big >"),
        words("XREADGROUP GROUP g1 bob COUNT 5 STREAMS stream:big >"),
        words("XACK stream:big g1 1000-0 1000-2 1003-1"),
        words("XGROUP CREATE stream:big g2 $"),
        words("XGROUP CREATECONSUMER stream:big g2 carol"),
        words("XADD stream:empty 5-5 f v"),
        words("XDEL stream:empty 5-5"),
        words("EXPIRE stream:small 9000"),
    ]);
    out
}

/// Every type but streams (see `every_type`).
fn other_types() -> Vec<Vec<String>> {
    let later_ms = now_ms() + 3_600_000;
    let noise: String = (0..3000u32)
        .map(|i| char::from(b'!' + ((i * 7919 + i / 3) % 90) as u8))
        .collect();
    vec![
        words("SET str:plain hello"),
        words("SET str:int 12345"),
        words("SET str:neg -9223372036854775808"),
        vec!["SET".into(), "str:45".into(), "b".repeat(45)],
        vec!["SET".into(), "str:lzf".into(), "a".repeat(5000)],
        vec!["SET".into(), "str:noise".into(), noise],
        vec!["SET".into(), "str:empty".into(), String::new()],
        words("SET str:bits x"),
        words("SETBIT str:bits 100000 1"),
        words("SETBIT bitmap 7 1"),
        words("SETBIT bitmap 4095 1"),
        words("PFADD hll:sparse a b c d e"),
        many("PFADD hll:dense", 3000, |i| vec![format!("e{i}")]),
        words(
            "GEOADD geo 13.361389 38.115556 Palermo 15.087269 37.502669 Catania 2.35 48.85 Paris",
        ),
        words("RPUSH list:small a 1 -5000 100000 b 4294967296"),
        many("RPUSH list:big", 300, |i| {
            vec![format!("item-{i}-xxxxxxxx")]
        }),
        many("RPUSH list:long", 3, |i| {
            vec![format!("{i}{}", "y".repeat(9000))]
        }),
        words("SADD set:int 1 2 3 -100 70000 9223372036854775807"),
        many("SADD set:intbig", 600, |i| vec![i.to_string()]),
        words("SADD set:str a b c 1"),
        many("SADD set:big", 200, |i| vec![format!("member-{i}")]),
        words("HSET hash:small f v n 10 neg -3"),
        vec![
            "HSET".into(),
            "hash:longval".into(),
            "f".into(),
            "v".repeat(65),
        ],
        many("HSET hash:big", 300, |i| {
            vec![format!("f{i}"), i.to_string()]
        }),
        words("ZADD zset:small 1 a 2.5 b -3 c inf d -inf e 0.1 f"),
        many("ZADD zset:big", 200, |i| {
            vec![format!("{i}.5"), format!("m{i}")]
        }),
        vec![
            "ZADD".into(),
            "zset:longmember".into(),
            "1".into(),
            "m".repeat(65),
        ],
        // Deadlines, set every way.
        words("SET ttl:ex v EX 7200"),
        vec![
            "SET".into(),
            "ttl:pxat".into(),
            "v".into(),
            "PXAT".into(),
            later_ms.to_string(),
        ],
        words("PEXPIRE list:small 5000000"),
        words("EXPIRE hash:big 7000"),
        vec![
            "EXPIREAT".into(),
            "zset:big".into(),
            (later_ms / 1000).to_string(),
        ],
        words("SETEX ttl:setex 9000 v"),
        // Other databases.
        words("SELECT 1"),
        words("SET str:plain db1"),
        words("RPUSH list:small x y"),
        words("SET ttl:db1 v EX 8000"),
        words("SELECT 9"),
        words("ZADD z 1 a"),
        words("SELECT 15"),
        many("HSET h15", 200, |i| vec![format!("f{i}"), "v".into()]),
        words("SELECT 0"),
    ]
}

/// Writes whose log records must be their effects (a random pop, a relative deadline, a float
/// increment) and writes over both shards (MSET, DEL, RENAME, MULTI/EXEC).
fn effects() -> Vec<Vec<String>> {
    let (a, b) = pair("x:");
    let (c, d) = pair("y:");
    vec![
        many("SADD set:spop", 60, |i| vec![format!("s{i}")]),
        words("SPOP set:spop 7"),
        words("SET float 1.5 EX 6000"),
        words("INCRBYFLOAT float 0.25"),
        words("SET rel v"),
        words("EXPIRE rel 5000"),
        words("SET gone v"),
        words("DEL gone"),
        vec!["MSET".into(), a.clone(), "1".into(), b.clone(), "1".into()],
        vec!["DEL".into(), a, b.clone()],
        vec![
            "SET".into(),
            c.clone(),
            "moved".into(),
            "EX".into(),
            "4000".into(),
        ],
        vec!["RENAME".into(), c, d.clone()],
        words("MULTI"),
        vec!["INCR".into(), b],
        vec!["APPEND".into(), d, "!".into()],
        words("EXEC"),
        words("LPUSH list:popped a b c"),
        words("RPOP list:popped"),
        words("ZADD zset:popped 1 a 2 b 3 c"),
        words("ZPOPMIN zset:popped"),
        words("HSET hash:float f 1.5"),
        words("HINCRBYFLOAT hash:float f 0.125"),
        words("GETEX str:plain PX 6000000"),
    ]
    .into_iter()
    .chain(stream_effects())
    .chain(script_effects())
    .collect()
}

/// Scripts: logged by their effects (never as EVAL), on one shard, across shards, and over
/// keys they did not declare; a script of several writes as one MULTI block.
fn script_effects() -> Vec<Vec<String>> {
    let (a, b) = pair("lua:");
    let eval = |body: &str, keys: &[&str], args: &[&str]| {
        let mut v = vec!["EVAL".to_string(), body.to_string(), keys.len().to_string()];
        v.extend(keys.iter().map(|k| k.to_string()));
        v.extend(args.iter().map(|a| a.to_string()));
        v
    };
    vec![
        eval(
            "redis.call('set', KEYS[1], ARGV[1]) redis.call('expire', KEYS[1], 7000) return redis.call('incr', KEYS[2])",
            &[&a, &format!("{{{a}}}n")],
            &["10"],
        ),
        eval(
            "redis.call('incrby', KEYS[1], 5) return redis.call('rpush', KEYS[2], 'x', 'y')",
            &[&format!("{{{a}}}n"), &b],
            &[],
        ),
        eval(
            &format!("redis.call('hset', 'lua:undeclared', 'f', 'v') return redis.call('sadd', '{b}:s', 'm')"),
            &[],
            &[],
        ),
        words("EVAL return 1 0"),
    ]
}

/// Stream writes whose effects differ from their arguments: generated ids, `~` trimming,
/// group reads and claims.
fn stream_effects() -> Vec<Vec<String>> {
    let mut out: Vec<Vec<String>> = (0..120)
        .map(|i| {
            let n = i.to_string();
            ["XADD", "stream:auto", "*", "f", &n]
                .map(String::from)
                .to_vec()
        })
        .collect();
    out.extend([
        words("XADD stream:auto MAXLEN ~ 50 * f last"),
        words("XGROUP CREATE stream:auto grp 0"),
        words("XREADGROUP GROUP grp c1 COUNT 7 STREAMS stream:auto >"),
        words("XREADGROUP GROUP grp c2 COUNT 3 NOACK STREAMS stream:auto >"),
        words("XAUTOCLAIM stream:auto grp c3 0 0 COUNT 2"),
        words("XTRIM stream:auto MINID ~ 0"),
    ]);
    out
}

/// Both servers' datasets and, where both are shardis, digests.
fn assert_same_data(want: &(Dataset, String), server: &Server, what: &str) {
    let mut con = server.raw();
    assert_same(&want.0, &dataset(&mut con), what);
    assert_eq!(want.1, digest(&mut con), "{what}: DEBUG DIGEST");
}

fn snapshot(server: &Server) -> (Dataset, String) {
    let mut con = server.raw();
    let d = dataset(&mut con);
    (d, digest(&mut con))
}

/// Every file under `dir`, recursively, relative to it.
fn files_under(dir: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(p.strip_prefix(dir).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    out
}

fn shard_rdb(dir: &TempDir, i: usize, n: usize) -> PathBuf {
    dir.path().join(format!("dump-shard-{i}-of-{n}.rdb"))
}

fn aof_dir(dir: &TempDir, i: usize, n: usize) -> PathBuf {
    dir.path()
        .join("appendonlydir")
        .join(format!("shard-{i}-of-{n}"))
}

/// A shard's AOF manifest: (file name, seq, type) per line.
fn manifest(sdir: &Path) -> Vec<(String, u64, char)> {
    let text = std::fs::read_to_string(sdir.join("appendonly.aof.manifest")).unwrap();
    text.lines()
        .map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            assert!(
                w.len() == 6 && w[0] == "file" && w[2] == "seq" && w[4] == "type",
                "manifest line {l:?}"
            );
            (
                w[1].to_string(),
                w[3].parse().unwrap(),
                w[5].chars().next().unwrap(),
            )
        })
        .collect()
}

/// The last incremental file of a shard's AOF.
fn last_incr(sdir: &Path) -> PathBuf {
    let m = manifest(sdir);
    let (name, _, _) = m.iter().rev().find(|f| f.2 == 'i').expect("an incr file");
    sdir.join(name)
}

/// A fresh AOF may start with a background rewrite that writes its base (servers before
/// 4eeeb51 did, at every start): waits until none runs, and a moment for one to start, so that
/// what a test writes next lands in the incremental file.
fn wait_startup_rewrite(con: &mut RawConn) {
    let started = Instant::now();
    let end = started + Duration::from_secs(3);
    while Instant::now() < end {
        let idle = info(con, "aof_rewrite_in_progress") == "0";
        let done = info_u64(con, "aof_rewrites") >= 1;
        if idle && (done || started.elapsed() > Duration::from_millis(200)) {
            return;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Runs a redis tool; `None` (with a note) when it is not installed.
fn redis_tool(tool: &str, args: &[&str]) -> Option<(bool, String)> {
    match Command::new(tool).args(args).output() {
        Ok(out) => Some((
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("{tool} is not installed: skipping its check");
            None
        }
        Err(e) => panic!("{tool}: {e}"),
    }
}

// ---------------------------------------------------------------------------------------------
// 1. Restarts keep every type

/// SAVE writes one file per shard; a restart (after SIGKILL) loads them: every key, value and
/// deadline, in every database. A key whose deadline passed while the server was down is gone.
#[test]
fn rdb_restart_keeps_every_type() {
    let dir = TempDir::new("rdb-restart");
    let mut server = start(&dir, &[]);
    let mut con = server.raw();
    run_all(&mut con, &every_type());
    run_all(&mut con, &effects());
    ok(&mut con, &["SET", "short", "v", "PX", "400"]);
    assert_eq!(con.cmd(&["SAVE"]), b"+OK\r\n");
    for i in 0..2 {
        assert!(shard_rdb(&dir, i, 2).exists(), "no file for shard {i}");
    }
    assert!(!dir.path().join("dump.rdb").exists());
    thread::sleep(Duration::from_millis(500));
    let want = snapshot(&server);
    assert!(!want.0.contains_key(&(0, b"short".to_vec())));
    assert!(want.0.len() > 40, "{} keys", want.0.len());
    kill9(&mut server);

    let server = start(&dir, &[]);
    assert_same_data(&want, &server, "after restart from the shard RDB files");
    assert!(
        server.log().contains("DB loaded from disk"),
        "{}",
        server.log()
    );
}

/// With `appendfsync always`, every acknowledged write survives SIGKILL through the AOF alone.
/// The log holds effects (PEXPIREAT, not EXPIRE; SREM, not SPOP; SET, not INCRBYFLOAT), and a
/// second crash after more writes loses nothing either. redis-check-aof accepts each shard's
/// files.
#[test]
fn aof_restart_keeps_every_type() {
    let dir = TempDir::new("aof-restart");
    let args = ["--appendonly", "yes", "--appendfsync", "always"];
    let mut server = start(&dir, &args);
    let mut con = server.raw();
    wait_startup_rewrite(&mut con);
    run_all(&mut con, &every_type());
    run_all(&mut con, &effects());
    let want = snapshot(&server);
    kill9(&mut server);
    assert!(
        (0..2).all(|i| !shard_rdb(&dir, i, 2).exists()),
        "an RDB file was written: {:?}",
        files_under(dir.path())
    );

    let mut logged = Vec::new();
    for i in 0..2 {
        logged.extend(std::fs::read(last_incr(&aof_dir(&dir, i, 2))).unwrap());
    }
    let logged = String::from_utf8_lossy(&logged).to_ascii_lowercase();
    assert!(
        logged.contains("\r\npexpireat\r\n"),
        "no PEXPIREAT in the log"
    );
    for cmd in [
        "eval",
        "expire",
        "spop",
        "incrbyfloat",
        "hincrbyfloat",
        "getex",
        "setex",
    ] {
        assert!(
            !logged.contains(&format!("\r\n${}\r\n{cmd}\r\n", cmd.len())),
            "{cmd} logged as such, not by its effect"
        );
    }

    let mut server = start(&dir, &args);
    assert_same_data(&want, &server, "after SIGKILL, from the AOF");
    let mut con = server.raw();
    ok(&mut con, &["SET", "after", "restart"]);
    ok(&mut con, &["DEL", "str:int", "hash:big"]);
    ok(&mut con, &["SELECT", "15"]);
    ok(&mut con, &["HSET", "h15", "new", "field"]);
    ok(&mut con, &["SELECT", "0"]);
    let want = snapshot(&server);
    kill9(&mut server);
    let server = start(&dir, &args);
    assert_same_data(&want, &server, "after a second SIGKILL");
    drop(server);

    for i in 0..2 {
        let m = aof_dir(&dir, i, 2).join("appendonly.aof.manifest");
        if let Some((ok, out)) = redis_tool("redis-check-aof", &[m.to_str().unwrap()]) {
            assert!(ok, "redis-check-aof rejects shard {i}'s AOF:\n{out}");
        }
    }
}

/// With both an RDB set and an AOF, the AOF wins: a write made after the SAVE is there after
/// a restart with `appendonly yes`, and only a restart with `appendonly no` reads the RDB set.
#[test]
fn aof_wins_over_rdb() {
    let dir = TempDir::new("aof-wins");
    let args = ["--appendonly", "yes", "--appendfsync", "always"];
    let mut server = start(&dir, &args);
    let mut con = server.raw();
    run_all(&mut con, &every_type());
    assert_eq!(con.cmd(&["SAVE"]), b"+OK\r\n");
    let saved = snapshot(&server);
    ok(&mut con, &["SET", "later", "write"]);
    ok(&mut con, &["DEL", "str:plain", "list:big"]);
    ok(&mut con, &["RPUSH", "list:small", "pushed-after-save"]);
    ok(&mut con, &["PERSIST", "ttl:ex"]);
    let want = snapshot(&server);
    kill9(&mut server);

    let mut server = start(&dir, &args);
    assert_same_data(&want, &server, "appendonly yes: loaded from the AOF");
    assert_eq!(
        server.raw().cmd(&["GET", "later"]),
        b"$5\r\nwrite\r\n".to_vec()
    );
    kill9(&mut server);

    let server = start(&dir, &[]);
    assert_same_data(&saved, &server, "appendonly no: loaded from the RDB set");
}

// ---------------------------------------------------------------------------------------------
// 2. BGSAVE is a consistent cut

/// One client MSETs fresh cross-shard pairs in order while another overwrites a fixed set of
/// pairs, and a BGSAVE runs meanwhile over a dataset large enough to take a while. Restarted from
/// the files: every key written before BGSAVE was sent is there, the fresh pairs present are
/// exactly a prefix of the writer's sequence (one cut across both shards), and no pair is half
/// applied (both keys with one value, or neither).
#[test]
fn bgsave_is_a_consistent_cut_under_cross_shard_writes() {
    let dir = TempDir::new("bgsave");
    let mut server = start(&dir, &[]);
    let mut con = server.raw();
    let filler = "f".repeat(200);
    let prefill: Vec<Vec<String>> = (0..400)
        .map(|b| {
            many("MSET", 100, |i| {
                vec![format!("pre:{}", b * 100 + i), filler.clone()]
            })
        })
        .collect();
    run_all(&mut con, &prefill);
    let fixed: Vec<(String, String)> = (0..50).map(|i| pair(&format!("fixed:{i}:"))).collect();

    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicU64::new(0));
    let addr = server.addr();
    let fresh = {
        let (stop, acked) = (stop.clone(), acked.clone());
        thread::spawn(move || {
            let mut con = RawConn::connect(addr);
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let (a, b) = pair(&format!("fresh:{n}:"));
                let v = format!("v{n}");
                assert_eq!(con.cmd(&["MSET", &a, &v, &b, &v]), b"+OK\r\n");
                acked.store(n + 1, Ordering::SeqCst);
                n += 1;
            }
            n
        })
    };
    let overwriter = {
        let (stop, fixed) = (stop.clone(), fixed.clone());
        thread::spawn(move || {
            let mut con = RawConn::connect(addr);
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let (a, b) = &fixed[n as usize % fixed.len()];
                let v = format!("w{n}");
                assert_eq!(con.cmd(&["MSET", a, &v, b, &v]), b"+OK\r\n");
                n += 1;
            }
        })
    };
    wait_for(Duration::from_secs(10), "the writers to start", || {
        acked.load(Ordering::SeqCst) > 50
    });
    let saves = info_u64(&mut con, "rdb_saves");
    let before = acked.load(Ordering::SeqCst);
    assert_eq!(simple(&con.cmd(&["BGSAVE"])), "Background saving started");
    let mut seen_running = false;
    wait_for(Duration::from_secs(30), "the BGSAVE to finish", || {
        let running = info(&mut con, "rdb_bgsave_in_progress") == "1";
        seen_running |= running;
        !running
    });
    stop.store(true, Ordering::Relaxed);
    let written = fresh.join().unwrap();
    overwriter.join().unwrap();
    assert_eq!(info(&mut con, "rdb_last_bgsave_status"), "ok");
    assert_eq!(info_u64(&mut con, "rdb_saves"), saves + 1);
    if !seen_running {
        eprintln!("note: the BGSAVE finished before INFO could see it running");
    }
    kill9(&mut server);

    let server = start(&dir, &[]);
    let mut con = server.raw();
    let pre: Vec<String> = (0..40_000).map(|i| format!("pre:{i}")).collect();
    let got = mget(&mut con, &pre);
    assert!(
        got.iter().all(|v| v.as_deref() == Some(filler.as_bytes())),
        "prefill lost"
    );
    let mut keys = Vec::new();
    for n in 0..written {
        let (a, b) = pair(&format!("fresh:{n}:"));
        keys.push(a);
        keys.push(b);
    }
    let got = mget(&mut con, &keys);
    let present: Vec<bool> = got
        .chunks(2)
        .enumerate()
        .map(|(n, p)| match (&p[0], &p[1]) {
            (Some(x), Some(y)) => {
                assert_eq!(x, y, "fresh pair {n} holds two values");
                assert_eq!(x, format!("v{n}").as_bytes());
                true
            }
            (None, None) => false,
            _ => panic!("fresh pair {n} half applied: {p:?}"),
        })
        .collect();
    let cut = present.iter().take_while(|&&p| p).count();
    assert!(
        present[cut..].iter().all(|&p| !p),
        "the fresh pairs in the file are not a prefix: first missing {cut}, but later ones present"
    );
    assert!(
        cut as u64 >= before,
        "pairs acknowledged before BGSAVE are missing: {cut} loaded, {before} acknowledged"
    );
    let flat: Vec<String> = fixed
        .iter()
        .flat_map(|(a, b)| [a.clone(), b.clone()])
        .collect();
    for (i, p) in mget(&mut con, &flat).chunks(2).enumerate() {
        assert_eq!(p[0], p[1], "overwritten pair {i} is half applied");
    }
    eprintln!("bgsave: {written} pairs written, {before} before BGSAVE, {cut} in the file");
}

// ---------------------------------------------------------------------------------------------
// 3. Another shard count

/// Shard RDB files saved by 2 shards load into 1 and into 3 shards (keys re-spread by slot),
/// and a set saved by 3 shards, being newer, is what a 2-shard start then loads.
#[test]
fn rdb_files_load_with_another_shard_count() {
    let dir = TempDir::new("respread-rdb");
    let mut server = start(&dir, &[]);
    let mut con = server.raw();
    run_all(&mut con, &every_type());
    run_all(&mut con, &effects());
    assert_eq!(con.cmd(&["SAVE"]), b"+OK\r\n");
    let want = snapshot(&server);
    kill9(&mut server);

    let mut server = start(&dir, &["--shards", "1"]);
    assert_same_data(&want, &server, "2 shards' files loaded by 1 shard");
    kill9(&mut server);
    let mut server = start(&dir, &["--shards", "3", "--io-memory", "512kb"]);
    assert_same_data(&want, &server, "2 shards' files loaded by 3 shards");
    let mut con = server.raw();
    ok(&mut con, &["SET", "saved", "by-three"]);
    assert_eq!(con.cmd(&["SAVE"]), b"+OK\r\n");
    for i in 0..3 {
        assert!(shard_rdb(&dir, i, 3).exists());
    }
    let want = snapshot(&server);
    kill9(&mut server);
    let server = start(&dir, &[]);
    assert_same_data(&want, &server, "3 shards' (newer) files loaded by 2 shards");
}

/// An AOF written by 2 shards loads into 1 shard, which then keeps its own AOF (the 2-shard
/// directories are gone); written to further and loaded into 3 shards, nothing is lost.
#[test]
fn aof_loads_with_another_shard_count() {
    let dir = TempDir::new("respread-aof");
    let aof = ["--appendonly", "yes", "--appendfsync", "always"];
    let with = |extra: &[&'static str]| -> Vec<&'static str> {
        let mut v = aof.to_vec();
        v.extend_from_slice(extra);
        v
    };
    let mut server = start(&dir, &aof);
    let mut con = server.raw();
    run_all(&mut con, &every_type());
    run_all(&mut con, &effects());
    let want = snapshot(&server);
    kill9(&mut server);

    let mut server = start(&dir, &with(&["--shards", "1"]));
    assert_same_data(&want, &server, "2 shards' AOF loaded by 1 shard");
    assert!(aof_dir(&dir, 0, 1).exists());
    assert!(
        !aof_dir(&dir, 0, 2).exists() && !aof_dir(&dir, 1, 2).exists(),
        "old AOF directories kept: {:?}",
        files_under(dir.path())
    );
    let mut con = server.raw();
    ok(&mut con, &["SET", "written", "by-one"]);
    ok(&mut con, &["DEL", "hash:small"]);
    let want = snapshot(&server);
    kill9(&mut server);

    let mut server = start(&dir, &with(&["--shards", "3", "--io-memory", "512kb"]));
    assert_same_data(&want, &server, "1 shard's AOF loaded by 3 shards");
    let mut con = server.raw();
    ok(&mut con, &["SET", "written", "by-three"]);
    let want = snapshot(&server);
    kill9(&mut server);
    let server = start(&dir, &aof);
    assert_same_data(&want, &server, "3 shards' AOF loaded by 2 shards");
}

// ---------------------------------------------------------------------------------------------
// 4. Files exchanged with redis-server

/// Whether this shardis binary has `--export-rdb`.
fn has_export_rdb() -> bool {
    let out = Command::new(env!("CARGO_BIN_EXE_shardis"))
        .arg("--help")
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).contains("export-rdb")
}

/// A dump.rdb SAVEd by redis-server (every type, small and large encodings, deadlines, several
/// databases) loads into shardis key for key; shardis's own shard files, SAVEd from that, load
/// into redis-server one by one and together hold the same data; with `--export-rdb`, the one
/// exported file loads into redis-server whole.
#[test]
fn redis_dump_rdb_loads_and_shard_files_load_in_redis() {
    let rdir = TempDir::new("redis-made");
    let redis = RedisServer::start_with(&["--dir", rdir.s()]);
    let mut r = redis.raw();
    run_all(&mut r, &every_type());
    run_all(&mut r, &effects());
    let want = dataset(&mut r);
    assert_eq!(r.cmd(&["SAVE"]), b"+OK\r\n");
    drop(r);
    drop(redis);

    let dir = TempDir::new("from-redis");
    std::fs::copy(rdir.path().join("dump.rdb"), dir.path().join("dump.rdb")).unwrap();
    let mut server = start(&dir, &[]);
    let mut con = server.raw();
    assert_same(
        &want,
        &dataset(&mut con),
        "redis-server's dump.rdb loaded by shardis",
    );
    let digest_from_redis = digest(&mut con);
    kill9(&mut server);
    let server = start(&dir, &["--shards", "3", "--io-memory", "512kb"]);
    let mut con = server.raw();
    assert_same(
        &want,
        &dataset(&mut con),
        "redis-server's dump.rdb loaded by 3 shards",
    );
    assert_eq!(digest(&mut con), digest_from_redis);
    drop(con);
    drop(server);

    // Back: each shard file alone is an RDB file redis-server loads.
    let mut server = start(&dir, &[]);
    assert_eq!(server.raw().cmd(&["SAVE"]), b"+OK\r\n");
    kill9(&mut server);
    let mut union = Dataset::new();
    for i in 0..2 {
        let name = format!("dump-shard-{i}-of-2.rdb");
        let redis = RedisServer::start_with(&["--dir", dir.s(), "--dbfilename", &name]);
        let part = dataset(&mut redis.raw());
        assert!(!part.is_empty(), "redis-server loaded nothing from {name}");
        for (k, v) in part {
            assert!(
                union.insert(k.clone(), v).is_none(),
                "{k:?} in both shard files"
            );
        }
    }
    assert_same(
        &want,
        &union,
        "shardis's shard files loaded by redis-server",
    );

    if !has_export_rdb() {
        eprintln!("shardis has no --export-rdb yet: skipping the single-file export check");
        return;
    }
    let out = TempDir::new("exported");
    let file = out.path().join("dump.rdb");
    let (status, log) = run_to_exit(&["--dir", dir.s(), "--export-rdb", file.to_str().unwrap()]);
    assert!(status.success(), "--export-rdb failed ({status}):\n{log}");
    assert!(!log.contains("panicked"), "{log}");
    let redis = RedisServer::start_with(&["--dir", out.s()]);
    assert_same(
        &want,
        &dataset(&mut redis.raw()),
        "--export-rdb's file loaded by redis-server",
    );
}

// ---------------------------------------------------------------------------------------------
// 5. Damaged files

/// Starts shardis on `dir` expecting it to refuse: it exits non-zero, and its output names
/// `file` and an offset and shows no panic.
fn assert_refused(dir: &TempDir, extra: &[&str], file: &str, what: &str) -> String {
    let mut args = vec!["--dir", dir.s()];
    args.extend_from_slice(extra);
    let (status, log) = run_to_exit(&args);
    assert!(
        !status.success(),
        "{what}: started anyway ({status}):\n{log}"
    );
    assert!(!log.contains("panicked"), "{what}: panicked:\n{log}");
    assert!(
        log.contains(file),
        "{what}: the message does not name {file}:\n{log}"
    );
    assert!(
        log.contains("offset"),
        "{what}: the message gives no offset:\n{log}"
    );
    log
}

/// A truncated shard file, shard files with a flipped bit (in the header, in a value, in the
/// checksum) and a garbage dump.rdb each make start-up fail with a message naming the file
/// and the offset, never a panic.
#[test]
fn damaged_rdb_files_are_refused() {
    let dir = TempDir::new("damaged");
    let mut server = start(&dir, &[]);
    let mut con = server.raw();
    run_all(&mut con, &every_type());
    assert_eq!(con.cmd(&["SAVE"]), b"+OK\r\n");
    kill9(&mut server);
    let good: Vec<Vec<u8>> = (0..2)
        .map(|i| std::fs::read(shard_rdb(&dir, i, 2)).unwrap())
        .collect();

    let file1 = shard_rdb(&dir, 1, 2);
    std::fs::write(&file1, &good[1][..good[1].len() / 2]).unwrap();
    assert_refused(&dir, &[], "dump-shard-1-of-2.rdb", "truncated shard 1");
    std::fs::write(&file1, &good[1][..good[1].len() - 3]).unwrap();
    assert_refused(
        &dir,
        &[],
        "dump-shard-1-of-2.rdb",
        "shard 1 cut in its checksum",
    );
    std::fs::write(&file1, &good[1]).unwrap();

    let file0 = shard_rdb(&dir, 0, 2);
    let len = good[0].len();
    for (at, what) in [
        (6, "a flipped bit in the version"),
        (len / 2, "a flipped bit in the middle"),
        (len - 9, "a flipped bit before the checksum"),
        (len - 2, "a flipped bit in the checksum"),
    ] {
        let mut bad = good[0].clone();
        bad[at] ^= 0x10;
        std::fs::write(&file0, &bad).unwrap();
        assert_refused(&dir, &[], "dump-shard-0-of-2.rdb", what);
    }
    std::fs::write(&file0, &good[0]).unwrap();
    let server = start(&dir, &[]);
    assert!(
        server.raw().cmd(&["DBSIZE"]) != b":0\r\n",
        "the repaired set loads"
    );
    drop(server);

    let garbage = TempDir::new("garbage");
    std::fs::write(
        garbage.path().join("dump.rdb"),
        b"REDIS0010\xfa\x09redis-ver\x057.0.0\xfe\x00\xfb\x10\x00\x00\x03key\xff\xff\xff\xffthis is not an rdb file at all",
    )
    .unwrap();
    assert_refused(&garbage, &[], "dump.rdb", "a garbage dump.rdb");
    std::fs::write(garbage.path().join("dump.rdb"), b"not even a header").unwrap();
    assert_refused(&garbage, &[], "dump.rdb", "a dump.rdb without a header");
}

// ---------------------------------------------------------------------------------------------
// 6. A torn AOF tail

/// Half a command appended to a shard's last incremental file (what a crash in mid-write
/// leaves): with `aof-load-truncated no` start-up fails naming the file; with `yes` (the
/// default) the data loads, the log says the file was truncated, and the AOF is repaired (a
/// later start with `no` loads it).
#[test]
fn torn_aof_tail() {
    let dir = TempDir::new("torn");
    let args = ["--appendonly", "yes", "--appendfsync", "always"];
    let mut server = start(&dir, &args);
    let mut con = server.raw();
    wait_startup_rewrite(&mut con);
    run_all(&mut con, &every_type());
    let want = snapshot(&server);
    kill9(&mut server);

    // The tail is torn whether or not the file holds whole commands before it.
    let incr = last_incr(&aof_dir(&dir, 0, 2));
    let mut torn = std::fs::read(&incr).unwrap();
    torn.extend_from_slice(b"*3\r\n$3\r\nSET\r\n$4\r\nhalf\r\n$10\r\nwrit");
    std::fs::write(&incr, &torn).unwrap();
    let name = incr.file_name().unwrap().to_str().unwrap().to_string();

    let mut refused = args.to_vec();
    refused.extend(["--aof-load-truncated", "no"]);
    assert_refused(
        &dir,
        &refused,
        &name,
        "torn tail with aof-load-truncated no",
    );
    assert_eq!(
        std::fs::read(&incr).unwrap(),
        torn,
        "refusing changed the file"
    );

    let server = start(&dir, &args);
    assert_same_data(&want, &server, "torn tail truncated");
    let log = server.log();
    assert!(
        log.contains("truncat"),
        "the log does not say it truncated:\n{log}"
    );
    assert!(!log.contains("panicked"), "{log}");
    let mut server = server;
    kill9(&mut server);
    // The file was repaired (or rewritten): a strict start now loads it.
    let server = start(&dir, &refused);
    assert_same_data(
        &want,
        &server,
        "after the repair, with aof-load-truncated no",
    );
}

// ---------------------------------------------------------------------------------------------
// 7. Crashes

/// What one writer sent and what the server acknowledged, and when.
struct Writes {
    /// SETs acknowledged: (key, value, when the reply arrived).
    singles: Vec<(String, String, Instant)>,
    /// Cross-shard MSET pairs sent: (key a, key b, value, when the reply arrived if it did).
    pairs: Vec<(String, String, String, Option<Instant>)>,
    /// When the server was killed under this writer (set by the test).
    killed_at: Instant,
}

/// Writes unique keys (two SETs, then a cross-shard MSET pair, over and over) until the
/// connection breaks or `stop` is set, recording each write once its reply arrived.
fn writer(addr: std::net::SocketAddr, tag: String, stop: Arc<AtomicBool>) -> Writes {
    let mut con = RawConn::connect(addr);
    let mut w = Writes {
        singles: Vec::new(),
        pairs: Vec::new(),
        killed_at: Instant::now(),
    };
    for n in 0u64.. {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let value = format!("{tag}.{n}");
        let (cmd, pair_keys) = if n % 3 == 2 {
            let (a, b) = pair(&format!("p.{tag}.{n}."));
            w.pairs.push((a.clone(), b.clone(), value.clone(), None));
            (encode(&["MSET", &a, &value, &b, &value]), true)
        } else {
            (encode(&["SET", &format!("s.{tag}.{n}"), &value]), false)
        };
        if con.send_checked(&cmd).is_err() {
            break;
        }
        match con.try_read_reply() {
            Ok(r) if r == b"+OK\r\n" => {
                if pair_keys {
                    w.pairs.last_mut().unwrap().3 = Some(Instant::now());
                } else {
                    w.singles
                        .push((format!("s.{tag}.{n}"), value, Instant::now()));
                }
            }
            Ok(r) => panic!("{tag}: write {n} answered {}", escape(&r)),
            Err(_) => break,
        }
    }
    w.killed_at = Instant::now();
    w
}

/// Every acknowledged SET and MSET is there with its value — except, with `grace`, those
/// acknowledged less than `grace` before their server was killed, which may be absent; every
/// pair sent is whole or absent. Returns (acknowledged writes kept, acknowledged writes lost
/// within the grace, unacknowledged pairs found whole).
fn check_writes(
    con: &mut RawConn,
    all: &[Writes],
    grace: Option<Duration>,
    what: &str,
) -> (usize, usize, usize) {
    let mut keys = Vec::new();
    for w in all {
        keys.extend(w.singles.iter().map(|(k, _, _)| k.clone()));
        for (a, b, _, _) in &w.pairs {
            keys.push(a.clone());
            keys.push(b.clone());
        }
    }
    let got = mget(con, &keys);
    let mut at = 0;
    let (mut kept, mut forgiven, mut unacked_whole) = (0, 0, 0);
    let mut lost = Vec::new();
    for w in all {
        let may_lose = |t: Instant| grace.is_some_and(|g| t + g > w.killed_at);
        for (i, (k, v, t)) in w.singles.iter().enumerate() {
            match got[at].as_deref() {
                Some(x) if x == v.as_bytes() => kept += 1,
                None if may_lose(*t) => forgiven += 1,
                x => lost.push(format!(
                    "{k} = {:?}: acknowledged {:?} before the kill, {} from its writer's last",
                    x.map(escape),
                    w.killed_at - *t,
                    w.singles.len() - 1 - i
                )),
            }
            at += 1;
        }
        for (a, b, v, t) in &w.pairs {
            let (x, y) = (got[at].as_deref(), got[at + 1].as_deref());
            at += 2;
            match (x, y) {
                (Some(x), Some(y)) if x == v.as_bytes() && y == v.as_bytes() => {
                    if t.is_some() {
                        kept += 1;
                    } else {
                        unacked_whole += 1;
                    }
                }
                (None, None) if t.is_none() => {}
                (None, None) if may_lose(t.unwrap()) => forgiven += 1,
                (None, None) => lost.push(format!(
                    "MSET {a} {b} {v}: acknowledged {:?} before the kill",
                    w.killed_at - t.unwrap()
                )),
                _ => panic!(
                    "{what}: MSET {a} {b} {v} (acknowledged: {}) half applied: {:?} / {:?}",
                    t.is_some(),
                    x.map(escape),
                    y.map(escape)
                ),
            }
        }
    }
    assert!(
        lost.is_empty(),
        "{what}: {} acknowledged writes lost ({kept} kept): {:#?}",
        lost.len(),
        &lost[..lost.len().min(20)]
    );
    (kept, forgiven, unacked_whole)
}

fn crash_rounds() -> usize {
    std::env::var("CRASH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2)
}

/// Rounds of: writers on 3 connections, SIGKILL at a random moment `run_ms` in, restart from
/// the AOF, check everything written in every round so far (see `check_writes` for `grace`).
fn crash_rounds_with(fsync: &str, run_ms: std::ops::Range<u64>, grace: Option<Duration>) {
    let dir = TempDir::new(&format!("crash-{fsync}"));
    let args = ["--appendonly", "yes", "--appendfsync", fsync];
    let mut all: Vec<Writes> = Vec::new();
    let mut server = start(&dir, &args);
    let mut rng = rand::thread_rng();
    for round in 0..crash_rounds() {
        let stop = Arc::new(AtomicBool::new(false));
        let writers: Vec<_> = (0..3)
            .map(|t| {
                let (addr, stop) = (server.addr(), stop.clone());
                thread::spawn(move || writer(addr, format!("r{round}t{t}"), stop))
            })
            .collect();
        thread::sleep(Duration::from_millis(rng.gen_range(run_ms.clone())));
        let killed_at = Instant::now();
        kill9(&mut server);
        for w in writers {
            let mut w = w.join().unwrap();
            w.killed_at = killed_at;
            all.push(w);
        }
        server = start(&dir, &args);
        let what = format!("{fsync} round {round}");
        let (kept, forgiven, whole) = check_writes(&mut server.raw(), &all, grace, &what);
        eprintln!(
            "{what}: {kept} acknowledged writes kept, {forgiven} lost within {grace:?} of the \
             kill, {whole} unacknowledged pairs landed whole"
        );
        assert!(kept > 0, "nothing was acknowledged in round {round}");
        assert!(!server.log().contains("panicked"), "{}", server.log());
    }
}

/// `appendfsync always`: an acknowledged write survives SIGKILL, and a cross-shard MSET in
/// flight at the kill is whole or absent.
#[test]
fn crash_with_appendfsync_always_loses_nothing_acknowledged() {
    crash_rounds_with("always", 100..600, None);
}

/// `appendfsync everysec`, the promise: writers run 3.1–3.6 s before SIGKILL; everything
/// acknowledged more than 3 s before the kill is there, and no MSET is half applied.
#[test]
fn crash_with_appendfsync_everysec_keeps_all_but_the_last_seconds() {
    crash_rounds_with("everysec", 3100..3600, Some(Duration::from_secs(3)));
}

/// `appendfsync everysec`, as Redis does it: SIGKILL leaves the page cache, and Redis writes the
/// log before it sends the replies, so a process crash loses nothing acknowledged.
#[test]
fn crash_with_appendfsync_everysec_loses_nothing_acknowledged() {
    crash_rounds_with("everysec", 100..600, None);
}

// ---------------------------------------------------------------------------------------------
// 8. BGREWRITEAOF

/// Two BGREWRITEAOFs while writers run (and a BGSAVE SCHEDULE while the first runs), then
/// SIGKILL in mid-writing: every shard's directory holds exactly the files its manifest lists,
/// with a new base; `aof_rewrites` counted both; and nothing acknowledged is lost.
#[test]
fn bgrewriteaof_under_load_loses_nothing() {
    let dir = TempDir::new("rewrite");
    let args = ["--appendonly", "yes", "--appendfsync", "always"];
    let mut server = start(&dir, &args);
    let mut con = server.raw();
    wait_startup_rewrite(&mut con);
    run_all(&mut con, &every_type());
    let base = snapshot(&server);
    let rewrites = info_u64(&mut con, "aof_rewrites");
    let saves = info_u64(&mut con, "rdb_saves");
    let base_seq: Vec<u64> = (0..2)
        .map(|i| {
            let m = manifest(&aof_dir(&dir, i, 2));
            m.iter().find(|f| f.2 == 'b').map_or(0, |f| f.1)
        })
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..2)
        .map(|t| {
            let (addr, stop) = (server.addr(), stop.clone());
            thread::spawn(move || writer(addr, format!("w{t}"), stop))
        })
        .collect();
    for round in 0..2u64 {
        thread::sleep(Duration::from_millis(200));
        let r = con.cmd(&["BGREWRITEAOF"]);
        assert_eq!(simple(&r), "Background append only file rewriting started");
        if round == 0 {
            let r = simple(&con.cmd(&["BGSAVE", "SCHEDULE"]));
            assert!(
                r == "Background saving scheduled" || r == "Background saving started",
                "BGSAVE SCHEDULE: {r}"
            );
        }
        wait_for(Duration::from_secs(30), "the rewrite to finish", || {
            info(&mut con, "aof_rewrite_in_progress") == "0"
                && info_u64(&mut con, "aof_rewrites") > rewrites + round
        });
        assert_eq!(info(&mut con, "aof_last_bgrewrite_status"), "ok");
    }
    assert_eq!(info_u64(&mut con, "aof_rewrites"), rewrites + 2);
    wait_for(Duration::from_secs(30), "the scheduled BGSAVE", || {
        info_u64(&mut con, "rdb_saves") > saves
    });
    assert_eq!(info(&mut con, "aof_last_write_status"), "ok");
    thread::sleep(Duration::from_millis(200));
    kill9(&mut server);
    let all: Vec<Writes> = writers.into_iter().map(|w| w.join().unwrap()).collect();

    for (i, seq_before) in base_seq.iter().enumerate() {
        let sdir = aof_dir(&dir, i, 2);
        let m = manifest(&sdir);
        let bases: Vec<_> = m.iter().filter(|f| f.2 == 'b').collect();
        assert_eq!(bases.len(), 1, "shard {i}: manifest {m:?}");
        assert_eq!(
            bases[0].1,
            seq_before + 2,
            "shard {i}: the base was not rewritten twice: {m:?}"
        );
        assert!(bases[0].0.ends_with(".base.rdb"), "{m:?}");
        let listed: BTreeSet<String> = m.iter().map(|f| f.0.clone()).collect();
        let mut present = files_under(&sdir);
        present.remove("appendonly.aof.manifest");
        assert_eq!(present, listed, "shard {i}: files beside the manifest's");
        let base = sdir.join(&bases[0].0);
        if let Some((ok, out)) = redis_tool("redis-check-rdb", &[base.to_str().unwrap()]) {
            assert!(ok, "redis-check-rdb rejects {}:\n{out}", base.display());
        }
    }

    let server = start(&dir, &args);
    let mut con = server.raw();
    let (acked, _, _) = check_writes(&mut con, &all, None, "after rewrites and SIGKILL");
    assert!(acked > 0);
    let now = dataset(&mut con);
    for (k, v) in &base.0 {
        assert_eq!(now.get(k), Some(v), "{k:?} changed");
    }
    eprintln!("rewrite: {acked} acknowledged writes kept");
}

// ---------------------------------------------------------------------------------------------
// 9. Save points, SHUTDOWN, LASTSAVE, DEBUG, INFO, CONFIG SET appendonly

/// `--save "1 1"`: a write is saved within about two seconds without being asked, and the
/// files load after SIGKILL.
#[test]
fn save_point_saves_after_a_write() {
    let dir = TempDir::new("savepoint");
    let mut server = start(&dir, &["--save", "1 1"]);
    let mut con = server.raw();
    assert_eq!(info_u64(&mut con, "rdb_saves"), 0);
    ok(&mut con, &["SET", "k", "v"]);
    ok(&mut con, &["RPUSH", "l", "a", "b"]);
    let written = Instant::now();
    wait_for(Duration::from_secs(5), "the save point to save", || {
        info_u64(&mut con, "rdb_saves") >= 1
            && info_u64(&mut con, "rdb_changes_since_last_save") == 0
    });
    let took = written.elapsed();
    assert!(took < Duration::from_millis(2500), "saved after {took:?}");
    assert!((0..2).all(|i| shard_rdb(&dir, i, 2).exists()));
    let want = snapshot(&server);
    kill9(&mut server);
    let server = start(&dir, &[]);
    assert_same_data(&want, &server, "saved by the save point");
}

/// Sends SHUTDOWN (with `mode`) and waits for the process to exit with status 0.
fn shutdown(server: &mut Server, mode: &[&str]) {
    let mut con = server.raw();
    let mut args = vec!["SHUTDOWN"];
    args.extend_from_slice(mode);
    con.send(&encode(&args));
    let rest = con.read_until_closed();
    assert!(
        rest.is_empty(),
        "SHUTDOWN {mode:?} answered {}",
        escape(&rest)
    );
    let status = server.wait_exit(Duration::from_secs(20));
    assert!(
        status.is_some_and(|s| s.success()),
        "SHUTDOWN {mode:?}: {status:?}\n{}",
        server.log()
    );
}

/// SHUTDOWN saves when save points are configured and not otherwise; SHUTDOWN SAVE always
/// saves, SHUTDOWN NOSAVE never.
#[test]
fn shutdown_save_and_nosave() {
    let dir = TempDir::new("shutdown");
    let points = ["--save", "3600 1"];
    let get = |server: &Server, key: &str| server.raw().cmd(&["GET", key]);

    let mut server = start(&dir, &points);
    ok(&mut server.raw(), &["SET", "k1", "v"]);
    shutdown(&mut server, &[]);
    assert!(
        (0..2).all(|i| shard_rdb(&dir, i, 2).exists()),
        "no save on SHUTDOWN with save points"
    );

    let mut server = start(&dir, &[]);
    assert_eq!(get(&server, "k1"), b"$1\r\nv\r\n", "k1 saved by SHUTDOWN");
    ok(&mut server.raw(), &["SET", "k2", "v"]);
    shutdown(&mut server, &[]);

    let mut server = start(&dir, &[]);
    assert_eq!(
        get(&server, "k2"),
        b"$-1\r\n",
        "SHUTDOWN saved without save points"
    );
    ok(&mut server.raw(), &["SET", "k3", "v"]);
    shutdown(&mut server, &["SAVE"]);

    let mut server = start(&dir, &points);
    assert_eq!(
        get(&server, "k3"),
        b"$1\r\nv\r\n",
        "SHUTDOWN SAVE did not save"
    );
    ok(&mut server.raw(), &["SET", "k4", "v"]);
    shutdown(&mut server, &["NOSAVE"]);

    let server = start(&dir, &[]);
    assert_eq!(get(&server, "k4"), b"$-1\r\n", "SHUTDOWN NOSAVE saved");
    assert_eq!(get(&server, "k3"), b"$1\r\nv\r\n");
    assert_eq!(get(&server, "k1"), b"$1\r\nv\r\n");
}

/// INFO persistence counts changes and saves; LASTSAVE moves with SAVE and BGSAVE; a BGSAVE
/// while one runs is refused; DEBUG RELOAD keeps the data; DEBUG OBJECT shows the encoding and
/// the serialized length Redis shows for the same values; redis-check-rdb accepts every shard
/// file.
#[test]
fn save_commands_info_and_debug() {
    let dir = TempDir::new("commands");
    let server = start(&dir, &[]);
    let mut con = server.raw();
    let text = String::from_utf8(bulk(&con.cmd(&["INFO", "persistence"])).unwrap()).unwrap();
    for field in [
        "loading",
        "rdb_changes_since_last_save",
        "rdb_bgsave_in_progress",
        "rdb_last_save_time",
        "rdb_last_bgsave_status",
        "rdb_saves",
        "aof_enabled",
        "aof_rewrite_in_progress",
        "aof_rewrites",
        "aof_last_write_status",
    ] {
        assert!(
            text.contains(&format!("\r\n{field}:")),
            "INFO persistence lacks {field}:\n{text}"
        );
    }
    assert_eq!(info(&mut con, "aof_enabled"), "0");
    assert_eq!(info(&mut con, "rdb_bgsave_in_progress"), "0");
    assert_eq!(info(&mut con, "rdb_saves"), "0");

    ok(&mut con, &["SET", "a", "1"]);
    ok(&mut con, &["SET", "b", "2"]);
    ok(&mut con, &["INCR", "a"]);
    ok(&mut con, &["GET", "a"]);
    wait_for(
        Duration::from_secs(3),
        "rdb_changes_since_last_save to be 3",
        || info_u64(&mut con, "rdb_changes_since_last_save") == 3,
    );
    let first = int(&con.cmd(&["LASTSAVE"]));
    thread::sleep(Duration::from_millis(1100));
    assert_eq!(con.cmd(&["SAVE"]), b"+OK\r\n");
    let second = int(&con.cmd(&["LASTSAVE"]));
    assert!(second > first, "LASTSAVE {first} then {second}");
    assert!(
        (second - now_ms() as i64 / 1000).abs() <= 2,
        "LASTSAVE {second}"
    );
    assert_eq!(info(&mut con, "rdb_last_save_time"), second.to_string());
    assert_eq!(info(&mut con, "rdb_saves"), "1");
    wait_for(
        Duration::from_secs(3),
        "rdb_changes_since_last_save to be 0",
        || info_u64(&mut con, "rdb_changes_since_last_save") == 0,
    );

    run_all(&mut con, &every_type());
    thread::sleep(Duration::from_millis(1100));
    con.send(&[encode(&["BGSAVE"]), encode(&["BGSAVE"]), encode(&["SAVE"])].concat());
    assert_eq!(simple(&con.read_reply()), "Background saving started");
    for cmd in ["BGSAVE", "SAVE"] {
        let r = con.read_reply();
        assert!(
            r == b"-ERR Background save already in progress\r\n"
                || r == b"+Background saving started\r\n"
                || r == b"+OK\r\n",
            "{cmd} during BGSAVE: {}",
            escape(&r)
        );
    }
    wait_for(Duration::from_secs(30), "the BGSAVE to finish", || {
        info(&mut con, "rdb_bgsave_in_progress") == "0"
    });
    assert_eq!(info(&mut con, "rdb_last_bgsave_status"), "ok");
    let third = int(&con.cmd(&["LASTSAVE"]));
    assert!(
        third > second,
        "LASTSAVE after BGSAVE: {second} then {third}"
    );

    for i in 0..2 {
        let f = shard_rdb(&dir, i, 2);
        if let Some((ok, out)) = redis_tool("redis-check-rdb", &[f.to_str().unwrap()]) {
            assert!(
                ok && out.contains("RDB looks OK"),
                "redis-check-rdb on {}:\n{out}",
                f.display()
            );
        }
    }

    run_all(&mut con, &effects());
    let want = snapshot(&server);
    let saves = info_u64(&mut con, "rdb_saves");
    assert_eq!(con.cmd(&["DEBUG", "RELOAD"]), b"+OK\r\n");
    assert_same_data(&want, &server, "after DEBUG RELOAD");
    assert!(
        info_u64(&mut con, "rdb_saves") > saves,
        "DEBUG RELOAD did not save"
    );

    // DEBUG OBJECT against Redis for values whose RDB form is the same on both.
    let redis = RedisServer::start();
    let mut r = redis.raw();
    run_all(&mut r, &every_type());
    let field = |line: &[u8], name: &str| -> String {
        let line = simple(line);
        line.split(' ')
            .find_map(|w| w.strip_prefix(name)?.strip_prefix(':').map(String::from))
            .unwrap_or_else(|| panic!("no {name} in {line}"))
    };
    for key in [
        "str:plain",
        "str:int",
        "str:45",
        "str:lzf",
        "str:noise",
        "hll:dense",
        "list:small",
        "list:big",
        "set:int",
        "set:intbig",
        "hash:small",
        "zset:small",
        "zset:big",
    ] {
        let ours = con.cmd(&["DEBUG", "OBJECT", key]);
        let theirs = r.cmd(&["DEBUG", "OBJECT", key]);
        for name in ["encoding", "serializedlength"] {
            assert_eq!(
                field(&ours, name),
                field(&theirs, name),
                "DEBUG OBJECT {key} {name}: ours {} theirs {}",
                escape(&ours),
                escape(&theirs)
            );
        }
    }
    assert_eq!(
        con.cmd(&["DEBUG", "OBJECT", "nosuchkey"]),
        b"-ERR no such key\r\n"
    );
}

/// CONFIG SET appendonly yes at run time writes an AOF holding the data so far (through a
/// rewrite); later writes are appended; after SIGKILL a start with `appendonly yes` has both.
#[test]
fn config_set_appendonly_at_run_time() {
    let dir = TempDir::new("config-aof");
    let mut server = start(&dir, &[]);
    let mut con = server.raw();
    run_all(&mut con, &every_type());
    assert_eq!(con.cmd(&["CONFIG", "SET", "appendonly", "yes"]), b"+OK\r\n");
    wait_for(Duration::from_secs(30), "the AOF to be on", || {
        info(&mut con, "aof_enabled") == "1" && info(&mut con, "aof_rewrite_in_progress") == "0"
    });
    assert!(info_u64(&mut con, "aof_base_size") > 0);
    let size = info_u64(&mut con, "aof_current_size");
    run_all(&mut con, &effects());
    ok(&mut con, &["SET", "after", "switch"]);
    assert!(
        info_u64(&mut con, "aof_current_size") > size,
        "aof_current_size did not grow"
    );
    assert_eq!(info(&mut con, "aof_last_write_status"), "ok");
    let want = snapshot(&server);
    kill9(&mut server);
    assert!(aof_dir(&dir, 0, 2).join("appendonly.aof.manifest").exists());
    assert!(aof_dir(&dir, 1, 2).join("appendonly.aof.manifest").exists());
    let server = start(&dir, &["--appendonly", "yes"]);
    assert_same_data(&want, &server, "AOF turned on at run time");
}

/// CONFIG SET appendfsync always on a running AOF (started with everysec): the next writes on
/// both shards are answered, and survive SIGKILL.
#[test]
fn config_set_appendfsync_always_at_run_time() {
    let dir = TempDir::new("config-fsync");
    let mut server = start(&dir, &["--appendonly", "yes", "--appendfsync", "everysec"]);
    // Each command on a fresh connection (connections are spread over the shards), as
    // redis-cli would send them.
    let one = |args: &[&str]| -> Result<Vec<u8>, String> {
        let mut con = server.raw();
        con.set_read_timeout(Duration::from_secs(5));
        con.send(&encode(args));
        con.try_read_reply()
    };
    thread::sleep(Duration::from_millis(1100));
    assert_eq!(
        one(&["SET", "before", "switch"]).as_deref(),
        Ok(&b"+OK\r\n"[..])
    );
    assert_eq!(
        one(&["CONFIG", "SET", "appendfsync", "always"]).as_deref(),
        Ok(&b"+OK\r\n"[..]),
        "CONFIG SET appendfsync always"
    );
    let keys: Vec<String> = (0..20).map(|i| format!("after{i}")).collect();
    assert!((0..2).all(|s| keys.iter().any(|k| shard_of(k.as_bytes(), 2) == s)));
    for k in &keys {
        assert_eq!(
            one(&["SET", k, "v"]).as_deref(),
            Ok(&b"+OK\r\n"[..]),
            "SET {k} (shard {}) after CONFIG SET appendfsync always",
            shard_of(k.as_bytes(), 2)
        );
    }
    let want = snapshot(&server);
    kill9(&mut server);
    let server = start(&dir, &["--appendonly", "yes"]);
    assert_same_data(
        &want,
        &server,
        "written with appendfsync switched to always",
    );
}

/// Cuts shard `s`'s last incremental file just before its part of the last transaction.
fn cut_last_transaction(dir: &TempDir, s: usize) {
    let incr = last_incr(&aof_dir(dir, s, 2));
    let log = std::fs::read(&incr).unwrap();
    let multi = b"*1\r\n$5\r\nmulti\r\n";
    let cut = log
        .to_ascii_lowercase()
        .windows(multi.len())
        .rposition(|w| w == multi)
        .unwrap_or_else(|| panic!("no MULTI in shard {s}'s log: {}", escape(&log)));
    std::fs::write(&incr, &log[..cut]).unwrap();
}

/// A cross-shard MSET whose part is missing from one participant's log (as a crash between
/// the two shards' writes would leave it) is dropped on load from both, and the log says so;
/// the writes before it stay. With `restart_between`, the earlier MSET was made by an earlier
/// run of the server appending to the same file (transaction ids must not repeat across runs).
fn half_logged_transaction_is_dropped(restart_between: bool) {
    let dir = TempDir::new("half-tx");
    let args = ["--appendonly", "yes", "--appendfsync", "always"];
    let mut server = start(&dir, &args);
    let mut con = server.raw();
    wait_startup_rewrite(&mut con);
    let (a, b) = pair("tx:");
    let (s0, s1) = (shard_of(a.as_bytes(), 2), shard_of(b.as_bytes(), 2));
    // From several connections, so that the transactions come from every shard's coordinator
    // (ids are numbered per coordinator).
    let mut cons: Vec<RawConn> = (0..4).map(|_| server.raw()).collect();
    for c in &mut cons {
        ok(c, &["MSET", &a, "first", &b, "first"]);
    }
    drop(cons);
    if restart_between {
        kill9(&mut server);
        server = start(&dir, &args);
        con = server.raw();
    }
    ok(&mut con, &["MSET", &a, "second", &b, "second"]);
    kill9(&mut server);
    cut_last_transaction(&dir, s1);
    let log0 = std::fs::read(last_incr(&aof_dir(&dir, s0, 2))).unwrap();
    assert!(
        log0.windows(6).any(|w| w == b"second"),
        "shard {s0}'s log lacks its part"
    );

    let server = start(&dir, &args);
    let mut con = server.raw();
    assert_eq!(
        mget(&mut con, &[a.clone(), b.clone()]),
        vec![Some(b"first".to_vec()), Some(b"first".to_vec())],
        "the MSET missing on shard {s1} was not dropped on shard {s0} ({a}, {b})"
    );
    assert!(
        server.log().contains("dropped"),
        "the log does not say a transaction was dropped:\n{}",
        server.log()
    );
}

#[test]
fn cross_shard_transaction_missing_on_one_shard_is_dropped() {
    half_logged_transaction_is_dropped(false);
}

#[test]
fn cross_shard_transaction_missing_on_one_shard_is_dropped_after_a_restart() {
    half_logged_transaction_is_dropped(true);
}

/// SIGKILL while a BGREWRITEAOF is in progress (the new incremental file started, the new base
/// not yet installed), with writers running: nothing acknowledged is lost, no MSET is half
/// applied, and the next start loads cleanly.
#[test]
fn crash_during_bgrewriteaof() {
    let dir = TempDir::new("crash-rewrite");
    let args = ["--appendonly", "yes", "--appendfsync", "always"];
    let mut server = start(&dir, &args);
    let mut con = server.raw();
    wait_startup_rewrite(&mut con);
    run_all(&mut con, &every_type());
    let base = snapshot(&server).0;
    // Enough data for the rewrite to take a while.
    let filler = "f".repeat(200);
    let prefill: Vec<Vec<String>> = (0..200)
        .map(|b| {
            many("MSET", 100, |i| {
                vec![format!("pre:{}", b * 100 + i), filler.clone()]
            })
        })
        .collect();
    run_all(&mut con, &prefill);
    let pre: Vec<String> = (0..20_000).map(|i| format!("pre:{i}")).collect();
    let mut all: Vec<Writes> = Vec::new();
    let mut mid_rewrite = 0;
    let mut rng = rand::thread_rng();
    for round in 0..crash_rounds() {
        let stop = Arc::new(AtomicBool::new(false));
        let writers: Vec<_> = (0..2)
            .map(|t| {
                let (addr, stop) = (server.addr(), stop.clone());
                thread::spawn(move || writer(addr, format!("c{round}t{t}"), stop))
            })
            .collect();
        thread::sleep(Duration::from_millis(rng.gen_range(50..200)));
        let mut con = server.raw();
        assert_eq!(
            simple(&con.cmd(&["BGREWRITEAOF"])),
            "Background append only file rewriting started"
        );
        thread::sleep(Duration::from_millis(rng.gen_range(0..30)));
        if info(&mut con, "aof_rewrite_in_progress") == "1" {
            mid_rewrite += 1;
        }
        let killed_at = Instant::now();
        kill9(&mut server);
        for w in writers {
            let mut w = w.join().unwrap();
            w.killed_at = killed_at;
            all.push(w);
        }
        server = start(&dir, &args);
        let what = format!("killed during BGREWRITEAOF, round {round}");
        let (kept, _, _) = check_writes(&mut server.raw(), &all, None, &what);
        assert!(kept > 0, "{what}: nothing acknowledged");
        let mut con = server.raw();
        assert_same(&base, &views_of(&mut con, &base), &what);
        let got = mget(&mut con, &pre);
        assert!(
            got.iter().all(|v| v.as_deref() == Some(filler.as_bytes())),
            "{what}: prefill lost"
        );
        assert!(!server.log().contains("panicked"), "{}", server.log());
        wait_startup_rewrite(&mut con);
    }
    eprintln!(
        "crash during BGREWRITEAOF: {mid_rewrite} of {} kills came while it was in progress",
        crash_rounds()
    );
}

/// The integer reply of a command.
fn int_of(con: &mut RawConn, args: &[&str]) -> i64 {
    let r = con.cmd(args);
    String::from_utf8_lossy(&r)
        .trim_start_matches(':')
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("{args:?}: {}", escape(&r)))
}

/// Under an LRU or LFU policy, files record each key's idle time or access counter (Redis's
/// IDLE / FREQ opcodes): a reload keeps them, and they travel both ways with redis-server.
#[test]
fn lru_and_lfu_clocks_are_saved_and_loaded() {
    const PAYLOAD: &str = "\x00\x05hello\x0a\x00cr\u{df}ve4\x20\x0a";
    let payload: Vec<u8> = PAYLOAD.chars().map(|c| c as u32 as u8).collect();
    let dir = TempDir::new("clocks");
    let server = start(&dir, &["--maxmemory-policy", "allkeys-lru"]);
    let mut con = server.raw();
    let keys = [common::key_on(0, "idle"), common::key_on(1, "idle")];
    // RESTORE <key> 0 <payload> REPLACE <option> <value>.
    let restore = |con: &mut RawConn, k: &str, opt: &str, v: &str| {
        let args: [&[u8]; 7] = [
            b"RESTORE",
            k.as_bytes(),
            b"0",
            &payload,
            b"REPLACE",
            opt.as_bytes(),
            v.as_bytes(),
        ];
        assert_eq!(con.cmd_bytes(&args), b"+OK\r\n");
    };
    for k in &keys {
        restore(&mut con, k, "IDLETIME", "1000");
    }
    assert_eq!(con.cmd(&["DEBUG", "RELOAD"]), b"+OK\r\n");
    for k in &keys {
        let idle = int_of(&mut con, &["OBJECT", "IDLETIME", k]);
        assert!((1000..1010).contains(&idle), "{k}: idle {idle}");
    }
    assert_eq!(
        con.cmd(&["CONFIG", "SET", "maxmemory-policy", "allkeys-lfu"]),
        b"+OK\r\n"
    );
    for k in &keys {
        restore(&mut con, k, "FREQ", "100");
    }
    assert_eq!(con.cmd(&["DEBUG", "RELOAD"]), b"+OK\r\n");
    for k in &keys {
        assert_eq!(int_of(&mut con, &["OBJECT", "FREQ", k]), 100, "{k}");
    }
    // Each shard file loads into redis-server with the counters.
    assert_eq!(con.cmd(&["SAVE"]), b"+OK\r\n");
    drop(con);
    drop(server);
    for (i, k) in keys.iter().enumerate() {
        let name = format!("dump-shard-{i}-of-2.rdb");
        let redis = RedisServer::start_with(&[
            "--dir",
            dir.s(),
            "--dbfilename",
            &name,
            "--maxmemory-policy",
            "allkeys-lfu",
        ]);
        assert_eq!(int_of(&mut redis.raw(), &["OBJECT", "FREQ", k]), 100, "{k}");
    }
    // And a file redis-server wrote under LRU loads into shardis with the idle times.
    let redis = RedisServer::start_with(&[
        "--dir",
        dir.s(),
        "--dbfilename",
        "dump.rdb",
        "--maxmemory-policy",
        "allkeys-lru",
    ]);
    let mut rc = redis.raw();
    restore(&mut rc, "fromredis", "IDLETIME", "500");
    assert_eq!(rc.cmd(&["SAVE"]), b"+OK\r\n");
    drop(rc);
    drop(redis);
    for i in 0..2 {
        let _ = std::fs::remove_file(dir.0.join(format!("dump-shard-{i}-of-2.rdb")));
    }
    let server = start(&dir, &["--maxmemory-policy", "allkeys-lru"]);
    let idle = int_of(&mut server.raw(), &["OBJECT", "IDLETIME", "fromredis"]);
    assert!((500..510).contains(&idle), "idle {idle}");
}
