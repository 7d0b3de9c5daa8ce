//! `CacheService`: namespaced JSON cache with secondary indexes.
//!
//! Keys (after the client's prefix): `<namespace>:<key>` for an item (a hash: `v` its
//! JSON value, or `f:<field>` per field of an object so `update` merges atomically;
//! `i:<index>` the index values it is listed under; `ver` a random version each `set`
//! writes), `<namespace>:~idx:<index>:<value>` for an index (a sorted set of entries
//! `<key>\0<version>` by the item's expiry, pruned of expired items on every read and
//! write, expiring with its longest-lived member).
//!
//! Every script touches one key, so items and indexes spread over a cluster's slots (no
//! namespace-wide hash tag, no hot slot). An item and its index entries are written in two
//! steps: the item first (its script returns what the entries must become), then each
//! index. An entry names the version of the item it was written for, and is written only
//! after that version was stored; so an entry whose item no longer has that version is
//! dead for good, and reads skip it and remove it (reconciliation on read). Concurrent
//! sets of one key each remove exactly the entries of the version they replaced.

use std::collections::{BTreeMap, HashMap};
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
use crate::script::{LuaScript, NO_ARGS};

macro_rules! script {
  ($name:ident, $file:literal) => {
    static $name: LazyLock<LuaScript> = LazyLock::new(|| {
      LuaScript::with_prelude(
        concat!(module_path!(), "/", $file),
        &[include_str!("common.lua")],
        include_str!($file),
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
script!(INDEX, "index.lua");
script!(READ, "read.lua");

/// Hex digits of an item's version.
const VERSION_LEN: usize = 16;

/// A new item version: random, so two sets never write the same one.
fn new_version() -> String {
  format!("{:016x}", rand::random::<u64>())
}

/// An index entry: the item's short key, then `\0` and the version it was written for
/// (none for entries written before versions existed).
fn entry(short: &str, version: &[u8]) -> Vec<u8> {
  let mut e = short.as_bytes().to_vec();
  if !version.is_empty() {
    e.push(0);
    e.extend_from_slice(version);
  }
  e
}

/// An index entry's short key and version.
fn parse_entry(e: &[u8]) -> (&[u8], &[u8]) {
  let n = e.len();
  if n > VERSION_LEN && e[n - VERSION_LEN - 1] == 0 {
    (&e[..n - VERSION_LEN - 1], &e[n - VERSION_LEN..])
  } else {
    (e, b"")
  }
}

fn bytes_of(v: &Value) -> &[u8] {
  match v {
    Value::BulkString(b) => b,
    Value::SimpleString(s) => s.as_bytes(),
    _ => b"",
  }
}

/// The changes to make to indexes after an item step, by index key: script arguments of
/// `index.lua` (`'+' entry score`, `'-' entry`, `'~' entry score`).
#[derive(Default)]
struct IndexOps(BTreeMap<String, Vec<Vec<u8>>>);

impl IndexOps {
  fn push(&mut self, index: String, op: &[&[u8]]) {
    self
      .0
      .entry(index)
      .or_default()
      .extend(op.iter().map(|a| a.to_vec()));
  }

  /// From an item step's reply `[.., version, name, value, ...]` (from `at`): `op` on the
  /// entry of each index value the item was listed under.
  fn for_listed(
    &mut self,
    index_base: &str,
    short: &str,
    reply: &[Value],
    at: usize,
    op: &[u8],
    score: Option<&[u8]>,
  ) {
    let Some(version) = reply.get(at) else {
      return;
    };
    let e = entry(short, bytes_of(version));
    for pair in reply[at + 1..].chunks(2) {
      let [name, value] = pair else { continue };
      let index = index_key(
        index_base,
        &String::from_utf8_lossy(bytes_of(name)),
        &String::from_utf8_lossy(bytes_of(value)),
      );
      match score {
        Some(s) => self.push(index, &[op, &e, s]),
        None => self.push(index, &[op, &e]),
      }
    }
  }

  /// Runs the changes, one script per index (concurrently).
  async fn apply(self, conn: &Connection) -> RnResult<()> {
    futures_util::future::try_join_all(
      self
        .0
        .iter()
        .map(|(index, args)| async move { INDEX.run(conn, &[index], args).await }),
    )
    .await
    .map(|_| ())
  }
}

/// The key of index `name` = `value`, `index_base` being the namespace's `<ns>:~idx:`.
fn index_key(index_base: &str, name: &str, value: &str) -> String {
  format!("{index_base}{name}:{value}")
}

/// One item to store (`set`, `mset`): `set.lua`'s arguments, and its index values.
struct Store {
  item: String,
  short: String,
  version: String,
  argv: Vec<Vec<u8>>,
  indexes: Vec<(String, String)>,
}

impl Store {
  /// The item step, then its index entries: the new version's added, the replaced
  /// version's removed.
  async fn run(self, conn: &Connection, index_base: &str) -> RnResult<()> {
    let reply = items_of(SET.run(conn, &[&self.item], &self.argv).await?, "set")?;
    let expiry = bytes_of(&reply[0]).to_vec();
    let mut ops = IndexOps::default();
    ops.for_listed(index_base, &self.short, &reply, 1, b"-", None);
    let e = entry(&self.short, self.version.as_bytes());
    for (name, value) in &self.indexes {
      ops.push(index_key(index_base, name, value), &[b"+", &e, &expiry]);
    }
    ops.apply(conn).await
  }
}

/// The array reply of an item step.
fn items_of(reply: Value, what: &str) -> RnResult<Vec<Value>> {
  match reply {
    Value::Array(items) if !items.is_empty() => Ok(items),
    other => Err(RnError::internal(format!(
      "unexpected reply from {what}: {other:?}"
    ))),
  }
}

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

/// Reads of one namespace on one client, in this process (`client.metrics().caches`).
#[derive(Default)]
pub(crate) struct Stats {
  pub hits: AtomicU64,
  pub misses: AtomicU64,
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

  /// An item to store: `ttl` (ms, '' for none), its fields, its index values.
  fn store(
    &self,
    key: &str,
    ttl: Option<Duration>,
    fields: Vec<Vec<u8>>,
    indexes: Vec<(String, String)>,
  ) -> Store {
    let version = new_version();
    let mut argv = vec![
      ttl.map(args::millis).unwrap_or_default().into_bytes(),
      version.clone().into_bytes(),
      (fields.len() / 2).to_string().into_bytes(),
    ];
    argv.extend(fields);
    for (n, v) in &indexes {
      argv.push(n.as_bytes().to_vec());
      argv.push(v.as_bytes().to_vec());
    }
    Store {
      item: self.item_key(key),
      short: key.to_string(),
      version,
      argv,
      indexes,
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
      Ok(self.store(&key, ttl, fields, indexes))
    })();
    let conn = self.conn.clone();
    let base = self.index_base();
    complete_with(env, self.conn.traces(), parsed, move |item| async move {
      item.run(&conn, &base).await.map(|_| true)
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
        let reply = items_of(DELETE.run(&conn, &[&item], NO_ARGS).await?, "delete")?;
        let mut ops = IndexOps::default();
        ops.for_listed(&base, &short, &reply, 1, b"-", None);
        ops.apply(&conn).await?;
        Ok(matches!(reply[0], Value::Int(1)))
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
      let mut argv = vec![ttl.map(args::millis).unwrap_or_default().into_bytes()];
      argv.extend(fields);
      Ok((self.item_key(&key), key, argv))
    })();
    let conn = self.conn.clone();
    let base = self.index_base();
    complete_with(
      env,
      self.conn.traces(),
      parsed,
      move |(item, short, argv)| async move {
        let reply = items_of(UPDATE.run(&conn, &[&item], &argv).await?, "update")?;
        match reply[0] {
          Value::Int(-1) => Err(RnError::invalid("update needs an object value at this key")),
          Value::Int(1) => {
            // a new ttl: the index entries get the new expiry
            if let Some(expiry) = reply.get(1).map(|e| bytes_of(e).to_vec()) {
              let mut ops = IndexOps::default();
              ops.for_listed(&base, &short, &reply, 2, b"~", Some(&expiry[..]));
              ops.apply(&conn).await?;
            }
            Ok(true)
          }
          _ => Ok(false),
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
      Ok((self.item_key(&key), key, args::millis(ttl)))
    })();
    let conn = self.conn.clone();
    let base = self.index_base();
    complete_with(
      env,
      self.conn.traces(),
      parsed,
      move |(item, short, ms)| async move {
        let reply = items_of(SET_TTL.run(&conn, &[&item], &[&ms]).await?, "setTtl")?;
        if !matches!(reply[0], Value::Int(1)) {
          return Ok(false);
        }
        let expiry = reply
          .get(1)
          .map(|e| bytes_of(e).to_vec())
          .unwrap_or_default();
        let mut ops = IndexOps::default();
        ops.for_listed(&base, &short, &reply, 2, b"~", Some(&expiry[..]));
        ops.apply(&conn).await?;
        Ok(true)
      },
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

  /// Reads an index, then checks each entry against its item (concurrently): an entry
  /// stands while its item has the version it names and is listed under this value.
  /// Entries that no longer stand are removed (they never stand again: a version is
  /// never written twice).
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
      Ok((index_key(&self.index_base(), &name, &value), name, value))
    })();
    let conn = self.conn.clone();
    let item_base = self.item_key("");
    complete_with(
      env,
      self.conn.traces(),
      parsed,
      move |(index, name, value)| async move {
        let Value::Array(entries) = BY_INDEX.run(&conn, &[&index], NO_ARGS).await? else {
          return Err(RnError::internal("unexpected reply"));
        };
        let flag: &[u8] = if values { b"1" } else { b"0" };
        let listed = format!("i:{name}");
        let reads = futures_util::future::try_join_all(entries.iter().map(|e| {
          let (short, _) = parse_entry(bytes_of(e));
          let item = format!("{item_base}{}", String::from_utf8_lossy(short));
          let (conn, name) = (&conn, &name);
          async move { READ.run(conn, &[&item], &[flag, name.as_bytes()]).await }
        }))
        .await?;
        let mut out = Vec::new();
        let mut stale = IndexOps::default();
        for (e, read) in entries.iter().zip(reads) {
          let (short, version) = parse_entry(bytes_of(e));
          let fields = match read {
            Value::Array(fields) => fields,
            _ => Vec::new(),
          };
          let (item_version, item_value): (&[u8], &[u8]) = if values {
            let field = |f: &[u8]| {
              fields
                .chunks(2)
                .find(|p| bytes_of(&p[0]) == f)
                .and_then(|p| p.get(1))
                .map(bytes_of)
                .unwrap_or(b"")
            };
            (field(b"ver"), field(listed.as_bytes()))
          } else {
            (
              fields.first().map(bytes_of).unwrap_or(b""),
              fields.get(1).map(bytes_of).unwrap_or(b""),
            )
          };
          if fields.is_empty() || item_version != version || item_value != value.as_bytes() {
            stale.push(index.clone(), &[b"-", bytes_of(e)]);
            continue;
          }
          let short = String::from_utf8_lossy(short);
          if values {
            if let Some(JsonText(text)) = item_json(&fields) {
              out.push(text);
            }
          } else {
            out.push(serde_json::to_string(&short).unwrap_or_default());
          }
        }
        stale.apply(&conn).await?;
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

  /// Stores several values at once, each for `ttl` seconds (default the namespace's
  /// `defaultTtl`). Each item is replaced atomically, as by `set`; the items are written
  /// side by side (in one round trip), not as one atomic step, so they can live on
  /// different Redis Cluster nodes.
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
      let mut items = Vec::with_capacity(fields.len());
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
        items.push(self.store(&key, ttl, item, Vec::new()));
      }
      Ok(items)
    })();
    let conn = self.conn.clone();
    let base = self.index_base();
    complete_with(env, self.conn.traces(), parsed, move |items| async move {
      futures_util::future::try_join_all(items.into_iter().map(|item| item.run(&conn, &base)))
        .await
        .map(|_| ())
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

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn an_entry_names_its_key_and_version_whatever_the_key_holds() {
    for short in ["k", "a\0b", "with:colons", "0123456789abcdef0", "x\0"] {
      let version = new_version();
      assert_eq!(version.len(), VERSION_LEN);
      let e = entry(short, version.as_bytes());
      assert_eq!(parse_entry(&e), (short.as_bytes(), version.as_bytes()));
    }
    // entries written before versions existed: the key alone
    assert_eq!(parse_entry(b"legacy"), (&b"legacy"[..], &b""[..]));
    assert_eq!(entry("legacy", b""), b"legacy".to_vec());
  }

  #[test]
  fn entries_sort_by_key_as_keys_alone_did() {
    let mut entries = [
      entry("a1", b"0000000000000000"),
      entry("a", b"ffffffffffffffff"),
      entry("b", b"0000000000000000"),
    ];
    entries.sort();
    let keys: Vec<&[u8]> = entries.iter().map(|e| parse_entry(e).0).collect();
    assert_eq!(keys, [&b"a"[..], b"a1", b"b"]);
  }

  #[test]
  fn index_changes_are_grouped_by_index() {
    let mut ops = IndexOps::default();
    let reply = [
      Value::BulkString(b"inf".to_vec()),
      Value::BulkString(b"0123456789abcdef".to_vec()),
      Value::BulkString(b"team".to_vec()),
      Value::BulkString(b"core".to_vec()),
    ];
    ops.for_listed("c:~idx:", "k", &reply, 1, b"-", None);
    ops.push(
      "c:~idx:team:core".into(),
      &[b"+", b"k\0fedcba9876543210", b"inf"],
    );
    assert_eq!(ops.0.len(), 1);
    let args = &ops.0["c:~idx:team:core"];
    assert_eq!(args[0], b"-");
    assert_eq!(args[1], b"k\x000123456789abcdef");
    assert_eq!(args[2], b"+");
  }
}
