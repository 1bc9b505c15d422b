//! The `redis.*` functions that can fail, as Lua C functions.
//!
//! They are C functions, not Rust closures or Lua wrappers, for two reasons Redis scripts can
//! tell: the error they raise is a plain Lua value (a `{err = …}` table for a command's error,
//! a string otherwise; an mlua callback would raise a userdata), and a C function called in
//! tail position (`return redis.call(…)`) keeps the script's frame, so the error handler still
//! finds the script line.
//!
//! Each function does its work in a Rust helper that has returned (dropping everything it
//! owned) before `lua_error` unwinds the Lua stack with `longjmp`.

use super::{run_command, set_resp3, sha1_hex};
use mlua::ffi::{self, lua_State};
use std::os::raw::c_int;

/// What a helper leaves on the Lua stack: a value to return, or an error to raise.
enum Outcome {
    Return(c_int),
    Raise,
}

unsafe fn finish(l: *mut lua_State, o: Outcome) -> c_int {
    match o {
        Outcome::Return(n) => n,
        Outcome::Raise => ffi::lua_error(l),
    }
}

unsafe fn push_bytes(l: *mut lua_State, b: &[u8]) {
    ffi::lua_pushlstring(l, b.as_ptr().cast(), b.len());
}

/// Pushes `{err = text}`.
unsafe fn push_err_table(l: *mut lua_State, text: &str) {
    ffi::lua_createtable(l, 0, 1);
    push_bytes(l, b"err");
    push_bytes(l, text.as_bytes());
    ffi::lua_rawset(l, -3);
}

/// The arguments as Redis passes them to a command: strings as they are, numbers as `%.17g`
/// (written back into their stack slots as strings, so every argument is borrowed from the Lua
/// stack, where it stays for the whole call).
unsafe fn args<'a>(l: *mut lua_State) -> Option<Vec<&'a [u8]>> {
    let n = ffi::lua_gettop(l);
    for i in 1..=n {
        match ffi::lua_type(l, i) {
            ffi::LUA_TSTRING => {}
            ffi::LUA_TNUMBER => {
                let text = crate::util::fmt_g17(ffi::lua_tonumber(l, i));
                push_bytes(l, text.as_bytes());
                ffi::lua_replace(l, i);
            }
            _ => return None,
        }
    }
    Some((1..=n).map(|i| string_at(l, i)).collect())
}

unsafe fn call_helper(l: *mut lua_State, raise: bool) -> Outcome {
    let Some(argv) = args(l) else {
        push_err_table(
            l,
            "ERR Lua redis lib command arguments must be strings or integers",
        );
        return if raise {
            Outcome::Raise
        } else {
            Outcome::Return(1)
        };
    };
    if argv.is_empty() {
        push_err_table(
            l,
            "ERR Please specify at least one argument for this redis lib call",
        );
        return if raise {
            Outcome::Raise
        } else {
            Outcome::Return(1)
        };
    }
    match run_command(&argv) {
        Ok((reply, _)) => {
            let mut pos = 0;
            let failed = reply.first() == Some(&b'-');
            push_resp(l, &reply, &mut pos, 0);
            if failed && raise {
                Outcome::Raise
            } else {
                Outcome::Return(1)
            }
        }
        Err(text) => {
            push_err_table(l, &text);
            if raise {
                Outcome::Raise
            } else {
                Outcome::Return(1)
            }
        }
    }
}

/// `redis.call`.
pub unsafe extern "C-unwind" fn redis_call(l: *mut lua_State) -> c_int {
    let o = call_helper(l, true);
    finish(l, o)
}

/// `redis.pcall`.
pub unsafe extern "C-unwind" fn redis_pcall(l: *mut lua_State) -> c_int {
    let o = call_helper(l, false);
    finish(l, o)
}

/// Pushes an error message string to be raised.
unsafe fn raise_str(l: *mut lua_State, msg: &str) -> Outcome {
    push_bytes(l, msg.as_bytes());
    Outcome::Raise
}

unsafe fn number_arg(l: *mut lua_State, i: c_int) -> Option<f64> {
    (ffi::lua_type(l, i) == ffi::LUA_TNUMBER).then(|| ffi::lua_tonumber(l, i))
}

unsafe fn sha1hex_helper(l: *mut lua_State) -> Outcome {
    if ffi::lua_gettop(l) != 1 {
        return raise_str(l, "wrong number of arguments");
    }
    let mut len = 0usize;
    let p = ffi::lua_tolstring(l, 1, &mut len);
    let bytes = if p.is_null() {
        &[][..]
    } else {
        std::slice::from_raw_parts(p.cast::<u8>(), len)
    };
    let sha = sha1_hex(bytes);
    push_bytes(l, &sha);
    Outcome::Return(1)
}

/// `redis.sha1hex`.
pub unsafe extern "C-unwind" fn sha1hex(l: *mut lua_State) -> c_int {
    let o = sha1hex_helper(l);
    finish(l, o)
}

unsafe fn log_helper(l: *mut lua_State) -> Outcome {
    if ffi::lua_gettop(l) < 2 {
        return raise_str(l, "redis.log() requires two arguments or more.");
    }
    let Some(level) = number_arg(l, 1) else {
        return raise_str(l, "First argument must be a number (log level).");
    };
    if !(0.0..=3.0).contains(&level) {
        return raise_str(l, "Invalid debug level.");
    }
    // The engine keeps no log; the message is dropped, as a level filter would drop it.
    Outcome::Return(0)
}

/// `redis.log`.
pub unsafe extern "C-unwind" fn log(l: *mut lua_State) -> c_int {
    let o = log_helper(l);
    finish(l, o)
}

unsafe fn setresp_helper(l: *mut lua_State) -> Outcome {
    if ffi::lua_gettop(l) != 1 {
        return raise_str(l, "redis.setresp() requires one argument.");
    }
    match number_arg(l, 1).map(|n| n as i64) {
        Some(2) => set_resp3(false),
        Some(3) => set_resp3(true),
        _ => return raise_str(l, "RESP version must be 2 or 3."),
    }
    Outcome::Return(0)
}

/// `redis.setresp`.
pub unsafe extern "C-unwind" fn setresp(l: *mut lua_State) -> c_int {
    let o = setresp_helper(l);
    finish(l, o)
}

unsafe fn set_repl_helper(l: *mut lua_State) -> Outcome {
    if ffi::lua_gettop(l) != 1 {
        return raise_str(l, "redis.set_repl() requires one argument.");
    }
    match number_arg(l, 1).map(|n| n as i64) {
        // Effects always go to the AOF and replicas whole: the flags are accepted, not used.
        Some(0..=3) => Outcome::Return(0),
        _ => raise_str(
            l,
            "Invalid replication flags. Use REPL_AOF, REPL_REPLICA, REPL_ALL or REPL_NONE.",
        ),
    }
}

/// `redis.set_repl`.
pub unsafe extern "C-unwind" fn set_repl(l: *mut lua_State) -> c_int {
    let o = set_repl_helper(l);
    finish(l, o)
}

/// Deeper replies are cut (Lua's C stack would overflow first).
const DEPTH_MAX: usize = 1000;

/// Pushes one RESP reply (as the engine writes it) from `buf` at `*pos`, converted as the
/// table in `super::convert` says.
unsafe fn push_resp(l: *mut lua_State, buf: &[u8], pos: &mut usize, depth: usize) {
    if ffi::lua_checkstack(l, 4) == 0 || depth > DEPTH_MAX {
        ffi::lua_pushnil(l);
        return;
    }
    let Some(&kind) = buf.get(*pos) else {
        ffi::lua_pushnil(l);
        return;
    };
    let line = read_line(buf, pos);
    let text = &line[1..];
    let num = || crate::util::parse_i64(text).unwrap_or(0);
    match kind {
        b'+' => tagged(l, b"ok", |l| push_bytes(l, text)),
        b'-' => tagged(l, b"err", |l| push_bytes(l, text)),
        b':' => ffi::lua_pushnumber(l, num() as f64),
        b'$' => match usize::try_from(num()) {
            Ok(n) => push_bytes(l, bulk(buf, pos, n)),
            Err(_) => ffi::lua_pushboolean(l, 0),
        },
        b'*' | b'>' => match usize::try_from(num()) {
            Ok(n) => {
                ffi::lua_createtable(l, n.min(1 << 16) as c_int, 0);
                for i in 1..=n {
                    push_resp(l, buf, pos, depth + 1);
                    ffi::lua_rawseti(l, -2, i as ffi::lua_Integer);
                }
            }
            Err(_) => ffi::lua_pushboolean(l, 0),
        },
        b'_' => ffi::lua_pushnil(l),
        b'#' => ffi::lua_pushboolean(l, (text == b"t") as c_int),
        b',' => {
            let d = crate::util::parse_f64_lenient(text).unwrap_or(0.0);
            tagged(l, b"double", |l| ffi::lua_pushnumber(l, d));
        }
        b'(' => tagged(l, b"big_number", |l| push_bytes(l, text)),
        b'%' | b'~' => {
            let n = num().max(0);
            let field: &[u8] = if kind == b'%' { b"map" } else { b"set" };
            tagged(l, field, |l| {
                ffi::lua_createtable(l, 0, n.min(1 << 16) as c_int);
                for _ in 0..n {
                    push_resp(l, buf, pos, depth + 1);
                    if kind == b'%' {
                        push_resp(l, buf, pos, depth + 1);
                    } else {
                        ffi::lua_pushboolean(l, 1);
                    }
                    if ffi::lua_type(l, -2) == ffi::LUA_TNIL {
                        ffi::lua_pop(l, 2);
                    } else {
                        ffi::lua_rawset(l, -3);
                    }
                }
            });
        }
        b'=' => {
            let n = usize::try_from(num()).unwrap_or(0);
            let s = bulk(buf, pos, n);
            let (format, string) = if s.len() >= 4 && s[3] == b':' {
                (&s[..3], &s[4..])
            } else {
                (&b"txt"[..], s)
            };
            tagged(l, b"verbatim_string", |l| {
                ffi::lua_createtable(l, 0, 2);
                push_bytes(l, b"format");
                push_bytes(l, format);
                ffi::lua_rawset(l, -3);
                push_bytes(l, b"string");
                push_bytes(l, string);
                ffi::lua_rawset(l, -3);
            });
        }
        b'|' => {
            // Attributes are skipped: the value follows them.
            for _ in 0..2 * num().max(0) {
                push_resp(l, buf, pos, depth + 1);
                ffi::lua_pop(l, 1);
            }
            push_resp(l, buf, pos, depth + 1);
        }
        _ => ffi::lua_pushnil(l),
    }
}

/// Pushes `{field = <what push_value pushes>}`.
unsafe fn tagged(l: *mut lua_State, field: &[u8], push_value: impl FnOnce(*mut lua_State)) {
    ffi::lua_createtable(l, 0, 1);
    push_bytes(l, field);
    push_value(l);
    ffi::lua_rawset(l, -3);
}

/// The line at `*pos` without its CRLF; `*pos` moves past it.
fn read_line<'a>(buf: &'a [u8], pos: &mut usize) -> &'a [u8] {
    let start = *pos;
    let end = buf[start..]
        .windows(2)
        .position(|w| w == b"\r\n")
        .map_or(buf.len(), |i| start + i);
    *pos = (end + 2).min(buf.len());
    &buf[start..end]
}

/// `n` bytes of a bulk payload at `*pos`, and its CRLF.
fn bulk<'a>(buf: &'a [u8], pos: &mut usize, n: usize) -> &'a [u8] {
    let start = (*pos).min(buf.len());
    let end = start.saturating_add(n).min(buf.len());
    *pos = (end + 2).min(buf.len());
    &buf[start..end]
}

/// The count hook on every thread a script runs on (see `super::hook_check`). Once it raises,
/// it is re-armed to fire at every instruction, so a script that catches the error with
/// `pcall` is stopped again right after.
unsafe extern "C-unwind" fn count_hook(l: *mut lua_State, _ar: *mut ffi::lua_Debug) {
    let Some(msg) = super::hook_check() else {
        return;
    };
    ffi::lua_sethook(l, Some(count_hook), ffi::LUA_MASKCOUNT, 1);
    push_bytes(l, msg.as_bytes());
    ffi::lua_error(l);
}

/// Installs the count hook on the running thread (called by the prelude before each run).
pub unsafe extern "C-unwind" fn hook_here(l: *mut lua_State) -> c_int {
    ffi::lua_sethook(
        l,
        Some(count_hook),
        ffi::LUA_MASKCOUNT,
        super::HOOK_EVERY as c_int,
    );
    0
}

/// Installs the count hook on a coroutine a script created (argument 1).
pub unsafe extern "C-unwind" fn sethook(l: *mut lua_State) -> c_int {
    let co = ffi::lua_tothread(l, 1);
    if !co.is_null() {
        ffi::lua_sethook(
            co,
            Some(count_hook),
            ffi::LUA_MASKCOUNT,
            super::HOOK_EVERY as c_int,
        );
    }
    0
}

/// Pushes `msg` prefixed with the calling script's position, to be raised (as `luaL_error`).
unsafe fn raise_where(l: *mut lua_State, msg: &str) -> Outcome {
    ffi::luaL_where(l, 1);
    push_bytes(l, msg.as_bytes());
    ffi::lua_concat(l, 2);
    Outcome::Raise
}

unsafe fn random_helper(l: *mut lua_State) -> Outcome {
    let n = ffi::lua_gettop(l);
    let arg = |i: c_int| -> Result<f64, String> {
        if ffi::lua_type(l, i) == ffi::LUA_TNUMBER {
            Ok(ffi::lua_tonumber(l, i).floor())
        } else {
            let kind = std::ffi::CStr::from_ptr(ffi::lua_typename(l, ffi::lua_type(l, i)))
                .to_string_lossy()
                .into_owned();
            Err(format!(
                "bad argument #{i} to 'random' (number expected, got {kind})"
            ))
        }
    };
    let r = super::next_random();
    let v = match n {
        0 => r,
        1 => match arg(1) {
            Ok(m) if m >= 1.0 => (r * m).floor() + 1.0,
            Ok(_) => return raise_where(l, "bad argument #1 to 'random' (interval is empty)"),
            Err(e) => return raise_where(l, &e),
        },
        2 => match (arg(1), arg(2)) {
            (Ok(lo), Ok(hi)) if lo <= hi => (r * (hi - lo + 1.0)).floor() + lo,
            (Ok(_), Ok(_)) => {
                return raise_where(l, "bad argument #2 to 'random' (interval is empty)")
            }
            (Err(e), _) | (_, Err(e)) => return raise_where(l, &e),
        },
        _ => return raise_where(l, "wrong number of arguments"),
    };
    ffi::lua_pushnumber(l, v);
    Outcome::Return(1)
}

/// `math.random`: Lua 5.1's argument rules and messages, Redis's own generator.
pub unsafe extern "C-unwind" fn random(l: *mut lua_State) -> c_int {
    let o = random_helper(l);
    finish(l, o)
}

/// A script's outcome as [`emit`] leaves it for the host.
#[derive(Default)]
pub(crate) struct Emitted {
    /// The reply, encoded for the client.
    pub(crate) out: Vec<u8>,
    /// For a failed script: the error's text, and where it was raised (source, line).
    pub(crate) error: Option<(String, Option<String>, Option<i64>)>,
}

thread_local! {
    pub(crate) static EMITTED: std::cell::RefCell<Emitted> = std::cell::RefCell::new(Emitted::default());
}

/// Stack indexes of the field names the prelude passes after the result (constants there, so
/// no string is hashed per call).
const F_ERR: c_int = 3;
const F_OK: c_int = 4;
const F_DOUBLE: c_int = 5;
const F_BIG: c_int = 6;
const F_MAP: c_int = 7;
const F_SET: c_int = 8;
const F_VERBATIM: c_int = 9;
const F_FORMAT: c_int = 10;
const F_STRING: c_int = 11;

unsafe fn string_at<'a>(l: *mut lua_State, idx: c_int) -> &'a [u8] {
    let mut len = 0usize;
    let p = ffi::lua_tolstring(l, idx, &mut len);
    if p.is_null() {
        &[]
    } else {
        std::slice::from_raw_parts(p.cast::<u8>(), len)
    }
}

/// `emit(ok, value, <field names>)`: converts a script's result (or its error) straight from
/// the Lua stack, as `super::convert` describes, into [`EMITTED`].
pub unsafe extern "C-unwind" fn emit(l: *mut lua_State) -> c_int {
    let (proto, resp3) = super::emit_protocol();
    EMITTED.with(|e| {
        let Ok(mut e) = e.try_borrow_mut() else {
            return;
        };
        e.out.clear();
        e.error = None;
        if ffi::lua_toboolean(l, 1) != 0 {
            let mut budget = super::convert::VALUES_MAX;
            let mut out = crate::resp::Reply::new(&mut e.out, proto);
            emit_value(l, 2, &mut out, resp3, 0, &mut budget);
        } else {
            e.error = Some(error_parts(l));
        }
    });
    0
}

/// The handler's `{err, source, line}` table at index 2.
unsafe fn error_parts(l: *mut lua_State) -> (String, Option<String>, Option<i64>) {
    if ffi::lua_type(l, 2) != ffi::LUA_TTABLE {
        return ("ERR unknown error".into(), None, None);
    }
    ffi::lua_pushvalue(l, F_ERR);
    ffi::lua_rawget(l, 2);
    let text = match ffi::lua_type(l, -1) {
        ffi::LUA_TSTRING => String::from_utf8_lossy(string_at(l, -1)).into_owned(),
        // A number shows as it is (`error({err = 5})` answers `-5 …`).
        ffi::LUA_TNUMBER => crate::util::fmt_g17(ffi::lua_tonumber(l, -1)),
        ffi::LUA_TNIL => "ERR nil".into(),
        ffi::LUA_TBOOLEAN => format!("ERR {}", ffi::lua_toboolean(l, -1) != 0),
        _ => "ERR unknown error".into(),
    };
    ffi::lua_pop(l, 1);
    push_bytes(l, b"source");
    ffi::lua_rawget(l, 2);
    let source = (ffi::lua_type(l, -1) == ffi::LUA_TSTRING)
        .then(|| String::from_utf8_lossy(string_at(l, -1)).into_owned());
    ffi::lua_pop(l, 1);
    push_bytes(l, b"line");
    ffi::lua_rawget(l, 2);
    let line = (ffi::lua_type(l, -1) == ffi::LUA_TNUMBER).then(|| ffi::lua_tonumber(l, -1) as i64);
    ffi::lua_pop(l, 1);
    (text, source, line)
}

/// Nesting deeper than this answers Redis's stack-limit error.
const EMIT_DEPTH_MAX: usize = 128;

unsafe fn emit_value(
    l: *mut lua_State,
    idx: c_int,
    out: &mut crate::resp::Reply<'_>,
    resp3: bool,
    depth: usize,
    budget: &mut usize,
) {
    if *budget == 0 {
        out.null();
        return;
    }
    *budget -= 1;
    match ffi::lua_type(l, idx) {
        ffi::LUA_TSTRING => out.bulk(string_at(l, idx)),
        ffi::LUA_TBOOLEAN => {
            let b = ffi::lua_toboolean(l, idx) != 0;
            if resp3 {
                out.boolean(b);
            } else if b {
                out.int(1);
            } else {
                out.null();
            }
        }
        ffi::LUA_TNUMBER => out.int(super::convert::lua_number_to_i64(ffi::lua_tonumber(l, idx))),
        ffi::LUA_TTABLE if depth >= EMIT_DEPTH_MAX || ffi::lua_checkstack(l, 8) == 0 => {
            out.error("ERR reached lua stack limit")
        }
        ffi::LUA_TTABLE => emit_table(l, idx, out, resp3, depth, budget),
        _ => out.null(),
    }
}

/// Pushes `t[<field name at stack index f>]` (raw) and returns its type.
unsafe fn field(l: *mut lua_State, t: c_int, f: c_int) -> c_int {
    ffi::lua_pushvalue(l, f);
    ffi::lua_rawget(l, t);
    ffi::lua_type(l, -1)
}

unsafe fn emit_table(
    l: *mut lua_State,
    t: c_int,
    out: &mut crate::resp::Reply<'_>,
    resp3: bool,
    depth: usize,
    budget: &mut usize,
) {
    let strip = |b: &[u8]| -> String {
        String::from_utf8_lossy(b)
            .chars()
            .map(|c| if c == '\r' || c == '\n' { ' ' } else { c })
            .collect()
    };
    if field(l, t, F_ERR) == ffi::LUA_TSTRING {
        out.error(&String::from_utf8_lossy(string_at(l, -1)));
        ffi::lua_pop(l, 1);
        return;
    }
    ffi::lua_pop(l, 1);
    if field(l, t, F_OK) == ffi::LUA_TSTRING {
        out.simple(&strip(string_at(l, -1)));
        ffi::lua_pop(l, 1);
        return;
    }
    ffi::lua_pop(l, 1);
    if field(l, t, F_DOUBLE) == ffi::LUA_TNUMBER {
        out.double(ffi::lua_tonumber(l, -1));
        ffi::lua_pop(l, 1);
        return;
    }
    ffi::lua_pop(l, 1);
    if field(l, t, F_BIG) == ffi::LUA_TSTRING {
        out.big_number(&strip(string_at(l, -1)));
        ffi::lua_pop(l, 1);
        return;
    }
    ffi::lua_pop(l, 1);
    for (f, is_map) in [(F_MAP, true), (F_SET, false)] {
        if field(l, t, f) == ffi::LUA_TTABLE {
            let m = ffi::lua_gettop(l);
            let mut n = 0usize;
            ffi::lua_pushnil(l);
            while ffi::lua_next(l, m) != 0 {
                n += 1;
                ffi::lua_pop(l, 1);
            }
            if is_map {
                out.map(n);
            } else {
                out.set(n);
            }
            ffi::lua_pushnil(l);
            let mut left = n;
            while left > 0 && ffi::lua_next(l, m) != 0 {
                // Key at -2, value at -1.
                let top = ffi::lua_gettop(l);
                emit_value(l, top - 1, out, resp3, depth + 1, budget);
                if is_map {
                    emit_value(l, top, out, resp3, depth + 1, budget);
                }
                ffi::lua_pop(l, 1);
                left -= 1;
            }
            ffi::lua_settop(l, m - 1);
            return;
        }
        ffi::lua_pop(l, 1);
    }
    if field(l, t, F_VERBATIM) == ffi::LUA_TTABLE {
        let v = ffi::lua_gettop(l);
        let ft = field(l, v, F_FORMAT);
        let st = field(l, v, F_STRING);
        if ft == ffi::LUA_TSTRING && st == ffi::LUA_TSTRING {
            let (f, s) = (string_at(l, -2), string_at(l, -1));
            if out.proto == crate::resp::Proto::Resp3 && f.len() == 3 {
                out.raw(format!("={}\r\n", s.len() + 4).as_bytes());
                out.raw(f);
                out.raw(b":");
                out.raw(s);
                out.raw(b"\r\n");
            } else {
                out.bulk(s);
            }
            ffi::lua_settop(l, v - 1);
            return;
        }
        ffi::lua_settop(l, v - 1);
    } else {
        ffi::lua_pop(l, 1);
    }
    // The elements up to the first nil.
    let mut n = 0;
    loop {
        ffi::lua_rawgeti(l, t, n as ffi::lua_Integer + 1);
        let nil = ffi::lua_type(l, -1) == ffi::LUA_TNIL;
        ffi::lua_pop(l, 1);
        if nil {
            break;
        }
        n += 1;
    }
    out.array(n);
    for i in 1..=n {
        ffi::lua_rawgeti(l, t, i as ffi::lua_Integer);
        let top = ffi::lua_gettop(l);
        emit_value(l, top, out, resp3, depth + 1, budget);
        ffi::lua_pop(l, 1);
    }
}
