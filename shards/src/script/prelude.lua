-- The scripting sandbox, run once per Lua state (chunk name "=redis": frames from this chunk
-- are skipped when an error's script line is looked up).
--
-- Scripts run with `env` as their environment: an empty table that reads through to `G` (the
-- globals scripts may use) and refuses every write, as Redis 7's read-only globals do. `G`
-- raises on a read of a missing global. KEYS and ARGV are set in `G` by the host before each
-- call. Library tables are read-only proxies of the real ones.
local rust = ...
local dbg = debug
local real_pcall, real_error, real_type, real_tostring = pcall, error, type, tostring
local real_setmetatable, real_getmetatable, real_rawset = setmetatable, getmetatable, rawset
local real_loadstring, real_load, real_setfenv = loadstring, load, setfenv
local real_create, real_resume, real_status = coroutine.create, coroutine.resume, coroutine.status
local sbyte, sfind, floor = string.byte, string.find, math.floor

local protected = real_setmetatable({}, { __mode = "k" })

local function readonly()
  real_error("Attempt to modify a readonly table", 2)
end

local function protect(t)
  local proxy = {}
  protected[proxy] = true
  return real_setmetatable(proxy, { __index = t, __newindex = readonly })
end

-- What getmetatable shows for a protected table: nothing, except for the globals (Redis shows
-- a table there); never the real metatable (its __index is the table behind the proxy).
local globals_mt_stub = protect({
  __index = function(_, k)
    real_error("Script attempted to access nonexistent global variable '" .. real_tostring(k) .. "'", 2)
  end,
  __newindex = readonly,
})

local G = {}
local env = {}
protected[env] = true
real_setmetatable(G, {
  __index = function(_, k)
    real_error("Script attempted to access nonexistent global variable '" .. real_tostring(k) .. "'", 2)
  end,
})
real_setmetatable(env, { __index = G, __newindex = readonly })

for _, name in ipairs({
  "assert", "collectgarbage", "error", "gcinfo", "ipairs", "next", "pairs", "rawequal",
  "rawget", "select", "tonumber", "tostring", "type", "unpack", "xpcall", "_VERSION",
}) do
  G[name] = _G[name]
end

-- Errors raised as tables ({err = …}, as redis.call raises them) reach a script's pcall as
-- their message, as in Redis 7.
local function unwrap(ok, ...)
  if ok then
    return ok, ...
  end
  local e = ...
  if real_type(e) == "table" and real_type(rawget(e, "err")) == "string" then
    return false, rawget(e, "err")
  end
  return false, e
end
G.pcall = function(f, ...)
  return unwrap(real_pcall(f, ...))
end

G.rawset = function(t, k, v)
  if protected[t] then
    real_error("Attempt to modify a readonly table", 0)
  end
  return real_rawset(t, k, v)
end
G.setmetatable = function(t, mt)
  if protected[t] then
    real_error("Attempt to modify a readonly table", 0)
  end
  return real_setmetatable(t, mt)
end
local string_mt = real_getmetatable("")
local string_mt_stub
G.getmetatable = function(v)
  if protected[v] then
    if v == env then
      return globals_mt_stub
    end
    return nil
  end
  local mt = real_getmetatable(v)
  if mt == string_mt then
    return string_mt_stub
  end
  return mt
end

-- Chunks a script loads run in the sandbox too; bytecode is refused (it can crash Lua 5.1).
local function sandboxed(f, err)
  if f then
    real_setfenv(f, env)
  end
  return f, err
end
G.loadstring = function(s, name)
  if real_type(s) == "string" and sbyte(s, 1) == 27 then
    return nil, "binary chunks are not allowed"
  end
  return sandboxed(real_loadstring(s, name))
end
G.load = function(f, name)
  local first = true
  local function reader()
    local piece = f()
    if first and real_type(piece) == "string" and sbyte(piece, 1) == 27 then
      real_error("binary chunks are not allowed", 0)
    end
    first = false
    return piece
  end
  return sandboxed(real_load(reader, name))
end

local math_copy = {}
for k, v in pairs(math) do
  math_copy[k] = v
end
math_copy.random = rust.random
math_copy.randomseed = rust.randomseed
G.math = protect(math_copy)
G.string = protect(string)
G.table = protect(table)
string_mt_stub = protect({ __index = G.string })

-- Coroutines a script creates get the count hook too (SCRIPT KILL, BUSY, timeouts).
local sethook = rust.sethook
local co_copy = {}
for k, v in pairs(coroutine) do
  co_copy[k] = v
end
co_copy.create = function(f)
  local co = real_create(f)
  sethook(co)
  return co
end
co_copy.wrap = function(f)
  local co = co_copy.create(f)
  return function(...)
    -- No tail calls here: the caller's frame must stay for error positions.
    local results = { real_resume(co, ...) }
    if results[1] then
      return unpack(results, 2, table.maxn(results))
    end
    local e = results[2]
    if real_type(e) == "string" then
      real_error(e, 2)
    end
    real_error(e, 0)
  end
end
G.coroutine = protect(co_copy)


local redis = {
  call = rust.call,
  pcall = rust.pcall,
  sha1hex = rust.sha1hex,
  error_reply = rust.error_reply,
  status_reply = rust.status_reply,
  log = rust.log,
  setresp = rust.setresp,
  set_repl = rust.set_repl,
  replicate_commands = function()
    return true
  end,
  breakpoint = function()
    return false
  end,
  debug = function() end,
  REDIS_VERSION = rust.version,
  REDIS_VERSION_NUM = rust.version_num,
  LOG_DEBUG = 0,
  LOG_VERBOSE = 1,
  LOG_NOTICE = 2,
  LOG_WARNING = 3,
  REPL_NONE = 0,
  REPL_AOF = 1,
  REPL_SLAVE = 2,
  REPL_REPLICA = 2,
  REPL_ALL = 3,
}
G.redis = protect(redis)
for _, name in ipairs({ "cjson", "cmsgpack", "bit", "struct" }) do
  local lib = rawget(_G, name)
  if lib then
    G[name] = protect(lib)
  end
end
G._G = env

-- The error handler: any error becomes {err = …, source = …, line = …}, where source and line
-- are the script's (the first frame that is neither C nor this chunk).
local function handler(err)
  local level = 2
  local info = dbg.getinfo(level, "Sl")
  while info and (info.what == "C" or info.what == "tail" or info.source == "=redis") do
    level = level + 1
    info = dbg.getinfo(level, "Sl")
  end
  -- A new table: the raised one may be anything, a sandbox table included.
  local out
  if real_type(err) == "table" then
    out = { err = rawget(err, "err") }
  else
    out = { err = "ERR " .. real_tostring(err) }
  end
  if info then
    out.source = info.source
    out.line = info.currentline
  end
  return out
end

local hook_here = rust.hook_here
local emit = rust.emit
local function run(f)
  hook_here()
  local ok, v = xpcall(f, handler)
  emit(ok, v, "err", "ok", "double", "big_number", "map", "set", "verbatim_string", "format", "string")
end

-- FCALL: the function gets the keys and the arguments as two tables.
local function run_with(f, keys, args)
  hook_here()
  local ok, v = xpcall(function()
    return f(keys, args)
  end, handler)
  emit(ok, v, "err", "ok", "double", "big_number", "map", "set", "verbatim_string", "format", "string")
end

-- Function libraries (FUNCTION LOAD). While a library's code runs, its globals are only
-- `redis` with register_function, log and the constants; the functions it registers run later
-- with the same globals as EVAL scripts.
local function missing(k)
  real_error("Script attempted to access nonexistent global variable '" .. real_tostring(k) .. "'", 3)
end
local loading = false
local current
local flag_names = {
  ["no-writes"] = true,
  ["allow-oom"] = true,
  ["allow-stale"] = true,
  ["no-cluster"] = true,
  ["allow-cross-slot-keys"] = true,
}
local function valid_name(name)
  return real_type(name) == "string" and #name > 0 and not sfind(name, "[^%w_]")
end
local function register(name, callback, flags, description)
  if not valid_name(name) then
    real_error("Library names can only contain letters, numbers, or underscores(_) and must be at least one character long", 0)
  end
  for _, f in ipairs(current) do
    if f.name == name then
      real_error("Function already exists in the library", 0)
    end
  end
  current[#current + 1] = { name = name, callback = callback, flags = flags, description = description }
end
-- `v`, if it has type `kind`; otherwise the registration fails with `msg`.
local function expect(v, kind, msg)
  if real_type(v) ~= kind then
    real_error(msg, 0)
  end
  return v
end

local function register_function(...)
  if not loading then
    real_error("redis.register_function can only be called on FUNCTION LOAD command", 0)
  end
  local n = select("#", ...)
  if n == 1 then
    local t = ...
    if real_type(t) ~= "table" then
      real_error("calling redis.register_function with a single argument is only applicable to Lua table (representing named arguments).", 0)
    end
    local name, callback, flags, description
    for k, v in pairs(t) do
      if real_type(v) == "number" and k ~= "callback" then
        v = real_tostring(v)
      end
      if k == "function_name" then
        name = expect(v, "string", "function_name argument given to redis.register_function must be a string")
      elseif k == "callback" then
        callback = expect(v, "function", "callback argument given to redis.register_function must be a function")
      elseif k == "description" then
        description = expect(v, "string", "description argument given to redis.register_function must be a string")
      elseif k == "flags" then
        if real_type(v) ~= "table" then
          real_error("flags argument to redis.register_function must be a table representing function flags", 0)
        end
        flags = {}
        for _, f in ipairs(v) do
          if real_type(f) ~= "string" or not flag_names[f] then
            real_error("unknown flag given", 0)
          end
          flags[#flags + 1] = f
        end
      else
        real_error("unknown argument given to redis.register_function", 0)
      end
    end
    if name == nil then
      real_error("redis.register_function must get a function name argument", 0)
    end
    if callback == nil then
      real_error("redis.register_function must get a callback argument", 0)
    end
    register(name, callback, flags or {}, description)
  elseif n == 2 then
    local name, callback = ...
    if real_type(name) == "number" then
      name = real_tostring(name)
    end
    if real_type(name) ~= "string" then
      real_error("first argument to redis.register_function must be a string", 0)
    end
    if real_type(callback) ~= "function" then
      real_error("second argument to redis.register_function must be a function", 0)
    end
    register(name, callback, {}, nil)
  else
    real_error("wrong number of arguments to redis.register_function", 0)
  end
end

local load_redis = { register_function = register_function }
for _, k in ipairs({ "log", "REDIS_VERSION", "REDIS_VERSION_NUM", "LOG_DEBUG", "LOG_VERBOSE", "LOG_NOTICE", "LOG_WARNING" }) do
  load_redis[k] = redis[k]
end
local load_redis_proxy = real_setmetatable({}, {
  __index = function(_, k)
    local v = load_redis[k]
    if v == nil then
      missing(k)
    end
    return v
  end,
  __newindex = readonly,
})
protected[load_redis_proxy] = true

-- A new library's environment, and the list its code registers functions in.
local function new_library()
  local lib_env = {}
  protected[lib_env] = true
  real_setmetatable(lib_env, {
    __index = function(_, k)
      if loading then
        if k == "redis" then
          return load_redis_proxy
        end
        missing(k)
      end
      local v = rawget(G, k)
      if v == nil then
        missing(k)
      end
      return v
    end,
    __newindex = readonly,
  })
  return lib_env, {}
end

-- Runs a library's code with registration on; answers like `run`.
local function load_library(f, registered)
  hook_here()
  loading, current = true, registered
  local results = { xpcall(f, handler) }
  loading, current = false, nil
  return unpack(results)
end

return env, G, run, run_with, new_library, load_library
