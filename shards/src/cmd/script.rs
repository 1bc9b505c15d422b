//! EVAL, EVALSHA, EVAL_RO, EVALSHA_RO and SCRIPT (Redis's `eval.c`). The scripting engine is
//! [`crate::script`]; these are its commands.
//!
//! Scripts route by their declared keys like any keyed command: keys on one shard run there,
//! keys on several are gathered (`Split::Gather`) and the script runs on the copies. A script
//! that reaches keys it did not declare is rerouted by the server (see `crate::script`).

use super::spec::{acl, flag, kflag, Arg, ArgType, BeginSearch, CommandSpec, FindKeys, Group};
use super::spec::{KeySpec, Route, Split};
use super::Call;
use crate::script::{self, function, Store};
use crate::{Error, Result, Shard};
use std::sync::atomic::Ordering;

const SCRIPTING: CommandSpec = CommandSpec {
    group: Group::Scripting,
    acl: acl::SCRIPTING,
    ..CommandSpec::DEFAULT
};

const RW_KEYS: &[KeySpec] = &[KeySpec {
    notes: Some("We cannot tell how the keys will be used so we assume the worst, RW and UPDATE"),
    flags: kflag::RW | kflag::ACCESS | kflag::UPDATE,
    begin: BeginSearch::Index(2),
    find: FindKeys::Keynum {
        keynumidx: 0,
        firstkey: 1,
        step: 1,
    },
}];

const RO_KEYS: &[KeySpec] = &[KeySpec {
    notes: Some("We cannot tell how the keys will be used so we assume the worst, RO and ACCESS"),
    flags: kflag::RO | kflag::ACCESS,
    ..RW_KEYS[0]
}];

const EVAL_ARGS: &[Arg] = &[
    Arg::new("script", ArgType::String),
    Arg::new("numkeys", ArgType::Integer),
    Arg::key("key", 0).optional().multiple(),
    Arg::new("arg", ArgType::String).optional().multiple(),
];

const EVALSHA_ARGS: &[Arg] = &[
    Arg::new("sha1", ArgType::String),
    Arg::new("numkeys", ArgType::Integer),
    Arg::key("key", 0).optional().multiple(),
    Arg::new("arg", ArgType::String).optional().multiple(),
];

const EVAL: CommandSpec = CommandSpec {
    arity: -3,
    flags: flag::NOSCRIPT
        | flag::STALE
        | flag::SKIP_MONITOR
        | flag::NO_MANDATORY_KEYS
        | flag::MAY_REPLICATE,
    keys: RW_KEYS,
    route: Route::Keys(Split::Gather),
    complexity: "Depends on the script that is executed.",
    ..SCRIPTING
};

const FCALL_ARGS: &[Arg] = &[
    Arg::new("function", ArgType::String),
    Arg::new("numkeys", ArgType::Integer),
    Arg::key("key", 0).optional().multiple(),
    Arg::new("arg", ArgType::String).optional().multiple(),
];

const ALL_SHARDS_ALL_SUCCEEDED: &[&str] =
    &["request_policy:all_shards", "response_policy:all_succeeded"];

const FUNCTION_SUB: CommandSpec = CommandSpec {
    flags: flag::NOSCRIPT,
    since: "7.0.0",
    ..SCRIPTING
};

const SCRIPT_SUB: CommandSpec = CommandSpec {
    flags: flag::NOSCRIPT,
    ..SCRIPTING
};

pub static COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        name: "eval",
        run: Some(eval),
        summary: "Runs a Lua script on the server.",
        since: "2.6.0",
        args: EVAL_ARGS,
        ..EVAL
    },
    CommandSpec {
        name: "evalsha",
        run: Some(evalsha),
        keys: &[KeySpec { notes: None, ..RW_KEYS[0] }],
        summary: "Runs a cached Lua script, named by its SHA1 digest.",
        since: "2.6.0",
        args: EVALSHA_ARGS,
        ..EVAL
    },
    CommandSpec {
        name: "eval_ro",
        flags: flag::READONLY | flag::NOSCRIPT | flag::STALE | flag::SKIP_MONITOR | flag::NO_MANDATORY_KEYS,
        keys: RO_KEYS,
        run: Some(eval_ro),
        summary: "Runs a read-only Lua script on the server.",
        since: "7.0.0",
        args: EVAL_ARGS,
        ..EVAL
    },
    CommandSpec {
        name: "evalsha_ro",
        flags: flag::READONLY | flag::NOSCRIPT | flag::STALE | flag::SKIP_MONITOR | flag::NO_MANDATORY_KEYS,
        keys: &[KeySpec { notes: None, ..RO_KEYS[0] }],
        run: Some(evalsha_ro),
        summary: "Runs a cached read-only Lua script, named by its SHA1 digest.",
        since: "7.0.0",
        args: EVALSHA_ARGS,
        ..EVAL
    },
    CommandSpec {
        name: "fcall",
        run: Some(fcall),
        summary: "Calls a function of a loaded library.",
        since: "7.0.0",
        args: FCALL_ARGS,
        ..EVAL
    },
    CommandSpec {
        name: "fcall_ro",
        flags: flag::READONLY
            | flag::NOSCRIPT
            | flag::STALE
            | flag::SKIP_MONITOR
            | flag::NO_MANDATORY_KEYS,
        keys: RO_KEYS,
        run: Some(fcall_ro),
        summary: "Calls a read-only function of a loaded library.",
        since: "7.0.0",
        args: FCALL_ARGS,
        ..EVAL
    },
    CommandSpec {
        name: "function",
        arity: -2,
        group: Group::Scripting,
        summary: "Groups the subcommands that manage function libraries.",
        since: "7.0.0",
        complexity: "Depends on subcommand.",
        subcommands: &[
            CommandSpec {
                name: "delete",
                arity: 3,
                flags: flag::WRITE | flag::NOSCRIPT,
                run: Some(function::function_delete),
                summary: "Deletes a library and its functions.",
                complexity: "O(1)",
                tips: ALL_SHARDS_ALL_SUCCEEDED,
                args: &[Arg::new("library-name", ArgType::String)],
                ..FUNCTION_SUB
            },
            CommandSpec {
                name: "dump",
                arity: 2,
                run: Some(function::function_dump),
                summary: "Serialises every library into a payload FUNCTION RESTORE takes.",
                complexity: "O(N) where N is the number of functions",
                ..FUNCTION_SUB
            },
            CommandSpec {
                name: "flush",
                arity: -2,
                flags: flag::WRITE | flag::NOSCRIPT,
                run: Some(function::function_flush),
                summary: "Deletes every library.",
                complexity: "O(N) where N is the number of functions deleted",
                tips: ALL_SHARDS_ALL_SUCCEEDED,
                args: &[Arg::oneof(
                    "flush-type",
                    &[Arg::token("async", "ASYNC"), Arg::token("sync", "SYNC")],
                )
                .optional()],
                ..FUNCTION_SUB
            },
            CommandSpec {
                name: "help",
                arity: 2,
                flags: flag::LOADING | flag::STALE,
                run: Some(function_help),
                summary: "Lists the FUNCTION subcommands.",
                complexity: "O(1)",
                ..FUNCTION_SUB
            },
            CommandSpec {
                name: "kill",
                arity: 2,
                flags: flag::NOSCRIPT | flag::ALLOW_BUSY,
                run: Some(script_kill),
                summary: "Stops the running function, if it has not written.",
                complexity: "O(1)",
                tips: &["request_policy:all_shards", "response_policy:one_succeeded"],
                ..FUNCTION_SUB
            },
            CommandSpec {
                name: "list",
                arity: -2,
                run: Some(function::function_list),
                summary: "Lists the libraries, their functions and optionally their code.",
                complexity: "O(N) where N is the number of functions",
                tips: &["nondeterministic_output_order"],
                args: &[
                    Arg::new("library-name-pattern", ArgType::String)
                        .with_token("LIBRARYNAME")
                        .optional(),
                    Arg::token("withcode", "WITHCODE").optional(),
                ],
                ..FUNCTION_SUB
            },
            CommandSpec {
                name: "load",
                arity: -3,
                flags: flag::WRITE | flag::DENYOOM | flag::NOSCRIPT,
                run: Some(function::function_load),
                summary: "Loads a library of functions.",
                complexity: "O(1) (considering compilation time is redundant)",
                tips: ALL_SHARDS_ALL_SUCCEEDED,
                args: &[
                    Arg::token("replace", "REPLACE").optional(),
                    Arg::new("function-code", ArgType::String),
                ],
                ..FUNCTION_SUB
            },
            CommandSpec {
                name: "restore",
                arity: -3,
                flags: flag::WRITE | flag::DENYOOM | flag::NOSCRIPT,
                run: Some(function::function_restore),
                summary: "Loads libraries from a FUNCTION DUMP payload.",
                complexity: "O(N) where N is the number of functions on the payload",
                tips: ALL_SHARDS_ALL_SUCCEEDED,
                args: &[
                    Arg::new("serialized-value", ArgType::String),
                    Arg::oneof(
                        "policy",
                        &[
                            Arg::token("flush", "FLUSH"),
                            Arg::token("append", "APPEND"),
                            Arg::token("replace", "REPLACE"),
                        ],
                    )
                    .optional(),
                ],
                ..FUNCTION_SUB
            },
            CommandSpec {
                name: "stats",
                arity: 2,
                flags: flag::NOSCRIPT | flag::ALLOW_BUSY,
                run: Some(function::function_stats),
                summary: "Reports the running function and how many libraries and functions exist.",
                complexity: "O(1)",
                tips: &[
                    "nondeterministic_output",
                    "request_policy:all_shards",
                    "response_policy:special",
                ],
                ..FUNCTION_SUB
            },
        ],
        ..CommandSpec::DEFAULT
    },
    CommandSpec {
        name: "script",
        arity: -2,
        group: Group::Scripting,
        summary: "Groups the subcommands that manage the script cache.",
        since: "2.6.0",
        complexity: "Depends on subcommand.",
        subcommands: &[
            CommandSpec {
                name: "debug",
                arity: 3,
                run: Some(script_debug),
                summary: "Sets the debug mode of the scripts that follow.",
                since: "3.2.0",
                complexity: "O(1)",
                args: &[Arg::oneof(
                    "mode",
                    &[
                        Arg::token("yes", "YES"),
                        Arg::token("sync", "SYNC"),
                        Arg::token("no", "NO"),
                    ],
                )],
                ..SCRIPT_SUB
            },
            CommandSpec {
                name: "exists",
                arity: -3,
                run: Some(script_exists),
                summary: "Tells which of the given SHA1 digests name cached scripts.",
                since: "2.6.0",
                complexity: "O(N) with N being the number of scripts to check (so checking a single script is an O(1) operation).",
                tips: &["request_policy:all_shards", "response_policy:agg_logical_and"],
                args: &[Arg::new("sha1", ArgType::String).multiple()],
                ..SCRIPT_SUB
            },
            CommandSpec {
                name: "flush",
                arity: -2,
                run: Some(script_flush),
                summary: "Empties the script cache.",
                since: "2.6.0",
                complexity: "O(N) with N being the number of scripts in cache",
                history: &[("6.2.0", "Added the `ASYNC` and `SYNC` flushing mode modifiers.")],
                tips: &["request_policy:all_nodes", "response_policy:all_succeeded"],
                args: &[Arg::oneof(
                    "flush-type",
                    &[
                        Arg::token("async", "ASYNC").since("6.2.0"),
                        Arg::token("sync", "SYNC").since("6.2.0"),
                    ],
                )
                .optional()],
                ..SCRIPT_SUB
            },
            CommandSpec {
                name: "help",
                arity: 2,
                flags: flag::LOADING | flag::STALE,
                run: Some(script_help),
                summary: "Lists the SCRIPT subcommands.",
                since: "5.0.0",
                complexity: "O(1)",
                ..SCRIPTING
            },
            CommandSpec {
                name: "kill",
                arity: 2,
                flags: flag::NOSCRIPT | flag::ALLOW_BUSY,
                run: Some(script_kill),
                summary: "Stops the running script, if it has not written.",
                since: "2.6.0",
                complexity: "O(1)",
                tips: &["request_policy:all_shards", "response_policy:one_succeeded"],
                ..SCRIPTING
            },
            CommandSpec {
                name: "load",
                arity: 3,
                flags: flag::NOSCRIPT | flag::STALE,
                run: Some(script_load),
                summary: "Compiles a script and caches it without running it.",
                since: "2.6.0",
                complexity: "O(N) with N being the length in bytes of the script body.",
                tips: &["request_policy:all_nodes", "response_policy:all_succeeded"],
                args: &[Arg::new("script", ArgType::String)],
                ..SCRIPTING
            },
        ],
        ..CommandSpec::DEFAULT
    },
];

fn eval(shard: &mut Shard, c: &mut Call) -> Result<()> {
    script::eval(shard, c, false, false)
}

fn evalsha(shard: &mut Shard, c: &mut Call) -> Result<()> {
    script::eval(shard, c, true, false)
}

fn eval_ro(shard: &mut Shard, c: &mut Call) -> Result<()> {
    script::eval(shard, c, false, true)
}

fn evalsha_ro(shard: &mut Shard, c: &mut Call) -> Result<()> {
    script::eval(shard, c, true, true)
}

fn fcall(shard: &mut Shard, c: &mut Call) -> Result<()> {
    function::fcall(shard, c, false)
}

fn fcall_ro(shard: &mut Shard, c: &mut Call) -> Result<()> {
    function::fcall(shard, c, true)
}

fn function_help(_: &mut Shard, c: &mut Call) -> Result<()> {
    let lines = [
        "FUNCTION <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
        "LOAD [REPLACE] <FUNCTION CODE>",
        "    Create a new library with the given library name and code.",
        "DELETE <LIBRARY NAME>",
        "    Delete the given library.",
        "LIST [LIBRARYNAME PATTERN] [WITHCODE]",
        "    Return general information on all the libraries:",
        "    * Library name",
        "    * The engine used to run the Library",
        "    * Library description",
        "    * Functions list",
        "    * Library code (if WITHCODE is given)",
        "    It also possible to get only function that matches a pattern using LIBRARYNAME argument.",
        "STATS",
        "    Return information about the current function running:",
        "    * Function name",
        "    * Command used to run the function",
        "    * Duration in MS that the function is running",
        "    If no function is running, return nil",
        "    In addition, returns a list of available engines.",
        "KILL",
        "    Kill the current running function.",
        "FLUSH [ASYNC|SYNC]",
        "    Delete all the libraries.",
        "    When called without the optional mode argument, the behavior is determined by the",
        "    lazyfree-lazy-user-flush configuration directive. Valid modes are:",
        "    * ASYNC: Asynchronously flush the libraries.",
        "    * SYNC: Synchronously flush the libraries.",
        "DUMP",
        "    Return a serialized payload representing the current libraries, can be restored using FUNCTION RESTORE command",
        "RESTORE <PAYLOAD> [FLUSH|APPEND|REPLACE]",
        "    Restore the libraries represented by the given payload, it is possible to give a restore policy to",
        "    control how to handle existing libraries (default APPEND):",
        "    * FLUSH: delete all existing libraries.",
        "    * APPEND: appends the restored libraries to the existing libraries. On collision, abort.",
        "    * REPLACE: appends the restored libraries to the existing libraries, On collision, replace the old",
        "      libraries with the new libraries (notice that even on this option there is a chance of failure",
        "      in case of functions name collision with another library).",
        "HELP",
        "    Prints this help.",
    ];
    c.out.simples(&lines);
    Ok(())
}

fn script_load(shard: &mut Shard, c: &mut Call) -> Result<()> {
    let sha = script::load(shard, c.argv[2])?;
    c.out.bulk(&sha);
    Ok(())
}

fn script_exists(shard: &mut Shard, c: &mut Call) -> Result<()> {
    let shas = &c.argv[2..];
    c.out.array(shas.len());
    for s in shas {
        c.out.int(shard.scripts.exists(s) as i64);
    }
    Ok(())
}

fn script_flush(shard: &mut Shard, c: &mut Call) -> Result<()> {
    match c.argv.len() {
        2 => {}
        3 if c.argv[2].eq_ignore_ascii_case(b"sync")
            || c.argv[2].eq_ignore_ascii_case(b"async") => {}
        _ => return Err(Error::err("SCRIPT FLUSH only support SYNC|ASYNC option")),
    }
    shard.scripts.flush();
    c.out.ok();
    Ok(())
}

fn script_debug(_: &mut Shard, _: &mut Call) -> Result<()> {
    Err(Error::err(
        "SCRIPT DEBUG is not supported by shardis (the Lua debugger needs a dedicated connection mode)",
    ))
}

/// SCRIPT KILL: stops the script running on any shard, if it has not written.
fn script_kill(shard: &mut Shard, c: &mut Call) -> Result<()> {
    kill(&shard.scripts)?;
    c.out.ok();
    Ok(())
}

/// Asks the running script(s) to stop: `NOTBUSY` if none runs, `UNKILLABLE` if it wrote.
pub fn kill(store: &Store) -> Result<()> {
    let mut found = false;
    for b in store.busy.iter() {
        // Only a script past busy-reply-threshold, as Redis (which cannot hear SCRIPT KILL
        // before then).
        if b.since_ms.load(Ordering::Acquire) == 0 || !b.busy.load(Ordering::Relaxed) {
            continue;
        }
        found = true;
        if b.wrote.load(Ordering::Relaxed) {
            return Err(Error::Other(
                "UNKILLABLE Sorry the script already executed write commands against the dataset. You can either wait the script termination or kill the server in a hard way using the SHUTDOWN NOSAVE command."
                    .into(),
            ));
        }
        b.kill.store(true, Ordering::Relaxed);
    }
    if !found {
        return Err(Error::Other(
            "NOTBUSY No scripts in execution right now.".into(),
        ));
    }
    Ok(())
}

fn script_help(_: &mut Shard, c: &mut Call) -> Result<()> {
    let lines = [
        "SCRIPT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
        "DEBUG (YES|SYNC|NO)",
        "    Set the debug mode for subsequent scripts executed.",
        "EXISTS <sha1> [<sha1> ...]",
        "    Return information about the existence of the scripts in the script cache.",
        "FLUSH [ASYNC|SYNC]",
        "    Flush the Lua scripts cache. Very dangerous on replicas.",
        "    When called without the optional mode argument, the behavior is determined by the",
        "    lazyfree-lazy-user-flush configuration directive. Valid modes are:",
        "    * ASYNC: Asynchronously flush the scripts cache.",
        "    * SYNC: Synchronously flush the scripts cache.",
        "KILL",
        "    Kill the currently executing Lua script.",
        "LOAD <script>",
        "    Load a script into the scripts cache without executing it.",
        "HELP",
        "    Prints this help.",
    ];
    c.out.simples(&lines);
    Ok(())
}
