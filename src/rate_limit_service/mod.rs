//! `RateLimitService`: fixed window, exact sliding window and token bucket, each one Lua
//! script on the Redis server's clock, so app instances with skewed clocks agree and N
//! concurrent requests against a limit L let exactly L through.
//!
//! Keys (after the client's prefix): `rate_limit:<key>` (fixed window: the seed's key),
//! `rate_limit:<key>:sliding`, `rate_limit:<key>:bucket`. Each expires on its own once
//! the key stops receiving traffic.

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
use crate::error::{ErrorCode, RnError, RnResult};
use crate::json::JsonText;
use crate::script::LuaScript;

static FIXED: LazyLock<LuaScript> = LazyLock::new(|| LuaScript::new(include_str!("fixed.lua")));
static SLIDING: LazyLock<LuaScript> = LazyLock::new(|| LuaScript::new(include_str!("sliding.lua")));
static BUCKET: LazyLock<LuaScript> = LazyLock::new(|| LuaScript::new(include_str!("bucket.lua")));

/// Options of `new RateLimitService(client, options)` (`rateLimit` in
/// `RedisModule.forRoot`).
#[allow(dead_code)] // read from JS as JSON; this struct declares its TypeScript type
#[napi(object)]
pub struct RateLimitServiceOptions {
  /// What a call does when Redis cannot be reached: `'fail-closed'` (refuse, the
  /// default) or `'fail-open'` (allow). Either way the result says so (`redisError`).
  #[napi(ts_type = "'fail-closed' | 'fail-open'")]
  pub on_redis_error: Option<String>,
}

/// Options of `consume` and `status`.
#[allow(dead_code)] // read from JS as JSON; this struct declares its TypeScript type
#[napi(object)]
pub struct RateLimitOptions {
  /// Requests allowed per window (a whole number >= 1); for the token bucket, the burst.
  pub limit: u32,
  /// The window, seconds (fractions allowed); for the token bucket, the time to refill
  /// `limit` tokens.
  pub window_seconds: f64,
  /// Default `'sliding-window'`.
  #[napi(ts_type = "'fixed-window' | 'sliding-window' | 'token-bucket'")]
  pub algorithm: Option<String>,
  /// What this request counts for (a whole number >= 1, at most `limit`). Default 1.
  pub cost: Option<u32>,
  /// Overrides the service's `onRedisError` for this call.
  #[napi(ts_type = "'fail-closed' | 'fail-open'")]
  pub on_redis_error: Option<String>,
}

/// The outcome of `consume` / `status`.
#[allow(dead_code)] // built as JSON; this struct declares its TypeScript type
#[napi(object)]
pub struct RateLimitResult {
  /// Whether this request may go ahead (for `status`: whether one would).
  pub allowed: bool,
  pub limit: u32,
  /// Whole requests (of this cost 1) still allowed now; never negative.
  pub remaining: u32,
  /// Epoch ms when the full limit is available again.
  pub reset_at: f64,
  /// When refused: ms to wait before this request would be allowed; 0 when allowed.
  pub retry_after_ms: f64,
  /// Set only when Redis could not be reached and the outage policy decided.
  pub redis_error: Option<RateLimitRedisError>,
}

/// Why a result was decided by the outage policy instead of Redis.
#[allow(dead_code)] // built as JSON; this struct declares its TypeScript type
#[napi(object)]
pub struct RateLimitRedisError {
  /// The error's code (`ERR_REDIS_CONNECTION`, `ERR_REDIS_TIMEOUT`, ...).
  pub code: String,
  pub message: String,
  #[napi(ts_type = "'fail-closed' | 'fail-open'")]
  pub policy: String,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Algorithm {
  Fixed,
  Sliding,
  Bucket,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Policy {
  FailClosed,
  FailOpen,
}

impl Policy {
  fn parse(v: Option<&serde_json::Value>, what: &str) -> RnResult<Option<Policy>> {
    match v {
      None | Some(serde_json::Value::Null) => Ok(None),
      Some(serde_json::Value::String(s)) if s == "fail-closed" => Ok(Some(Policy::FailClosed)),
      Some(serde_json::Value::String(s)) if s == "fail-open" => Ok(Some(Policy::FailOpen)),
      Some(_) => Err(RnError::invalid(format!(
        "{what} must be 'fail-closed' or 'fail-open'"
      ))),
    }
  }

  fn name(self) -> &'static str {
    match self {
      Policy::FailClosed => "fail-closed",
      Policy::FailOpen => "fail-open",
    }
  }
}

struct Request {
  key: String,
  algorithm: Algorithm,
  limit: u64,
  window: Duration,
  cost: u64,
  policy: Policy,
}

/// Rate limits, exact under concurrency.
#[napi]
pub struct RateLimitService {
  conn: Connection,
  policy: Policy,
}

fn whole(
  map: &serde_json::Map<String, serde_json::Value>,
  name: &str,
  default: Option<u64>,
) -> RnResult<u64> {
  match (args::option_count(map, name, 1)?, default) {
    (Some(n), _) => Ok(n),
    (None, Some(d)) => Ok(d),
    (None, None) => Err(RnError::invalid(format!(
      "option `{name}` is required (a whole number >= 1)"
    ))),
  }
}

fn number(v: &Value) -> f64 {
  match v {
    Value::Int(i) => *i as f64,
    Value::BulkString(b) => String::from_utf8_lossy(b).parse().unwrap_or(0.0),
    _ => 0.0,
  }
}

fn now_ms() -> f64 {
  std::time::SystemTime::now()
    .duration_since(std::time::UNIX_EPOCH)
    .map(|d| d.as_millis() as f64)
    .unwrap_or(0.0)
}

/// Errors that mean "Redis is not there": the outage policy decides them.
fn is_outage(e: &RnError) -> bool {
  matches!(e.code, ErrorCode::RedisConnection | ErrorCode::RedisTimeout)
}

impl RateLimitService {
  fn request(&self, key: &Unknown, options: Option<&Unknown>) -> RnResult<Request> {
    let key = args::key(key, "key")?;
    let map = args::options_object(
      options,
      "rate limit options",
      &[
        "limit",
        "windowSeconds",
        "algorithm",
        "cost",
        "onRedisError",
      ],
    )?;
    if options.is_none() || map.is_empty() {
      return Err(RnError::invalid(
        "rate limit options `{ limit, windowSeconds }` are required",
      ));
    }
    let limit = whole(&map, "limit", None)?;
    let window = args::option_seconds(&map, "windowSeconds")?
      .ok_or_else(|| RnError::invalid("option `windowSeconds` is required (seconds > 0)"))?;
    let cost = whole(&map, "cost", Some(1))?;
    if cost > limit {
      return Err(RnError::invalid(format!(
        "cost ({cost}) is larger than limit ({limit}): such a request could never be allowed"
      )));
    }
    let algorithm = match map.get("algorithm") {
      None | Some(serde_json::Value::Null) => Algorithm::Sliding,
      Some(serde_json::Value::String(s)) => match s.as_str() {
        "fixed-window" => Algorithm::Fixed,
        "sliding-window" => Algorithm::Sliding,
        "token-bucket" => Algorithm::Bucket,
        other => {
          return Err(RnError::invalid(format!(
            "unknown algorithm `{other}` (fixed-window, sliding-window, token-bucket)"
          )))
        }
      },
      Some(_) => return Err(RnError::invalid("option `algorithm` must be a string")),
    };
    let policy =
      Policy::parse(map.get("onRedisError"), "option `onRedisError`")?.unwrap_or(self.policy);
    Ok(Request {
      key,
      algorithm,
      limit,
      window,
      cost,
      policy,
    })
  }

  fn key_of(conn: &Connection, key: &str, algorithm: Algorithm) -> String {
    match algorithm {
      Algorithm::Fixed => conn.key(&format!("rate_limit:{key}")),
      Algorithm::Sliding => conn.key(&format!("rate_limit:{key}:sliding")),
      Algorithm::Bucket => conn.key(&format!("rate_limit:{key}:bucket")),
    }
  }

  /// Runs the algorithm's script; an outage is decided by the policy.
  async fn run(conn: Connection, req: Request, consume: bool) -> RnResult<serde_json::Value> {
    let script = match req.algorithm {
      Algorithm::Fixed => &*FIXED,
      Algorithm::Sliding => &*SLIDING,
      Algorithm::Bucket => &*BUCKET,
    };
    let key = Self::key_of(&conn, &req.key, req.algorithm);
    let argv = [
      req.limit.to_string(),
      req.window.as_millis().to_string(),
      req.cost.to_string(),
      if consume { "1".into() } else { "0".into() },
    ];
    match script.run(&conn, &[&key], &argv).await {
      Ok(Value::Array(r)) if r.len() == 4 => {
        // The server decided (on its clock); the times are handed back relative to now on
        // this machine's clock, which is what the caller will wait on.
        let now = now_ms();
        Ok(serde_json::json!({
          "allowed": number(&r[0]) == 1.0,
          "limit": req.limit,
          "remaining": number(&r[1]).max(0.0),
          "resetAt": now + number(&r[2]).max(0.0),
          "retryAfterMs": number(&r[3]).max(0.0),
        }))
      }
      Ok(other) => Err(RnError::internal(format!("unexpected reply {other:?}"))),
      Err(e) if is_outage(&e) => {
        let now = now_ms();
        let open = req.policy == Policy::FailOpen;
        let window = req.window.as_millis() as f64;
        Ok(serde_json::json!({
          "allowed": open,
          "limit": req.limit,
          "remaining": if open { req.limit } else { 0 },
          "resetAt": now + window,
          "retryAfterMs": if open { 0.0 } else { window },
          "redisError": { "code": e.code.as_str(), "message": e.message, "policy": req.policy.name() },
        }))
      }
      Err(e) => Err(e),
    }
  }
}

#[napi]
impl RateLimitService {
  /// `new RateLimitService(client, { onRedisError? })`.
  #[napi(
    constructor,
    ts_args_type = "client: RedisClient, options?: RateLimitServiceOptions"
  )]
  pub fn new(env: &Env, client: Unknown, options: Option<Unknown>) -> napi::Result<Self> {
    let conn = connection_of(env, client, "RateLimitService")?;
    let policy = args::options_object(
      options.as_ref(),
      "RateLimitService options",
      &["onRedisError"],
    )
    .and_then(|map| Policy::parse(map.get("onRedisError"), "option `onRedisError`"))
    .map_err(|e| js_error(env, &e))?
    .unwrap_or(Policy::FailClosed);
    Ok(RateLimitService { conn, policy })
  }

  /// The seed's check: `true` when `identifier` may make one more request in the current
  /// fixed window of `windowSeconds` (key `rate_limit:<identifier>`), counting it.
  /// Atomic. An outage follows the service's `onRedisError`.
  #[napi(
    ts_args_type = "identifier: string, limit: number, windowSeconds: number",
    ts_return_type = "Promise<boolean>"
  )]
  pub fn check_rate_limit<'env>(
    &self,
    env: &'env Env,
    identifier: Unknown,
    limit: Unknown,
    window_seconds: Unknown,
  ) -> napi::Result<PromiseRaw<'env, bool>> {
    let parsed = (|| {
      let key = args::key(&identifier, "identifier")?;
      let limit = args::integer(&limit, "limit")?;
      if limit < 1 {
        return Err(RnError::invalid(format!("limit must be >= 1, got {limit}")));
      }
      let window = args::required_ttl(&window_seconds, "windowSeconds")?;
      Ok(Request {
        key,
        algorithm: Algorithm::Fixed,
        limit: limit as u64,
        window,
        cost: 1,
        policy: self.policy,
      })
    })();
    let conn = self.conn.clone();
    complete_with(env, parsed, move |req| async move {
      let result = Self::run(conn, req, true).await?;
      Ok(result["allowed"].as_bool().unwrap_or(false))
    })
  }

  /// Counts a request against `key` and says whether it may go ahead. Exact under
  /// concurrency; time comes from the Redis server.
  #[napi(
    ts_args_type = "key: string, options: RateLimitOptions",
    ts_return_type = "Promise<RateLimitResult>"
  )]
  pub fn consume<'env>(
    &self,
    env: &'env Env,
    key: Unknown,
    options: Option<Unknown>,
  ) -> napi::Result<PromiseRaw<'env, JsonText>> {
    let parsed = self.request(&key, options.as_ref());
    let conn = self.conn.clone();
    complete_with(env, parsed, move |req| async move {
      Ok(JsonText(Self::run(conn, req, true).await?.to_string()))
    })
  }

  /// What `consume` would answer now, without counting anything.
  #[napi(
    ts_args_type = "key: string, options: RateLimitOptions",
    ts_return_type = "Promise<RateLimitResult>"
  )]
  pub fn status<'env>(
    &self,
    env: &'env Env,
    key: Unknown,
    options: Option<Unknown>,
  ) -> napi::Result<PromiseRaw<'env, JsonText>> {
    let parsed = self.request(&key, options.as_ref());
    let conn = self.conn.clone();
    complete_with(env, parsed, move |req| async move {
      Ok(JsonText(Self::run(conn, req, false).await?.to_string()))
    })
  }

  /// Forgets everything counted for `key`, under every algorithm.
  #[napi(ts_args_type = "key: string", ts_return_type = "Promise<void>")]
  pub fn reset<'env>(&self, env: &'env Env, key: Unknown) -> napi::Result<PromiseRaw<'env, ()>> {
    let parsed = args::key(&key, "key");
    let conn = self.conn.clone();
    complete_with(env, parsed, move |key| async move {
      let mut cmd = redis::cmd("DEL");
      for a in [Algorithm::Fixed, Algorithm::Sliding, Algorithm::Bucket] {
        cmd.arg(Self::key_of(&conn, &key, a));
      }
      conn.exec(cmd).await.map(|_| ())
    })
  }
}
