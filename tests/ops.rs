//! Operating the server (issue 12) through the real binary, 2 shards: SLOWLOG.

mod common;

use common::{split_aggregate, RawConn, Server};

fn text(r: &[u8]) -> String {
    String::from_utf8_lossy(r).into_owned()
}

/// The entries of a SLOWLOG GET reply, each split into its six fields.
fn entries(c: &mut RawConn, count: &str) -> Vec<Vec<Vec<u8>>> {
    let r = c.cmd(&["SLOWLOG", "GET", count]);
    let (_, es) = split_aggregate(&r);
    es.iter().map(|e| split_aggregate(e).1).collect()
}

#[test]
fn slowlog_records_commands_of_both_shards_newest_first() {
    let server = Server::start(&[]);
    let mut admin = server.raw();
    assert_eq!(admin.cmd(&["SLOWLOG", "LEN"]), b":0\r\n");
    assert_eq!(
        admin.cmd(&["CONFIG", "SET", "slowlog-log-slower-than", "0"]),
        b"+OK\r\n"
    );
    let mut c = server.raw();
    assert_eq!(c.cmd(&["CLIENT", "SETNAME", "slowpoke"]), b"+OK\r\n");
    // Keys on both shards (k1..k8 spread over two), one with a long value, one with many args.
    for i in 1..=8 {
        c.cmd(&["SET", &format!("k{i}"), "v"]);
    }
    let long = "x".repeat(300);
    c.cmd(&["SET", "klong", &long]);
    let mut many = vec!["RPUSH", "klist"];
    let items: Vec<String> = (0..40).map(|i| i.to_string()).collect();
    many.extend(items.iter().map(|s| s.as_str()));
    c.cmd(&many);
    // A script is one entry; the commands it calls are not logged on their own.
    c.cmd(&[
        "EVAL",
        "redis.call('set', KEYS[1], 'w') return 1",
        "1",
        "k3",
    ]);

    let es = entries(&mut admin, "-1");
    assert!(es.len() >= 11, "{} entries", es.len());
    // Newest first, ids descending.
    let ids: Vec<String> = es.iter().map(|e| text(&e[0])).collect();
    let mut sorted = ids.clone();
    sorted.sort_by_key(|s| {
        std::cmp::Reverse(s.trim_start_matches(':').trim().parse::<i64>().unwrap_or(0))
    });
    assert_eq!(ids, sorted);
    let eval = &es[0];
    let (_, args) = split_aggregate(&eval[3]);
    assert_eq!(text(&args[0]), "$4\r\nEVAL\r\n");
    assert!(text(&eval[5]).contains("slowpoke"), "{}", text(&eval[5]));
    assert!(text(&eval[4]).contains("127.0.0.1:"), "{}", text(&eval[4]));
    let rpush = &es[1];
    let (_, args) = split_aggregate(&rpush[3]);
    assert_eq!(args.len(), 32);
    assert_eq!(text(&args[31]), "$23\r\n... (11 more arguments)\r\n");
    let setlong = &es[2];
    let (_, args) = split_aggregate(&setlong[3]);
    assert!(text(&args[2]).ends_with(&format!("{}... (172 more bytes)\r\n", "x".repeat(128))));
    // Every SET of k1..k8 made it, whichever shard ran it.
    let sets = es
        .iter()
        .filter(|e| text(&split_aggregate(&e[3]).1[0]) == "$3\r\nSET\r\n")
        .count();
    assert_eq!(sets, 9, "SETs logged");
    // No entry for the SET the script called.
    assert!(!es.iter().any(|e| text(&e[3]).contains("$1\r\nw\r\n")));

    assert_eq!(entries(&mut admin, "2").len(), 2);
    assert_eq!(entries(&mut admin, "0").len(), 0);
    assert_eq!(
        text(&admin.cmd(&["SLOWLOG", "GET", "-2"])),
        "-ERR count should be greater than or equal to -1\r\n"
    );
    // slowlog-max-len bounds what is kept and shown.
    assert_eq!(
        admin.cmd(&["CONFIG", "SET", "slowlog-max-len", "3"]),
        b"+OK\r\n"
    );
    assert_eq!(admin.cmd(&["SLOWLOG", "LEN"]), b":3\r\n");
    assert_eq!(admin.cmd(&["SLOWLOG", "RESET"]), b"+OK\r\n");
    // The RESET itself may be logged on this connection's shard only after it ran.
    let left = text(&admin.cmd(&["SLOWLOG", "LEN"]));
    assert!(left == ":0\r\n" || left == ":1\r\n", "{left}");
    // -1 turns it off.
    admin.cmd(&["CONFIG", "SET", "slowlog-log-slower-than", "-1"]);
    admin.cmd(&["SLOWLOG", "RESET"]);
    c.cmd(&["SET", "k1", "v"]);
    assert_eq!(admin.cmd(&["SLOWLOG", "LEN"]), b":0\r\n");
}
