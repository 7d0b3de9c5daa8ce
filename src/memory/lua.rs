//! Scripts on `memory://`: Lua 5.1 (the version Redis embeds), sandboxed to the base,
//! string, table and math libraries, with `redis.call` / `redis.pcall` bridged to the
//! engine under Redis's conversion rules. A script runs while its caller holds the
//! keyspace's lock: nothing else runs in between.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mlua::{Function, HookTriggers, Lua, LuaOptions, MultiValue, StdLib, Table, VmState};
use redis::Value;

use super::commands::{self, error, format_g, parse_i64, Ctx};

/// A script running longer than this is stopped with an error (Redis would answer BUSY
/// to everyone else and wait for SCRIPT KILL; here the caller's own thread runs it).
const SCRIPT_TIME_LIMIT: Duration = Duration::from_secs(5);

const SETUP: &str = r#"
local slot = {}
redis = {}
redis.LOG_DEBUG, redis.LOG_VERBOSE, redis.LOG_NOTICE, redis.LOG_WARNING = 0, 1, 2, 3
redis.call = function(...)
  local f = slot.f
  if not f then error('redis.call is only available inside a script', 2) end
  local r = f(...)
  if type(r) == 'table' and rawget(r, 'err') ~= nil then error(r, 0) end
  return r
end
redis.pcall = function(...)
  local f = slot.f
  if not f then error('redis.pcall is only available inside a script', 2) end
  return f(...)
end
redis.error_reply = function(msg)
  if type(msg) ~= 'string' then error('wrong number or type of arguments', 2) end
  return { err = msg }
end
redis.status_reply = function(msg)
  if type(msg) ~= 'string' then error('wrong number or type of arguments', 2) end
  return { ok = msg }
end
redis.log = function() end
redis.setresp = function(v)
  if v ~= 2 then error('memory:// scripts speak RESP2 only', 2) end
end
redis.set_repl = function() end
redis.replicate_commands = function() return true end
redis.REPL_ALL, redis.REPL_AOF, redis.REPL_REPLICA, redis.REPL_SLAVE, redis.REPL_NONE = 3, 1, 2, 2, 0
loadfile, dofile, print = nil, nil, nil
KEYS, ARGV = {}, {}
-- as Redis 7.0: the globals are a read-only table, and an unknown global is not read
setmetatable(_G, {
  __newindex = function()
    error("Attempt to modify a readonly table", 2)
  end,
  __index = function(_, k)
    error("Script attempted to access nonexistent global variable '" .. tostring(k) .. "'", 2)
  end,
})
local run = function(f, handler) return xpcall(f, handler) end
return function(f) slot.f = f end, run
"#;

/// Where the Lua body of `redis.call` is kept (the registry).
const CALL_KEY: &str = "nestjs_redis_native.redis_call";

/// `redis.call`: calls its Lua body (in the registry) with its arguments, from a C frame.
unsafe extern "C-unwind" fn call_trampoline(state: *mut mlua::ffi::lua_State) -> std::ffi::c_int {
  use mlua::ffi;
  let n = ffi::lua_gettop(state);
  ffi::lua_getfield(
    state,
    ffi::LUA_REGISTRYINDEX,
    c"nestjs_redis_native.redis_call".as_ptr(),
  );
  ffi::lua_insert(state, 1);
  ffi::lua_call(state, n, ffi::LUA_MULTRET);
  ffi::lua_gettop(state)
}

pub struct Scripting {
  lua: Lua,
  /// Installs (or with nil removes) the dispatch function of the running script.
  set_dispatch: Function,
  /// `xpcall(f, handler)`.
  run: Function,
  /// The message handler of `run`: notes where in the script an error was raised.
  handler: Function,
  /// That line (Redis 7.0's `on @user_script:<line>.`).
  error_line: Arc<Mutex<Option<usize>>>,
  /// sha1 (lowercase hex) → compiled script.
  cache: HashMap<String, Function>,
  started: Arc<Mutex<Option<Instant>>>,
}

pub fn sha1_hex(body: &[u8]) -> String {
  sha1_smol::Sha1::from(body).digest().to_string()
}

impl Scripting {
  pub fn new() -> mlua::Result<Scripting> {
    let lua = Lua::new_with(
      StdLib::TABLE | StdLib::STRING | StdLib::MATH,
      LuaOptions::default(),
    )?;
    let (set_dispatch, run): (Function, Function) = lua.load(SETUP).set_name("@setup").call(())?;
    let redis: Table = lua.globals().raw_get("redis")?;
    // redis.call is a C function, as in Redis: `return redis.call(...)` then keeps the
    // script's frame (a tail call to a Lua function would drop it), which gives an error's
    // `on @user_script:<line>.`
    let call: Function = redis.raw_get("call")?;
    lua.set_named_registry_value(CALL_KEY, call)?;
    // SAFETY: `call_trampoline` is a plain lua_CFunction that only uses the Lua C API on
    // the state it is given.
    redis.raw_set("call", unsafe { lua.create_c_function(call_trampoline)? })?;
    // as Redis: exactly one argument, read with lua_tolstring (a number as Lua prints it;
    // nil, a table... as "")
    redis.set(
      "sha1hex",
      lua.create_function(|lua, args: MultiValue| {
        if args.len() != 1 {
          return Err(mlua::Error::RuntimeError(
            "wrong number of arguments".into(),
          ));
        }
        let text = match args.into_iter().next() {
          Some(v @ (mlua::Value::String(_) | mlua::Value::Integer(_) | mlua::Value::Number(_))) => {
            lua
              .coerce_string(v)?
              .map(|s| s.as_bytes().to_vec())
              .unwrap_or_default()
          }
          _ => Vec::new(),
        };
        lua.create_string(sha1_hex(&text))
      })?,
    )?;
    // Redis's error handler: the line of the script's function that raised the error (or
    // called the C function, or redis.call, that did)
    let error_line: Arc<Mutex<Option<usize>>> = Arc::default();
    let noted = error_line.clone();
    let handler = lua.create_function(move |lua, err: mlua::Value| {
      let mut line = None;
      for level in 1..1000 {
        let Some((source, current)) = lua.inspect_stack(level, |d| {
          (d.source().source.map(|s| s.into_owned()), d.current_line())
        }) else {
          break;
        };
        if source.as_deref() == Some("@user_script") {
          line = current;
          break;
        }
      }
      *noted.lock().unwrap_or_else(|e| e.into_inner()) = line;
      Ok(err)
    })?;
    let started: Arc<Mutex<Option<Instant>>> = Arc::default();
    let clock = started.clone();
    lua.set_hook(
      HookTriggers::new().every_nth_instruction(10_000),
      move |_, _| {
        let since = *clock.lock().unwrap_or_else(|e| e.into_inner());
        match since {
          Some(t) if t.elapsed() > SCRIPT_TIME_LIMIT => Err(mlua::Error::RuntimeError(format!(
            "script killed: it ran longer than {} ms (memory:// stops a script past that)",
            SCRIPT_TIME_LIMIT.as_millis()
          ))),
          _ => Ok(VmState::Continue),
        }
      },
    )?;
    Ok(Scripting {
      lua,
      set_dispatch,
      run,
      handler,
      error_line,
      cache: HashMap::new(),
      started,
    })
  }

  fn compile(&mut self, body: &[u8]) -> Result<(String, Function), Value> {
    let sha = sha1_hex(body);
    if let Some(f) = self.cache.get(&sha) {
      return Ok((sha, f.clone()));
    }
    match self.lua.load(body).set_name("@user_script").into_function() {
      Ok(f) => {
        self.cache.insert(sha.clone(), f.clone());
        Ok((sha, f))
      }
      Err(e) => Err(error(&format!(
        "ERR Error compiling script (new function): {}",
        lua_message(&e)
      ))),
    }
  }

  /// `SCRIPT LOAD | EXISTS | FLUSH`.
  pub fn script(&mut self, args: &[Vec<u8>]) -> Value {
    let sub = String::from_utf8_lossy(&args[1]).to_ascii_uppercase();
    match (sub.as_str(), args.len()) {
      ("LOAD", 3) => match self.compile(&args[2]) {
        Ok((sha, _)) => Value::BulkString(sha.into_bytes()),
        Err(e) => e,
      },
      ("EXISTS", n) if n >= 3 => Value::Array(
        args[2..]
          .iter()
          .map(|s| {
            let sha = String::from_utf8_lossy(s).to_ascii_lowercase();
            Value::Int(self.cache.contains_key(&sha) as i64)
          })
          .collect(),
      ),
      ("FLUSH", 2) => {
        self.cache.clear();
        Value::Okay
      }
      ("FLUSH", 3)
        if args[2].eq_ignore_ascii_case(b"ASYNC") || args[2].eq_ignore_ascii_case(b"SYNC") =>
      {
        self.cache.clear();
        Value::Okay
      }
      ("KILL", 2) => error("NOTBUSY No scripts in execution right now."),
      ("LOAD" | "EXISTS" | "FLUSH" | "KILL", _) => error(&format!(
        "ERR wrong number of arguments for 'script|{}' command",
        sub.to_ascii_lowercase()
      )),
      _ => error(&format!(
        "ERR unknown subcommand '{sub}': memory:// does not support it"
      )),
    }
  }

  /// `EVAL` / `EVALSHA` (and their `_RO` forms): `args[0]` is the command's name.
  pub fn eval(&mut self, ctx: &mut Ctx, args: &[Vec<u8>]) -> Value {
    let by_sha = args[0].to_ascii_uppercase().starts_with(b"EVALSHA");
    // as Redis 7.0: the number of keys first (a refused EVAL caches nothing)
    let numkeys = match parse_i64(&args[2]) {
      Some(n) if n >= 0 && n as usize > args.len() - 3 => {
        return error("ERR Number of keys can't be greater than number of args")
      }
      Some(n) if n < 0 => return error("ERR Number of keys can't be negative"),
      Some(n) => n as usize,
      None => return error(commands::NOT_INT),
    };
    let (sha, function) = if by_sha {
      let sha = String::from_utf8_lossy(&args[1]).to_ascii_lowercase();
      match self.cache.get(&sha) {
        Some(f) => (sha, f.clone()),
        None => return error("NOSCRIPT No matching script. Please use EVAL."),
      }
    } else {
      match self.compile(&args[1]) {
        Ok(found) => found,
        Err(e) => return e,
      }
    };
    let (keys, argv) = args[3..].split_at(numkeys);
    *self.error_line.lock().unwrap_or_else(|e| e.into_inner()) = None;
    let outcome = self.call(ctx, &function, keys, argv);
    let line = *self.error_line.lock().unwrap_or_else(|e| e.into_inner());
    // as Redis 7.0: where the error was raised, when it is known
    let suffix = match line {
      Some(line) => format!(" script: {sha}, on @user_script:{line}."),
      None => String::new(),
    };
    match outcome {
      Ok(v) => v,
      Err(ScriptError::Reply(text)) => error(&format!("{text}{suffix}")),
      Err(ScriptError::Lua(text)) => error(&format!("ERR {text}{suffix}")),
    }
  }

  fn call(
    &mut self,
    ctx: &mut Ctx,
    function: &Function,
    keys: &[Vec<u8>],
    argv: &[Vec<u8>],
  ) -> Result<Value, ScriptError> {
    let lua = &self.lua;
    let as_table = |items: &[Vec<u8>]| -> mlua::Result<Table> {
      let t = lua.create_table_with_capacity(items.len(), 0)?;
      for (i, item) in items.iter().enumerate() {
        t.raw_set(i + 1, lua.create_string(item)?)?;
      }
      Ok(t)
    };
    let internal = |e: mlua::Error| ScriptError::Lua(lua_message(&e));
    let globals = lua.globals();
    globals
      .set("KEYS", as_table(keys).map_err(internal)?)
      .map_err(internal)?;
    globals
      .set("ARGV", as_table(argv).map_err(internal)?)
      .map_err(internal)?;
    *self.started.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
    let ctx = RefCell::new(ctx);
    let outcome = lua.scope(|scope| {
      let dispatch = scope.create_function(|lua, args: MultiValue| {
        let reply = match command_args(&args) {
          // as Redis 7.0's scriptCall: an unknown command, a wrong number of arguments
          Ok(args) if script_refusal(&args).is_some() => {
            error(script_refusal(&args).unwrap_or_default())
          }
          Ok(args) => {
            let mut ctx = ctx
              .try_borrow_mut()
              .map_err(|_| mlua::Error::RuntimeError("redis.call re-entered".into()))?;
            commands::execute(&mut ctx, &args, true)
          }
          Err(e) => error(e),
        };
        to_lua(lua, reply)
      })?;
      self.set_dispatch.call::<()>(dispatch)?;
      let result = self
        .run
        .call::<(bool, mlua::Value)>((function.clone(), self.handler.clone()));
      self.set_dispatch.call::<()>(mlua::Value::Nil)?;
      result
    });
    *self.started.lock().unwrap_or_else(|e| e.into_inner()) = None;
    // emptied, not removed: a global set to nil would be a new one next time
    let _ = lua.create_table().and_then(|t| globals.raw_set("KEYS", t));
    let _ = lua.create_table().and_then(|t| globals.raw_set("ARGV", t));
    match outcome {
      Ok((true, value)) => Ok(from_lua(&value)),
      Ok((false, mlua::Value::Table(t))) => match t.raw_get::<mlua::Value>("err") {
        Ok(mlua::Value::String(s)) => Err(ScriptError::Reply(s.to_string_lossy())),
        _ => Err(ScriptError::Lua(
          "a script raised a table that is not an error reply".into(),
        )),
      },
      Ok((false, mlua::Value::String(s))) => Err(ScriptError::Lua(s.to_string_lossy())),
      Ok((false, mlua::Value::Error(e))) => Err(ScriptError::Lua(lua_message(&e))),
      Ok((false, other)) => Err(ScriptError::Lua(format!(
        "a script raised {}",
        other.type_name()
      ))),
      Err(e) => Err(ScriptError::Lua(lua_message(&e))),
    }
  }
}

enum ScriptError {
  /// An error reply raised by `redis.call` or `error({ err = ... })`: keeps its code.
  Reply(String),
  /// A Lua error: becomes `ERR <message>`.
  Lua(String),
}

fn lua_message(e: &mlua::Error) -> String {
  match e {
    mlua::Error::RuntimeError(m) | mlua::Error::SyntaxError { message: m, .. } => m.clone(),
    mlua::Error::CallbackError { cause, .. } => lua_message(cause),
    other => other.to_string(),
  }
  .lines()
  .next()
  .unwrap_or_default()
  .to_string()
}

/// Why Redis 7.0 refuses a command called from a script before running it: a command it
/// does not know (one memory:// leaves out but Redis has keeps memory://'s own text), or
/// the wrong number of arguments.
fn script_refusal(args: &[Vec<u8>]) -> Option<&'static str> {
  let name = String::from_utf8_lossy(&args[0]).to_ascii_uppercase();
  match commands::spec(&name) {
    None if !REDIS_COMMANDS.contains(&name.as_str()) => {
      Some("ERR Unknown Redis command called from script")
    }
    Some(s) => {
      let n = args.len() as i64;
      ((s.arity > 0 && n != s.arity) || (s.arity < 0 && n < -s.arity))
        .then_some("ERR Wrong number of args calling Redis command from script")
    }
    None => None,
  }
}

/// The commands of Redis 7.0 (top level).
const REDIS_COMMANDS: &[&str] = &[
  "ACL",
  "APPEND",
  "ASKING",
  "AUTH",
  "BGREWRITEAOF",
  "BGSAVE",
  "BITCOUNT",
  "BITFIELD",
  "BITFIELD_RO",
  "BITOP",
  "BITPOS",
  "BLMOVE",
  "BLMPOP",
  "BLPOP",
  "BRPOP",
  "BRPOPLPUSH",
  "BZMPOP",
  "BZPOPMAX",
  "BZPOPMIN",
  "CLIENT",
  "CLUSTER",
  "COMMAND",
  "CONFIG",
  "COPY",
  "DBSIZE",
  "DEBUG",
  "DECR",
  "DECRBY",
  "DEL",
  "DISCARD",
  "DUMP",
  "ECHO",
  "EVAL",
  "EVALSHA",
  "EVALSHA_RO",
  "EVAL_RO",
  "EXEC",
  "EXISTS",
  "EXPIRE",
  "EXPIREAT",
  "EXPIRETIME",
  "FAILOVER",
  "FCALL",
  "FCALL_RO",
  "FLUSHALL",
  "FLUSHDB",
  "FUNCTION",
  "GEOADD",
  "GEODIST",
  "GEOHASH",
  "GEOPOS",
  "GEORADIUS",
  "GEORADIUSBYMEMBER",
  "GEORADIUSBYMEMBER_RO",
  "GEORADIUS_RO",
  "GEOSEARCH",
  "GEOSEARCHSTORE",
  "GET",
  "GETBIT",
  "GETDEL",
  "GETEX",
  "GETRANGE",
  "GETSET",
  "HDEL",
  "HELLO",
  "HEXISTS",
  "HGET",
  "HGETALL",
  "HINCRBY",
  "HINCRBYFLOAT",
  "HKEYS",
  "HLEN",
  "HMGET",
  "HMSET",
  "HRANDFIELD",
  "HSCAN",
  "HSET",
  "HSETNX",
  "HSTRLEN",
  "HVALS",
  "INCR",
  "INCRBY",
  "INCRBYFLOAT",
  "INFO",
  "KEYS",
  "LASTSAVE",
  "LATENCY",
  "LCS",
  "LINDEX",
  "LINSERT",
  "LLEN",
  "LMOVE",
  "LMPOP",
  "LOLWUT",
  "LPOP",
  "LPOS",
  "LPUSH",
  "LPUSHX",
  "LRANGE",
  "LREM",
  "LSET",
  "LTRIM",
  "MEMORY",
  "MGET",
  "MIGRATE",
  "MODULE",
  "MONITOR",
  "MOVE",
  "MSET",
  "MSETNX",
  "MULTI",
  "OBJECT",
  "PERSIST",
  "PEXPIRE",
  "PEXPIREAT",
  "PEXPIRETIME",
  "PFADD",
  "PFCOUNT",
  "PFDEBUG",
  "PFMERGE",
  "PFSELFTEST",
  "PING",
  "PSETEX",
  "PSUBSCRIBE",
  "PSYNC",
  "PTTL",
  "PUBLISH",
  "PUBSUB",
  "PUNSUBSCRIBE",
  "QUIT",
  "RANDOMKEY",
  "READONLY",
  "READWRITE",
  "RENAME",
  "RENAMENX",
  "REPLCONF",
  "REPLICAOF",
  "RESET",
  "RESTORE",
  "RESTORE-ASKING",
  "ROLE",
  "RPOP",
  "RPOPLPUSH",
  "RPUSH",
  "RPUSHX",
  "SADD",
  "SAVE",
  "SCAN",
  "SCARD",
  "SCRIPT",
  "SDIFF",
  "SDIFFSTORE",
  "SELECT",
  "SET",
  "SETBIT",
  "SETEX",
  "SETNX",
  "SETRANGE",
  "SHUTDOWN",
  "SINTER",
  "SINTERCARD",
  "SINTERSTORE",
  "SISMEMBER",
  "SLAVEOF",
  "SLOWLOG",
  "SMEMBERS",
  "SMISMEMBER",
  "SMOVE",
  "SORT",
  "SORT_RO",
  "SPOP",
  "SPUBLISH",
  "SRANDMEMBER",
  "SREM",
  "SSCAN",
  "SSUBSCRIBE",
  "STRLEN",
  "SUBSCRIBE",
  "SUBSTR",
  "SUNION",
  "SUNIONSTORE",
  "SUNSUBSCRIBE",
  "SWAPDB",
  "SYNC",
  "TIME",
  "TOUCH",
  "TTL",
  "TYPE",
  "UNLINK",
  "UNSUBSCRIBE",
  "UNWATCH",
  "WAIT",
  "WATCH",
  "XACK",
  "XADD",
  "XAUTOCLAIM",
  "XCLAIM",
  "XDEL",
  "XGROUP",
  "XINFO",
  "XLEN",
  "XPENDING",
  "XRANGE",
  "XREAD",
  "XREADGROUP",
  "XREVRANGE",
  "XSETID",
  "XTRIM",
  "ZADD",
  "ZCARD",
  "ZCOUNT",
  "ZDIFF",
  "ZDIFFSTORE",
  "ZINCRBY",
  "ZINTER",
  "ZINTERCARD",
  "ZINTERSTORE",
  "ZLEXCOUNT",
  "ZMPOP",
  "ZMSCORE",
  "ZPOPMAX",
  "ZPOPMIN",
  "ZRANDMEMBER",
  "ZRANGE",
  "ZRANGEBYLEX",
  "ZRANGEBYSCORE",
  "ZRANGESTORE",
  "ZRANK",
  "ZREM",
  "ZREMRANGEBYLEX",
  "ZREMRANGEBYRANK",
  "ZREMRANGEBYSCORE",
  "ZREVRANGE",
  "ZREVRANGEBYLEX",
  "ZREVRANGEBYSCORE",
  "ZREVRANK",
  "ZSCAN",
  "ZSCORE",
  "ZUNION",
  "ZUNIONSTORE",
];

/// The arguments of `redis.call`: strings and numbers only, as Redis requires.
fn command_args(args: &MultiValue) -> Result<Vec<Vec<u8>>, &'static str> {
  if args.is_empty() {
    return Err("ERR Please specify at least one argument for this redis lib call");
  }
  args
    .iter()
    .map(|v| match v {
      mlua::Value::String(s) => Ok(s.as_bytes().to_vec()),
      mlua::Value::Integer(i) => Ok(i.to_string().into_bytes()),
      mlua::Value::Number(n) => Ok(lua_number_arg(*n).into_bytes()),
      _ => Err("ERR Lua redis lib command arguments must be strings or integers"),
    })
    .collect()
}

/// A Lua number given to `redis.call`, as Redis 7.0 writes it (`%.17g`).
fn lua_number_arg(n: f64) -> String {
  if n.is_infinite() {
    return if n > 0.0 { "inf".into() } else { "-inf".into() };
  }
  if n.is_nan() {
    return "nan".into();
  }
  format_g(n, 17)
}

/// A Redis reply as Lua sees it: integer → number, bulk → string, nil → false, array →
/// table, status → `{ ok = }`, error → `{ err = }`.
fn to_lua(lua: &Lua, v: Value) -> mlua::Result<mlua::Value> {
  Ok(match v {
    Value::Int(i) => mlua::Value::Integer(i),
    Value::BulkString(b) => mlua::Value::String(lua.create_string(&b)?),
    Value::Nil => mlua::Value::Boolean(false),
    Value::Okay => status(lua, "OK")?,
    Value::SimpleString(s) => status(lua, &s)?,
    Value::Double(d) => mlua::Value::Number(d),
    Value::Boolean(b) => mlua::Value::Boolean(b),
    Value::Array(items) | Value::Set(items) => {
      let t = lua.create_table_with_capacity(items.len(), 0)?;
      for (i, item) in items.into_iter().enumerate() {
        t.raw_set(i + 1, to_lua(lua, item)?)?;
      }
      mlua::Value::Table(t)
    }
    Value::ServerError(e) => {
      let t = lua.create_table()?;
      let text = match e.details() {
        Some(d) => format!("{} {d}", e.code()),
        None => e.code().to_string(),
      };
      t.raw_set("err", text)?;
      mlua::Value::Table(t)
    }
    other => mlua::Value::String(lua.create_string(format!("{other:?}"))?),
  })
}

fn status(lua: &Lua, s: &str) -> mlua::Result<mlua::Value> {
  let t = lua.create_table()?;
  t.raw_set("ok", s)?;
  Ok(mlua::Value::Table(t))
}

/// A script's return value as a Redis reply: number → integer (truncated), string →
/// bulk, true → 1, false/nil → nil, table → array up to the first nil, `{ ok = }` →
/// status, `{ err = }` → error.
fn from_lua(v: &mlua::Value) -> Value {
  match v {
    mlua::Value::Nil | mlua::Value::Boolean(false) => Value::Nil,
    mlua::Value::Boolean(true) => Value::Int(1),
    mlua::Value::Integer(i) => Value::Int(*i),
    // C's (long long) cast on x86-64: NaN and anything out of range give LLONG_MIN
    mlua::Value::Number(n) => Value::Int(
      if n.is_nan() || *n >= -(i64::MIN as f64) || *n < i64::MIN as f64 {
        i64::MIN
      } else {
        *n as i64
      },
    ),
    mlua::Value::String(s) => Value::BulkString(s.as_bytes().to_vec()),
    mlua::Value::Table(t) => {
      if let Ok(mlua::Value::String(e)) = t.raw_get::<mlua::Value>("err") {
        return error(&e.to_string_lossy());
      }
      if let Ok(mlua::Value::String(s)) = t.raw_get::<mlua::Value>("ok") {
        let s = s.to_string_lossy();
        return if s == "OK" {
          Value::Okay
        } else {
          Value::SimpleString(s)
        };
      }
      let mut out = Vec::new();
      for i in 1.. {
        match t.raw_get::<mlua::Value>(i) {
          Ok(mlua::Value::Nil) | Err(_) => break,
          Ok(item) => out.push(from_lua(&item)),
        }
      }
      Value::Array(out)
    }
    _ => Value::Nil,
  }
}
