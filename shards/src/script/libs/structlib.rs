//! `struct`: Roberto Ierusalimschy's struct library (0.2, struct.c 1.4) in the
//! version Redis 7.0 ships, with Redis's hardening (`integral size overflow`, the
//! `offset must be 1 or greater` check, `'c0'` error texts).
//!
//! Formats: `>` `<` (endianness, native = little), `![n]` (alignment, default 8),
//! `x` (a zero byte), `b B h H l L T i[n] I[n]` (integers of 1, 2, 8, 8, n (default 4,
//! at most 32) bytes), `f` `d` (IEEE float and double), `c[n]` (n chars; `c0` means
//! the whole string when packing and "the previous number" when unpacking), `s`
//! (zero-terminated string), and spaces.
//!
//! Number conversions follow the C code compiled for x86-64: integers are packed from
//! the double through a 64-bit integer cast (so 2^64 packs as 0 and bytes beyond the
//! eighth are zero), unpacked through a 64-bit integer. Where the C code would read
//! outside the data (offsets that wrap around `size_t`) this version reports
//! "data string too short" instead. `c0` with no previous unpacked value is always an
//! error (C would look at the data string argument itself).

use mlua::{Lua, MultiValue, Table, Value};

use super::{arg_error, double_to_i64, fail, many, wrap, Args, LibResult, Shape};

const MAXINTSIZE: i64 = 32;
/// Alignment of `!` without a number: a double's alignment on x86-64.
const MAXALIGN: i64 = 8;
/// Lua 5.1's LUAI_MAXCSTACK: how many values a C function may hold on its stack.
const MAX_C_STACK: usize = 8000;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Endian {
    Big,
    Little,
}

struct Header {
    endian: Endian,
    align: i64,
}

impl Header {
    fn new() -> Self {
        Header {
            endian: Endian::Little,
            align: 1,
        }
    }
}

/// A cursor over the format string (which, as a C string, ends at the first NUL).
struct Fmt<'a> {
    s: &'a [u8],
    i: usize,
}

impl Fmt<'_> {
    fn next(&mut self) -> Option<u8> {
        let c = *self.s.get(self.i)?;
        self.i += 1;
        Some(c)
    }

    fn num(&mut self, default: i64) -> LibResult<i64> {
        if !self.s.get(self.i).is_some_and(u8::is_ascii_digit) {
            return Ok(default);
        }
        let mut a: i64 = 0;
        while let Some(&c) = self.s.get(self.i).filter(|c| c.is_ascii_digit()) {
            let d = (c - b'0') as i64;
            if a > i32::MAX as i64 / 10 || a * 10 > i32::MAX as i64 - d {
                return fail("integral size overflow");
            }
            a = a * 10 + d;
            self.i += 1;
        }
        Ok(a)
    }
}

fn is_p2(x: i64) -> bool {
    x > 0 && (x & (x - 1)) == 0
}

/// The size of option `opt`, reading its count from the format.
fn opt_size(opt: u8, fmt: &mut Fmt) -> LibResult<u64> {
    Ok(match opt {
        b'B' | b'b' => 1,
        b'H' | b'h' => 2,
        b'L' | b'l' | b'T' | b'd' => 8,
        b'f' => 4,
        b'x' => 1,
        b'c' => fmt.num(1)? as u64,
        b'i' | b'I' => {
            let sz = fmt.num(4)?;
            if sz > MAXINTSIZE {
                return fail(format!(
                    "integral size {sz} is larger than limit of {MAXINTSIZE}"
                ));
            }
            sz as u64
        }
        _ => 0,
    })
}

/// Padding needed before an item of `size` bytes at offset `len` (C's unsigned
/// arithmetic, kept as is).
fn to_align(len: u64, h: &Header, opt: u8, size: u64) -> u64 {
    if size == 0 || opt == b'c' {
        return 0;
    }
    let size = size.min(h.align as u64);
    (size.wrapping_sub(len & size.wrapping_sub(1))) & size.wrapping_sub(1)
}

fn control(opt: u8, fmt: &mut Fmt, h: &mut Header, fname: &str) -> LibResult<()> {
    match opt {
        b' ' => {}
        b'>' => h.endian = Endian::Big,
        b'<' => h.endian = Endian::Little,
        b'!' => {
            let a = fmt.num(MAXALIGN)?;
            if !is_p2(a) {
                return fail(format!("alignment {a} is not a power of 2"));
            }
            h.align = a;
        }
        _ => {
            let mut msg = b"invalid format option '".to_vec();
            msg.push(opt);
            msg.push(b'\'');
            return arg_error(1, fname, msg);
        }
    }
    Ok(())
}

/// The C conversion of a double to `unsigned long` as gcc emits it on x86-64.
fn double_to_u64(n: f64) -> u64 {
    const TWO63: f64 = 9_223_372_036_854_775_808.0;
    if n < TWO63 {
        double_to_i64(n) as u64
    } else {
        (double_to_i64(n - TWO63) as u64) ^ (1 << 63)
    }
}

fn fmt_arg(args: &Args, fname: &str) -> LibResult<Vec<u8>> {
    let mut f = args.check_bytes(1, fname)?;
    if let Some(nul) = f.iter().position(|&c| c == 0) {
        f.truncate(nul);
    }
    Ok(f)
}

/// The argument error `pack` gives for a missing value: the slot just past the
/// arguments holds the nil that the C code pushes as a marker.
fn pack_missing<T>(args: &Args, i: usize, what: &str) -> LibResult<T> {
    let got = if i == args.len() + 1 {
        "nil"
    } else {
        "no value"
    };
    arg_error(i, "pack", format!("{what} expected, got {got}"))
}

fn pack_number(lua: &Lua, args: &Args, i: usize) -> LibResult<f64> {
    if i > args.len() {
        return pack_missing(args, i, "number");
    }
    args.check_number(lua, i, "pack")
}

fn pack(lua: &Lua, args: &Args) -> LibResult<MultiValue> {
    let fmt_s = fmt_arg(args, "pack")?;
    let mut fmt = Fmt { s: &fmt_s, i: 0 };
    let mut h = Header::new();
    let mut arg = 2;
    let mut out: Vec<u8> = Vec::new();
    let mut total: u64 = 0;
    while let Some(opt) = fmt.next() {
        let mut size = opt_size(opt, &mut fmt)?;
        let pad = to_align(total, &h, opt, size);
        total = total.wrapping_add(pad);
        out.resize(out.len() + pad as usize, 0);
        match opt {
            b'b' | b'B' | b'h' | b'H' | b'l' | b'L' | b'T' | b'i' | b'I' => {
                let n = pack_number(lua, args, arg)?;
                arg += 1;
                let mut value = double_to_u64(n);
                let mut bytes = vec![0u8; size as usize];
                let order: Box<dyn Iterator<Item = &mut u8>> = match h.endian {
                    Endian::Little => Box::new(bytes.iter_mut()),
                    Endian::Big => Box::new(bytes.iter_mut().rev()),
                };
                for b in order {
                    *b = value as u8;
                    value >>= 8;
                }
                out.extend_from_slice(&bytes);
            }
            b'x' => out.push(0),
            b'f' => {
                let f = pack_number(lua, args, arg)? as f32;
                arg += 1;
                match h.endian {
                    Endian::Little => out.extend_from_slice(&f.to_le_bytes()),
                    Endian::Big => out.extend_from_slice(&f.to_be_bytes()),
                }
            }
            b'd' => {
                let d = pack_number(lua, args, arg)?;
                arg += 1;
                match h.endian {
                    Endian::Little => out.extend_from_slice(&d.to_le_bytes()),
                    Endian::Big => out.extend_from_slice(&d.to_be_bytes()),
                }
            }
            b'c' | b's' => {
                if arg > args.len() {
                    return pack_missing(args, arg, "string");
                }
                let s = args.check_bytes(arg, "pack")?;
                arg += 1;
                if size == 0 {
                    size = s.len() as u64;
                }
                if (s.len() as u64) < size {
                    // The C code reports the argument after the string.
                    return arg_error(arg, "pack", "string too short");
                }
                out.extend_from_slice(&s[..size as usize]);
                if opt == b's' {
                    out.push(0);
                    size += 1;
                }
            }
            _ => control(opt, &mut fmt, &mut h, "pack")?,
        }
        total = total.wrapping_add(size);
    }
    Ok(MultiValue::from_vec(vec![Value::String(
        lua.create_string(out)?,
    )]))
}

fn get_integer(buf: &[u8], endian: Endian, signed: bool) -> f64 {
    let mut l: u64 = 0;
    let mut push = |b: u8| l = (l << 8) | b as u64;
    match endian {
        Endian::Big => buf.iter().for_each(|&b| push(b)),
        Endian::Little => buf.iter().rev().for_each(|&b| push(b)),
    }
    if !signed {
        return l as f64;
    }
    // x86 masks shift counts to 6 bits, which the C code relies on for sizes > 8.
    let mask = (!0u64).wrapping_shl((buf.len() as u32 * 8).wrapping_sub(1));
    if l & mask != 0 {
        l |= mask;
    }
    l as i64 as f64
}

fn unpack(lua: &Lua, args: &Args) -> LibResult<MultiValue> {
    let fmt_s = fmt_arg(args, "unpack")?;
    let data = args.check_bytes(2, "unpack")?;
    let start = args.opt_integer(lua, 3, "unpack", 1)? as u64;
    if start == 0 {
        return arg_error(3, "unpack", "offset must be 1 or greater");
    }
    let mut pos = start - 1;
    let ld = data.len() as u64;
    let mut fmt = Fmt { s: &fmt_s, i: 0 };
    let mut h = Header::new();
    let results = lua.create_table()?;
    let mut count = 0usize;
    let mut last: Option<Value> = None;
    let too_short = || arg_error(2, "unpack", "data string too short");
    while let Some(opt) = fmt.next() {
        let mut size = opt_size(opt, &mut fmt)?;
        pos = pos.wrapping_add(to_align(pos, &h, opt, size));
        if pos.checked_add(size).is_none_or(|end| end > ld) {
            return too_short();
        }
        // The C function keeps format, data and its results on its own stack, and
        // Redis's build asks for two free slots per option (measured: 7997 results
        // pass, 7998 fail).
        if 2 + count + 2 > MAX_C_STACK {
            return fail("stack overflow (too many results)");
        }
        let at = pos as usize;
        let mut pushed: Option<Value> = None;
        match opt {
            b'b' | b'B' | b'h' | b'H' | b'l' | b'L' | b'T' | b'i' | b'I' => {
                let n = get_integer(
                    &data[at..at + size as usize],
                    h.endian,
                    opt.is_ascii_lowercase(),
                );
                pushed = Some(Value::Number(n));
            }
            b'x' => {}
            b'f' => {
                let b: [u8; 4] = data[at..at + 4].try_into().unwrap_or([0; 4]);
                let f = match h.endian {
                    Endian::Little => f32::from_le_bytes(b),
                    Endian::Big => f32::from_be_bytes(b),
                };
                pushed = Some(Value::Number(f as f64));
            }
            b'd' => {
                let b: [u8; 8] = data[at..at + 8].try_into().unwrap_or([0; 8]);
                let d = match h.endian {
                    Endian::Little => f64::from_le_bytes(b),
                    Endian::Big => f64::from_be_bytes(b),
                };
                pushed = Some(Value::Number(d));
            }
            b'c' => {
                if size == 0 {
                    let prev = last.take().and_then(|v| super::to_number(lua, &v));
                    let Some(n) = prev else {
                        return fail("format 'c0' needs a previous size");
                    };
                    // The previous number is consumed: it is replaced by the string.
                    count -= 1;
                    results.raw_set(count + 1, Value::Nil)?;
                    size = double_to_u64(n);
                    if pos.checked_add(size).is_none_or(|end| end > ld) {
                        return too_short();
                    }
                }
                let s = lua.create_string(&data[at..at + size as usize])?;
                pushed = Some(Value::String(s));
            }
            b's' => {
                let Some(nul) = data[at..].iter().position(|&c| c == 0) else {
                    return fail("unfinished string in data");
                };
                size = nul as u64 + 1;
                pushed = Some(Value::String(lua.create_string(&data[at..at + nul])?));
            }
            _ => control(opt, &mut fmt, &mut h, "unpack")?,
        }
        if let Some(v) = pushed {
            count += 1;
            results.raw_set(count, v.clone())?;
            last = Some(v);
        }
        pos = pos.wrapping_add(size);
    }
    count += 1;
    results.raw_set(count, Value::Number(pos.wrapping_add(1) as f64))?;
    many(lua, results, count)
}

fn size(lua: &Lua, args: &Args) -> LibResult<MultiValue> {
    let fmt_s = fmt_arg(args, "size")?;
    let mut fmt = Fmt { s: &fmt_s, i: 0 };
    let mut h = Header::new();
    let mut pos: u64 = 0;
    while let Some(opt) = fmt.next() {
        let size = opt_size(opt, &mut fmt)?;
        pos = pos.wrapping_add(to_align(pos, &h, opt, size));
        if opt == b's' {
            return arg_error(1, "size", "option 's' has no fixed size");
        } else if opt == b'c' && size == 0 {
            return arg_error(1, "size", "option 'c0' has no fixed size");
        }
        if !opt.is_ascii_alphanumeric() {
            control(opt, &mut fmt, &mut h, "size")?;
        }
        pos = pos.wrapping_add(size);
    }
    let _ = lua;
    Ok(MultiValue::from_vec(vec![Value::Number(pos as f64)]))
}

/// Builds the `struct` table.
pub(crate) fn open(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set(
        "pack",
        wrap(lua, Shape::Packed, |lua, a| pack(lua, &Args::packed(a)?))?,
    )?;
    t.set(
        "unpack",
        wrap(lua, Shape::Many, |lua, a| unpack(lua, &Args::plain(a)))?,
    )?;
    t.set(
        "size",
        wrap(lua, Shape::Plain, |lua, a| size(lua, &Args::plain(a)))?,
    )?;
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{err, eval_str, lua};

    fn hex(lua: &mlua::Lua, src: &str) -> String {
        let s = super::super::testutil::eval(lua, &format!("return {src}"));
        s.iter().map(|b| format!("{b:02x}")).collect()
    }

    // Expected values from redis-server 7.0.15.
    #[test]
    fn pack_bytes() {
        let lua = lua();
        let cases = [
            ("struct.pack('>i', 1)", "00000001"),
            ("struct.pack('<i2', -2)", "feff"),
            (
                "struct.pack('>i16', -1)",
                "0000000000000000ffffffffffffffff",
            ),
            ("struct.pack('>I3', 0x123456)", "123456"),
            (
                "struct.pack('bBhHlLT', -1, 255, -2, 65535, -3, 4, 5)",
                concat!(
                    "fffffeffffff",
                    "fdffffffffffffff0400000000000000",
                    "0500000000000000"
                ),
            ),
            ("struct.pack('>d', 1.5)", "3ff8000000000000"),
            ("struct.pack('<f', 0.1)", "cdcccc3d"),
            ("struct.pack('!4 b i', 1, 2)", "0100000002000000"),
            (
                "struct.pack('! b d', 1, 2)",
                "01000000000000000000000000000040",
            ),
            ("struct.pack('!2 b i', 1, 2)", "010002000000"),
            ("struct.pack('s', 'ab')", "616200"),
            ("struct.pack('c0', 'abc')", "616263"),
            ("struct.pack('c2', 'abc')", "6162"),
            ("struct.pack('x x b', 7)", "000007"),
            ("struct.pack('>i', 2^40+3)", "00000003"),
            ("struct.pack('>I', -1)", "ffffffff"),
            ("struct.pack('>i', 3.9)", "00000003"),
            ("struct.pack('>i', -3.9)", "fffffffd"),
            ("struct.pack('>I8', 2^63)", "8000000000000000"),
            ("struct.pack('>I8', 2^64)", "0000000000000000"),
            ("struct.pack('>i8', -2^63)", "8000000000000000"),
            ("struct.pack('>I8', 1e300)", "0000000000000000"),
            ("struct.pack('>i', 0/0)", "00000000"),
            ("struct.pack('i0', 1)", ""),
            ("struct.pack('>i', '12')", "0000000c"),
            ("struct.pack('c', 12)", "31"),
            ("struct.pack('>d', 1e-20)", "3bc79ca10c924223"),
        ];
        for (src, want) in cases {
            assert_eq!(hex(&lua, src), want, "{src}");
        }
    }

    #[test]
    fn pack_errors() {
        let lua = lua();
        let cases = [
            (
                "struct.pack('c5', 'abc')",
                "bad argument #3 to 'pack' (string too short)",
            ),
            (
                "struct.pack('i', 'x')",
                "bad argument #2 to 'pack' (number expected, got string)",
            ),
            (
                "struct.pack('i')",
                "bad argument #2 to 'pack' (number expected, got nil)",
            ),
            (
                "struct.pack('i i')",
                "bad argument #2 to 'pack' (number expected, got nil)",
            ),
            (
                "struct.pack('z')",
                "bad argument #1 to 'pack' (invalid format option 'z')",
            ),
            (
                "struct.pack('i33', 1)",
                "integral size 33 is larger than limit of 32",
            ),
            ("struct.pack('!3', 1)", "alignment 3 is not a power of 2"),
            ("struct.pack('i99999999999', 1)", "integral size overflow"),
        ];
        for (src, want) in cases {
            assert_eq!(err(&lua, src), want, "{src}");
        }
    }

    fn unpacked(lua: &mlua::Lua, src: &str) -> String {
        eval_str(
            lua,
            &format!(
                "local t = {{{src}}} for i = 1, #t do t[i] = tostring(t[i]) end \
                 return table.concat(t, ',')"
            ),
        )
    }

    #[test]
    fn unpack_values() {
        let lua = lua();
        let cases = [
            ("struct.unpack('>i', struct.pack('>i', -5))", "-5,5"),
            ("struct.unpack('<I2 b', '\\255\\255\\128')", "65535,-128,4"),
            ("struct.unpack('>d', struct.pack('>d', 1.5))", "1.5,9"),
            ("struct.unpack('s s', 'ab\\0cd\\0')", "ab,cd,7"),
            ("struct.unpack('b c0', '\\3abcd')", "abc,5"),
            ("struct.unpack('B B c0', '\\1\\2ab')", "1,ab,5"),
            ("struct.unpack('>b', 'abc', 2)", "98,3"),
            (
                "struct.unpack('!4 b i', struct.pack('!4 b i', 1, 2))",
                "1,2,9",
            ),
            ("struct.unpack('x b', 'ab')", "98,3"),
            (
                "struct.unpack('>I8', struct.pack('>I8', 2^53+1))",
                "9.007199254741e+15,9",
            ),
            ("struct.unpack('>i16', string.rep('\\255', 16))", "-1,17"),
            (
                "struct.unpack('>I16', string.rep('\\255', 16))",
                "1.844674407371e+19,17",
            ),
            ("struct.unpack('>I3', '\\1\\2\\3')", "66051,4"),
            ("struct.unpack('b', 1)", "49,2"),
            ("struct.unpack('<f', struct.pack('<f', 0.5))", "0.5,5"),
        ];
        for (src, want) in cases {
            assert_eq!(unpacked(&lua, src), want, "{src}");
        }
    }

    #[test]
    fn unpack_errors() {
        let lua = lua();
        let cases = [
            (
                "struct.unpack('c0', 'abc')",
                "format 'c0' needs a previous size",
            ),
            (
                "struct.unpack('c1 c0', 'xab')",
                "format 'c0' needs a previous size",
            ),
            ("struct.unpack('s', 'abc')", "unfinished string in data"),
            (
                "struct.unpack('>i', 'ab')",
                "bad argument #2 to 'unpack' (data string too short)",
            ),
            (
                "struct.unpack('>b', 'abc', 4)",
                "bad argument #2 to 'unpack' (data string too short)",
            ),
            (
                "struct.unpack('>b', 'abc', 0)",
                "bad argument #3 to 'unpack' (offset must be 1 or greater)",
            ),
            (
                "struct.unpack('>b', 'abc', -1)",
                "bad argument #2 to 'unpack' (data string too short)",
            ),
            (
                "struct.unpack('b c0', '\\255abcd')",
                "bad argument #2 to 'unpack' (data string too short)",
            ),
            (
                "struct.unpack('b c0', '\\5abcd')",
                "bad argument #2 to 'unpack' (data string too short)",
            ),
            (
                "struct.unpack('z', 'abc')",
                "bad argument #1 to 'unpack' (invalid format option 'z')",
            ),
            (
                "struct.unpack('b')",
                "bad argument #2 to 'unpack' (string expected, got no value)",
            ),
            (
                "struct.unpack(string.rep('b', 9000), string.rep('a', 9000))",
                "stack overflow (too many results)",
            ),
            (
                "struct.unpack(string.rep('b', 7998), string.rep('a', 7998))",
                "stack overflow (too many results)",
            ),
        ];
        for (src, want) in cases {
            assert_eq!(err(&lua, src), want, "{src}");
        }
    }

    #[test]
    fn sizes() {
        let lua = lua();
        for (src, want) in [
            ("struct.size('bhilTfd')", "35"),
            ("struct.size('!8 b d')", "16"),
            ("struct.size('c7 x')", "8"),
            ("struct.size('z')", "0"),
            ("struct.size('<>')", "0"),
        ] {
            assert_eq!(eval_str(&lua, &format!("return {src}")), want, "{src}");
        }
        for (src, want) in [
            (
                "struct.size('s')",
                "bad argument #1 to 'size' (option 's' has no fixed size)",
            ),
            (
                "struct.size('c0')",
                "bad argument #1 to 'size' (option 'c0' has no fixed size)",
            ),
            (
                "struct.size('%')",
                "bad argument #1 to 'size' (invalid format option '%')",
            ),
            (
                "struct.size('i33')",
                "integral size 33 is larger than limit of 32",
            ),
            ("struct.size('!3')", "alignment 3 is not a power of 2"),
        ] {
            assert_eq!(err(&lua, src), want, "{src}");
        }
    }
}
