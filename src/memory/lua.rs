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
-- as Redis 7: a script may neither create nor read an unknown global
setmetatable(_G, {
  __newindex = function(_, k)
    error("Script attempted to create global variable '" .. tostring(k) .. "'", 2)
  end,
  __index = function(_, k)
    error("Script attempted to access nonexistent global variable '" .. tostring(k) .. "'", 2)
  end,
})
local run = function(f) return pcall(f) end
return function(f) slot.f = f end, run
"#;

pub struct Scripting {
  lua: Lua,
  /// Installs (or with nil removes) the dispatch function of the running script.
  set_dispatch: Function,
  /// `pcall(f)`.
  run: Function,
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
    redis.set(
      "sha1hex",
      lua.create_function(|lua, s: mlua::LuaString| lua.create_string(sha1_hex(&s.as_bytes())))?,
    )?;
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
    let numkeys = match parse_i64(&args[2]) {
      Some(n) if n < 0 => return error("ERR Number of keys can't be negative"),
      Some(n) if n as usize > args.len() - 3 => {
        return error("ERR Number of keys can't be greater than number of args")
      }
      Some(n) => n as usize,
      None => return error(commands::NOT_INT),
    };
    let (keys, argv) = args[3..].split_at(numkeys);
    match self.call(ctx, &function, keys, argv) {
      Ok(v) => v,
      Err(ScriptError::Reply(text)) => error(&format!("{text} script: {sha}, on @user_script.")),
      Err(ScriptError::Lua(text)) => error(&format!("ERR {text} script: {sha}, on @user_script.")),
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
      let result = self.run.call::<(bool, mlua::Value)>(function.clone());
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
    mlua::Value::Number(n) => Value::Int(*n as i64),
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
