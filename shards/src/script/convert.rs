//! Conversions between RESP and Lua values, as Redis 7.0 makes them.
//!
//! **A command's reply to a script** (`redis.call`): the command runs with the protocol the
//! script chose (`redis.setresp`, RESP2 by default) and its reply is read back:
//!
//! | RESP | Lua |
//! |---|---|
//! | integer | number |
//! | bulk string | string; the null bulk string is `false` |
//! | array | array table; the null array is `false` |
//! | simple string | `{ok = s}` |
//! | error | `{err = s}` (raised by `redis.call`) |
//! | RESP3 null | `nil` |
//! | RESP3 map / set | `{map = {k = v}}` / `{set = {k = true}}` |
//! | RESP3 double | `{double = n}` |
//! | RESP3 boolean | `true` / `false` |
//! | RESP3 big number | `{big_number = s}` |
//! | RESP3 verbatim string | `{verbatim_string = {format = f, string = s}}` |
//!
//! **A script's result to the client**: strings are bulk strings, numbers integers (truncated as
//! C's `(long long)` cast, which gives `i64::MIN` for what does not fit), `true` is `:1` and
//! `false` the null reply (or, after `redis.setresp(3)`, RESP3 booleans), tables with an `err`,
//! `ok`, `double`, `big_number`, `map`, `set` or `verbatim_string` field the matching reply, any
//! other table an array of its elements up to the first `nil`, everything else the null reply.

use crate::resp::{Proto, Reply};
use mlua::{Table, Value};

/// Deeper nesting than this is answered with Redis's stack-limit error (a table that contains
/// itself would recurse forever otherwise).
const DEPTH_MAX: usize = 128;

/// At most this many values are converted (tables sharing sub-tables can describe replies
/// exponentially larger than themselves); the rest are nulls.
pub const VALUES_MAX: usize = 64 << 20;

/// A Lua number as Redis turns it into an integer reply (C's `(long long)` cast on x86-64:
/// NaN and anything out of range give `i64::MIN`).
pub fn lua_number_to_i64(d: f64) -> i64 {
    const LIMIT: f64 = 9_223_372_036_854_775_808.0; // 2^63
    if d.is_nan() || !(-LIMIT..LIMIT).contains(&d) {
        i64::MIN
    } else {
        d as i64
    }
}

/// Writes a script's result as the reply. `resp3_types`: the script called `redis.setresp(3)`,
/// so booleans are RESP3 booleans rather than `:1` / null.
pub fn lua_to_resp(v: &Value, out: &mut Reply<'_>, resp3_types: bool, depth: usize) {
    let mut budget = VALUES_MAX;
    convert(v, out, resp3_types, depth, &mut budget);
}

fn convert(v: &Value, out: &mut Reply<'_>, resp3_types: bool, depth: usize, budget: &mut usize) {
    if *budget == 0 {
        out.null();
        return;
    }
    *budget -= 1;
    match v {
        Value::String(s) => out.bulk(&s.as_bytes()),
        Value::Boolean(b) => {
            if resp3_types {
                out.boolean(*b);
            } else if *b {
                out.int(1);
            } else {
                out.null();
            }
        }
        Value::Integer(n) => out.int(*n),
        Value::Number(d) => out.int(lua_number_to_i64(*d)),
        Value::Table(_) if depth >= DEPTH_MAX => out.error("ERR reached lua stack limit"),
        Value::Table(t) => table_to_resp(t, out, resp3_types, depth, budget),
        _ => out.null(),
    }
}

fn table_to_resp(
    t: &Table,
    out: &mut Reply<'_>,
    resp3_types: bool,
    depth: usize,
    budget: &mut usize,
) {
    let field = |name: &str| t.raw_get::<Value>(name).unwrap_or(Value::Nil);
    if let Value::String(e) = field("err") {
        let text = e.to_string_lossy();
        out.error(&text);
        return;
    }
    if let Value::String(s) = field("ok") {
        let text: String = s
            .to_string_lossy()
            .chars()
            .map(|c| if c == '\r' || c == '\n' { ' ' } else { c })
            .collect();
        out.simple(&text);
        return;
    }
    match field("double") {
        Value::Number(d) => return out.double(d),
        Value::Integer(n) => return out.double(n as f64),
        _ => {}
    }
    if let Value::String(s) = field("big_number") {
        let digits: String = s
            .to_string_lossy()
            .chars()
            .map(|c| if c == '\r' || c == '\n' { ' ' } else { c })
            .collect();
        out.big_number(&digits);
        return;
    }
    if let Value::Table(m) = field("map") {
        // Two passes (count, then write), converting each pair as it is read: a Lua handle
        // held per element would exhaust mlua's reference stack on big tables.
        let n = m.pairs::<Value, Value>().filter(|p| p.is_ok()).count();
        out.map(n);
        for (k, v) in m.pairs::<Value, Value>().filter_map(|p| p.ok()).take(n) {
            convert(&k, out, resp3_types, depth + 1, budget);
            convert(&v, out, resp3_types, depth + 1, budget);
        }
        return;
    }
    if let Value::Table(s) = field("set") {
        let n = s.pairs::<Value, Value>().filter(|p| p.is_ok()).count();
        out.set(n);
        for (k, _) in s.pairs::<Value, Value>().filter_map(|p| p.ok()).take(n) {
            convert(&k, out, resp3_types, depth + 1, budget);
        }
        return;
    }
    if let Value::Table(v) = field("verbatim_string") {
        let format = v.raw_get::<Value>("format").unwrap_or(Value::Nil);
        let string = v.raw_get::<Value>("string").unwrap_or(Value::Nil);
        if let (Value::String(f), Value::String(s)) = (format, string) {
            let (f, s) = (f.as_bytes(), s.as_bytes());
            if out.proto == Proto::Resp3 && f.len() == 3 {
                out.raw(format!("={}\r\n", s.len() + 4).as_bytes());
                out.raw(&f);
                out.raw(b":");
                out.raw(&s);
                out.raw(b"\r\n");
            } else {
                out.bulk(&s);
            }
            return;
        }
    }
    // The elements up to the first nil, counted first, then written one at a time.
    let element = |i: usize| match t.raw_get::<Value>(i) {
        Ok(Value::Nil) | Err(_) => None,
        Ok(v) => Some(v),
    };
    let n = (1..).take_while(|&i| element(i).is_some()).count();
    out.array(n);
    for i in 1..=n {
        let v = element(i).unwrap_or(Value::Nil);
        convert(&v, out, resp3_types, depth + 1, budget);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mlua::Lua;

    #[test]
    fn numbers_truncate_like_a_c_cast() {
        assert_eq!(lua_number_to_i64(3.99), 3);
        assert_eq!(lua_number_to_i64(-3.99), -3);
        assert_eq!(lua_number_to_i64(f64::INFINITY), i64::MIN);
        assert_eq!(lua_number_to_i64(f64::NAN), i64::MIN);
        assert_eq!(lua_number_to_i64(2f64.powi(63)), i64::MIN);
        assert_eq!(lua_number_to_i64(2f64.powi(53)), 1 << 53);
    }

    #[test]
    fn tables_become_arrays_up_to_the_first_nil() {
        let lua = Lua::new();
        let v: Value = lua
            .load("return {1, 'a', {ok='s'}, {err='e'}, nil, 4}")
            .eval()
            .unwrap();
        let mut out = Vec::new();
        lua_to_resp(&v, &mut Reply::new(&mut out, Proto::Resp2), false, 0);
        assert_eq!(out, b"*4\r\n:1\r\n$1\r\na\r\n+s\r\n-e\r\n");
        let v: Value = lua
            .load("local t = {} for i = 1, 50000 do t[i] = 'x' .. i end return t")
            .eval()
            .unwrap();
        let mut out = Vec::new();
        lua_to_resp(&v, &mut Reply::new(&mut out, Proto::Resp2), false, 0);
        assert!(
            out.starts_with(b"*50000\r\n$2\r\nx1\r\n"),
            "big arrays convert"
        );
        let v: Value = lua.load("local t = {} t[1] = t return t").eval().unwrap();
        let mut out = Vec::new();
        lua_to_resp(&v, &mut Reply::new(&mut out, Proto::Resp2), false, 0);
        assert!(
            out.ends_with(b"-ERR reached lua stack limit\r\n"),
            "a cycle ends in an error"
        );
    }
}
