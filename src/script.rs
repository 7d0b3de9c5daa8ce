//! Lua scripts: loaded once, called by SHA (EVALSHA), reloaded transparently when the
//! server answers NOSCRIPT (after a restart or SCRIPT FLUSH).

use redis::Value;

use crate::connection::Connection;
use crate::error::{ErrorCode, RnResult};

/// For a script called without keys.
pub const NO_KEYS: &[&str] = &[];
/// For a script called without arguments.
pub const NO_ARGS: &[&[u8]] = &[];

pub struct LuaScript {
  /// `<service>/<file>.lua`, for messages.
  name: &'static str,
  code: &'static str,
  sha: String,
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

impl LuaScript {
  pub fn new(name: &'static str, code: &'static str) -> LuaScript {
    LuaScript {
      name: name.strip_prefix("nestjs_redis_native::").unwrap_or(name),
      code,
      sha: redis::Script::new(code).get_hash().to_string(),
    }
  }

  /// Runs the script with `keys` (already prefixed) and `args` (strings or bytes).
  pub async fn run<K: AsRef<str>, A: AsRef<[u8]>>(
    &self,
    conn: &Connection,
    keys: &[K],
    args: &[A],
  ) -> RnResult<Value> {
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
        conn.exec(build("EVAL", self.code)).await
      }
      other => other,
    };
    outcome.map_err(|e| e.context(&format!("script {}", self.name)))
  }
}
