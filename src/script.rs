//! Lua scripts: loaded once, called by SHA (EVALSHA), reloaded transparently when the
//! server answers NOSCRIPT (after a restart or SCRIPT FLUSH).
//!
//! Every key a service script touches is one of its KEYS, and the KEYS of one call share a
//! Redis Cluster hash slot, so each script runs unchanged on a cluster. `run` checks the
//! slots before anything is sent (always: it costs a CRC16 of a few short keys), and in
//! strict mode (debug builds, or `NESTJS_REDIS_NATIVE_STRICT_KEYS=1`, which the tests set)
//! each script also refuses to touch a key that is not in its KEYS.

use redis::Value;

use crate::connection::Connection;
use crate::error::{ErrorCode, RnError, RnResult};
use crate::keys;

/// For a script called without arguments.
pub const NO_ARGS: &[&[u8]] = &[];

/// How many times `run_finding_keys` runs a script whose keys keep changing under it.
const FINDING_ROUNDS: usize = 16;

/// The reply of a script that needs keys it was not given (`need_keys` in `found_keys.lua`).
const NEED_KEYS: &str = "NEEDKEYS";

/// Prepended to every script in strict mode: `redis.call` / `redis.pcall` refuse a key
/// that is not in KEYS (what Redis Cluster requires, and a standalone server lets pass).
const STRICT_KEYS: &str = r#"local redis = (function(real)
  local declared = {}
  for _, k in ipairs(KEYS) do declared[k] = true end
  local keyless = { TIME = true }
  local all_keys = { DEL = true, UNLINK = true, EXISTS = true, MGET = true, TOUCH = true }
  local function check(cmd, ...)
    local name = string.upper(cmd)
    if keyless[name] then return end
    local n = all_keys[name] and select('#', ...) or 1
    for i = 1, n do
      local key = select(i, ...)
      if not declared[key] then
        error('strict keys: ' .. name .. ' on a key not in KEYS: ' .. tostring(key), 3)
      end
    end
  end
  return setmetatable({
    call = function(cmd, ...) check(cmd, ...) return real.call(cmd, ...) end,
    pcall = function(cmd, ...) check(cmd, ...) return real.pcall(cmd, ...) end,
  }, { __index = real })
end)(redis)
"#;

/// Strict mode: debug builds, or `NESTJS_REDIS_NATIVE_STRICT_KEYS=1`.
fn strict_keys() -> bool {
  cfg!(debug_assertions)
    || std::env::var_os("NESTJS_REDIS_NATIVE_STRICT_KEYS").is_some_and(|v| v == "1")
}

pub struct LuaScript {
  /// `<Service> script <file>.lua`, for messages.
  name: String,
  code: String,
  sha: String,
  /// Whether the KEYS of one call must share a cluster slot: for every service's script.
  /// RedisService's scripts run the caller's own keys (`mset` with a ttl), which may be
  /// anywhere: like MSET, whether they can share a slot is the caller's business.
  one_slot: bool,
}

/// The script in file `$file` beside the calling module, loaded once:
/// `static CREATE: LazyLock<LuaScript> = lua_script!("create.lua");`
#[macro_export]
macro_rules! lua_script {
  ($file:literal) => {
    std::sync::LazyLock::new(|| {
      $crate::script::LuaScript::new(concat!(module_path!(), "/", $file), include_str!($file))
    })
  };
}

/// `nestjs_redis_native::session_service/create.lua` → (`session_service`, `create.lua`).
fn module_and_file(path: &str) -> (&str, &str) {
  let path = path.strip_prefix("nestjs_redis_native::").unwrap_or(path);
  path.rsplit_once('/').unwrap_or(("", path))
}

/// `nestjs_redis_native::session_service/create.lua` → `SessionService script create.lua`.
fn display_name(path: &str) -> String {
  let (module, file) = module_and_file(path);
  let service: String = module
    .split('_')
    .map(|w| {
      let mut c = w.chars();
      c.next()
        .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
        .unwrap_or_default()
    })
    .collect();
  if service.is_empty() {
    format!("script {file}")
  } else {
    format!("{service} script {file}")
  }
}

/// When a script answered "I need these keys" (`{ +NEEDKEYS, key, ... }`): those keys.
fn needed_keys(reply: &Value) -> Option<Vec<String>> {
  let Value::Array(items) = reply else {
    return None;
  };
  match items.first() {
    Some(Value::SimpleString(s)) if s == NEED_KEYS => Some(
      items[1..]
        .iter()
        .filter_map(|k| match k {
          Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
          Value::SimpleString(s) => Some(s.clone()),
          _ => None,
        })
        .collect(),
    ),
    _ => None,
  }
}

/// Refuses, before anything is sent, a command or script whose `keys` (prefixed) are not
/// all in one cluster slot: with this package's layouts they always are, so this is a bug
/// (`ERR_INTERNAL`), caught on a standalone server as on a cluster.
pub fn check_one_slot<K: AsRef<str>>(conn: &Connection, keys: &[K], what: &str) -> RnResult<()> {
  match keys::slots_differ(conn.prefix(), keys) {
    None => Ok(()),
    Some((a, b)) => Err(RnError::internal(format!(
      "{what}: its keys `{a}` and `{b}` are in different Redis Cluster slots (a bug in this package: the keys of one step must share a hash tag)"
    ))),
  }
}

/// Lua functions for scripts that need keys they can only read from the data
/// (`need_keys`): put in front of such a script with `LuaScript::with_prelude`.
pub const FOUND_KEYS: &str = include_str!("found_keys.lua");

impl LuaScript {
  pub fn new(name: &'static str, code: &'static str) -> LuaScript {
    LuaScript::with_prelude(name, &[], code)
  }

  /// The script `code`, with the Lua of `prelude` (shared functions) in front of it.
  pub fn with_prelude(name: &'static str, prelude: &[&str], code: &str) -> LuaScript {
    let strict = if strict_keys() { STRICT_KEYS } else { "" };
    let code = format!("{strict}{}{code}", prelude.concat());
    LuaScript {
      name: display_name(name),
      sha: redis::Script::new(&code).get_hash().to_string(),
      code,
      one_slot: module_and_file(name).0 != "redis_service",
    }
  }

  /// Runs the script with `keys` (already prefixed) and `args` (strings or bytes).
  pub async fn run<K: AsRef<str>, A: AsRef<[u8]>>(
    &self,
    conn: &Connection,
    keys: &[K],
    args: &[A],
  ) -> RnResult<Value> {
    if self.one_slot {
      check_one_slot(conn, keys, &self.name)?;
    }
    let build = |op: &str, body: &str| {
      let mut cmd = redis::cmd(op);
      cmd.arg(body).arg(keys.len());
      for k in keys {
        cmd.arg(k.as_ref());
      }
      for a in args {
        cmd.arg(a.as_ref());
      }
      cmd
    };
    let outcome = match conn.exec(build("EVALSHA", &self.sha)).await {
      Err(e)
        if e.code == ErrorCode::RedisCommand && e.server_code.as_deref() == Some("NOSCRIPT") =>
      {
        // EVAL both runs the script and caches it on the server for the next EVALSHA.
        conn.exec(build("EVAL", &self.code)).await
      }
      other => other,
    };
    outcome.map_err(|e| e.context(&self.name))
  }

  /// Runs a script that finds some of its keys in what it reads (the tokens listed in a
  /// user's index, say), yet touches only keys given in KEYS: it gets `keys`, then the keys
  /// it asked for last time. A script that needs a key it was not given writes nothing and
  /// answers with the keys it needs (`need_keys` in `found_keys.lua`); it is run again with
  /// them, until it has all it needs (its keys changed under it at most a few times).
  pub async fn run_finding_keys<A: AsRef<[u8]>>(
    &self,
    conn: &Connection,
    keys: &[String],
    args: &[A],
  ) -> RnResult<Value> {
    let mut all = keys.to_vec();
    for _ in 0..FINDING_ROUNDS {
      let reply = self.run(conn, &all, args).await?;
      match needed_keys(&reply) {
        None => return Ok(reply),
        Some(found) => {
          all.truncate(keys.len());
          all.extend(found);
        }
      }
    }
    Err(RnError::internal(format!(
      "{}: the keys it needs changed under it {FINDING_ROUNDS} times in a row",
      self.name
    )))
  }
}

#[cfg(test)]
mod tests {
  #[test]
  fn scripts_are_named_after_their_service_and_file() {
    assert_eq!(
      super::display_name("nestjs_redis_native::session_service/create.lua"),
      "SessionService script create.lua"
    );
    assert_eq!(super::display_name("x.lua"), "script x.lua");
  }

  #[test]
  fn only_redis_service_scripts_may_take_keys_of_several_slots() {
    let service = super::LuaScript::new("nestjs_redis_native::lock_service/x.lua", "return 1");
    let raw = super::LuaScript::new("nestjs_redis_native::redis_service/x.lua", "return 1");
    assert!(service.one_slot);
    assert!(!raw.one_slot);
  }

  #[test]
  fn a_need_keys_reply_names_the_keys_and_nothing_else_is_one() {
    use redis::Value;
    let need = Value::Array(vec![
      Value::SimpleString("NEEDKEYS".into()),
      Value::BulkString(b"t:{u}:a".to_vec()),
      Value::BulkString(b"t:{u}:b".to_vec()),
    ]);
    assert_eq!(
      super::needed_keys(&need),
      Some(vec!["t:{u}:a".to_string(), "t:{u}:b".to_string()])
    );
    let none = Value::Array(vec![Value::SimpleString("NEEDKEYS".into())]);
    assert_eq!(super::needed_keys(&none), Some(vec![]));
    for other in [
      Value::Int(3),
      Value::Array(vec![]),
      Value::Array(vec![Value::BulkString(b"NEEDKEYS".to_vec())]),
      Value::SimpleString("NEEDKEYS".into()),
    ] {
      assert_eq!(super::needed_keys(&other), None, "{other:?}");
    }
  }
}
