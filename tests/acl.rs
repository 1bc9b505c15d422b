//! ACLs through the real binary (2 shards): what the differential corpus (`tests/diff/acl.redis`)
//! cannot show: connections of deleted users closed, subscribers cut off when their channels
//! are revoked, the ACL file, users from the configuration, `requirepass`, checks inside
//! scripts on either shard, and ACL LOG's entries.

mod common;

use common::{fresh_dir, RawConn, Server};
use std::time::{Duration, Instant};

fn ok(c: &mut RawConn, args: &[&str]) {
    let r = c.cmd(args);
    assert_eq!(r, b"+OK\r\n", "{args:?}: {}", String::from_utf8_lossy(&r));
}

fn text(r: &[u8]) -> String {
    String::from_utf8_lossy(r).into_owned()
}

/// Waits (generously) until the server closes `c`.
fn closed_within(c: &mut RawConn, deadline: Duration) -> bool {
    c.set_read_timeout(Duration::from_millis(100));
    let end = Instant::now() + deadline;
    while Instant::now() < end {
        match c.try_read_frame() {
            Err(e) if e.contains("closed") || e.contains("EOF") || e.contains("reset") => {
                return true
            }
            _ => {}
        }
    }
    false
}

#[test]
fn deleted_users_connections_are_closed_others_stay() {
    let server = Server::start(&[]);
    let mut admin = server.raw();
    ok(
        &mut admin,
        &["ACL", "SETUSER", "bob", "on", ">pw", "~*", "+@all"],
    );
    // Several connections, so that both shards hold some of bob's.
    let mut bobs: Vec<RawConn> = (0..4).map(|_| server.raw()).collect();
    for b in bobs.iter_mut() {
        ok(b, &["AUTH", "bob", "pw"]);
        assert_eq!(b.cmd(&["ACL", "WHOAMI"]), b"$3\r\nbob\r\n");
    }
    let mut other = server.raw();
    assert_eq!(admin.cmd(&["ACL", "DELUSER", "bob"]), b":1\r\n");
    // Idle connections are closed by the shards' sweep.
    for b in bobs.iter_mut().take(2) {
        assert!(
            closed_within(b, Duration::from_secs(10)),
            "bob's idle connection still open"
        );
    }
    // One that sends a command at once gets no reply: it is closed.
    let b = &mut bobs[2];
    b.send(&common::encode(&["PING"]));
    assert!(closed_within(b, Duration::from_secs(10)));
    assert_eq!(other.cmd(&["PING"]), b"+PONG\r\n");
    // A user deleting itself gets its reply, then is closed.
    ok(
        &mut admin,
        &["ACL", "SETUSER", "carl", "on", "nopass", "+@all", "~*"],
    );
    let mut carl = server.raw();
    ok(&mut carl, &["AUTH", "carl", "x"]);
    assert_eq!(carl.cmd(&["ACL", "DELUSER", "carl"]), b":1\r\n");
    assert!(closed_within(&mut carl, Duration::from_secs(10)));
    // Permission changes reach existing connections at once.
    ok(
        &mut admin,
        &["ACL", "SETUSER", "dora", "on", "nopass", "+@all", "~*"],
    );
    let mut dora = server.raw();
    ok(&mut dora, &["AUTH", "dora", "x"]);
    ok(&mut admin, &["ACL", "SETUSER", "dora", "-ping"]);
    assert_eq!(
        text(&dora.cmd(&["PING"])),
        "-NOPERM this user has no permissions to run the 'ping' command\r\n"
    );
    // A disabled user can no longer log in, and its connections are closed (as the issue
    // asks; Redis 7.0 would leave them open).
    let mut idle_dora = server.raw();
    ok(&mut idle_dora, &["AUTH", "dora", "x"]);
    ok(&mut admin, &["ACL", "SETUSER", "dora", "off"]);
    assert!(text(&server.raw().cmd(&["AUTH", "dora", "x"])).starts_with("-WRONGPASS"));
    assert!(closed_within(&mut idle_dora, Duration::from_secs(10)));
    dora.send(&common::encode(&["PING"]));
    assert!(closed_within(&mut dora, Duration::from_secs(10)));
    assert_eq!(admin.cmd(&["PING"]), b"+PONG\r\n");
}

#[test]
fn subscribers_losing_their_channels_are_disconnected() {
    let server = Server::start(&[]);
    let mut admin = server.raw();
    ok(
        &mut admin,
        &[
            "ACL", "SETUSER", "sub", "on", "nopass", "+@all", "&news.*", "&alerts",
        ],
    );
    let mut keeps = server.raw();
    ok(&mut keeps, &["AUTH", "sub", "x"]);
    keeps.cmd(&["SUBSCRIBE", "alerts"]);
    let mut loses = server.raw();
    ok(&mut loses, &["AUTH", "sub", "x"]);
    loses.cmd(&["SUBSCRIBE", "news.sport"]);
    let mut pattern = server.raw();
    ok(&mut pattern, &["AUTH", "sub", "x"]);
    pattern.cmd(&["PSUBSCRIBE", "news.*"]);
    // Not allowed: refused without subscribing.
    let mut refused = server.raw();
    ok(&mut refused, &["AUTH", "sub", "x"]);
    assert_eq!(
        text(&refused.cmd(&["SUBSCRIBE", "other"])),
        "-NOPERM this user has no permissions to access one of the channels used as arguments\r\n"
    );
    ok(
        &mut admin,
        &["ACL", "SETUSER", "sub", "resetchannels", "&alerts"],
    );
    assert!(closed_within(&mut loses, Duration::from_secs(10)));
    assert!(closed_within(&mut pattern, Duration::from_secs(10)));
    // The subscriber whose channel is still allowed keeps receiving.
    assert_eq!(admin.cmd(&["PUBLISH", "alerts", "hi"]), b":1\r\n");
    keeps.set_read_timeout(Duration::from_secs(5));
    assert_eq!(
        keeps.read_reply(),
        b"*3\r\n$7\r\nmessage\r\n$6\r\nalerts\r\n$2\r\nhi\r\n"
    );
}

#[test]
fn acl_file_loads_saves_and_refuses_a_broken_file_whole() {
    let dir = fresh_dir("aclfile");
    let file = dir.join("users.acl");
    std::fs::write(
        &file,
        "user default on nopass ~* &* +@all\nuser ann on >annpw ~a* +get +set\n\n",
    )
    .unwrap();
    let path = file.to_str().unwrap().to_string();
    let server = Server::start(&["--aclfile", &path]);
    let mut c = server.raw();
    assert_eq!(
        text(&c.cmd(&["ACL", "USERS"])),
        "*2\r\n$3\r\nann\r\n$7\r\ndefault\r\n"
    );
    let mut ann = server.raw();
    ok(&mut ann, &["AUTH", "ann", "annpw"]);
    ok(&mut ann, &["SET", "a1", "v"]);
    assert!(text(&ann.cmd(&["SET", "b1", "v"])).starts_with("-NOPERM"));

    // SAVE writes every user; the file loads back to the same users.
    ok(
        &mut c,
        &["ACL", "SETUSER", "ben", "on", "nopass", "+@read", "~*"],
    );
    ok(&mut c, &["ACL", "SAVE"]);
    let saved = std::fs::read_to_string(&file).unwrap();
    let list = c.cmd(&["ACL", "LIST"]);
    for line in saved.lines() {
        assert!(text(&list).contains(line), "{line} not in ACL LIST");
    }
    assert_eq!(saved.lines().count(), 3, "{saved}");

    // A broken file changes nothing and says why.
    std::fs::write(
        &file,
        "user ann on >x +@all\nuser bad on +nosuchcmd\nnotauser x\nuser bad2 ~a* allkeys ~b\n",
    )
    .unwrap();
    let r = text(&c.cmd(&["ACL", "LOAD"]));
    assert!(r.starts_with("-ERR "), "{r}");
    assert!(r.contains(":2: Error in applying operation '+nosuchcmd': Unknown command or category name in ACL."), "{r}");
    assert!(
        r.contains(":3 should start with user keyword followed by the username."),
        "{r}"
    );
    assert!(
        r.contains(":4: Adding a pattern after the * pattern"),
        "{r}"
    );
    assert!(r.ends_with("WARNING: ACL errors detected, no change to the previously active ACL rules was performed\r\n"), "{r}");
    assert!(text(&c.cmd(&["ACL", "USERS"])).contains("ben"));
    ok(&mut ann, &["SET", "a2", "v"]);

    // A good file replaces every user; connections of the old ones are closed.
    std::fs::write(&file, "user cid on nopass ~* +@all\n").unwrap();
    ok(&mut c, &["ACL", "LOAD"]);
    assert_eq!(
        text(&c.cmd(&["ACL", "USERS"])),
        "*2\r\n$3\r\ncid\r\n$7\r\ndefault\r\n"
    );
    assert!(closed_within(&mut ann, Duration::from_secs(10)));
    assert_eq!(c.cmd(&["PING"]), b"+PONG\r\n");
    drop(server);

    // A broken ACL file stops start-up.
    std::fs::write(&file, "user x on +nosuchcmd\n").unwrap();
    let (status, log) = common::run_to_exit(&["--aclfile", &path]);
    assert!(!status.success());
    assert!(log.contains("nosuchcmd"), "{log}");
}

#[test]
fn users_from_the_configuration_and_requirepass() {
    let server = Server::start(&[
        "--user",
        "eve on >evepw ~e* +@string",
        "--requirepass",
        "defpw",
    ]);
    let mut c = server.raw();
    assert_eq!(
        text(&c.cmd(&["GET", "x"])),
        "-NOAUTH Authentication required.\r\n"
    );
    assert!(text(&c.cmd(&["AUTH", "wrong"])).starts_with("-WRONGPASS"));
    ok(&mut c, &["AUTH", "defpw"]);
    assert_eq!(c.cmd(&["ACL", "WHOAMI"]), b"$7\r\ndefault\r\n");
    let list = text(&c.cmd(&["ACL", "LIST"]));
    assert!(list.contains("user eve on #"), "{list}");
    assert!(list.contains(" ~e* resetchannels -@all +@string"), "{list}");
    let mut e = server.raw();
    ok(&mut e, &["AUTH", "eve", "evepw"]);
    ok(&mut e, &["SET", "e1", "v"]);
    assert!(text(&e.cmd(&["LPUSH", "e2", "v"])).starts_with("-NOPERM"));

    // CONFIG SET requirepass changes the default user's password; "" makes it nopass.
    ok(&mut c, &["CONFIG", "SET", "requirepass", "newpw"]);
    let mut d = server.raw();
    assert!(text(&d.cmd(&["PING"])).starts_with("-NOAUTH"));
    ok(&mut d, &["AUTH", "default", "newpw"]);
    ok(&mut c, &["CONFIG", "SET", "requirepass", ""]);
    let mut f = server.raw();
    assert_eq!(f.cmd(&["PING"]), b"+PONG\r\n");
    assert!(text(&f.cmd(&["AUTH", "x"])).starts_with("-ERR AUTH <password> called without"));
    // Switching the default user off requires AUTH as someone else.
    ok(&mut c, &["ACL", "SETUSER", "default", "off"]);
    let mut g = server.raw();
    assert!(text(&g.cmd(&["PING"])).starts_with("-NOAUTH"));
    ok(&mut g, &["AUTH", "eve", "evepw"]);
    assert_eq!(
        text(&g.cmd(&["CLIENT", "LIST", "ID", "0"])),
        "-NOPERM this user has no permissions to run the 'client|list' command\r\n"
    );
}

#[test]
fn scripts_check_the_commands_they_call_on_either_shard() {
    let server = Server::start(&[]);
    let mut admin = server.raw();
    ok(
        &mut admin,
        &[
            "ACL", "SETUSER", "lua", "on", "nopass", "+eval", "+evalsha", "+get", "~a*", "~{b}*",
        ],
    );
    ok(&mut admin, &["SET", "a1", "x"]);
    let mut c = server.raw();
    ok(&mut c, &["AUTH", "lua", "x"]);
    // Keys on each shard (a1 and {b}1 hash to different shards with 2 shards, or the same:
    // either way both paths run).
    for key in ["a1", "{b}1"] {
        let r = text(&c.cmd(&["EVAL", "return redis.call('set', KEYS[1], 'v')", "1", key]));
        assert!(
            r.starts_with(
                "-ERR The user executing the script can't run this command or subcommand script:"
            ),
            "{key}: {r}"
        );
        let r = text(&c.cmd(&["EVAL", "return redis.pcall('get', 'zzz')", "1", key]));
        assert_eq!(
            r,
            "-ERR The user executing the script can't access at least one of the keys mentioned in the command arguments\r\n"
        );
        let r = c.cmd(&["EVAL", "return redis.call('get', KEYS[1])", "1", key]);
        assert!(r.starts_with(b"$"), "{}", text(&r));
    }
    // The declared keys themselves are checked before the script runs.
    assert_eq!(
        text(&c.cmd(&["EVAL", "return 1", "1", "zzz"])),
        "-NOPERM this user has no permissions to access one of the keys used as arguments\r\n"
    );
    let log = text(&admin.cmd(&["ACL", "LOG"]));
    assert!(log.contains("lua"), "{log}");
    assert!(log.contains("toplevel"), "{log}");
    // Nothing was written.
    assert_eq!(admin.cmd(&["EXISTS", "{b}1"]), b":0\r\n");
}

#[test]
fn acl_log_records_denials_and_failed_logins() {
    let server = Server::start(&[]);
    let mut admin = server.raw();
    ok(
        &mut admin,
        &[
            "ACL",
            "SETUSER",
            "lo",
            "on",
            ">pw",
            "+get",
            "~k*",
            "+client|setname",
        ],
    );
    let mut c = server.raw();
    assert!(text(&c.cmd(&["AUTH", "lo", "bad"])).starts_with("-WRONGPASS"));
    ok(&mut c, &["AUTH", "lo", "pw"]);
    c.cmd(&["SET", "k", "v"]);
    c.cmd(&["GET", "x"]);
    c.cmd(&["GET", "x"]);
    ok(&mut c, &["CLIENT", "SETNAME", "worker"]);
    let log = admin.cmd(&["ACL", "LOG"]);
    let (_, entries) = common::split_aggregate(&log);
    assert_eq!(entries.len(), 3, "{}", text(&log));
    let newest = text(&entries[0]);
    // Repeats merge: count 2.
    for part in [
        "count\r\n:2",
        "reason\r\n$3\r\nkey",
        "context\r\n$8\r\ntoplevel",
        "object\r\n$1\r\nx",
        "username\r\n$2\r\nlo",
        "user=lo",
    ] {
        assert!(newest.contains(part), "{part} missing in {newest}");
    }
    let cmd = text(&entries[1]);
    assert!(
        cmd.contains("reason\r\n$7\r\ncommand") && cmd.contains("object\r\n$3\r\nset"),
        "{cmd}"
    );
    let auth = text(&entries[2]);
    assert!(
        auth.contains("reason\r\n$4\r\nauth") && auth.contains("object\r\n$4\r\nAUTH"),
        "{auth}"
    );
    // CLIENT LIST and CLIENT KILL USER know the user.
    let list = text(&admin.cmd(&["CLIENT", "LIST"]));
    assert!(
        list.contains("name=worker") && list.contains("user=lo"),
        "{list}"
    );
    assert_eq!(admin.cmd(&["CLIENT", "KILL", "USER", "lo"]), b":1\r\n");
    assert!(closed_within(&mut c, Duration::from_secs(10)));
    ok(&mut admin, &["ACL", "LOG", "RESET"]);
    assert_eq!(admin.cmd(&["ACL", "LOG"]), b"*0\r\n");
}
