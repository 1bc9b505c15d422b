//! Replication's commands (Redis's `replication.c`): their declarations. They change the
//! server's role and hand connections to the replication machinery, so the server carries them
//! out (`src/repl`).

use super::spec::{acl, flag, Arg, ArgType, CommandSpec, ConnCmd, Group, Route};

const REPL: CommandSpec = CommandSpec {
    group: Group::Server,
    route: Route::Server(ConnCmd::Repl),
    ..CommandSpec::DEFAULT
};

const HOST_PORT_OR_NO_ONE: &[Arg] = &[Arg::oneof(
    "args",
    &[
        Arg::block(
            "host-port",
            &[
                Arg::new("host", ArgType::String),
                Arg::new("port", ArgType::Integer),
            ],
        ),
        Arg::block(
            "no-one",
            &[Arg::token("no", "NO"), Arg::token("one", "ONE")],
        ),
    ],
)];

pub static COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        name: "psync",
        arity: -3,
        flags: flag::ADMIN | flag::NOSCRIPT | flag::NO_ASYNC_LOADING | flag::NO_MULTI,
        summary: "Starts replication from this server: a replica asks for the stream from an offset (internal).",
        since: "2.8.0",
        complexity: "",
        args: &[
            Arg::new("replicationid", ArgType::String),
            Arg::new("offset", ArgType::Integer),
        ],
        ..REPL
    },
    CommandSpec {
        name: "sync",
        arity: 1,
        flags: flag::ADMIN | flag::NOSCRIPT | flag::NO_ASYNC_LOADING | flag::NO_MULTI,
        summary: "Starts replication from this server with a full copy (internal, before PSYNC).",
        since: "1.0.0",
        complexity: "",
        ..REPL
    },
    CommandSpec {
        name: "replconf",
        arity: -1,
        flags: flag::ADMIN | flag::NOSCRIPT | flag::LOADING | flag::STALE | flag::ALLOW_BUSY,
        summary: "Tells the master about a replica and its progress (internal).",
        since: "3.0.0",
        complexity: "O(1)",
        syscmd: true,
        ..REPL
    },
    CommandSpec {
        name: "role",
        arity: 1,
        flags: flag::NOSCRIPT | flag::LOADING | flag::STALE | flag::FAST,
        acl: acl::ADMIN | acl::DANGEROUS,
        summary: "Tells this server's role in replication, with its offset and its peers.",
        since: "2.8.12",
        complexity: "O(1)",
        ..REPL
    },
    CommandSpec {
        name: "replicaof",
        arity: 3,
        flags: flag::ADMIN | flag::NOSCRIPT | flag::STALE | flag::NO_ASYNC_LOADING,
        summary: "Makes this server a replica of another one, or (NO ONE) a master again.",
        since: "5.0.0",
        complexity: "O(1)",
        args: HOST_PORT_OR_NO_ONE,
        ..REPL
    },
    CommandSpec {
        name: "slaveof",
        arity: 3,
        flags: flag::ADMIN | flag::NOSCRIPT | flag::STALE | flag::NO_ASYNC_LOADING,
        summary: "Makes this server a replica of another one, or (NO ONE) a master again.",
        since: "1.0.0",
        complexity: "O(1)",
        deprecated: Some(("5.0.0", "`REPLICAOF`")),
        args: HOST_PORT_OR_NO_ONE,
        ..REPL
    },
    CommandSpec {
        name: "wait",
        arity: 3,
        flags: flag::NOSCRIPT,
        acl: acl::CONNECTION,
        group: Group::Generic,
        summary: "Waits until this connection's writes so far reach this many replicas, or a timeout.",
        since: "3.0.0",
        complexity: "O(1)",
        tips: &["request_policy:all_shards", "response_policy:agg_min"],
        args: &[
            Arg::new("numreplicas", ArgType::Integer),
            Arg::new("timeout", ArgType::Integer),
        ],
        ..REPL
    },
];
