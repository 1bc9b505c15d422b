//! The C libraries Redis 7.0 links into its Lua interpreter, reimplemented in Rust on
//! top of mlua: `cjson` (lua-cjson 2.1.0), `cmsgpack` (lua-cmsgpack 0.4.0), `bit`
//! (LuaBitOp 1.0.2) and `struct` (Roberto Ierusalimschy's struct 0.2, as patched by
//! Redis). Each module documents where it matches Redis and the few places it does not.
//!
//! Two mlua details shape the plumbing shared by all four:
//!
//! * A Rust callback that returns `Err` reaches Lua as an mlua error *object*, not as a
//!   string, so a script doing `pcall(cjson.decode, s)` would not see the text Redis
//!   gives. Every library function is therefore a small C function ([`trampoline`])
//!   around the Rust code: the Rust side reports a library error by returning a
//!   private tag and the message, and the trampoline raises it with `luaL_error`'s
//!   rules (the caller's "chunk:line: " prefix) or, for argument errors, with
//!   `luaL_argerror` itself, so "bad argument #1 to 'band' (...)" names the function
//!   as the call site does, exactly as the C libraries do.
//! * mlua's conversion of a Lua 5.1 number into a [`Value`] turns any number within
//!   `f64::EPSILON` of an integer into `Value::Integer`, which loses `1e-20`, `-0` and
//!   `0.9999999999999999`. Functions that must see numbers exactly (`cjson.encode`,
//!   `cmsgpack.pack`, `struct.pack`) get their arguments packed into a table by the
//!   trampoline, and numbers are read back with `raw_get::<f64>`, which reads the stack
//!   slot directly ([`Args`], [`exact`]).
//!
//! Functions that return many values (`cmsgpack.unpack`, `struct.unpack`) hand a table
//! and a count to the trampoline, which spreads them on the Lua stack: the Rust side
//! never holds thousands of Lua references at once (mlua's reference stack is bounded
//! by Lua 5.1's 8000-slot C stack limit and panics when exhausted).
//!
//! Note for debug builds: the vendored Lua is compiled with `LUA_USE_APICHECK` when
//! debug assertions are on, and Lua 5.1's own `pcall` then aborts the process when the
//! called function returns more than about 20 values (`pcall(unpack, t)`); release
//! builds, like Redis, are unaffected. This is independent of these libraries.

use std::ffi::{c_int, c_void};

use mlua::{ffi, Function, LightUserData, Lua, MultiValue, Table, Value};

pub mod bit;
pub mod cjson;
pub mod cmsgpack;
pub mod structlib;

/// Installs the globals `cjson`, `cmsgpack`, `bit` and `struct`.
pub fn open_all(lua: &Lua) -> mlua::Result<()> {
    let globals = lua.globals();
    globals.set("cjson", cjson::open(lua)?)?;
    globals.set("cmsgpack", cmsgpack::open(lua)?)?;
    globals.set("bit", bit::open(lua)?)?;
    globals.set("struct", structlib::open(lua)?)?;
    Ok(())
}

/// Why a library function failed.
pub(crate) enum Fail {
    /// A library error: raised in Lua as this exact string, as `luaL_error` would.
    Msg(Vec<u8>),
    /// An argument error: raised through `luaL_argerror(narg, msg)`.
    Arg(usize, Vec<u8>),
    /// A library error raised without the caller's position, as Lua's own runtime
    /// errors inside a C function are ("table index is nil").
    Raw(Vec<u8>),
    /// An error from mlua itself (memory, a failing metamethod): passed through.
    Lua(mlua::Error),
}

impl From<mlua::Error> for Fail {
    fn from(e: mlua::Error) -> Self {
        Fail::Lua(e)
    }
}

pub(crate) type LibResult<T> = Result<T, Fail>;

/// A library error with the given text.
pub(crate) fn fail<T>(msg: impl Into<Vec<u8>>) -> LibResult<T> {
    Err(Fail::Msg(msg.into()))
}

/// An argument error, raised by `luaL_argerror`: "bad argument #N to 'F' (MSG)", where
/// F is the name the call site uses. `fname` is kept for readability at call sites.
pub(crate) fn arg_error<T>(narg: usize, fname: &str, msg: impl AsRef<[u8]>) -> LibResult<T> {
    let _ = fname;
    Err(Fail::Arg(narg, msg.as_ref().to_vec()))
}

// Its address is the tag: no script can build a light userdata pointing here.
static ERROR_TAG: u8 = 0;

fn error_tag_ptr() -> *mut c_void {
    &ERROR_TAG as *const u8 as *mut c_void
}

/// How a library function takes its arguments and returns its results.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    /// Arguments as they are, results as they are.
    Plain,
    /// Arguments packed into a table (`Args::packed`): numbers read exactly.
    Packed,
    /// Plain arguments; the results are a table and a count, spread by the trampoline.
    Many,
}

const MODE_PACKED: ffi::lua_Integer = 1;
const MODE_MANY: ffi::lua_Integer = 2;

/// The C function scripts call: upvalue 1 is the Rust implementation, upvalue 2 the
/// mode ([`MODE_PACKED`], [`MODE_MANY`]).
///
/// It raises errors with `lua_error`, a longjmp over this frame: the frame holds
/// nothing with a destructor, as with mlua's own callbacks.
unsafe extern "C-unwind" fn trampoline(state: *mut ffi::lua_State) -> c_int {
    let nargs = ffi::lua_gettop(state);
    let mode = ffi::lua_tointeger(state, ffi::lua_upvalueindex(2));
    if ffi::lua_checkstack(state, 3) == 0 {
        return ffi::luaL_error(state, c"stack overflow".as_ptr());
    }
    ffi::lua_pushvalue(state, ffi::lua_upvalueindex(1));
    ffi::lua_insert(state, 1);
    if mode & MODE_PACKED != 0 {
        ffi::lua_createtable(state, nargs, 1);
        for i in 1..=nargs {
            ffi::lua_pushvalue(state, i + 1);
            ffi::lua_rawseti(state, -2, i as ffi::lua_Integer);
        }
        ffi::lua_pushinteger(state, nargs as ffi::lua_Integer);
        ffi::lua_setfield(state, -2, c"n".as_ptr());
        if nargs > 0 {
            // Over the first argument, then drop the rest: [impl, table].
            ffi::lua_replace(state, 2);
        }
        ffi::lua_settop(state, 2);
        ffi::lua_call(state, 1, ffi::LUA_MULTRET);
    } else {
        ffi::lua_call(state, nargs, ffi::LUA_MULTRET);
    }
    let nres = ffi::lua_gettop(state);
    if nres >= 2 && ffi::lua_touserdata(state, 1) == error_tag_ptr() {
        if nres >= 3 {
            if ffi::lua_type(state, 3) == ffi::LUA_TNUMBER {
                let narg = ffi::lua_tointeger(state, 3) as c_int;
                let msg = ffi::lua_tolstring(state, 2, std::ptr::null_mut());
                return ffi::luaL_argerror(state, narg, msg);
            }
            ffi::lua_settop(state, 2);
            ffi::lua_error(state);
        }
        ffi::luaL_where(state, 1);
        ffi::lua_pushvalue(state, 2);
        ffi::lua_concat(state, 2);
        ffi::lua_error(state);
    }
    if mode & MODE_MANY != 0 && nres >= 2 {
        let n = ffi::lua_tointeger(state, 2) as c_int;
        ffi::lua_settop(state, 1);
        if n > 0 && ffi::lua_checkstack(state, n) == 0 {
            return ffi::luaL_error(state, c"too many results to unpack".as_ptr());
        }
        for i in 1..=n {
            ffi::lua_rawgeti(state, 1, i as ffi::lua_Integer);
        }
        return n;
    }
    nres
}

/// Wraps `f` (called with the raw arguments) into the function scripts see.
pub(crate) fn wrap<F>(lua: &Lua, shape: Shape, f: F) -> mlua::Result<Function>
where
    F: Fn(&Lua, MultiValue) -> LibResult<MultiValue> + 'static,
{
    let imp = lua.create_function(move |lua, args: MultiValue| {
        let tag = Value::LightUserData(LightUserData(error_tag_ptr()));
        match f(lua, args) {
            Ok(v) => Ok(v),
            Err(Fail::Msg(m)) => Ok(MultiValue::from_vec(vec![
                tag,
                Value::String(lua.create_string(m)?),
            ])),
            Err(Fail::Arg(narg, m)) => Ok(MultiValue::from_vec(vec![
                tag,
                Value::String(lua.create_string(m)?),
                Value::Number(narg as f64),
            ])),
            Err(Fail::Raw(m)) => Ok(MultiValue::from_vec(vec![
                tag,
                Value::String(lua.create_string(m)?),
                Value::Boolean(false),
            ])),
            Err(Fail::Lua(e)) => Err(e),
        }
    })?;
    let mode = match shape {
        Shape::Plain => 0,
        Shape::Packed => MODE_PACKED,
        Shape::Many => MODE_MANY,
    };
    // SAFETY: the closure consumes exactly the two values exec_raw pushed and leaves
    // the new function, which exec_raw returns.
    unsafe {
        lua.exec_raw((imp, mode as f64), |state| {
            ffi::lua_pushcclosure(state, trampoline, 2);
        })
    }
}

/// Results for a [`Shape::Many`] function: the values in a table, and their count.
pub(crate) fn many(lua: &Lua, t: Table, n: usize) -> LibResult<MultiValue> {
    let _ = lua;
    Ok(MultiValue::from_vec(vec![
        Value::Table(t),
        Value::Number(n as f64),
    ]))
}

/// The arguments of a function, whatever its shape.
pub(crate) enum Args {
    /// Packed by the trampoline: `{n = count, ...}`.
    Packed(Table, usize),
    Plain(Vec<Value>),
}

impl Args {
    pub(crate) fn packed(args: MultiValue) -> LibResult<Args> {
        match args.into_iter().next() {
            Some(Value::Table(t)) => {
                let n: f64 = t.raw_get("n")?;
                Ok(Args::Packed(t, n as usize))
            }
            _ => Err(Fail::Lua(mlua::Error::runtime(
                "internal: packed arguments",
            ))),
        }
    }

    pub(crate) fn plain(args: MultiValue) -> Args {
        Args::Plain(args.into_vec())
    }

    /// How many arguments were passed (`lua_gettop`).
    pub(crate) fn len(&self) -> usize {
        match self {
            Args::Packed(_, n) => *n,
            Args::Plain(v) => v.len(),
        }
    }

    /// Argument `i` (1-based), `None` when absent; numbers come back as exact
    /// `Value::Number`s when the arguments are packed.
    pub(crate) fn get(&self, i: usize) -> LibResult<Option<Value>> {
        if i == 0 || i > self.len() {
            return Ok(None);
        }
        match self {
            Args::Packed(t, _) => {
                let v: Value = t.raw_get(i)?;
                Ok(Some(exact(t, Value::Number(i as f64), v)))
            }
            Args::Plain(v) => Ok(Some(v[i - 1].clone())),
        }
    }

    /// `luaL_checknumber`.
    pub(crate) fn check_number(&self, lua: &Lua, i: usize, fname: &str) -> LibResult<f64> {
        let v = self.get(i)?;
        match v.as_ref().and_then(|v| to_number(lua, v)) {
            Some(n) => Ok(n),
            None => arg_error(
                i,
                fname,
                format!("number expected, got {}", arg_type_name(v.as_ref())),
            ),
        }
    }

    /// `luaL_checkinteger`: the number truncated as Lua 5.1 does on x86-64.
    pub(crate) fn check_integer(&self, lua: &Lua, i: usize, fname: &str) -> LibResult<i64> {
        Ok(double_to_i64(self.check_number(lua, i, fname)?))
    }

    /// `luaL_optinteger`: `default` when the argument is absent or nil.
    pub(crate) fn opt_integer(
        &self,
        lua: &Lua,
        i: usize,
        fname: &str,
        default: i64,
    ) -> LibResult<i64> {
        match self.get(i)? {
            None | Some(Value::Nil) => Ok(default),
            Some(_) => self.check_integer(lua, i, fname),
        }
    }

    /// `luaL_checklstring`: strings, and numbers converted with `%.14g`.
    pub(crate) fn check_bytes(&self, i: usize, fname: &str) -> LibResult<Vec<u8>> {
        let v = self.get(i)?;
        match v.as_ref().and_then(to_bytes) {
            Some(b) => Ok(b),
            None => arg_error(
                i,
                fname,
                format!("string expected, got {}", arg_type_name(v.as_ref())),
            ),
        }
    }
}

/// Reads a value found at `key` of `t` again as an exact number when mlua may have
/// rounded it (see the module docs); other values pass through.
pub(crate) fn exact(t: &Table, key: Value, v: Value) -> Value {
    match v {
        Value::Integer(i) => match t.raw_get::<f64>(key) {
            Ok(n) if (n - i as f64).abs() < 1.0 => Value::Number(n),
            _ => Value::Number(i as f64),
        },
        other => other,
    }
}

/// A Lua number as `f64`, if `v` is one.
pub(crate) fn num(v: &Value) -> Option<f64> {
    match v {
        Value::Integer(i) => Some(*i as f64),
        Value::Number(n) => Some(*n),
        _ => None,
    }
}

/// `lua_tonumber`: numbers, and strings Lua can convert.
pub(crate) fn to_number(lua: &Lua, v: &Value) -> Option<f64> {
    match v {
        Value::String(_) => lua.coerce_number(v.clone()).ok().flatten(),
        _ => num(v),
    }
}

/// `lua_tolstring`: strings, and numbers formatted as Lua 5.1 does (`%.14g`).
pub(crate) fn to_bytes(v: &Value) -> Option<Vec<u8>> {
    match v {
        Value::String(s) => Some(s.as_bytes().to_vec()),
        _ => num(v).map(|n| fmt_g(n, 14).into_bytes()),
    }
}

/// `lua_typename(lua_type(v))`.
pub(crate) fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Nil => "nil",
        Value::Boolean(_) => "boolean",
        Value::LightUserData(_) | Value::UserData(_) => "userdata",
        Value::Integer(_) | Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Table(_) => "table",
        Value::Function(_) => "function",
        Value::Thread(_) => "thread",
        _ => "userdata",
    }
}

/// As [`type_name`], with "no value" for an absent argument (as `luaL_typerror`).
pub(crate) fn arg_type_name(v: Option<&Value>) -> &'static str {
    v.map_or("no value", type_name)
}

/// C's `printf("%.<prec>g", n)`, glibc's exact output.
pub(crate) fn fmt_g(n: f64, prec: i32) -> String {
    let mut buf = [0u8; 64];
    let fmt = b"%.*g\0";
    // SAFETY: the buffer is large enough for any %g output with precision <= 17 (at most
    // 24 bytes) and snprintf never writes past the given size.
    let len = unsafe {
        libc::snprintf(
            buf.as_mut_ptr() as *mut libc::c_char,
            buf.len(),
            fmt.as_ptr() as *const libc::c_char,
            prec as libc::c_int,
            n,
        )
    };
    let len = (len.max(0) as usize).min(buf.len() - 1);
    String::from_utf8_lossy(&buf[..len]).into_owned()
}

/// A C cast from double to a 64-bit integer as x86-64 performs it: truncation, and
/// `i64::MIN` for NaN and out-of-range values.
pub(crate) fn double_to_i64(n: f64) -> i64 {
    const LIMIT: f64 = 9_223_372_036_854_775_808.0;
    if n.is_nan() || !(-LIMIT..LIMIT).contains(&n) {
        i64::MIN
    } else {
        n as i64
    }
}

/// A C cast from double to a 32-bit `int` as x86-64 performs it.
pub(crate) fn double_to_i32(n: f64) -> i32 {
    if n.is_nan() || n >= 2_147_483_648.0 || n <= -2_147_483_649.0 {
        i32::MIN
    } else {
        n as i32
    }
}

#[cfg(test)]
pub(crate) mod testutil {
    use mlua::{Lua, Value};

    pub fn lua() -> Lua {
        let lua = Lua::new();
        super::open_all(&lua).expect("open_all");
        lua
    }

    /// Runs `src` (a chunk ending in `return ...`) and renders its first result as
    /// a byte string: strings as is, numbers with %.17g, booleans, nil.
    pub fn eval(lua: &Lua, src: &str) -> Vec<u8> {
        let v: Value = lua
            .load(src)
            .set_name("=user_script")
            .eval()
            .unwrap_or_else(|e| panic!("{src}: {e}"));
        match v {
            Value::String(s) => s.as_bytes().to_vec(),
            Value::Nil => b"nil".to_vec(),
            Value::Boolean(b) => b.to_string().into_bytes(),
            other => match super::num(&other) {
                Some(n) => super::fmt_g(n, 17).into_bytes(),
                None => format!("{other:?}").into_bytes(),
            },
        }
    }

    pub fn eval_str(lua: &Lua, src: &str) -> String {
        String::from_utf8_lossy(&eval(lua, src)).into_owned()
    }

    /// The error message `src` (one line) raises, exactly as `pcall` sees it.
    pub fn err_raw(lua: &Lua, src: &str) -> String {
        let wrapped = format!(
            "local ok, e = pcall(function() {src} end) \
             if ok then return 'NO ERROR' end return e"
        );
        eval_str(lua, &wrapped)
    }

    /// The error message `src` (one line) raises, as `pcall` sees it, without the
    /// "user_script:1: " position prefix, which is checked.
    pub fn err(lua: &Lua, src: &str) -> String {
        let msg = err_raw(lua, src);
        match msg.strip_prefix("user_script:1: ") {
            Some(rest) => rest.to_string(),
            None => panic!("{src}: no position prefix in {msg:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testutil::{eval_str, lua};

    // Error positions and function names as redis-server 7.0.15 reports them: the
    // caller's "chunk:line: " prefix, none when called straight from pcall, and the
    // name the call site uses.
    #[test]
    fn error_positions_and_names() {
        let lua = lua();
        let cases = [
            (
                "local function f() return cjson.decode('[') end return select(2, pcall(f))",
                "user_script:1: Expected value but found T_END at character 2",
            ),
            (
                "return select(2, pcall(function()\nlocal x = 1\nlocal y = struct.pack('z')\nend))",
                "user_script:3: bad argument #1 to 'pack' (invalid format option 'z')",
            ),
            (
                "local b = bit.band return select(2, pcall(function() return b() end))",
                "user_script:1: bad argument #1 to 'b' (number expected, got no value)",
            ),
            (
                "return select(2, pcall(bit.band))",
                "bad argument #1 to '?' (number expected, got no value)",
            ),
            (
                "return select(2, pcall(cmsgpack.unpack, '\\193'))",
                "Bad data format in input.",
            ),
        ];
        for (src, want) in cases {
            assert_eq!(eval_str(&lua, src), want, "{src}");
        }
    }

    #[test]
    fn globals_are_installed() {
        let lua = lua();
        let src = "local n = 0 \
                   for _, lib in ipairs({cjson, cmsgpack, bit, struct}) do \
                     for _, v in pairs(lib) do if type(v) == 'function' then n = n + 1 end end \
                   end return n";
        // cjson 10 (with new), cmsgpack 4, bit 12, struct 3.
        assert_eq!(eval_str(&lua, src), "29");
    }
}
