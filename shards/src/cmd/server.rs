//! Server and connection commands. The shard runs the per-shard halves (PING, ECHO, TIME,
//! DBSIZE, FLUSHDB, FLUSHALL, SWAPDB); commands about connection state or the whole process
//! (SELECT, HELLO, CLIENT, INFO, CONFIG, COMMAND, …) are declared here and carried out by the
//! server layer (`Route::Server`).

use super::spec::{
    acl, flag, kflag, Arg, ArgType, CommandSpec, ConnCmd, Group, KeySpec, Merge, Route, Split,
};
use super::Call;
use crate::limits::DATABASES;
use crate::util::eq_ic;
use crate::{Error, Result, Shard};

const SERVER: CommandSpec = CommandSpec {
    group: Group::Server,
    ..CommandSpec::DEFAULT
};
const CONN: CommandSpec = CommandSpec {
    group: Group::Connection,
    acl: acl::CONNECTION,
    ..CommandSpec::DEFAULT
};

/// Optional ASYNC|SYNC of FLUSHDB/FLUSHALL.
const FLUSH_ARGS: &[Arg] = &[Arg::oneof(
    "flush-type",
    &[
        Arg::token("async", "ASYNC").since("4.0.0"),
        Arg::token("sync", "SYNC").since("6.2.0"),
    ],
)
.optional()];

pub const COMMANDS: &[CommandSpec] = &[
    ACL,
    SLOWLOG,
    LATENCY,
    MONITOR,
    MEMORY,
    CommandSpec {
        name: "ping",
        arity: -1,
        flags: flag::FAST | flag::SENTINEL,
        run: Some(ping),
        summary: "Checks that the server is alive; answers PONG or echoes a message.",
        args: &[Arg::new("message", ArgType::String).optional()],
        tips: &["request_policy:all_shards", "response_policy:all_succeeded"],
        ..CONN
    },
    CommandSpec {
        name: "echo",
        arity: 2,
        flags: flag::LOADING | flag::STALE | flag::FAST,
        run: Some(echo),
        summary: "Replies with the given message.",
        args: &[Arg::new("message", ArgType::String)],
        ..CONN
    },
    CommandSpec {
        name: "time",
        arity: 1,
        flags: flag::LOADING | flag::STALE | flag::FAST,
        run: Some(time),
        summary: "Tells the server's current time as seconds and microseconds.",
        since: "2.6.0",
        tips: &["nondeterministic_output"],
        ..SERVER
    },
    CommandSpec {
        name: "dbsize",
        arity: 1,
        flags: flag::READONLY | flag::FAST,
        acl: acl::KEYSPACE,
        route: Route::AllShards(Merge::Sum),
        run: Some(dbsize),
        summary: "Counts the keys in the selected database.",
        tips: &["request_policy:all_shards", "response_policy:agg_sum"],
        ..SERVER
    },
    CommandSpec {
        name: "flushdb",
        arity: -1,
        flags: flag::WRITE,
        acl: acl::KEYSPACE | acl::DANGEROUS,
        route: Route::AllShards(Merge::First),
        run: Some(flushdb),
        summary: "Deletes every key of the selected database.",
        complexity: "O(N) where N is the number of keys in the selected database",
        args: FLUSH_ARGS,
        history: &[("4.0.0", "Added the `ASYNC` flushing mode modifier."), ("6.2.0", "Added the `SYNC` flushing mode modifier.")],
        tips: &["request_policy:all_shards", "response_policy:all_succeeded"],
        ..SERVER
    },
    CommandSpec {
        name: "flushall",
        arity: -1,
        flags: flag::WRITE,
        acl: acl::KEYSPACE | acl::DANGEROUS,
        route: Route::AllShards(Merge::First),
        run: Some(flushall),
        summary: "Deletes every key of every database.",
        complexity: "O(N) where N is the total number of keys in all databases",
        args: FLUSH_ARGS,
        history: &[("4.0.0", "Added the `ASYNC` flushing mode modifier."), ("6.2.0", "Added the `SYNC` flushing mode modifier.")],
        tips: &["request_policy:all_shards", "response_policy:all_succeeded"],
        ..SERVER
    },
    CommandSpec {
        name: "swapdb",
        arity: 3,
        flags: flag::WRITE | flag::FAST,
        acl: acl::KEYSPACE | acl::DANGEROUS,
        route: Route::AllShards(Merge::First),
        run: Some(swapdb),
        summary: "Exchanges the contents of two databases.",
        since: "4.0.0",
        complexity: "O(N) where N is the count of clients watching or blocking on keys from both databases.",
        args: &[Arg::new("index1", ArgType::Integer), Arg::new("index2", ArgType::Integer)],
        ..SERVER
    },
    CommandSpec {
        name: "select",
        arity: 2,
        flags: flag::LOADING | flag::STALE | flag::FAST,
        route: Route::Server(ConnCmd::Select),
        summary: "Chooses the database the connection works on.",
        args: &[Arg::new("index", ArgType::Integer)],
        ..CONN
    },
    CommandSpec {
        name: "hello",
        arity: -1,
        flags: flag::NOSCRIPT | flag::LOADING | flag::STALE | flag::FAST | flag::NO_AUTH | flag::SENTINEL | flag::ALLOW_BUSY,
        route: Route::Server(ConnCmd::Hello),
        summary: "Negotiates the protocol version, optionally authenticates and names the connection.",
        since: "6.0.0",
        history: &[("6.2.0", "`protover` made optional; when called without arguments the command reports the current connection's context.")],
        args: &[Arg::block(
            "arguments",
            &[
                Arg::new("protover", ArgType::Integer),
                Arg::block("username-password", &[Arg::new("username", ArgType::String), Arg::new("password", ArgType::String)])
                    .with_token("AUTH")
                    .optional(),
                Arg::new("clientname", ArgType::String).with_token("SETNAME").optional(),
            ],
        )
        .optional()],
        ..CONN
    },
    CommandSpec {
        name: "quit",
        arity: -1,
        flags: flag::NOSCRIPT | flag::LOADING | flag::STALE | flag::FAST | flag::NO_AUTH | flag::ALLOW_BUSY,
        route: Route::Server(ConnCmd::Quit),
        summary: "Closes the connection after replying OK.",
        ..CONN
    },
    CommandSpec {
        name: "reset",
        arity: 1,
        flags: flag::NOSCRIPT | flag::LOADING | flag::STALE | flag::FAST | flag::NO_AUTH | flag::ALLOW_BUSY,
        route: Route::Server(ConnCmd::Reset),
        summary: "Returns the connection to its initial state.",
        since: "6.2.0",
        ..CONN
    },
    CommandSpec {
        name: "auth",
        arity: -2,
        flags: flag::NOSCRIPT | flag::LOADING | flag::STALE | flag::FAST | flag::NO_AUTH | flag::SENTINEL | flag::ALLOW_BUSY,
        route: Route::Server(ConnCmd::Auth),
        summary: "Authenticates the connection.",
        complexity: "O(N) where N is the number of passwords defined for the user",
        history: &[("6.0.0", "Added ACL style (username and password).")],
        args: &[Arg::new("username", ArgType::String).since("6.0.0").optional(), Arg::new("password", ArgType::String)],
        ..CONN
    },
    CommandSpec {
        name: "info",
        arity: -1,
        flags: flag::LOADING | flag::STALE | flag::SENTINEL,
        acl: acl::DANGEROUS,
        route: Route::Server(ConnCmd::Info),
        summary: "Reports information and statistics about the server.",
        history: &[("7.0.0", "Added support for taking multiple section arguments.")],
        tips: &["nondeterministic_output", "request_policy:all_shards", "response_policy:special"],
        args: &[Arg::new("section", ArgType::String).optional().multiple()],
        ..SERVER
    },
    CommandSpec {
        name: "shutdown",
        arity: -1,
        flags: flag::ADMIN | flag::NOSCRIPT | flag::LOADING | flag::STALE | flag::NO_MULTI | flag::SENTINEL | flag::ALLOW_BUSY,
        route: Route::Server(ConnCmd::Shutdown),
        summary: "Stops the server, optionally saving first.",
        complexity: "O(N) when saving, where N is the total number of keys in all databases when saving data, otherwise O(1)",
        history: &[("7.0.0", "Added the `NOW`, `FORCE` and `ABORT` modifiers.")],
        args: &[
            Arg::oneof("nosave-save", &[Arg::token("nosave", "NOSAVE"), Arg::token("save", "SAVE")]).optional(),
            Arg::token("now", "NOW").since("7.0.0").optional(),
            Arg::token("force", "FORCE").since("7.0.0").optional(),
            Arg::token("abort", "ABORT").since("7.0.0").optional(),
        ],
        ..SERVER
    },
    CommandSpec {
        name: "save",
        arity: 1,
        flags: flag::ADMIN | flag::NOSCRIPT | flag::NO_ASYNC_LOADING | flag::NO_MULTI,
        route: Route::Server(ConnCmd::Persist),
        summary: "Writes every shard's data to its RDB file, waiting until it is on disk.",
        since: "1.0.0",
        complexity: "O(N) where N is the total number of keys in all databases",
        ..SERVER
    },
    CommandSpec {
        name: "bgsave",
        arity: -1,
        flags: flag::ADMIN | flag::NOSCRIPT | flag::NO_ASYNC_LOADING,
        route: Route::Server(ConnCmd::Persist),
        summary: "Writes every shard's data to its RDB file in the background.",
        since: "1.0.0",
        complexity: "O(1)",
        history: &[("3.2.2", "Added the `SCHEDULE` option.")],
        args: &[Arg::token("schedule", "SCHEDULE").since("3.2.2").optional()],
        ..SERVER
    },
    CommandSpec {
        name: "lastsave",
        arity: 1,
        flags: flag::LOADING | flag::STALE | flag::FAST,
        acl: acl::ADMIN | acl::DANGEROUS,
        route: Route::Server(ConnCmd::Persist),
        summary: "Reports the Unix time of the last successful save.",
        since: "1.0.0",
        complexity: "O(1)",
        tips: &["nondeterministic_output"],
        ..SERVER
    },
    CommandSpec {
        name: "bgrewriteaof",
        arity: 1,
        flags: flag::ADMIN | flag::NOSCRIPT | flag::NO_ASYNC_LOADING,
        route: Route::Server(ConnCmd::Persist),
        summary: "Compacts every shard's append-only file in the background.",
        since: "1.0.0",
        complexity: "O(1)",
        ..SERVER
    },
    CommandSpec {
        name: "client",
        arity: -2,
        route: Route::Server(ConnCmd::Client),
        summary: "Inspects and manages client connections.",
        since: "2.4.0",
        complexity: "Depends on subcommand.",
        subcommands: CLIENT_SUBCOMMANDS,
        // The container itself is only @slow, as in Redis; its subcommands are @connection.
        acl: 0,
        ..CONN
    },
    CommandSpec {
        name: "config",
        arity: -2,
        route: Route::Server(ConnCmd::Config),
        summary: "Reads and changes the server's configuration.",
        since: "2.0.0",
        complexity: "Depends on subcommand.",
        subcommands: CONFIG_SUBCOMMANDS,
        ..SERVER
    },
    CommandSpec {
        name: "debug",
        arity: -2,
        flags: flag::ADMIN | flag::NOSCRIPT | flag::LOADING | flag::STALE | flag::PROTECTED,
        route: Route::Server(ConnCmd::Debug),
        summary: "Runs debugging and testing operations.",
        complexity: "Depends on subcommand.",
        ..SERVER
    },
];

fn ping(_: &mut Shard, c: &mut Call) -> Result<()> {
    match c.argv.len() {
        1 => c.out.simple("PONG"),
        2 => c.out.bulk(c.argv[1]),
        _ => return Err(Error::WrongArity("ping".into())),
    }
    Ok(())
}

fn echo(_: &mut Shard, c: &mut Call) -> Result<()> {
    c.out.bulk(c.argv[1]);
    Ok(())
}

fn time(_: &mut Shard, c: &mut Call) -> Result<()> {
    c.out.array(2);
    c.out.bulk_int((c.now_us / 1_000_000) as i64);
    c.out.bulk_int((c.now_us % 1_000_000) as i64);
    Ok(())
}

fn dbsize(sh: &mut Shard, c: &mut Call) -> Result<()> {
    let n = sh.db(c.db).len();
    c.out.int(n as i64);
    Ok(())
}

/// Parses FLUSHDB/FLUSHALL's optional ASYNC|SYNC. Both free memory at once here.
fn flush_mode(c: &Call) -> Result<()> {
    match c.argv.len() {
        1 => Ok(()),
        2 if eq_ic(c.argv[1], "async") || eq_ic(c.argv[1], "sync") => Ok(()),
        _ => Err(Error::Syntax),
    }
}

fn flushdb(sh: &mut Shard, c: &mut Call) -> Result<()> {
    flush_mode(c)?;
    let db = sh.db(c.db);
    sh.stats.dirty += db.len() as u64;
    sh.dbs[c.db].clear();
    sh.flushed(Some(c.db));
    c.out.ok();
    Ok(())
}

fn flushall(sh: &mut Shard, c: &mut Call) -> Result<()> {
    flush_mode(c)?;
    for db in &mut sh.dbs {
        sh.stats.dirty += db.len() as u64;
        db.clear();
    }
    sh.flushed(None);
    sh.stats.dirty += 1;
    c.out.ok();
    Ok(())
}

fn db_index(arg: &[u8], which: &str) -> Result<usize> {
    let n = crate::util::parse_i64(arg)
        .ok_or_else(|| Error::err(format!("invalid {which} DB index")))?;
    if n < 0 || n >= DATABASES as i64 {
        return Err(Error::DbIndexOutOfRange);
    }
    Ok(n as usize)
}

fn swapdb(sh: &mut Shard, c: &mut Call) -> Result<()> {
    if crate::keyspace::cluster_mode() {
        return Err(Error::err("SWAPDB is not allowed in cluster mode"));
    }
    let a = db_index(c.argv[1], "first")?;
    let b = db_index(c.argv[2], "second")?;
    sh.dbs.swap(a, b);
    sh.swapped(a, b, c.now_ms);
    sh.stats.dirty += 1;
    c.out.ok();
    Ok(())
}

const CLIENT_SUB: CommandSpec = CommandSpec {
    group: Group::Connection,
    acl: acl::CONNECTION,
    route: Route::Server(ConnCmd::Client),
    ..CommandSpec::DEFAULT
};

const CLIENT_SUBCOMMANDS: &[CommandSpec] = &[
    CommandSpec {
        name: "caching",
        arity: 3,
        flags: flag::NOSCRIPT | flag::LOADING | flag::STALE,
        summary: "Says whether the next command's keys are tracked (OPTIN / OPTOUT tracking).",
        since: "6.0.0",
        args: &[Arg::oneof(
            "mode",
            &[Arg::token("yes", "YES"), Arg::token("no", "NO")],
        )],
        ..CLIENT_SUB
    },
    CommandSpec {
        name: "tracking",
        arity: -3,
        flags: flag::NOSCRIPT | flag::LOADING | flag::STALE,
        summary: "Turns client-side caching invalidation messages on or off for the connection.",
        since: "6.0.0",
        complexity: "O(1). Some options may introduce additional complexity.",
        args: &[
            Arg::oneof("status", &[Arg::token("on", "ON"), Arg::token("off", "OFF")]),
            Arg::new("client-id", ArgType::Integer)
                .with_token("REDIRECT")
                .optional(),
            Arg::new("prefix", ArgType::String)
                .with_token("PREFIX")
                .optional()
                .multiple()
                .multiple_token(),
            Arg::token("bcast", "BCAST").optional(),
            Arg::token("optin", "OPTIN").optional(),
            Arg::token("optout", "OPTOUT").optional(),
            Arg::token("noloop", "NOLOOP").optional(),
        ],
        ..CLIENT_SUB
    },
    CommandSpec {
        name: "getredir",
        arity: 2,
        flags: flag::NOSCRIPT | flag::LOADING | flag::STALE,
        summary: "Tells where tracking notifications go (-1: no tracking).",
        since: "6.0.0",
        ..CLIENT_SUB
    },
    CommandSpec {
        name: "no-evict",
        arity: 3,
        flags: flag::ADMIN | flag::NOSCRIPT | flag::LOADING | flag::STALE,
        summary: "Marks the connection as one client eviction must spare.",
        since: "7.0.0",
        args: &[Arg::oneof(
            "enabled",
            &[Arg::token("on", "ON"), Arg::token("off", "OFF")],
        )],
        ..CLIENT_SUB
    },
    CommandSpec {
        name: "pause",
        arity: -3,
        flags: flag::ADMIN | flag::NOSCRIPT | flag::LOADING | flag::STALE,
        summary: "Holds clients' commands (all, or those that write) for a while.",
        since: "2.9.50",
        history: &[(
            "6.2.0",
            "`CLIENT PAUSE WRITE` mode added along with the `mode` option.",
        )],
        args: &[
            Arg::new("timeout", ArgType::Integer),
            Arg::oneof(
                "mode",
                &[Arg::token("write", "WRITE"), Arg::token("all", "ALL")],
            )
            .since("6.2.0")
            .optional(),
        ],
        ..CLIENT_SUB
    },
    CommandSpec {
        name: "reply",
        arity: 3,
        flags: flag::NOSCRIPT | flag::LOADING | flag::STALE,
        summary: "Turns replies to this connection on, off, or off for the next command.",
        since: "3.2.0",
        args: &[Arg::oneof(
            "on_off_skip",
            &[
                Arg::token("on", "ON"),
                Arg::token("off", "OFF"),
                Arg::token("skip", "SKIP"),
            ],
        )],
        ..CLIENT_SUB
    },
    CommandSpec {
        name: "trackinginfo",
        arity: 2,
        flags: flag::NOSCRIPT | flag::LOADING | flag::STALE,
        summary: "Describes the connection's client-side caching (tracking) state.",
        since: "6.2.0",
        ..CLIENT_SUB
    },
    CommandSpec {
        name: "unpause",
        arity: 2,
        flags: flag::ADMIN | flag::NOSCRIPT | flag::LOADING | flag::STALE,
        summary: "Ends a CLIENT PAUSE: held clients go on.",
        since: "6.2.0",
        complexity: "O(N) Where N is the number of paused clients",
        ..CLIENT_SUB
    },
    CommandSpec {
        name: "getname",
        arity: 2,
        flags: flag::NOSCRIPT | flag::LOADING | flag::STALE,
        summary: "Tells the name the connection was given, if any.",
        since: "2.6.9",
        ..CLIENT_SUB
    },
    CommandSpec {
        name: "help",
        arity: 2,
        flags: flag::LOADING | flag::STALE,
        summary: "Lists the CLIENT subcommands.",
        since: "5.0.0",
        ..CLIENT_SUB
    },
    CommandSpec {
        name: "id",
        arity: 2,
        flags: flag::NOSCRIPT | flag::LOADING | flag::STALE,
        summary: "Tells the connection's unique id.",
        since: "5.0.0",
        ..CLIENT_SUB
    },
    CommandSpec {
        name: "info",
        arity: 2,
        flags: flag::NOSCRIPT | flag::LOADING | flag::STALE,
        summary: "Describes this connection in CLIENT LIST's format.",
        since: "6.2.0",
        tips: &["nondeterministic_output"],
        ..CLIENT_SUB
    },
    CommandSpec {
        name: "kill",
        arity: -3,
        flags: flag::ADMIN | flag::NOSCRIPT | flag::LOADING | flag::STALE,
        acl: acl::CONNECTION | acl::DANGEROUS,
        summary: "Closes client connections chosen by address, id, type, user or age.",
        since: "2.4.0",
        complexity: "O(N) where N is the number of client connections",
        history: &[
            ("2.8.12", "Added new filter format."),
            ("2.8.12", "`ID` option."),
            ("3.2.0", "Added `master` type in for `TYPE` option."),
            ("5.0.0", "Replaced `slave` `TYPE` with `replica`. `slave` still supported for backward compatibility."),
            ("6.2.0", "`LADDR` option."),
        ],
        args: &[Arg::oneof(
            "filter",
            &[
                Arg::new("old-format", ArgType::String).since("2.8.12"),
                Arg::block(
                    "new-format",
                    &[
                        Arg::new("client-id", ArgType::Integer).with_token("ID").since("2.8.12").optional(),
                        Arg::oneof(
                            "client-type",
                            &[
                                Arg::token("normal", "NORMAL"),
                                Arg::token("master", "MASTER").since("3.2.0"),
                                Arg::token("slave", "SLAVE"),
                                Arg::token("replica", "REPLICA").since("5.0.0"),
                                Arg::token("pubsub", "PUBSUB"),
                            ],
                        )
                        .with_token("TYPE")
                        .since("2.8.12")
                        .optional(),
                        Arg::new("username", ArgType::String).with_token("USER").optional(),
                        Arg::new("ip:port", ArgType::String).with_token("ADDR").optional(),
                        Arg::new("ip:port", ArgType::String).with_token("LADDR").since("6.2.0").optional(),
                        Arg::oneof("skipme", &[Arg::token("yes", "YES"), Arg::token("no", "NO")]).with_token("SKIPME").optional(),
                    ],
                )
                .multiple(),
            ],
        )],
        ..CLIENT_SUB
    },
    CommandSpec {
        name: "list",
        arity: -2,
        flags: flag::ADMIN | flag::NOSCRIPT | flag::LOADING | flag::STALE,
        acl: acl::CONNECTION | acl::DANGEROUS,
        summary: "Describes every client connection, one line each.",
        since: "2.4.0",
        complexity: "O(N) where N is the number of client connections",
        tips: &["nondeterministic_output"],
        history: &[
            ("2.8.12", "Added unique client `id` field."),
            ("5.0.0", "Added optional `TYPE` filter."),
            ("6.0.0", "Added `user` field."),
            ("6.2.0", "Added `argv-mem`, `tot-mem`, `laddr` and `redir` fields and the optional `ID` filter."),
            ("7.0.0", "Added `resp`, `multi-mem`, `rbs` and `rbp` fields."),
            ("7.0.3", "Added `ssub` field."),
        ],
        args: &[
            Arg::oneof(
                "client-type",
                &[Arg::token("normal", "NORMAL"), Arg::token("master", "MASTER"), Arg::token("replica", "REPLICA"), Arg::token("pubsub", "PUBSUB")],
            )
            .with_token("TYPE")
            .since("5.0.0")
            .optional(),
            Arg::new("client-id", ArgType::Integer).with_token("ID").since("6.2.0").optional().multiple(),
        ],
        ..CLIENT_SUB
    },
    CommandSpec {
        name: "unblock",
        arity: -3,
        flags: flag::ADMIN | flag::NOSCRIPT | flag::LOADING | flag::STALE,
        acl: acl::CONNECTION | acl::DANGEROUS,
        summary: "Ends another connection's blocking command early, as a timeout or an error.",
        since: "5.0.0",
        complexity: "O(log N) where N is the number of client connections",
        args: &[
            Arg::new("client-id", ArgType::Integer),
            Arg::oneof("unblock-type", &[Arg::token("timeout", "TIMEOUT"), Arg::token("error", "ERROR")]).optional(),
        ],
        ..CLIENT_SUB
    },
    CommandSpec {
        name: "setname",
        arity: 3,
        flags: flag::NOSCRIPT | flag::LOADING | flag::STALE,
        summary: "Gives the connection a name.",
        since: "2.6.9",
        args: &[Arg::new("connection-name", ArgType::String)],
        ..CLIENT_SUB
    },
];

const CONFIG_SUB: CommandSpec = CommandSpec {
    group: Group::Server,
    flags: flag::ADMIN | flag::NOSCRIPT | flag::LOADING | flag::STALE,
    route: Route::Server(ConnCmd::Config),
    ..CommandSpec::DEFAULT
};

const CONFIG_SUBCOMMANDS: &[CommandSpec] = &[
    CommandSpec {
        name: "get",
        arity: -3,
        summary: "Reads the values of configuration parameters matching patterns.",
        since: "2.0.0",
        complexity: "O(N) when N is the number of configuration parameters provided",
        history: &[(
            "7.0.0",
            "Added the ability to pass multiple pattern parameters in one call",
        )],
        args: &[Arg::new("parameter", ArgType::String).multiple()],
        ..CONFIG_SUB
    },
    CommandSpec {
        name: "help",
        arity: 2,
        flags: flag::LOADING | flag::STALE,
        summary: "Lists the CONFIG subcommands.",
        since: "5.0.0",
        ..CONFIG_SUB
    },
    CommandSpec {
        name: "resetstat",
        arity: 2,
        summary: "Zeroes the statistics INFO reports.",
        since: "2.0.0",
        tips: &["request_policy:all_nodes", "response_policy:all_succeeded"],
        ..CONFIG_SUB
    },
    CommandSpec {
        name: "rewrite",
        arity: 2,
        summary: "Writes the running configuration back to the config file.",
        since: "2.8.0",
        tips: &["request_policy:all_nodes", "response_policy:all_succeeded"],
        ..CONFIG_SUB
    },
    CommandSpec {
        name: "set",
        arity: -4,
        summary: "Changes configuration parameters at run time, all or none.",
        since: "2.0.0",
        complexity: "O(N) when N is the number of configuration parameters provided",
        history: &[(
            "7.0.0",
            "Added the ability to set multiple parameters in one call.",
        )],
        tips: &["request_policy:all_nodes", "response_policy:all_succeeded"],
        args: &[Arg::block(
            "data",
            &[
                Arg::new("parameter", ArgType::String),
                Arg::new("value", ArgType::String),
            ],
        )
        .multiple()],
        ..CONFIG_SUB
    },
];

const ACL_SUB: CommandSpec = CommandSpec {
    group: Group::Server,
    flags: flag::ADMIN | flag::NOSCRIPT | flag::LOADING | flag::STALE,
    route: Route::Server(ConnCmd::Acl),
    complexity: "O(N). Where N is the number of configured users.",
    since: "6.0.0",
    ..CommandSpec::DEFAULT
};

/// ACL: the access control lists (carried out by the server layer, `acl_cmds`).
pub const ACL: CommandSpec = CommandSpec {
    name: "acl",
    arity: -2,
    route: Route::Server(ConnCmd::Acl),
    summary: "A container for Access List Control commands ",
    since: "6.0.0",
    complexity: "Depends on subcommand.",
    subcommands: ACL_SUBCOMMANDS,
    ..SERVER
};

const ACL_SUBCOMMANDS: &[CommandSpec] = &[
    CommandSpec {
        name: "cat",
        arity: -2,
        flags: flag::NOSCRIPT | flag::LOADING | flag::STALE,
        summary: "List the ACL categories or the commands inside a category",
        complexity: "O(1) since the categories and commands are a fixed set.",
        args: &[Arg::new("categoryname", ArgType::String).optional()],
        ..ACL_SUB
    },
    CommandSpec {
        name: "deluser",
        arity: -3,
        summary: "Remove the specified ACL users and the associated rules",
        complexity: "O(1) amortized time considering the typical user.",
        args: &[Arg::new("username", ArgType::String).multiple()],
        ..ACL_SUB
    },
    CommandSpec {
        name: "dryrun",
        arity: -4,
        summary:
            "Returns whether the user can execute the given command without executing the command.",
        since: "7.0.0",
        complexity: "O(1).",
        args: &[
            Arg::new("username", ArgType::String),
            Arg::new("command", ArgType::String),
            Arg::new("arg", ArgType::String).optional().multiple(),
        ],
        ..ACL_SUB
    },
    CommandSpec {
        name: "genpass",
        arity: -2,
        flags: flag::NOSCRIPT | flag::LOADING | flag::STALE,
        summary: "Generate a pseudorandom secure password to use for ACL users",
        complexity: "O(1)",
        args: &[Arg::new("bits", ArgType::Integer).optional()],
        ..ACL_SUB
    },
    CommandSpec {
        name: "getuser",
        arity: 3,
        summary: "Get the rules for a specific ACL user",
        complexity: "O(N). Where N is the number of password, command and pattern rules that the user has.",
        history: &[
            ("6.2.0", "Added Pub/Sub channel patterns."),
            ("7.0.0", "Added selectors and changed the format of key and channel patterns from a list to their rule representation."),
        ],
        args: &[Arg::new("username", ArgType::String)],
        ..ACL_SUB
    },
    CommandSpec {
        name: "help",
        arity: 2,
        flags: flag::LOADING | flag::STALE,
        summary: "Show helpful text about the different subcommands",
        complexity: "O(1)",
        ..ACL_SUB
    },
    CommandSpec {
        name: "list",
        arity: 2,
        summary: "List the current ACL rules in ACL config file format",
        ..ACL_SUB
    },
    CommandSpec {
        name: "load",
        arity: 2,
        summary: "Reload the ACLs from the configured ACL file",
        ..ACL_SUB
    },
    CommandSpec {
        name: "log",
        arity: -2,
        summary: "List latest events denied because of ACLs in place",
        complexity: "O(N) with N being the number of entries shown.",
        args: &[Arg::oneof(
            "operation",
            &[
                Arg::new("count", ArgType::Integer),
                Arg::token("reset", "RESET"),
            ],
        )
        .optional()],
        ..ACL_SUB
    },
    CommandSpec {
        name: "save",
        arity: 2,
        summary: "Save the current ACL rules in the configured ACL file",
        ..ACL_SUB
    },
    CommandSpec {
        name: "setuser",
        arity: -3,
        summary: "Modify or create the rules for a specific ACL user",
        complexity: "O(N). Where N is the number of rules provided.",
        history: &[
            ("6.2.0", "Added Pub/Sub channel patterns."),
            ("7.0.0", "Added selectors and key based permissions."),
        ],
        args: &[
            Arg::new("username", ArgType::String),
            Arg::new("rule", ArgType::String).optional().multiple(),
        ],
        ..ACL_SUB
    },
    CommandSpec {
        name: "users",
        arity: 2,
        summary: "List the username of all the configured ACL rules",
        ..ACL_SUB
    },
    CommandSpec {
        name: "whoami",
        arity: 2,
        flags: flag::NOSCRIPT | flag::LOADING | flag::STALE,
        summary: "Return the name of the user associated to the current connection",
        complexity: "O(1)",
        ..ACL_SUB
    },
];

const SLOWLOG_SUB: CommandSpec = CommandSpec {
    group: Group::Server,
    flags: flag::ADMIN | flag::LOADING | flag::STALE,
    route: Route::Server(ConnCmd::Slowlog),
    since: "2.2.12",
    ..CommandSpec::DEFAULT
};

/// SLOWLOG: every shard's log of slow commands, merged (carried out by the server layer).
pub const SLOWLOG: CommandSpec = CommandSpec {
    name: "slowlog",
    arity: -2,
    route: Route::Server(ConnCmd::Slowlog),
    summary: "A container for slow log commands",
    since: "2.2.12",
    complexity: "Depends on subcommand.",
    subcommands: &[
        CommandSpec {
            name: "get",
            arity: -2,
            summary: "Get the slow log's entries",
            complexity: "O(N) where N is the number of entries returned",
            tips: &["request_policy:all_nodes", "nondeterministic_output"],
            history: &[(
                "4.0.0",
                "Added client IP address, port and name to the reply.",
            )],
            args: &[Arg::new("count", ArgType::Integer).optional()],
            ..SLOWLOG_SUB
        },
        CommandSpec {
            name: "help",
            arity: 2,
            flags: flag::LOADING | flag::STALE,
            summary: "Show helpful text about the different subcommands",
            since: "6.2.0",
            complexity: "O(1)",
            ..SLOWLOG_SUB
        },
        CommandSpec {
            name: "len",
            arity: 2,
            summary: "Get the slow log's length",
            complexity: "O(1)",
            tips: &[
                "request_policy:all_nodes",
                "response_policy:agg_sum",
                "nondeterministic_output",
            ],
            ..SLOWLOG_SUB
        },
        CommandSpec {
            name: "reset",
            arity: 2,
            summary: "Clear all entries from the slow log",
            complexity: "O(N) where N is the number of entries in the slowlog",
            tips: &["request_policy:all_nodes", "response_policy:all_succeeded"],
            ..SLOWLOG_SUB
        },
    ],
    ..SERVER
};

const LATENCY_SUB: CommandSpec = CommandSpec {
    group: Group::Server,
    flags: flag::ADMIN | flag::NOSCRIPT | flag::LOADING | flag::STALE,
    route: Route::Server(ConnCmd::Latency),
    since: "2.8.13",
    tips: &[
        "nondeterministic_output",
        "request_policy:all_nodes",
        "response_policy:special",
    ],
    ..CommandSpec::DEFAULT
};

/// LATENCY: latency events and command histograms of every shard, merged (server layer).
pub const LATENCY: CommandSpec = CommandSpec {
    name: "latency",
    arity: -2,
    route: Route::Server(ConnCmd::Latency),
    summary: "A container for latency diagnostics commands",
    since: "2.8.13",
    complexity: "Depends on subcommand.",
    subcommands: &[
        CommandSpec {
            name: "help",
            arity: 2,
            flags: flag::LOADING | flag::STALE,
            summary: "Show helpful text about the different subcommands.",
            tips: &[],
            ..LATENCY_SUB
        },
        CommandSpec {
            name: "doctor",
            arity: 2,
            summary: "Return a human readable latency analysis report.",
            ..LATENCY_SUB
        },
        CommandSpec {
            name: "graph",
            arity: 3,
            summary: "Return a latency graph for the event.",
            args: &[Arg::new("event", ArgType::String)],
            ..LATENCY_SUB
        },
        CommandSpec {
            name: "histogram",
            arity: -2,
            summary:
                "Return the cumulative distribution of latencies of a subset of commands or all.",
            since: "7.0.0",
            complexity:
                "O(N) where N is the number of commands with latency information being retrieved.",
            args: &[Arg::new("command", ArgType::String).optional().multiple()],
            ..LATENCY_SUB
        },
        CommandSpec {
            name: "history",
            arity: 3,
            summary: "Return timestamp-latency samples for the event.",
            args: &[Arg::new("event", ArgType::String)],
            ..LATENCY_SUB
        },
        CommandSpec {
            name: "latest",
            arity: 2,
            summary: "Return the latest latency samples for all events.",
            ..LATENCY_SUB
        },
        CommandSpec {
            name: "reset",
            arity: -2,
            summary: "Reset latency data for one or more events.",
            tips: &["request_policy:all_nodes", "response_policy:all_succeeded"],
            args: &[Arg::new("event", ArgType::String).optional().multiple()],
            ..LATENCY_SUB
        },
    ],
    ..SERVER
};

/// MONITOR (carried out by the server layer, `monitor`).
pub const MONITOR: CommandSpec = CommandSpec {
    name: "monitor",
    arity: 1,
    flags: flag::ADMIN | flag::NOSCRIPT | flag::LOADING | flag::STALE,
    route: Route::Server(ConnCmd::Monitor),
    summary: "Listen for all requests received by the server in real time",
    since: "1.0.0",
    ..SERVER
};

const MEMORY_SUB: CommandSpec = CommandSpec {
    group: Group::Server,
    arity: 2,
    route: Route::Server(ConnCmd::Memory),
    since: "4.0.0",
    tips: &[
        "nondeterministic_output",
        "request_policy:all_shards",
        "response_policy:special",
    ],
    ..CommandSpec::DEFAULT
};

/// MEMORY: USAGE runs on the key's shard; the rest in the server layer (`memory`).
pub const MEMORY: CommandSpec = CommandSpec {
    name: "memory",
    arity: -2,
    route: Route::Server(ConnCmd::Memory),
    summary: "A container for memory diagnostics commands",
    since: "4.0.0",
    complexity: "Depends on subcommand.",
    subcommands: &[
        CommandSpec {
            name: "doctor",
            summary: "Outputs a memory problems report",
            ..MEMORY_SUB
        },
        CommandSpec {
            name: "help",
            flags: flag::LOADING | flag::STALE,
            summary: "Show helpful text about the different subcommands",
            tips: &[],
            ..MEMORY_SUB
        },
        CommandSpec {
            name: "malloc-stats",
            summary: "Show allocator internal stats",
            complexity: "Depends on how much memory is allocated, could be slow",
            ..MEMORY_SUB
        },
        CommandSpec {
            name: "purge",
            summary: "Ask the allocator to release memory",
            complexity: "Depends on how much memory is allocated, could be slow",
            tips: &["request_policy:all_shards", "response_policy:all_succeeded"],
            ..MEMORY_SUB
        },
        CommandSpec {
            name: "stats",
            summary: "Show memory usage details",
            ..MEMORY_SUB
        },
        CommandSpec {
            name: "usage",
            arity: -3,
            flags: flag::READONLY,
            group: Group::Server,
            keys: &[KeySpec::one(2, kflag::RO)],
            route: Route::Keys(Split::Never),
            run: Some(memory_usage),
            summary: "Estimate the memory usage of a key",
            since: "4.0.0",
            complexity: "O(N) where N is the number of samples.",
            args: &[
                Arg::key("key", 0),
                Arg::new("count", ArgType::Integer)
                    .with_token("SAMPLES")
                    .optional(),
            ],
            ..CommandSpec::DEFAULT
        },
    ],
    ..SERVER
};

/// Bytes a stored key costs besides its name and value: the keyspace's slot and entry.
const KEY_OVERHEAD: usize = 48;

/// How many elements of an aggregate MEMORY USAGE looks at unless told (Redis's
/// `OBJ_COMPUTE_SIZE_DEF_SAMPLES`).
const USAGE_SAMPLES_DEFAULT: usize = 5;

/// MEMORY USAGE key [SAMPLES count]: the key's name, its entry and an estimate of its value's
/// heap bytes, found by walking the value without copying it; an aggregate's per-element
/// costs are extrapolated from its first `count` elements (default 5, 0 for all of them).
/// As in Redis, SAMPLES may repeat (the last one counts) and the options are checked before
/// the key is looked up.
fn memory_usage(sh: &mut Shard, c: &mut Call) -> Result<()> {
    let mut a = c.args(3);
    let mut samples = USAGE_SAMPLES_DEFAULT;
    while !a.is_empty() {
        if !a.eat("samples") || a.is_empty() {
            return Err(Error::Syntax);
        }
        let n = a.next_i64()?;
        samples = usize::try_from(n).map_err(|_| Error::Syntax)?;
    }
    let Some(item) = sh.dbs[c.db].get(c.argv[2], c.now_ms) else {
        c.out.null();
        return Ok(());
    };
    let value = item.value.heap_estimate(samples);
    c.out.int((c.argv[2].len() + KEY_OVERHEAD + value) as i64);
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::shard::testing::TestShard;

    #[test]
    fn basics() {
        let mut t = TestShard::new();
        assert_eq!(t.run("PING"), "+PONG\r\n");
        assert_eq!(t.run("ping hi"), "$2\r\nhi\r\n");
        assert_eq!(
            t.run("ping a b"),
            "-ERR wrong number of arguments for 'ping' command\r\n"
        );
        assert_eq!(t.run("dbsize"), ":0\r\n");
        assert_eq!(t.run("flushall bogus"), "-ERR syntax error\r\n");
        assert_eq!(t.run("swapdb 0 x"), "-ERR invalid second DB index\r\n");
        assert_eq!(t.run("swapdb 0 16"), "-ERR DB index is out of range\r\n");
        assert_eq!(t.run("swapdb 0 1"), "+OK\r\n");
    }
}
