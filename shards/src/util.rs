//! Number parsing and formatting with Redis's exact rules.

/// Parses a decimal integer as Redis's `string2ll`: optional `-`, no `+`, no spaces, no leading
/// zeros (except `0` itself), within i64.
pub fn parse_i64(s: &[u8]) -> Option<i64> {
    if s.is_empty() || s.len() > 20 {
        return None;
    }
    if s == b"0" {
        return Some(0);
    }
    let (neg, digits) = match s[0] {
        b'-' => (true, &s[1..]),
        _ => (false, s),
    };
    if digits.is_empty() || !(b'1'..=b'9').contains(&digits[0]) {
        return None;
    }
    let mut v: u64 = 0;
    for &c in digits {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add((c - b'0') as u64)?;
    }
    if neg {
        if v > i64::MAX as u64 + 1 {
            return None;
        }
        Some((v as i64).wrapping_neg())
    } else {
        i64::try_from(v).ok()
    }
}

/// C's `strtod` over `s` up to its first NUL byte (as Redis hands sds strings to it): the value,
/// how many bytes it used, and whether it set `ERANGE`.
fn c_strtod(s: &[u8]) -> (f64, usize, bool) {
    let text = s.split(|&b| b == 0).next().unwrap_or_default();
    // Arguments are NUL-terminated on the stack when short (nearly always), else on the heap.
    let mut stack = [0u8; 64];
    let heap: Vec<u8>;
    let cstr: &[u8] = if text.len() < stack.len() {
        stack[..text.len()].copy_from_slice(text);
        &stack[..=text.len()]
    } else {
        heap = [text, &[0][..]].concat();
        &heap
    };
    let start = cstr.as_ptr() as *const libc::c_char;
    let mut end: *mut libc::c_char = std::ptr::null_mut();
    // SAFETY: `cstr` is NUL-terminated (with no NUL before the end) and outlives the call;
    // `end` receives a pointer into it; errno is this thread's own.
    let (value, erange) = unsafe {
        *libc::__errno_location() = 0;
        let v = libc::strtod(start, &mut end);
        (v, *libc::__errno_location() == libc::ERANGE)
    };
    let used = if end.is_null() {
        0
    } else {
        // SAFETY: strtod sets `end` within the string it was given.
        unsafe { end.offset_from(start) }.max(0) as usize
    };
    (value, used, erange)
}

/// Parses a float exactly as Redis's `string2d` (scores, increments, weights): `strtod` syntax
/// (decimal, hex, `inf`) over the whole argument, no leading space, not NaN, and not out of
/// range (overflow to infinity, or underflow to zero).
pub fn parse_f64(s: &[u8]) -> Option<f64> {
    // Plain integers (the common score) convert exactly without strtod.
    if let Some(i) = parse_i64(s).filter(|i| i.unsigned_abs() <= 1 << 53) {
        return Some(i as f64);
    }
    if s.is_empty() || matches!(s[0], b' ' | b'\t'..=b'\r') {
        return None;
    }
    let (v, used, erange) = c_strtod(s);
    let out_of_range = erange && (v.is_infinite() || v == 0.0);
    (used == s.len() && !out_of_range && !v.is_nan()).then_some(v)
}

/// Parses a score range end as Redis's `zslParseRange` does: plain `strtod`, which skips
/// leading space, stops at a NUL byte, reads an empty string as 0 and an overflow as an
/// infinity; only NaN and trailing text are refused.
pub fn parse_f64_lenient(s: &[u8]) -> Option<f64> {
    let text = s.split(|&b| b == 0).next().unwrap_or_default();
    let (v, used, _) = c_strtod(text);
    (used == text.len() && !v.is_nan()).then_some(v)
}

/// Redis's `fixedpoint_d2string` (its distance replies): `d` scaled by 10^decimals and
/// rounded to an integer (nearest, ties to even, as `llrint` does), printed with that many
/// decimals. The scaling rounds too, so this is not always `%.<decimals>f`: 7423118.81605000
/// (a double just above the tie) prints as 7423118.8160 here, 7423118.8161 by `printf`.
/// `decimals` is 1 to 17; the scaled value must fit an i64 (distances are far below).
pub fn fmt_fixed_point(d: f64, decimals: u32) -> String {
    let decimals = decimals.clamp(1, 17);
    let scaled = (d * 10f64.powi(decimals as i32)).round_ties_even();
    // llrint of an out-of-range value gives i64::MIN, as x86-64's conversion does.
    let n = if (-9.223_372_036_854_776e18..9.223_372_036_854_776e18).contains(&scaled) {
        scaled as i64
    } else {
        i64::MIN
    };
    let unit = 10u64.pow(decimals);
    let (sign, v) = if n < 0 {
        ("-", n.unsigned_abs())
    } else {
        ("", n as u64)
    };
    format!(
        "{sign}{}.{:0width$}",
        v / unit,
        v % unit,
        width = decimals as usize
    )
}

/// Redis's `d2string`: `inf`/`-inf`, `0`/`-0`, an integer in plain digits when it is one and
/// below 2^52, otherwise `%.17g`.
pub fn fmt_d2string(d: f64) -> String {
    if d.is_nan() {
        "nan".into()
    } else if d.is_infinite() {
        if d > 0.0 { "inf" } else { "-inf" }.into()
    } else if d == 0.0 {
        if d.is_sign_negative() { "-0" } else { "0" }.into()
    } else if d > -4_503_599_627_370_495.0 && d < 4_503_599_627_370_496.0 && d.fract() == 0.0 {
        itoa::Buffer::new().format(d as i64).to_string()
    } else {
        fmt_g17(d)
    }
}

/// Formats with C's `%.17g`, as Redis 7.0 does for double replies.
pub fn fmt_g17(d: f64) -> String {
    let mut buf = [0u8; 64];
    // SAFETY: the buffer is large enough for any %.17g output and snprintf NUL-terminates.
    let n = unsafe {
        libc::snprintf(
            buf.as_mut_ptr() as *mut libc::c_char,
            buf.len(),
            c"%.17g".as_ptr(),
            d,
        )
    };
    String::from_utf8_lossy(&buf[..(n.max(0) as usize).min(buf.len() - 1)]).into_owned()
}

/// Formats with C's `%.<decimals>f` (`%f` is `decimals = 6`): every integer digit, so up to
/// 309 of them for the largest doubles, and ties rounded as glibc rounds them.
pub fn fmt_fixed(d: f64, decimals: u8) -> String {
    // The longest output: sign, 309 integer digits, point, decimals, NUL.
    let mut buf = vec![0u8; 312 + usize::from(decimals)];
    // SAFETY: `%.*f` takes an int precision then a double, as passed; the buffer holds the
    // longest possible output, and snprintf NUL-terminates within `buf.len()`.
    let n = unsafe {
        libc::snprintf(
            buf.as_mut_ptr() as *mut libc::c_char,
            buf.len(),
            c"%.*f".as_ptr(),
            libc::c_int::from(decimals),
            d,
        )
    };
    buf.truncate((n.max(0) as usize).min(buf.len() - 1));
    String::from_utf8_lossy(&buf).into_owned()
}

/// A double reply's text: `inf`/`-inf`, otherwise `%.17g`.
pub fn fmt_double_reply(d: f64) -> String {
    if d.is_infinite() {
        if d > 0.0 {
            "inf".into()
        } else {
            "-inf".into()
        }
    } else {
        fmt_g17(d)
    }
}

/// Formats an f64 in human form (fixed notation, no trailing zeros), using its shortest
/// representation. INCRBYFLOAT and HINCRBYFLOAT compute in `long double`, where results
/// differ (`0.1 + 0.2`); they use [`LongDouble`] instead.
pub fn fmt_human(d: f64) -> String {
    if d.is_infinite() {
        return if d > 0.0 { "inf".into() } else { "-inf".into() };
    }
    if d == 0.0 {
        return "0".into();
    }
    let s = format!("{d}");
    s
}

/// Case-insensitive ASCII comparison of an argument with a keyword.
pub fn eq_ic(arg: &[u8], word: &str) -> bool {
    arg.eq_ignore_ascii_case(word.as_bytes())
}

/// Longest text Redis parses as a `long double` (its MAX_LONG_DOUBLE_CHARS).
pub const LONG_DOUBLE_CHARS_MAX: usize = 5 * 1024;

/// Exponent of the smallest `long double` unit (the least subnormal is `1 * 2^LD_EXP_MIN`).
const LD_EXP_MIN: i64 = -16445;
/// Largest exponent of a finite `long double` whose 64-bit mantissa has its top bit set.
const LD_EXP_MAX: i64 = 16320;
/// 10^17: `%.17Lf` prints 17 digits after the point.
const TEN_POW_17: u128 = 100_000_000_000_000_000;

/// C's `long double` on x86-64 (the x87 80-bit format: a 64-bit mantissa and a 15-bit
/// exponent), emulated. INCRBYFLOAT and HINCRBYFLOAT compute in it and print with `%.17Lf`,
/// so what clients see (`0.1 + 0.2` is `0.3`, `1000000 + 0.1` is `1000000.10000000000002274`)
/// depends on exactly this precision; `f64` gives other answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LongDouble {
    /// `mant * 2^exp`. `mant`'s top bit is set unless the value is zero or subnormal, and
    /// then `exp == LD_EXP_MIN`.
    Finite {
        neg: bool,
        mant: u64,
        exp: i64,
    },
    Inf {
        neg: bool,
    },
    NaN,
}

impl LongDouble {
    /// An integer, exactly (a 64-bit mantissa holds every i64).
    pub fn from_i64(n: i64) -> LongDouble {
        round_ld(n < 0, n.unsigned_abs() as u128, 0, false)
    }

    /// A double, exactly (as C widens a `double` to `long double`).
    pub fn from_f64(d: f64) -> LongDouble {
        if d.is_nan() {
            return LongDouble::NaN;
        }
        let neg = d.is_sign_negative();
        if d.is_infinite() {
            return LongDouble::Inf { neg };
        }
        let bits = d.to_bits();
        let exp_field = ((bits >> 52) & 0x7ff) as i64;
        let frac = bits & ((1 << 52) - 1);
        // Subnormals have no implicit bit and the exponent of the smallest normal.
        let (mant, exp) = if exp_field == 0 {
            (frac, -1074)
        } else {
            (frac | (1 << 52), exp_field - 1075)
        };
        round_ld(neg, u128::from(mant), exp, false)
    }

    /// Parses as Redis's `string2ld`: `strtold` syntax (decimal, hex, `inf`), the whole text,
    /// no leading space, not NaN, and not out of range (overflow, or underflow to zero).
    pub fn parse(s: &[u8]) -> Option<LongDouble> {
        if s.is_empty() || s.len() >= LONG_DOUBLE_CHARS_MAX || matches!(s[0], b' ' | b'\t'..=b'\r')
        {
            return None;
        }
        let (neg, body) = match s[0] {
            b'-' => (true, &s[1..]),
            b'+' => (false, &s[1..]),
            _ => (false, s),
        };
        if body.eq_ignore_ascii_case(b"inf") || body.eq_ignore_ascii_case(b"infinity") {
            return Some(LongDouble::Inf { neg });
        }
        match body {
            [b'0', b'x' | b'X', hex @ ..] => parse_ld_hex(neg, hex),
            _ => parse_ld_decimal(neg, body),
        }
    }

    pub fn is_finite(self) -> bool {
        matches!(self, LongDouble::Finite { .. })
    }

    /// The text Redis stores for INCRBYFLOAT (`ld2string` in human mode): `%.17Lf` with
    /// trailing zeros and a trailing point removed, `-0` shown as `0`.
    pub fn to_human(self) -> String {
        match self {
            LongDouble::Inf { neg: false } => "inf".into(),
            LongDouble::Inf { neg: true } => "-inf".into(),
            LongDouble::NaN => "nan".into(),
            LongDouble::Finite { neg, mant, exp } => {
                let text = if exp >= 0 {
                    ld_integer_digits(mant, exp)
                } else {
                    ld_fixed17(mant, -exp)
                };
                if neg && text != "0" {
                    format!("-{text}")
                } else {
                    text
                }
            }
        }
    }
}

impl std::ops::Add for LongDouble {
    type Output = LongDouble;

    /// The sum, rounded to nearest-even as the x87 unit does.
    fn add(self, other: LongDouble) -> LongDouble {
        use LongDouble::*;
        match (self, other) {
            (NaN, _) | (_, NaN) => NaN,
            (Inf { neg: a }, Inf { neg: b }) if a != b => NaN,
            (Inf { .. }, _) => self,
            (_, Inf { .. }) => other,
            (
                Finite {
                    neg: an,
                    mant: am,
                    exp: ae,
                },
                Finite {
                    neg: bn,
                    mant: bm,
                    exp: be,
                },
            ) => {
                if am == 0 && bm == 0 {
                    return Finite {
                        neg: an && bn,
                        mant: 0,
                        exp: LD_EXP_MIN,
                    };
                }
                if am == 0 {
                    return other;
                }
                if bm == 0 {
                    return self;
                }
                if ae >= be {
                    add_ld_finite((an, am, ae), (bn, bm, be))
                } else {
                    add_ld_finite((bn, bm, be), (an, am, ae))
                }
            }
        }
    }
}

/// Rounds `m * 2^e` (plus a fraction below `m`'s last bit when `sticky`) to a `long double`,
/// nearest-even, with subnormals and overflow to infinity.
fn round_ld(neg: bool, m: u128, e: i64, sticky: bool) -> LongDouble {
    if m == 0 {
        return LongDouble::Finite {
            neg,
            mant: 0,
            exp: LD_EXP_MIN,
        };
    }
    let bits = 128 - m.leading_zeros() as i64;
    let shift = (bits - 64).max(LD_EXP_MIN - e);
    // A sticky fraction is only meaningful below the bits that are rounded away.
    debug_assert!(!sticky || shift > 0);
    let (mut q, mut exp) = if shift <= 0 {
        (m << -shift, e + shift)
    } else {
        let q = if shift >= 128 { 0 } else { m >> shift };
        let up = if shift > 128 {
            false
        } else {
            let half = 1u128 << (shift - 1);
            let r = if shift == 128 {
                m
            } else {
                m & ((1u128 << shift) - 1)
            };
            r > half || (r == half && (sticky || q & 1 == 1))
        };
        (q + up as u128, e + shift)
    };
    if q == 1u128 << 64 {
        q >>= 1;
        exp += 1;
    }
    if q == 0 {
        return LongDouble::Finite {
            neg,
            mant: 0,
            exp: LD_EXP_MIN,
        };
    }
    if exp > LD_EXP_MAX {
        return LongDouble::Inf { neg };
    }
    LongDouble::Finite {
        neg,
        mant: q as u64,
        exp,
    }
}

/// Adds two nonzero finite values, `a` having the larger exponent.
fn add_ld_finite(a: (bool, u64, i64), b: (bool, u64, i64)) -> LongDouble {
    let (an, am, ae) = a;
    let (bn, bm, be) = b;
    let d = ae - be;
    let (big, small, e, sticky) = if d <= 63 {
        ((am as u128) << d, bm as u128, be, false)
    } else {
        // `a` is normal here (its exponent is above the minimum), so `b` is below a's last
        // bit: keep 64 more bits of `a` and fold what is left of `b` into a sticky bit.
        let s = d - 64;
        let (kept, lost) = if s >= 64 {
            (0, true)
        } else {
            (bm >> s, bm & ((1u64 << s) - 1) != 0)
        };
        ((am as u128) << 64, kept as u128, ae - 64, lost)
    };
    if an == bn {
        return round_ld(an, big + small, e, sticky);
    }
    if sticky {
        // big - (small + f) with 0 < f < 1 is (big - small - 1) + (1 - f).
        return round_ld(an, big - small - 1, e, true);
    }
    match big.cmp(&small) {
        std::cmp::Ordering::Greater => round_ld(an, big - small, e, false),
        std::cmp::Ordering::Less => round_ld(bn, small - big, e, false),
        std::cmp::Ordering::Equal => LongDouble::Finite {
            neg: false,
            mant: 0,
            exp: LD_EXP_MIN,
        },
    }
}

/// A positive number with a 128-bit mantissa (top bit set): `m * 2^e`, `inexact` when bits
/// were cut off on the way (the true value is then a little larger, or close to it).
#[derive(Clone, Copy)]
struct Wide {
    m: u128,
    e: i64,
    inexact: bool,
}

impl Wide {
    fn from_u128(x: u128) -> Wide {
        let lz = x.leading_zeros();
        Wide {
            m: x << lz,
            e: -(lz as i64),
            inexact: false,
        }
    }

    fn mul(self, o: Wide) -> Wide {
        const LOW: u128 = u64::MAX as u128;
        let (a1, a0) = (self.m >> 64, self.m & LOW);
        let (b1, b0) = (o.m >> 64, o.m & LOW);
        let (p00, p01, p10, p11) = (a0 * b0, a0 * b1, a1 * b0, a1 * b1);
        let mid = (p00 >> 64) + (p01 & LOW) + (p10 & LOW);
        let lo = ((mid & LOW) << 64) | (p00 & LOW);
        let hi = p11 + (p01 >> 64) + (p10 >> 64) + (mid >> 64);
        // Both mantissas are at least 2^127, so the product has 255 or 256 bits.
        let (m, lo_rest, e) = if hi >> 127 == 1 {
            (hi, lo, self.e + o.e + 128)
        } else {
            ((hi << 1) | (lo >> 127), lo << 1, self.e + o.e + 127)
        };
        Wide {
            m,
            e,
            inexact: self.inexact || o.inexact || lo_rest != 0,
        }
    }

    /// 10^n by squaring; exact while 5^n fits 128 bits.
    fn pow10(mut n: u64) -> Wide {
        let mut result = Wide::from_u128(1);
        let mut base = Wide::from_u128(10);
        while n > 0 {
            if n & 1 == 1 {
                result = result.mul(base);
            }
            base = base.mul(base);
            n >>= 1;
        }
        result
    }

    /// `num / self`, by long division to 128 quotient bits.
    fn div_into(self, num: u128) -> Wide {
        let n = Wide::from_u128(num);
        let d = self.m;
        let (mut q, mut r, steps) = if n.m >= d {
            (1u128, n.m - d, 127)
        } else {
            (0u128, n.m, 128)
        };
        for _ in 0..steps {
            let carry = r >> 127;
            r <<= 1;
            q <<= 1;
            if carry == 1 || r >= d {
                r = r.wrapping_sub(d);
                q |= 1;
            }
        }
        Wide {
            m: q,
            e: n.e - self.e - steps as i64,
            inexact: self.inexact || r != 0,
        }
    }
}

/// A decimal `digits[.digits][e[sign]digits]` (the sign already taken off).
fn parse_ld_decimal(neg: bool, s: &[u8]) -> Option<LongDouble> {
    // Up to 38 significant digits are kept exactly (10^38 < 2^127); later ones only scale the
    // value and mark it inexact.
    let (mut mant, mut kept, mut exp10, mut sticky) = (0u128, 0, 0i64, false);
    let (mut any_digit, mut seen_point, mut i) = (false, false, 0);
    while let Some(&c) = s.get(i) {
        if c.is_ascii_digit() {
            any_digit = true;
            exp10 -= seen_point as i64;
            let d = c - b'0';
            if mant == 0 && d == 0 {
                // A leading zero carries no digit.
            } else if kept < 38 {
                mant = mant * 10 + d as u128;
                kept += 1;
            } else {
                exp10 += 1;
                sticky |= d != 0;
            }
        } else if c == b'.' && !seen_point {
            seen_point = true;
        } else {
            break;
        }
        i += 1;
    }
    if !any_digit {
        return None;
    }
    if let Some(b'e' | b'E') = s.get(i) {
        exp10 = exp10.saturating_add(parse_ld_exponent(&s[i + 1..])?);
    } else if i != s.len() {
        return None;
    }
    if mant == 0 {
        return Some(LongDouble::Finite {
            neg,
            mant: 0,
            exp: LD_EXP_MIN,
        });
    }
    // Far outside the range (about 1e-4951 to 1e4932) the answer is known without arithmetic.
    if !(-5000..=4933).contains(&exp10) {
        return None;
    }
    let w = if exp10 >= 0 {
        Wide::from_u128(mant).mul(Wide::pow10(exp10 as u64))
    } else {
        Wide::pow10(exp10.unsigned_abs()).div_into(mant)
    };
    in_range(round_ld(neg, w.m, w.e, w.inexact || sticky))
}

/// A parsed nonzero number, unless it overflowed or rounded to zero (strtold's ERANGE, which
/// Redis rejects).
fn in_range(v: LongDouble) -> Option<LongDouble> {
    match v {
        LongDouble::Finite { mant: 0, .. } | LongDouble::Inf { .. } => None,
        v => Some(v),
    }
}

/// A hex float's digits after `0x`: `hex[.hex][p[sign]digits]`.
fn parse_ld_hex(neg: bool, s: &[u8]) -> Option<LongDouble> {
    let (mut mant, mut kept, mut exp2, mut sticky) = (0u128, 0, 0i64, false);
    let (mut any_digit, mut seen_point, mut i) = (false, false, 0);
    while let Some(&c) = s.get(i) {
        if let Some(d) = (c as char).to_digit(16) {
            any_digit = true;
            exp2 -= 4 * seen_point as i64;
            if mant == 0 && d == 0 {
                // A leading zero carries no digit.
            } else if kept < 32 {
                mant = (mant << 4) | d as u128;
                kept += 1;
            } else {
                exp2 += 4;
                sticky |= d != 0;
            }
        } else if c == b'.' && !seen_point {
            seen_point = true;
        } else {
            break;
        }
        i += 1;
    }
    if !any_digit {
        return None;
    }
    if let Some(b'p' | b'P') = s.get(i) {
        exp2 = exp2.saturating_add(parse_ld_exponent(&s[i + 1..])?);
    } else if i != s.len() {
        return None;
    }
    if mant == 0 {
        return Some(LongDouble::Finite {
            neg,
            mant: 0,
            exp: LD_EXP_MIN,
        });
    }
    let w = Wide::from_u128(mant);
    in_range(round_ld(neg, w.m, w.e.saturating_add(exp2), sticky))
}

/// An exponent: optional sign, then at least one digit, to the end of the text. Saturates far
/// beyond any exponent that matters.
fn parse_ld_exponent(s: &[u8]) -> Option<i64> {
    let (neg, digits) = match s.first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let v = digits
        .iter()
        .fold(0i64, |v, &c| (v * 10 + (c - b'0') as i64).min(1 << 40));
    Some(if neg { -v } else { v })
}

/// The decimal digits of the integer `mant * 2^exp`, `exp >= 0` (up to 4933 digits).
fn ld_integer_digits(mant: u64, exp: i64) -> String {
    if exp < 64 {
        return ((mant as u128) << exp).to_string();
    }
    // Base-10^9 limbs, least significant first, doubled 32 bits at a time.
    const BASE: u64 = 1_000_000_000;
    let mut limbs: Vec<u64> = Vec::new();
    let mut m = mant;
    while m > 0 {
        limbs.push(m % BASE);
        m /= BASE;
    }
    let mut left = exp;
    while left > 0 {
        let k = left.min(32);
        left -= k;
        let mut carry = 0u64;
        for limb in limbs.iter_mut() {
            let v = (*limb << k) + carry;
            *limb = v % BASE;
            carry = v / BASE;
        }
        while carry > 0 {
            limbs.push(carry % BASE);
            carry /= BASE;
        }
    }
    let mut out = String::with_capacity(limbs.len() * 9);
    for (i, limb) in limbs.iter().rev().enumerate() {
        if i == 0 {
            out.push_str(&limb.to_string());
        } else {
            out.push_str(&format!("{limb:09}"));
        }
    }
    if out.is_empty() {
        out.push('0');
    }
    out
}

/// `mant / 2^s` (`s >= 1`) as `%.17Lf` prints it (rounded to nearest-even on the exact
/// value), with trailing zeros and point removed.
fn ld_fixed17(mant: u64, s: i64) -> String {
    if s >= 128 {
        // mant * 10^17 < 2^121, below half a unit of the 17th decimal.
        return "0".into();
    }
    let m = mant as u128;
    let mask = (1u128 << s) - 1;
    let mut int_part = m >> s;
    let scaled = (m & mask) * TEN_POW_17;
    let mut frac = scaled >> s;
    let r = scaled & mask;
    let half = 1u128 << (s - 1);
    if r > half || (r == half && frac & 1 == 1) {
        frac += 1;
    }
    if frac == TEN_POW_17 {
        int_part += 1;
        frac = 0;
    }
    if frac == 0 {
        return int_part.to_string();
    }
    let digits = format!("{frac:017}");
    format!("{int_part}.{}", digits.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ints() {
        assert_eq!(parse_i64(b"0"), Some(0));
        assert_eq!(parse_i64(b"-9223372036854775808"), Some(i64::MIN));
        assert_eq!(parse_i64(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_i64(b"9223372036854775808"), None);
        for bad in [&b""[..], b"-0", b"01", b"+1", b" 1", b"1 ", b"-", b"1a"] {
            assert_eq!(parse_i64(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn floats() {
        assert_eq!(parse_f64(b"1.5"), Some(1.5));
        assert_eq!(parse_f64(b"5.0e3"), Some(5000.0));
        assert_eq!(parse_f64(b"-inf"), Some(f64::NEG_INFINITY));
        assert_eq!(parse_f64(b"nan"), None);
        assert_eq!(parse_f64(b" 1"), None);
        assert_eq!(parse_f64(b"1x"), None);
        assert_eq!(parse_f64(b"0x10"), Some(16.0));
        assert_eq!(parse_f64(b"1e400"), None, "overflow");
        assert_eq!(parse_f64(b"1e-400"), None, "underflow to zero");
        assert_eq!(
            parse_f64(b"4.9e-324"),
            Some(4.9e-324),
            "a subnormal is fine"
        );
        assert_eq!(parse_f64(b"1\x002"), None);
        assert_eq!(parse_f64(b""), None);
        assert_eq!(parse_f64_lenient(b""), Some(0.0));
        assert_eq!(parse_f64_lenient(b" 1"), Some(1.0));
        assert_eq!(parse_f64_lenient(b"1e400"), Some(f64::INFINITY));
        assert_eq!(parse_f64_lenient(b"3\x00x"), Some(3.0));
        assert_eq!(parse_f64_lenient(b"nan"), None);
        assert_eq!(parse_f64_lenient(b"1 "), None);
        assert_eq!(fmt_d2string(-0.0), "-0");
        assert_eq!(fmt_d2string(1e17), "1e+17");
        assert_eq!(fmt_d2string(4_503_599_627_370_495.0), "4503599627370495");
        assert_eq!(fmt_d2string(2.5), "2.5");
        assert_eq!(fmt_d2string(f64::NEG_INFINITY), "-inf");
        assert_eq!(fmt_g17(1.1), "1.1000000000000001");
        assert_eq!(fmt_g17(3.0), "3");
        assert_eq!(fmt_human(10.5 + 0.1), "10.6");
        assert_eq!(fmt_human(3.0e3), "3000");
        assert_eq!(fmt_fixed(166274.15156960033, 4), "166274.1516");
        assert_eq!(fmt_fixed_point(166274.15156960033, 4), "166274.1516");
        assert_eq!(fmt_fixed_point(7423118.8160500005, 4), "7423118.8160");
        assert_eq!(fmt_fixed(7423118.8160500005, 4), "7423118.8161");
        assert_eq!(fmt_fixed_point(0.0, 4), "0.0000");
        assert_eq!(fmt_fixed_point(-0.0, 4), "0.0000");
        assert_eq!(fmt_fixed_point(0.00005, 4), "0.0000");
        assert_eq!(
            fmt_fixed_point(0.00015, 4),
            "0.0001",
            "0.00015 is a little below"
        );
        assert_eq!(fmt_fixed_point(0.00025, 4), "0.0002", "a tie goes to even");
        assert_eq!(fmt_fixed_point(12.5, 4), "12.5000");
        assert_eq!(fmt_fixed_point(-3.25, 1), "-3.2");
        assert_eq!(fmt_fixed(0.0078125, 6), "0.007812");
        assert_eq!(fmt_fixed(-0.0, 6), "-0.000000");
        assert_eq!(fmt_fixed(f64::INFINITY, 6), "inf");
        assert_eq!(fmt_fixed(1e300, 6).len(), 301 + 7);
        assert_eq!(fmt_fixed(-f64::MAX, 6).len(), 1 + 309 + 7);
    }

    #[test]
    fn long_double_from_double_prints_as_redis() {
        // GEOPOS's coordinates: a double widened to long double, printed with `%.17Lf`.
        for (d, text) in [
            (13.361389338970184, "13.36138933897018433"),
            (38.1155563954963, "38.11555639549629859"),
            (-179.99999731779099, "-179.99999731779098511"),
            (85.05112878, "85.0511287799999991"),
            (180.0, "180"),
            (2.682209014892578e-6, "0.00000268220901489"),
            (-1e-20, "0"),
            (0.5, "0.5"),
        ] {
            assert_eq!(LongDouble::from_f64(d).to_human(), text, "{d}");
        }
        assert_eq!(LongDouble::from_f64(4.9e-324).to_human(), "0");
        assert_eq!(LongDouble::from_f64(f64::NEG_INFINITY).to_human(), "-inf");
    }

    /// `a + b` as INCRBYFLOAT stores it, or None where Redis rejects an operand.
    fn ld_sum(a: &str, b: &str) -> Option<String> {
        let a = LongDouble::parse(a.as_bytes())?;
        let b = LongDouble::parse(b.as_bytes())?;
        Some((a + b).to_human())
    }

    #[test]
    fn long_double_matches_redis() {
        // Expected values come from Redis 7.0.15 on x86-64.
        let cases = [
            ("10.5", "0.1", "10.6"),
            ("0.1", "0.2", "0.3"),
            ("1000000", "0.1", "1000000.10000000000002274"),
            ("123456789.123456789", "0", "123456789.12345678899873747"),
            ("18446744073709551617", "0", "18446744073709551616"),
            ("9223372036854775807", "1", "9223372036854775808"),
            ("0.000000000000000005", "0", "0"),
            (
                "0.000000000000000015",
                "0.000000000000000005",
                "0.00000000000000002",
            ),
            ("3.0000000000000000001", "0", "3"),
            ("1.00000000000000001", "0", "1.00000000000000001"),
            ("-5200", "-0.0", "-5200"),
            ("-1e-20", "0", "0"),
            ("0x1p-2", "0X.8P1", "1.25"),
            ("+.5e-3", "00012.50", "12.5005"),
            ("1e-4940", "0e-99999", "0"),
            (
                "-553.67827638",
                "0x198fadc1a606cb0fb3p-16400",
                "-553.67827638000000001",
            ),
            (
                "0.00000460",
                "0x36b2b9437a28df6ec4p10",
                "1033218640672470255468544",
            ),
        ];
        for (a, b, want) in cases {
            assert_eq!(ld_sum(a, b).as_deref(), Some(want), "{a} + {b}");
        }
        let big = ld_sum("1e400", "0").unwrap_or_default();
        assert_eq!(big.len(), 401);
        assert!(big.starts_with("10000000000000000000281880683947586514586453433629"));
        assert!(big.ends_with("221946880"));
    }

    #[test]
    fn long_double_parse_rules() {
        for bad in [
            "", " 1", "1 ", "1e", "e1", ".", "0x", "0x1p", "nan", "-nan", "1e4933", "1e-4952",
            "1e-99999", "--1",
        ] {
            assert_eq!(LongDouble::parse(bad.as_bytes()), None, "{bad:?}");
        }
        // The length limit counts leading zeros too.
        let mut long = vec![b'0'; LONG_DOUBLE_CHARS_MAX];
        long[LONG_DOUBLE_CHARS_MAX - 1] = b'7';
        assert_eq!(LongDouble::parse(&long), None);
        assert_eq!(LongDouble::parse(&long[1..]), Some(LongDouble::from_i64(7)));
        assert_eq!(
            LongDouble::parse(b"-Infinity"),
            Some(LongDouble::Inf { neg: true })
        );
        let inf = LongDouble::parse(b"inf").unwrap_or(LongDouble::NaN);
        assert!(!inf.is_finite());
        assert_eq!(inf + LongDouble::Inf { neg: true }, LongDouble::NaN);
        // Subnormals are accepted; the least one is about 3.6e-4951.
        assert!(LongDouble::parse(b"3.6e-4951").is_some());
        // Overflow in a sum gives infinity.
        let max = LongDouble::parse(b"1.18e4932").unwrap_or(LongDouble::NaN);
        assert_eq!(max + max, LongDouble::Inf { neg: false });
        assert_eq!(
            LongDouble::from_i64(i64::MIN).to_human(),
            "-9223372036854775808"
        );
        assert_eq!(LongDouble::from_i64(0).to_human(), "0");
    }
}

/// The C library's text for an I/O error (`No such file or directory`), as Redis prints it.
pub fn strerror(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        // SAFETY: strerror returns a pointer to a NUL-terminated static (or thread-local)
        // string, copied out at once.
        Some(code) => unsafe {
            let p = libc::strerror(code);
            if p.is_null() {
                e.to_string()
            } else {
                std::ffi::CStr::from_ptr(p).to_string_lossy().into_owned()
            }
        },
        None => e.to_string(),
    }
}
