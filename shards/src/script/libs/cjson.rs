//! `cjson`: lua-cjson 2.1.0 as Redis 7.0 ships it (`cjson.encode`, `cjson.decode`,
//! the configuration functions, `cjson.new`, `cjson.null`, `_NAME`, `_VERSION`).
//!
//! Matching Redis:
//! * Numbers are written with `%.14g` (configurable precision 1..14) through the C
//!   library, so `1e+300`, `-0`, `1.2345678901235e+17` come out as in Redis; NaN and
//!   infinities are refused by default ("Cannot serialise number: must not be NaN or
//!   Inf"), or written as `nan`/`inf` or `null` when configured.
//! * Strings escape `"`, `\`, `/` (as `\/`), control characters and DEL; other bytes,
//!   including invalid UTF-8, pass through.
//! * A table is an array when all its keys are positive integers; it is "excessively
//!   sparse" (an error, or an object when conversion is on) when its largest index is
//!   both above `ratio * count` and above `safe` (defaults 2 and 10). Objects follow
//!   Lua's table iteration order, numeric keys become strings.
//! * Nesting deeper than `encode_max_depth`/`decode_max_depth` (default 1000) fails
//!   with Redis's messages; parse errors read "Expected X but found Y at character N".
//! * Decoding uses the C library's `strtod`, so hexadecimal numbers, `inf`, `nan` and
//!   leading `+` or zeros are accepted while `decode_invalid_numbers` is on (the
//!   default), and input ends at the first NUL byte, as with the C string it is.
//!
//! Differences, all beyond what Redis can do in practice: nesting is capped at 1000
//! levels even when a script raises the configured maximum (Redis would instead run
//! into Lua's C stack limit somewhere past 2600 levels, with the same message), and an
//! encoding larger than 512 MiB (e.g. a 2^31-element sparse array with the sparse
//! check disabled, or a table referencing the same subtables many times) fails with "Cannot serialise: output larger than 512 MB" where
//! Redis would try to allocate it.

use std::cell::RefCell;
use std::rc::Rc;

use mlua::{Function, Lua, MultiValue, Table, Value};

use super::{
    arg_error, arg_type_name, double_to_i32, exact, fail, fmt_g, num, to_bytes, type_name, wrap,
    Args, LibResult, Shape,
};

/// The hard nesting limit (see the module docs).
const HARD_MAX_DEPTH: i64 = 1000;
/// The largest encoding produced (Redis's default proto-max-bulk-len).
const MAX_OUTPUT: usize = 512 * 1024 * 1024;

/// One `cjson` instance's settings (each `cjson.new()` has its own).
struct Config {
    sparse_convert: i32,
    sparse_ratio: i32,
    sparse_safe: i32,
    encode_max_depth: i32,
    decode_max_depth: i32,
    /// 0: refuse NaN/Inf, 1: write them, 2: write `null`.
    encode_invalid_numbers: i32,
    decode_invalid_numbers: i32,
    number_precision: i32,
    keep_buffer: i32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            sparse_convert: 0,
            sparse_ratio: 2,
            sparse_safe: 10,
            encode_max_depth: 1000,
            decode_max_depth: 1000,
            encode_invalid_numbers: 0,
            decode_invalid_numbers: 1,
            number_precision: 14,
            keep_buffer: 1,
        }
    }
}

type Cfg = Rc<RefCell<Config>>;

/// Builds a `cjson` table with fresh settings (the global one, and `cjson.new()`).
pub(crate) fn open(lua: &Lua) -> mlua::Result<Table> {
    let cfg: Cfg = Rc::new(RefCell::new(Config::default()));
    let t = lua.create_table()?;
    let c = cfg.clone();
    let next: Function = lua.globals().get("next")?;
    t.set(
        "encode",
        wrap(lua, Shape::Packed, move |lua, a| {
            encode(lua, &c, &next, &Args::packed(a)?)
        })?,
    )?;
    let c = cfg.clone();
    t.set(
        "decode",
        wrap(lua, Shape::Plain, move |lua, a| {
            decode(lua, &c, &Args::plain(a))
        })?,
    )?;
    type Setter = fn(&Lua, &Cfg, &Args) -> LibResult<MultiValue>;
    let setters: [(&str, Setter); 7] = [
        ("encode_sparse_array", cfg_sparse_array),
        ("encode_max_depth", |lua, c, a| {
            int_setting(
                lua,
                a,
                "encode_max_depth",
                &mut c.borrow_mut().encode_max_depth,
                1,
            )
        }),
        ("decode_max_depth", |lua, c, a| {
            int_setting(
                lua,
                a,
                "decode_max_depth",
                &mut c.borrow_mut().decode_max_depth,
                1,
            )
        }),
        ("encode_number_precision", |lua, c, a| {
            check_arg_count(a, 1, "encode_number_precision")?;
            let mut cfg = c.borrow_mut();
            let v = int_option(
                lua,
                a,
                1,
                "encode_number_precision",
                &mut cfg.number_precision,
                1,
                14,
            )?;
            Ok(MultiValue::from_vec(vec![v]))
        }),
        ("encode_keep_buffer", |lua, c, a| {
            check_arg_count(a, 1, "encode_keep_buffer")?;
            let v = enum_option(
                lua,
                a,
                1,
                "encode_keep_buffer",
                &mut c.borrow_mut().keep_buffer,
                &[b"off", b"on"],
            )?;
            Ok(MultiValue::from_vec(vec![v]))
        }),
        ("encode_invalid_numbers", |lua, c, a| {
            check_arg_count(a, 1, "encode_invalid_numbers")?;
            let opts: &[&[u8]] = &[b"off", b"on", b"null"];
            let v = enum_option(
                lua,
                a,
                1,
                "encode_invalid_numbers",
                &mut c.borrow_mut().encode_invalid_numbers,
                opts,
            )?;
            Ok(MultiValue::from_vec(vec![v]))
        }),
        ("decode_invalid_numbers", |lua, c, a| {
            check_arg_count(a, 1, "decode_invalid_numbers")?;
            let v = enum_option(
                lua,
                a,
                1,
                "decode_invalid_numbers",
                &mut c.borrow_mut().decode_invalid_numbers,
                &[b"off", b"on"],
            )?;
            Ok(MultiValue::from_vec(vec![v]))
        }),
    ];
    for (name, f) in setters {
        let c = cfg.clone();
        t.set(
            name,
            wrap(lua, Shape::Plain, move |lua, a| f(lua, &c, &Args::plain(a)))?,
        )?;
    }
    t.set("new", lua.create_function(|lua, ()| open(lua))?)?;
    t.set("null", Value::NULL)?;
    t.set("_NAME", "cjson")?;
    t.set("_VERSION", "2.1.0")?;
    Ok(t)
}

// ===== Configuration =====

fn check_arg_count(a: &Args, max: usize, fname: &str) -> LibResult<()> {
    if a.len() > max {
        return arg_error(max + 1, fname, "found too many arguments");
    }
    Ok(())
}

fn is_nil(a: &Args, i: usize) -> LibResult<bool> {
    Ok(matches!(a.get(i)?, None | Some(Value::Nil)))
}

/// An integer setting: set when the argument is given, the current value returned.
fn int_option(
    lua: &Lua,
    a: &Args,
    i: usize,
    fname: &str,
    setting: &mut i32,
    min: i32,
    max: i32,
) -> LibResult<Value> {
    if !is_nil(a, i)? {
        // luaL_checkinteger, then stored in a C int.
        let v = a.check_integer(lua, i, fname)? as i32;
        if !(min <= v && v <= max) {
            // lua-cjson always names argument 1 here.
            return arg_error(
                1,
                fname,
                format!("expected integer between {min} and {max}"),
            );
        }
        *setting = v;
    }
    Ok(Value::Number(*setting as f64))
}

fn int_setting(
    lua: &Lua,
    a: &Args,
    fname: &str,
    setting: &mut i32,
    min: i32,
) -> LibResult<MultiValue> {
    check_arg_count(a, 1, fname)?;
    let v = int_option(lua, a, 1, fname, setting, min, i32::MAX)?;
    Ok(MultiValue::from_vec(vec![v]))
}

/// An enumerated setting: a boolean (false = 0, true = 1) or one of `options`.
fn enum_option(
    lua: &Lua,
    a: &Args,
    i: usize,
    fname: &str,
    setting: &mut i32,
    options: &[&[u8]],
) -> LibResult<Value> {
    match a.get(i)? {
        None | Some(Value::Nil) => {}
        Some(Value::Boolean(b)) => *setting = b as i32,
        Some(v) => {
            let Some(s) = to_bytes(&v) else {
                return arg_error(i, fname, format!("string expected, got {}", type_name(&v)));
            };
            match options.iter().position(|o| *o == s.as_slice()) {
                Some(p) => *setting = p as i32,
                None => {
                    let mut m = b"invalid option '".to_vec();
                    m.extend_from_slice(&s);
                    m.push(b'\'');
                    return arg_error(i, fname, m);
                }
            }
        }
    }
    if *setting == 0 || *setting == 1 {
        Ok(Value::Boolean(*setting == 1))
    } else {
        Ok(Value::String(
            lua.create_string(options[*setting as usize])?,
        ))
    }
}

fn cfg_sparse_array(lua: &Lua, c: &Cfg, a: &Args) -> LibResult<MultiValue> {
    check_arg_count(a, 3, "encode_sparse_array")?;
    let mut cfg = c.borrow_mut();
    let convert = enum_option(
        lua,
        a,
        1,
        "encode_sparse_array",
        &mut cfg.sparse_convert,
        &[b"off", b"on"],
    )?;
    let ratio = int_option(
        lua,
        a,
        2,
        "encode_sparse_array",
        &mut cfg.sparse_ratio,
        0,
        i32::MAX,
    )?;
    let safe = int_option(
        lua,
        a,
        3,
        "encode_sparse_array",
        &mut cfg.sparse_safe,
        0,
        i32::MAX,
    )?;
    Ok(MultiValue::from_vec(vec![convert, ratio, safe]))
}

// ===== Encoding =====

struct Encoder<'a> {
    cfg: &'a Config,
    /// Lua's `next`, as the library found it when it was opened.
    next: &'a Function,
    out: Vec<u8>,
}

fn escape(c: u8) -> Option<&'static [u8]> {
    Some(match c {
        b'"' => b"\\\"",
        b'\\' => b"\\\\",
        b'/' => b"\\/",
        b'\x08' => b"\\b",
        b'\t' => b"\\t",
        b'\n' => b"\\n",
        b'\x0c' => b"\\f",
        b'\r' => b"\\r",
        _ => return None,
    })
}

impl Encoder<'_> {
    fn check_size(&self) -> LibResult<()> {
        if self.out.len() > MAX_OUTPUT {
            return fail("Cannot serialise: output larger than 512 MB");
        }
        Ok(())
    }

    fn string(&mut self, s: &[u8]) -> LibResult<()> {
        self.out.reserve(s.len() + 2);
        self.out.push(b'"');
        for &c in s {
            if let Some(e) = escape(c) {
                self.out.extend_from_slice(e);
            } else if c < 0x20 || c == 0x7f {
                self.out.extend_from_slice(format!("\\u{c:04x}").as_bytes());
            } else {
                self.out.push(c);
            }
        }
        self.out.push(b'"');
        self.check_size()
    }

    fn number(&mut self, n: f64) -> LibResult<()> {
        match self.cfg.encode_invalid_numbers {
            0 if !n.is_finite() => return fail("Cannot serialise number: must not be NaN or Inf"),
            1 if n.is_nan() => {
                // Some C libraries print "-nan"; lua-cjson always writes "nan".
                self.out.extend_from_slice(b"nan");
                return Ok(());
            }
            2 if !n.is_finite() => {
                self.out.extend_from_slice(b"null");
                return Ok(());
            }
            _ => {}
        }
        self.out
            .extend_from_slice(fmt_g(n, self.cfg.number_precision).as_bytes());
        Ok(())
    }

    /// Writes a value that is not a table.
    fn scalar(&mut self, v: Value) -> LibResult<()> {
        match v {
            Value::String(s) => self.string(&s.as_bytes()),
            Value::Integer(_) | Value::Number(_) => self.number(num(&v).unwrap_or(0.0)),
            Value::Boolean(b) => {
                self.out
                    .extend_from_slice(if b { b"true" } else { b"false" });
                Ok(())
            }
            Value::Nil => {
                self.out.extend_from_slice(b"null");
                Ok(())
            }
            Value::LightUserData(p) if p.0.is_null() => {
                self.out.extend_from_slice(b"null");
                Ok(())
            }
            other => fail(format!(
                "Cannot serialise {}: type not supported",
                type_name(&other)
            )),
        }
    }

    /// lua-cjson's array test: the array length, 0 for an empty or non-array table
    /// (encoded as an object), or the sparse-array error.
    fn array_length(&self, t: &Table) -> LibResult<i32> {
        let mut max: i32 = 0;
        let mut items: i32 = 0;
        for pair in t.pairs::<Value, Value>() {
            let (k, _) = pair?;
            let k = match num(&k) {
                Some(k) if k != 0.0 && k.floor() == k && k >= 1.0 => k,
                _ => return Ok(-1),
            };
            // The C code keeps the maximum in an int (x86 cast semantics included).
            if k > max as f64 {
                max = double_to_i32(k);
            }
            items = items.wrapping_add(1);
        }
        let cfg = self.cfg;
        if cfg.sparse_ratio > 0
            && max > items.wrapping_mul(cfg.sparse_ratio)
            && max > cfg.sparse_safe
        {
            if cfg.sparse_convert == 0 {
                return fail("Cannot serialise table: excessively sparse array");
            }
            return Ok(-1);
        }
        Ok(max)
    }

    /// Writes `root`. Iterative, with an explicit stack of open tables, so deep
    /// nesting costs heap rather than native stack; objects are walked with Lua's
    /// `next`, which is what lua-cjson's `lua_next` loop does.
    fn encode(&mut self, root: Value) -> LibResult<()> {
        enum Open {
            Array { t: Table, next: i32, len: i32 },
            Object { t: Table, key: Value, first: bool },
        }
        let mut stack: Vec<Open> = Vec::new();
        let mut pending = Some(root);
        loop {
            match pending.take() {
                Some(Value::Table(t)) => {
                    let depth = stack.len() as i64 + 1;
                    if depth > self.cfg.encode_max_depth as i64 || depth > HARD_MAX_DEPTH {
                        return fail(format!("Cannot serialise, excessive nesting ({depth})"));
                    }
                    let len = self.array_length(&t)?;
                    if len > 0 {
                        self.out.push(b'[');
                        stack.push(Open::Array { t, next: 1, len });
                    } else {
                        self.out.push(b'{');
                        stack.push(Open::Object {
                            t,
                            key: Value::Nil,
                            first: true,
                        });
                    }
                }
                Some(v) => self.scalar(v)?,
                None => {}
            }
            // Shared subtables can make the output exponential in the input.
            self.check_size()?;
            let Some(open) = stack.last_mut() else {
                return Ok(());
            };
            match open {
                Open::Array { t, next, len } => {
                    if *next > *len {
                        self.out.push(b']');
                        stack.pop();
                        continue;
                    }
                    if *next > 1 {
                        self.out.push(b',');
                    }
                    let v: Value = t.raw_get(*next)?;
                    pending = Some(exact(t, Value::Number(*next as f64), v));
                    *next += 1;
                }
                Open::Object { t, key, first } => {
                    let (k, v): (Value, Value) = self.next.call((t.clone(), key.clone()))?;
                    if k == Value::Nil {
                        self.out.push(b'}');
                        stack.pop();
                        continue;
                    }
                    if !*first {
                        self.out.push(b',');
                    }
                    *first = false;
                    match &k {
                        Value::Integer(_) | Value::Number(_) => {
                            self.out.push(b'"');
                            self.number(num(&k).unwrap_or(0.0))?;
                            self.out.extend_from_slice(b"\":");
                        }
                        Value::String(s) => {
                            self.string(&s.as_bytes())?;
                            self.out.push(b':');
                        }
                        other => {
                            return fail(format!(
                                "Cannot serialise {}: table key must be a number or string",
                                type_name(other)
                            ))
                        }
                    }
                    pending = Some(exact(t, k.clone(), v));
                    *key = k;
                }
            }
        }
    }
}

fn encode(lua: &Lua, cfg: &Cfg, next: &Function, a: &Args) -> LibResult<MultiValue> {
    if a.len() != 1 {
        return arg_error(1, "encode", "expected 1 argument");
    }
    let cfg = cfg.borrow();
    let mut enc = Encoder {
        cfg: &cfg,
        next,
        out: Vec::new(),
    };
    let v = a.get(1)?.unwrap_or(Value::Nil);
    enc.encode(v)?;
    Ok(MultiValue::from_vec(vec![Value::String(
        lua.create_string(enc.out)?,
    )]))
}

// ===== Decoding =====

#[derive(Clone, Copy, PartialEq, Eq)]
enum Tok {
    ObjBegin,
    ObjEnd,
    ArrBegin,
    ArrEnd,
    Str,
    Number,
    Boolean,
    Null,
    Colon,
    Comma,
    End,
    /// A lexical error, with its description.
    Error(&'static str),
}

impl Tok {
    fn name(self) -> &'static str {
        match self {
            Tok::ObjBegin => "T_OBJ_BEGIN",
            Tok::ObjEnd => "T_OBJ_END",
            Tok::ArrBegin => "T_ARR_BEGIN",
            Tok::ArrEnd => "T_ARR_END",
            Tok::Str => "T_STRING",
            Tok::Number => "T_NUMBER",
            Tok::Boolean => "T_BOOLEAN",
            Tok::Null => "T_NULL",
            Tok::Colon => "T_COLON",
            Tok::Comma => "T_COMMA",
            Tok::End => "T_END",
            Tok::Error(e) => e,
        }
    }
}

struct Token {
    kind: Tok,
    /// 0-based offset, shown 1-based in errors.
    index: usize,
    number: f64,
    boolean: bool,
}

struct Parser<'a> {
    lua: &'a Lua,
    /// The input followed by a NUL, as the C parser sees it.
    data: Vec<u8>,
    pos: usize,
    /// The last string token's bytes.
    text: Vec<u8>,
    depth: i64,
    max_depth: i64,
    invalid_numbers: bool,
}

fn hex4(s: &[u8]) -> Option<u32> {
    let mut v = 0u32;
    for i in 0..4 {
        let d = (*s.get(i)? as char).to_digit(16)?;
        v = (v << 4) | d;
    }
    Some(v)
}

fn push_utf8(out: &mut Vec<u8>, cp: u32) {
    if cp <= 0x7f {
        out.push(cp as u8);
    } else if cp <= 0x7ff {
        out.extend_from_slice(&[(cp >> 6) as u8 | 0xc0, (cp & 0x3f) as u8 | 0x80]);
    } else if cp <= 0xffff {
        out.extend_from_slice(&[
            (cp >> 12) as u8 | 0xe0,
            ((cp >> 6) & 0x3f) as u8 | 0x80,
            (cp & 0x3f) as u8 | 0x80,
        ]);
    } else {
        out.extend_from_slice(&[
            (cp >> 18) as u8 | 0xf0,
            ((cp >> 12) & 0x3f) as u8 | 0x80,
            ((cp >> 6) & 0x3f) as u8 | 0x80,
            (cp & 0x3f) as u8 | 0x80,
        ]);
    }
}

impl Parser<'_> {
    fn at(&self, i: usize) -> u8 {
        self.data.get(i).copied().unwrap_or(0)
    }

    fn error_token(&self, msg: &'static str) -> Token {
        Token {
            kind: Tok::Error(msg),
            index: self.pos,
            number: 0.0,
            boolean: false,
        }
    }

    /// A `\uXXXX` escape (possibly a surrogate pair) at `pos`, appended as UTF-8.
    fn unicode_escape(&mut self) -> Option<()> {
        let mut cp = hex4(&self.data[self.pos + 2..])?;
        let mut len = 6;
        if cp & 0xf800 == 0xd800 {
            if cp & 0x400 != 0 {
                return None;
            }
            if self.at(self.pos + 6) != b'\\' || self.at(self.pos + 7) != b'u' {
                return None;
            }
            let low = hex4(&self.data[self.pos + 8..])?;
            if low & 0xfc00 != 0xdc00 {
                return None;
            }
            cp = (((cp & 0x3ff) << 10) | (low & 0x3ff)) + 0x10000;
            len = 12;
        }
        push_utf8(&mut self.text, cp);
        self.pos += len;
        Some(())
    }

    fn string_token(&mut self, index: usize) -> Token {
        self.pos += 1;
        self.text.clear();
        loop {
            let c = self.at(self.pos);
            match c {
                b'"' => break,
                0 => return self.error_token("unexpected end of string"),
                b'\\' => {
                    let out = match self.at(self.pos + 1) {
                        b'"' => b'"',
                        b'\\' => b'\\',
                        b'/' => b'/',
                        b'b' => 0x08,
                        b't' => b'\t',
                        b'n' => b'\n',
                        b'f' => 0x0c,
                        b'r' => b'\r',
                        b'u' => {
                            if self.unicode_escape().is_none() {
                                return self.error_token("invalid unicode escape code");
                            }
                            continue;
                        }
                        _ => return self.error_token("invalid escape code"),
                    };
                    self.text.push(out);
                    self.pos += 2;
                }
                _ => {
                    self.text.push(c);
                    self.pos += 1;
                }
            }
        }
        self.pos += 1;
        Token {
            kind: Tok::Str,
            index,
            number: 0.0,
            boolean: false,
        }
    }

    /// lua-cjson's test for number forms strict JSON forbids (`+1`, `0x1`, `01`,
    /// `inf`, `nan`).
    fn is_invalid_number(&self) -> bool {
        let mut p = self.pos;
        if self.at(p) == b'+' {
            return true;
        }
        if self.at(p) == b'-' {
            p += 1;
        }
        if self.at(p) == b'0' {
            let c2 = self.at(p + 1);
            return c2 | 0x20 == b'x' || c2.is_ascii_digit();
        } else if self.at(p) <= b'9' {
            return false;
        }
        let word = |w: &[u8]| (0..3).all(|i| self.at(p + i).to_ascii_lowercase() == w[i]);
        word(b"inf") || word(b"nan")
    }

    fn number_token(&mut self, index: usize) -> Token {
        let mut end: *mut libc::c_char = std::ptr::null_mut();
        // SAFETY: `data` ends with a NUL byte (see `decode`) and is not modified while
        // strtod runs; strtod reads up to that NUL at most and sets `end` within it.
        let (n, used) = unsafe {
            let start = self.data.as_ptr().add(self.pos) as *const libc::c_char;
            let n = libc::strtod(start, &mut end);
            (n, (end as usize).saturating_sub(start as usize))
        };
        if used == 0 {
            return self.error_token("invalid number");
        }
        self.pos += used;
        Token {
            kind: Tok::Number,
            index,
            number: n,
            boolean: false,
        }
    }

    fn next_token(&mut self) -> Token {
        while matches!(self.at(self.pos), b' ' | b'\t' | b'\n' | b'\r') {
            self.pos += 1;
        }
        let index = self.pos;
        let simple = |kind| Token {
            kind,
            index,
            number: 0.0,
            boolean: false,
        };
        let c = self.at(self.pos);
        let single = match c {
            b'{' => Some(Tok::ObjBegin),
            b'}' => Some(Tok::ObjEnd),
            b'[' => Some(Tok::ArrBegin),
            b']' => Some(Tok::ArrEnd),
            b',' => Some(Tok::Comma),
            b':' => Some(Tok::Colon),
            _ => None,
        };
        if let Some(kind) = single {
            self.pos += 1;
            return simple(kind);
        }
        match c {
            0 => simple(Tok::End),
            b'"' => self.string_token(index),
            b'-' | b'0'..=b'9' => {
                if !self.invalid_numbers && self.is_invalid_number() {
                    return self.error_token("invalid number");
                }
                self.number_token(index)
            }
            b'f' | b'i' | b'I' | b'n' | b'N' | b't' | b'+' => {
                let rest = &self.data[self.pos..];
                if rest.starts_with(b"true") {
                    self.pos += 4;
                    Token {
                        kind: Tok::Boolean,
                        index,
                        number: 0.0,
                        boolean: true,
                    }
                } else if rest.starts_with(b"false") {
                    self.pos += 5;
                    Token {
                        kind: Tok::Boolean,
                        index,
                        number: 0.0,
                        boolean: false,
                    }
                } else if rest.starts_with(b"null") {
                    self.pos += 4;
                    simple(Tok::Null)
                } else if self.invalid_numbers && self.is_invalid_number() {
                    self.number_token(index)
                } else {
                    self.error_token("invalid token")
                }
            }
            _ => self.error_token("invalid token"),
        }
    }

    fn parse_error<T>(&self, expected: &str, tok: &Token) -> LibResult<T> {
        fail(format!(
            "Expected {expected} but found {} at character {}",
            tok.kind.name(),
            tok.index + 1
        ))
    }

    fn descend(&mut self) -> LibResult<()> {
        self.depth += 1;
        if self.depth > self.max_depth || self.depth > HARD_MAX_DEPTH {
            return fail(format!(
                "Found too many nested data structures ({}) at character {}",
                self.depth, self.pos
            ));
        }
        Ok(())
    }

    /// Reads `"key" :` at `tok` (the token after `{` or `,`), leaving the key in
    /// `text`.
    fn object_key(&mut self, tok: &Token) -> LibResult<mlua::String> {
        if tok.kind != Tok::Str {
            return self.parse_error("object key string", tok);
        }
        let key = self.lua.create_string(&self.text)?;
        let colon = self.next_token();
        if colon.kind != Tok::Colon {
            return self.parse_error("colon", &colon);
        }
        Ok(key)
    }

    /// Parses one JSON value starting at `tok`. Iterative, with an explicit stack of
    /// open containers, so deep nesting costs heap rather than native stack; the
    /// tokens are read and checked in the same order as lua-cjson's recursive parser,
    /// so errors are reported identically.
    fn parse(&mut self, first: Token) -> LibResult<Value> {
        enum Open {
            Array(Table, i64),
            Object(Table, mlua::String),
        }
        let mut stack: Vec<Open> = Vec::new();
        let mut tok = first;
        loop {
            // Start a value at `tok`: a scalar completes at once, a container opens.
            let mut done = match tok.kind {
                Tok::Str => Value::String(self.lua.create_string(&self.text)?),
                Tok::Number => Value::Number(tok.number),
                Tok::Boolean => Value::Boolean(tok.boolean),
                Tok::Null => Value::NULL,
                Tok::ObjBegin => {
                    self.descend()?;
                    let t = self.lua.create_table()?;
                    let next = self.next_token();
                    if next.kind == Tok::ObjEnd {
                        self.depth -= 1;
                        Value::Table(t)
                    } else {
                        let key = self.object_key(&next)?;
                        stack.push(Open::Object(t, key));
                        tok = self.next_token();
                        continue;
                    }
                }
                Tok::ArrBegin => {
                    self.descend()?;
                    let t = self.lua.create_table()?;
                    let next = self.next_token();
                    if next.kind == Tok::ArrEnd {
                        self.depth -= 1;
                        Value::Table(t)
                    } else {
                        stack.push(Open::Array(t, 1));
                        tok = next;
                        continue;
                    }
                }
                _ => return self.parse_error("value", &tok),
            };
            // Store the completed value in its container; close containers that end.
            loop {
                let Some(open) = stack.last_mut() else {
                    return Ok(done);
                };
                let after = match open {
                    Open::Array(t, i) => {
                        t.raw_set(*i, done)?;
                        *i += 1;
                        let after = self.next_token();
                        if after.kind != Tok::ArrEnd && after.kind != Tok::Comma {
                            return self.parse_error("comma or array end", &after);
                        }
                        after
                    }
                    Open::Object(t, key) => {
                        t.raw_set(key.clone(), done)?;
                        let after = self.next_token();
                        if after.kind != Tok::ObjEnd && after.kind != Tok::Comma {
                            return self.parse_error("comma or object end", &after);
                        }
                        after
                    }
                };
                if after.kind == Tok::Comma {
                    let next = self.next_token();
                    if let Some(Open::Object(_, key)) = stack.last_mut() {
                        *key = self.object_key(&next)?;
                        tok = self.next_token();
                    } else {
                        tok = next;
                    }
                    break;
                }
                self.depth -= 1;
                done = match stack.pop() {
                    Some(Open::Array(t, _)) | Some(Open::Object(t, _)) => Value::Table(t),
                    None => Value::Nil,
                };
            }
        }
    }
}

fn decode(lua: &Lua, cfg: &Cfg, a: &Args) -> LibResult<MultiValue> {
    if a.len() != 1 {
        return arg_error(1, "decode", "expected 1 argument");
    }
    let v = a.get(1)?;
    let Some(mut data) = v.as_ref().and_then(to_bytes) else {
        return arg_error(
            1,
            "decode",
            format!("string expected, got {}", arg_type_name(v.as_ref())),
        );
    };
    if data.len() >= 2 && (data[0] == 0 || data[1] == 0) {
        return fail("JSON parser does not support UTF-16 or UTF-32");
    }
    data.push(0);
    let (max_depth, invalid_numbers) = {
        let c = cfg.borrow();
        (c.decode_max_depth as i64, c.decode_invalid_numbers != 0)
    };
    let mut p = Parser {
        lua,
        data,
        pos: 0,
        text: Vec::new(),
        depth: 0,
        max_depth,
        invalid_numbers,
    };
    let tok = p.next_token();
    let v = p.parse(tok)?;
    let tok = p.next_token();
    if tok.kind != Tok::End {
        return p.parse_error("the end", &tok);
    }
    Ok(MultiValue::from_vec(vec![v]))
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{err, eval, eval_str, lua};

    // Expected values from redis-server 7.0.15.
    #[test]
    fn encode_values() {
        let lua = lua();
        let cases: &[(&str, &str)] = &[
            ("{1,2,{a=3}}", r#"[1,2,{"a":3}]"#),
            ("{[1]=1,[3]=3}", "[1,null,3]"),
            ("{1,nil,3}", "[1,null,3]"),
            ("{[2^40]=1}", r#"{"1099511627776":1}"#),
            ("{[0.5]=1}", r#"{"0.5":1}"#),
            ("{[1.5]=1}", r#"{"1.5":1}"#),
            ("{}", "{}"),
            ("{a={}}", r#"{"a":{}}"#),
            ("{['a']=0.1}", r#"{"a":0.1}"#),
            ("0.1", "0.1"),
            ("1e300", "1e+300"),
            ("123456789012345678", "1.2345678901235e+17"),
            ("1e-20", "1e-20"),
            ("-1.5e-7", "-1.5e-07"),
            ("0.9999999999999999", "1"),
            ("cjson.null", "null"),
            ("nil", "null"),
            ("true", "true"),
            ("false", "false"),
        ];
        for (src, want) in cases {
            assert_eq!(
                eval_str(&lua, &format!("return cjson.encode({src})")),
                *want,
                "{src}"
            );
        }
        assert_eq!(eval_str(&lua, "local z = 0 return cjson.encode(-z)"), "-0");
        assert_eq!(
            eval(&lua, r#"return cjson.encode('a/b"c\\d\1\127\255')"#),
            b"\"a\\/b\\\"c\\\\d\\u0001\\u007f\xff\"".to_vec()
        );
        assert_eq!(
            eval_str(&lua, r#"return cjson.encode('\b\f\n\r\t\31')"#),
            r#""\b\f\n\r\t\u001f""#
        );
    }

    #[test]
    fn encode_errors() {
        let lua = lua();
        let cases: &[(&str, &str)] = &[
            (
                "cjson.encode({[1]=1,[20]=3})",
                "Cannot serialise table: excessively sparse array",
            ),
            (
                "cjson.encode(1/0)",
                "Cannot serialise number: must not be NaN or Inf",
            ),
            (
                "cjson.encode(0/0)",
                "Cannot serialise number: must not be NaN or Inf",
            ),
            (
                "cjson.encode(print)",
                "Cannot serialise function: type not supported",
            ),
            (
                "cjson.encode({[true]=1})",
                "Cannot serialise boolean: table key must be a number or string",
            ),
            (
                "cjson.encode()",
                "bad argument #1 to 'encode' (expected 1 argument)",
            ),
            (
                "cjson.encode(1,2)",
                "bad argument #1 to 'encode' (expected 1 argument)",
            ),
            (
                "local t={} t[1]=t cjson.encode(t)",
                "Cannot serialise, excessive nesting (1001)",
            ),
            (
                "local t={} local c=t for i=1,1000 do c[1]={} c=c[1] end cjson.encode(t)",
                "Cannot serialise, excessive nesting (1001)",
            ),
        ];
        for (src, want) in cases {
            assert_eq!(err(&lua, src), *want, "{src}");
        }
    }

    #[test]
    fn decode_values() {
        let lua = lua();
        let cases: &[(&str, &str)] = &[
            (r#"cjson.decode('{"a":[1,2,3]}').a[3]"#, "3"),
            (
                r#"cjson.decode('"\\u00e9\\ud83d\\ude00"')"#,
                "\u{e9}\u{1f600}",
            ),
            ("cjson.decode('0x10')", "16"),
            ("cjson.decode('-Infinity') < 0", "true"),
            ("tostring(cjson.decode('nan'))", "nan"),
            ("cjson.decode('+5')", "5"),
            ("cjson.decode('007')", "7"),
            ("cjson.decode('1e400') == 1/0", "true"),
            ("cjson.decode('[1]\\0garbage')[1]", "1"),
            ("cjson.decode(123)", "123"),
            ("type(cjson.decode('null'))", "userdata"),
            ("cjson.decode('null') == cjson.null", "true"),
            (r#"cjson.decode('{"a":1,"a":2}').a"#, "2"),
            ("cjson.decode(' [ 1 , 2 ] ')[2]", "2"),
            (r#"cjson.decode('"\\u0000x"') == '\0x'"#, "true"),
            (r#"cjson.decode('{"a":true,"b":false}').b"#, "false"),
            ("cjson.decode('[true,false,null]')[3] == cjson.null", "true"),
            (r#"cjson.decode('"\\/"')"#, "/"),
            ("cjson.decode('\"x\\ty\"')", "x\ty"),
            ("cjson.decode('0.1')", "0.10000000000000001"),
            ("tostring(cjson.decode('1e-20'))", "1e-20"),
            (
                "#cjson.encode(cjson.decode(string.rep('[',1000) .. string.rep(']',1000)))",
                "2000",
            ),
        ];
        for (src, want) in cases {
            assert_eq!(eval_str(&lua, &format!("return {src}")), *want, "{src}");
        }
    }

    #[test]
    fn decode_errors() {
        let lua = lua();
        let cases: &[(&str, &str)] = &[
            ("[", "Expected value but found T_END at character 2"),
            (
                r#""\\ud83d""#,
                "Expected value but found invalid unicode escape code at character 2",
            ),
            ("[1,]", "Expected value but found T_ARR_END at character 4"),
            (
                "{1:2}",
                "Expected object key string but found T_NUMBER at character 2",
            ),
            (
                r#"{"a" 2}"#,
                "Expected colon but found T_NUMBER at character 6",
            ),
            (
                r#"{"a":2"#,
                "Expected comma or object end but found T_END at character 7",
            ),
            (
                "[1 2]",
                "Expected comma or array end but found T_NUMBER at character 4",
            ),
            ("", "Expected value but found T_END at character 1"),
            ("  ", "Expected value but found T_END at character 3"),
            (
                "1 x",
                "Expected the end but found invalid token at character 3",
            ),
            (
                r#""abc"#,
                "Expected value but found unexpected end of string at character 5",
            ),
            (
                r#""\\q""#,
                "Expected value but found invalid escape code at character 2",
            ),
            (
                "nul",
                "Expected value but found invalid token at character 1",
            ),
            (
                "-",
                "Expected value but found invalid number at character 1",
            ),
            ("a\\0b", "JSON parser does not support UTF-16 or UTF-32"),
            (
                r#""\\uD800\\u0041""#,
                "Expected value but found invalid unicode escape code at character 2",
            ),
            (
                r#""\\uDC00""#,
                "Expected value but found invalid unicode escape code at character 2",
            ),
            (
                r#""\\u12""#,
                "Expected value but found invalid unicode escape code at character 2",
            ),
            (
                "tru",
                "Expected value but found invalid token at character 1",
            ),
            (
                "1.5e",
                "Expected the end but found invalid token at character 4",
            ),
            (
                ".5",
                "Expected value but found invalid token at character 1",
            ),
        ];
        for (json, want) in cases {
            let src = format!("cjson.decode('{json}')");
            assert_eq!(err(&lua, &src), *want, "{src}");
        }
        let deep = "cjson.decode(string.rep('[',1001) .. string.rep(']',1001))";
        assert_eq!(
            err(&lua, deep),
            "Found too many nested data structures (1001) at character 1001"
        );
        assert_eq!(
            err(&lua, "cjson.decode()"),
            "bad argument #1 to 'decode' (expected 1 argument)"
        );
        assert_eq!(
            err(&lua, "cjson.decode({})"),
            "bad argument #1 to 'decode' (string expected, got table)"
        );
    }

    #[test]
    fn configuration() {
        let lua = lua();
        let values: &[(&str, &str)] = &[
            ("cjson._NAME .. ' ' .. cjson._VERSION", "cjson 2.1.0"),
            ("cjson.encode_max_depth()", "1000"),
            ("cjson.decode_max_depth()", "1000"),
            ("cjson.encode_number_precision()", "14"),
            ("cjson.encode_invalid_numbers()", "false"),
            ("cjson.decode_invalid_numbers()", "true"),
            ("cjson.encode_keep_buffer()", "true"),
            ("select(2, cjson.encode_sparse_array())", "2"),
            ("cjson.encode_keep_buffer('on')", "true"),
            ("cjson.encode_keep_buffer(false)", "false"),
            ("cjson.encode_invalid_numbers('null')", "null"),
            ("cjson.decode_invalid_numbers(false)", "false"),
        ];
        for (src, want) in values {
            assert_eq!(eval_str(&lua, &format!("return {src}")), *want, "{src}");
        }
        let errors: &[(&str, &str)] = &[
            (
                "cjson.encode_max_depth(0)",
                "bad argument #1 to 'encode_max_depth' (expected integer between 1 and 2147483647)",
            ),
            (
                "cjson.encode_max_depth('x')",
                "bad argument #1 to 'encode_max_depth' (number expected, got string)",
            ),
            (
                "cjson.encode_max_depth(1,2)",
                "bad argument #2 to 'encode_max_depth' (found too many arguments)",
            ),
            (
                "cjson.encode_number_precision(15)",
                "bad argument #1 to 'encode_number_precision' (expected integer between 1 and 14)",
            ),
            (
                "cjson.encode_invalid_numbers('bad')",
                "bad argument #1 to 'encode_invalid_numbers' (invalid option 'bad')",
            ),
            (
                "cjson.encode_sparse_array(1)",
                "bad argument #1 to 'encode_sparse_array' (invalid option '1')",
            ),
            (
                "cjson.encode_sparse_array(true, -1)",
                "bad argument #1 to 'encode_sparse_array' (expected integer between 0 and 2147483647)",
            ),
            // Only decode_invalid_numbers(false) was set above.
            ("cjson.decode('0x10')", "Expected value but found invalid number at character 1"),
            ("cjson.decode('nan')", "Expected value but found invalid token at character 1"),
        ];
        for (src, want) in errors {
            assert_eq!(err(&lua, src), *want, "{src}");
        }
    }

    #[test]
    fn configured_encoding() {
        let lua = lua();
        assert_eq!(
            eval_str(
                &lua,
                "cjson.encode_number_precision(3) return cjson.encode(3.14159)"
            ),
            "3.14"
        );
        assert_eq!(
            eval_str(
                &lua,
                "cjson.encode_invalid_numbers(true) \
                 return cjson.encode(1/0) .. cjson.encode(-1/0) .. cjson.encode(0/0)"
            ),
            "inf-infnan"
        );
        assert_eq!(
            eval_str(
                &lua,
                "cjson.encode_invalid_numbers('null') return cjson.encode(1/0)"
            ),
            "null"
        );
        assert_eq!(
            eval_str(
                &lua,
                "local a, b, c = cjson.encode_sparse_array(true, 3, 5) \
                 return tostring(a) .. b .. c"
            ),
            "true35"
        );
        assert_eq!(
            eval_str(&lua, "return cjson.encode({[1]=1,[20]=3})"),
            r#"{"1":1,"20":3}"#
        );
        // cjson.new() starts from the defaults, independently.
        assert_eq!(
            eval_str(
                &lua,
                "local c = cjson.new() return c.encode(3.14159) .. c.encode_number_precision()"
            ),
            "3.1415914"
        );
    }
}
