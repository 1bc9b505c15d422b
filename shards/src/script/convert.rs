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
//!
//! Both directions work on the Lua stack directly (`super::ffi`: `push_resp` and `emit`), so a
//! reply of many elements holds no Lua reference per element.

/// At most this many values are converted (tables sharing sub-tables can describe replies
/// exponentially larger than themselves); the rest are nulls. (Smaller in unit tests, so the
/// cut is tested quickly.)
#[cfg(not(test))]
pub const VALUES_MAX: usize = 64 << 20;
#[cfg(test)]
pub const VALUES_MAX: usize = 1 << 20;

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_truncate_like_a_c_cast() {
        assert_eq!(lua_number_to_i64(3.99), 3);
        assert_eq!(lua_number_to_i64(-3.99), -3);
        assert_eq!(lua_number_to_i64(f64::INFINITY), i64::MIN);
        assert_eq!(lua_number_to_i64(f64::NAN), i64::MIN);
        assert_eq!(lua_number_to_i64(2f64.powi(63)), i64::MIN);
        assert_eq!(lua_number_to_i64(2f64.powi(53)), 1 << 53);
    }
}
