//! Raw-socket protocol tests: pipelining, inline commands, protocol errors (exact Redis text and
//! connection close), requests split across many writes, cross-shard ordering, RESP3 nulls.
//! Every expected byte string here was first checked against redis-server 7.0.

mod common;

use common::{encode, escape, RawConn, Server};
use std::io::Write;
use std::time::Duration;

/// Sends `payload` from a second thread while this one reads, so that neither side can stall
/// on a full socket buffer, and returns `n` replies.
fn pipeline(conn: &mut RawConn, payload: Vec<u8>, n: usize) -> Vec<Vec<u8>> {
    let mut writer = conn.stream().try_clone().unwrap();
    let handle = std::thread::spawn(move || writer.write_all(&payload));
    let replies = conn.read_replies(n);
    handle.join().unwrap().unwrap();
    replies
}

fn bulk(s: &str) -> Vec<u8> {
    format!("${}\r\n{s}\r\n", s.len()).into_bytes()
}

#[test]
fn ten_thousand_pipelined_commands_answer_in_order() {
    let server = Server::start(&[]);
    let mut conn = server.raw();
    let mut payload = Vec::new();
    for i in 0..5000 {
        payload.extend(encode(&[
            &b"SET"[..],
            format!("key:{i}").as_bytes(),
            i.to_string().as_bytes(),
        ]));
        payload.extend(encode(&[&b"GET"[..], format!("key:{i}").as_bytes()]));
    }
    let replies = pipeline(&mut conn, payload, 10_000);
    for (i, pair) in replies.chunks(2).enumerate() {
        assert_eq!(pair[0], b"+OK\r\n", "SET key:{i}");
        assert_eq!(pair[1], bulk(&i.to_string()), "GET key:{i}");
    }
    assert_eq!(conn.cmd(&["DBSIZE"]), b":5000\r\n");
}

#[test]
fn pipelined_commands_across_shards_answer_in_order() {
    let server = Server::start(&[]);
    let mut conn = server.raw();
    let mut payload = Vec::new();
    for i in 1..=100 {
        payload.extend(encode(&["SET", &format!("k{i}"), &format!("v{i}")]));
    }
    for i in 1..=100 {
        payload.extend(encode(&["GET", &format!("k{i}")]));
    }
    // Interleave writes and reads of keys on different shards, and deletes of several keys.
    for i in 1..=100 {
        payload.extend(encode(&["SET", &format!("k{i}"), &format!("w{i}")]));
        payload.extend(encode(&["GET", &format!("k{}", 101 - i)]));
    }
    payload.extend(encode(&[
        "DEL", "k1", "k2", "k3", "k4", "k5", "k6", "k7", "k8", "nope",
    ]));
    payload.extend(encode(&["EXISTS", "k1", "k9", "k10", "k50"]));
    let replies = pipeline(&mut conn, payload, 402);
    for i in 0..100 {
        assert_eq!(replies[i], b"+OK\r\n", "SET k{}", i + 1);
        assert_eq!(
            replies[100 + i],
            bulk(&format!("v{}", i + 1)),
            "GET k{}",
            i + 1
        );
    }
    for i in 1..=100 {
        let get = &replies[200 + 2 * (i - 1) + 1];
        let other = 101 - i;
        // k<other> was rewritten to w<other> earlier in this run exactly when other < i.
        let want = if other < i {
            format!("w{other}")
        } else {
            format!("v{other}")
        };
        assert_eq!(get, &bulk(&want), "GET k{other} after SET k{i}");
    }
    assert_eq!(replies[400], b":8\r\n");
    assert_eq!(replies[401], b":3\r\n");
}

#[test]
fn inline_commands() {
    let server = Server::start(&[]);
    let mut conn = server.raw();
    conn.send(b"PING\r\n");
    assert_eq!(conn.read_reply(), b"+PONG\r\n");
    conn.send(b"SET greeting hello\r\nGET greeting\r\n");
    assert_eq!(
        conn.read_replies(2),
        vec![b"+OK\r\n".to_vec(), bulk("hello")]
    );
    // Quotes and escapes follow sdssplitargs; a bare LF ends a line too.
    conn.send(b"SET \"two words\" \"a\\x41\\n\"\nGET \"two words\"\n");
    assert_eq!(
        conn.read_replies(2),
        vec![b"+OK\r\n".to_vec(), b"$3\r\naA\n\r\n".to_vec()]
    );
    // Blank lines and empty multibulks are skipped without a reply.
    conn.send(b"\r\n\r\n*0\r\n*-1\r\nPING\r\n");
    assert_eq!(conn.read_reply(), b"+PONG\r\n");
    // Inline and multibulk mixed in one write.
    let mut payload = b"ECHO inline\r\n".to_vec();
    payload.extend(encode(&["ECHO", "multibulk"]));
    payload.extend(b"  ECHO   spaced   \r\n");
    conn.send(&payload);
    assert_eq!(
        conn.read_replies(3),
        vec![bulk("inline"), bulk("multibulk"), bulk("spaced")]
    );
    // Inline commands go through the same command layer.
    conn.send(b"NOSUCHCMD a b\r\n");
    assert_eq!(
        conn.read_reply(),
        b"-ERR unknown command 'NOSUCHCMD', with args beginning with: 'a' 'b' \r\n"
    );
}

/// Sends `payload` on a fresh connection and expects exactly `want` and then a close, while an
/// already open second client keeps working.
fn expect_protocol_error(server: &Server, payload: &[u8], want: &[u8]) {
    let mut bystander = server.raw();
    assert_eq!(bystander.cmd(&["PING"]), b"+PONG\r\n");
    let mut conn = server.raw();
    conn.set_read_timeout(Duration::from_secs(10));
    // The server may close before taking all of a large payload; that is fine.
    let _ = conn.send_checked(payload);
    let got = conn.read_until_closed();
    assert_eq!(
        got,
        want,
        "payload {:?}: got {:?}",
        escape(&payload[..payload.len().min(64)]),
        escape(&got)
    );
    assert_eq!(bystander.cmd(&["ECHO", "still here"]), bulk("still here"));
    assert_eq!(server.raw().cmd(&["PING"]), b"+PONG\r\n");
}

#[test]
fn protocol_errors_reply_and_close() {
    let server = Server::start(&[]);
    let cases: &[(&[u8], &[u8])] = &[
        (
            b"*x\r\n",
            b"-ERR Protocol error: invalid multibulk length\r\n",
        ),
        (
            b"*2000000000000\r\n",
            b"-ERR Protocol error: invalid multibulk length\r\n",
        ),
        (
            b"*1\r\n$-5\r\n",
            b"-ERR Protocol error: invalid bulk length\r\n",
        ),
        (
            b"*1\r\n$x\r\n",
            b"-ERR Protocol error: invalid bulk length\r\n",
        ),
        (
            b"*1\r\n$600000000\r\n",
            b"-ERR Protocol error: invalid bulk length\r\n",
        ),
        (
            b"*1\r\nfoo\r\n",
            b"-ERR Protocol error: expected '$', got 'f'\r\n",
        ),
        (
            b"SET \"a b\r\n",
            b"-ERR Protocol error: unbalanced quotes in request\r\n",
        ),
        (
            b"'a\r\n",
            b"-ERR Protocol error: unbalanced quotes in request\r\n",
        ),
        (
            b"ECHO \"a\"b\r\n",
            b"-ERR Protocol error: unbalanced quotes in request\r\n",
        ),
        (
            b"PING\r\n*x\r\n",
            b"+PONG\r\n-ERR Protocol error: invalid multibulk length\r\n",
        ),
    ];
    for (payload, want) in cases {
        expect_protocol_error(&server, payload, want);
    }
}

#[test]
fn inline_request_over_64k_without_newline_is_rejected() {
    let server = Server::start(&[]);
    let payload = vec![b'a'; 70 * 1024];
    expect_protocol_error(
        &server,
        &payload,
        b"-ERR Protocol error: too big inline request\r\n",
    );
}

#[test]
fn big_bulk_argument_split_across_many_small_writes() {
    let server = Server::start(&[]);
    let mut conn = server.raw();
    let value: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    let request = encode(&[&b"SET"[..], b"bigkey", &value]);
    for chunk in request.chunks(997) {
        conn.send(chunk);
    }
    assert_eq!(conn.read_reply(), b"+OK\r\n");
    let mut want = format!("${}\r\n", value.len()).into_bytes();
    want.extend(&value);
    want.extend(b"\r\n");
    assert_eq!(conn.cmd(&["GET", "bigkey"]), want);
    // A small command sent one byte at a time.
    for b in encode(&["ECHO", "bytewise"]) {
        conn.send(&[b]);
        std::thread::sleep(Duration::from_micros(200));
    }
    assert_eq!(conn.read_reply(), bulk("bytewise"));
}

#[test]
fn resp3_null_after_hello_3() {
    let server = Server::start(&[]);
    let mut conn = server.raw();
    let hello = conn.cmd(&["HELLO", "3"]);
    assert_eq!(
        hello[0],
        b'%',
        "HELLO 3 replies with a map: {}",
        escape(&hello)
    );
    assert_eq!(conn.cmd(&["GET", "missing"]), b"_\r\n");
    assert_eq!(conn.cmd(&["SET", "k1", "v"]), b"+OK\r\n");
    assert_eq!(conn.cmd(&["GET", "k1"]), bulk("v"));
    let hello = conn.cmd(&["HELLO", "2"]);
    assert_eq!(
        hello[0],
        b'*',
        "HELLO 2 replies with an array: {}",
        escape(&hello)
    );
    assert_eq!(conn.cmd(&["GET", "missing"]), b"$-1\r\n");
}

#[test]
fn redis_crate_client_works() {
    let server = Server::start(&[]);
    let mut con = server.client();
    let () = redis::cmd("SET")
        .arg("crate")
        .arg("yes")
        .query(&mut con)
        .unwrap();
    let got: Option<String> = redis::cmd("GET").arg("crate").query(&mut con).unwrap();
    assert_eq!(got.as_deref(), Some("yes"));
    let missing: Option<String> = redis::cmd("GET").arg("nope").query(&mut con).unwrap();
    assert_eq!(missing, None);
}

#[test]
fn shutdown_nosave_stops_the_server() {
    let mut server = Server::start(&[]);
    let mut conn = server.raw();
    conn.send(&encode(&["SHUTDOWN", "NOSAVE"]));
    // Redis closes the connection without a reply when it shuts down.
    let _ = conn.read_until_closed();
    let status = server.wait_exit(Duration::from_secs(30));
    assert!(
        status.is_some(),
        "server still running 30s after SHUTDOWN NOSAVE; log:\n{}",
        server.log()
    );
}

mod harness_self_tests {
    use super::common::*;

    #[test]
    fn frames() {
        let cases: &[&[u8]] = &[
            b"+OK\r\n",
            b"-ERR x\r\n",
            b":1\r\n",
            b"$-1\r\n",
            b"$3\r\na\r\n\r\n",
            b"*-1\r\n",
            b"*2\r\n$1\r\na\r\n*1\r\n:1\r\n",
            b"%1\r\n+a\r\n,1.5\r\n",
            b"|1\r\n+a\r\n:1\r\n$2\r\nhi\r\n",
            b"$?\r\n;2\r\nab\r\n;0\r\n",
            b"*?\r\n:1\r\n:2\r\n.\r\n",
            b"=7\r\ntxt:abc\r\n",
            b"_\r\n",
        ];
        for case in cases {
            assert_eq!(frame_end(case, 0), Ok(Some(case.len())), "{}", escape(case));
            for cut in 0..case.len() {
                assert_eq!(
                    frame_end(&case[..cut], 0),
                    Ok(None),
                    "{} cut {cut}",
                    escape(case)
                );
            }
        }
    }

    #[test]
    fn splitting() {
        let got = split_args(r#"set "a b\x41\n" 'it\'s' x"y" "#).unwrap();
        assert_eq!(
            got,
            vec![
                b"set".to_vec(),
                b"a bA\n".to_vec(),
                b"it's".to_vec(),
                b"xy".to_vec()
            ]
        );
        assert!(split_args(r#"get "a"b"#).is_err());
        assert!(split_args(r#"get "a"#).is_err());
        assert_eq!(split_args(r#"set k """#).unwrap()[2], b"");
    }

    #[test]
    fn listening_line() {
        assert_eq!(
            parse_listening_port("shardis: listening on 127.0.0.1:6380 (2 shards)"),
            Some(6380)
        );
        assert_eq!(parse_listening_port("nothing"), None);
    }
}
