//! Search (FT.*) through the real binary, 2 shards: every command and its RESP2/RESP3 replies,
//! index maintenance on every write path, HNSW recall against exact search, hybrid queries,
//! persistence (RDB and AOF), a replica, and redis-py's search client.

mod common;

use common::{fresh_dir, key_on, RawConn, Server};
use std::time::{Duration, Instant};

/// A reply in a compact form: arrays as `[a, b]`, maps as `{k: v}`, strings bare, errors as
/// `-text`.
fn show(r: &[u8]) -> String {
    fn line(r: &[u8], pos: &mut usize) -> String {
        let nl = r[*pos..]
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("a complete reply")
            + *pos;
        let s = String::from_utf8_lossy(&r[*pos + 1..nl]).into_owned();
        *pos = nl + 2;
        s
    }
    fn go(r: &[u8], pos: &mut usize) -> String {
        let t = r[*pos];
        let head = line(r, pos);
        match t {
            b'*' | b'~' => {
                let n: i64 = head.parse().unwrap();
                let items: Vec<String> = (0..n.max(0)).map(|_| go(r, pos)).collect();
                format!("[{}]", items.join(", "))
            }
            b'%' => {
                let n: usize = head.parse().unwrap();
                let items: Vec<String> = (0..n)
                    .map(|_| format!("{}: {}", go(r, pos), go(r, pos)))
                    .collect();
                format!("{{{}}}", items.join(", "))
            }
            b'$' => {
                let n: i64 = head.parse().unwrap();
                if n < 0 {
                    return "nil".into();
                }
                let s = String::from_utf8_lossy(&r[*pos..*pos + n as usize]).into_owned();
                *pos += n as usize + 2;
                s
            }
            b'-' => format!("-{head}"),
            _ => head,
        }
    }
    go(r, &mut 0)
}

fn cmd(c: &mut RawConn, args: &[&str]) -> String {
    show(&c.cmd(args))
}

fn cmdb(c: &mut RawConn, args: &[&[u8]]) -> String {
    show(&c.cmd_bytes(args))
}

fn blob(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Polls FT.INFO until the index is built.
fn wait_indexed(c: &mut RawConn, index: &str) {
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        let info = cmd(c, &["FT.INFO", index]);
        if info.contains("indexing, 0") {
            return;
        }
        assert!(Instant::now() < end, "{index} not indexed: {info}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends commands in one pipeline and reads every reply.
fn pipeline(c: &mut RawConn, cmds: &[Vec<Vec<u8>>]) {
    for chunk in cmds.chunks(500) {
        let mut bytes = Vec::new();
        for a in chunk {
            bytes.extend_from_slice(&common::encode(a));
        }
        c.send(&bytes);
        for r in c.read_replies(chunk.len()) {
            assert!(!r.starts_with(b"-"), "{}", show(&r));
        }
    }
}

/// A small deterministic generator (xorshift).
struct Gen(u64);
impl Gen {
    fn f(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 40) as f32 / (1u64 << 24) as f32
    }
}

#[test]
fn commands_and_reply_formats() {
    let t0 = Instant::now();
    let s = Server::start(&[]);
    let mut c = s.raw();
    assert_eq!(
        cmd(
            &mut c,
            &[
                "FT.CREATE",
                "idx",
                "ON",
                "HASH",
                "PREFIX",
                "1",
                "doc:",
                "SCHEMA",
                "title",
                "TEXT",
                "SORTABLE",
                "price",
                "NUMERIC",
                "SORTABLE",
                "color",
                "AS",
                "c",
                "TAG"
            ]
        ),
        "OK"
    );
    assert_eq!(
        cmd(&mut c, &["FT.CREATE", "idx", "SCHEMA", "t", "TEXT"]),
        "-Index already exists"
    );
    assert!(cmd(
        &mut c,
        &["FT.CREATE", "j", "ON", "JSON", "SCHEMA", "t", "TEXT"]
    )
    .starts_with('-'));
    // Documents on both shards.
    let a = key_on(0, "doc:");
    let b = key_on(1, "doc:");
    cmd(
        &mut c,
        &[
            "HSET",
            &a,
            "title",
            "red apple",
            "price",
            "3",
            "color",
            "red",
        ],
    );
    cmd(
        &mut c,
        &[
            "HSET",
            &b,
            "title",
            "green apple pie",
            "price",
            "10",
            "color",
            "green,red",
        ],
    );
    cmd(&mut c, &["HSET", "other:1", "title", "apple"]);

    assert_eq!(
        cmd(
            &mut c,
            &["FT.SEARCH", "idx", "apple", "SORTBY", "price", "NOCONTENT"]
        ),
        format!("[2, {a}, {b}]")
    );
    assert_eq!(
        cmd(
            &mut c,
            &[
                "FT.SEARCH",
                "idx",
                "apple",
                "SORTBY",
                "price",
                "DESC",
                "LIMIT",
                "0",
                "1",
                "RETURN",
                "2",
                "title",
                "price"
            ]
        ),
        format!("[2, {b}, [title, green apple pie, price, 10]]")
    );
    assert_eq!(
        cmd(
            &mut c,
            &[
                "FT.SEARCH",
                "idx",
                "@c:{green}",
                "RETURN",
                "3",
                "price",
                "AS",
                "p"
            ]
        ),
        format!("[1, {b}, [p, 10]]")
    );
    assert_eq!(
        cmd(
            &mut c,
            &["FT.SEARCH", "idx", "@price:[(3 +inf]", "NOCONTENT"]
        ),
        format!("[1, {b}]")
    );
    assert_eq!(
        cmd(&mut c, &["FT.SEARCH", "idx", "-pie", "NOCONTENT"]),
        format!("[1, {a}]")
    );
    assert_eq!(
        cmd(
            &mut c,
            &[
                "FT.SEARCH",
                "idx",
                "pie | @c:{red}",
                "SORTBY",
                "price",
                "NOCONTENT",
                "WITHSCORES"
            ]
        )
        .matches("doc:")
        .count(),
        2
    );
    let full = cmd(&mut c, &["FT.SEARCH", "idx", "@title:(red appl*)"]);
    assert!(full.starts_with(&format!("[1, {a}, [")), "{full}");
    assert!(full.contains("title, red apple"), "{full}");
    assert_eq!(
        cmd(&mut c, &["FT.SEARCH", "idx", "apple", "LIMIT", "0", "0"]),
        "[2]"
    );
    assert_eq!(
        cmd(&mut c, &["FT.SEARCH", "nope", "*"]),
        "-nope: no such index"
    );
    assert!(cmd(&mut c, &["FT.SEARCH", "idx", "(("]).starts_with("-Syntax error"));
    assert!(
        cmd(&mut c, &["FT.SEARCH", "idx", "*", "LIMIT", "0", "100000"])
            .starts_with("-LIMIT exceeds")
    );

    // RESP3.
    let mut c3 = s.raw();
    c3.cmd(&["HELLO", "3"]);
    assert_eq!(
        cmd(&mut c3, &["FT.SEARCH", "idx", "pie", "RETURN", "1", "price"]),
        format!("{{attributes: [], format: STRING, results: [{{id: {b}, extra_attributes: {{price: 10}}, values: []}}], total_results: 1, warning: []}}")
    );
    assert_eq!(
        cmd(
            &mut c3,
            &[
                "FT.AGGREGATE",
                "idx",
                "*",
                "GROUPBY",
                "1",
                "@c",
                "REDUCE",
                "COUNT",
                "0",
                "AS",
                "n"
            ]
        )
        .matches("extra_attributes")
        .count(),
        2
    );
    let info3 = cmd(&mut c3, &["FT.INFO", "idx"]);
    assert!(info3.starts_with("{index_name: idx, "), "{info3}");
    assert!(info3.contains("num_docs: 2"), "{info3}");

    // FT.INFO, FT._LIST, FT.EXPLAIN, MODULE LIST.
    let info = cmd(&mut c, &["FT.INFO", "idx"]);
    assert!(info.starts_with("[index_name, idx, index_options, [], index_definition, [key_type, HASH, prefixes, [doc:], default_score, 1], attributes, [[identifier, title, attribute, title, type, TEXT, WEIGHT, 1, SORTABLE]"), "{info}");
    assert!(info.contains("num_docs, 2"), "{info}");
    assert!(info.contains("percent_indexed, 1"), "{info}");
    assert_eq!(cmd(&mut c, &["FT.INFO", "nope"]), "-Unknown Index name");
    assert_eq!(cmd(&mut c, &["FT._LIST"]), "[idx]");
    assert_eq!(
        cmd(&mut c, &["FT.EXPLAIN", "idx", "@price:[1 2] apple"]),
        "INTERSECT {\n  NUMERIC {1 <= @price <= 2}\n  apple\n}\n"
    );
    assert_eq!(
        cmd(&mut c, &["MODULE", "LIST"]),
        "[[name, search, ver, 20800, path, built-in, args, []]]"
    );

    // FT.AGGREGATE.
    cmd(
        &mut c,
        &["HSET", &key_on(0, "doc:x"), "price", "7", "color", "green"],
    );
    assert_eq!(
        cmd(&mut c, &["FT.AGGREGATE", "idx", "*", "GROUPBY", "1", "@c", "REDUCE", "COUNT", "0", "AS", "n", "REDUCE", "SUM", "1", "@price", "AS", "total", "REDUCE", "AVG", "1", "@price", "AS", "avg", "SORTBY", "2", "@total", "DESC", "LIMIT", "0", "5"]),
        "[3, [c, green,red, n, 1, total, 10, avg, 10], [c, green, n, 1, total, 7, avg, 7], [c, red, n, 1, total, 3, avg, 3]]"
    );
    assert_eq!(
        cmd(
            &mut c,
            &[
                "FT.AGGREGATE",
                "idx",
                "@price:[5 +inf]",
                "LOAD",
                "1",
                "@price",
                "SORTBY",
                "2",
                "@price",
                "ASC"
            ]
        ),
        "[2, [price, 7], [price, 10]]"
    );

    // FT.ALTER adds a field; existing documents are indexed for it.
    assert_eq!(
        cmd(
            &mut c,
            &["FT.ALTER", "idx", "SCHEMA", "ADD", "stock", "NUMERIC"]
        ),
        "OK"
    );
    cmd(&mut c, &["HSET", &a, "stock", "5"]);
    wait_indexed(&mut c, "idx");
    assert_eq!(
        cmd(&mut c, &["FT.SEARCH", "idx", "@stock:[1 9]", "NOCONTENT"]),
        format!("[1, {a}]")
    );
    assert_eq!(
        cmd(&mut c, &["FT.ALTER", "nope", "SCHEMA", "ADD", "x", "TEXT"]),
        "-Unknown Index name"
    );

    // FT.DROPINDEX keeps the documents; DD deletes them.
    assert_eq!(cmd(&mut c, &["FT.DROPINDEX", "idx"]), "OK");
    assert_eq!(cmd(&mut c, &["EXISTS", &a]), "1");
    assert_eq!(cmd(&mut c, &["FT.DROPINDEX", "idx"]), "-Unknown Index name");
    cmd(
        &mut c,
        &[
            "FT.CREATE",
            "idx2",
            "PREFIX",
            "1",
            "doc:",
            "SCHEMA",
            "title",
            "TEXT",
        ],
    );
    wait_indexed(&mut c, "idx2");
    assert_eq!(cmd(&mut c, &["FT.DROPINDEX", "idx2", "DD"]), "OK");
    assert_eq!(cmd(&mut c, &["EXISTS", &a, &b]), "0");
    assert_eq!(cmd(&mut c, &["EXISTS", "other:1"]), "1");
    assert_eq!(cmd(&mut c, &["FT._LIST"]), "[]");
    // COMMAND INFO knows them, with the @search category.
    let info = cmd(&mut c, &["COMMAND", "INFO", "FT.SEARCH"]);
    assert!(
        info.contains("@search") && info.contains("readonly"),
        "{info}"
    );
    eprintln!("commands_and_reply_formats: {:?}", t0.elapsed());
}

#[test]
fn maintenance_on_every_write_path() {
    let t0 = Instant::now();
    let s = Server::start(&[]);
    let mut c = s.raw();
    cmd(
        &mut c,
        &[
            "FT.CREATE",
            "i",
            "PREFIX",
            "1",
            "p:",
            "SCHEMA",
            "n",
            "NUMERIC",
            "t",
            "TAG",
        ],
    );
    let count =
        |c: &mut RawConn, q: &str| -> String { cmd(c, &["FT.SEARCH", "i", q, "LIMIT", "0", "0"]) };
    let (k0, k1) = (key_on(0, "p:"), key_on(1, "p:"));
    cmd(&mut c, &["HSET", &k0, "n", "1", "t", "a"]);
    cmd(&mut c, &["HSETNX", &k1, "n", "2"]);
    assert_eq!(count(&mut c, "@n:[1 2]"), "[2]");
    cmd(&mut c, &["HMSET", &k1, "t", "b"]);
    assert_eq!(count(&mut c, "@t:{b}"), "[1]");
    cmd(&mut c, &["HINCRBY", &k0, "n", "10"]);
    assert_eq!(count(&mut c, "@n:[11 11]"), "[1]");
    cmd(&mut c, &["HINCRBYFLOAT", &k0, "n", "0.5"]);
    assert_eq!(count(&mut c, "@n:[11.5 11.5]"), "[1]");
    cmd(&mut c, &["HDEL", &k0, "t"]);
    assert_eq!(count(&mut c, "@t:{a}"), "[0]");
    cmd(&mut c, &["DEL", &k0]);
    assert_eq!(count(&mut c, "*"), "[1]");
    cmd(&mut c, &["UNLINK", &k1]);
    assert_eq!(count(&mut c, "*"), "[0]");
    // EXPIRE: the key leaves the index when it expires.
    cmd(&mut c, &["HSET", &k0, "n", "1"]);
    cmd(&mut c, &["PEXPIRE", &k0, "50"]);
    std::thread::sleep(Duration::from_millis(120));
    assert_eq!(cmd(&mut c, &["FT.SEARCH", "i", "*", "NOCONTENT"]), "[0]");
    // RENAME in and out of the prefix, across shards.
    let out0 = key_on(0, "q:");
    cmd(&mut c, &["HSET", &out0, "n", "5"]);
    assert_eq!(count(&mut c, "*"), "[0]");
    let into = key_on(1, "p:r");
    cmd(&mut c, &["RENAME", &out0, &into]);
    assert_eq!(
        cmd(&mut c, &["FT.SEARCH", "i", "@n:[5 5]", "NOCONTENT"]),
        format!("[1, {into}]")
    );
    cmd(&mut c, &["RENAME", &into, &out0]);
    assert_eq!(count(&mut c, "*"), "[0]");
    // MOVE out of database 0 and back.
    cmd(&mut c, &["HSET", &k0, "n", "7"]);
    cmd(&mut c, &["MOVE", &k0, "1"]);
    assert_eq!(count(&mut c, "*"), "[0]");
    cmd(&mut c, &["SELECT", "1"]);
    cmd(&mut c, &["MOVE", &k0, "0"]);
    cmd(&mut c, &["SELECT", "0"]);
    assert_eq!(count(&mut c, "@n:[7 7]"), "[1]");
    // A key of another type under the prefix is not a document.
    cmd(&mut c, &["DEL", &k0]);
    cmd(&mut c, &["SET", &k0, "x"]);
    assert_eq!(count(&mut c, "*"), "[0]");
    cmd(&mut c, &["DEL", &k0]);
    // RESTORE.
    cmd(&mut c, &["HSET", &k1, "n", "9"]);
    let dump = c.cmd(&["DUMP", &k1]);
    let payload = &dump[dump.iter().position(|&b| b == b'\n').unwrap() + 1..dump.len() - 2];
    cmd(&mut c, &["DEL", &k1]);
    assert_eq!(count(&mut c, "*"), "[0]");
    assert_eq!(
        cmdb(&mut c, &[b"RESTORE", k1.as_bytes(), b"0", payload]),
        "OK"
    );
    assert_eq!(count(&mut c, "@n:[9 9]"), "[1]");
    // MULTI/EXEC over both shards.
    c.cmd(&["MULTI"]);
    c.cmd(&["HSET", &k0, "n", "3"]);
    c.cmd(&["HSET", &k1, "n", "3"]);
    c.cmd(&["EXEC"]);
    assert_eq!(count(&mut c, "@n:[3 3]"), "[2]");
    // A script's writes.
    cmd(
        &mut c,
        &[
            "EVAL",
            "redis.call('hset', KEYS[1], 'n', '4') return 1",
            "1",
            &k0,
        ],
    );
    assert_eq!(count(&mut c, "@n:[4 4]"), "[1]");
    // FLUSHDB, FLUSHALL.
    cmd(&mut c, &["FLUSHDB"]);
    assert_eq!(count(&mut c, "*"), "[0]");
    cmd(&mut c, &["HSET", &k0, "n", "1"]);
    cmd(&mut c, &["FLUSHALL"]);
    assert_eq!(count(&mut c, "*"), "[0]");
    assert_eq!(cmd(&mut c, &["FT._LIST"]), "[i]");
    // Existing keys are indexed in the background after FT.CREATE.
    let cmds: Vec<Vec<Vec<u8>>> = (0..12_000)
        .map(|i| {
            vec![
                b"HSET".to_vec(),
                format!("bg:{i}").into_bytes(),
                b"n".to_vec(),
                i.to_string().into_bytes(),
            ]
        })
        .collect();
    pipeline(&mut c, &cmds);
    cmd(
        &mut c,
        &[
            "FT.CREATE",
            "bg",
            "PREFIX",
            "1",
            "bg:",
            "SCHEMA",
            "n",
            "NUMERIC",
        ],
    );
    wait_indexed(&mut c, "bg");
    assert_eq!(
        cmd(
            &mut c,
            &["FT.SEARCH", "bg", "@n:[100 (200]", "LIMIT", "0", "0"]
        ),
        "[100]"
    );
    let info = cmd(&mut c, &["FT.INFO", "bg"]);
    assert!(
        info.contains("num_docs, 12000") && info.contains("percent_indexed, 1"),
        "{info}"
    );
    eprintln!("maintenance_on_every_write_path: {:?}", t0.elapsed());
}

/// Loads `n` random vectors (dim `dim`) into `vec:<i>`, with a tag of `i % 3`.
fn load_vectors(c: &mut RawConn, n: usize, dim: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut g = Gen(seed);
    let vecs: Vec<Vec<f32>> = (0..n).map(|_| (0..dim).map(|_| g.f()).collect()).collect();
    let cmds: Vec<Vec<Vec<u8>>> = vecs
        .iter()
        .enumerate()
        .map(|(i, v)| {
            vec![
                b"HSET".to_vec(),
                format!("vec:{i}").into_bytes(),
                b"v".to_vec(),
                blob(v),
                b"tag".to_vec(),
                format!("t{}", i % 3).into_bytes(),
            ]
        })
        .collect();
    pipeline(c, &cmds);
    vecs
}

fn knn_keys(c: &mut RawConn, index: &str, q: &[f32], k: usize, extra: &[&[u8]]) -> Vec<String> {
    let query = format!("*=>[KNN {k} @v $b]");
    let limit = k.to_string();
    let b = blob(q);
    let mut args: Vec<&[u8]> = vec![
        b"FT.SEARCH",
        index.as_bytes(),
        query.as_bytes(),
        b"PARAMS",
        b"2",
        b"b",
        &b,
        b"NOCONTENT",
        b"LIMIT",
        b"0",
        limit.as_bytes(),
        b"DIALECT",
        b"2",
    ];
    args.extend_from_slice(extra);
    let r = cmdb(c, &args);
    r.trim_matches(|ch| ch == '[' || ch == ']')
        .split(", ")
        .skip(1)
        .map(str::to_string)
        .collect()
}

#[test]
fn hnsw_recall_against_flat_and_hybrid_queries() {
    let t0 = Instant::now();
    let s = Server::start(&[]);
    let mut c = s.raw();
    let (n, dim) = (3000, 32);
    cmd(
        &mut c,
        &[
            "FT.CREATE",
            "h",
            "PREFIX",
            "1",
            "vec:",
            "SCHEMA",
            "v",
            "VECTOR",
            "HNSW",
            "12",
            "TYPE",
            "FLOAT32",
            "DIM",
            "32",
            "DISTANCE_METRIC",
            "L2",
            "M",
            "16",
            "EF_CONSTRUCTION",
            "100",
            "EF_RUNTIME",
            "100",
            "tag",
            "TAG",
        ],
    );
    cmd(
        &mut c,
        &[
            "FT.CREATE",
            "f",
            "PREFIX",
            "1",
            "vec:",
            "SCHEMA",
            "v",
            "VECTOR",
            "FLAT",
            "6",
            "TYPE",
            "FLOAT32",
            "DIM",
            "32",
            "DISTANCE_METRIC",
            "L2",
            "tag",
            "TAG",
        ],
    );
    let vecs = load_vectors(&mut c, n, dim, 42);
    wait_indexed(&mut c, "h");
    let mut g = Gen(7);
    let (mut hits, queries) = (0, 100);
    for _ in 0..queries {
        let q: Vec<f32> = (0..dim).map(|_| g.f()).collect();
        let exact = knn_keys(&mut c, "f", &q, 10, &[]);
        let approx = knn_keys(&mut c, "h", &q, 10, &[]);
        assert_eq!(exact.len(), 10);
        hits += approx.iter().filter(|k| exact.contains(k)).count();
    }
    let recall = hits as f64 / (queries * 10) as f64;
    eprintln!("HNSW recall@10 against FLAT over {n} vectors of dim {dim}: {recall:.3}");
    assert!(recall >= 0.95, "recall {recall}");
    // The exact search agrees with a brute force here.
    let q = &vecs[17];
    let mut d: Vec<(f32, usize)> = vecs
        .iter()
        .enumerate()
        .map(|(i, v)| (v.iter().zip(q).map(|(a, b)| (a - b) * (a - b)).sum(), i))
        .collect();
    d.sort_by(|a, b| a.0.total_cmp(&b.0));
    let want: Vec<String> = d[..5].iter().map(|(_, i)| format!("vec:{i}")).collect();
    assert_eq!(knn_keys(&mut c, "f", q, 5, &[]), want);
    assert_eq!(knn_keys(&mut c, "h", q, 1, &[]), want[..1].to_vec());
    // The distance comes back under its name, as RediSearch reports it (squared L2).
    let b = blob(q);
    let r = cmdb(
        &mut c,
        &[
            b"FT.SEARCH",
            b"h",
            b"*=>[KNN 1 @v $b AS dist]",
            b"PARAMS",
            b"2",
            b"b",
            &b,
            b"RETURN",
            b"1",
            b"dist",
            b"DIALECT",
            b"2",
        ],
    );
    assert_eq!(r, format!("[1, vec:17, [dist, 0]]"));
    // Hybrid: only documents the filter matches, exactly the nearest of them.
    let mut want: Vec<(f32, usize)> = d.iter().copied().filter(|(_, i)| i % 3 == 1).collect();
    want.truncate(5);
    let want: Vec<String> = want.iter().map(|(_, i)| format!("vec:{i}")).collect();
    let r = cmdb(
        &mut c,
        &[
            b"FT.SEARCH",
            b"h",
            b"(@tag:{t1})=>[KNN 5 @v $b EF_RUNTIME 50]",
            b"PARAMS",
            b"2",
            b"b",
            &b,
            b"NOCONTENT",
            b"DIALECT",
            b"2",
        ],
    );
    assert_eq!(r, format!("[5, {}]", want.join(", ")));
    // SORTBY the distance, descending, and a text-array vector.
    let text = format!(
        "[{}]",
        q.iter()
            .map(|x| x.to_string())
            .collect::<Vec<_>>()
            .join(",")
    );
    let r = cmd(
        &mut c,
        &[
            "FT.SEARCH",
            "f",
            "*=>[KNN 3 @v $b AS d]",
            "PARAMS",
            "2",
            "b",
            &text,
            "SORTBY",
            "d",
            "DESC",
            "NOCONTENT",
        ],
    );
    assert!(r.ends_with(", vec:17]"), "{r}");
    let r = cmd(
        &mut c,
        &[
            "FT.SEARCH",
            "f",
            "*=>[KNN 3 @v $b AS d]",
            "PARAMS",
            "2",
            "b",
            &text,
            "SORTBY",
            "d",
            "DESC",
            "NOCONTENT",
            "LIMIT",
            "2",
            "1",
        ],
    );
    assert_eq!(r, "[3, vec:17]");
    // A blob of the wrong length is an error, not a crash.
    let r = cmdb(
        &mut c,
        &[
            b"FT.SEARCH",
            b"h",
            b"*=>[KNN 3 @v $b]",
            b"PARAMS",
            b"2",
            b"b",
            b"abc",
        ],
    );
    assert!(
        r.starts_with("-Error parsing vector similarity query"),
        "{r}"
    );
    // Updates and deletes reach the graph.
    cmdb(&mut c, &[b"HSET", b"vec:17", b"v", &blob(&[9.0; 32])]);
    assert_ne!(knn_keys(&mut c, "h", q, 1, &[]), vec!["vec:17".to_string()]);
    cmd(&mut c, &["DEL", "vec:17"]);
    assert_eq!(knn_keys(&mut c, "h", &[9.0; 32], 1, &[]).len(), 1);
    assert_ne!(
        knn_keys(&mut c, "h", &[9.0; 32], 1, &[]),
        vec!["vec:17".to_string()]
    );
    // COSINE and IP distances.
    cmd(
        &mut c,
        &[
            "FT.CREATE",
            "cos",
            "PREFIX",
            "1",
            "cv:",
            "SCHEMA",
            "v",
            "VECTOR",
            "FLAT",
            "6",
            "TYPE",
            "FLOAT64",
            "DIM",
            "2",
            "DISTANCE_METRIC",
            "COSINE",
        ],
    );
    let b64 = |v: [f64; 2]| -> Vec<u8> { v.iter().flat_map(|x| x.to_le_bytes()).collect() };
    cmdb(&mut c, &[b"HSET", b"cv:1", b"v", &b64([1.0, 0.0])]);
    cmdb(&mut c, &[b"HSET", b"cv:2", b"v", &b64([1.0, 1.0])]);
    let r = cmdb(
        &mut c,
        &[
            b"FT.SEARCH",
            b"cos",
            b"*=>[KNN 2 @v $b AS d]",
            b"PARAMS",
            b"2",
            b"b",
            &b64([0.0, 2.0]),
            b"RETURN",
            b"1",
            b"d",
            b"DIALECT",
            b"2",
        ],
    );
    assert_eq!(r, "[2, cv:2, [d, 0.292893230915], cv:1, [d, 1]]");
    eprintln!(
        "hnsw_recall_against_flat_and_hybrid_queries: {:?}",
        t0.elapsed()
    );
}

#[test]
fn indexes_survive_restarts_rdb_and_aof() {
    let t0 = Instant::now();
    for aof in [false, true] {
        let dir = fresh_dir(if aof { "search-aof" } else { "search-rdb" });
        let d = dir.to_str().unwrap().to_string();
        let mut args = vec!["--dir", d.as_str()];
        if aof {
            args.extend(["--appendonly", "yes", "--appendfsync", "always"]);
        }
        {
            let s = Server::start(&args);
            let mut c = s.raw();
            cmd(
                &mut c,
                &[
                    "FT.CREATE",
                    "p",
                    "PREFIX",
                    "1",
                    "d:",
                    "SCHEMA",
                    "t",
                    "TAG",
                    "v",
                    "VECTOR",
                    "HNSW",
                    "6",
                    "TYPE",
                    "FLOAT32",
                    "DIM",
                    "2",
                    "DISTANCE_METRIC",
                    "L2",
                ],
            );
            cmd(&mut c, &["FT.CREATE", "gone", "SCHEMA", "t", "TAG"]);
            cmd(&mut c, &["FT.DROPINDEX", "gone"]);
            cmd(&mut c, &["FT.ALTER", "p", "SCHEMA", "ADD", "n", "NUMERIC"]);
            for i in 0..50 {
                cmd(
                    &mut c,
                    &[
                        "HSET",
                        &format!("d:{i}"),
                        "t",
                        "x",
                        "v",
                        &format!("[{i}, 0]"),
                        "n",
                        &i.to_string(),
                    ],
                );
            }
            if !aof {
                assert_eq!(cmd(&mut c, &["SAVE"]), "OK");
            }
        }
        let s = Server::start(&args);
        let mut c = s.raw();
        assert_eq!(cmd(&mut c, &["FT._LIST"]), "[p]", "aof={aof}");
        wait_indexed(&mut c, "p");
        assert_eq!(
            cmd(
                &mut c,
                &["FT.SEARCH", "p", "@t:{x} @n:[10 19]", "LIMIT", "0", "0"]
            ),
            "[10]"
        );
        let r = cmd(
            &mut c,
            &[
                "FT.SEARCH",
                "p",
                "*=>[KNN 1 @v $b]",
                "PARAMS",
                "2",
                "b",
                "[7.2, 0]",
                "NOCONTENT",
            ],
        );
        assert_eq!(r, "[1, d:7]", "aof={aof}");
        if !aof {
            // DEBUG RELOAD keeps them too.
            assert_eq!(cmd(&mut c, &["DEBUG", "RELOAD"]), "OK");
            wait_indexed(&mut c, "p");
            assert_eq!(
                cmd(&mut c, &["FT.SEARCH", "p", "*", "LIMIT", "0", "0"]),
                "[50]"
            );
        }
    }
    eprintln!("indexes_survive_restarts_rdb_and_aof: {:?}", t0.elapsed());
}

fn info_field(c: &mut RawConn, field: &str) -> Option<String> {
    let text = String::from_utf8_lossy(&c.cmd(&["INFO", "replication"])).into_owned();
    text.lines().find_map(|l| {
        l.strip_prefix(&format!("{field}:"))
            .map(|v| v.trim().to_string())
    })
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(Instant::now() < end, "{what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_replica_has_the_index() {
    let t0 = Instant::now();
    let master = Server::start(&[]);
    let mut m = master.raw();
    cmd(
        &mut m,
        &[
            "FT.CREATE",
            "before",
            "PREFIX",
            "1",
            "r:",
            "SCHEMA",
            "t",
            "TAG",
        ],
    );
    for i in 0..20 {
        cmd(
            &mut m,
            &[
                "HSET",
                &format!("r:{i}"),
                "t",
                if i % 2 == 0 { "even" } else { "odd" },
            ],
        );
    }
    let replica = Server::start(&["--replicaof", &format!("127.0.0.1 {}", master.port())]);
    let mut r = replica.raw();
    wait_until("the link is up", || {
        info_field(&mut r, "master_link_status").as_deref() == Some("up")
    });
    // From the full sync's RDB.
    wait_until("the replica indexed", || {
        cmd(
            &mut r,
            &["FT.SEARCH", "before", "@t:{even}", "LIMIT", "0", "0"],
        ) == "[10]"
    });
    // From the command stream.
    cmd(
        &mut m,
        &[
            "FT.CREATE",
            "after",
            "PREFIX",
            "1",
            "r:",
            "SCHEMA",
            "t",
            "TAG",
        ],
    );
    cmd(&mut m, &["HSET", "r:100", "t", "even"]);
    wait_until("the stream's index", || {
        cmd(
            &mut r,
            &["FT.SEARCH", "after", "@t:{even}", "LIMIT", "0", "0"],
        ) == "[11]"
    });
    assert_eq!(
        cmd(
            &mut r,
            &["FT.SEARCH", "before", "@t:{even}", "LIMIT", "0", "0"]
        ),
        "[11]"
    );
    cmd(&mut m, &["FT.DROPINDEX", "before"]);
    wait_until("the drop", || cmd(&mut r, &["FT._LIST"]) == "[after]");
    assert!(cmd(&mut r, &["FT.CREATE", "x", "SCHEMA", "t", "TAG"]).starts_with("-READONLY"));
    eprintln!("a_replica_has_the_index: {:?}", t0.elapsed());
}

/// redis-py's search client (`redis.commands.search`): creating an index, loading documents,
/// a KNN and a hybrid query, in RESP2. Skipped, loudly, without python3 and redis-py
/// (scripts/install-deps.sh installs Debian's python3-redis).
#[test]
fn redis_py_search_client() {
    let Some(python) = ["/usr/bin/python3", "python3"].into_iter().find(|p| {
        std::process::Command::new(p)
            .args(["-c", "import redis.commands.search"])
            .output()
            .is_ok_and(|o| o.status.success())
    }) else {
        eprintln!("SKIPPED: no python3 with redis-py (run scripts/install-deps.sh)");
        return;
    };
    let server = Server::start(&[]);
    let program = r#"
import sys, struct, redis
from redis.commands.search.field import TagField, TextField, NumericField, VectorField
from redis.commands.search.indexDefinition import IndexDefinition, IndexType
from redis.commands.search.query import Query
r = redis.Redis(host="127.0.0.1", port=int(sys.argv[1]))
ft = r.ft("docs")
try:
    ft.info()
    raise SystemExit("info of a missing index succeeded")
except redis.ResponseError as e:
    assert "Unknown Index name" in str(e), e
ft.create_index(
    [TextField("body"), TagField("kind"), NumericField("year"),
     VectorField("emb", "HNSW", {"TYPE": "FLOAT32", "DIM": 3, "DISTANCE_METRIC": "COSINE"})],
    definition=IndexDefinition(prefix=["doc:"], index_type=IndexType.HASH))
vecs = {1: [1, 0, 0], 2: [0.9, 0.1, 0], 3: [0, 1, 0], 4: [0, 0, 1]}
for i, v in vecs.items():
    r.hset(f"doc:{i}", mapping={"body": f"document number {i}", "kind": "a" if i % 2 else "b",
                                "year": 2000 + i, "emb": struct.pack("<3f", *v)})
info = ft.info()
assert info["index_name"] == "docs", info
assert int(info["num_docs"]) == 4, info
q = Query("*=>[KNN 2 @emb $v AS score]").sort_by("score").return_fields("score", "body").dialect(2)
res = ft.search(q, query_params={"v": struct.pack("<3f", 1, 0, 0)})
assert res.total == 2, res
assert [d.id for d in res.docs] == ["doc:1", "doc:2"], res
assert float(res.docs[0].score) < 1e-6, res
hq = Query("(@kind:{b} @year:[2000 2010])=>[KNN 1 @emb $v AS score]").return_fields("score").dialect(2)
res = ft.search(hq, query_params={"v": struct.pack("<3f", 1, 0, 0)})
assert [d.id for d in res.docs] == ["doc:2"], res
res = ft.search(Query("number").paging(0, 10))
assert res.total == 4, res
mods = r.module_list()
assert any(m[b"name"] == b"search" for m in mods), mods
ft.dropindex(delete_documents=True)
assert r.exists("doc:1") == 0
print("redis-py search ok")
"#;
    let out = std::process::Command::new(python)
        .args(["-c", program, &server.port().to_string()])
        .output()
        .expect("python3 runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && text.contains("redis-py search ok"),
        "{text}"
    );
}
