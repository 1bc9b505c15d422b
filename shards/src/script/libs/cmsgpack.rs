//! `cmsgpack`: lua-cmsgpack 0.4.0 as Redis 7.0 ships it (`pack`, `unpack`,
//! `unpack_one`, `unpack_limit`, and the `_NAME`, `_VERSION`, `_COPYRIGHT`,
//! `_DESCRIPTION` fields).
//!
//! Matching Redis:
//! * `pack(...)` encodes each argument and concatenates the encodings. A number that
//!   is finite and exactly a 64-bit integer uses the smallest integer encoding;
//!   anything else is a float32 when the conversion is exact (including the
//!   infinities), a float64 otherwise (NaN). Strings use fixstr, str8, str16 or
//!   str32. A table whose keys are exactly 1..n is an array (elements read with
//!   metamethods, as `lua_gettable` does), any other table a map in `next` order.
//!   Tables nested 16 deep, and values of other types, encode as nil.
//! * `unpack(s)` returns every value in `s`; `unpack_one(s [, offset])` and
//!   `unpack_limit(s, limit [, offset])` return the next offset first (-1 at the end).
//!   Unsigned 64-bit values above 2^63 come back negative, as Redis's 64-bit build
//!   pushes them through a signed integer. bin and ext types are "Bad data format".
//! * Lua 5.1's limit of 8000 stack slots for a C function is accounted for as the C
//!   code uses them, so a stream with too many values, or nesting too deep, fails with
//!   the same "stack overflow (...)" errors at the same sizes.
//!
//! Differences: nesting is capped at 1000 levels when unpacking (Redis's stack limit
//! allows up to about 4000 nested arrays), with the same error text, because each
//! open level holds mlua references, whose stack is itself limited; and `pack` fails
//! with "MessagePack pack output larger than 512 MB" beyond that size (reachable
//! only with shared subtables), where Redis would keep allocating.

use mlua::{Lua, MultiValue, Table, Value};

use super::{
    arg_error, double_to_i32, double_to_i64, exact, fail, many, num, wrap, Args, LibResult, Shape,
};

/// Tables nested deeper than this encode as nil (LUACMSGPACK_MAX_NESTING).
const MAX_NESTING: usize = 16;
/// Lua 5.1's LUAI_MAXCSTACK.
const MAX_C_STACK: i64 = 8000;
/// The hard nesting limit when decoding (see the module docs).
const HARD_MAX_DECODE_NESTING: usize = 1000;

/// The largest encoding produced (Redis's default proto-max-bulk-len).
const MAX_OUTPUT: usize = 512 * 1024 * 1024;

const TOO_MANY_VALUES: &str =
    "stack overflow (too many return values at once; use unpack_one or unpack_limit instead.)";
const ARRAY_OVERFLOW: &str = "stack overflow (in function mp_decode_to_lua_array)";

// ===== Encoding =====

fn encode_int(out: &mut Vec<u8>, n: i64) {
    if n >= 0 {
        if n <= 127 {
            out.push(n as u8);
        } else if n <= 0xff {
            out.extend_from_slice(&[0xcc, n as u8]);
        } else if n <= 0xffff {
            out.push(0xcd);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        } else if n <= 0xffff_ffff {
            out.push(0xce);
            out.extend_from_slice(&(n as u32).to_be_bytes());
        } else {
            out.push(0xcf);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    } else if n >= -32 {
        out.push(n as i8 as u8);
    } else if n >= -128 {
        out.extend_from_slice(&[0xd0, n as i8 as u8]);
    } else if n >= -32768 {
        out.push(0xd1);
        out.extend_from_slice(&(n as i16).to_be_bytes());
    } else if n >= -2_147_483_648 {
        out.push(0xd2);
        out.extend_from_slice(&(n as i32).to_be_bytes());
    } else {
        out.push(0xd3);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

fn encode_number(out: &mut Vec<u8>, n: f64) {
    if n.is_finite() && double_to_i64(n) as f64 == n {
        encode_int(out, double_to_i64(n));
    } else if (n as f32) as f64 == n {
        out.push(0xca);
        out.extend_from_slice(&(n as f32).to_be_bytes());
    } else {
        out.push(0xcb);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

fn encode_bytes(out: &mut Vec<u8>, s: &[u8]) {
    let len = s.len();
    if len < 32 {
        out.push(0xa0 | len as u8);
    } else if len <= 0xff {
        out.extend_from_slice(&[0xd9, len as u8]);
    } else if len <= 0xffff {
        out.push(0xda);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0xdb);
        out.extend_from_slice(&(len as u32).to_be_bytes());
    }
    out.extend_from_slice(s);
}

/// Array (0x90/0xdc/0xdd) or map (0x80/0xde/0xdf) header.
fn encode_header(out: &mut Vec<u8>, n: u64, fix: u8, b16: u8, b32: u8) {
    if n <= 15 {
        out.push(fix | n as u8);
    } else if n <= 0xffff {
        out.push(b16);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(b32);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    }
}

/// lua-cmsgpack's test: are the keys exactly the integers 1..n?
fn is_array(t: &Table) -> LibResult<bool> {
    let mut count: i32 = 0;
    let mut max: i32 = 0;
    for pair in t.pairs::<Value, Value>() {
        let (k, _) = pair?;
        let Some(n) = (match k {
            Value::Integer(_) | Value::Number(_) => num(&k),
            _ => None,
        }) else {
            return Ok(false);
        };
        if n <= 0.0 || double_to_i32(n) as f64 != n {
            return Ok(false);
        }
        if n > max as f64 {
            max = double_to_i32(n);
        }
        count = count.wrapping_add(1);
    }
    Ok(max == count)
}

fn encode_value(out: &mut Vec<u8>, v: Value, level: usize) -> LibResult<()> {
    // Shared subtables can make the output exponential in the input.
    if out.len() > MAX_OUTPUT {
        return fail("MessagePack pack output larger than 512 MB");
    }
    match v {
        Value::String(s) => encode_bytes(out, &s.as_bytes()),
        Value::Boolean(b) => out.push(if b { 0xc3 } else { 0xc2 }),
        Value::Integer(_) | Value::Number(_) => encode_number(out, num(&v).unwrap_or(0.0)),
        Value::Table(t) if level < MAX_NESTING => {
            if is_array(&t)? {
                let len = t.raw_len() as u64;
                encode_header(out, len, 0x90, 0xdc, 0xdd);
                for j in 1..=len {
                    let v: Value = t.get(j)?;
                    encode_value(out, exact(&t, Value::Number(j as f64), v), level + 1)?;
                }
            } else {
                let mut len = 0u64;
                for pair in t.pairs::<Value, Value>() {
                    pair?;
                    len += 1;
                }
                encode_header(out, len, 0x80, 0xde, 0xdf);
                for pair in t.pairs::<Value, Value>() {
                    let (k, v) = pair?;
                    encode_value(out, k.clone(), level + 1)?;
                    encode_value(out, exact(&t, k, v), level + 1)?;
                }
            }
        }
        _ => out.push(0xc0),
    }
    Ok(())
}

fn pack(lua: &Lua, args: &Args) -> LibResult<MultiValue> {
    if args.len() == 0 {
        return arg_error(0, "pack", "MessagePack pack needs input.");
    }
    let mut out = Vec::new();
    for i in 1..=args.len() {
        let v = args.get(i)?.unwrap_or(Value::Nil);
        encode_value(&mut out, v, 0)?;
    }
    Ok(MultiValue::from_vec(vec![Value::String(
        lua.create_string(out)?,
    )]))
}

// ===== Decoding =====

enum DecodeError {
    Eof,
    BadFormat,
    Fail(super::Fail),
}

impl From<mlua::Error> for DecodeError {
    fn from(e: mlua::Error) -> Self {
        DecodeError::Fail(super::Fail::Lua(e))
    }
}

type DResult<T> = Result<T, DecodeError>;

fn overflow<T>(msg: &str) -> DResult<T> {
    Err(DecodeError::Fail(super::Fail::Msg(msg.as_bytes().to_vec())))
}

struct Decoder<'a> {
    lua: &'a Lua,
    data: &'a [u8],
    pos: usize,
    /// Emulated height of the C function's Lua stack.
    top: i64,
}

/// What a header byte starts.
enum Item {
    Value(Value),
    Array(u64),
    Map(u64),
}

impl Decoder<'_> {
    fn left(&self) -> usize {
        self.data.len() - self.pos
    }

    fn need(&self, n: usize) -> DResult<()> {
        if self.left() < n {
            return Err(DecodeError::Eof);
        }
        Ok(())
    }

    fn be(&self, at: usize, n: usize) -> u64 {
        self.data[self.pos + at..self.pos + at + n]
            .iter()
            .fold(0u64, |acc, &b| (acc << 8) | b as u64)
    }

    fn string(&mut self, skip: usize, len: usize) -> DResult<Item> {
        self.need(skip.saturating_add(len))?;
        let s = self
            .lua
            .create_string(&self.data[self.pos + skip..self.pos + skip + len])?;
        self.pos += skip + len;
        Ok(Item::Value(Value::String(s)))
    }

    /// Reads one header (and a scalar's payload).
    fn item(&mut self) -> DResult<Item> {
        self.need(1)?;
        let c = self.data[self.pos];
        let fixed = |d: &mut Self, n: usize| -> DResult<u64> {
            d.need(1 + n)?;
            let v = d.be(1, n);
            d.pos += 1 + n;
            Ok(v)
        };
        let v = match c {
            0xcc..=0xce => {
                let n = fixed(self, 1 << (c - 0xcc))?;
                Value::Number(n as f64)
            }
            0xcf => Value::Number(fixed(self, 8)? as i64 as f64),
            0xd0 => Value::Number(fixed(self, 1)? as u8 as i8 as f64),
            0xd1 => Value::Number(fixed(self, 2)? as u16 as i16 as f64),
            0xd2 => Value::Number(fixed(self, 4)? as u32 as i32 as f64),
            0xd3 => Value::Number(fixed(self, 8)? as i64 as f64),
            0xc0 | 0xc2 | 0xc3 => {
                self.pos += 1;
                match c {
                    0xc0 => Value::Nil,
                    0xc2 => Value::Boolean(false),
                    _ => Value::Boolean(true),
                }
            }
            0xca => Value::Number(f32::from_bits(fixed(self, 4)? as u32) as f64),
            0xcb => Value::Number(f64::from_bits(fixed(self, 8)?)),
            0xd9 => {
                self.need(2)?;
                let l = self.be(1, 1) as usize;
                return self.string(2, l);
            }
            0xda => {
                self.need(3)?;
                let l = self.be(1, 2) as usize;
                return self.string(3, l);
            }
            0xdb => {
                self.need(5)?;
                let l = self.be(1, 4) as usize;
                return self.string(5, l);
            }
            0xdc => return Ok(Item::Array(fixed(self, 2)?)),
            0xdd => return Ok(Item::Array(fixed(self, 4)?)),
            0xde => return Ok(Item::Map(fixed(self, 2)?)),
            0xdf => return Ok(Item::Map(fixed(self, 4)?)),
            _ if c & 0x80 == 0 => {
                self.pos += 1;
                Value::Number(c as f64)
            }
            _ if c & 0xe0 == 0xe0 => {
                self.pos += 1;
                Value::Number(c as i8 as f64)
            }
            _ if c & 0xe0 == 0xa0 => return self.string(1, (c & 0x1f) as usize),
            _ if c & 0xf0 == 0x90 => {
                self.pos += 1;
                return Ok(Item::Array((c & 0xf) as u64));
            }
            _ if c & 0xf0 == 0x80 => {
                self.pos += 1;
                return Ok(Item::Map((c & 0xf) as u64));
            }
            _ => return Err(DecodeError::BadFormat),
        };
        Ok(Item::Value(v))
    }

    /// Decodes one top-level value. Iterative, with an explicit stack of open
    /// containers; the emulated C stack height rises and falls as in the C code.
    fn value(&mut self) -> DResult<Value> {
        enum Open {
            Array {
                t: Table,
                left: u64,
                index: i64,
            },
            Map {
                t: Table,
                left: u64,
                key: Option<Value>,
            },
        }
        let mut stack: Vec<Open> = Vec::new();
        loop {
            if self.top + 1 > MAX_C_STACK {
                return overflow(TOO_MANY_VALUES);
            }
            let mut done = match self.item()? {
                Item::Value(v) => {
                    self.top += 1;
                    v
                }
                Item::Array(len) => {
                    let t = self.lua.create_table()?;
                    self.top += 1;
                    if self.top + 1 > MAX_C_STACK || stack.len() >= HARD_MAX_DECODE_NESTING {
                        return overflow(ARRAY_OVERFLOW);
                    }
                    if len > 0 {
                        stack.push(Open::Array {
                            t,
                            left: len,
                            index: 1,
                        });
                        self.top += 1; // the index pushed before each element
                        continue;
                    }
                    Value::Table(t)
                }
                Item::Map(len) => {
                    let t = self.lua.create_table()?;
                    self.top += 1;
                    if stack.len() >= HARD_MAX_DECODE_NESTING {
                        return overflow(TOO_MANY_VALUES);
                    }
                    if len > 0 {
                        stack.push(Open::Map {
                            t,
                            left: len,
                            key: None,
                        });
                        continue;
                    }
                    Value::Table(t)
                }
            };
            // Store `done` in its container, closing containers that are complete.
            loop {
                let Some(open) = stack.last_mut() else {
                    return Ok(done);
                };
                let finished = match open {
                    Open::Array { t, left, index } => {
                        t.raw_set(*index, done)?;
                        self.top -= 2;
                        *index += 1;
                        *left -= 1;
                        if *left > 0 {
                            self.top += 1;
                        }
                        *left == 0
                    }
                    Open::Map { t, left, key } => match key.take() {
                        None => {
                            *key = Some(done);
                            break;
                        }
                        Some(k) => {
                            match &k {
                                // Lua's own errors for lua_settable, which carry
                                // no position.
                                Value::Nil => {
                                    return Err(DecodeError::Fail(super::Fail::Raw(
                                        b"table index is nil".to_vec(),
                                    )))
                                }
                                Value::Number(n) if n.is_nan() => {
                                    return Err(DecodeError::Fail(super::Fail::Raw(
                                        b"table index is NaN".to_vec(),
                                    )))
                                }
                                _ => {}
                            }
                            t.raw_set(k, done)?;
                            self.top -= 2;
                            *left -= 1;
                            *left == 0
                        }
                    },
                };
                if !finished {
                    break;
                }
                done = match stack.pop() {
                    Some(Open::Array { t, .. }) | Some(Open::Map { t, .. }) => Value::Table(t),
                    None => Value::Nil,
                };
            }
        }
    }
}

fn unpack_full(
    lua: &Lua,
    args: &Args,
    fname: &str,
    limit: i32,
    offset: i32,
    stack_base: i64,
) -> LibResult<MultiValue> {
    let s = args.check_bytes(1, fname)?;
    let len = s.len();
    if offset < 0 || limit < 0 {
        // The C code prints the input length where it means the limit.
        return fail(format!(
            "Invalid request to unpack with offset of {offset} and limit of {}.",
            len as i32
        ));
    } else if offset as usize > len {
        return fail(format!(
            "Start offset {offset} greater than input length {}.",
            len as i32
        ));
    }
    let decode_all = limit == 0 && offset == 0;
    let limit = if decode_all { i32::MAX } else { limit };
    let mut d = Decoder {
        lua,
        data: &s,
        pos: offset as usize,
        top: stack_base,
    };
    let results = lua.create_table()?;
    let mut n = 0usize;
    if !decode_all {
        n = 1; // the offset goes first, filled in below
    }
    let mut cnt = 0;
    while d.left() > 0 && cnt < limit {
        match d.value() {
            Ok(v) => {
                n += 1;
                results.raw_set(n, v)?;
            }
            Err(DecodeError::Eof) => return fail("Missing bytes in input."),
            Err(DecodeError::BadFormat) => return fail("Bad data format in input."),
            Err(DecodeError::Fail(f)) => return Err(f),
        }
        cnt += 1;
    }
    if !decode_all {
        if d.top + 1 > MAX_C_STACK {
            return fail("stack overflow (in function mp_unpack_full)");
        }
        let next = if d.left() == 0 { -1 } else { d.pos as i32 };
        results.raw_set(1, next)?;
    }
    many(lua, results, n)
}

/// Builds the `cmsgpack` table.
pub(crate) fn open(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set(
        "pack",
        wrap(lua, Shape::Packed, |lua, a| pack(lua, &Args::packed(a)?))?,
    )?;
    t.set(
        "unpack",
        wrap(lua, Shape::Many, |lua, a| {
            let args = Args::plain(a);
            let base = args.len() as i64;
            unpack_full(lua, &args, "unpack", 0, 0, base)
        })?,
    )?;
    t.set(
        "unpack_one",
        wrap(lua, Shape::Many, |lua, a| {
            let args = Args::plain(a);
            let offset = args.opt_integer(lua, 2, "unpack_one", 0)? as i32;
            unpack_full(lua, &args, "unpack_one", 1, offset, 1)
        })?,
    )?;
    t.set(
        "unpack_limit",
        wrap(lua, Shape::Many, |lua, a| {
            let args = Args::plain(a);
            let limit = args.check_integer(lua, 2, "unpack_limit")? as i32;
            let offset = args.opt_integer(lua, 3, "unpack_limit", 0)? as i32;
            unpack_full(lua, &args, "unpack_limit", limit, offset, 1)
        })?,
    )?;
    t.set("_NAME", "cmsgpack")?;
    t.set("_VERSION", "lua-cmsgpack 0.4.0")?;
    t.set("_COPYRIGHT", "Copyright (C) 2012, Salvatore Sanfilippo")?;
    t.set("_DESCRIPTION", "MessagePack C implementation for Lua")?;
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{err, err_raw, eval, eval_str, lua};

    fn hex(lua: &mlua::Lua, src: &str) -> String {
        eval(lua, &format!("return {src}"))
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    // Expected values from redis-server 7.0.15.
    #[test]
    fn pack_bytes() {
        let lua = lua();
        let cases = [
            ("cmsgpack.pack({1,2,3})", "93010203"),
            (
                "cmsgpack.pack(1, -1, -32, -33, 127, 128, 255, 256, 65535, 65536, 2^32, -128, \
                 -129, -32768, -32769, -2^31, -2^31-1)",
                concat!(
                    "01ffe0d0df7fcc80ccffcd0100cdffffce00010000cf0000000100000000d080d1ff7f",
                    "d18000d2ffff7fffd280000000d3ffffffff7fffffff"
                ),
            ),
            (
                "cmsgpack.pack(0.5, 0.1, 1/0, -1/0, 2^63, -2^63, 1e-20)",
                concat!(
                    "ca3f000000cb3fb999999999999aca7f800000caff800000ca5f000000",
                    "d38000000000000000cb3bc79ca10c924223"
                ),
            ),
            ("cmsgpack.pack(true, false, nil, 'abc')", "c3c2c0a3616263"),
            ("cmsgpack.pack({a=1})", "81a16101"),
            ("cmsgpack.pack({[1]=1,[3]=3})", "8201010303"),
            ("cmsgpack.pack({1,2,nil,4})", "83010102020404"),
            ("cmsgpack.pack({})", "90"),
            ("cmsgpack.pack(string.rep('x', 31)):sub(1,2)", "bf78"),
            ("cmsgpack.pack(string.rep('x', 40)):sub(1,3)", "d92878"),
            ("cmsgpack.pack(string.rep('x', 255)):sub(1,3)", "d9ff78"),
            ("cmsgpack.pack(string.rep('x', 300)):sub(1,4)", "da012c78"),
            (
                "cmsgpack.pack(string.rep('x', 70000)):sub(1,6)",
                "db0001117078",
            ),
            (
                "(function() local t={} for i=1,20 do t[i]=i end return cmsgpack.pack(t) end)()",
                "dc00140102030405060708090a0b0c0d0e0f1011121314",
            ),
            (
                "(function() local t={} t[1]=t return cmsgpack.pack(t) end)()",
                "91919191919191919191919191919191c0",
            ),
            ("cmsgpack.pack(print)", "c0"),
            (
                "(function() local z = 0 return cmsgpack.pack(-z) end)()",
                "00",
            ),
            ("cmsgpack.pack(0/0)", "cbfff8000000000000"),
            ("cmsgpack.pack({[1.5]=1})", "81ca3fc0000001"),
            ("cmsgpack.pack({[-1]=1})", "81ff01"),
            ("cmsgpack.pack({[2^31]=1})", "81ce8000000001"),
            (
                "cmsgpack.pack(setmetatable({}, {__index=function(t,k) return 7 end}))",
                "90",
            ),
            (
                "cmsgpack.pack(2^53+1, -2^53, 1.5, 3.4028234663852886e38, 1e39)",
                concat!(
                    "cf0020000000000000d3ffe0000000000000ca3fc00000ca7f7fffff",
                    "cb48078287f49c4a1d"
                ),
            ),
            ("cmsgpack.pack({x=cjson.null})", "81a178c0"),
        ];
        for (src, want) in cases {
            assert_eq!(hex(&lua, src), want, "{src}");
        }
    }

    fn unpacked(lua: &mlua::Lua, src: &str) -> String {
        eval_str(
            lua,
            &format!(
                "local t = {{{src}}} for i = 1, table.maxn(t) do t[i] = tostring(t[i]) end \
                 return table.concat(t, ',')"
            ),
        )
    }

    #[test]
    fn unpack_values() {
        let lua = lua();
        let cases = [
            ("cmsgpack.unpack(cmsgpack.pack(1,2,'x'))", "1,2,x"),
            ("cmsgpack.unpack(cmsgpack.pack({1,2,{a=5}}))[3].a", "5"),
            ("cmsgpack.unpack('')", ""),
            ("cmsgpack.unpack_one(cmsgpack.pack(1,2,3))", "1,1"),
            ("cmsgpack.unpack_one(cmsgpack.pack(1,2,3), 1)", "2,2"),
            ("cmsgpack.unpack_one(cmsgpack.pack(1,2,3), 2)", "-1,3"),
            ("cmsgpack.unpack_one(cmsgpack.pack(1,2,3), 3)", "-1"),
            ("cmsgpack.unpack_limit(cmsgpack.pack(1,2,3), 2)", "2,1,2"),
            (
                "cmsgpack.unpack_limit(cmsgpack.pack(1,2,3), 2, 1)",
                "-1,2,3",
            ),
            ("cmsgpack.unpack_limit(cmsgpack.pack(1,2,3), 0)", "1,2,3"),
            ("cmsgpack.unpack_limit('\\1\\2\\3', 1, 1)", "2,2"),
            ("cmsgpack.unpack_one('')", "-1"),
            ("cmsgpack.unpack_one('\\1\\2', 2.7)", "-1"),
            ("cmsgpack.unpack_limit('\\1\\2', 1.9)", "1,1"),
            (
                "cmsgpack.unpack('\\207\\255\\255\\255\\255\\255\\255\\255\\255')",
                "-1",
            ),
            (
                "cmsgpack.unpack('\\211\\255\\255\\255\\255\\255\\255\\255\\255')",
                "-1",
            ),
            ("cmsgpack.unpack('\\207\\0\\0\\0\\0\\0\\0\\0\\5')", "5"),
            ("cmsgpack.unpack('\\206\\255\\255\\255\\255')", "4294967295"),
            ("cmsgpack.unpack('\\210\\255\\255\\255\\254')", "-2"),
            ("cmsgpack.unpack('\\202\\63\\0\\0\\0')", "0.5"),
            ("cmsgpack.unpack('\\202\\127\\128\\0\\0')", "inf"),
            (
                "cmsgpack.unpack('\\203\\63\\185\\153\\153\\153\\153\\153\\154')",
                "0.1",
            ),
            ("cmsgpack.unpack('\\209\\255\\128')", "-128"),
            ("cmsgpack.unpack('\\192\\195')", "nil,true"),
            ("cmsgpack.unpack('\\218\\0\\2ab')", "ab"),
            ("cmsgpack.unpack('\\217\\2ab')", "ab"),
            ("cmsgpack.unpack('\\219\\0\\0\\0\\2ab')", "ab"),
            ("cmsgpack.unpack('\\222\\0\\1\\1\\2')[1]", "2"),
            ("cmsgpack.unpack('\\220\\0\\2\\1\\2')[2]", "2"),
            ("cmsgpack.unpack('\\223\\0\\0\\0\\1\\1\\2')[1]", "2"),
            ("#cmsgpack.unpack('\\146\\192\\1')", "0"),
            ("cmsgpack.unpack(12)", "49,50"),
            ("cmsgpack.unpack('\\1', 5)", "1"),
            ("#{cmsgpack.unpack(string.rep('\\1', 7999))}", "7999"),
            (
                "#{cmsgpack.unpack(string.rep('\\1', 100) .. string.rep('\\145', 900) .. '\\1')}",
                "101",
            ),
            ("cmsgpack.unpack(cmsgpack.pack(1e-20))", "1e-20"),
            ("cmsgpack._VERSION", "lua-cmsgpack 0.4.0"),
        ];
        for (src, want) in cases {
            assert_eq!(unpacked(&lua, src), want, "{src}");
        }
    }

    #[test]
    fn errors() {
        let lua = lua();
        let cases = [
            (
                "cmsgpack.pack()",
                "bad argument #0 to 'pack' (MessagePack pack needs input.)",
            ),
            ("cmsgpack.unpack('\\205\\1')", "Missing bytes in input."),
            ("cmsgpack.unpack('\\193')", "Bad data format in input."),
            ("cmsgpack.unpack('\\196\\1')", "Bad data format in input."),
            ("cmsgpack.unpack('\\147\\1\\2')", "Missing bytes in input."),
            ("cmsgpack.unpack('\\129\\1')", "Missing bytes in input."),
            ("cmsgpack.unpack('\\217\\5ab')", "Missing bytes in input."),
            (
                "cmsgpack.unpack('\\219\\255\\255\\255\\255ab')",
                "Missing bytes in input.",
            ),
            (
                "cmsgpack.unpack('\\221\\255\\255\\255\\255')",
                "Missing bytes in input.",
            ),
            ("cmsgpack.unpack_one('\\205\\1')", "Missing bytes in input."),
            (
                "cmsgpack.unpack_one(cmsgpack.pack(1,2,3), 4)",
                "Start offset 4 greater than input length 3.",
            ),
            (
                "cmsgpack.unpack_one('', 1)",
                "Start offset 1 greater than input length 0.",
            ),
            (
                "cmsgpack.unpack_one(cmsgpack.pack(1,2,3), -1)",
                "Invalid request to unpack with offset of -1 and limit of 3.",
            ),
            (
                "cmsgpack.unpack_limit(cmsgpack.pack(1,2,3), -1)",
                "Invalid request to unpack with offset of 0 and limit of 3.",
            ),
            (
                "cmsgpack.unpack_limit(cmsgpack.pack(1,2,3))",
                "bad argument #2 to 'unpack_limit' (number expected, got no value)",
            ),
            (
                "cmsgpack.unpack()",
                "bad argument #1 to 'unpack' (string expected, got no value)",
            ),
            (
                "cmsgpack.unpack({})",
                "bad argument #1 to 'unpack' (string expected, got table)",
            ),
            (
                "cmsgpack.unpack_one('\\1', 'x')",
                "bad argument #2 to 'unpack_one' (number expected, got string)",
            ),
            (
                "cmsgpack.unpack(string.rep('\\1', 8000))",
                super::TOO_MANY_VALUES,
            ),
            (
                "cmsgpack.unpack_limit(string.rep('\\1', 8000), 7999)",
                "stack overflow (in function mp_unpack_full)",
            ),
            (
                "cmsgpack.unpack(string.rep('\\1', 100) .. string.rep('\\145', 3950) .. '\\1')",
                super::ARRAY_OVERFLOW,
            ),
            (
                "cmsgpack.unpack(string.rep('\\145', 5000))",
                super::ARRAY_OVERFLOW,
            ),
            (
                "cmsgpack.unpack(string.rep('\\129\\1', 4000) .. '\\1')",
                super::TOO_MANY_VALUES,
            ),
        ];
        for (src, want) in cases {
            assert_eq!(err(&lua, src), want, "{src}");
        }
        assert_eq!(
            err_raw(&lua, "cmsgpack.unpack('\\129\\192\\1')"),
            "table index is nil"
        );
        assert_eq!(
            err_raw(
                &lua,
                "cmsgpack.unpack('\\129\\203\\255\\248\\0\\0\\0\\0\\0\\0\\1')"
            ),
            "table index is NaN"
        );
    }
}
