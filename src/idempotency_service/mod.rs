//! `IdempotencyService`: processed-event markers, and exactly-once execution with
//! `begin` / `complete` / `abandon` (what the `@Idempotent()` interceptor builds on).
//!
//! Keys (after the client's prefix):
//! - `{ns}:processed:<eventId>`: an event marked processed
//! - `{ns}:<key>`: a hash `{ state: in-progress | completed, result, fingerprint,
//!   resultTtl, owner }`, expiring after the lock ttl while in progress and after the
//!   result ttl once completed

use std::sync::LazyLock;
use std::time::Duration;

use napi::bindgen_prelude::{PromiseRaw, Unknown};
use napi::Env;
use napi_derive::napi;
use redis::Value;

use crate::args;
use crate::client::connection_of;
use crate::completion::{complete_with, js_error};
use crate::connection::Connection;
use crate::error::RnError;
use crate::json::JsonText;
use crate::reply::int;
use crate::script::LuaScript;

static BEGIN: LazyLock<LuaScript> = lua_script!("begin.lua");
static COMPLETE: LazyLock<LuaScript> = lua_script!("complete.lua");
static ABANDON: LazyLock<LuaScript> = lua_script!("abandon.lua");

const DEFAULT_PROCESSED_TTL: Duration = Duration::from_secs(604_800);
const DEFAULT_LOCK_TTL: Duration = Duration::from_secs(60);
const DEFAULT_RESULT_TTL: Duration = Duration::from_secs(86_400);

/// Options of `new IdempotencyService(client, options)` (`idempotency` in
/// `RedisModule.forRoot`).
#[allow(dead_code)] // read from JS as JSON; this struct declares its TypeScript type
#[napi(object)]
pub struct IdempotencyServiceOptions {
  /// First part of every key of this service. Default `idempotency`.
  pub namespace: Option<String>,
  /// Default `lockTtl` of `begin`, seconds: how long a started key stays locked when its
  /// worker neither completes nor abandons it (a crash). Default 60.
  pub lock_ttl: Option<f64>,
  /// Default `resultTtl` of `begin`, seconds: how long a completed result is kept.
  /// Default 86400.
  pub result_ttl: Option<f64>,
}

/// Options of `complete` (instead of a ttl number).
#[allow(dead_code)] // read from JS as JSON; this struct declares its TypeScript type
#[napi(object)]
pub struct CompleteOptions {
  /// Seconds the result is kept. Default: the `resultTtl` of `begin`.
  pub ttl: Option<f64>,
  /// The `token` `begin` gave this caller: when its lock expired and another caller took
  /// the key meanwhile, nothing is stored (`complete` resolves to `false`).
  pub token: Option<String>,
  /// The fingerprint given to `begin`, kept should the record have to be written again
  /// (it expired, or Redis lost it), so later mismatches are still caught.
  pub fingerprint: Option<String>,
}

/// Options of `abandon`.
#[allow(dead_code)] // read from JS as JSON; this struct declares its TypeScript type
#[napi(object)]
pub struct AbandonOptions {
  /// The `token` `begin` gave this caller: a key another caller took meanwhile is left
  /// alone.
  pub token: Option<String>,
}

/// Options of `begin`.
#[allow(dead_code)] // read from JS as JSON; this struct declares its TypeScript type
#[napi(object)]
pub struct BeginOptions {
  /// Seconds the key stays locked if the caller never completes or abandons it.
  pub lock_ttl: Option<f64>,
  /// Seconds the result given to `complete` is kept.
  pub result_ttl: Option<f64>,
  /// What the request was (a hash of its body, say). A later `begin` on the same key
  /// with a different fingerprint gets `{ state: 'mismatch' }`.
  pub fingerprint: Option<String>,
}

/// Duplicate-work protection: processed-event markers and exactly-once execution.
#[napi]
pub struct IdempotencyService {
  conn: Connection,
  ns: String,
  lock_ttl: Duration,
  result_ttl: Duration,
}

impl IdempotencyService {
  fn record_key(&self, key: &str) -> String {
    self.conn.key(&format!("{}:{key}", self.ns))
  }

  fn processed_key(&self, event: &str) -> String {
    self.conn.key(&format!("{}:processed:{event}", self.ns))
  }
}

#[napi]
impl IdempotencyService {
  /// `new IdempotencyService(client, { namespace?, lockTtl?, resultTtl? })`.
  #[napi(
    constructor,
    ts_args_type = "client: RedisClient, options?: IdempotencyServiceOptions"
  )]
  pub fn new(env: &Env, client: Unknown, options: Option<Unknown>) -> napi::Result<Self> {
    let conn = connection_of(env, client, "IdempotencyService")?;
    let parsed = (|| {
      let map = args::options_object(
        options.as_ref(),
        "IdempotencyService options",
        &["namespace", "lockTtl", "resultTtl"],
      )?;
      Ok::<_, RnError>((
        args::option_string(&map, "namespace")?.unwrap_or_else(|| "idempotency".into()),
        args::option_seconds(&map, "lockTtl")?.unwrap_or(DEFAULT_LOCK_TTL),
        args::option_seconds(&map, "resultTtl")?.unwrap_or(DEFAULT_RESULT_TTL),
      ))
    })();
    let (ns, lock_ttl, result_ttl) = parsed.map_err(|e| js_error(env, &e))?;
    Ok(IdempotencyService {
      conn,
      ns,
      lock_ttl,
      result_ttl,
    })
  }

  /// Whether `eventId` was marked processed.
  #[napi(ts_args_type = "eventId: string", ts_return_type = "Promise<boolean>")]
  pub fn is_processed<'env>(
    &self,
    env: &'env Env,
    event_id: Unknown,
  ) -> napi::Result<PromiseRaw<'env, bool>> {
    let parsed = args::key(&event_id, "eventId").map(|e| self.processed_key(&e));
    let conn = self.conn.clone();
    complete_with(env, self.conn.traces(), parsed, move |key| async move {
      conn.exists(&key).await
    })
  }

  /// Marks `eventId` processed for `ttl` seconds (default 604800, a week). To claim an
  /// event atomically among concurrent consumers, use `begin`.
  #[napi(
    ts_args_type = "eventId: string, ttl?: number",
    ts_return_type = "Promise<void>"
  )]
  pub fn mark_as_processed<'env>(
    &self,
    env: &'env Env,
    event_id: Unknown,
    ttl: Option<Unknown>,
  ) -> napi::Result<PromiseRaw<'env, ()>> {
    let parsed = (|| {
      let key = self.processed_key(&args::key(&event_id, "eventId")?);
      let ttl = args::ttl(ttl.as_ref(), "ttl")?.unwrap_or(DEFAULT_PROCESSED_TTL);
      Ok((key, ttl))
    })();
    let conn = self.conn.clone();
    complete_with(
      env,
      self.conn.traces(),
      parsed,
      move |(key, ttl)| async move {
        let mut cmd = redis::cmd("SET");
        cmd.arg(key).arg("1").arg("PX").arg(ttl.as_millis() as u64);
        conn.exec(cmd).await.map(|_| ())
      },
    )
  }

  /// Claims `key`: of concurrent callers exactly one gets `{ state: 'started' }` and does
  /// the work, then calls `complete` (or `abandon` on failure). Others get
  /// `{ state: 'in-progress' }`, or `{ state: 'completed', result }` once it completed.
  /// A started key nobody completes is released after `lockTtl` (a crashed worker), so
  /// a retry can start. With `fingerprint`, a different one on the same key gets
  /// `{ state: 'mismatch' }`. The caller that started gets a `token`: give it to
  /// `complete` / `abandon` so a late call never overwrites a newer run's key.
  #[napi(
    ts_args_type = "key: string, options?: BeginOptions",
    ts_return_type = "Promise<{ state: 'started'; token: string } | { state: 'in-progress' } | { state: 'completed'; result: string } | { state: 'mismatch' }>"
  )]
  pub fn begin<'env>(
    &self,
    env: &'env Env,
    key: Unknown,
    options: Option<Unknown>,
  ) -> napi::Result<PromiseRaw<'env, JsonText>> {
    let parsed = (|| {
      let record = self.record_key(&args::key(&key, "key")?);
      let map = args::options_object(
        options.as_ref(),
        "begin options",
        &["lockTtl", "resultTtl", "fingerprint"],
      )?;
      let lock = args::option_seconds(&map, "lockTtl")?.unwrap_or(self.lock_ttl);
      let result = args::option_seconds(&map, "resultTtl")?.unwrap_or(self.result_ttl);
      let fingerprint = args::option_string(&map, "fingerprint")?.unwrap_or_default();
      Ok((
        record,
        [
          args::millis(lock),
          args::millis(result),
          fingerprint,
          uuid::Uuid::new_v4().to_string(),
        ],
      ))
    })();
    let conn = self.conn.clone();
    complete_with(
      env,
      self.conn.traces(),
      parsed,
      move |(record, argv)| async move {
        let Value::Array(reply) = BEGIN.run(&conn, &[&record], &argv).await? else {
          return Err(RnError::internal("unexpected reply"));
        };
        let text = |v: Option<&Value>| match v {
          Some(Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
          _ => String::new(),
        };
        let state = text(reply.first());
        let out = match state.as_str() {
          "completed" => serde_json::json!({ "state": state, "result": text(reply.get(1)) }),
          "started" => serde_json::json!({ "state": state, "token": text(reply.get(1)) }),
          _ => serde_json::json!({ "state": state }),
        };
        Ok(JsonText(out.to_string()))
      },
    )
  }

  /// Stores `result` for `key` (kept `ttl` seconds, default the `resultTtl` of `begin`;
  /// or give `{ ttl, token, fingerprint }`): later `begin` calls get it back. Resolves to
  /// `false` when `token` no longer owns the key (its lock expired and another caller
  /// started): nothing is stored then.
  #[napi(
    ts_args_type = "key: string, result: string, ttlOrOptions?: number | CompleteOptions",
    ts_return_type = "Promise<boolean>"
  )]
  pub fn complete<'env>(
    &self,
    env: &'env Env,
    key: Unknown,
    result: Unknown,
    ttl: Option<Unknown>,
  ) -> napi::Result<PromiseRaw<'env, bool>> {
    let parsed = (|| {
      let record = self.record_key(&args::key(&key, "key")?);
      let result = args::string(&result, "result")?;
      let (ttl, token, fingerprint) = match ttl.as_ref() {
        Some(o) if args::type_of(o) == napi::ValueType::Object => {
          let map = args::options_object(
            Some(o),
            "complete options",
            &["ttl", "token", "fingerprint"],
          )?;
          (
            args::option_seconds(&map, "ttl")?,
            args::option_string(&map, "token")?,
            args::option_string(&map, "fingerprint")?,
          )
        }
        other => (args::ttl(other, "ttl")?, None, None),
      };
      Ok((
        record,
        [
          result,
          ttl.map(args::millis).unwrap_or_default(),
          args::millis(self.result_ttl),
          token.unwrap_or_default(),
          fingerprint.unwrap_or_default(),
        ],
      ))
    })();
    let conn = self.conn.clone();
    complete_with(
      env,
      self.conn.traces(),
      parsed,
      move |(record, argv)| async move { Ok(int(COMPLETE.run(&conn, &[&record], &argv).await?)? == 1) },
    )
  }

  /// Releases `key` after a failure so a retry can start (a completed result is kept;
  /// with `{ token }`, a key another caller took meanwhile is left alone). Resolves to
  /// whether it released the key.
  #[napi(
    ts_args_type = "key: string, options?: AbandonOptions",
    ts_return_type = "Promise<boolean>"
  )]
  pub fn abandon<'env>(
    &self,
    env: &'env Env,
    key: Unknown,
    options: Option<Unknown>,
  ) -> napi::Result<PromiseRaw<'env, bool>> {
    let parsed = (|| {
      let record = self.record_key(&args::key(&key, "key")?);
      let map = args::options_object(options.as_ref(), "abandon options", &["token"])?;
      Ok((
        record,
        args::option_string(&map, "token")?.unwrap_or_default(),
      ))
    })();
    let conn = self.conn.clone();
    complete_with(
      env,
      self.conn.traces(),
      parsed,
      move |(record, token)| async move {
        Ok(int(ABANDON.run(&conn, &[&record], &[token.as_bytes()]).await?)? == 1)
      },
    )
  }
}
