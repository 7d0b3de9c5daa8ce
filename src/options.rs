//! `RedisOptions`: parsed from the plain JS object (or the REDIS_* environment) into a
//! validated `ClientConfig`. Pure functions, unit-tested without a server.

use std::collections::HashMap;
use std::time::Duration;

use napi_derive::napi;
use serde_json::{Map, Value};

use crate::error::{RnError, RnResult};

pub const DEFAULT_HOST: &str = "localhost";
pub const DEFAULT_PORT: u16 = 6379;
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_millis(5000);
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_millis(5000);
pub const DEFAULT_PING_INTERVAL: Duration = Duration::from_millis(30_000);
pub const DEFAULT_RECONNECT_MIN_DELAY: Duration = Duration::from_millis(100);
pub const DEFAULT_RECONNECT_MAX_DELAY: Duration = Duration::from_millis(10_000);
/// Redis's own limit on one value (`proto-max-bulk-len`, 512 MiB).
pub const DEFAULT_MAX_VALUE_BYTES: u64 = 512 * 1024 * 1024;
/// Commands a client lets wait for their replies at once.
pub const DEFAULT_MAX_IN_FLIGHT: u64 = 10_000;

/// TLS settings. PEM text (string or Buffer) for `ca`, `cert` and `key`.
// Declared for the generated typings; the values are read from JSON by `parse_options`.
#[allow(dead_code)]
#[napi(object)]
pub struct TlsOptions {
  /// PEM of the certificate authority to trust instead of the system roots.
  #[napi(ts_type = "string | Buffer")]
  pub ca: Option<String>,
  /// PEM of the client certificate (mutual TLS); requires `key`.
  #[napi(ts_type = "string | Buffer")]
  pub cert: Option<String>,
  /// PEM of the client private key (mutual TLS); requires `cert`.
  #[napi(ts_type = "string | Buffer")]
  pub key: Option<String>,
  /// Name to verify the server certificate against (and send as SNI). Defaults to the host.
  pub servername: Option<String>,
  /// `false` accepts any server certificate. Default `true`. Only for tests.
  pub reject_unauthorized: Option<bool>,
}

/// Reconnect backoff: before attempt n, wait a random time between half and all of
/// min(maxDelayMs, minDelayMs * 2^(n-1)) (exponential backoff with jitter).
// Declared for the generated typings; the values are read from JSON by `parse_options`.
#[allow(dead_code)]
#[napi(object)]
pub struct ReconnectOptions {
  /// First delay, ms. Default 100.
  pub min_delay_ms: Option<f64>,
  /// Largest delay, ms. Default 10000.
  pub max_delay_ms: Option<f64>,
  /// Give up after this many failed attempts in a row. Default: never give up.
  pub max_attempts: Option<f64>,
  /// `connect()` keeps trying (with this backoff, up to `maxAttempts`) while the server
  /// refuses or does not answer, instead of failing at once: for apps that may start
  /// before Redis. Wrong passwords and bad options still fail at once. Default `false`.
  pub at_startup: Option<bool>,
}

/// Options of `RedisClient.connect()`. With no options, the REDIS_* environment is read.
// Declared for the generated typings; the values are read from JSON by `parse_options`.
#[allow(dead_code)]
#[napi(object)]
pub struct RedisOptions {
  /// `redis://[user:pass@]host:port/db`, or `rediss://` for TLS. `memory://` runs on an
  /// in-process engine instead (a keyspace of its own per client), `memory://NAME` on
  /// the keyspace the process's open clients naming NAME share.
  pub url: Option<String>,
  /// Default `localhost`.
  pub host: Option<String>,
  /// Default 6379.
  pub port: Option<u32>,
  pub username: Option<String>,
  pub password: Option<String>,
  /// Database number. Default 0.
  pub db: Option<u32>,
  /// `true`, or certificates and settings.
  #[napi(ts_type = "boolean | TlsOptions")]
  pub tls: Option<bool>,
  /// Prepended to every key (also to SCAN patterns; stripped from keys handed back).
  pub key_prefix: Option<String>,
  /// Time allowed to connect and verify the server (PING), ms. Default 5000.
  pub connect_timeout_ms: Option<f64>,
  /// Time allowed for a reply, ms. Default 5000.
  pub command_timeout_ms: Option<f64>,
  /// An idle connection is pinged this often, ms; 0 turns keep-alive off. Default 30000.
  pub ping_interval_ms: Option<f64>,
  /// Reconnect backoff (with jitter).
  pub reconnect: Option<ReconnectOptions>,
  /// Sent with CLIENT SETNAME, shown by CLIENT LIST (the subscriber connection of
  /// PubSubService gets `<clientName>:sub`).
  pub client_name: Option<String>,
  /// Rejections carry the stack of the code that awaited the call (`at async
  /// UsersService.find (users.service.ts:12)`), at a small cost per call (one more
  /// promise reaction). Default: on, unless `NODE_ENV` is `production`.
  pub capture_stack_traces: Option<bool>,
  /// Largest value (bytes) a call may send; a larger one is refused with
  /// `ERR_INVALID_ARGUMENT` before anything is sent. Default 536870912 (512 MiB, Redis's
  /// own limit).
  pub max_value_bytes: Option<f64>,
  /// Most commands waiting for their replies at once; past it, calls reject at once with
  /// `ERR_REDIS_CONNECTION` (Redis is not keeping up) instead of queueing without
  /// bound. Default 10000.
  pub max_in_flight: Option<f64>,
  /// Keep values read with `get`, `getJson`, `getBuffer`, `mget` and `CacheService`
  /// reads in process memory, dropped as soon as Redis reports a change (client-side
  /// caching, Redis 6+). `true` for the defaults. Default: off.
  #[napi(ts_type = "boolean | NearCacheOptions")]
  pub near_cache: Option<bool>,
  /// A Redis Cluster instead of one server: `{ nodes: ['redis://10.0.0.1:6379', ...] }`.
  /// `username`, `password`, `tls`, `keyPrefix`, timeouts and `reconnect` apply to every
  /// node. Not with `url`/`host`/`port`. Environment: `REDIS_CLUSTER_NODES`.
  pub cluster: Option<ClusterOptions>,
  /// The master that Sentinel names, followed across failovers: `{ nodes:
  /// ['redis://10.0.0.1:26379'], masterName: 'mymaster' }`. `username`/`password`/`tls`/
  /// `db` are the master's. Environment: `REDIS_SENTINELS` + `REDIS_SENTINEL_MASTER`.
  pub sentinel: Option<SentinelOptions>,
}

/// `cluster` options.
#[allow(dead_code)]
#[napi(object)]
pub struct ClusterOptions {
  /// Any reachable nodes of the cluster (`redis://host:port`, `rediss://` for TLS); the
  /// others and the slot map are discovered and kept current.
  pub nodes: Vec<String>,
}

/// `sentinel` options.
#[allow(dead_code)]
#[napi(object)]
pub struct SentinelOptions {
  /// The sentinels to ask (`redis://host:26379`).
  pub nodes: Vec<String>,
  /// The name the sentinels monitor the master under (`sentinel monitor <name> ...`).
  pub master_name: String,
  /// The sentinels' password, when they have one (`requirepass` in sentinel.conf).
  pub sentinel_password: Option<String>,
  /// The sentinels' user (ACL), when they need one.
  pub sentinel_username: Option<String>,
}

/// `nearCache` options.
#[allow(dead_code)]
#[napi(object)]
pub struct NearCacheOptions {
  /// Most values kept; the least recently used go first. Default 10000.
  pub max_entries: Option<f64>,
  /// Most memory for values, bytes (approximate). Default 67108864 (64 MiB).
  pub max_bytes: Option<f64>,
  /// A value is read again from Redis after this many seconds even without a change.
  /// Default: kept until changed or evicted.
  pub ttl_seconds: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TlsConfig {
  pub ca: Option<Vec<u8>>,
  pub cert: Option<Vec<u8>>,
  pub key: Option<Vec<u8>>,
  pub servername: Option<String>,
  pub reject_unauthorized: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReconnectConfig {
  pub min_delay: Duration,
  pub max_delay: Duration,
  /// `None`: keep trying.
  pub max_attempts: Option<u32>,
  /// Also retry the first connection (`connect` waits for a server that is not up yet).
  pub at_startup: bool,
}

/// Validated connection settings.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientConfig {
  pub host: String,
  pub port: u16,
  pub username: Option<String>,
  pub password: Option<String>,
  pub db: i64,
  pub tls: Option<TlsConfig>,
  pub key_prefix: String,
  pub connect_timeout: Duration,
  pub command_timeout: Duration,
  /// `None`: no keep-alive pings.
  pub ping_interval: Option<Duration>,
  pub reconnect: ReconnectConfig,
  pub client_name: Option<String>,
  pub capture_stack_traces: bool,
  pub max_value_bytes: u64,
  pub max_in_flight: u64,
  pub near_cache: Option<crate::connection::NearCacheConfig>,
  /// One server (`host`/`port`), a Redis Cluster, or a master found through Sentinel.
  pub topology: Topology,
}

/// Where the servers are.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Topology {
  /// `host`:`port`.
  #[default]
  Standalone,
  /// A Redis Cluster: any of its nodes; the rest is discovered.
  Cluster { nodes: Vec<(String, u16)> },
  /// The master Sentinel names `master_name`; `host`/`port` are unused.
  Sentinel(SentinelConfig),
  /// `memory://` (`None`: a keyspace of its own) or `memory://NAME` (the keyspace the
  /// process's open clients of that name share): no server, the data in this process.
  Memory { name: Option<String> },
}

/// The keyspace name of a `memory://` URL (`Some(None)`: unnamed), `None` for other URLs.
pub fn memory_url(url: &str) -> Option<Option<String>> {
  let rest = url
    .get(..9)
    .filter(|s| s.eq_ignore_ascii_case("memory://"))
    .map(|_| &url[9..])?;
  let name = rest.trim_end_matches('/');
  Some((!name.is_empty()).then(|| name.to_string()))
}

/// `sentinel` options: the sentinels to ask, the master's name, and the sentinels' own
/// credentials (the master's are the client's `username`/`password`).
#[derive(Clone, PartialEq, Eq)]
pub struct SentinelConfig {
  pub nodes: Vec<(String, u16)>,
  pub master_name: String,
  pub username: Option<String>,
  pub password: Option<String>,
}

impl std::fmt::Debug for SentinelConfig {
  fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
    f.debug_struct("SentinelConfig")
      .field("nodes", &self.nodes)
      .field("master_name", &self.master_name)
      .field("username", &self.username)
      .field("password", &self.password.as_ref().map(|_| "***"))
      .finish()
  }
}

/// `host:port` (IPv6 hosts in brackets).
pub fn host_port(host: &str, port: u16) -> String {
  if host.contains(':') {
    format!("[{host}]:{port}")
  } else {
    format!("{host}:{port}")
  }
}

impl std::fmt::Debug for ClientConfig {
  // Hand-written so that a password can never reach a log through `{:?}`.
  fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
    f.debug_struct("ClientConfig")
      .field("host", &self.host)
      .field("port", &self.port)
      .field("username", &self.username)
      .field("password", &self.password.as_ref().map(|_| "***"))
      .field("db", &self.db)
      .field("tls", &self.tls.is_some())
      .field("key_prefix", &self.key_prefix)
      .finish_non_exhaustive()
  }
}

impl ClientConfig {
  /// `host:port` (a cluster: its nodes; Sentinel: the master's name and the sentinels),
  /// the only way a connection is named in messages.
  pub fn address(&self) -> String {
    let list = |nodes: &[(String, u16)]| {
      nodes
        .iter()
        .map(|(h, p)| host_port(h, *p))
        .collect::<Vec<_>>()
        .join(",")
    };
    match &self.topology {
      Topology::Standalone => host_port(&self.host, self.port),
      Topology::Cluster { nodes } => format!("cluster {}", list(nodes)),
      Topology::Sentinel(s) => format!("{} (Sentinel {})", s.master_name, list(&s.nodes)),
      Topology::Memory { name } => format!("memory://{}", name.as_deref().unwrap_or("")),
    }
  }

  /// The same settings for one server at `host`:`port` (a cluster node, the master
  /// Sentinel named).
  pub fn for_node(&self, host: &str, port: u16) -> ClientConfig {
    ClientConfig {
      host: host.to_string(),
      port,
      topology: Topology::Standalone,
      ..self.clone()
    }
  }
}

const KNOWN_OPTIONS: &[&str] = &[
  "url",
  "host",
  "port",
  "username",
  "password",
  "db",
  "tls",
  "keyPrefix",
  "connectTimeoutMs",
  "commandTimeoutMs",
  "pingIntervalMs",
  "reconnect",
  "clientName",
  "captureStackTraces",
  "maxValueBytes",
  "maxInFlight",
  "nearCache",
  "cluster",
  "sentinel",
];

/// Parses the options object given to `RedisClient.connect()`. `None` (or `undefined`)
/// reads the environment.
///
/// Where the options name no server (none of url, host, port, username, password, db,
/// tls), the server comes from the environment, so `{ keyPrefix: 'app:' }` still honours
/// REDIS_URL.
pub fn parse_options(
  value: Option<&Value>,
  env: &HashMap<String, String>,
) -> RnResult<ClientConfig> {
  let mut config = match value {
    None | Some(Value::Null) => from_object(&env_options(env)?),
    Some(Value::Object(map)) => {
      if LOCATION_OPTIONS.iter().any(|k| map.contains_key(*k)) {
        from_object(map)
      } else {
        let mut merged = env_options(env)?;
        merged.extend(map.clone());
        from_object(&merged)
      }
    }
    Some(_) => Err(RnError::invalid("options must be an object")),
  }?;
  let explicit = value
    .and_then(|v| v.get("captureStackTraces"))
    .and_then(Value::as_bool);
  config.capture_stack_traces =
    explicit.unwrap_or_else(|| env.get("NODE_ENV").map(String::as_str) != Some("production"));
  Ok(config)
}

const LOCATION_OPTIONS: &[&str] = &[
  "url", "host", "port", "username", "password", "db", "tls", "cluster", "sentinel",
];

fn env_options(env: &HashMap<String, String>) -> RnResult<Map<String, Value>> {
  let get = |k: &str| env.get(k).filter(|v| !v.is_empty()).cloned();
  let mut map = Map::new();
  let list = |v: String| -> Value {
    Value::Array(
      v.split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(|n| Value::String(n.to_string()))
        .collect(),
    )
  };
  if let Some(nodes) = get("REDIS_CLUSTER_NODES") {
    map.insert(
      "cluster".into(),
      serde_json::json!({ "nodes": list(nodes) }),
    );
  } else if let Some(sentinels) = get("REDIS_SENTINELS") {
    let master = get("REDIS_SENTINEL_MASTER").ok_or_else(|| {
      RnError::invalid(
        "REDIS_SENTINELS is set but REDIS_SENTINEL_MASTER (the master's name) is not",
      )
    })?;
    let mut sentinel = serde_json::json!({ "nodes": list(sentinels), "masterName": master });
    if let Some(p) = get("REDIS_SENTINEL_PASSWORD") {
      sentinel["sentinelPassword"] = Value::String(p);
    }
    if let Some(u) = get("REDIS_SENTINEL_USERNAME") {
      sentinel["sentinelUsername"] = Value::String(u);
    }
    map.insert("sentinel".into(), sentinel);
    if let Some(tls) = get("REDIS_TLS") {
      let on = matches!(
        tls.to_ascii_lowercase().as_str(),
        "1" | "true" | "yes" | "on"
      );
      map.insert("tls".into(), Value::Bool(on));
    }
  } else if let Some(url) = get("REDIS_URL") {
    map.insert("url".into(), Value::String(url));
  } else {
    if let Some(host) = get("REDIS_HOST") {
      map.insert("host".into(), Value::String(host));
    }
    if let Some(port) = get("REDIS_PORT") {
      let port: u64 = port
        .parse()
        .map_err(|_| RnError::invalid("REDIS_PORT must be a port number"))?;
      map.insert("port".into(), Value::from(port));
    }
    if let Some(db) = get("REDIS_DB") {
      let db: u64 = db
        .parse()
        .map_err(|_| RnError::invalid("REDIS_DB must be a database number"))?;
      map.insert("db".into(), Value::from(db));
    }
    if let Some(tls) = get("REDIS_TLS") {
      let on = matches!(
        tls.to_ascii_lowercase().as_str(),
        "1" | "true" | "yes" | "on"
      );
      map.insert("tls".into(), Value::Bool(on));
    }
  }
  // REDIS_USERNAME / REDIS_PASSWORD fill in what REDIS_URL does not say (a secret kept
  // out of the URL); credentials written in the URL win
  let (url_user, url_password) = match map.get("url").and_then(Value::as_str) {
    // memory:// names no server: REDIS_USERNAME / REDIS_PASSWORD have nothing to log in to
    Some(u) if memory_url(u).is_some() => (true, true),
    Some(u) => match url::Url::parse(u) {
      Ok(u) => (!u.username().is_empty(), u.password().is_some()),
      Err(_) => (false, false),
    },
    None => (false, false),
  };
  if let Some(user) = get("REDIS_USERNAME").filter(|_| !url_user) {
    map.entry("username").or_insert(Value::String(user));
  }
  if let Some(password) = get("REDIS_PASSWORD").filter(|_| !url_password) {
    map.entry("password").or_insert(Value::String(password));
  }
  Ok(map)
}

fn opt_string(map: &Map<String, Value>, name: &str) -> RnResult<Option<String>> {
  match map.get(name) {
    None | Some(Value::Null) => Ok(None),
    Some(Value::String(s)) => Ok(Some(s.clone())),
    Some(_) => Err(RnError::invalid(format!(
      "option `{name}` must be a string"
    ))),
  }
}

fn opt_number(map: &Map<String, Value>, name: &str) -> RnResult<Option<f64>> {
  match map.get(name) {
    None | Some(Value::Null) => Ok(None),
    Some(Value::Number(n)) => Ok(n.as_f64()),
    Some(_) => Err(RnError::invalid(format!(
      "option `{name}` must be a number"
    ))),
  }
}

fn opt_int(map: &Map<String, Value>, name: &str, min: f64, max: f64) -> RnResult<Option<u64>> {
  match opt_number(map, name)? {
    None => Ok(None),
    Some(n) if n.fract() == 0.0 && n >= min && n <= max => Ok(Some(n as u64)),
    Some(_) => Err(RnError::invalid(format!(
      "option `{name}` must be a whole number from {min} to {max}"
    ))),
  }
}

fn opt_millis(
  map: &Map<String, Value>,
  name: &str,
  allow_zero: bool,
) -> RnResult<Option<Duration>> {
  match opt_number(map, name)? {
    None => Ok(None),
    Some(n) if n.is_finite() && (n > 0.0 || (allow_zero && n == 0.0)) && n <= 2_147_483_647.0 => {
      Ok(Some(Duration::from_micros((n * 1000.0) as u64)))
    }
    Some(_) => Err(RnError::invalid(format!(
      "option `{name}` must be a finite number of milliseconds{}",
      if allow_zero { " >= 0" } else { " > 0" }
    ))),
  }
}

fn reject_unknown(map: &Map<String, Value>, known: &[&str], what: &str) -> RnResult<()> {
  for key in map.keys() {
    if !known.contains(&key.as_str()) {
      return Err(RnError::invalid(format!(
        "unknown {what} `{key}` (known: {})",
        known.join(", ")
      )));
    }
  }
  Ok(())
}

fn from_object(map: &Map<String, Value>) -> RnResult<ClientConfig> {
  reject_unknown(map, KNOWN_OPTIONS, "option")?;

  let mut host = DEFAULT_HOST.to_string();
  let mut port = DEFAULT_PORT;
  let mut username = None;
  let mut password = None;
  let mut db = 0i64;
  let mut tls: Option<TlsConfig> = None;

  let memory = opt_string(map, "url")?.and_then(|u| memory_url(&u));
  if let Some(url) = opt_string(map, "url")?.filter(|_| memory.is_none()) {
    let parsed = parse_url(&url)?;
    host = parsed.host;
    port = parsed.port;
    username = parsed.username;
    password = parsed.password;
    db = parsed.db;
    if parsed.tls {
      tls = Some(TlsConfig {
        reject_unauthorized: true,
        ..Default::default()
      });
    }
  }
  // Explicit fields win over the URL's parts.
  if let Some(h) = opt_string(map, "host")? {
    if h.is_empty() {
      return Err(RnError::invalid("option `host` must not be empty"));
    }
    host = h;
  }
  if let Some(p) = opt_int(map, "port", 1.0, 65535.0)? {
    port = p as u16;
  }
  if let Some(u) = opt_string(map, "username")? {
    username = Some(u);
  }
  if let Some(p) = opt_string(map, "password")? {
    password = Some(p);
  }
  if let Some(d) = opt_int(map, "db", 0.0, 65535.0)? {
    db = d as i64;
  }
  match map.get("tls") {
    None | Some(Value::Null) => {}
    Some(Value::Bool(false)) => tls = None,
    Some(Value::Bool(true)) => {
      tls.get_or_insert(TlsConfig {
        reject_unauthorized: true,
        ..Default::default()
      });
    }
    Some(Value::Object(t)) => tls = Some(parse_tls(t)?),
    Some(_) => {
      return Err(RnError::invalid(
        "option `tls` must be a boolean or an object",
      ))
    }
  }

  if memory.is_some() {
    // (after each option's own checks, so a mistyped option is named as such)
    for k in [
      "host", "port", "username", "password", "db", "tls", "cluster", "sentinel",
    ] {
      if map.get(k).is_some_and(|v| !v.is_null()) {
        return Err(RnError::invalid(format!(
          "option `{k}` does not go with `url: 'memory://'`, which keeps the data in this process and names no server"
        )));
      }
    }
  }
  let topology = match memory {
    Some(name) => Topology::Memory { name },
    None => parse_topology(map, &mut username, &mut password, &mut tls)?,
  };
  if matches!(topology, Topology::Cluster { .. })
    && !matches!(
      map.get("nearCache"),
      None | Some(Value::Null) | Some(Value::Bool(false))
    )
  {
    return Err(RnError::invalid(
      "option `nearCache` is not available on a Redis Cluster yet (one server and Sentinel only)",
    ));
  }
  if matches!(topology, Topology::Cluster { .. }) && db != 0 {
    return Err(RnError::invalid(
      "option `db`: a Redis Cluster has only database 0",
    ));
  }

  let key_prefix = opt_string(map, "keyPrefix")?.unwrap_or_default();
  if matches!(topology, Topology::Cluster { .. }) && key_prefix.contains(['{', '}']) {
    return Err(RnError::invalid(
      "option `keyPrefix` must not contain { or } on a Redis Cluster: the services put their own hash tags in their keys, and a brace in the prefix would change which slot each key lands in",
    ));
  }
  let connect_timeout =
    opt_millis(map, "connectTimeoutMs", false)?.unwrap_or(DEFAULT_CONNECT_TIMEOUT);
  let command_timeout =
    opt_millis(map, "commandTimeoutMs", false)?.unwrap_or(DEFAULT_COMMAND_TIMEOUT);
  let ping_interval = match opt_millis(map, "pingIntervalMs", true)? {
    None => Some(DEFAULT_PING_INTERVAL),
    Some(d) if d.is_zero() => None,
    Some(d) => Some(d),
  };
  let reconnect = match map.get("reconnect") {
    None | Some(Value::Null) => ReconnectConfig {
      min_delay: DEFAULT_RECONNECT_MIN_DELAY,
      max_delay: DEFAULT_RECONNECT_MAX_DELAY,
      max_attempts: None,
      at_startup: false,
    },
    Some(Value::Object(r)) => parse_reconnect(r)?,
    Some(_) => return Err(RnError::invalid("option `reconnect` must be an object")),
  };
  let client_name = opt_string(map, "clientName")?;
  if let Some(name) = &client_name {
    if name.is_empty() || name.chars().any(|c| c.is_whitespace()) {
      return Err(RnError::invalid(
        "option `clientName` must be non-empty and contain no spaces",
      ));
    }
  }

  match map.get("captureStackTraces") {
    None | Some(Value::Null) | Some(Value::Bool(_)) => {}
    Some(_) => {
      return Err(RnError::invalid(
        "option `captureStackTraces` must be a boolean",
      ))
    }
  }
  let max_value_bytes = opt_int(map, "maxValueBytes", 1.0, DEFAULT_MAX_VALUE_BYTES as f64)?
    .unwrap_or(DEFAULT_MAX_VALUE_BYTES);
  let max_in_flight =
    opt_int(map, "maxInFlight", 1.0, 1_000_000_000.0)?.unwrap_or(DEFAULT_MAX_IN_FLIGHT);
  let near_cache = match map.get("nearCache") {
    None | Some(Value::Null) | Some(Value::Bool(false)) => None,
    Some(Value::Bool(true)) => Some(crate::connection::NearCacheConfig {
      max_entries: crate::connection::near_cache::DEFAULT_MAX_ENTRIES,
      max_bytes: crate::connection::near_cache::DEFAULT_MAX_BYTES,
      ttl: None,
    }),
    Some(Value::Object(n)) => {
      reject_unknown(
        n,
        &["maxEntries", "maxBytes", "ttlSeconds"],
        "nearCache option",
      )?;
      let ttl = match opt_number(n, "ttlSeconds")? {
        None => None,
        Some(t) if t.is_finite() && t > 0.0 => Some(Duration::from_secs_f64(t)),
        Some(_) => {
          return Err(RnError::invalid(
            "option `nearCache.ttlSeconds` must be a number of seconds > 0",
          ))
        }
      };
      Some(crate::connection::NearCacheConfig {
        max_entries: opt_int(n, "maxEntries", 1.0, 1e9)?
          .map(|v| v as usize)
          .unwrap_or(crate::connection::near_cache::DEFAULT_MAX_ENTRIES),
        max_bytes: opt_int(n, "maxBytes", 1024.0, 1e13)?
          .map(|v| v as usize)
          .unwrap_or(crate::connection::near_cache::DEFAULT_MAX_BYTES),
        ttl,
      })
    }
    Some(_) => {
      return Err(RnError::invalid(
        "option `nearCache` must be true or { maxEntries, maxBytes, ttlSeconds }",
      ))
    }
  };

  // memory://: the data is already in this process; a near cache would only copy it
  let near_cache = near_cache.filter(|_| !matches!(topology, Topology::Memory { .. }));

  Ok(ClientConfig {
    host,
    port,
    username,
    password,
    db,
    tls,
    key_prefix,
    connect_timeout,
    command_timeout,
    ping_interval,
    reconnect,
    client_name,
    capture_stack_traces: true,
    max_value_bytes,
    max_in_flight,
    near_cache,
    topology,
  })
}

/// A node of `cluster.nodes` / `sentinel.nodes`: `redis://[user:pass@]host:port`,
/// `rediss://...` or `host:port`.
fn parse_node(input: &Value, what: &str) -> RnResult<ParsedUrl> {
  let Value::String(text) = input else {
    return Err(RnError::invalid(format!(
      "option `{what}` must be a URL string (redis://host:port)"
    )));
  };
  let with_scheme = if text.contains("://") {
    text.clone()
  } else {
    format!("redis://{text}")
  };
  parse_url(&with_scheme).map_err(|e| {
    RnError::invalid(
      e.message
        .replacen("option `url`", &format!("option `{what}`"), 1),
    )
  })
}

fn node_list(map: &Map<String, Value>, what: &str) -> RnResult<Vec<ParsedUrl>> {
  let nodes = match map.get("nodes") {
    Some(Value::Array(nodes)) if !nodes.is_empty() => nodes,
    _ => {
      return Err(RnError::invalid(format!(
        "option `{what}.nodes` must be a non-empty array of URLs (redis://host:port)"
      )))
    }
  };
  nodes
    .iter()
    .enumerate()
    .map(|(i, n)| parse_node(n, &format!("{what}.nodes[{i}]")))
    .collect()
}

/// `cluster` / `sentinel`: where the servers are. A cluster's node URLs may carry the
/// credentials and TLS (`rediss://`) when the options do not.
fn parse_topology(
  map: &Map<String, Value>,
  username: &mut Option<String>,
  password: &mut Option<String>,
  tls: &mut Option<TlsConfig>,
) -> RnResult<Topology> {
  let cluster = map.get("cluster").filter(|v| !v.is_null());
  let sentinel = map.get("sentinel").filter(|v| !v.is_null());
  if cluster.is_none() && sentinel.is_none() {
    return Ok(Topology::Standalone);
  }
  if cluster.is_some() && sentinel.is_some() {
    return Err(RnError::invalid(
      "options `cluster` and `sentinel` exclude each other",
    ));
  }
  let which = if cluster.is_some() {
    "cluster"
  } else {
    "sentinel"
  };
  if let Some(k) = ["url", "host", "port"]
    .iter()
    .find(|k| map.get(**k).is_some_and(|v| !v.is_null()))
  {
    return Err(RnError::invalid(format!(
      "option `{k}` does not go with `{which}`, which names its own servers"
    )));
  }
  if let Some(cluster) = cluster {
    let Value::Object(c) = cluster else {
      return Err(RnError::invalid(
        "option `cluster` must be an object: { nodes: ['redis://host:port', ...] }",
      ));
    };
    reject_unknown(c, &["nodes"], "cluster option")?;
    let nodes = node_list(c, "cluster")?;
    if let Some(n) = nodes.iter().find(|n| n.db != 0) {
      return Err(RnError::invalid(format!(
        "option `cluster.nodes`: {}: a Redis Cluster has only database 0",
        host_port(&n.host, n.port)
      )));
    }
    if let Some(with) = nodes
      .iter()
      .find(|n| n.username.is_some() || n.password.is_some())
    {
      if username.is_none() {
        *username = with.username.clone();
      }
      if password.is_none() {
        *password = with.password.clone();
      }
    }
    if tls.is_none() && nodes.iter().any(|n| n.tls) {
      *tls = Some(TlsConfig {
        reject_unauthorized: true,
        ..Default::default()
      });
    }
    return Ok(Topology::Cluster {
      nodes: nodes.into_iter().map(|n| (n.host, n.port)).collect(),
    });
  }
  let Some(Value::Object(s)) = sentinel else {
    return Err(RnError::invalid(
      "option `sentinel` must be an object: { nodes: ['redis://host:26379', ...], masterName }",
    ));
  };
  reject_unknown(
    s,
    &[
      "nodes",
      "masterName",
      "sentinelPassword",
      "sentinelUsername",
    ],
    "sentinel option",
  )?;
  let nodes = node_list(s, "sentinel")?;
  let master_name = match s.get("masterName") {
    Some(Value::String(m)) if !m.is_empty() => m.clone(),
    _ => {
      return Err(RnError::invalid(
        "option `sentinel.masterName` must be the non-empty name the sentinels monitor the master under",
      ))
    }
  };
  let first_with = nodes.iter().find(|n| n.password.is_some());
  Ok(Topology::Sentinel(SentinelConfig {
    master_name,
    username: opt_string(s, "sentinelUsername")?
      .or_else(|| first_with.and_then(|n| n.username.clone())),
    password: opt_string(s, "sentinelPassword")?
      .or_else(|| first_with.and_then(|n| n.password.clone())),
    nodes: nodes.into_iter().map(|n| (n.host, n.port)).collect(),
  }))
}

fn pem(map: &Map<String, Value>, name: &str) -> RnResult<Option<Vec<u8>>> {
  match map.get(name) {
    None | Some(Value::Null) => Ok(None),
    Some(Value::String(s)) => Ok(Some(s.as_bytes().to_vec())),
    // A Node Buffer arrives as { type: 'Buffer', data: [...] } (its toJSON form).
    Some(Value::Object(o)) if o.get("type") == Some(&Value::String("Buffer".into())) => {
      let data = o
        .get("data")
        .and_then(Value::as_array)
        .ok_or_else(|| RnError::invalid(format!("option `tls.{name}` is not a valid Buffer")))?;
      data
        .iter()
        .map(|b| b.as_u64().filter(|b| *b <= 255).map(|b| b as u8))
        .collect::<Option<Vec<u8>>>()
        .map(Some)
        .ok_or_else(|| RnError::invalid(format!("option `tls.{name}` is not a valid Buffer")))
    }
    Some(_) => Err(RnError::invalid(format!(
      "option `tls.{name}` must be PEM text (string or Buffer)"
    ))),
  }
}

fn parse_tls(map: &Map<String, Value>) -> RnResult<TlsConfig> {
  reject_unknown(
    map,
    &["ca", "cert", "key", "servername", "rejectUnauthorized"],
    "tls option",
  )?;
  let cfg = TlsConfig {
    ca: pem(map, "ca")?,
    cert: pem(map, "cert")?,
    key: pem(map, "key")?,
    servername: opt_string(map, "servername")?,
    reject_unauthorized: match map.get("rejectUnauthorized") {
      None | Some(Value::Null) => true,
      Some(Value::Bool(b)) => *b,
      Some(_) => {
        return Err(RnError::invalid(
          "option `tls.rejectUnauthorized` must be a boolean",
        ))
      }
    },
  };
  if cfg.cert.is_some() != cfg.key.is_some() {
    return Err(RnError::invalid(
      "options `tls.cert` and `tls.key` go together",
    ));
  }
  Ok(cfg)
}

fn parse_reconnect(map: &Map<String, Value>) -> RnResult<ReconnectConfig> {
  reject_unknown(
    map,
    &["minDelayMs", "maxDelayMs", "maxAttempts", "atStartup"],
    "reconnect option",
  )?;
  let at_startup = match map.get("atStartup") {
    None | Some(Value::Null) => false,
    Some(Value::Bool(b)) => *b,
    Some(_) => {
      return Err(RnError::invalid(
        "option `reconnect.atStartup` must be a boolean",
      ))
    }
  };
  let min_delay = opt_millis(map, "minDelayMs", true)?.unwrap_or(DEFAULT_RECONNECT_MIN_DELAY);
  let max_delay =
    opt_millis(map, "maxDelayMs", true)?.unwrap_or(DEFAULT_RECONNECT_MAX_DELAY.max(min_delay));
  if max_delay < min_delay {
    return Err(RnError::invalid(
      "option `reconnect.maxDelayMs` must be >= `reconnect.minDelayMs`",
    ));
  }
  let max_attempts = opt_int(map, "maxAttempts", 0.0, u32::MAX as f64)?.map(|n| n as u32);
  Ok(ReconnectConfig {
    min_delay,
    max_delay,
    max_attempts,
    at_startup,
  })
}

struct ParsedUrl {
  host: String,
  port: u16,
  username: Option<String>,
  password: Option<String>,
  db: i64,
  tls: bool,
}

fn parse_url(input: &str) -> RnResult<ParsedUrl> {
  // Never echo the URL itself: it may carry a password.
  let bad = |why: &str| RnError::invalid(format!("option `url` is not a valid Redis URL: {why}"));
  let url = url::Url::parse(input).map_err(|e| bad(&e.to_string()))?;
  let tls = match url.scheme() {
    "redis" | "valkey" => false,
    "rediss" | "valkeys" => true,
    _ => return Err(bad("the scheme must be redis:// or rediss://")),
  };
  let host = match url.host() {
    Some(url::Host::Ipv6(ip)) => ip.to_string(),
    Some(h) => h.to_string(),
    None => return Err(bad("no host")),
  };
  if host.is_empty() {
    return Err(bad("no host"));
  }
  let port = url.port().unwrap_or(DEFAULT_PORT);
  let username = match url.username() {
    "" => None,
    u => Some(percent_decode(u).ok_or_else(|| bad("bad percent-encoding"))?),
  };
  let password = match url.password() {
    None => None,
    Some(p) => Some(percent_decode(p).ok_or_else(|| bad("bad percent-encoding"))?),
  };
  let path = url.path().trim_start_matches('/');
  let mut db = 0i64;
  if !path.is_empty() {
    db = path
      .parse::<u16>()
      .map_err(|_| bad("the path must be a database number"))? as i64;
  }
  for (k, v) in url.query_pairs() {
    if k == "db" {
      db = v
        .parse::<u16>()
        .map_err(|_| bad("db must be a database number"))? as i64;
    }
  }
  Ok(ParsedUrl {
    host,
    port,
    username,
    password,
    db,
    tls,
  })
}

fn percent_decode(s: &str) -> Option<String> {
  let bytes = s.as_bytes();
  let mut out = Vec::with_capacity(bytes.len());
  let mut i = 0;
  while i < bytes.len() {
    if bytes[i] == b'%' {
      let hex = s.get(i + 1..i + 3)?;
      out.push(u8::from_str_radix(hex, 16).ok()?);
      i += 3;
    } else {
      out.push(bytes[i]);
      i += 1;
    }
  }
  String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
  use super::*;
  use serde_json::json;

  fn parse(v: Value) -> RnResult<ClientConfig> {
    parse_options(Some(&v), &HashMap::new())
  }

  fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
      .iter()
      .map(|(k, v)| (k.to_string(), v.to_string()))
      .collect()
  }

  #[test]
  fn credentials_in_redis_url_win_over_redis_username_and_redis_password() {
    let c = parse_options(
      None,
      &env(&[
        ("REDIS_URL", "redis://alice:url-secret@db:6380"),
        ("REDIS_USERNAME", "bob"),
        ("REDIS_PASSWORD", "env-secret"),
      ]),
    )
    .unwrap();
    assert_eq!(c.username.as_deref(), Some("alice"));
    assert_eq!(c.password.as_deref(), Some("url-secret"));
  }

  #[test]
  fn redis_password_fills_in_a_url_without_one() {
    let c = parse_options(
      None,
      &env(&[
        ("REDIS_URL", "redis://db:6380"),
        ("REDIS_PASSWORD", "env-secret"),
      ]),
    )
    .unwrap();
    assert_eq!(c.password.as_deref(), Some("env-secret"));
    assert_eq!((c.host.as_str(), c.port), ("db", 6380));
  }

  #[test]
  fn empty_options_mean_localhost_6379_and_documented_defaults() {
    let c = parse(json!({})).unwrap();
    assert_eq!((c.host.as_str(), c.port, c.db), ("localhost", 6379, 0));
    assert_eq!(c.connect_timeout, Duration::from_secs(5));
    assert_eq!(c.command_timeout, Duration::from_secs(5));
    assert_eq!(c.ping_interval, Some(Duration::from_secs(30)));
    assert_eq!(c.reconnect.max_attempts, None);
    assert_eq!(c.key_prefix, "");
    assert!(c.tls.is_none());
  }

  #[test]
  fn url_gives_host_port_credentials_and_db() {
    let c = parse(json!({ "url": "redis://app:s%40cret@127.0.0.1:6380/3" })).unwrap();
    assert_eq!(c.host, "127.0.0.1");
    assert_eq!(c.port, 6380);
    assert_eq!(c.username.as_deref(), Some("app"));
    assert_eq!(c.password.as_deref(), Some("s@cret"));
    assert_eq!(c.db, 3);
  }

  #[test]
  fn password_only_url_and_ipv6_host() {
    let c = parse(json!({ "url": "redis://:pw@[::1]:7000" })).unwrap();
    assert_eq!(c.host, "::1");
    assert_eq!(c.address(), "[::1]:7000");
    assert_eq!(c.username, None);
    assert_eq!(c.password.as_deref(), Some("pw"));
  }

  #[test]
  fn memory_urls_name_a_keyspace_and_refuse_server_options() {
    let c = parse(json!({ "url": "memory://" })).unwrap();
    assert_eq!(c.topology, Topology::Memory { name: None });
    assert_eq!(c.address(), "memory://");
    let c =
      parse(json!({ "url": "memory://shared", "keyPrefix": "app:", "nearCache": true })).unwrap();
    assert_eq!(
      c.topology,
      Topology::Memory {
        name: Some("shared".into())
      }
    );
    assert!(
      c.near_cache.is_none(),
      "ignored: the data is already in process"
    );
    for (k, v) in [
      ("host", json!("h")),
      ("port", json!(1)),
      ("password", json!("p")),
      ("tls", json!(true)),
      ("db", json!(1)),
      ("cluster", json!({ "nodes": ["redis://a:1"] })),
      (
        "sentinel",
        json!({ "nodes": ["redis://a:1"], "masterName": "m" }),
      ),
    ] {
      let mut o = json!({ "url": "memory://" });
      o[k] = v;
      let e = parse(o).unwrap_err();
      assert_eq!(e.code, crate::error::ErrorCode::InvalidArgument, "{k}");
      assert!(e.message.contains(&format!("`{k}`")), "{}", e.message);
    }
    let c = parse_options(
      None,
      &env(&[("REDIS_URL", "memory://"), ("REDIS_PASSWORD", "ignored")]),
    )
    .unwrap();
    assert_eq!(c.topology, Topology::Memory { name: None });
  }

  #[test]
  fn rediss_url_turns_on_verified_tls() {
    let c = parse(json!({ "url": "rediss://example.test" })).unwrap();
    let tls = c.tls.unwrap();
    assert!(tls.reject_unauthorized);
    assert_eq!(c.port, 6379);
  }

  #[test]
  fn explicit_fields_override_the_url() {
    let c = parse(json!({ "url": "redis://a:1/1", "port": 7001, "db": 2, "host": "b" })).unwrap();
    assert_eq!((c.host.as_str(), c.port, c.db), ("b", 7001, 2));
  }

  #[test]
  fn tls_object_with_custom_ca_and_buffer_form() {
    let c = parse(json!({
      "tls": { "ca": "PEM", "cert": { "type": "Buffer", "data": [65, 66] }, "key": "K",
               "servername": "redis.internal", "rejectUnauthorized": false }
    }))
    .unwrap();
    let tls = c.tls.unwrap();
    assert_eq!(tls.ca.as_deref(), Some(&b"PEM"[..]));
    assert_eq!(tls.cert.as_deref(), Some(&b"AB"[..]));
    assert_eq!(tls.servername.as_deref(), Some("redis.internal"));
    assert!(!tls.reject_unauthorized);
  }

  #[test]
  fn cert_without_key_is_rejected() {
    let e = parse(json!({ "tls": { "cert": "C" } })).unwrap_err();
    assert_eq!(e.code, crate::error::ErrorCode::InvalidArgument);
  }

  #[test]
  fn bad_urls_are_invalid_arguments_and_never_echo_the_password() {
    for url in [
      "http://u:hunter2@host",
      "not a url",
      "redis://u:hunter2@host/notadb",
      "redis://:hunter2@host:99999",
    ] {
      let e = parse(json!({ "url": url })).unwrap_err();
      assert_eq!(e.code, crate::error::ErrorCode::InvalidArgument, "{url}");
      assert!(!e.message.contains("hunter2"), "{}", e.message);
    }
  }

  #[test]
  fn unknown_options_and_wrong_types_are_rejected() {
    for bad in [
      json!({ "hots": "x" }),
      json!({ "port": "6379" }),
      json!({ "port": 0 }),
      json!({ "port": 70000 }),
      json!({ "port": 1.5 }),
      json!({ "db": -1 }),
      json!({ "commandTimeoutMs": 0 }),
      json!({ "commandTimeoutMs": -5 }),
      json!({ "tls": "yes" }),
      json!({ "tls": { "verify": true } }),
      json!({ "reconnect": { "minDelayMs": 500, "maxDelayMs": 100 } }),
      json!({ "reconnect": { "retries": 3 } }),
      json!({ "keyPrefix": 5 }),
      json!({ "clientName": "has space" }),
      json!({ "host": "" }),
    ] {
      let e = parse(bad.clone()).unwrap_err();
      assert_eq!(e.code, crate::error::ErrorCode::InvalidArgument, "{bad}");
    }
    assert!(parse_options(Some(&json!("redis://x")), &HashMap::new()).is_err());
  }

  #[test]
  fn ping_interval_zero_turns_keepalive_off() {
    assert_eq!(
      parse(json!({ "pingIntervalMs": 0 })).unwrap().ping_interval,
      None
    );
    assert_eq!(
      parse(json!({ "pingIntervalMs": 250 }))
        .unwrap()
        .ping_interval,
      Some(Duration::from_millis(250))
    );
  }

  #[test]
  fn reconnect_options_are_read() {
    let c = parse(json!({ "reconnect": { "minDelayMs": 10, "maxDelayMs": 50, "maxAttempts": 3 } }))
      .unwrap();
    assert_eq!(c.reconnect.min_delay, Duration::from_millis(10));
    assert_eq!(c.reconnect.max_delay, Duration::from_millis(50));
    assert_eq!(c.reconnect.max_attempts, Some(3));
  }

  #[test]
  fn no_options_read_redis_url_first() {
    let c = parse_options(
      None,
      &env(&[("REDIS_URL", "redis://h:1234/5"), ("REDIS_HOST", "ignored")]),
    )
    .unwrap();
    assert_eq!((c.host.as_str(), c.port, c.db), ("h", 1234, 5));
  }

  #[test]
  fn no_options_read_the_redis_host_variables() {
    let c = parse_options(
      None,
      &env(&[
        ("REDIS_HOST", "cache"),
        ("REDIS_PORT", "6390"),
        ("REDIS_DB", "2"),
        ("REDIS_USERNAME", "u"),
        ("REDIS_PASSWORD", "p"),
        ("REDIS_TLS", "true"),
      ]),
    )
    .unwrap();
    assert_eq!((c.host.as_str(), c.port, c.db), ("cache", 6390, 2));
    assert_eq!(c.username.as_deref(), Some("u"));
    assert_eq!(c.password.as_deref(), Some("p"));
    assert!(c.tls.is_some());
    let d = parse_options(None, &HashMap::new()).unwrap();
    assert_eq!((d.host.as_str(), d.port), ("localhost", 6379));
    assert!(parse_options(None, &env(&[("REDIS_PORT", "abc")])).is_err());
  }

  #[test]
  fn options_that_name_no_server_take_it_from_the_environment() {
    let e = env(&[("REDIS_URL", "redis://envhost:7777/4")]);
    let c = parse_options(Some(&json!({ "keyPrefix": "app:" })), &e).unwrap();
    assert_eq!((c.host.as_str(), c.port, c.db), ("envhost", 7777, 4));
    assert_eq!(c.key_prefix, "app:");
    let c = parse_options(Some(&json!({ "port": 6390 })), &e).unwrap();
    assert_eq!((c.host.as_str(), c.port, c.db), ("localhost", 6390, 0));
  }

  #[test]
  fn debug_output_hides_the_password() {
    let c = parse(json!({ "password": "hunter2" })).unwrap();
    assert!(!format!("{c:?}").contains("hunter2"));
  }

  #[test]
  fn tls_false_turns_off_the_tls_of_a_rediss_url() {
    let c = parse(json!({ "url": "rediss://example.test", "tls": false })).unwrap();
    assert!(c.tls.is_none());
  }

  #[test]
  fn tls_true_keeps_the_verified_tls_of_a_rediss_url() {
    let c = parse(json!({ "url": "rediss://example.test", "tls": true })).unwrap();
    assert!(c.tls.unwrap().reject_unauthorized);
  }

  #[test]
  fn tls_true_verifies_the_server_by_default() {
    let tls = parse(json!({ "tls": true })).unwrap().tls.unwrap();
    assert_eq!(
      tls,
      TlsConfig {
        reject_unauthorized: true,
        ..Default::default()
      }
    );
  }

  #[test]
  fn a_tls_certificate_must_be_pem_text_or_a_buffer() {
    for bad in [json!(5), json!(["PEM"]), json!({ "pem": "x" })] {
      let e = parse(json!({ "tls": { "ca": bad } })).unwrap_err();
      assert_eq!(e.code, crate::error::ErrorCode::InvalidArgument);
      assert_eq!(
        e.message, "option `tls.ca` must be PEM text (string or Buffer)",
        "{bad}"
      );
    }
  }

  #[test]
  fn a_buffer_certificate_with_bytes_out_of_range_is_refused() {
    for data in [json!([65, 256]), json!([-1]), json!("AB"), json!(null)] {
      let e = parse(json!({ "tls": { "key": { "type": "Buffer", "data": data }, "cert": "C" } }))
        .unwrap_err();
      assert_eq!(
        e.message, "option `tls.key` is not a valid Buffer",
        "{data}"
      );
    }
  }

  #[test]
  fn tls_reject_unauthorized_must_be_a_boolean() {
    let e = parse(json!({ "tls": { "rejectUnauthorized": "false" } })).unwrap_err();
    assert_eq!(
      e.message,
      "option `tls.rejectUnauthorized` must be a boolean"
    );
  }

  #[test]
  fn reconnect_must_be_an_object() {
    let e = parse(json!({ "reconnect": true })).unwrap_err();
    assert_eq!(e.message, "option `reconnect` must be an object");
  }

  #[test]
  fn reconnect_at_startup_is_off_unless_asked_for() {
    assert!(!parse(json!({})).unwrap().reconnect.at_startup);
    assert!(
      parse(json!({ "reconnect": { "atStartup": true } }))
        .unwrap()
        .reconnect
        .at_startup
    );
  }

  #[test]
  fn reconnect_at_startup_must_be_a_boolean() {
    let e = parse(json!({ "reconnect": { "atStartup": 1 } })).unwrap_err();
    assert_eq!(e.message, "option `reconnect.atStartup` must be a boolean");
  }

  #[test]
  fn a_min_delay_above_the_default_max_raises_the_max_to_it() {
    let c = parse(json!({ "reconnect": { "minDelayMs": 20_000 } })).unwrap();
    assert_eq!(c.reconnect.min_delay, Duration::from_secs(20));
    assert_eq!(c.reconnect.max_delay, Duration::from_secs(20));
  }

  #[test]
  fn capture_stack_traces_must_be_a_boolean() {
    let e = parse(json!({ "captureStackTraces": "yes" })).unwrap_err();
    assert_eq!(e.message, "option `captureStackTraces` must be a boolean");
  }

  #[test]
  fn stack_traces_are_captured_outside_production_unless_turned_off() {
    let prod = env(&[("NODE_ENV", "production")]);
    let dev = env(&[("NODE_ENV", "development")]);
    assert!(
      parse_options(Some(&json!({})), &dev)
        .unwrap()
        .capture_stack_traces
    );
    assert!(
      parse_options(Some(&json!({})), &HashMap::new())
        .unwrap()
        .capture_stack_traces
    );
    assert!(
      !parse_options(Some(&json!({})), &prod)
        .unwrap()
        .capture_stack_traces
    );
    let on = json!({ "captureStackTraces": true });
    assert!(
      parse_options(Some(&on), &prod)
        .unwrap()
        .capture_stack_traces
    );
    let off = json!({ "captureStackTraces": false });
    assert!(
      !parse_options(Some(&off), &dev)
        .unwrap()
        .capture_stack_traces
    );
  }

  #[test]
  fn max_value_bytes_and_max_in_flight_default_and_are_bounded() {
    let c = parse(json!({})).unwrap();
    assert_eq!(c.max_value_bytes, 512 * 1024 * 1024);
    assert_eq!(c.max_in_flight, 10_000);
    let c = parse(json!({ "maxValueBytes": 1024, "maxInFlight": 1 })).unwrap();
    assert_eq!((c.max_value_bytes, c.max_in_flight), (1024, 1));
    for bad in [
      json!({ "maxValueBytes": 0 }),
      json!({ "maxValueBytes": 512 * 1024 * 1024 + 1 }),
      json!({ "maxInFlight": 0 }),
      json!({ "maxInFlight": 2.5 }),
    ] {
      assert!(parse(bad.clone()).is_err(), "{bad}");
    }
  }

  #[test]
  fn a_url_without_a_host_is_refused() {
    for url in ["redis:localhost", "redis://", "redis:///0"] {
      let e = parse(json!({ "url": url })).unwrap_err();
      assert_eq!(
        e.message, "option `url` is not a valid Redis URL: no host",
        "{url}"
      );
    }
  }

  #[test]
  fn valkey_schemes_are_redis_schemes() {
    assert!(parse(json!({ "url": "valkey://h" })).unwrap().tls.is_none());
    assert!(parse(json!({ "url": "valkeys://h" }))
      .unwrap()
      .tls
      .is_some());
  }

  #[test]
  fn the_db_query_parameter_selects_the_database() {
    let c = parse(json!({ "url": "redis://h:1/2?db=5&protocol=resp2" })).unwrap();
    assert_eq!(c.db, 5);
    let c = parse(json!({ "url": "redis://h?protocol=resp2" })).unwrap();
    assert_eq!(c.db, 0);
  }

  #[test]
  fn a_db_query_parameter_that_is_not_a_number_is_refused() {
    let e = parse(json!({ "url": "redis://:hunter2@h?db=first" })).unwrap_err();
    assert_eq!(
      e.message,
      "option `url` is not a valid Redis URL: db must be a database number"
    );
  }

  #[test]
  fn bad_percent_encoding_in_the_credentials_is_refused_without_echoing_them() {
    for url in [
      "redis://us%zzer:pw@h",
      "redis://u:hunter2%@h",
      "redis://u:hunter2%ff@h",
    ] {
      let e = parse(json!({ "url": url })).unwrap_err();
      assert_eq!(
        e.message, "option `url` is not a valid Redis URL: bad percent-encoding",
        "{url}"
      );
    }
  }

  #[test]
  fn the_address_of_a_host_name_or_ipv4_host_has_no_brackets() {
    let c = parse(json!({ "host": "cache.internal", "port": 6390 })).unwrap();
    assert_eq!(c.address(), "cache.internal:6390");
    let c = parse(json!({ "url": "redis://127.0.0.1:6391" })).unwrap();
    assert_eq!(c.address(), "127.0.0.1:6391");
  }

  #[test]
  fn an_empty_environment_variable_counts_as_unset() {
    let c = parse_options(None, &env(&[("REDIS_URL", ""), ("REDIS_HOST", "h")])).unwrap();
    assert_eq!(c.host, "h");
  }

  #[test]
  fn redis_tls_takes_the_usual_words_for_yes() {
    for (word, on) in [
      ("1", true),
      ("YES", true),
      ("on", true),
      ("0", false),
      ("no", false),
    ] {
      let c = parse_options(None, &env(&[("REDIS_TLS", word)])).unwrap();
      assert_eq!(c.tls.is_some(), on, "{word}");
    }
  }

  #[test]
  fn a_redis_db_that_is_not_a_number_is_refused() {
    let e = parse_options(None, &env(&[("REDIS_DB", "two")])).unwrap_err();
    assert_eq!(e.message, "REDIS_DB must be a database number");
  }

  #[test]
  fn redis_username_and_password_supply_what_redis_url_leaves_out() {
    let e = env(&[
      ("REDIS_URL", "redis://h:7000"),
      ("REDIS_USERNAME", "envuser"),
      ("REDIS_PASSWORD", "envpass"),
    ]);
    let c = parse_options(None, &e).unwrap();
    assert_eq!((c.host.as_str(), c.port), ("h", 7000));
    assert_eq!(c.username.as_deref(), Some("envuser"));
    assert_eq!(c.password.as_deref(), Some("envpass"));
  }

  #[test]
  fn cluster_nodes_are_urls_or_host_port_and_may_carry_the_credentials() {
    let c =
      parse(json!({ "cluster": { "nodes": ["redis://:pw@127.0.0.1:7000", "127.0.0.1:7001"] } }))
        .unwrap();
    assert_eq!(
      c.topology,
      Topology::Cluster {
        nodes: vec![("127.0.0.1".into(), 7000), ("127.0.0.1".into(), 7001)]
      }
    );
    assert_eq!(c.password.as_deref(), Some("pw"));
    assert_eq!(c.address(), "cluster 127.0.0.1:7000,127.0.0.1:7001");
  }

  #[test]
  fn a_cluster_refuses_url_host_db_near_cache_and_an_empty_node_list() {
    for bad in [
      json!({ "cluster": { "nodes": [] } }),
      json!({ "cluster": { "nodes": ["redis://h:1"] }, "url": "redis://h:2" }),
      json!({ "cluster": { "nodes": ["redis://h:1"] }, "host": "h" }),
      json!({ "cluster": { "nodes": ["redis://h:1"] }, "db": 2 }),
      json!({ "cluster": { "nodes": ["redis://h:1/3"] } }),
      json!({ "cluster": { "nodes": ["redis://h:1"] }, "nearCache": true }),
      json!({ "cluster": { "nodes": [7000] } }),
      json!({ "cluster": { "nodes": ["redis://h:1"], "other": 1 } }),
      json!({ "cluster": { "nodes": ["redis://h:1"] }, "keyPrefix": "app{1}:" }),
      json!({ "cluster": { "nodes": ["redis://h:1"] }, "sentinel": { "nodes": ["redis://h:2"], "masterName": "m" } }),
    ] {
      let e = parse(bad.clone()).expect_err(&bad.to_string());
      assert_eq!(e.code, crate::error::ErrorCode::InvalidArgument, "{bad}");
    }
  }

  #[test]
  fn sentinel_needs_its_nodes_and_the_master_name() {
    let c = parse(json!({
      "sentinel": { "nodes": ["redis://127.0.0.1:26379"], "masterName": "mymaster", "sentinelPassword": "sp" },
      "password": "mp",
    }))
    .unwrap();
    let Topology::Sentinel(s) = &c.topology else {
      panic!("{:?}", c.topology)
    };
    assert_eq!(s.master_name, "mymaster");
    assert_eq!(s.password.as_deref(), Some("sp"));
    assert_eq!(c.password.as_deref(), Some("mp"));
    assert!(!format!("{s:?}").contains("sp\""));
    assert!(parse(json!({ "sentinel": { "nodes": ["redis://h:1"] } })).is_err());
    assert!(parse(json!({ "sentinel": { "nodes": [], "masterName": "m" } })).is_err());
  }

  #[test]
  fn the_environment_selects_a_cluster_or_sentinel() {
    let c = parse_options(
      None,
      &env(&[("REDIS_CLUSTER_NODES", "redis://a:1, redis://b:2")]),
    )
    .unwrap();
    assert!(matches!(&c.topology, Topology::Cluster { nodes } if nodes.len() == 2));
    let c = parse_options(
      Some(&json!({ "keyPrefix": "app:" })),
      &env(&[
        ("REDIS_SENTINELS", "redis://a:26379"),
        ("REDIS_SENTINEL_MASTER", "m"),
      ]),
    )
    .unwrap();
    assert!(matches!(&c.topology, Topology::Sentinel(s) if s.master_name == "m"));
    assert_eq!(c.key_prefix, "app:");
    assert!(parse_options(None, &env(&[("REDIS_SENTINELS", "redis://a:26379")])).is_err());
  }
}
