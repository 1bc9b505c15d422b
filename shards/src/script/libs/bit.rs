//! `bit`: LuaBitOp 1.0.2, the bitwise operations Redis exposes to scripts.
//!
//! Every argument is normalised the way LuaBitOp does it on a 5.1 interpreter with
//! double numbers: the number is rounded to an integer (round-half-even, through the
//! 2^52 + 2^51 trick) and reduced modulo 2^32 to a signed 32-bit value. Results are
//! always signed 32-bit numbers. Argument errors carry `luaL_checknumber`'s text,
//! with the function's own name ("bad argument #1 to 'band' (number expected, got
//! nil)"); the name is fixed where Lua would take it from the call site, which only
//! differs when a script calls the function through a renamed local.

use mlua::{Lua, MultiValue, Table, Value};

use super::{wrap, Args, LibResult, Shape};

/// LuaBitOp's normalisation of a Lua number to a signed 32-bit integer.
pub fn tobit(n: f64) -> i32 {
    // Adding 2^52 + 2^51 puts the integer part, rounded to nearest-even, in the low
    // mantissa bits; this is the exact operation the C library relies on.
    let b = n + 6_755_399_441_055_744.0;
    b.to_bits() as u32 as i32
}

fn arg(lua: &Lua, args: &Args, i: usize, fname: &str) -> LibResult<i32> {
    Ok(tobit(args.check_number(lua, i, fname)?))
}

fn ret(v: i32) -> LibResult<MultiValue> {
    Ok(MultiValue::from_vec(vec![Value::Number(v as f64)]))
}

type Op = fn(&Lua, &Args) -> LibResult<MultiValue>;

fn fold(lua: &Lua, args: &Args, fname: &str, f: fn(i32, i32) -> i32) -> LibResult<MultiValue> {
    let mut acc = arg(lua, args, 1, fname)?;
    for i in 2..=args.len() {
        acc = f(acc, arg(lua, args, i, fname)?);
    }
    ret(acc)
}

fn shift(lua: &Lua, args: &Args, fname: &str, f: fn(i32, u32) -> i32) -> LibResult<MultiValue> {
    let b = arg(lua, args, 1, fname)?;
    let n = (arg(lua, args, 2, fname)? & 31) as u32;
    ret(f(b, n))
}

fn tohex(lua: &Lua, args: &Args) -> LibResult<MultiValue> {
    let mut b = arg(lua, args, 1, "tohex")? as u32;
    let mut n = match args.get(2)? {
        None => 8,
        Some(_) => arg(lua, args, 2, "tohex")?,
    };
    let digits: &[u8; 16] = if n < 0 {
        // Redis's build turns the overflowing -i32::MIN into "more than 8 digits".
        n = n.checked_neg().unwrap_or(8);
        b"0123456789ABCDEF"
    } else {
        b"0123456789abcdef"
    };
    if n > 8 {
        n = 8;
    }
    let len = n.max(0) as usize;
    let mut buf = vec![0u8; len];
    for slot in buf.iter_mut().rev() {
        *slot = digits[(b & 15) as usize];
        b >>= 4;
    }
    Ok(MultiValue::from_vec(vec![Value::String(
        lua.create_string(buf)?,
    )]))
}

const OPS: &[(&str, Op)] = &[
    ("tobit", |lua, a| ret(arg(lua, a, 1, "tobit")?)),
    ("bnot", |lua, a| ret(!arg(lua, a, 1, "bnot")?)),
    ("band", |lua, a| fold(lua, a, "band", |x, y| x & y)),
    ("bor", |lua, a| fold(lua, a, "bor", |x, y| x | y)),
    ("bxor", |lua, a| fold(lua, a, "bxor", |x, y| x ^ y)),
    ("lshift", |lua, a| {
        shift(lua, a, "lshift", |b, n| ((b as u32) << n) as i32)
    }),
    ("rshift", |lua, a| {
        shift(lua, a, "rshift", |b, n| ((b as u32) >> n) as i32)
    }),
    ("arshift", |lua, a| shift(lua, a, "arshift", |b, n| b >> n)),
    ("rol", |lua, a| {
        shift(lua, a, "rol", |b, n| (b as u32).rotate_left(n) as i32)
    }),
    ("ror", |lua, a| {
        shift(lua, a, "ror", |b, n| (b as u32).rotate_right(n) as i32)
    }),
    ("bswap", |lua, a| ret(arg(lua, a, 1, "bswap")?.swap_bytes())),
    ("tohex", tohex),
];

/// Builds the `bit` table.
pub(crate) fn open(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    for &(name, op) in OPS {
        let f = wrap(lua, Shape::Plain, move |lua, args| {
            op(lua, &Args::plain(args))
        })?;
        t.set(name, f)?;
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{err, eval_str, lua};

    fn check(cases: &[(&str, &str)]) {
        let lua = lua();
        for (src, want) in cases {
            assert_eq!(eval_str(&lua, &format!("return {src}")), *want, "{src}");
        }
    }

    // Expected values from redis-server 7.0.15.
    #[test]
    fn normalisation() {
        check(&[
            ("bit.tobit(0xffffffff)", "-1"),
            ("bit.tobit(0xffffffff + 1)", "0"),
            ("bit.tobit(2^40 + 5)", "5"),
            ("bit.tobit(-1)", "-1"),
            ("bit.tobit(1.5)", "2"),
            ("bit.tobit(2.5)", "2"),
            ("bit.tobit(-2.5)", "-2"),
            ("bit.tobit(0.4999)", "0"),
            ("bit.tobit('10')", "10"),
            ("bit.tobit('0x10')", "16"),
            ("bit.tobit(2^31)", "-2147483648"),
        ]);
    }

    #[test]
    fn operations() {
        check(&[
            ("bit.band(0xff, 0x0f)", "15"),
            ("bit.band(0xff, 0x0f, 0x3)", "3"),
            ("bit.band(7)", "7"),
            ("bit.bor(1, 2, 4, 8)", "15"),
            ("bit.bxor(0xff, 0x0f)", "240"),
            ("bit.bnot(0)", "-1"),
            ("bit.bnot(5)", "-6"),
            ("bit.lshift(1, 31)", "-2147483648"),
            ("bit.lshift(1, 32)", "1"),
            ("bit.lshift(1, 33)", "2"),
            ("bit.rshift(-1, 28)", "15"),
            ("bit.arshift(-256, 4)", "-16"),
            ("bit.rshift(256, -1)", "0"),
            ("bit.rol(0x12345678, 12)", "1164411171"),
            ("bit.ror(0x12345678, 12)", "1736516421"),
            ("bit.bswap(0x12345678)", "2018915346"),
            ("bit.bswap(-1)", "-1"),
        ]);
    }

    #[test]
    fn hex() {
        check(&[
            ("bit.tohex(255)", "000000ff"),
            ("bit.tohex(255, -4)", "00FF"),
            ("bit.tohex(255, 2)", "ff"),
            ("bit.tohex(-1)", "ffffffff"),
            ("bit.tohex(0x12345678, 20)", "12345678"),
            ("bit.tohex(0x12345678, -20)", "12345678"),
            ("bit.tohex(0xabcdef, -3)", "DEF"),
            ("bit.tohex(1, 0)", ""),
            ("bit.tohex(1, -2^31)", "00000001"),
        ]);
    }

    #[test]
    fn errors() {
        let lua = lua();
        assert_eq!(
            err(&lua, "bit.band()"),
            "bad argument #1 to 'band' (number expected, got no value)"
        );
        assert_eq!(
            err(&lua, "bit.bor(1, nil)"),
            "bad argument #2 to 'bor' (number expected, got nil)"
        );
        assert_eq!(
            err(&lua, "bit.lshift(1)"),
            "bad argument #2 to 'lshift' (number expected, got no value)"
        );
        assert_eq!(
            err(&lua, "bit.tohex({})"),
            "bad argument #1 to 'tohex' (number expected, got table)"
        );
        assert_eq!(
            err(&lua, "bit.tobit('x')"),
            "bad argument #1 to 'tobit' (number expected, got string)"
        );
    }
}
