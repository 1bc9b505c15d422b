//! MULTI, EXEC, DISCARD, WATCH and UNWATCH (Redis's `multi.c`). Their declarations live here;
//! they change connection state and coordinate shards, so the server carries them out
//! (`src/multi.rs`): queueing, the WATCH versions kept by the owning shards, and EXEC as one
//! isolated transaction over every key the block touches.

use super::spec::{acl, flag, kflag, Arg, CommandSpec, ConnCmd, Group, KeySpec, Route};

const TRANSACTION: CommandSpec = CommandSpec {
    group: Group::Transactions,
    acl: acl::TRANSACTION,
    flags: flag::NOSCRIPT | flag::LOADING | flag::STALE | flag::FAST | flag::ALLOW_BUSY,
    arity: 1,
    ..CommandSpec::DEFAULT
};

pub static COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        name: "multi",
        route: Route::Server(ConnCmd::Multi),
        summary: "Opens a transaction block: later commands are queued until EXEC.",
        since: "1.2.0",
        complexity: "O(1)",
        ..TRANSACTION
    },
    CommandSpec {
        name: "exec",
        flags: flag::NOSCRIPT | flag::LOADING | flag::STALE | flag::SKIP_SLOWLOG,
        route: Route::Server(ConnCmd::Exec),
        summary: "Runs every command queued since MULTI, as one atomic unit.",
        since: "1.2.0",
        complexity: "Depends on commands in the transaction",
        ..TRANSACTION
    },
    CommandSpec {
        name: "discard",
        route: Route::Server(ConnCmd::Discard),
        summary: "Drops the commands queued since MULTI and leaves the transaction.",
        since: "2.0.0",
        complexity: "O(N), when N is the number of queued commands",
        ..TRANSACTION
    },
    CommandSpec {
        name: "watch",
        arity: -2,
        keys: &[KeySpec::range(1, -1, 1, kflag::RO)],
        route: Route::Server(ConnCmd::Watch),
        summary: "Makes the next EXEC fail if any of these keys changes before it runs.",
        since: "2.2.0",
        complexity: "O(1) for every key.",
        args: &[Arg::key("key", 0).multiple()],
        ..TRANSACTION
    },
    CommandSpec {
        name: "unwatch",
        route: Route::Server(ConnCmd::Unwatch),
        summary: "Forgets every key WATCHed by this connection.",
        since: "2.2.0",
        complexity: "O(1)",
        ..TRANSACTION
    },
];
