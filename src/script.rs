//! Lua scripts: loaded once, called by SHA (EVALSHA), reloaded transparently when the
//! server answers NOSCRIPT (after a restart or SCRIPT FLUSH).

use redis::Value;

use crate::connection::Connection;
use crate::error::{ErrorCode, RnResult};

pub struct LuaScript {
  code: &'static str,
  sha: String,
}

impl LuaScript {
  pub fn new(code: &'static str) -> LuaScript {
    LuaScript {
      code,
      sha: redis::Script::new(code).get_hash().to_string(),
    }
  }

  /// Runs the script with `keys` (already prefixed) and `args`.
  pub async fn run(&self, conn: &Connection, keys: &[&str], args: &[&[u8]]) -> RnResult<Value> {
    let build = |op: &str, body: &str| {
      let mut cmd = redis::cmd(op);
      cmd.arg(body).arg(keys.len());
      for k in keys {
        cmd.arg(*k);
      }
      for a in args {
        cmd.arg(*a);
      }
      cmd
    };
    match conn.exec(&build("EVALSHA", &self.sha)).await {
      Err(e)
        if e.code == ErrorCode::RedisCommand && e.server_code.as_deref() == Some("NOSCRIPT") =>
      {
        // EVAL both runs the script and caches it on the server for the next EVALSHA.
        conn.exec(&build("EVAL", self.code)).await
      }
      other => other,
    }
  }
}
