//! `RedisClient`: connects, verifies the server, and is the connection every service is
//! built on.

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;

use napi::bindgen_prelude::{ClassInstance, Function, FunctionRef, PromiseRaw, This, Unknown};
use napi::{Env, ValueType};
use napi_derive::napi;

use crate::args;
use crate::completion::{complete, reject};
use crate::connection::{Connection, EventKind};
use crate::error::RnError;
use crate::json::JsonText;
use crate::options::parse_options;

/// A connection to Redis, shared by every service built on it.
#[napi]
pub struct RedisClient {
  pub(crate) conn: Connection,
  /// Listeners added with `on`, to find them again in `off`.
  listeners: Vec<(EventKind, u64, FunctionRef<serde_json::Value, ()>)>,
  next_listener: u64,
}

#[napi]
impl RedisClient {
  /// Connects and verifies the server (PING) within `connectTimeoutMs`. With no options,
  /// reads REDIS_URL, else REDIS_HOST / REDIS_PORT / REDIS_USERNAME / REDIS_PASSWORD /
  /// REDIS_DB / REDIS_TLS.
  #[napi(
    ts_args_type = "options?: RedisOptions",
    ts_return_type = "Promise<RedisClient>"
  )]
  pub fn connect<'env>(
    env: &'env Env,
    options: Option<Unknown>,
  ) -> napi::Result<PromiseRaw<'env, RedisClient>> {
    let environment: HashMap<String, String> = std::env::vars().collect();
    let options = match options.map(|o| args::json_value(&o, "options")).transpose() {
      Ok(o) => o,
      Err(e) => return reject(env, e),
    };
    let config = match parse_options(options.as_ref(), &environment) {
      Ok(c) => c,
      Err(e) => return reject(env, e),
    };
    let raw_env = env.raw();
    complete(env, async move {
      let conn = Connection::open(config, raw_env).await?;
      Ok(RedisClient {
        conn,
        listeners: Vec::new(),
        next_listener: 0,
      })
    })
  }

  /// Closes the connection. Commands already sent still settle; later calls reject with
  /// `ERR_CLIENT_CLOSED`. Closing twice is harmless.
  #[napi(ts_return_type = "Promise<void>")]
  pub fn close<'env>(&self, env: &'env Env) -> napi::Result<PromiseRaw<'env, ()>> {
    self.conn.close();
    complete(env, async { Ok(()) })
  }

  /// Listens to the connection: `'error'` (the connection was lost: `{ address, error:
  /// { code, message } }`), `'reconnecting'` (a reconnect attempt is scheduled: `{
  /// address, attempt, delayMs, error }`), `'ready'` (the connection is back: `{ address,
  /// attempts }`), `'end'` (no more connection: `{ address, reason: 'gave-up' | 'closed'
  /// }`). Listeners run on the JS thread, never keep Node running, and a throwing
  /// listener is reported as an uncaught exception. Returns the client.
  #[napi(
    ts_args_type = "event: 'error' | 'reconnecting' | 'ready' | 'end', listener: (event: RedisClientEvent) => void",
    ts_return_type = "this"
  )]
  pub fn on<'env>(
    &mut self,
    env: &'env Env,
    this: This<'env>,
    event: Unknown,
    listener: Unknown,
  ) -> napi::Result<This<'env>> {
    let (kind, function) = listener_args(env, &event, &listener)?;
    let tsfn = function
      .build_threadsafe_function()
      .callee_handled::<false>()
      .weak::<true>()
      .build()?;
    let id = self.next_listener;
    self.next_listener += 1;
    self.listeners.push((kind, id, function.create_ref()?));
    self.conn.events().add(kind, id, tsfn);
    Ok(this)
  }

  /// Removes a listener added with `on` (the same function for the same event). Returns
  /// the client.
  #[napi(
    ts_args_type = "event: 'error' | 'reconnecting' | 'ready' | 'end', listener: (event: RedisClientEvent) => void",
    ts_return_type = "this"
  )]
  pub fn off<'env>(
    &mut self,
    env: &'env Env,
    this: This<'env>,
    event: Unknown,
    listener: Unknown,
  ) -> napi::Result<This<'env>> {
    let (kind, _) = listener_args(env, &event, &listener)?;
    let mut found = None;
    for (i, (k, _, r)) in self.listeners.iter().enumerate() {
      if *k == kind && env.strict_equals(r.borrow_back(env)?, listener)? {
        found = Some(i);
        break;
      }
    }
    if let Some(i) = found {
      let (_, id, _) = self.listeners.remove(i);
      self.conn.events().remove(id);
    }
    Ok(this)
  }

  /// True once `close()` was called.
  #[napi(getter)]
  pub fn is_closed(&self) -> bool {
    self.conn.is_closed()
  }

  /// Counters and latency percentiles of this client's commands since it connected.
  #[napi]
  pub fn metrics(&self) -> ClientMetrics {
    let m = self.conn.metrics();
    ClientMetrics {
      commands: m.commands as f64,
      errors: m.errors as f64,
      timeouts: m.timeouts as f64,
      reconnects: m.reconnects as f64,
      in_flight: m.in_flight as f64,
      latency_us: LatencyUs {
        p50: m.p50_us,
        p99: m.p99_us,
        max: m.max_us,
      },
      near_cache: self
        .conn
        .near_cache_stats()
        .map(
          |[hits, misses, evictions, entries, bytes]| NearCacheMetrics {
            hits: hits as f64,
            misses: misses as f64,
            evictions: evictions as f64,
            entries: entries as f64,
            bytes: bytes as f64,
          },
        ),
      rate_limits: self
        .conn
        .shared_all::<crate::rate_limit_service::RuleStats>()
        .into_iter()
        .map(|(rule, s)| RateLimitRuleMetrics {
          rule,
          requests: s.requests.load(Relaxed) as f64,
          refused: s.refused.load(Relaxed) as f64,
        })
        .collect(),
      sessions: {
        let s = self.conn.shared::<crate::session_service::SessionStats>("");
        SessionMetrics {
          created: s.created.load(Relaxed) as f64,
          destroyed: s.destroyed.load(Relaxed) as f64,
        }
      },
      caches: self
        .conn
        .shared_all::<crate::cache_service::Stats>()
        .into_iter()
        .map(|(namespace, s)| CacheNamespaceMetrics {
          namespace,
          hits: s.hits.load(Relaxed) as f64,
          misses: s.misses.load(Relaxed) as f64,
        })
        .collect(),
    }
  }

  /// Checks the server: `{ status: 'up', latencyMs, serverVersion, mode, role,
  /// uptimeSeconds, connectedClients, usedMemoryBytes }`, or `{ status: 'down', error }`.
  /// Never rejects: a health check reports an outage, it does not throw it.
  #[napi(ts_return_type = "Promise<ClientHealth>")]
  pub fn health<'env>(&self, env: &'env Env) -> napi::Result<PromiseRaw<'env, JsonText>> {
    let conn = self.conn.clone();
    complete(env, async move {
      let started = std::time::Instant::now();
      let topology = conn.topology();
      // a cluster: every node answers for itself; up when every master that serves
      // slots does (a lost replica is reported, not an outage)
      let mut nodes_json = None;
      let mut info_at = None;
      let mut down: Option<RnError> = None;
      if let Some(nodes) = conn.cluster_nodes().await {
        match nodes {
          Err(e) => down = Some(e),
          Ok(nodes) => {
            // masters answer a PING; replicas (the client keeps no connection to them)
            // are as the cluster sees them
            let checks = futures_util::future::join_all(nodes.iter().map(|n| {
              let conn = conn.clone();
              let target = Some((n.host.clone(), n.port));
              let (master, failing, address) = (n.master, n.failing, n.address());
              async move {
                if !master {
                  return if failing {
                    Err(RnError::connection(format!(
                      "the cluster marks replica {address} as failing"
                    )))
                  } else {
                    Ok(None)
                  };
                }
                let t = std::time::Instant::now();
                let r = conn.exec_at(&target, redis::cmd("PING")).await;
                r.map(|_| Some(t.elapsed().as_secs_f64() * 1000.0))
              }
            }))
            .await;
            let mut list = Vec::new();
            for (n, r) in nodes.iter().zip(checks) {
              let role = if n.master { "master" } else { "replica" };
              match r {
                Ok(ms) => {
                  if n.master && n.has_slots && info_at.is_none() {
                    info_at = Some((n.host.clone(), n.port));
                  }
                  let mut node = serde_json::json!({
                    "address": n.address(), "role": role, "status": "up",
                  });
                  if let Some(ms) = ms {
                    node["latencyMs"] = serde_json::json!(ms);
                  }
                  list.push(node);
                }
                Err(e) => {
                  if n.master && n.has_slots && down.is_none() {
                    down = Some(e.clone().context(&format!("master {}", n.address())));
                  }
                  list.push(serde_json::json!({
                    "address": n.address(), "role": role, "status": "down",
                    "error": { "code": e.code.as_str(), "message": e.message },
                  }));
                }
              }
            }
            nodes_json = Some(serde_json::Value::Array(list));
          }
        }
      }
      let checked = async {
        if let Some(e) = down {
          return Err(e);
        }
        let target = info_at;
        conn.exec_at(&target, redis::cmd("PING")).await?;
        let latency = started.elapsed().as_secs_f64() * 1000.0;
        let info = match conn.exec_at(&target, redis::cmd("INFO")).await? {
          redis::Value::BulkString(b) => String::from_utf8_lossy(&b).into_owned(),
          redis::Value::VerbatimString { text, .. } => text,
          _ => String::new(),
        };
        Ok::<_, RnError>((latency, info))
      };
      let out = match checked.await {
        Ok((latency, info)) => {
          let field = |name: &str| {
            info
              .lines()
              .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(':')))
              .map(|v| v.trim().to_string())
          };
          let number = |name: &str| field(name).and_then(|v| v.parse::<f64>().ok());
          serde_json::json!({
            "status": "up",
            "topology": topology,
            "nodes": nodes_json,
            "latencyMs": latency,
            "serverVersion": field("redis_version"),
            "mode": field("redis_mode"),
            "role": field("role"),
            "uptimeSeconds": number("uptime_in_seconds"),
            "connectedClients": number("connected_clients"),
            "usedMemoryBytes": number("used_memory"),
          })
        }
        Err(e) => serde_json::json!({
          "status": "down",
          "topology": topology,
          "nodes": nodes_json,
          "error": { "code": e.code.as_str(), "message": e.message },
        }),
      };
      let mut out = out;
      if out["nodes"].is_null() {
        if let Some(o) = out.as_object_mut() {
          o.remove("nodes");
        }
      }
      Ok(JsonText(out.to_string()))
    })
  }

  /// The key prefix this client applies (empty when none).
  #[napi(getter)]
  pub fn key_prefix(&self) -> String {
    self.conn.prefix().to_string()
  }
}

/// One node of a cluster in `health()`.
#[allow(dead_code)] // built as JSON; this struct declares its TypeScript type
#[napi(object)]
pub struct ClusterNodeHealth {
  /// `host:port`.
  pub address: String,
  #[napi(ts_type = "'master' | 'replica'")]
  pub role: String,
  #[napi(ts_type = "'up' | 'down'")]
  pub status: String,
  /// PING round trip, ms (when up).
  pub latency_ms: Option<f64>,
  /// Why it is down: `{ code, message }`.
  #[napi(ts_type = "{ code: string; message: string }")]
  pub error: Option<serde_json::Value>,
}

/// What a connection event listener receives (see `RedisClient.on`).
#[allow(dead_code)] // built as JSON; this struct declares its TypeScript type
#[napi(object)]
pub struct RedisClientEvent {
  /// `host:port` of the server.
  pub address: String,
  /// Why (`'error'`, `'reconnecting'`, `'end'` after giving up).
  #[napi(ts_type = "{ code: RedisErrorCode; message: string }")]
  pub error: Option<serde_json::Value>,
  /// `'reconnecting'`: which attempt is next (1-based).
  pub attempt: Option<f64>,
  /// `'reconnecting'`: ms until that attempt.
  pub delay_ms: Option<f64>,
  /// `'ready'`: attempts it took; `'end'` after giving up: attempts made.
  pub attempts: Option<f64>,
  /// `'end'`: why there is no more connection.
  #[napi(ts_type = "'gave-up' | 'closed'")]
  pub reason: Option<String>,
}

/// The event name and listener of `on` / `off`.
fn listener_args<'env>(
  env: &'env Env,
  event: &Unknown,
  listener: &Unknown<'env>,
) -> napi::Result<(EventKind, Function<'env, serde_json::Value, ()>)> {
  let invalid = |m: String| crate::completion::js_error(env, &RnError::invalid(m));
  let name = args::string(event, "event").map_err(|e| crate::completion::js_error(env, &e))?;
  let kind = EventKind::parse(&name).ok_or_else(|| {
    invalid(format!(
      "unknown event `{name}` (error, reconnecting, ready, end)"
    ))
  })?;
  if listener.get_type()? != ValueType::Function {
    return Err(invalid("listener must be a function".into()));
  }
  let function = unsafe { listener.cast::<Function<'env, serde_json::Value, ()>>() }?;
  Ok((kind, function))
}

/// `client.metrics()`: this client's commands since it connected.
#[napi(object)]
pub struct ClientMetrics {
  /// Commands sent (a pipeline counts each of its commands).
  pub commands: f64,
  /// Commands that failed (server errors, lost connections, timeouts).
  pub errors: f64,
  /// Commands that got no reply within `commandTimeoutMs`.
  pub timeouts: f64,
  /// Times the connection was re-established after a loss.
  pub reconnects: f64,
  /// Calls waiting for a reply right now.
  pub in_flight: f64,
  /// Latency from sending to the reply, µs: median and 99th percentile (histogram bucket bounds: at most ~19% above the true value) and the exact maximum.
  pub latency_us: LatencyUs,
  /// With `nearCache`: reads it answered (`hits`), reads that went to Redis while it was
  /// on (`misses`), values dropped to stay within its bounds (`evictions`), and what it
  /// holds now.
  pub near_cache: Option<NearCacheMetrics>,
  /// Per rate-limit rule, the requests this process counted on this client and those
  /// refused (`RateLimitService`, `@RateLimit()`, `RedisThrottlerStorage`), by rule.
  pub rate_limits: Vec<RateLimitRuleMetrics>,
  /// Sessions this process created and destroyed on this client (`SessionService`,
  /// `RedisSessionStore`).
  pub sessions: SessionMetrics,
  /// Per cache namespace, the reads of this process on this client that found a value
  /// and those that did not (`CacheService`), by namespace.
  pub caches: Vec<CacheNamespaceMetrics>,
}

/// One rate-limit rule in `client.metrics().rateLimits`.
#[napi(object)]
pub struct RateLimitRuleMetrics {
  /// `<algorithm>:<limit>/<window>s` (`sliding-window-counter:3/60s`), or for
  /// `RedisThrottlerStorage` `throttler:<throttler name>`.
  pub rule: String,
  /// Requests counted (`consume`, `consumeAll`, `checkRateLimit`, a throttler's
  /// `increment`), including those the outage policy decided.
  pub requests: f64,
  /// Of those, the ones refused.
  pub refused: f64,
}

/// `client.metrics().sessions`.
#[napi(object)]
pub struct SessionMetrics {
  /// `createSession` calls that wrote a session.
  pub created: f64,
  /// Sessions deleted by a logout, an eviction (`maxSessionsPerUser`) or a logout
  /// everywhere (not those that expired).
  pub destroyed: f64,
}

/// One cache namespace in `client.metrics().caches`.
#[napi(object)]
pub struct CacheNamespaceMetrics {
  pub namespace: String,
  pub hits: f64,
  pub misses: f64,
}

#[napi(object)]
pub struct NearCacheMetrics {
  pub hits: f64,
  pub misses: f64,
  pub evictions: f64,
  pub entries: f64,
  /// Approximate memory of the values kept, bytes.
  pub bytes: f64,
}

#[napi(object)]
pub struct LatencyUs {
  pub p50: f64,
  pub p99: f64,
  pub max: f64,
}

/// `client.health()`: whether the server answers, and what it is.
#[allow(dead_code)] // built as JSON; this struct declares its TypeScript type
#[napi(object)]
pub struct ClientHealth {
  #[napi(ts_type = "'up' | 'down'")]
  pub status: String,
  /// How the client reaches Redis.
  #[napi(ts_type = "'standalone' | 'cluster' | 'sentinel' | 'memory'")]
  pub topology: String,
  /// A cluster: every node, with its role and whether it answers. The cluster is `up`
  /// when every master that serves slots answers.
  pub nodes: Option<Vec<ClusterNodeHealth>>,
  /// PING round trip, ms (when up).
  pub latency_ms: Option<f64>,
  pub server_version: Option<String>,
  /// `standalone`, `cluster` or `sentinel`.
  pub mode: Option<String>,
  /// `master` or `slave`.
  pub role: Option<String>,
  pub uptime_seconds: Option<f64>,
  pub connected_clients: Option<f64>,
  pub used_memory_bytes: Option<f64>,
  /// Why it is down: `{ code, message }`.
  #[napi(ts_type = "{ code: string; message: string }")]
  pub error: Option<serde_json::Value>,
}

/// The connection of the `RedisClient` handed to a service constructor.
pub fn connection_of(env: &Env, client: Unknown, service: &str) -> Result<Connection, napi::Error> {
  let instance = unsafe { client.cast::<ClassInstance<RedisClient>>() };
  match instance {
    Ok(c) => Ok(c.conn.clone()),
    Err(_) => Err(crate::completion::js_error(
      env,
      &RnError::invalid(format!(
        "new {service}(client) needs a RedisClient from `await RedisClient.connect()`"
      )),
    )),
  }
}
