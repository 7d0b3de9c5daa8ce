//! `RateLimitService`: sliding window counter (the default: O(1) state per key), fixed
//! window, exact sliding window and token bucket, each one Lua script on the Redis
//! server's clock, so app instances with skewed clocks agree and N concurrent requests
//! against a limit L let exactly L through.
//!
//! Keys (after the client's prefix): `rate_limit:{<key>}:counter`, `rate_limit:{<key>}`
//! (fixed window, shared with `checkRateLimit`), `rate_limit:{<key>}:sliding`,
//! `rate_limit:{<key>}:bucket`. Each expires on its own once the key stops receiving
//! traffic. `throttlerIncrement` (for `RedisThrottlerStorage`, @nestjs/throttler's storage)
//! keeps `throttler:{<key>}` (a hash: the window, the block) and
//! `throttler:{<key>}:<throttler name>` (a sorted set of hits by expiry) the same way.
//! `{<key>}` is a Redis Cluster hash tag: the keys of one limited key share a
//! slot, so `reset` deletes them in one command on a cluster too.

use std::sync::{Arc, LazyLock};
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
use crate::keys;
use crate::script::{self, LuaScript};

static FIXED: LazyLock<LuaScript> = lua_script!("fixed.lua");
static SLIDING: LazyLock<LuaScript> = lua_script!("sliding.lua");
static BUCKET: LazyLock<LuaScript> = lua_script!("bucket.lua");
static COUNTER: LazyLock<LuaScript> = lua_script!("counter.lua");
static THROTTLER: LazyLock<LuaScript> = lua_script!("throttler.lua");

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
  /// Default `'sliding-window-counter'` (one short string per key, whatever the limit).
  #[napi(
    ts_type = "'sliding-window-counter' | 'fixed-window' | 'sliding-window' | 'token-bucket'"
  )]
  pub algorithm: Option<String>,
  /// What this request counts for (a whole number >= 1, at most `limit`). Default 1.
  pub cost: Option<u32>,
  /// Overrides the service's `onRedisError` for this call.
  #[napi(ts_type = "'fail-closed' | 'fail-open'")]
  pub on_redis_error: Option<String>,
}

/// The outcome of `consume` / `status`.
#[napi(object)]
pub struct RateLimitResult {
  /// Whether this request may go ahead (for `status`: whether one would).
  pub allowed: bool,
  pub limit: f64,
  /// Whole requests (of this cost 1) still allowed now; never negative.
  pub remaining: f64,
  /// Epoch ms when the full limit is available again.
  pub reset_at: f64,
  /// When refused: ms to wait before this request would be allowed; 0 when allowed.
  pub retry_after_ms: f64,
  /// Set only when Redis could not be reached and the outage policy decided.
  pub redis_error: Option<RateLimitRedisError>,
}

/// One limit of `consumeAll`: the key it counts under, and its options.
#[allow(dead_code)] // read from JS as JSON; this struct declares its TypeScript type
#[napi(object)]
pub struct RateLimitCheck {
  /// Who is limited under this limit (a user id, an IP, an API key).
  pub key: String,
  pub limit: u32,
  pub window_seconds: f64,
  #[napi(
    ts_type = "'sliding-window-counter' | 'fixed-window' | 'sliding-window' | 'token-bucket'"
  )]
  pub algorithm: Option<String>,
  pub cost: Option<u32>,
  #[napi(ts_type = "'fail-closed' | 'fail-open'")]
  pub on_redis_error: Option<String>,
}

/// The outcome of `consumeAll`.
#[napi(object)]
pub struct RateLimitAllResult {
  /// Whether every limit allowed the request (then it counts under each).
  pub allowed: bool,
  /// Each limit's own result, in the order given. When the request was refused, the
  /// limits that allowed it were refunded, and their `remaining` says so.
  pub results: Vec<RateLimitResult>,
}

/// What `throttlerIncrement` answers: @nestjs/throttler's `ThrottlerStorageRecord`.
#[napi(object)]
#[derive(Debug, PartialEq)]
pub struct ThrottlerRecord {
  /// Hits counted for this key and throttler within the ttl (with this one).
  pub total_hits: i64,
  /// Seconds until the key's window ends (rounded up).
  pub time_to_expire: i64,
  /// Whether this request is refused.
  pub is_blocked: bool,
  /// Seconds until the block ends (rounded up); meaningful only when blocked.
  pub time_to_block_expire: i64,
}

/// Why a result was decided by the outage policy instead of Redis.
#[napi(object)]
pub struct RateLimitRedisError {
  /// The error's code (`ERR_REDIS_CONNECTION`, `ERR_REDIS_TIMEOUT`, ...).
  pub code: String,
  pub message: String,
  #[napi(ts_type = "'fail-closed' | 'fail-open'")]
  pub policy: String,
}

/// Requests decided under one rule of one client, in this process
/// (`client.metrics().rateLimits`).
#[derive(Default)]
pub(crate) struct RuleStats {
  pub requests: std::sync::atomic::AtomicU64,
  pub refused: std::sync::atomic::AtomicU64,
}

impl RuleStats {
  /// Counts one request decided under this rule (`refused` or not).
  fn count(&self, refused: bool) {
    use std::sync::atomic::Ordering::Relaxed;
    self.requests.fetch_add(1, Relaxed);
    if refused {
      self.refused.fetch_add(1, Relaxed);
    }
  }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Algorithm {
  Fixed,
  Sliding,
  Bucket,
  Counter,
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

#[derive(Clone)]
struct Request {
  key: String,
  algorithm: Algorithm,
  limit: u64,
  window: Duration,
  cost: u64,
  policy: Policy,
  /// The counters of its rule (`with_stats`), found once per parsed request: a
  /// limiter's requests share its template's.
  stats: Arc<RuleStats>,
}

impl Request {
  /// This request, counting under its rule's counters on `conn`.
  fn with_stats(mut self, conn: &Connection) -> Request {
    self.stats = conn.shared::<RuleStats>(&self.rule());
    self
  }

  /// The rule this request is decided under, as metrics name it:
  /// `<algorithm>:<limit>/<window>s` (`sliding-window-counter:3/60s`).
  fn rule(&self) -> String {
    let algorithm = match self.algorithm {
      Algorithm::Fixed => "fixed-window",
      Algorithm::Sliding => "sliding-window",
      Algorithm::Bucket => "token-bucket",
      Algorithm::Counter => "sliding-window-counter",
    };
    let window = args::format_number(self.window.as_secs_f64());
    format!("{algorithm}:{}/{window}s", self.limit)
  }
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

const OPTION_NAMES: [&str; 5] = [
  "limit",
  "windowSeconds",
  "algorithm",
  "cost",
  "onRedisError",
];

impl RateLimitService {
  fn request(&self, key: &Unknown, options: Option<&Unknown>) -> RnResult<Request> {
    let key = args::key(key, "key")?;
    let map = args::options_object(options, "rate limit options", &OPTION_NAMES)?;
    if options.is_none() || map.is_empty() {
      return Err(RnError::invalid(
        "rate limit options `{ limit, windowSeconds }` are required",
      ));
    }
    self.request_from(key, &map)
  }

  /// One limit of `consumeAll`: `{ key, limit, windowSeconds, ... }`.
  fn check(&self, item: &Unknown, what: &str) -> RnResult<Request> {
    let mut known = vec!["key"];
    known.extend(OPTION_NAMES);
    let map = args::options_object(Some(item), what, &known)?;
    let key = match map.get("key") {
      Some(serde_json::Value::String(k)) if !k.is_empty() => k.clone(),
      _ => {
        return Err(RnError::invalid(format!(
          "{what}.key must be a non-empty string"
        )))
      }
    };
    self.request_from(key, &map)
  }

  fn request_from(
    &self,
    key: String,
    map: &serde_json::Map<String, serde_json::Value>,
  ) -> RnResult<Request> {
    let limit = whole(map, "limit", None)?;
    let window = args::option_seconds(map, "windowSeconds")?
      .ok_or_else(|| RnError::invalid("option `windowSeconds` is required (seconds > 0)"))?;
    let cost = whole(map, "cost", Some(1))?;
    if cost > limit {
      return Err(RnError::invalid(format!(
        "cost ({cost}) is larger than limit ({limit}): such a request could never be allowed"
      )));
    }
    let algorithm = match map.get("algorithm") {
      None | Some(serde_json::Value::Null) => Algorithm::Counter,
      Some(serde_json::Value::String(s)) => match s.as_str() {
        "sliding-window-counter" => Algorithm::Counter,
        "fixed-window" => Algorithm::Fixed,
        "sliding-window" => Algorithm::Sliding,
        "token-bucket" => Algorithm::Bucket,
        other => {
          return Err(RnError::invalid(format!(
            "unknown algorithm `{other}` (sliding-window-counter, fixed-window, sliding-window, token-bucket)"
          )))
        }
      },
      Some(_) => return Err(RnError::invalid("option `algorithm` must be a string")),
    };
    let policy =
      Policy::parse(map.get("onRedisError"), "option `onRedisError`")?.unwrap_or(self.policy);
    Ok(
      Request {
        key,
        algorithm,
        limit,
        window,
        cost,
        policy,
        stats: Arc::default(),
      }
      .with_stats(&self.conn),
    )
  }

  /// The keys of `key`'s state under `algorithm`, prefixed: one, or the sliding window
  /// counter's three slots.
  fn keys_of(conn: &Connection, key: &str, algorithm: Algorithm) -> Vec<String> {
    let name = conn.key(&state_name(key, algorithm));
    match algorithm {
      Algorithm::Counter => (0..3).map(|slot| format!("{name}:{slot}")).collect(),
      _ => vec![name],
    }
  }

  fn script(algorithm: Algorithm) -> &'static LuaScript {
    match algorithm {
      Algorithm::Fixed => &FIXED,
      Algorithm::Sliding => &SLIDING,
      Algorithm::Bucket => &BUCKET,
      Algorithm::Counter => &COUNTER,
    }
  }

  /// Runs the algorithm's script; an outage is decided by the policy.
  async fn decide(conn: &Connection, req: &Request, mode: Mode) -> RnResult<Decision> {
    let keys = Self::keys_of(conn, &req.key, req.algorithm);
    let argv = [
      req.limit.to_string(),
      req.window.as_millis().to_string(),
      req.cost.to_string(),
      mode.arg().to_string(),
    ];
    let decided = Self::script(req.algorithm).run(conn, &keys, &argv).await;
    if let (Mode::Consume, Ok(reply)) = (mode, &decided) {
      // an allowed reply starts with 1; whatever else is a refusal or a bad reply, which
      // `from_reply` turns into an error below
      req
        .stats
        .count(!matches!(reply, Value::Array(items) if items.first() == Some(&Value::Int(1))));
    }
    match decided {
      Ok(reply) => Decision::from_reply(reply),
      Err(e) if is_outage(&e) => {
        if let Mode::Consume = mode {
          req.stats.count(req.policy == Policy::FailClosed);
        }
        let open = req.policy == Policy::FailOpen;
        let window = req.window.as_millis() as f64;
        Ok(Decision {
          allowed: open,
          remaining: if open { req.limit as f64 } else { 0.0 },
          reset_ms: window,
          retry_ms: if open { 0.0 } else { window },
          undo: None,
          redis_error: Some(RateLimitRedisError {
            code: e.code.as_str().to_string(),
            message: e.message,
            policy: req.policy.name().to_string(),
          }),
        })
      }
      Err(e) => Err(e),
    }
  }

  /// Takes back a request `decide` counted (`undo` from its decision).
  async fn refund(conn: &Connection, req: &Request, undo: &str) -> RnResult<()> {
    let keys = Self::keys_of(conn, &req.key, req.algorithm);
    let argv = [
      req.limit.to_string(),
      req.window.as_millis().to_string(),
      req.cost.to_string(),
      Mode::Refund.arg().to_string(),
      undo.to_string(),
    ];
    Self::script(req.algorithm)
      .run(conn, &keys, &argv)
      .await
      .map(|_| ())
  }

  async fn run(conn: Connection, req: Request, mode: Mode) -> RnResult<RateLimitResult> {
    Ok(Self::decide(&conn, &req, mode).await?.into_result(&req))
  }
}

/// The key of `key`'s state under `algorithm`, before the client's prefix.
fn state_name(key: &str, algorithm: Algorithm) -> String {
  let tag = keys::tag(key);
  match algorithm {
    Algorithm::Fixed => format!("rate_limit:{tag}"),
    Algorithm::Sliding => format!("rate_limit:{tag}:sliding"),
    Algorithm::Bucket => format!("rate_limit:{tag}:bucket"),
    Algorithm::Counter => format!("rate_limit:{tag}:counter"),
  }
}

const ALGORITHMS: [Algorithm; 4] = [
  Algorithm::Counter,
  Algorithm::Fixed,
  Algorithm::Sliding,
  Algorithm::Bucket,
];

#[derive(Clone, Copy)]
enum Mode {
  Status,
  Consume,
  Refund,
}

impl Mode {
  fn arg(self) -> &'static str {
    match self {
      Mode::Status => "0",
      Mode::Consume => "1",
      Mode::Refund => "2",
    }
  }
}

/// The keys of a throttler record, before the client's prefix: the record, then the hits
/// of throttler `name`.
fn throttler_names(key: &str, name: &str) -> [String; 2] {
  let record = format!("throttler:{}", keys::tag(key));
  let hits = format!("{record}:{name}");
  [record, hits]
}

/// A `throttlerIncrement` argument in ms: a finite number >= `min`, rounded up.
fn throttler_ms(v: &Unknown, what: &str, min: f64) -> RnResult<i64> {
  let n = args::number(v, what)?;
  if n < min {
    return Err(RnError::invalid(format!(
      "{what} must be >= {min}, got {n}"
    )));
  }
  Ok(n.ceil() as i64)
}

/// `{ totalHits, timeToExpire, isBlocked, timeToBlockExpire }` from throttler.lua's reply.
fn throttler_record(reply: &Value) -> RnResult<ThrottlerRecord> {
  let unexpected = || RnError::internal(format!("unexpected reply from throttler.lua: {reply:?}"));
  let Value::Array(items) = reply else {
    return Err(unexpected());
  };
  let ints: Vec<i64> = items
    .iter()
    .map(|v| match v {
      Value::Int(n) => Some(*n),
      _ => None,
    })
    .collect::<Option<_>>()
    .ok_or_else(unexpected)?;
  let [hits, expire, blocked, block_expire] = ints[..] else {
    return Err(unexpected());
  };
  Ok(ThrottlerRecord {
    total_hits: hits,
    time_to_expire: expire,
    is_blocked: blocked == 1,
    time_to_block_expire: block_expire,
  })
}

/// What a script decided: times in ms from now.
struct Decision {
  allowed: bool,
  remaining: f64,
  reset_ms: f64,
  retry_ms: f64,
  /// How to refund this consume (empty when there is nothing to name).
  undo: Option<String>,
  redis_error: Option<RateLimitRedisError>,
}

impl Decision {
  /// `{ allowed, remaining, reset, retry, undo }`, as every algorithm's script returns it.
  fn from_reply(reply: Value) -> RnResult<Decision> {
    let unexpected = |v: &Value| {
      RnError::internal(format!(
        "unexpected reply from the rate limit script: {v:?}"
      ))
    };
    let Value::Array(items) = &reply else {
      return Err(unexpected(&reply));
    };
    let int = |i: usize| match items.get(i) {
      Some(Value::Int(n)) => Ok(*n as f64),
      _ => Err(unexpected(&reply)),
    };
    let undo = match items.get(4) {
      Some(Value::BulkString(b)) if !b.is_empty() => Some(String::from_utf8_lossy(b).into_owned()),
      Some(Value::BulkString(_)) => None,
      Some(Value::Int(n)) => Some(n.to_string()),
      _ => return Err(unexpected(&reply)),
    };
    if items.len() != 5 {
      return Err(unexpected(&reply));
    }
    Ok(Decision {
      allowed: int(0)? == 1.0,
      remaining: int(1)?.max(0.0),
      reset_ms: int(2)?.max(0.0),
      retry_ms: int(3)?.max(0.0),
      undo,
      redis_error: None,
    })
  }

  /// The `RateLimitResult` of this decision. The server decided (on its clock); times are
  /// handed back relative to now on this machine's clock, which is what the caller waits on.
  fn into_result(self, req: &Request) -> RateLimitResult {
    RateLimitResult {
      allowed: self.allowed,
      limit: req.limit as f64,
      remaining: self.remaining,
      reset_at: now_ms() + self.reset_ms,
      retry_after_ms: self.retry_ms,
      redis_error: self.redis_error,
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

  /// The classic fixed-window check: `true` when `identifier` may make one more request in the current
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
      Ok(
        Request {
          key,
          algorithm: Algorithm::Fixed,
          limit: limit as u64,
          window,
          cost: 1,
          policy: self.policy,
          stats: Arc::default(),
        }
        .with_stats(&self.conn),
      )
    })();
    let conn = self.conn.clone();
    complete_with(env, self.conn.traces(), parsed, move |req| async move {
      Ok(Self::run(conn, req, Mode::Consume).await?.allowed)
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
  ) -> napi::Result<PromiseRaw<'env, RateLimitResult>> {
    let parsed = self.request(&key, options.as_ref());
    let conn = self.conn.clone();
    complete_with(env, self.conn.traces(), parsed, move |req| async move {
      Self::run(conn, req, Mode::Consume).await
    })
  }

  /// Counts one request against several limits together (the limits of a route, say):
  /// it is allowed only when every limit allows it, and when any refuses, the ones that
  /// counted it are refunded, so a refused request uses up none of them. Each limit is
  /// still decided atomically on the server; between the count and the refund (one round
  /// trip) a concurrent request may see the refused one counted, never the other way.
  #[napi(
    ts_args_type = "limits: RateLimitCheck[]",
    ts_return_type = "Promise<RateLimitAllResult>"
  )]
  pub fn consume_all<'env>(
    &self,
    env: &'env Env,
    limits: Unknown,
  ) -> napi::Result<PromiseRaw<'env, RateLimitAllResult>> {
    let parsed = args::array(&limits, "limits").and_then(|items| {
      if items.is_empty() {
        return Err(RnError::invalid("limits must name at least one limit"));
      }
      items
        .iter()
        .enumerate()
        .map(|(i, item)| self.check(item, &format!("limits[{i}]")))
        .collect::<RnResult<Vec<_>>>()
    });
    let conn = self.conn.clone();
    complete_with(env, self.conn.traces(), parsed, move |reqs| async move {
      let mut decisions = futures_util::future::try_join_all(
        reqs.iter().map(|r| Self::decide(&conn, r, Mode::Consume)),
      )
      .await?;
      let allowed = decisions.iter().all(|d| d.allowed);
      if !allowed {
        // the limits that counted this request (by Redis, not by an outage policy)
        let counted: Vec<usize> = (0..reqs.len())
          .filter(|&i| decisions[i].allowed && decisions[i].redis_error.is_none())
          .collect();
        let refunds = futures_util::future::join_all(
          counted
            .iter()
            .map(|&i| Self::refund(&conn, &reqs[i], decisions[i].undo.as_deref().unwrap_or(""))),
        )
        .await;
        for (&i, refund) in counted.iter().zip(refunds) {
          match refund {
            Ok(()) => {
              let d = &mut decisions[i];
              d.remaining = (d.remaining + reqs[i].cost as f64).min(reqs[i].limit as f64);
            }
            // Redis went away between the count and the refund: the request stays
            // counted there (on the safe side), and the answer is still "refused"
            Err(e) if is_outage(&e) => {}
            Err(e) => return Err(e),
          }
        }
      }
      let results = reqs
        .iter()
        .zip(decisions)
        .map(|(r, d)| d.into_result(r))
        .collect();
      Ok(RateLimitAllResult { allowed, results })
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
  ) -> napi::Result<PromiseRaw<'env, RateLimitResult>> {
    let parsed = self.request(&key, options.as_ref());
    let conn = self.conn.clone();
    complete_with(env, self.conn.traces(), parsed, move |req| async move {
      Self::run(conn, req, Mode::Status).await
    })
  }

  /// One limit with its options checked once, for the calls that use it again and again
  /// (a route's limit, say): `const perIp = rateLimit.limiter({ limit: 100,
  /// windowSeconds: 60 })`, then `await perIp.consume(ip)`. Same results as `consume(key,
  /// options)`, with less work per call. Bad options throw `ERR_INVALID_ARGUMENT` here.
  #[napi(ts_args_type = "options: RateLimitOptions")]
  pub fn limiter(&self, env: &Env, options: Unknown) -> napi::Result<RateLimiter> {
    let template = args::options_object(Some(&options), "rate limit options", &OPTION_NAMES)
      .and_then(|map| {
        if map.is_empty() {
          return Err(RnError::invalid(
            "rate limit options `{ limit, windowSeconds }` are required",
          ));
        }
        self.request_from(String::new(), &map)
      })
      .map_err(|e| js_error(env, &e))?;
    Ok(RateLimiter {
      conn: self.conn.clone(),
      template,
    })
  }

  /// @nestjs/throttler's `ThrottlerStorage.increment`, with the same arguments (`ttlMs`
  /// and `blockDurationMs` in milliseconds) and the same answer as throttler's in-memory
  /// storage: counts a hit for `key` under `throttlerName`, each hit counting for `ttlMs`;
  /// the hit past `limit` blocks the key for `blockDurationMs` (when > 0, else it is only
  /// refused). One atomic call, on the Redis server's clock. An outage follows the
  /// service's `onRedisError`: `'fail-open'` answers not blocked, `'fail-closed'` blocked.
  /// `RedisThrottlerStorage` (`nestjs-redis-native/adapters`) calls this.
  #[napi(
    ts_args_type = "key: string, ttlMs: number, limit: number, blockDurationMs: number, throttlerName: string",
    ts_return_type = "Promise<ThrottlerRecord>"
  )]
  pub fn throttler_increment<'env>(
    &self,
    env: &'env Env,
    key: Unknown,
    ttl_ms: Unknown,
    limit: Unknown,
    block_duration_ms: Unknown,
    throttler_name: Unknown,
  ) -> napi::Result<PromiseRaw<'env, ThrottlerRecord>> {
    let parsed = (|| {
      let key = args::key(&key, "key")?;
      let ttl = throttler_ms(&ttl_ms, "ttlMs", 1.0)?;
      let limit = args::integer(&limit, "limit")?;
      if limit < 0 {
        return Err(RnError::invalid(format!("limit must be >= 0, got {limit}")));
      }
      let block = args::number(&block_duration_ms, "blockDurationMs")?.ceil() as i64;
      let name = args::string(&throttler_name, "throttlerName")?;
      Ok((key, name, [ttl, limit, block]))
    })();
    let conn = self.conn.clone();
    let policy = self.policy;
    complete_with(
      env,
      self.conn.traces(),
      parsed,
      move |(key, name, [ttl, limit, block])| async move {
        let keys = throttler_names(&key, &name).map(|k| conn.key(&k));
        let argv = [ttl.to_string(), limit.to_string(), block.to_string()];
        let stats = conn.shared::<RuleStats>(&format!("throttler:{name}"));
        match THROTTLER.run(&conn, &keys, &argv).await {
          Ok(reply) => {
            let record = throttler_record(&reply)?;
            stats.count(record.is_blocked);
            Ok(record)
          }
          Err(e) if is_outage(&e) => {
            let open = policy == Policy::FailOpen;
            stats.count(!open);
            let wait = (if block > 0 { block } else { ttl } + 999) / 1000;
            Ok(ThrottlerRecord {
              total_hits: if open { 1 } else { limit + 1 },
              time_to_expire: (ttl + 999) / 1000,
              is_blocked: !open,
              time_to_block_expire: if open { 0 } else { wait },
            })
          }
          Err(e) => Err(e),
        }
      },
    )
  }

  /// Forgets everything counted for `key`, under every algorithm.
  #[napi(ts_args_type = "key: string", ts_return_type = "Promise<void>")]
  pub fn reset<'env>(&self, env: &'env Env, key: Unknown) -> napi::Result<PromiseRaw<'env, ()>> {
    let parsed = args::key(&key, "key");
    let conn = self.conn.clone();
    complete_with(env, self.conn.traces(), parsed, move |key| async move {
      let mut names: Vec<String> = ALGORITHMS
        .iter()
        .flat_map(|a| Self::keys_of(&conn, &key, *a))
        .collect();
      // the sliding window counter's single key of earlier versions
      names.push(conn.key(&state_name(&key, Algorithm::Counter)));
      script::check_one_slot(&conn, &names, "RateLimitService reset")?;
      let mut cmd = redis::cmd("DEL");
      cmd.arg(&names[..]);
      conn.exec(cmd).await.map(|_| ())
    })
  }
}

/// One limit of a `RateLimitService`, its options read once (`rateLimit.limiter(options)`).
#[napi]
pub struct RateLimiter {
  conn: Connection,
  /// The request of this limit, but for its key.
  template: Request,
}

#[napi]
impl RateLimiter {
  fn request(&self, key: &Unknown) -> RnResult<Request> {
    Ok(Request {
      key: args::key(key, "key")?,
      ..self.template.clone()
    })
  }

  /// Counts a request against `key` under this limit: `consume(key, options)` with this
  /// limit's options.
  #[napi(
    ts_args_type = "key: string",
    ts_return_type = "Promise<RateLimitResult>"
  )]
  pub fn consume<'env>(
    &self,
    env: &'env Env,
    key: Unknown,
  ) -> napi::Result<PromiseRaw<'env, RateLimitResult>> {
    let parsed = self.request(&key);
    let conn = self.conn.clone();
    complete_with(env, self.conn.traces(), parsed, move |req| async move {
      RateLimitService::run(conn, req, Mode::Consume).await
    })
  }

  /// What `consume` would answer now for `key`, without counting anything.
  #[napi(
    ts_args_type = "key: string",
    ts_return_type = "Promise<RateLimitResult>"
  )]
  pub fn status<'env>(
    &self,
    env: &'env Env,
    key: Unknown,
  ) -> napi::Result<PromiseRaw<'env, RateLimitResult>> {
    let parsed = self.request(&key);
    let conn = self.conn.clone();
    complete_with(env, self.conn.traces(), parsed, move |req| async move {
      RateLimitService::run(conn, req, Mode::Status).await
    })
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  fn reply(items: Vec<Value>) -> Value {
    Value::Array(items)
  }

  #[test]
  fn the_keys_reset_deletes_together_share_a_slot() {
    for key in ["user:42", "}x", "a}b", "{a}", "1.2.3.4"] {
      let names = ALGORITHMS.map(|a| state_name(key, a));
      assert_eq!(crate::keys::slots_differ("", &names), None, "{names:?}");
    }
    assert_eq!(state_name("ip", Algorithm::Fixed), "rate_limit:{ip}");
    assert_eq!(
      state_name("ip", Algorithm::Counter),
      "rate_limit:{ip}:counter"
    );
  }

  #[test]
  fn metrics_name_a_rule_by_its_algorithm_limit_and_window() {
    let req = |algorithm, limit, window_ms| Request {
      key: "k".into(),
      algorithm,
      limit,
      window: Duration::from_millis(window_ms),
      cost: 1,
      policy: Policy::FailClosed,
      stats: Arc::default(),
    };
    assert_eq!(
      req(Algorithm::Counter, 3, 60_000).rule(),
      "sliding-window-counter:3/60s"
    );
    assert_eq!(req(Algorithm::Fixed, 2, 500).rule(), "fixed-window:2/0.5s");
  }

  #[test]
  fn a_throttler_record_and_its_hits_share_a_slot() {
    for key in ["0a1b", "}x", "a}b", "{a}"] {
      let names = throttler_names(key, "default");
      assert_eq!(crate::keys::slots_differ("", &names), None, "{names:?}");
    }
    assert_eq!(
      throttler_names("abc", "short"),
      [
        "throttler:{abc}".to_string(),
        "throttler:{abc}:short".to_string()
      ]
    );
  }

  #[test]
  fn a_throttler_reply_becomes_a_throttler_storage_record() {
    let record = throttler_record(&reply(vec![
      Value::Int(3),
      Value::Int(60),
      Value::Int(1),
      Value::Int(-5),
    ]))
    .expect("a valid reply");
    assert_eq!(
      record,
      ThrottlerRecord {
        total_hits: 3,
        time_to_expire: 60,
        is_blocked: true,
        time_to_block_expire: -5
      }
    );
    for bad in [Value::Nil, reply(vec![Value::Int(1)])] {
      assert_eq!(
        throttler_record(&bad).expect_err("refused").code,
        ErrorCode::Internal
      );
    }
  }

  #[test]
  fn a_script_reply_is_read_field_by_field() {
    let d = Decision::from_reply(reply(vec![
      Value::Int(1),
      Value::Int(4),
      Value::Int(60000),
      Value::Int(0),
      Value::BulkString(b"1700000000000000-1".to_vec()),
    ]))
    .expect("a valid reply");
    assert!(d.allowed);
    assert_eq!(d.remaining, 4.0);
    assert_eq!(d.reset_ms, 60000.0);
    assert_eq!(d.undo.as_deref(), Some("1700000000000000-1"));
  }

  #[test]
  fn an_unexpected_reply_is_an_error_never_a_refusal() {
    for bad in [
      Value::Nil,
      Value::Int(0),
      reply(vec![
        Value::Int(1),
        Value::Int(4),
        Value::Int(1),
        Value::Int(0),
      ]),
      reply(vec![
        Value::BulkString(b"1".to_vec()),
        Value::Int(4),
        Value::Int(1),
        Value::Int(0),
        Value::BulkString(vec![]),
      ]),
      reply(vec![
        Value::Int(1),
        Value::Int(4),
        Value::Int(1),
        Value::Int(0),
        Value::Array(vec![]),
      ]),
    ] {
      let e = Decision::from_reply(bad.clone()).err().expect("refused");
      assert_eq!(e.code, ErrorCode::Internal, "{bad:?}");
    }
  }
}
