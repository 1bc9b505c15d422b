//! Redis Functions (Redis 7.0's `functions.c` and `function_lua.c`): FUNCTION LOAD, LIST,
//! DELETE, FLUSH, DUMP, RESTORE, STATS and FCALL/FCALL_RO.
//!
//! A library is Lua code that starts with `#!lua name=<lib>` and calls
//! `redis.register_function` while it runs. Libraries live in the process-wide [`Store`] (code
//! and the names and flags of their functions); each thread runs a library's code once in its
//! own Lua state to get the callbacks, and does it again for every library whenever the store's
//! library generation moves. FUNCTION LOAD runs the code on the loading thread first, so every
//! error (metadata, compilation, registration, name clashes) is reported before anything is
//! stored.
//!
//! Libraries persist as Redis stores them: `FUNCTION2` records in each shard's RDB file (and in
//! FUNCTION DUMP payloads), and the FUNCTION commands themselves in the AOF.

use super::{sflag, with_vm, Store, Vm};
use crate::cmd::Call;
use crate::{Error, Result, Shard};
use mlua::{Function, Table, Value};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// A stored library.
#[derive(Clone, Debug)]
pub struct Library {
    pub name: String,
    pub code: Arc<[u8]>,
    pub functions: Vec<Meta>,
}

/// A function's name, description and flags (as [`sflag`] bits).
#[derive(Clone, Debug)]
pub struct Meta {
    pub name: String,
    pub description: Option<String>,
    pub flags: u32,
}

/// A function as loaded on one thread.
#[derive(Clone)]
pub(crate) struct Loaded {
    pub(crate) func: Function,
    pub(crate) flags: u32,
}

/// A library's name from its `#!lua name=…` line.
fn metadata(code: &[u8]) -> Result<String> {
    if !code.starts_with(b"#!") {
        return Err(Error::err("Missing library metadata"));
    }
    let end = code.iter().position(|&b| b == b'\n').unwrap_or(code.len());
    let line = String::from_utf8_lossy(&code[2..end]).into_owned();
    let mut parts = line.split(' ').filter(|p| !p.is_empty());
    let engine = parts.next().unwrap_or("");
    if !engine.eq_ignore_ascii_case("lua") {
        return Err(Error::err(format!("Engine '{engine}' not found")));
    }
    let mut name = None;
    for part in parts {
        match part.strip_prefix("name=") {
            Some(n) => name = Some(n.to_string()),
            None => return Err(Error::err(format!("Invalid metadata value given: {part}"))),
        }
    }
    let name = name.ok_or_else(|| Error::err("Library name was not given"))?;
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(Error::err(
            "Library names can only contain letters, numbers, or underscores(_) and must be at least one character long",
        ));
    }
    Ok(name)
}

/// Runs a library's code on this thread: its name and its functions.
fn run_library(vm: &Vm, code: &[u8]) -> Result<(String, Vec<(Meta, Function)>)> {
    let name = metadata(code)?;
    let (env, registered): (Table, Table) = vm.new_library.call(()).map_err(super::lua_err)?;
    // The `#!` line becomes a comment, so line numbers stay.
    let mut src = b"--".to_vec();
    src.extend_from_slice(code);
    let chunk = vm
        .lua
        .load(&src)
        .set_name("@user_function")
        .set_environment(env)
        .into_function()
        .map_err(|e| {
            let msg = match e {
                mlua::Error::SyntaxError { message, .. } => message,
                other => other.to_string(),
            };
            Error::err(format!("Error compiling function: {msg}"))
        })?;
    super::LOAD_TIMED_OUT.with(|t| t.set(false));
    super::LOAD_DEADLINE.with(|d| d.set(Some(std::time::Instant::now() + super::LOAD_TIMEOUT)));
    let out: mlua::Result<mlua::MultiValue> = vm.load_library.call((chunk, registered.clone()));
    super::LOAD_DEADLINE.with(|d| d.set(None));
    if super::LOAD_TIMED_OUT.with(|t| t.replace(false)) {
        // The hook keeps raising once it has fired, so the error may escape the handler.
        return Err(Error::err(
            "Error registering functions: ERR FUNCTION LOAD timeout",
        ));
    }
    let out = out.map_err(super::lua_err)?;
    let mut it = out.into_iter();
    if !matches!(it.next(), Some(Value::Boolean(true))) {
        let err = it.next().unwrap_or(Value::Nil);
        let text = match &err {
            Value::Table(t) => match t.raw_get::<Value>("err") {
                Ok(Value::String(s)) => s.to_string_lossy(),
                _ => "ERR unknown error".into(),
            },
            other => format!("ERR {other:?}"),
        };
        return Err(Error::err(format!("Error registering functions: {text}")));
    }
    let mut functions = Vec::new();
    for entry in registered.sequence_values::<Table>() {
        let entry = entry.map_err(super::lua_err)?;
        let fname: String = entry.raw_get("name").map_err(super::lua_err)?;
        let func: Function = entry.raw_get("callback").map_err(super::lua_err)?;
        let description: Option<String> = entry.raw_get("description").map_err(super::lua_err)?;
        let flag_list: Table = entry.raw_get("flags").map_err(super::lua_err)?;
        let mut flags = 0;
        for f in flag_list.sequence_values::<String>() {
            let f = f.map_err(super::lua_err)?;
            if let Some((_, bit)) = sflag::NAMES.iter().find(|(n, _)| *n == f) {
                flags |= bit;
            }
        }
        functions.push((
            Meta {
                name: fname,
                description,
                flags,
            },
            func,
        ));
    }
    if functions.is_empty() {
        return Err(Error::err("No functions registered"));
    }
    Ok((name, functions))
}

/// How FUNCTION RESTORE treats libraries that exist already.
#[derive(Clone, Copy, PartialEq)]
enum Policy {
    Append,
    Replace,
}

/// Checks and stores libraries (all or none): FUNCTION LOAD and RESTORE, and loading an RDB.
fn install(store: &Store, codes: &[&[u8]], policy: Policy) -> Result<Vec<String>> {
    with_vm(|vm| {
        if policy == Policy::Append {
            let libs = store
                .libraries
                .lock()
                .map_err(|_| Error::err("function store poisoned"))?;
            for code in codes {
                let name = metadata(code)?;
                if libs.contains_key(&name) {
                    return Err(Error::err(format!("Library '{name}' already exists")));
                }
            }
        }
        let mut checked = Vec::new();
        for code in codes {
            let (name, functions) = run_library(vm, code)?;
            checked.push(Library {
                name,
                code: Arc::from(*code),
                functions: functions.into_iter().map(|(m, _)| m).collect(),
            });
        }
        let mut libs = store
            .libraries
            .lock()
            .map_err(|_| Error::err("function store poisoned"))?;
        for (i, lib) in checked.iter().enumerate() {
            if policy == Policy::Append && libs.contains_key(&lib.name) {
                return Err(Error::err(format!("Library '{}' already exists", lib.name)));
            }
            let replacing: Vec<&str> = checked.iter().map(|l| l.name.as_str()).collect();
            for f in &lib.functions {
                let clash = libs
                    .values()
                    .filter(|other| !replacing.contains(&other.name.as_str()))
                    .any(|other| other.functions.iter().any(|g| g.name == f.name))
                    || checked[..i]
                        .iter()
                        .any(|other| other.functions.iter().any(|g| g.name == f.name));
                if clash {
                    return Err(Error::err(format!("Function {} already exists", f.name)));
                }
            }
        }
        let names = checked.iter().map(|l| l.name.clone()).collect();
        for lib in checked {
            libs.insert(lib.name.clone(), lib);
        }
        store.lib_generation.fetch_add(1, Ordering::AcqRel);
        Ok(names)
    })
}

/// Stores the libraries an RDB file holds (replacing those of the same name).
pub fn load_from_rdb(store: &Store, codes: &[Vec<u8>]) -> Result<()> {
    let codes: Vec<&[u8]> = codes.iter().map(|c| c.as_slice()).collect();
    install(store, &codes, Policy::Replace).map(|_| ())
}

/// Every library's code, for RDB files and FUNCTION DUMP.
pub fn codes(store: &Store) -> Vec<Arc<[u8]>> {
    store
        .libraries
        .lock()
        .map(|l| l.values().map(|lib| lib.code.clone()).collect())
        .unwrap_or_default()
}

/// Makes this thread's functions match the store.
fn refresh(vm: &mut Vm, store: &Store) -> Result<()> {
    let generation = (store.id(), store.lib_generation.load(Ordering::Acquire));
    if generation == vm.lib_generation {
        return Ok(());
    }
    let libs: Vec<Arc<[u8]>> = codes(store);
    vm.functions.clear();
    for code in libs {
        // Stored libraries loaded once already; a failure now (none expected) drops the library.
        if let Ok((_, functions)) = run_library(vm, &code) {
            for (meta, func) in functions {
                vm.functions.insert(
                    meta.name,
                    Loaded {
                        func,
                        flags: meta.flags,
                    },
                );
            }
        }
    }
    vm.lib_generation = generation;
    Ok(())
}

/// FCALL and FCALL_RO.
pub fn fcall(shard: &mut Shard, call: &mut Call<'_>, ro_command: bool) -> Result<()> {
    let argv = call.argv;
    let name = String::from_utf8_lossy(argv[1]).into_owned();
    with_vm(|vm| {
        refresh(vm, &shard.scripts)?;
        let Some(f) = vm.functions.get(&name) else {
            return Err(Error::err("Function not found"));
        };
        if crate::util::parse_i64(argv[2]).is_none() {
            return Err(Error::err("Bad number of keys provided"));
        }
        let n = super::numkeys(argv)?;
        let (keys, args) = argv[3..].split_at(n);
        if f.flags & sflag::NO_CLUSTER != 0 && crate::keyspace::cluster_mode() {
            return Err(Error::err(super::NO_CLUSTER_ERROR));
        }
        if ro_command && f.flags & sflag::NO_WRITES == 0 {
            return Err(Error::err(
                "Can not execute a script with write flag using *_ro command.",
            ));
        }
        crate::evict::script_may_run(shard, f.flags)?;
        if f.flags & sflag::NO_WRITES == 0 && crate::keyspace::read_only_replica() {
            return Err(Error::Other(super::READONLY_REPLICA.into()));
        }
        let run = super::Run {
            func: &f.func,
            name: &name,
            keys,
            args,
            read_only: f.flags & sflag::NO_WRITES != 0,
            journal: true,
            function: true,
            cross_slot: f.flags & sflag::ALLOW_CROSS_SLOT != 0,
        };
        super::execute(vm, shard, call, run).map(|_| ())
    })
}

/// FUNCTION LOAD [REPLACE] code.
pub fn function_load(shard: &mut Shard, call: &mut Call<'_>) -> Result<()> {
    let argv = call.argv;
    let (replace, code) = match argv.len() {
        3 => (false, argv[2]),
        4 if argv[2].eq_ignore_ascii_case(b"replace") => (true, argv[3]),
        4 => {
            return Err(Error::err(format!(
                "Unknown option given: {}",
                String::from_utf8_lossy(argv[2])
            )))
        }
        _ => return Err(Error::Syntax),
    };
    let policy = if replace {
        Policy::Replace
    } else {
        Policy::Append
    };
    let names = install(&shard.scripts, &[code], policy)?;
    shard.stats.dirty += 1;
    call.out
        .bulk(names.first().map_or(&b""[..], |n| n.as_bytes()));
    Ok(())
}

/// FUNCTION DELETE library.
pub fn function_delete(shard: &mut Shard, call: &mut Call<'_>) -> Result<()> {
    let name = String::from_utf8_lossy(call.argv[2]).into_owned();
    let store = &shard.scripts;
    let removed = store
        .libraries
        .lock()
        .map(|mut l| l.remove(&name).is_some())
        .unwrap_or(false);
    if !removed {
        return Err(Error::err("Library not found"));
    }
    store.lib_generation.fetch_add(1, Ordering::AcqRel);
    shard.stats.dirty += 1;
    call.out.ok();
    Ok(())
}

/// FUNCTION FLUSH [ASYNC|SYNC].
pub fn function_flush(shard: &mut Shard, call: &mut Call<'_>) -> Result<()> {
    match call.argv.len() {
        2 => {}
        3 if call.argv[2].eq_ignore_ascii_case(b"sync")
            || call.argv[2].eq_ignore_ascii_case(b"async") => {}
        _ => return Err(Error::err("FUNCTION FLUSH only supports SYNC|ASYNC option")),
    }
    flush(&shard.scripts);
    shard.stats.dirty += 1;
    call.out.ok();
    Ok(())
}

/// Drops every library (a replica loading its master's copy).
pub fn flush_libraries(store: &Store) {
    flush(store);
}

fn flush(store: &Store) {
    if let Ok(mut l) = store.libraries.lock() {
        l.clear();
    }
    store.lib_generation.fetch_add(1, Ordering::AcqRel);
}

/// FUNCTION LIST [LIBRARYNAME pattern] [WITHCODE].
pub fn function_list(shard: &mut Shard, call: &mut Call<'_>) -> Result<()> {
    let argv = call.argv;
    let mut pattern: Option<&[u8]> = None;
    let mut with_code = false;
    let mut i = 2;
    while i < argv.len() {
        if argv[i].eq_ignore_ascii_case(b"withcode") {
            if with_code {
                return Err(Error::err("Unknown argument withcode"));
            }
            with_code = true;
        } else if argv[i].eq_ignore_ascii_case(b"libraryname") {
            if pattern.is_some() {
                return Err(Error::err("library name can be given only once"));
            }
            i += 1;
            let Some(p) = argv.get(i) else {
                return Err(Error::err("library name argument was not given"));
            };
            pattern = Some(p);
        } else {
            return Err(Error::err(format!(
                "Unknown argument {}",
                String::from_utf8_lossy(argv[i])
            )));
        }
        i += 1;
    }
    let libs: Vec<Library> = shard
        .scripts
        .libraries
        .lock()
        .map(|l| l.values().cloned().collect())
        .unwrap_or_default();
    let libs: Vec<&Library> = libs
        .iter()
        .filter(|l| pattern.is_none_or(|p| crate::glob::matches(p, l.name.as_bytes(), false)))
        .collect();
    let out = &mut call.out;
    out.array(libs.len());
    for lib in libs {
        out.map(if with_code { 4 } else { 3 });
        out.bulk(b"library_name");
        out.bulk(lib.name.as_bytes());
        out.bulk(b"engine");
        out.bulk(b"LUA");
        out.bulk(b"functions");
        out.array(lib.functions.len());
        for f in &lib.functions {
            out.map(3);
            out.bulk(b"name");
            out.bulk(f.name.as_bytes());
            out.bulk(b"description");
            match &f.description {
                Some(d) => out.bulk(d.as_bytes()),
                None => out.null(),
            }
            out.bulk(b"flags");
            let names: Vec<&str> = sflag::NAMES
                .iter()
                .filter(|(_, bit)| f.flags & bit != 0)
                .map(|(n, _)| *n)
                .collect();
            out.set(names.len());
            for n in names {
                out.simple(n);
            }
        }
        if with_code {
            out.bulk(b"library_code");
            out.bulk(&lib.code);
        }
    }
    Ok(())
}

/// FUNCTION DUMP.
pub fn function_dump(shard: &mut Shard, call: &mut Call<'_>) -> Result<()> {
    let codes = codes(&shard.scripts);
    let payload = crate::rdb::dump_functions(codes.iter().map(|c| &c[..]));
    call.out.bulk(&payload);
    Ok(())
}

/// FUNCTION RESTORE payload [FLUSH|APPEND|REPLACE].
pub fn function_restore(shard: &mut Shard, call: &mut Call<'_>) -> Result<()> {
    let argv = call.argv;
    let mode = match argv.get(3) {
        None => b"append".as_slice(),
        Some(m) if argv.len() == 4 => m,
        Some(_) => return Err(Error::Syntax),
    };
    let (policy, flush_first) = if mode.eq_ignore_ascii_case(b"append") {
        (Policy::Append, false)
    } else if mode.eq_ignore_ascii_case(b"replace") {
        (Policy::Replace, false)
    } else if mode.eq_ignore_ascii_case(b"flush") {
        (Policy::Replace, true)
    } else {
        return Err(Error::err(
            "Wrong restore policy given, value should be either FLUSH, APPEND or REPLACE.",
        ));
    };
    let codes = crate::rdb::parse_functions(argv[2])
        .ok_or_else(|| Error::err("DUMP payload version or checksum are wrong"))?;
    let codes: Vec<&[u8]> = codes.iter().map(|c| c.as_slice()).collect();
    if flush_first {
        // Checked against an empty store: put the old libraries back if the payload fails.
        let old: Vec<Library> = shard
            .scripts
            .libraries
            .lock()
            .map(|l| l.values().cloned().collect())
            .unwrap_or_default();
        flush(&shard.scripts);
        if let Err(e) = install(&shard.scripts, &codes, policy) {
            if let Ok(mut l) = shard.scripts.libraries.lock() {
                for lib in old {
                    l.insert(lib.name.clone(), lib);
                }
            }
            shard.scripts.lib_generation.fetch_add(1, Ordering::AcqRel);
            return Err(e);
        }
    } else {
        install(&shard.scripts, &codes, policy)?;
    }
    shard.stats.dirty += 1;
    call.out.ok();
    Ok(())
}

/// FUNCTION STATS.
pub fn function_stats(shard: &mut Shard, call: &mut Call<'_>) -> Result<()> {
    stats_reply(&shard.scripts, call.now_ms, &mut call.out);
    Ok(())
}

/// FUNCTION STATS's reply: the function running past `busy-reply-threshold` on any shard (its
/// name, command and how long it has run), and the library and function counts.
pub fn stats_reply(store: &Store, now_ms: u64, out: &mut crate::resp::Reply<'_>) {
    let (libraries, functions) = store
        .libraries
        .lock()
        .map(|l| {
            (
                l.len(),
                l.values().map(|lib| lib.functions.len()).sum::<usize>(),
            )
        })
        .unwrap_or((0, 0));
    let running = store.busy.iter().find_map(|b| {
        let f = b.function.lock().ok()?.clone()?;
        Some((f, b.since_ms.load(Ordering::Acquire)))
    });
    out.map(2);
    out.bulk(b"running_script");
    match running {
        Some(((name, command), since)) => {
            out.map(3);
            out.bulk(b"name");
            out.bulk(name.as_bytes());
            out.bulk(b"command");
            out.array(command.len());
            for a in &command {
                out.bulk(a);
            }
            out.bulk(b"duration_ms");
            out.int(now_ms.saturating_sub(since) as i64);
        }
        None => out.null(),
    }
    out.bulk(b"engines");
    out.map(1);
    out.bulk(b"LUA");
    out.map(2);
    out.bulk(b"libraries_count");
    out.int(libraries as i64);
    out.bulk(b"functions_count");
    out.int(functions as i64);
}

#[cfg(test)]
mod tests {
    use crate::shard::testing::TestShard;

    const LIB: &str = "#!lua name=lib\nredis.register_function('echo', function(keys, args) return {keys[1], args[1]} end)\nredis.register_function{function_name='ro', callback=function(keys) return redis.call('get', keys[1]) end, flags={'no-writes'}, description='reads'}";

    #[test]
    fn load_call_list_delete() {
        let mut sh = TestShard::new();
        assert_eq!(
            sh.run_args(&[b"FUNCTION", b"LOAD", LIB.as_bytes()]),
            "$3\r\nlib\r\n"
        );
        assert_eq!(sh.run("FCALL echo 1 k a"), "*2\r\n$1\r\nk\r\n$1\r\na\r\n");
        sh.run("SET k v");
        assert_eq!(sh.run("FCALL_RO ro 1 k"), "$1\r\nv\r\n");
        assert_eq!(
            sh.run("FCALL_RO echo 0"),
            "-ERR Can not execute a script with write flag using *_ro command.\r\n"
        );
        let list = sh.run("FUNCTION LIST");
        assert!(
            list.contains("reads") && list.contains("no-writes"),
            "{list}"
        );
        assert_eq!(
            sh.run_args(&[b"FUNCTION", b"LOAD", LIB.as_bytes()]),
            "-ERR Library 'lib' already exists\r\n"
        );
        assert_eq!(sh.run("FUNCTION DELETE lib"), "+OK\r\n");
        assert_eq!(sh.run("FCALL echo 0"), "-ERR Function not found\r\n");
    }

    #[test]
    fn dump_and_restore_round_trip() {
        let mut sh = TestShard::new();
        sh.run_args(&[b"FUNCTION", b"LOAD", LIB.as_bytes()]);
        let dump = sh.run_bytes(&[b"FUNCTION", b"DUMP"]);
        let start = dump.iter().position(|&b| b == b'\n').unwrap() + 1;
        let payload = &dump[start..dump.len() - 2];
        let codes = crate::rdb::parse_functions(payload).unwrap();
        assert_eq!(codes, vec![LIB.as_bytes().to_vec()]);
        assert_eq!(sh.run("FUNCTION FLUSH"), "+OK\r\n");
        assert_eq!(sh.run_args(&[b"FUNCTION", b"RESTORE", payload]), "+OK\r\n");
        assert_eq!(sh.run("FCALL echo 1 a b"), "*2\r\n$1\r\na\r\n$1\r\nb\r\n");
        let mut bad = payload.to_vec();
        bad[3] ^= 1;
        assert_eq!(
            sh.run_args(&[b"FUNCTION", b"RESTORE", &bad]),
            "-ERR DUMP payload version or checksum are wrong\r\n"
        );
    }

    #[test]
    fn loading_sees_only_the_registration_api() {
        let mut sh = TestShard::new();
        let r = sh.run_args(&[b"FUNCTION", b"LOAD", b"#!lua name=x\nredis.call('ping')"]);
        assert_eq!(r, "-ERR Error registering functions: ERR user_function:2: Script attempted to access nonexistent global variable 'call'\r\n");
        let r = sh.run_args(&[b"FUNCTION", b"LOAD", b"#!lua name=x\nreturn 1"]);
        assert_eq!(r, "-ERR No functions registered\r\n");
        let r = sh.run_args(&[
            b"FUNCTION",
            b"LOAD",
            b"#!lua name=x\nredis.register_function('f', function() return type(string) end)",
        ]);
        assert_eq!(r, "$1\r\nx\r\n");
        assert_eq!(sh.run("FCALL f 0"), "$5\r\ntable\r\n");
    }
}
