//! `RedisService`: the core key/value API (`get`/`set`/`del`/`exists` and the rest: TTLs,
//! counters, JSON, Buffers, SCAN, pipelines and raw commands).

use std::collections::HashSet;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use napi::bindgen_prelude::{Buffer, PromiseRaw, Unknown};
use napi::{Env, ValueType};
use napi_derive::napi;
use redis::{Cmd, Value};

use crate::args;
use crate::client::connection_of;
use crate::completion::complete_with;
use crate::connection::{Connection, ReadKind};
use crate::error::{RnError, RnResult};
use crate::json;
use crate::reply::{int, Reply};
use crate::script::LuaScript;

static INCR_WITH_TTL: LazyLock<LuaScript> = lua_script!("incr.lua");
static MSET_WITH_TTL: LazyLock<LuaScript> = lua_script!("mset_ttl.lua");

/// Keys per SCAN step and per UNLINK batch.
const SCAN_COUNT: usize = 1000;

/// Promise-based Redis commands, with the client's key prefix applied to every key.
#[napi]
pub struct RedisService {
  conn: Connection,
}

fn px(ttl: Duration) -> u64 {
  ttl.as_millis() as u64
}

/// `SET key value [NX] [PX ttl]` with the client's prefix applied to `key`.
fn set_cmd(
  conn: &Connection,
  key: &str,
  value: impl redis::ToRedisArgs,
  only_if_absent: bool,
  ttl: Option<Duration>,
) -> Cmd {
  let mut cmd = redis::cmd("SET");
  cmd.arg(conn.key(key)).arg(value);
  if only_if_absent {
    cmd.arg("NX");
  }
  if let Some(ttl) = ttl {
    cmd.arg("PX").arg(px(ttl));
  }
  cmd
}

fn text_or_null(v: Value, key: &str) -> RnResult<Option<String>> {
  match v {
    Value::Nil => Ok(None),
    Value::BulkString(b) => String::from_utf8(b).map(Some).map_err(|_| {
      RnError::serialization(format!(
        "the value stored at `{key}` is not UTF-8 text; read it with getBuffer()"
      ))
    }),
    Value::SimpleString(s) => Ok(Some(s)),
    Value::Okay => Ok(Some("OK".into())),
    other => Err(RnError::internal(format!("unexpected reply {other:?}"))),
  }
}

/// Commands that would break a connection shared by every caller: they block it, change
/// its state for everyone (SELECT, AUTH, MULTI), or switch it to another protocol mode.
fn refuse_unsafe_command(args: &[Vec<u8>]) -> RnResult<()> {
  let name = String::from_utf8_lossy(&args[0]).to_ascii_lowercase();
  let why = match name.as_str() {
    "subscribe" | "psubscribe" | "ssubscribe" | "unsubscribe" | "punsubscribe" | "sunsubscribe" => {
      "puts the connection in subscriber mode; use PubSubService"
    }
    "monitor" | "sync" | "psync" | "replconf" => "takes the connection over",
    "quit" | "reset" | "select" | "auth" | "hello" => {
      "changes the shared connection for every caller; set it in RedisOptions instead"
    }
    "multi" | "exec" | "discard" | "watch" | "unwatch" => {
      "would interleave with other callers on the shared connection; use a Lua script (EVAL) for atomic steps"
    }
    "blpop" | "brpop" | "brpoplpush" | "blmove" | "blmpop" | "bzpopmin" | "bzpopmax" | "bzmpop"
    | "wait" | "waitaof" => "blocks the shared connection for every caller",
    "xread" | "xreadgroup"
      if args[1..]
        .iter()
        .any(|a| a.eq_ignore_ascii_case(b"block")) =>
    {
      "with BLOCK blocks the shared connection for every caller"
    }
    "client" if args.get(1).is_some_and(|a| a.eq_ignore_ascii_case(b"reply")) => {
      "would desynchronize replies on the shared connection"
    }
    _ => return Ok(()),
  };
  Err(RnError::invalid(format!(
    "`{}` {why}",
    name.to_ascii_uppercase()
  )))
}

/// Parses one raw command (`[name, ...args]`) from JS.
fn raw_command(items: &[Unknown], what: &str) -> RnResult<Vec<Vec<u8>>> {
  if items.is_empty() {
    return Err(RnError::invalid(format!("{what} must name a command")));
  }
  let mut out = Vec::with_capacity(items.len());
  out.push(args::key(&items[0], &format!("{what}[0] (the command name)"))?.into_bytes());
  for (i, a) in items.iter().enumerate().skip(1) {
    out.push(args::command_arg(a, &format!("{what}[{i}]"))?);
  }
  refuse_unsafe_command(&out)?;
  Ok(out)
}

fn to_cmd(args: &[Vec<u8>]) -> Cmd {
  let mut cmd = redis::cmd(std::str::from_utf8(&args[0]).unwrap_or("?"));
  for a in &args[1..] {
    cmd.arg(a.as_slice());
  }
  cmd
}

impl RedisService {
  /// SCAN with the client's prefix applied to `pattern`; keys come back without it.
  async fn scan(
    conn: &Connection,
    pattern: &str,
    limit: Option<usize>,
    mut each: impl FnMut(Vec<String>),
  ) -> RnResult<usize> {
    let full = conn.pattern(pattern);
    let mut seen = HashSet::new();
    // every master of a cluster in turn (one server: just it)
    for target in conn.scan_targets().await? {
      let mut cursor = "0".to_string();
      loop {
        let (next, batch) = scan_step(conn, &target, &cursor, &full).await?;
        cursor = next;
        let mut found = Vec::new();
        for k in batch {
          // SCAN may return a key more than once; hand each back once.
          if seen.insert(k.clone()) {
            found.push(k);
          }
          if limit.is_some_and(|l| seen.len() >= l) {
            break;
          }
        }
        if !found.is_empty() {
          each(found);
        }
        if limit.is_some_and(|l| seen.len() >= l) {
          return Ok(seen.len());
        }
        if cursor == "0" {
          break;
        }
      }
    }
    Ok(seen.len())
  }
}

#[napi]
impl RedisService {
  /// Builds the service on a connected client: `new RedisService(client)`.
  #[napi(constructor, ts_args_type = "client: RedisClient")]
  pub fn new(env: &Env, client: Unknown) -> napi::Result<Self> {
    Ok(RedisService {
      conn: connection_of(env, client, "RedisService")?,
    })
  }

  /// The value of `key`, or `null` when it does not exist.
  #[napi(
    ts_args_type = "key: string",
    ts_return_type = "Promise<string | null>"
  )]
  pub fn get<'env>(
    &self,
    env: &'env Env,
    key: Unknown,
  ) -> napi::Result<PromiseRaw<'env, Option<String>>> {
    let conn = self.conn.clone();
    complete_with(
      env,
      self.conn.traces(),
      args::key(&key, "key"),
      move |key| async move {
        let stored = conn.key(&key);
        let mut cmd = redis::cmd("GET");
        cmd.arg(&stored);
        text_or_null(conn.read(ReadKind::Get, &stored, cmd).await?, &key)
      },
    )
  }

  /// Stores `value` at `key`, expiring after `ttl` seconds (fractions allowed) when given.
  #[napi(
    ts_args_type = "key: string, value: string, ttl?: number",
    ts_return_type = "Promise<void>"
  )]
  pub fn set<'env>(
    &self,
    env: &'env Env,
    key: Unknown,
    value: Unknown,
    ttl: Option<Unknown>,
  ) -> napi::Result<PromiseRaw<'env, ()>> {
    let conn = self.conn.clone();
    let parsed = (|| {
      Ok((
        args::key(&key, "key")?,
        args::string(&value, "value")?,
        args::ttl(ttl.as_ref(), "ttl")?,
      ))
    })();
    complete_with(
      env,
      self.conn.traces(),
      parsed,
      move |(key, value, ttl)| async move {
        conn
          .exec(set_cmd(&conn, &key, value, false, ttl))
          .await
          .map(|_| ())
      },
    )
  }

  /// Deletes one key or several; resolves to how many existed.
  #[napi(
    ts_args_type = "key: string | string[]",
    ts_return_type = "Promise<number>"
  )]
  pub fn del<'env>(&self, env: &'env Env, key: Unknown) -> napi::Result<PromiseRaw<'env, i64>> {
    let conn = self.conn.clone();
    let mut is_array = false;
    unsafe {
      use napi::JsValue;
      napi::sys::napi_is_array(env.raw(), key.raw(), &mut is_array);
    }
    let parsed = if is_array {
      args::key_list(&key, "keys")
    } else {
      args::key(&key, "key").map(|k| vec![k])
    };
    complete_with(env, self.conn.traces(), parsed, move |keys| async move {
      if keys.is_empty() {
        return Ok(0);
      }
      let mut cmd = redis::cmd("DEL");
      for k in &keys {
        cmd.arg(conn.key(k));
      }
      int(conn.exec(cmd).await?)
    })
  }

  /// Whether `key` exists.
  #[napi(ts_args_type = "key: string", ts_return_type = "Promise<boolean>")]
  pub fn exists<'env>(&self, env: &'env Env, key: Unknown) -> napi::Result<PromiseRaw<'env, bool>> {
    let conn = self.conn.clone();
    complete_with(
      env,
      self.conn.traces(),
      args::key(&key, "key"),
      move |key| async move { conn.exists(&conn.key(&key)).await },
    )
  }

  /// Sets the expiry of `key` to `ttl` seconds; `false` when the key does not exist.
  #[napi(
    ts_args_type = "key: string, ttl: number",
    ts_return_type = "Promise<boolean>"
  )]
  pub fn expire<'env>(
    &self,
    env: &'env Env,
    key: Unknown,
    ttl: Option<Unknown>,
  ) -> napi::Result<PromiseRaw<'env, bool>> {
    let conn = self.conn.clone();
    let parsed = (|| {
      let key = args::key(&key, "key")?;
      let ttl =
        args::ttl(ttl.as_ref(), "ttl")?.ok_or_else(|| RnError::invalid("ttl is required"))?;
      Ok((key, ttl))
    })();
    complete_with(
      env,
      self.conn.traces(),
      parsed,
      move |(key, ttl)| async move {
        let mut cmd = redis::cmd("PEXPIRE");
        cmd.arg(conn.key(&key)).arg(px(ttl));
        Ok(int(conn.exec(cmd).await?)? == 1)
      },
    )
  }

  /// Remaining time to live in seconds (with fractions); `null` when the key does not
  /// exist, `-1` when it has no expiry.
  #[napi(
    ts_args_type = "key: string",
    ts_return_type = "Promise<number | null>"
  )]
  pub fn ttl<'env>(
    &self,
    env: &'env Env,
    key: Unknown,
  ) -> napi::Result<PromiseRaw<'env, Option<f64>>> {
    let conn = self.conn.clone();
    complete_with(
      env,
      self.conn.traces(),
      args::key(&key, "key"),
      move |key| async move { conn.ttl_seconds(&conn.key(&key)).await },
    )
  }

  /// Adds `by` (default 1, a whole number) to the integer at `key` and returns the result.
  /// `ttl` (seconds) is set only when this call creates the key, atomically.
  #[napi(
    ts_args_type = "key: string, by?: number, ttl?: number",
    ts_return_type = "Promise<number>"
  )]
  pub fn incr<'env>(
    &self,
    env: &'env Env,
    key: Unknown,
    by: Option<Unknown>,
    ttl: Option<Unknown>,
  ) -> napi::Result<PromiseRaw<'env, i64>> {
    let conn = self.conn.clone();
    let parsed = (|| {
      let key = args::key(&key, "key")?;
      let by = match &by {
        b if args::is_absent(b.as_ref()) => 1,
        Some(b) => args::integer(b, "by")?,
        None => 1,
      };
      Ok((key, by, args::ttl(ttl.as_ref(), "ttl")?))
    })();
    complete_with(
      env,
      self.conn.traces(),
      parsed,
      move |(key, by, ttl)| async move {
        let k = conn.key(&key);
        match ttl {
          None => {
            let mut cmd = redis::cmd("INCRBY");
            cmd.arg(&k).arg(by);
            int(conn.exec(cmd).await?)
          }
          Some(ttl) => {
            let reply = INCR_WITH_TTL
              .run(
                &conn,
                &[&k],
                &[by.to_string().as_bytes(), px(ttl).to_string().as_bytes()],
              )
              .await?;
            int(reply)
          }
        }
      },
    )
  }

  /// Sets `key` only when it does not exist; `true` when this call set it.
  #[napi(
    ts_args_type = "key: string, value: string, ttl?: number",
    ts_return_type = "Promise<boolean>"
  )]
  pub fn set_nx<'env>(
    &self,
    env: &'env Env,
    key: Unknown,
    value: Unknown,
    ttl: Option<Unknown>,
  ) -> napi::Result<PromiseRaw<'env, bool>> {
    let conn = self.conn.clone();
    let parsed = (|| {
      Ok((
        args::key(&key, "key")?,
        args::string(&value, "value")?,
        args::ttl(ttl.as_ref(), "ttl")?,
      ))
    })();
    complete_with(
      env,
      self.conn.traces(),
      parsed,
      move |(key, value, ttl)| async move {
        Ok(conn.exec(set_cmd(&conn, &key, value, true, ttl)).await? != Value::Nil)
      },
    )
  }

  /// The values of `keys`, in order, `null` for each missing key.
  #[napi(
    ts_args_type = "keys: string[]",
    ts_return_type = "Promise<(string | null)[]>"
  )]
  pub fn mget<'env>(
    &self,
    env: &'env Env,
    keys: Unknown,
  ) -> napi::Result<PromiseRaw<'env, Vec<Option<String>>>> {
    let conn = self.conn.clone();
    complete_with(
      env,
      self.conn.traces(),
      args::key_list(&keys, "keys"),
      move |keys| async move {
        if keys.is_empty() {
          return Ok(Vec::new());
        }
        let stored: Vec<String> = keys.iter().map(|k| conn.key(k)).collect();
        let values = conn.read_many(&stored).await?;
        values
          .into_iter()
          .zip(keys.iter())
          .map(|(v, k)| text_or_null(v, k))
          .collect()
      },
    )
  }

  /// Sets every key of `entries` at once (atomically), each expiring after `ttl` seconds
  /// when given.
  #[napi(
    ts_args_type = "entries: Record<string, string>, ttl?: number",
    ts_return_type = "Promise<void>"
  )]
  pub fn mset<'env>(
    &self,
    env: &'env Env,
    entries: Unknown,
    ttl: Option<Unknown>,
  ) -> napi::Result<PromiseRaw<'env, ()>> {
    let conn = self.conn.clone();
    let parsed = (|| {
      if entries.get_type().ok() != Some(ValueType::Object)
        || args::array(&entries, "entries").is_ok()
      {
        return Err(RnError::invalid(
          "entries must be an object of key → string value",
        ));
      }
      let value: serde_json::Value = unsafe { entries.cast() }
        .map_err(|e| RnError::invalid(format!("entries: {}", e.reason)))?;
      let serde_json::Value::Object(map) = value else {
        return Err(RnError::invalid(
          "entries must be an object of key → string value",
        ));
      };
      let mut pairs = Vec::with_capacity(map.len());
      for (k, v) in map {
        if k.is_empty() {
          return Err(RnError::invalid("entries: keys must not be empty"));
        }
        match v {
          serde_json::Value::String(s) => pairs.push((k, s)),
          _ => return Err(RnError::invalid(format!("entries[`{k}`] must be a string"))),
        }
      }
      Ok((pairs, args::ttl(ttl.as_ref(), "ttl")?))
    })();
    complete_with(
      env,
      self.conn.traces(),
      parsed,
      move |(pairs, ttl)| async move {
        if pairs.is_empty() {
          return Ok(());
        }
        match ttl {
          None => {
            let mut cmd = redis::cmd("MSET");
            for (k, v) in &pairs {
              cmd.arg(conn.key(k)).arg(v);
            }
            conn.exec(cmd).await.map(|_| ())
          }
          Some(ttl) => {
            let keys: Vec<String> = pairs.iter().map(|(k, _)| conn.key(k)).collect();
            let ms = px(ttl).to_string();
            // one atomic step per cluster slot (one server: one step)
            let steps = conn.slot_groups(&keys).into_iter().map(|group| {
              let key_refs: Vec<&str> = group.iter().map(|&i| keys[i].as_str()).collect();
              let mut argv: Vec<&[u8]> = group.iter().map(|&i| pairs[i].1.as_bytes()).collect();
              argv.push(ms.as_bytes());
              let conn = &conn;
              async move { MSET_WITH_TTL.run(conn, &key_refs, &argv).await }
            });
            for r in futures_util::future::join_all(steps).await {
              r?;
            }
            Ok(())
          }
        }
      },
    )
  }

  /// The JSON value stored at `key`, parsed; `null` when the key does not exist.
  #[napi(
    ts_generic_types = "T = unknown",
    ts_args_type = "key: string",
    ts_return_type = "Promise<T | null>"
  )]
  pub fn get_json<'env>(
    &self,
    env: &'env Env,
    key: Unknown,
  ) -> napi::Result<PromiseRaw<'env, Option<json::JsonText>>> {
    let conn = self.conn.clone();
    complete_with(
      env,
      self.conn.traces(),
      args::key(&key, "key"),
      move |key| async move {
        let stored = conn.key(&key);
        let mut cmd = redis::cmd("GET");
        cmd.arg(&stored);
        match conn.read(ReadKind::Get, &stored, cmd).await? {
          Value::Nil => Ok(None),
          Value::BulkString(b) => json::text(b, &key).map(Some),
          other => Err(RnError::internal(format!("unexpected reply {other:?}"))),
        }
      },
    )
  }

  /// Stores `JSON.stringify(value)` at `key`.
  #[napi(
    ts_args_type = "key: string, value: unknown, ttl?: number",
    ts_return_type = "Promise<void>"
  )]
  pub fn set_json<'env>(
    &self,
    env: &'env Env,
    key: Unknown,
    value: Unknown,
    ttl: Option<Unknown>,
  ) -> napi::Result<PromiseRaw<'env, ()>> {
    let conn = self.conn.clone();
    let parsed = (|| {
      let key = args::key(&key, "key")?;
      let ttl = args::ttl(ttl.as_ref(), "ttl")?;
      Ok((key, json::stringify(env, &value)?, ttl))
    })();
    complete_with(
      env,
      self.conn.traces(),
      parsed,
      move |(key, text, ttl)| async move {
        conn
          .exec(set_cmd(&conn, &key, text, false, ttl))
          .await
          .map(|_| ())
      },
    )
  }

  /// The bytes stored at `key`, or `null`.
  #[napi(
    ts_args_type = "key: string",
    ts_return_type = "Promise<Buffer | null>"
  )]
  pub fn get_buffer<'env>(
    &self,
    env: &'env Env,
    key: Unknown,
  ) -> napi::Result<PromiseRaw<'env, Option<Buffer>>> {
    let conn = self.conn.clone();
    complete_with(
      env,
      self.conn.traces(),
      args::key(&key, "key"),
      move |key| async move {
        let stored = conn.key(&key);
        let mut cmd = redis::cmd("GET");
        cmd.arg(&stored);
        match conn.read(ReadKind::Get, &stored, cmd).await? {
          Value::Nil => Ok(None),
          Value::BulkString(b) => Ok(Some(Buffer::from(b))),
          other => Err(RnError::internal(format!("unexpected reply {other:?}"))),
        }
      },
    )
  }

  /// Stores the bytes of `value` (a Buffer) at `key`.
  #[napi(
    ts_args_type = "key: string, value: Buffer, ttl?: number",
    ts_return_type = "Promise<void>"
  )]
  pub fn set_buffer<'env>(
    &self,
    env: &'env Env,
    key: Unknown,
    value: Unknown,
    ttl: Option<Unknown>,
  ) -> napi::Result<PromiseRaw<'env, ()>> {
    let conn = self.conn.clone();
    let parsed = (|| {
      Ok((
        args::key(&key, "key")?,
        args::bytes(&value, "value")?,
        args::ttl(ttl.as_ref(), "ttl")?,
      ))
    })();
    complete_with(
      env,
      self.conn.traces(),
      parsed,
      move |(key, bytes, ttl)| async move {
        conn
          .exec(set_cmd(&conn, &key, bytes, false, ttl))
          .await
          .map(|_| ())
      },
    )
  }

  /// Keys matching the glob `pattern`, found with SCAN (never KEYS), at most `limit`.
  /// The client's key prefix is applied to the pattern and removed from the keys.
  #[napi(
    ts_args_type = "pattern: string, limit?: number",
    ts_return_type = "Promise<string[]>"
  )]
  pub fn keys<'env>(
    &self,
    env: &'env Env,
    pattern: Unknown,
    limit: Option<Unknown>,
  ) -> napi::Result<PromiseRaw<'env, Vec<String>>> {
    let conn = self.conn.clone();
    let parsed = (|| {
      let pattern = args::key(&pattern, "pattern")?;
      let limit = match &limit {
        l if args::is_absent(l.as_ref()) => None,
        Some(l) => {
          let n = args::integer(l, "limit")?;
          if n < 1 {
            return Err(RnError::invalid(format!("limit must be >= 1, got {n}")));
          }
          Some(n as usize)
        }
        None => None,
      };
      Ok((pattern, limit))
    })();
    complete_with(
      env,
      self.conn.traces(),
      parsed,
      move |(pattern, limit)| async move {
        let mut out = Vec::new();
        Self::scan(&conn, &pattern, limit, |batch| {
          out.extend(batch.iter().map(|k| conn.unprefix(k).to_string()))
        })
        .await?;
        if let Some(l) = limit {
          out.truncate(l);
        }
        Ok(out)
      },
    )
  }

  /// Deletes every key matching `pattern` (SCAN + UNLINK in batches of 1000, never KEYS);
  /// resolves to how many were deleted. The client's key prefix is applied to the pattern.
  #[napi(ts_args_type = "pattern: string", ts_return_type = "Promise<number>")]
  pub fn delete_pattern<'env>(
    &self,
    env: &'env Env,
    pattern: Unknown,
  ) -> napi::Result<PromiseRaw<'env, i64>> {
    let conn = self.conn.clone();
    complete_with(
      env,
      self.conn.traces(),
      args::key(&pattern, "pattern"),
      move |pattern| async move { delete_matching(&conn, &pattern).await },
    )
  }

  /// Sends `commands` (each `[name, ...args]`) in one round trip; the replies, in order.
  /// A command the server refuses puts an `Error` (code `ERR_REDIS_COMMAND`) in its slot
  /// without failing the others. The key prefix is applied to each command's keys.
  #[napi(
    ts_args_type = "commands: (string | number | Buffer)[][]",
    ts_return_type = "Promise<unknown[]>"
  )]
  pub fn pipeline<'env>(
    &self,
    env: &'env Env,
    commands: Unknown,
  ) -> napi::Result<PromiseRaw<'env, Vec<Reply>>> {
    let conn = self.conn.clone();
    let parsed = (|| {
      args::array(&commands, "commands")?
        .iter()
        .enumerate()
        .map(|(i, c)| {
          raw_command(
            &args::array(c, &format!("commands[{i}]"))?,
            &format!("commands[{i}]"),
          )
        })
        .collect::<RnResult<Vec<_>>>()
    })();
    complete_with(
      env,
      self.conn.traces(),
      parsed,
      move |mut commands| async move {
        let mut pipe = redis::pipe();
        for c in commands.iter_mut() {
          conn.prefix_raw_command(c).await?;
          pipe.add_command(to_cmd(c));
        }
        let replies = conn.exec_pipeline(pipe, commands.len()).await?;
        Ok(replies.into_iter().map(Reply::from).collect())
      },
    )
  }

  /// Sends any command (not blocking or connection-state commands, which would affect
  /// every caller of the shared connection). The key prefix is applied to its keys.
  #[napi(
    ts_args_type = "name: string, args?: (string | number | Buffer)[]",
    ts_return_type = "Promise<unknown>"
  )]
  pub fn command<'env>(
    &self,
    env: &'env Env,
    name: Unknown,
    args: Option<Unknown>,
  ) -> napi::Result<PromiseRaw<'env, Reply>> {
    let conn = self.conn.clone();
    let parsed = (|| {
      let mut items = vec![name];
      if !args::is_absent(args.as_ref()) {
        if let Some(a) = &args {
          items.extend(args::array(a, "args")?);
        }
      }
      raw_command(&items, "command")
    })();
    complete_with(
      env,
      self.conn.traces(),
      parsed,
      move |mut command| async move {
        conn.prefix_raw_command(&mut command).await?;
        let reply = Reply::from(conn.exec(to_cmd(&command)).await?);
        Ok(reply)
      },
    )
  }

  /// Round trip to the server (PING), in milliseconds.
  #[napi(ts_return_type = "Promise<number>")]
  pub fn ping<'env>(&self, env: &'env Env) -> napi::Result<PromiseRaw<'env, f64>> {
    let conn = self.conn.clone();
    complete_with(env, self.conn.traces(), Ok(()), move |_| async move {
      let start = Instant::now();
      conn.exec(redis::cmd("PING")).await?;
      Ok(start.elapsed().as_secs_f64() * 1000.0)
    })
  }
}

/// Deletes every key matching the glob `pattern` (the client's prefix applied): SCAN
/// steps, each step's keys unlinked before the next (never KEYS, never everything in
/// memory at once). Resolves to how many keys were deleted. `RedisService.deletePattern`
/// and `CacheNamespace.clear` both use it.
pub async fn delete_matching(conn: &Connection, pattern: &str) -> RnResult<i64> {
  let full = conn.pattern(pattern);
  let mut deleted = 0;
  // every master of a cluster in turn (one server: just it)
  for target in conn.scan_targets().await? {
    let mut cursor = "0".to_string();
    loop {
      let (next, keys) = scan_step(conn, &target, &cursor, &full).await?;
      cursor = next;
      if !keys.is_empty() {
        deleted += unlink(conn, &keys).await?;
      }
      if cursor == "0" {
        break;
      }
    }
  }
  Ok(deleted)
}

/// One SCAN step on `target` (see `Connection::scan_targets`): the next cursor and the
/// keys found (as stored, with the prefix).
async fn scan_step(
  conn: &Connection,
  target: &Option<(String, u16)>,
  cursor: &str,
  pattern: &str,
) -> RnResult<(String, Vec<String>)> {
  let mut cmd = redis::cmd("SCAN");
  cmd
    .arg(cursor)
    .arg("MATCH")
    .arg(pattern)
    .arg("COUNT")
    .arg(SCAN_COUNT);
  let Value::Array(mut parts) = conn.exec_at(target, cmd).await? else {
    return Err(RnError::internal("unexpected SCAN reply"));
  };
  if parts.len() != 2 {
    return Err(RnError::internal("unexpected SCAN reply"));
  }
  let batch = parts.pop().unwrap_or(Value::Nil);
  let next = match parts.pop() {
    Some(Value::BulkString(c)) => String::from_utf8_lossy(&c).into_owned(),
    _ => return Err(RnError::internal("unexpected SCAN cursor")),
  };
  let keys = match batch {
    Value::Array(keys) => keys
      .into_iter()
      .filter_map(|k| match k {
        Value::BulkString(k) => Some(String::from_utf8_lossy(&k).into_owned()),
        _ => None,
      })
      .collect(),
    _ => Vec::new(),
  };
  Ok((next, keys))
}

async fn unlink(conn: &Connection, keys: &[String]) -> RnResult<i64> {
  let mut cmd = redis::cmd("UNLINK");
  for k in keys {
    cmd.arg(k);
  }
  int(conn.exec(cmd).await?)
}

#[cfg(test)]
mod tests {
  use super::*;

  fn args(a: &[&str]) -> Vec<Vec<u8>> {
    a.iter().map(|s| s.as_bytes().to_vec()).collect()
  }

  #[test]
  fn commands_that_would_break_the_shared_connection_are_refused() {
    for bad in [
      &["SUBSCRIBE", "c"][..],
      &["blpop", "k", "0"],
      &["MULTI"],
      &["select", "2"],
      &["XREAD", "BLOCK", "0", "STREAMS", "s", "$"],
      &["CLIENT", "REPLY", "OFF"],
    ] {
      assert!(refuse_unsafe_command(&args(bad)).is_err(), "{bad:?}");
    }
    for ok in [
      &["GET", "k"][..],
      &["XREAD", "STREAMS", "s", "0"],
      &["CLIENT", "ID"],
    ] {
      assert!(refuse_unsafe_command(&args(ok)).is_ok(), "{ok:?}");
    }
  }
}
