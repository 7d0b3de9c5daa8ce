//! `CacheService`: namespaced JSON cache with secondary indexes.
//!
//! Keys (after the client's prefix): `<namespace>:<key>` for an item (a hash: `v` its
//! JSON value, or `f:<field>` per field of an object so `update` merges atomically;
//! `i:<index>` the index values it is listed under), `<namespace>:~idx:<index>:<value>`
//! for an index (a sorted set of keys by the item's expiry, pruned of expired items on
//! every read and write, expiring with its longest-lived member).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use napi::bindgen_prelude::{PromiseRaw, This, Unknown};
use napi::{sys, Env, JsValue, ValueType};
use napi_derive::napi;
use redis::Value;

use crate::args;
use crate::client::connection_of;
use crate::completion::{complete_with, js_error};
use crate::connection::{Connection, ReadKind};
use crate::error::{RnError, RnResult};
use crate::js_helper;
use crate::json::{self, JsonText};
use crate::json_fields;
use crate::keys;
use crate::reply::int;
use crate::script::{LuaScript, NO_KEYS};

macro_rules! script {
  ($name:ident, $file:literal) => {
    static $name: LazyLock<LuaScript> = LazyLock::new(|| {
      LuaScript::new(
        concat!(module_path!(), "/", $file),
        concat!(include_str!("common.lua"), include_str!($file)),
      )
    });
  };
}
script!(SET, "set.lua");
script!(DELETE, "delete.lua");
script!(UPDATE, "update.lua");
script!(SET_TTL, "set_ttl.lua");
script!(INCREMENT, "increment.lua");
script!(BY_INDEX, "by_index.lua");

/// Options of `cache.namespace(name, options)`.
#[allow(dead_code)] // read from JS as JSON; this struct declares its TypeScript type
#[napi(object)]
pub struct NamespaceOptions {
  /// TTL in seconds of items set without one. Default: no expiry.
  pub default_ttl: Option<f64>,
}

/// Options of `set`.
#[allow(dead_code)] // read from JS as JSON; this struct declares its TypeScript type
#[napi(object)]
pub struct CacheSetOptions {
  /// Seconds; default the namespace's `defaultTtl`.
  pub ttl: Option<f64>,
  /// Index name → value: the item is found by `getByIndex(name, value)` until it is
  /// deleted, replaced or expires.
  pub indexes: Option<HashMap<String, String>>,
}

/// Options of `update`.
#[allow(dead_code)] // read from JS as JSON; this struct declares its TypeScript type
#[napi(object)]
pub struct CacheUpdateOptions {
  /// A new TTL in seconds; without it the item keeps its expiry.
  pub ttl: Option<f64>,
}

/// Hits and misses of `get` (and `getOrSet`) in one namespace.
#[napi(object)]
pub struct CacheStats {
  pub hits: f64,
  pub misses: f64,
  /// hits / (hits + misses); 0 before any read.
  pub hit_ratio: f64,
}

#[derive(Default)]
struct Stats {
  hits: AtomicU64,
  misses: AtomicU64,
}

/// Namespaced caches on one client: `cache.namespace('users', { defaultTtl: 900 })`.
#[napi]
pub struct CacheService {
  conn: Connection,
}

/// One namespace of the cache: keys `<namespace>:<key>`, values JSON.
#[napi]
pub struct CacheNamespace {
  conn: Connection,
  name: String,
  default_ttl: Option<Duration>,
  stats: Arc<Stats>,
}

#[napi]
impl CacheService {
  /// `new CacheService(client)`.
  #[napi(constructor, ts_args_type = "client: RedisClient")]
  pub fn new(env: &Env, client: Unknown) -> napi::Result<Self> {
    Ok(CacheService {
      conn: connection_of(env, client, "CacheService")?,
    })
  }

  /// The namespace `name` (no `:` in it): its own keys, TTL default and stats. Handles of
  /// one name share their stats.
  #[napi(ts_args_type = "name: string, options?: NamespaceOptions")]
  pub fn namespace(
    &self,
    env: &Env,
    name: Unknown,
    options: Option<Unknown>,
  ) -> napi::Result<CacheNamespace> {
    let parsed = (|| {
      let name = args::key(&name, "name")?;
      if name.contains(':') {
        return Err(RnError::invalid(format!(
          "a namespace name cannot contain `:` (got `{name}`), so one namespace never holds another's keys"
        )));
      }
      let map = args::options_object(options.as_ref(), "namespace options", &["defaultTtl"])?;
      Ok((name, args::option_seconds(&map, "defaultTtl")?))
    })();
    let (name, default_ttl) = parsed.map_err(|e| js_error(env, &e))?;
    let stats = self.conn.shared::<Stats>(&name);
    Ok(CacheNamespace {
      conn: self.conn.clone(),
      name,
      default_ttl,
      stats,
    })
  }
}

/// An item's storage: hash fields and values.
fn item_fields(env: &Env, value: &Unknown) -> RnResult<Vec<Vec<u8>>> {
  if json_fields::is_object(value) {
    let fields = json_fields::object_fields(env, value, "value")?;
    Ok(json_fields::field_args("f:", fields))
  } else {
    Ok(vec![
      b"v".to_vec(),
      json::stringify(env, value)?.into_bytes(),
    ])
  }
}

/// The JSON of an item from its `HGETALL` pairs; `None` when it does not exist.
fn item_json(pairs: &[Value]) -> Option<JsonText> {
  if pairs.is_empty() {
    return None;
  }
  for pair in pairs.chunks(2) {
    if let (Value::BulkString(f), Some(Value::BulkString(v))) = (&pair[0], pair.get(1)) {
      if f == b"v" {
        return Some(JsonText(String::from_utf8_lossy(v).into_owned()));
      }
    }
  }
  Some(JsonText(json_fields::assemble(pairs, b"f:")))
}

fn index_pairs(
  map: &serde_json::Map<String, serde_json::Value>,
) -> RnResult<Vec<(String, String)>> {
  match map.get("indexes") {
    None | Some(serde_json::Value::Null) => Ok(Vec::new()),
    Some(serde_json::Value::Object(idx)) => idx
      .iter()
      .map(|(name, value)| match value {
        serde_json::Value::String(v)
          if !name.is_empty() && !v.is_empty() && !name.contains(':') =>
        {
          Ok((name.clone(), v.clone()))
        }
        _ => Err(RnError::invalid(format!(
          "indexes.{name} must be a non-empty string, under a name without `:`"
        ))),
      })
      .collect(),
    Some(_) => Err(RnError::invalid(
      "option `indexes` must be an object of strings",
    )),
  }
}

impl CacheNamespace {
  fn item_key(&self, key: &str) -> String {
    self.conn.key(&format!("{}:{key}", self.name))
  }

  fn index_base(&self) -> String {
    self.conn.key(&format!("{}:~idx:", self.name))
  }

  fn key(v: &Unknown) -> RnResult<String> {
    let key = args::key(v, "key")?;
    if key.starts_with("~idx:") {
      return Err(RnError::invalid(
        "keys starting with `~idx:` are reserved for indexes",
      ));
    }
    Ok(key)
  }

  /// `set.lua`'s arguments for one item.
  fn item_args(
    &self,
    out: &mut Vec<Vec<u8>>,
    key: &str,
    fields: Vec<Vec<u8>>,
    indexes: &[(String, String)],
  ) {
    out.push(self.item_key(key).into_bytes());
    out.push(key.as_bytes().to_vec());
    out.push((fields.len() / 2).to_string().into_bytes());
    out.extend(fields);
    out.push(indexes.len().to_string().into_bytes());
    for (n, v) in indexes {
      out.push(n.as_bytes().to_vec());
      out.push(v.as_bytes().to_vec());
    }
  }
}

#[napi]
impl CacheNamespace {
  /// The namespace's name.
  #[napi(getter)]
  pub fn name(&self) -> String {
    self.name.clone()
  }

  /// Stores `value` (JSON) at `key`, replacing what was there (and its index entries).
  /// `ttl` in seconds (default the namespace's `defaultTtl`); `indexes` lists the item
  /// under index values for `getByIndex`.
  #[napi(
    ts_args_type = "key: string, value: unknown, options?: CacheSetOptions",
    ts_return_type = "Promise<boolean>"
  )]
  pub fn set<'env>(
    &self,
    env: &'env Env,
    key: Unknown,
    value: Unknown,
    options: Option<Unknown>,
  ) -> napi::Result<PromiseRaw<'env, bool>> {
    let parsed = (|| {
      let key = Self::key(&key)?;
      let map = args::options_object(options.as_ref(), "set options", &["ttl", "indexes"])?;
      let ttl = args::option_seconds(&map, "ttl")?.or(self.default_ttl);
      let indexes = index_pairs(&map)?;
      let fields = item_fields(env, &value)?;
      let mut argv = vec![
        ttl.map(args::millis).unwrap_or_default().into_bytes(),
        self.index_base().into_bytes(),
      ];
      self.item_args(&mut argv, &key, fields, &indexes);
      Ok(argv)
    })();
    let conn = self.conn.clone();
    complete_with(env, self.conn.traces(), parsed, move |argv| async move {
      SET.run(&conn, NO_KEYS, &argv).await.map(|_| true)
    })
  }

  /// The value at `key`, or `null`.
  #[napi(
    ts_generic_types = "T = unknown",
    ts_args_type = "key: string",
    ts_return_type = "Promise<T | null>"
  )]
  pub fn get<'env>(
    &self,
    env: &'env Env,
    key: Unknown,
  ) -> napi::Result<PromiseRaw<'env, Option<JsonText>>> {
    let parsed = Self::key(&key).map(|k| self.item_key(&k));
    let conn = self.conn.clone();
    let stats = self.stats.clone();
    complete_with(env, self.conn.traces(), parsed, move |item| async move {
      let mut cmd = redis::cmd("HGETALL");
      cmd.arg(&item);
      let Value::Array(pairs) = conn.read(ReadKind::HashAll, &item, cmd).await? else {
        return Err(RnError::internal("unexpected HGETALL reply"));
      };
      let found = item_json(&pairs);
      let counter = if found.is_some() {
        &stats.hits
      } else {
        &stats.misses
      };
      counter.fetch_add(1, Ordering::Relaxed);
      Ok(found)
    })
  }

  /// Deletes `key` and its index entries; `true` when it existed.
  #[napi(ts_args_type = "key: string", ts_return_type = "Promise<boolean>")]
  pub fn delete<'env>(&self, env: &'env Env, key: Unknown) -> napi::Result<PromiseRaw<'env, bool>> {
    let parsed = Self::key(&key).map(|k| (self.item_key(&k), k, self.index_base()));
    let conn = self.conn.clone();
    complete_with(
      env,
      self.conn.traces(),
      parsed,
      move |(item, short, base)| async move {
        Ok(
          int(
            DELETE
              .run(&conn, &[&item], &[short.as_bytes(), base.as_bytes()])
              .await?,
          )? == 1,
        )
      },
    )
  }

  /// Whether `key` exists.
  #[napi(ts_args_type = "key: string", ts_return_type = "Promise<boolean>")]
  pub fn exists<'env>(&self, env: &'env Env, key: Unknown) -> napi::Result<PromiseRaw<'env, bool>> {
    let parsed = Self::key(&key).map(|k| self.item_key(&k));
    let conn = self.conn.clone();
    complete_with(env, self.conn.traces(), parsed, move |item| async move {
      conn.exists(&item).await
    })
  }

  /// Merges `partial` into the object at `key`, atomically on the server (concurrent
  /// updates of different fields all survive); keeps the expiry unless `ttl` is given.
  /// `false` when the key does not exist; `ERR_INVALID_ARGUMENT` when it holds no object.
  #[napi(
    ts_args_type = "key: string, partial: Record<string, unknown>, options?: CacheUpdateOptions",
    ts_return_type = "Promise<boolean>"
  )]
  pub fn update<'env>(
    &self,
    env: &'env Env,
    key: Unknown,
    partial: Unknown,
    options: Option<Unknown>,
  ) -> napi::Result<PromiseRaw<'env, bool>> {
    let parsed = (|| {
      let key = Self::key(&key)?;
      let map = args::options_object(options.as_ref(), "update options", &["ttl"])?;
      let ttl = args::option_seconds(&map, "ttl")?;
      let fields =
        json_fields::field_args("f:", json_fields::object_fields(env, &partial, "partial")?);
      let mut argv = vec![
        key.clone().into_bytes(),
        self.index_base().into_bytes(),
        ttl.map(args::millis).unwrap_or_default().into_bytes(),
      ];
      argv.extend(fields);
      Ok((self.item_key(&key), argv))
    })();
    let conn = self.conn.clone();
    complete_with(
      env,
      self.conn.traces(),
      parsed,
      move |(item, argv)| async move {
        match int(UPDATE.run(&conn, &[&item], &argv).await?)? {
          -1 => Err(RnError::invalid("update needs an object value at this key")),
          n => Ok(n == 1),
        }
      },
    )
  }

  /// Seconds left for `key` (fractions), `-1` without expiry, `null` when absent.
  #[napi(
    ts_args_type = "key: string",
    ts_return_type = "Promise<number | null>"
  )]
  pub fn get_ttl<'env>(
    &self,
    env: &'env Env,
    key: Unknown,
  ) -> napi::Result<PromiseRaw<'env, Option<f64>>> {
    let parsed = Self::key(&key).map(|k| self.item_key(&k));
    let conn = self.conn.clone();
    complete_with(env, self.conn.traces(), parsed, move |item| async move {
      conn.ttl_seconds(&item).await
    })
  }

  /// Sets `key` to expire in `ttl` seconds (its index entries follow); `false` when absent.
  #[napi(
    ts_args_type = "key: string, ttl: number",
    ts_return_type = "Promise<boolean>"
  )]
  pub fn set_ttl<'env>(
    &self,
    env: &'env Env,
    key: Unknown,
    ttl: Unknown,
  ) -> napi::Result<PromiseRaw<'env, bool>> {
    let parsed = (|| {
      let key = Self::key(&key)?;
      let ttl = args::required_ttl(&ttl, "ttl")?;
      Ok((
        self.item_key(&key),
        [key, self.index_base(), args::millis(ttl)],
      ))
    })();
    let conn = self.conn.clone();
    complete_with(
      env,
      self.conn.traces(),
      parsed,
      move |(item, argv)| async move { Ok(int(SET_TTL.run(&conn, &[&item], &argv).await?)? == 1) },
    )
  }

  /// The items listed under index `name` = `value`, in key order of the index. Items that
  /// expired never show up (their entries are pruned here).
  #[napi(
    ts_generic_types = "T = unknown",
    ts_args_type = "name: string, value: string",
    ts_return_type = "Promise<T[]>"
  )]
  pub fn get_by_index<'env>(
    &self,
    env: &'env Env,
    name: Unknown,
    value: Unknown,
  ) -> napi::Result<PromiseRaw<'env, JsonText>> {
    self.by_index(env, name, value, true)
  }

  /// The keys listed under index `name` = `value`.
  #[napi(
    ts_args_type = "name: string, value: string",
    ts_return_type = "Promise<string[]>"
  )]
  pub fn get_keys_by_index<'env>(
    &self,
    env: &'env Env,
    name: Unknown,
    value: Unknown,
  ) -> napi::Result<PromiseRaw<'env, JsonText>> {
    self.by_index(env, name, value, false)
  }

  fn by_index<'env>(
    &self,
    env: &'env Env,
    name: Unknown,
    value: Unknown,
    values: bool,
  ) -> napi::Result<PromiseRaw<'env, JsonText>> {
    let parsed = (|| {
      let name = args::key(&name, "name")?;
      let value = args::key(&value, "value")?;
      Ok((
        format!("{}{name}:{value}", self.index_base()),
        self.item_key(""),
      ))
    })();
    let conn = self.conn.clone();
    complete_with(
      env,
      self.conn.traces(),
      parsed,
      move |(index, base)| async move {
        let flag: &[u8] = if values { b"1" } else { b"0" };
        let Value::Array(reply) = BY_INDEX
          .run(&conn, &[&index], &[base.as_bytes(), flag])
          .await?
        else {
          return Err(RnError::internal("unexpected reply"));
        };
        let mut out = Vec::new();
        let mut i = 0;
        while i < reply.len() {
          let short = match &reply[i] {
            Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
            _ => String::new(),
          };
          i += 1;
          if values {
            let n = match reply.get(i) {
              Some(Value::Int(n)) => *n as usize,
              _ => 0,
            };
            i += 1;
            if let Some(JsonText(text)) = item_json(&reply[i..(i + n).min(reply.len())]) {
              out.push(text);
            }
            i += n;
          } else {
            out.push(serde_json::to_string(&short).unwrap_or_default());
          }
        }
        Ok(JsonText(format!("[{}]", out.join(","))))
      },
    )
  }

  /// Adds `amount` (a whole number, default 1) to the number at `key` and returns it; a
  /// new item gets `ttl` seconds (default the namespace's `defaultTtl`).
  #[napi(
    ts_args_type = "key: string, amount?: number, ttl?: number",
    ts_return_type = "Promise<number>"
  )]
  pub fn increment<'env>(
    &self,
    env: &'env Env,
    key: Unknown,
    amount: Option<Unknown>,
    ttl: Option<Unknown>,
  ) -> napi::Result<PromiseRaw<'env, i64>> {
    let parsed = (|| {
      let key = Self::key(&key)?;
      let by = match &amount {
        a if args::is_absent(a.as_ref()) => 1,
        Some(a) => args::integer(a, "amount")?,
        None => 1,
      };
      let ttl = args::ttl(ttl.as_ref(), "ttl")?.or(self.default_ttl);
      Ok((
        self.item_key(&key),
        [by.to_string(), ttl.map(args::millis).unwrap_or_default()],
      ))
    })();
    let conn = self.conn.clone();
    complete_with(
      env,
      self.conn.traces(),
      parsed,
      move |(item, argv)| async move { int(INCREMENT.run(&conn, &[&item], &argv).await?) },
    )
  }

  /// The values at `keys`, in order, `null` for each missing one.
  #[napi(
    ts_generic_types = "T = unknown",
    ts_args_type = "keys: string[]",
    ts_return_type = "Promise<(T | null)[]>"
  )]
  pub fn mget<'env>(
    &self,
    env: &'env Env,
    keys: Unknown,
  ) -> napi::Result<PromiseRaw<'env, JsonText>> {
    let parsed = args::array(&keys, "keys").and_then(|items| {
      items
        .iter()
        .enumerate()
        .map(|(i, k)| {
          Self::key(k)
            .map_err(|e| RnError::invalid(format!("keys[{i}]: {}", e.message)))
            .map(|k| self.item_key(&k))
        })
        .collect::<RnResult<Vec<_>>>()
    });
    let conn = self.conn.clone();
    let stats = self.stats.clone();
    complete_with(env, self.conn.traces(), parsed, move |items| async move {
      if items.is_empty() {
        return Ok(JsonText("[]".into()));
      }
      let mut pipe = redis::pipe();
      for item in &items {
        pipe.cmd("HGETALL").arg(item);
      }
      let replies = conn.exec_pipeline(pipe, items.len()).await?;
      let mut out = Vec::with_capacity(replies.len());
      for reply in replies {
        let found = match reply {
          Value::Array(pairs) => item_json(&pairs),
          Value::ServerError(e) => return Err(RnError::from(redis::RedisError::from(e))),
          _ => None,
        };
        let counter = if found.is_some() {
          &stats.hits
        } else {
          &stats.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        out.push(found.map(|j| j.0).unwrap_or_else(|| "null".into()));
      }
      Ok(JsonText(format!("[{}]", out.join(","))))
    })
  }

  /// Stores several values at once (atomically), each for `ttl` seconds (default the
  /// namespace's `defaultTtl`).
  #[napi(
    ts_args_type = "entries: Record<string, unknown>, ttl?: number",
    ts_return_type = "Promise<void>"
  )]
  pub fn mset<'env>(
    &self,
    env: &'env Env,
    entries: Unknown,
    ttl: Option<Unknown>,
  ) -> napi::Result<PromiseRaw<'env, ()>> {
    let parsed = (|| {
      let ttl = args::ttl(ttl.as_ref(), "ttl")?.or(self.default_ttl);
      let fields = json_fields::object_fields(env, &entries, "entries")?;
      let mut argv = vec![
        ttl.map(args::millis).unwrap_or_default().into_bytes(),
        self.index_base().into_bytes(),
      ];
      for (key, raw) in fields {
        if key.is_empty() || key.starts_with("~idx:") {
          return Err(RnError::invalid(format!(
            "entries: `{key}` is not a valid key"
          )));
        }
        let value: serde_json::Value =
          serde_json::from_str(raw.get()).unwrap_or(serde_json::Value::Null);
        let item = match value {
          serde_json::Value::Object(_) => {
            let obj: json_fields::ObjectFields = serde_json::from_str(raw.get())
              .map_err(|_| RnError::invalid("entries must hold JSON values"))?;
            json_fields::field_args("f:", obj)
          }
          _ => vec![b"v".to_vec(), raw.get().as_bytes().to_vec()],
        };
        self.item_args(&mut argv, &key, item, &[]);
      }
      Ok(argv)
    })();
    let conn = self.conn.clone();
    complete_with(env, self.conn.traces(), parsed, move |argv| async move {
      if argv.len() <= 2 {
        return Ok(());
      }
      SET.run(&conn, NO_KEYS, &argv).await.map(|_| ())
    })
  }

  /// Deletes every key of this namespace only (SCAN + UNLINK in batches; glob characters
  /// in the name match literally); resolves to how many keys were deleted.
  #[napi(ts_return_type = "Promise<number>")]
  pub fn clear<'env>(&self, env: &'env Env) -> napi::Result<PromiseRaw<'env, i64>> {
    let pattern = format!("{}:*", keys::escape_glob(&self.name));
    let conn = self.conn.clone();
    complete_with(env, self.conn.traces(), Ok(()), move |_| async move {
      crate::redis_service::delete_matching(&conn, &pattern).await
    })
  }

  /// The value at `key`; on a miss, `loader()`'s value, stored for `ttl` seconds (default
  /// the namespace's `defaultTtl`). Concurrent misses of one key in this process share
  /// one `loader` call; a loader that throws is not cached and its error reaches every
  /// caller waiting on it.
  #[napi(
    ts_generic_types = "T",
    ts_args_type = "key: string, loader: () => T | Promise<T>, ttl?: number",
    ts_return_type = "Promise<T>"
  )]
  pub fn get_or_set<'env>(
    &self,
    env: &'env Env,
    this: This<'env>,
    key: Unknown<'env>,
    loader: Unknown<'env>,
    ttl: Option<Unknown<'env>>,
  ) -> napi::Result<Unknown<'env>> {
    let checked = Self::key(&key).and_then(|_| {
      if loader.get_type().ok() != Some(ValueType::Function) {
        return Err(RnError::invalid("loader must be a function"));
      }
      args::ttl(ttl.as_ref(), "ttl").map(|_| ())
    });
    if let Err(e) = checked {
      return js_helper::rejected(env, e);
    }
    let helper = js_helper::function(env, include_str!("get_or_set.js"))?;
    let mut undefined = std::ptr::null_mut();
    unsafe { sys::napi_get_undefined(env.raw(), &mut undefined) };
    let ttl = ttl.map(|t| t.raw()).unwrap_or(undefined);
    // loads in progress are shared by every handle of this namespace on this client
    let scope = format!("{:p}", Arc::as_ptr(&self.stats));
    let scope =
      unsafe { <&str as napi::bindgen_prelude::ToNapiValue>::to_napi_value(env.raw(), &scope)? };
    let out = js_helper::call(
      env,
      helper,
      &[this.object.raw(), scope, key.raw(), loader.raw(), ttl],
    )?;
    Ok(unsafe { Unknown::from_raw_unchecked(env.raw(), out) })
  }

  /// Hits and misses of reads in this namespace (this process), and their ratio.
  #[napi]
  pub fn stats(&self) -> CacheStats {
    let hits = self.stats.hits.load(Ordering::Relaxed) as f64;
    let misses = self.stats.misses.load(Ordering::Relaxed) as f64;
    CacheStats {
      hits,
      misses,
      hit_ratio: if hits + misses > 0.0 {
        hits / (hits + misses)
      } else {
        0.0
      },
    }
  }
}
