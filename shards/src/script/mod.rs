//! Lua scripting (Redis's `eval.c` and `script_lua.c`): EVAL, EVALSHA and their read-only
//! forms run Lua 5.1 scripts against one shard's data.
//!
//! ## One VM per thread, one cache per process
//! Each shard thread owns one Lua state ([`Vm`], thread-local), created on first use, holding
//! the sandbox (see `prelude.lua`) and the functions compiled on this thread. Script bodies live
//! in the process-wide [`Store`] (shared by every shard, behind a mutex taken only on a miss of
//! the thread's compiled cache): SCRIPT LOAD on one connection makes EVALSHA work on all.
//! SCRIPT FLUSH empties the store and bumps its generation; each thread drops its compiled
//! functions when it sees a new generation (one atomic load per call).
//!
//! ## What a script may touch, and the reroute
//! The server runs a script on a shard that holds its declared keys ([`Shard::script_keys`]
//! `None`: every key this shard owns), or on a scratch shard holding copies of the keys a
//! cross-shard transaction gathered (`Some(set)`: exactly those). `redis.call` checks the keys
//! of every command against that; a key the script may not touch here (undeclared, on another
//! shard) makes the run **abort**: every later `redis.call` fails too, the result is dropped,
//! the data is put back as it was, and the call ends with [`Error::Reroute`] leaving in
//! [`Shard::reroute`] the keys reached so far. The server then runs the script again as a
//! transaction over those keys plus the declared ones, on copies (where aborting costs
//! nothing), repeating until the keys it reaches are all gathered (a bounded number of times).
//! A script forwarded to the shard of its keys is sent back to the connection's shard for this.
//!
//! Putting the data back after writes needs a journal of each written key's prior entry. On
//! a real shard a script body keeps one until it has run once touching only the keys it
//! declared (in their database); then it runs unjournaled (copying big values before every
//! write would cost more than the script). Such a script that later reaches a foreign key after
//! writing fails with an error, as Redis Cluster fails it, and is journaled from then on.
//!
//! ## Effects, not scripts, are logged
//! Each write a script makes is logged by the engine as that command's effect (see
//! [`crate::prop`]); the EVAL itself never is, and a script that logged more than one command
//! is wrapped in `MULTI`/`EXEC` so that a replay applies it whole.
//!
//! ## Long scripts
//! A count hook (a raw Lua hook, on every thread a script runs, its coroutines included) looks
//! at the clock every [`HOOK_EVERY`] instructions: once the script has run longer than
//! `busy-reply-threshold` its shard is marked busy ([`Busy`]) so other shards answer `-BUSY`
//! for it, and the hook calls [`Shard::busy_poll`] so the server serves this shard's own
//! connections meanwhile (`-BUSY`, SCRIPT KILL, SHUTDOWN NOSAVE). A SCRIPT KILL (from any shard,
//! through [`Busy::kill`]) stops a script that has not written; once the hook has raised, it
//! fires at every instruction, so `pcall` cannot keep a stopped script going.

pub mod convert;
mod ffi;
pub mod function;
pub mod libs;

use crate::cmd::{key_positions, Call, Lookup};
use crate::keyspace::{Entry, Key};
use crate::resp::{Proto, Reply};
use crate::{Error, Result, Shard};
use mlua::{Function, Lua, LuaOptions, MultiValue, StdLib, Table, Value};
use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// How many Lua instructions run between two looks at the clock and the kill flag.
pub const HOOK_EVERY: u32 = 100_000;

/// The version scripts see in `redis.REDIS_VERSION`.
pub const REDIS_VERSION: &str = "7.0.15";
const REDIS_VERSION_NUM: u32 = 0x07_00_0f;

/// A script's lowercase hex SHA1, the name EVALSHA uses.
pub type Sha = [u8; 40];

/// The hex SHA1 of `body`.
pub fn sha1_hex(body: &[u8]) -> Sha {
    let digest = sha1_smol::Sha1::from(body).digest().bytes();
    let mut out = [0u8; 40];
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in digest.iter().enumerate() {
        out[2 * i] = HEX[(b >> 4) as usize];
        out[2 * i + 1] = HEX[(b & 15) as usize];
    }
    out
}

/// Every script body loaded (by EVAL or SCRIPT LOAD), shared by all shards of the process.
pub struct Store {
    /// Unique per store, so that a thread's caches never mix two stores (tests make many).
    id: u64,
    bodies: Mutex<HashMap<Sha, Arc<[u8]>>>,
    generation: AtomicU64,
    /// Function libraries (FUNCTION LOAD), by name.
    pub(crate) libraries: Mutex<std::collections::BTreeMap<String, function::Library>>,
    /// Bumped by every change of `libraries`: threads reload their functions when it moves.
    pub(crate) lib_generation: AtomicU64,
    /// Per shard: what its running script is doing, for BUSY and SCRIPT KILL.
    pub busy: Box<[Busy]>,
}

/// A shard's running script, seen from other threads.
#[derive(Default)]
pub struct Busy {
    /// Unix ms when the running script started; 0 while none runs.
    pub since_ms: AtomicU64,
    /// Set once the script has run longer than `busy-reply-threshold`.
    pub busy: AtomicBool,
    /// SCRIPT KILL asked to stop it.
    pub kill: AtomicBool,
    /// It has written: it cannot be killed any more.
    pub wrote: AtomicBool,
    /// The function running past the threshold (for FUNCTION STATS): its name and command.
    pub function: Mutex<Option<(String, Vec<Vec<u8>>)>>,
}

impl Store {
    pub fn new(shards: usize) -> Store {
        static NEXT_ID: AtomicU64 = AtomicU64::new(0);
        Store {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            bodies: Mutex::new(HashMap::new()),
            generation: AtomicU64::new(0),
            libraries: Mutex::new(Default::default()),
            lib_generation: AtomicU64::new(0),
            busy: (0..shards.max(1)).map(|_| Busy::default()).collect(),
        }
    }

    /// Caches a body; returns its SHA.
    pub fn load(&self, body: &[u8]) -> Sha {
        let sha = sha1_hex(body);
        if let Ok(mut bodies) = self.bodies.lock() {
            bodies.entry(sha).or_insert_with(|| Arc::from(body));
        }
        sha
    }

    pub fn get(&self, sha: &Sha) -> Option<Arc<[u8]>> {
        self.bodies.lock().ok()?.get(sha).cloned()
    }

    pub fn exists(&self, sha: &[u8]) -> bool {
        let Some(sha) = parse_sha(sha) else {
            return false;
        };
        self.bodies.lock().is_ok_and(|b| b.contains_key(&sha))
    }

    /// SCRIPT FLUSH.
    pub fn flush(&self) {
        if let Ok(mut bodies) = self.bodies.lock() {
            bodies.clear();
        }
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// How many scripts are cached, and their bodies' total size.
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    pub fn stats(&self) -> (usize, usize) {
        self.bodies
            .lock()
            .map(|b| (b.len(), b.values().map(|v| v.len()).sum()))
            .unwrap_or((0, 0))
    }

    /// How many function libraries are loaded, how many functions they register, and their
    /// code's total size.
    pub fn library_stats(&self) -> (usize, usize, usize) {
        self.libraries
            .lock()
            .map(|l| {
                l.values().fold((0, 0, 0), |(n, f, b), lib| {
                    (n + 1, f + lib.functions.len(), b + lib.code.len())
                })
            })
            .unwrap_or((0, 0, 0))
    }

    /// The busy state of shard `id` (the first one if `id` is out of range).
    pub fn busy_of(&self, id: usize) -> &Busy {
        &self.busy[id.min(self.busy.len() - 1)]
    }
}

/// A 40-digit hex SHA, lowercased; None if it is not one.
pub fn parse_sha(s: &[u8]) -> Option<Sha> {
    if s.len() != 40 {
        return None;
    }
    let mut out = [0u8; 40];
    for (o, c) in out.iter_mut().zip(s) {
        *o = c.to_ascii_lowercase();
    }
    Some(out)
}

/// The flags a script declares in its `#!lua flags=…` line.
pub mod sflag {
    pub const NO_WRITES: u32 = 1;
    pub const ALLOW_OOM: u32 = 2;
    pub const ALLOW_STALE: u32 = 4;
    pub const NO_CLUSTER: u32 = 8;
    pub const ALLOW_CROSS_SLOT: u32 = 16;
    pub const NAMES: &[(&str, u32)] = &[
        ("no-writes", NO_WRITES),
        ("allow-oom", ALLOW_OOM),
        ("allow-stale", ALLOW_STALE),
        ("no-cluster", NO_CLUSTER),
        ("allow-cross-slot-keys", ALLOW_CROSS_SLOT),
    ];
}

/// A compiled script.
#[derive(Clone)]
struct Compiled {
    func: Function,
    /// Flags from its shebang; `None`: no shebang (Redis's legacy script semantics).
    flags: Option<u32>,
    /// It ran once on a real shard without reaching a key it may not touch: no journal
    /// needed.
    trusted: bool,
    /// It once reached keys it may not touch: always journaled.
    rerouted: bool,
}

/// Splits a body's `#!lua …` line into its flags, and the source Lua compiles (the shebang
/// line turned into a comment, so line numbers stay).
pub fn parse_shebang(body: &[u8]) -> Result<(Option<u32>, std::borrow::Cow<'_, [u8]>)> {
    if !body.starts_with(b"#!") {
        return Ok((None, std::borrow::Cow::Borrowed(body)));
    }
    let end = body.iter().position(|&b| b == b'\n').unwrap_or(body.len());
    let line = String::from_utf8_lossy(&body[2..end]);
    let mut parts = line.split(' ').filter(|p| !p.is_empty());
    let engine = parts.next().unwrap_or("");
    if engine != "lua" {
        return Err(Error::err(format!(
            "Unexpected engine in script shebang: #!{engine}"
        )));
    }
    let mut flags = 0;
    for part in parts {
        let Some(list) = part.strip_prefix("flags=") else {
            return Err(Error::err(format!("Unknown lua shebang option: {part}")));
        };
        for f in list.split(',').filter(|f| !f.is_empty()) {
            match sflag::NAMES.iter().find(|(n, _)| *n == f) {
                Some((_, bit)) => flags |= bit,
                None => {
                    return Err(Error::err(format!(
                        "Unexpected flag in script shebang: {f}"
                    )))
                }
            }
        }
    }
    let mut src = b"--".to_vec();
    src.extend_from_slice(body);
    Ok((Some(flags), std::borrow::Cow::Owned(src)))
}

/// This thread's Lua state.
pub(crate) struct Vm {
    pub(crate) lua: Lua,
    /// The globals table behind the sandbox (KEYS and ARGV are set here).
    globals: Table,
    env: Table,
    /// `xpcall(f, handler)` from the prelude.
    run: Function,
    /// `xpcall(function() return f(keys, args) end, handler)`.
    run_with: Function,
    /// A new function library's environment and registration list.
    pub(crate) new_library: Function,
    /// Runs a library's code with registration on.
    pub(crate) load_library: Function,
    compiled: HashMap<Sha, Compiled, ahash::RandomState>,
    /// The store and generation `compiled` belongs to.
    generation: (u64, u64),
    /// The functions of every library, as loaded on this thread.
    pub(crate) functions: HashMap<String, function::Loaded>,
    /// The store and library generation `functions` reflects.
    pub(crate) lib_generation: (u64, u64),
    /// "KEYS" and "ARGV" as Lua strings, made once.
    names: (mlua::String, mlua::String),
}

thread_local! {
    static VM: RefCell<Option<Vm>> = const { RefCell::new(None) };
    static RUNNING: RefCell<Option<Running>> = const { RefCell::new(None) };
}

/// Bytes this thread's Lua state uses (0 before its first script; INFO's used_memory_lua).
pub fn vm_memory() -> usize {
    VM.with(|vm| {
        vm.try_borrow()
            .ok()
            .and_then(|vm| vm.as_ref().map(|vm| vm.lua.used_memory()))
            .unwrap_or(0)
    })
}

/// The script running on this thread, as `redis.call` sees it.
struct Running {
    /// The shard the script runs against. Valid for the whole run: [`eval`] holds the only
    /// reference and does not use it until the script returns.
    shard: *mut Shard,
    /// For a function (FCALL): its name and the command, for FUNCTION STATS once it runs past
    /// the threshold. Valid for the whole run, like `shard`.
    function: Option<(*const str, *const [&'static [u8]])>,
    /// The function was reported in [`Busy::function`].
    reported: bool,
    /// Cluster mode: the slot the script's keys are in (its declared keys', else the first it
    /// touched), and whether it may touch keys of other slots (`allow-cross-slot-keys`).
    slot: Option<u16>,
    cross_slot: bool,
    db: usize,
    now_us: u64,
    /// `redis.setresp(3)` was called.
    resp3: bool,
    /// The client's protocol, for the script's reply.
    client_proto: Proto,
    read_only: bool,
    /// `stats.dirty` when the script started: it has written once this moved.
    dirty0: u64,
    /// Prior entries of the keys written, for putting the data back (None: unjournaled).
    journal: Option<Vec<(usize, Key, Option<Entry>)>>,
    journaled: HashSet<(usize, Key)>,
    /// The run reached keys it may not touch here: it must run again elsewhere.
    aborted: bool,
    /// It reached a foreign key after writing, unjournaled.
    stranded: bool,
    /// Keys the script reached that this run may not touch.
    foreign: Vec<(usize, Key)>,
    /// The keys it declared, and the database it started in.
    declared: Vec<Vec<u8>>,
    db0: usize,
    /// It touched a key it did not declare: it is never trusted to run unjournaled (whether
    /// such a key is on this shard can change from run to run).
    undeclared: bool,
    /// Unix ms at the start, and the busy threshold (0: none).
    started_ms: u64,
    busy_ms: u64,
    killed: bool,
}

/// What the server tells a script run.
pub struct EvalCtx {
    pub read_only_command: bool,
}

fn lua_err(e: mlua::Error) -> Error {
    Error::err(format!("Lua error: {e}"))
}

impl Vm {
    fn new() -> mlua::Result<Vm> {
        // SAFETY: the debug library is needed by the error handler only; scripts never see it
        // (their globals are the sandbox's, see prelude.lua).
        let lua =
            unsafe { Lua::unsafe_new_with(StdLib::ALL_SAFE | StdLib::DEBUG, LuaOptions::new()) };
        libs::open_all(&lua)?;
        let rust = lua.create_table()?;
        rust.raw_set("error_reply", lua.create_function(api_error_reply)?)?;
        rust.raw_set("status_reply", lua.create_function(api_status_reply)?)?;
        rust.raw_set("randomseed", lua.create_function(api_randomseed)?)?;
        // SAFETY: C functions following the Lua C API contract (see `ffi`).
        unsafe {
            rust.raw_set("call", lua.create_c_function(ffi::redis_call)?)?;
            rust.raw_set("pcall", lua.create_c_function(ffi::redis_pcall)?)?;
            rust.raw_set("sha1hex", lua.create_c_function(ffi::sha1hex)?)?;
            rust.raw_set("log", lua.create_c_function(ffi::log)?)?;
            rust.raw_set("setresp", lua.create_c_function(ffi::setresp)?)?;
            rust.raw_set("set_repl", lua.create_c_function(ffi::set_repl)?)?;
            rust.raw_set("hook_here", lua.create_c_function(ffi::hook_here)?)?;
            rust.raw_set("sethook", lua.create_c_function(ffi::sethook)?)?;
            rust.raw_set("random", lua.create_c_function(ffi::random)?)?;
            rust.raw_set("emit", lua.create_c_function(ffi::emit)?)?;
        }
        rust.raw_set("version", REDIS_VERSION)?;
        rust.raw_set("version_num", REDIS_VERSION_NUM)?;
        let (env, globals, run, run_with, new_library, load_library): (
            Table,
            Table,
            Function,
            Function,
            Function,
            Function,
        ) = lua
            .load(include_str!("prelude.lua"))
            .set_name("=redis")
            .call(rust)?;
        let names = (lua.create_string("KEYS")?, lua.create_string("ARGV")?);
        Ok(Vm {
            lua,
            globals,
            env,
            run,
            run_with,
            new_library,
            load_library,
            compiled: HashMap::default(),
            generation: (u64::MAX, 0),
            functions: HashMap::new(),
            lib_generation: (u64::MAX, 0),
            names,
        })
    }

    /// Makes sure the function for a body (EVAL) or a SHA (EVALSHA) is compiled; its SHA.
    fn function(&mut self, store: &Store, script: &[u8], by_sha: bool) -> Result<Sha> {
        let generation = (store.id, store.generation.load(Ordering::Acquire));
        if generation != self.generation {
            self.compiled.clear();
            self.generation = generation;
        }
        let sha = if by_sha {
            parse_sha(script).ok_or_else(no_script)?
        } else {
            sha1_hex(script)
        };
        if self.compiled.contains_key(&sha) {
            return Ok(sha);
        }
        let body: Arc<[u8]> = if by_sha {
            store.get(&sha).ok_or_else(no_script)?
        } else {
            Arc::from(script)
        };
        let c = self.compile(&body)?;
        if !by_sha {
            store.load(&body);
        }
        self.compiled.insert(sha, c);
        Ok(sha)
    }

    fn compile(&self, body: &[u8]) -> Result<Compiled> {
        let (flags, src) = parse_shebang(body)?;
        let func = self
            .lua
            .load(&*src)
            .set_name("@user_script")
            .set_environment(self.env.clone())
            .into_function()
            .map_err(|e| {
                let msg = match e {
                    mlua::Error::SyntaxError { message, .. } => message,
                    other => other.to_string(),
                };
                Error::err(format!("Error compiling script (new function): {msg}"))
            })?;
        Ok(Compiled {
            func,
            flags,
            trusted: false,
            rerouted: false,
        })
    }
}

fn no_script() -> Error {
    Error::Other("NOSCRIPT No matching script. Please use EVAL.".into())
}

/// Compiles a body without running it (SCRIPT LOAD): its SHA, or the compile error.
pub fn load(shard: &mut Shard, body: &[u8]) -> Result<Sha> {
    with_vm(|vm| {
        let c = vm.compile(body)?;
        let sha = shard.scripts.load(body);
        vm.compiled.insert(sha, c);
        Ok(sha)
    })
}

pub(crate) fn with_vm<T>(f: impl FnOnce(&mut Vm) -> Result<T>) -> Result<T> {
    VM.with(|cell| {
        let mut slot = cell
            .try_borrow_mut()
            .map_err(|_| Error::err("script VM busy"))?;
        if slot.is_none() {
            *slot = Some(Vm::new().map_err(lua_err)?);
        }
        match slot.as_mut() {
            Some(vm) => f(vm),
            None => Err(Error::err("script VM unavailable")),
        }
    })
}

/// Parses EVAL's numkeys against the arguments after it.
pub fn numkeys(argv: &[&[u8]]) -> Result<usize> {
    let n = crate::util::parse_i64(argv[2]).ok_or(Error::NotInteger)?;
    if n < 0 {
        return Err(Error::err("Number of keys can't be negative"));
    }
    if n as usize > argv.len() - 3 {
        return Err(Error::err(
            "Number of keys can't be greater than number of args",
        ));
    }
    Ok(n as usize)
}

/// A write on a replica that refuses its clients' writes.
pub const READONLY_REPLICA: &str = "READONLY You can't write against a read only replica.";

/// EVAL, EVALSHA, EVAL_RO, EVALSHA_RO.
/// Whether a script is running on this thread (its `redis.call`s are not timed on their own).
/// MONITOR clients in the process: while there are any, the commands scripts call are kept
/// in `Shard::script_calls` for them (one load per call otherwise).
pub static MONITORS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// A script flagged `no-cluster`, in cluster mode.
pub const NO_CLUSTER_ERROR: &str = "Can not run script on cluster, 'no-cluster' flag is set.";

pub fn in_script() -> bool {
    RUNNING.with(|r| r.try_borrow().map_or(true, |g| g.is_some()))
}

pub fn eval(shard: &mut Shard, call: &mut Call<'_>, by_sha: bool, ro_command: bool) -> Result<()> {
    let argv = call.argv;
    let n = numkeys(argv)?;
    let (keys, args) = argv[3..].split_at(n);
    with_vm(|vm| {
        let sha = vm.function(&shard.scripts, argv[1], by_sha)?;
        let Some(compiled) = vm.compiled.get(&sha) else {
            return Err(no_script());
        };
        let flags = compiled.flags.unwrap_or(0);
        if flags & sflag::NO_CLUSTER != 0 && crate::keyspace::cluster_mode() {
            return Err(Error::err(NO_CLUSTER_ERROR));
        }
        if ro_command && compiled.flags.is_some() && flags & sflag::NO_WRITES == 0 {
            return Err(Error::err(
                "Can not execute a script with write flag using *_ro command.",
            ));
        }
        if compiled.flags.is_some() {
            crate::evict::script_may_run(shard, flags)?;
            // A script that declares it may write does not start on a read-only replica.
            if flags & sflag::NO_WRITES == 0 && crate::keyspace::read_only_replica() {
                return Err(Error::Other(READONLY_REPLICA.into()));
            }
        }
        let run = Run {
            func: &compiled.func,
            name: std::str::from_utf8(&sha).unwrap_or("?"),
            keys,
            args,
            read_only: ro_command || flags & sflag::NO_WRITES != 0,
            journal: !compiled.trusted,
            function: false,
            // Scripts without a shebang (Redis's eval compatibility mode) may, as in Redis.
            cross_slot: compiled.flags.is_none() || flags & sflag::ALLOW_CROSS_SLOT != 0,
        };
        let direct = shard.script_keys.is_none();
        let r = execute(vm, shard, call, run);
        if let Some(c) = vm.compiled.get_mut(&sha) {
            match r {
                Err(Error::Reroute) => c.rerouted = true,
                Ok(true) if direct && !c.rerouted => c.trusted = true,
                _ => {}
            }
        }
        r.map(|_| ())
    })
}

/// One script run's inputs.
pub(crate) struct Run<'a> {
    pub(crate) func: &'a Function,
    /// The name errors give (`script: <name>`): the SHA, or a function's name.
    pub(crate) name: &'a str,
    pub(crate) keys: &'a [&'a [u8]],
    pub(crate) args: &'a [&'a [u8]],
    pub(crate) read_only: bool,
    pub(crate) journal: bool,
    /// A function (FCALL): it gets keys and args as parameters, not as KEYS and ARGV.
    pub(crate) function: bool,
    /// `allow-cross-slot-keys`.
    pub(crate) cross_slot: bool,
}

/// Runs a compiled script; writes its reply. Ok(true): it ran touching only the keys it
/// declared (so it may run unjournaled next time).
pub(crate) fn execute(
    vm: &Vm,
    shard: &mut Shard,
    call: &mut Call<'_>,
    run: Run<'_>,
) -> Result<bool> {
    let lua = &vm.lua;
    let to_table = |items: &[&[u8]]| -> mlua::Result<Table> {
        let t = lua.create_table_with_capacity(items.len(), 0)?;
        for (i, a) in items.iter().enumerate() {
            t.raw_set(i + 1, lua.create_string(a)?)?;
        }
        Ok(t)
    };
    let keys = to_table(run.keys).map_err(lua_err)?;
    let args = to_table(run.args).map_err(lua_err)?;
    // Functions get keys and args as parameters; KEYS and ARGV are EVAL's globals only.
    let (k, a) = if run.function {
        (Value::Nil, Value::Nil)
    } else {
        (Value::Table(keys.clone()), Value::Table(args.clone()))
    };
    vm.globals.raw_set(&vm.names.0, k).map_err(lua_err)?;
    vm.globals.raw_set(&vm.names.1, a).map_err(lua_err)?;
    let prop_mark = shard.prop.as_ref().map(|p| (p.buf.len(), p.db));
    let events_mark = shard.events.len();
    let started_ms = (shard.clock_ms)();
    let busy = shard.scripts.busy_of(shard.id);
    busy.kill.store(false, Ordering::Relaxed);
    busy.wrote.store(false, Ordering::Relaxed);
    busy.busy.store(false, Ordering::Relaxed);
    busy.since_ms.store(started_ms.max(1), Ordering::Release);
    let running = Running {
        shard: shard as *mut Shard,
        db: call.db,
        now_us: call.now_us,
        function: run.function.then(|| {
            // SAFETY: only the lifetime is erased; see `Running::function`.
            let argv: &[&'static [u8]] = unsafe { std::mem::transmute(call.argv) };
            (run.name as *const str, argv as *const [&'static [u8]])
        }),
        reported: false,
        slot: run
            .keys
            .first()
            .filter(|_| crate::keyspace::cluster_mode())
            .map(|k| crate::slot::key_slot(k).0),
        cross_slot: run.cross_slot,
        resp3: false,
        client_proto: call.out.proto,
        read_only: run.read_only,
        dirty0: shard.stats.dirty,
        journal: run.journal.then(Vec::new),
        journaled: HashSet::new(),
        aborted: false,
        stranded: false,
        foreign: Vec::new(),
        // Only a journaled run decides trust (see `undeclared`).
        declared: if run.journal {
            run.keys.iter().map(|k| k.to_vec()).collect()
        } else {
            Vec::new()
        },
        db0: call.db,
        undeclared: false,
        started_ms,
        busy_ms: shard.config.busy_reply_threshold_ms,
        killed: false,
    };
    RUNNING.with(|r| *r.borrow_mut() = Some(running));
    // The prelude's runner converts the result (or the error) itself (`ffi::emit`).
    let result: mlua::Result<()> = if run.function {
        vm.run_with.call((run.func, keys, args))
    } else {
        vm.run.call(run.func)
    };
    let Some(state) = RUNNING.with(|r| r.borrow_mut().take()) else {
        return Err(Error::err("script state lost"));
    };
    let busy = shard.scripts.busy_of(shard.id);
    busy.since_ms.store(0, Ordering::Release);
    busy.busy.store(false, Ordering::Relaxed);
    if state.reported {
        if let Ok(mut f) = busy.function.lock() {
            *f = None;
        }
    }
    if state.aborted {
        if let Some(journal) = state.journal {
            for (db, key, entry) in journal.into_iter().rev() {
                shard.import(db, vec![(key, entry)]);
            }
            if let (Some(p), Some((len, db))) = (shard.prop.as_mut(), prop_mark) {
                p.buf.truncate(len);
                p.db = db;
            }
            shard.events.truncate(events_mark);
        }
        if !state.stranded {
            let mut keys: Vec<(usize, Key)> =
                run.keys.iter().map(|k| (call.db, Key::from(*k))).collect();
            for k in state.foreign {
                if !keys.contains(&k) {
                    keys.push(k);
                }
            }
            shard.reroute = Some(keys);
            return Err(Error::Reroute);
        }
    }
    if state.stranded {
        wrap_effects(shard, prop_mark);
        return Err(Error::Other(format!(
            "ERR Script attempted to access a key on another shard after writing: \
             declare every key the script uses in KEYS script: {}",
            run.name
        )));
    }
    if state.dirty0 != shard.stats.dirty {
        wrap_effects(shard, prop_mark);
    }
    shard.prevent_propagation();
    if state.killed {
        return Err(Error::Other(
            "ERR Script killed by user with SCRIPT KILL...".into(),
        ));
    }
    result.map_err(lua_err)?;
    let outcome = ffi::EMITTED.with(|e| {
        let mut e = e.borrow_mut();
        match e.error.take() {
            None => {
                call.out.raw(&e.out);
                Ok(())
            }
            Some((text, source, line)) => Err(format!(
                "{text} script: {}, on {}:{}.",
                run.name,
                source.as_deref().unwrap_or("?"),
                line.map_or("?".to_string(), |n| n.to_string())
            )),
        }
    });
    match outcome {
        Ok(()) => Ok(!state.undeclared),
        Err(text) => Err(Error::Other(text)),
    }
}

/// Wraps what a script logged in `MULTI`/`EXEC` when it is more than one command.
fn wrap_effects(shard: &mut Shard, mark: Option<(usize, Option<usize>)>) {
    let (Some(p), Some((start, _))) = (shard.prop.as_mut(), mark) else {
        return;
    };
    let logged = &p.buf[start..];
    if count_commands(logged) < 2 {
        return;
    }
    let mut wrapped = Vec::with_capacity(logged.len() + 32);
    crate::resp::encode_command(&[b"MULTI"], &mut wrapped);
    wrapped.extend_from_slice(logged);
    crate::resp::encode_command(&[b"EXEC"], &mut wrapped);
    p.buf.truncate(start);
    p.buf.extend_from_slice(&wrapped);
}

/// How many RESP commands (arrays of bulk strings, as the log holds) `buf` holds.
fn count_commands(buf: &[u8]) -> usize {
    let mut pos = 0;
    let mut n = 0;
    while pos < buf.len() {
        let mut p = pos;
        let line = |p: &mut usize| -> Option<i64> {
            let start = *p + 1;
            let end = start + buf.get(start..)?.windows(2).position(|w| w == b"\r\n")?;
            *p = end + 2;
            crate::util::parse_i64(&buf[start..end])
        };
        let Some(items) = line(&mut p) else {
            break;
        };
        for _ in 0..items.max(0) {
            let Some(len) = line(&mut p) else {
                return n;
            };
            p += len.max(0) as usize + 2;
        }
        pos = p;
        n += 1;
    }
    n
}

thread_local! {
    /// While a library's code runs (FUNCTION LOAD, RESTORE, a load): when it must stop.
    pub(crate) static LOAD_DEADLINE: std::cell::Cell<Option<std::time::Instant>> =
        const { std::cell::Cell::new(None) };
}

thread_local! {
    /// Set when the hook stopped a library load for its time.
    pub(crate) static LOAD_TIMED_OUT: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// How long a library's code may run while it loads, as Redis allows.
pub(crate) const LOAD_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(500);

/// The count hook's decision: continue (None), or raise this error. Marks the shard busy once
/// the script has run past `busy-reply-threshold`; stops a killed script (one that has not
/// written), a run that must be rerouted and a library load past its time.
pub(crate) fn hook_check() -> Option<&'static str> {
    if let Some(deadline) = LOAD_DEADLINE.with(|d| d.get()) {
        if std::time::Instant::now() >= deadline {
            LOAD_TIMED_OUT.with(|t| t.set(true));
            return Some("FUNCTION LOAD timeout");
        }
    }
    RUNNING.with(|r| {
        let mut r = r.try_borrow_mut().ok()?;
        let run = r.as_mut()?;
        // SAFETY: see `Running::shard`.
        let shard = unsafe { &*run.shard };
        let busy = shard.scripts.busy_of(shard.id);
        if run.busy_ms > 0 {
            let now = (shard.clock_ms)();
            if now.saturating_sub(run.started_ms) >= run.busy_ms {
                busy.busy.store(true, Ordering::Relaxed);
                if let (Some((name, argv)), false) = (run.function, run.reported) {
                    run.reported = true;
                    // SAFETY: see `Running::function`.
                    let (name, argv) = unsafe { (&*name, &*argv) };
                    if let Ok(mut f) = busy.function.lock() {
                        *f = Some((name.to_string(), argv.iter().map(|a| a.to_vec()).collect()));
                    }
                }
                if let Some(poll) = shard.busy_poll {
                    poll();
                }
            }
        }
        if busy.kill.load(Ordering::Relaxed) && shard.stats.dirty == run.dirty0 {
            run.killed = true;
        }
        if run.killed {
            return Some("Script killed by user with SCRIPT KILL...");
        }
        // A script caught its abort with pcall and went on: stop it.
        run.aborted.then_some("script aborted")
    })
}

/// Runs one command for `redis.call`/`redis.pcall`: the reply (in the protocol the script
/// chose) and whether it is an error reply, or the text of an error found before running it.
fn run_command(argv: &[&[u8]]) -> std::result::Result<(Vec<u8>, Proto), String> {
    RUNNING.with(|cell| {
        let mut guard = cell.borrow_mut();
        let Some(run) = guard.as_mut() else {
            return Err("ERR redis.call outside a script".into());
        };
        if run.aborted || run.killed {
            return Err("ERR script aborted".into());
        }
        // SAFETY: see `Running::shard`.
        let shard = unsafe { &mut *run.shard };
        let Some(l) = crate::cmd::registry::find_unchecked(argv) else {
            return Err("ERR Unknown Redis command called from script".into());
        };
        if !l.spec.arity_ok(argv.len()) {
            return Err("ERR Wrong number of args calling Redis command from script".into());
        }
        if l.spec.flags & crate::cmd::flag::NOSCRIPT != 0 {
            return Err("ERR This Redis command is not allowed from script".into());
        }
        if let Some(c) = shard.caller.as_deref() {
            c.check(l, argv, run.now_us / 1000)?;
        }
        allowed_here(shard, l, argv)?;
        let proto = if run.resp3 {
            Proto::Resp3
        } else {
            Proto::Resp2
        };
        if l.spec.name == "select" {
            let db = select_db(argv[1]).map_err(|e| e.text())?;
            run.db = db;
            return Ok((b"+OK\r\n".to_vec(), proto));
        }
        let write = l.spec.flags & crate::cmd::flag::WRITE != 0;
        if write && run.read_only {
            return Err("ERR Write commands are not allowed from read-only scripts.".into());
        }
        // The master's stream carries effects, never scripts: a script here is a client's.
        if write && crate::keyspace::read_only_replica() {
            return Err(READONLY_REPLICA.into());
        }
        // Every key must be one this run may touch: its keys in the script's database, and
        // the key MOVE and COPY … DB write in another.
        let mut pos = Vec::new();
        key_positions(l.spec, argv, &mut pos);
        let mut keys: Vec<(usize, &[u8])> = pos.iter().map(|&p| (run.db, argv[p])).collect();
        keys.extend(other_db_key(l, argv));
        if crate::keyspace::cluster_mode() {
            cluster_check(run, &keys, write)?;
        }
        let mut denied = false;
        for &(db, key) in &keys {
            if run.journal.is_some() && (db != run.db0 || !run.declared.iter().any(|d| *d == key)) {
                run.undeclared = true;
            }
            if !may_touch(shard, db, key) {
                denied = true;
                let k = (db, Key::from(key));
                if !run.foreign.contains(&k) {
                    run.foreign.push(k);
                }
            }
        }
        if denied {
            run.aborted = true;
            if shard.stats.dirty != run.dirty0 && run.journal.is_none() {
                run.stranded = true;
            }
            return Err("ERR script aborted".into());
        }
        if write {
            if let Some(journal) = run.journal.as_mut() {
                for &(db, key) in &keys {
                    let k = (db, Key::from(key));
                    if run.journaled.insert(k.clone()) {
                        let prior = shard
                            .export(db, &[key], run.now_us / 1000)
                            .pop()
                            .and_then(|(_, e)| e);
                        journal.push((k.0, k.1, prior));
                    }
                }
            }
        }
        let mut out = Vec::new();
        let blocked = shard.execute_reply(l, argv, run.db, run.now_us, proto, &mut out);
        if MONITORS.load(std::sync::atomic::Ordering::Relaxed) != 0 {
            let flags = l.spec.flags | l.parent.map_or(0, |p| p.flags);
            if flags & (crate::cmd::flag::ADMIN | crate::cmd::flag::SKIP_MONITOR) == 0 {
                let args = argv.iter().map(|a| a.to_vec()).collect();
                shard.script_calls.push((run.db, args));
            }
        }
        if blocked.is_some() {
            // A blocking command never blocks a script: it answers as if it timed out.
            shard.block_args = None;
            out.clear();
            Reply::new(&mut out, proto).null_array();
        }
        if shard.stats.dirty != run.dirty0 {
            shard
                .scripts
                .busy_of(shard.id)
                .wrote
                .store(true, Ordering::Relaxed);
        }
        Ok((out, proto))
    })
}

/// The key MOVE and COPY … DB write in another database than the script's.
fn other_db_key<'a>(l: Lookup, argv: &[&'a [u8]]) -> Option<(usize, &'a [u8])> {
    let db_arg = |a: &[u8]| {
        crate::util::parse_i64(a)
            .filter(|n| (0..crate::limits::DATABASES as i64).contains(n))
            .map(|n| n as usize)
    };
    match l.spec.name {
        "move" => Some((db_arg(argv.get(2)?)?, argv[1])),
        "copy" => {
            let i = argv.iter().position(|a| a.eq_ignore_ascii_case(b"db"))?;
            Some((db_arg(argv.get(i + 1)?)?, argv.get(2)?))
        }
        _ => None,
    }
}

/// The client's protocol and whether the script chose RESP3 (booleans), for `ffi::emit`.
fn emit_protocol() -> (Proto, bool) {
    RUNNING.with(|r| {
        r.try_borrow()
            .ok()
            .and_then(|r| r.as_ref().map(|run| (run.client_proto, run.resp3)))
            .unwrap_or((Proto::Resp2, false))
    })
}

/// `redis.setresp`: the protocol the script's commands answer in.
fn set_resp3(on: bool) {
    RUNNING.with(|r| {
        if let Some(run) = r.borrow_mut().as_mut() {
            run.resp3 = on;
        }
    });
}

/// Commands a script may not run here, with the error it gets.
fn allowed_here(shard: &Shard, l: Lookup, argv: &[&[u8]]) -> std::result::Result<(), String> {
    use crate::cmd::Route;
    let name = l.spec.name;
    if matches!(name, "xread" | "xreadgroup")
        && argv.iter().any(|a| a.eq_ignore_ascii_case(b"block"))
    {
        return Err(format!(
            "ERR {name} command is not allowed with BLOCK option from scripts"
        ));
    }
    match l.spec.route {
        Route::Server(crate::cmd::ConnCmd::Select) => Ok(()),
        Route::Server(_) | Route::Keys(_) if l.spec.run.is_none() => {
            Err("ERR This command is not supported in scripts by shardis yet".into())
        }
        Route::AllShards(_) | Route::ScanCursor => {
            if shard.nshards == 1 && shard.script_keys.is_none() {
                Ok(())
            } else {
                Err(format!(
                    "ERR '{name}' needs the whole keyspace, which a script cannot use while \
                     the server runs more than one shard"
                ))
            }
        }
        _ => Ok(()),
    }
}

/// Cluster mode: a command of a script must have its keys in one slot this node serves, and
/// (unless the script allows cross-slot keys) in the slot of the script's other keys, as
/// Redis's `scriptVerifyClusterState` checks.
fn cluster_check(
    run: &mut Running,
    keys: &[(usize, &[u8])],
    write: bool,
) -> std::result::Result<(), String> {
    const NON_LOCAL: &str = "ERR Script attempted to access a non local key in a cluster node";
    let mut slot = None;
    for (_, key) in keys {
        let s = crate::slot::key_slot(key).0;
        match slot {
            None => slot = Some(s),
            Some(first) if first != s => return Err(NON_LOCAL.into()),
            Some(_) => {}
        }
    }
    let Some(slot) = slot else {
        return Ok(());
    };
    if let Some(check) = crate::keyspace::CLUSTER_SLOT_CHECK.get() {
        if let Some(e) = check(slot, write) {
            return Err(format!("ERR {e}"));
        }
    }
    if !run.cross_slot {
        match run.slot {
            None => run.slot = Some(slot),
            Some(s) if s != slot => {
                return Err(
                    "ERR Script attempted to access keys that do not hash to the same slot".into(),
                )
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// Whether the running script may touch `key` of database `db` on this shard.
fn may_touch(shard: &Shard, db: usize, key: &[u8]) -> bool {
    match &shard.script_keys {
        Some(set) => set.contains(&(db, Key::from(key))),
        None => shard.nshards <= 1 || crate::slot::shard_of(key, shard.nshards) == shard.id,
    }
}

fn select_db(arg: &[u8]) -> Result<usize> {
    let n = crate::util::parse_i64(arg).ok_or(Error::InvalidDbIndex)?;
    if n < 0 || n >= crate::limits::DATABASES as i64 {
        return Err(Error::DbIndexOutOfRange);
    }
    Ok(n as usize)
}

fn reply_table(lua: &Lua, field: &str, args: &MultiValue) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    let text = match args.front() {
        Some(Value::String(s)) if args.len() == 1 => Some(s.clone()),
        _ => None,
    };
    match text {
        Some(s) => {
            if field == "err" {
                let b = s.as_bytes();
                // A leading '-' is dropped and an error code added when there is none.
                let msg: Vec<u8> = match b.strip_prefix(b"-") {
                    Some(rest) => rest.to_vec(),
                    None => b.to_vec(),
                };
                let coded = has_code(&msg);
                let mut full = if coded { Vec::new() } else { b"ERR ".to_vec() };
                full.extend_from_slice(&msg);
                t.raw_set("err", lua.create_string(&full)?)?;
            } else {
                t.raw_set(field, s)?;
            }
        }
        None => t.raw_set("err", "ERR wrong number or type of arguments")?,
    }
    Ok(t)
}

/// Whether an error message starts with what Redis takes for an error code: a first word
/// followed by a space.
fn has_code(msg: &[u8]) -> bool {
    msg.contains(&b' ')
}

fn api_error_reply(lua: &Lua, args: MultiValue) -> mlua::Result<Table> {
    reply_table(lua, "err", &args)
}

fn api_status_reply(lua: &Lua, args: MultiValue) -> mlua::Result<Table> {
    reply_table(lua, "ok", &args)
}

thread_local! {
    static RAND: std::cell::Cell<u64> = const { std::cell::Cell::new(0x2545_F491_4F6C_DD1D) };
}

pub(crate) fn next_random() -> f64 {
    RAND.with(|s| {
        let mut x = s.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.set(x);
        (x >> 11) as f64 / (1u64 << 53) as f64
    })
}

fn api_randomseed(_: &Lua, args: MultiValue) -> mlua::Result<()> {
    let seed = match args.front() {
        Some(Value::Number(n)) => *n as i64 as u64,
        Some(Value::Integer(n)) => *n as u64,
        _ => 0,
    };
    RAND.with(|s| s.set(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1));
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::shard::testing::TestShard;

    fn eval(sh: &mut TestShard, script: &str, rest: &[&str]) -> String {
        let mut argv: Vec<&[u8]> = vec![b"EVAL", script.as_bytes()];
        argv.extend(rest.iter().map(|a| a.as_bytes()));
        sh.run_args(&argv)
    }

    #[test]
    fn scripts_call_commands_and_convert_replies() {
        let mut sh = TestShard::new();
        assert_eq!(
            eval(
                &mut sh,
                "return redis.call('set', KEYS[1], ARGV[1])",
                &["1", "k", "v"]
            ),
            "+OK\r\n"
        );
        assert_eq!(
            eval(&mut sh, "return redis.call('get', KEYS[1])", &["1", "k"]),
            "$1\r\nv\r\n"
        );
        assert_eq!(
            eval(&mut sh, "return redis.call('get', 'nokey')", &["0"]),
            "$-1\r\n"
        );
        assert_eq!(
            eval(&mut sh, "return {1, 'a', false, {ok='s'}}", &["0"]),
            "*4\r\n:1\r\n$1\r\na\r\n$-1\r\n+s\r\n"
        );
        assert_eq!(eval(&mut sh, "return 3.99", &["0"]), ":3\r\n");
        assert_eq!(
            eval(
                &mut sh,
                "redis.call('set','n',3.1) return redis.call('get','n')",
                &["0"]
            ),
            "$18\r\n3.1000000000000001\r\n"
        );
        assert_eq!(
            eval(&mut sh, "return #KEYS .. #ARGV", &["2", "a", "b", "c"]),
            "$2\r\n21\r\n"
        );
    }

    #[test]
    fn errors_name_the_script_and_line() {
        let mut sh = TestShard::new();
        let r = eval(&mut sh, "return redis.call('nosuch')", &["0"]);
        assert!(
            r.starts_with("-ERR Unknown Redis command called from script script: "),
            "{r}"
        );
        assert!(r.ends_with(", on @user_script:1.\r\n"), "{r}");
        let r = eval(&mut sh, "\n\nerror('boom')", &["0"]);
        assert!(r.starts_with("-ERR user_script:3: boom script: "), "{r}");
        assert!(r.ends_with("on @user_script:3.\r\n"), "{r}");
        let r = eval(&mut sh, "return x", &["0"]);
        assert!(r.starts_with("-ERR user_script:1: Script attempted to access nonexistent global variable 'x' script:"), "{r}");
        let r = eval(&mut sh, "x = 1", &["0"]);
        assert!(
            r.starts_with("-ERR user_script:1: Attempt to modify a readonly table script:"),
            "{r}"
        );
        assert_eq!(
            eval(&mut sh, "return redis.pcall('incr', 'a', 'b')", &["0"]),
            "-ERR Wrong number of args calling Redis command from script\r\n"
        );
        assert_eq!(
            eval(
                &mut sh,
                "local ok, e = pcall(redis.call, 'nosuch') return e",
                &["0"]
            ),
            "$44\r\nERR Unknown Redis command called from script\r\n"
        );
        assert_eq!(
            eval(&mut sh, "return redis.error_reply('x')", &["0"]),
            "-ERR x\r\n"
        );
        assert_eq!(
            eval(&mut sh, "return redis.error_reply('MY x')", &["0"]),
            "-MY x\r\n"
        );
        let r = eval(&mut sh, "retur", &["0"]);
        assert_eq!(r, "-ERR Error compiling script (new function): user_script:1: '=' expected near '<eof>'\r\n");
        assert_eq!(
            eval(&mut sh, "return 1", &["-1"]),
            "-ERR Number of keys can't be negative\r\n"
        );
        assert_eq!(
            eval(&mut sh, "return 1", &["2", "a"]),
            "-ERR Number of keys can't be greater than number of args\r\n"
        );
    }

    #[test]
    fn the_sandbox_hides_the_unsafe_globals() {
        let mut sh = TestShard::new();
        for g in [
            "os", "io", "debug", "print", "loadfile", "dofile", "require", "setfenv", "getfenv",
        ] {
            let r = eval(&mut sh, &format!("return type({g})"), &["0"]);
            assert!(r.contains("nonexistent global variable"), "{g}: {r}");
        }
        let r = eval(&mut sh, "return loadstring('return type(os)')()", &["0"]);
        assert!(r.contains("nonexistent global variable 'os'"), "{r}");
        let r = eval(&mut sh, "string.x = 1", &["0"]);
        assert!(r.contains("Attempt to modify a readonly table"), "{r}");
        let r = eval(&mut sh, "rawset(_G, 'y', 1)", &["0"]);
        assert!(
            r.starts_with("-ERR Attempt to modify a readonly table script"),
            "{r}"
        );
        assert_eq!(
            eval(&mut sh, "return type(redis.call)", &["0"]),
            "$8\r\nfunction\r\n"
        );
    }

    #[test]
    fn evalsha_and_script_load_share_the_cache() {
        let mut sh = TestShard::new();
        let r = sh.run("SCRIPT LOAD retur");
        assert!(r.starts_with("-ERR Error compiling script"), "{r}");
        let r = sh.run_args(&[&b"SCRIPT"[..], b"LOAD", b"return 'hi'"]);
        let sha = r.lines().nth(1).unwrap_or("").to_string();
        assert_eq!(
            sha,
            super::sha1_hex(b"return 'hi'")
                .iter()
                .map(|&b| b as char)
                .collect::<String>()
        );
        assert_eq!(sh.run(&format!("EVALSHA {sha} 0")), "$2\r\nhi\r\n");
        assert_eq!(
            sh.run(&format!("EVALSHA {} 0", sha.to_uppercase())),
            "$2\r\nhi\r\n"
        );
        assert_eq!(
            sh.run(&format!("SCRIPT EXISTS {sha} ffff")),
            "*2\r\n:1\r\n:0\r\n"
        );
        assert_eq!(sh.run("SCRIPT FLUSH"), "+OK\r\n");
        assert_eq!(
            sh.run(&format!("EVALSHA {sha} 0")),
            "-NOSCRIPT No matching script. Please use EVAL.\r\n"
        );
    }

    #[test]
    fn read_only_scripts_cannot_write() {
        let mut sh = TestShard::new();
        let r = sh.run_args(&[&b"EVAL_RO"[..], b"return redis.call('set','a','b')", b"0"]);
        assert!(
            r.starts_with("-ERR Write commands are not allowed from read-only scripts. script:"),
            "{r}"
        );
        let r = eval(
            &mut sh,
            "#!lua flags=no-writes\nreturn redis.call('set','a','b')",
            &["0"],
        );
        assert!(
            r.starts_with("-ERR Write commands are not allowed from read-only scripts."),
            "{r}"
        );
        let r = eval(&mut sh, "#!lua flags=bogus\nreturn 1", &["0"]);
        assert_eq!(r, "-ERR Unexpected flag in script shebang: bogus\r\n");
        assert_eq!(eval(&mut sh, "#!lua\nreturn 1", &["0"]), ":1\r\n");
    }

    #[test]
    fn results_convert_as_redis_converts_them() {
        let mut sh = TestShard::new();
        let r = eval(
            &mut sh,
            "return {1, 'a', {ok='s'}, {err='e'}, nil, 4}",
            &["0"],
        );
        assert_eq!(r, "*4\r\n:1\r\n$1\r\na\r\n+s\r\n-e\r\n");
        let r = eval(&mut sh, "local t = {} t[1] = t return t", &["0"]);
        assert!(
            r.ends_with("-ERR reached lua stack limit\r\n"),
            "a cycle ends in an error"
        );
        assert_eq!(
            eval(&mut sh, "return {big_number='12'}", &["0"]),
            "$2\r\n12\r\n"
        );
        assert_eq!(
            eval(&mut sh, "return {set={a=true}}", &["0"]),
            "*1\r\n$1\r\na\r\n"
        );
        assert_eq!(
            eval(
                &mut sh,
                "return {verbatim_string={format='txt',string='hi'}}",
                &["0"]
            ),
            "$2\r\nhi\r\n"
        );
        assert_eq!(eval(&mut sh, "return {ok='a\\r\\nb'}", &["0"]), "+a  b\r\n");
        // Sub-tables shared many times describe a reply larger than any memory: it is cut.
        let r = sh.run_bytes(&[
            &b"EVAL"[..],
            b"local t = {1} for i = 1, 40 do t = {t, t} end return t",
            b"0",
        ]);
        assert!(r.len() < 64 << 20, "bounded: {} bytes", r.len());
        assert!(r.ends_with(b"$-1\r\n"), "the rest are nulls");
    }

    #[test]
    fn big_results_and_many_values() {
        let mut sh = TestShard::new();
        // pcall returning many values (Lua's API checks, if compiled in, abort on this).
        let r = eval(&mut sh, "local t = {} for i = 1, 200 do t[i] = i end local r = {pcall(function() return unpack(t) end)} return #r", &["0"]);
        assert_eq!(r, ":201\r\n");
        // Replies with many strings, both ways.
        let mut argv: Vec<Vec<u8>> = vec![b"RPUSH".to_vec(), b"big".to_vec()];
        argv.extend((0..20000).map(|i| format!("e{i}").into_bytes()));
        let refs: Vec<&[u8]> = argv.iter().map(|a| a.as_slice()).collect();
        assert_eq!(sh.run_args(&refs), ":20000\r\n");
        let r = eval(&mut sh, "return redis.call('lrange', 'big', 0, -1)", &["0"]);
        assert!(r.starts_with("*20000\r\n$2\r\ne0\r\n"), "{}", &r[..20]);
        let r = eval(
            &mut sh,
            "local t = {} for i = 1, 30000 do t['k' .. i] = i end return {map = t}",
            &["0"],
        );
        assert!(r.starts_with("*60000\r\n"), "{}", &r[..20]);
    }

    #[test]
    fn resp3_conversions_follow_setresp() {
        let mut sh = TestShard::new();
        sh.run("HSET h a 1");
        assert_eq!(
            eval(
                &mut sh,
                "redis.setresp(3) return redis.call('hgetall','h')",
                &["0"]
            ),
            "*2\r\n$1\r\na\r\n$1\r\n1\r\n"
        );
        assert_eq!(
            eval(
                &mut sh,
                "redis.setresp(3) return redis.call('hgetall','h').map.a",
                &["0"]
            ),
            "$1\r\n1\r\n"
        );
        assert_eq!(
            eval(
                &mut sh,
                "redis.setresp(3) return redis.call('get','nokey') == nil",
                &["0"]
            ),
            ":1\r\n"
        );
        assert_eq!(
            eval(&mut sh, "return {double=3.5}", &["0"]),
            "$3\r\n3.5\r\n"
        );
    }
}
