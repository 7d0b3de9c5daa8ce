//! The connection layer every service stands on.
//!
//! `Connection` is a cheap `Clone` (an `Arc`) that services hold. It owns the key prefix
//! and hands commands to a `Backend`. Today the backend is one standalone server; Redis
//! Cluster and an embedded in-process store slot in as more `Backend` variants, without
//! any service or public API changing: services only build `redis::Cmd`s and call
//! `exec` / `exec_pipeline`.

mod cluster;
mod event_loop;
mod events;
mod metrics;
pub mod near_cache;
mod sentinel;
mod standalone;
mod tls;
mod wire;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use redis::{Cmd, Pipeline, Value};

pub(crate) use standalone::labeled;

use crate::error::{RnError, RnResult};
use crate::keys::{self, KeyTable};
use crate::options::ClientConfig;

pub use events::{EventKind, Events};
pub use metrics::{Metrics, Snapshot};
pub use near_cache::{NearCache, NearCacheConfig, ReadKind};
pub use standalone::Standalone;

/// The server (or servers) commands go to.
pub enum Backend {
  /// One server, its socket driven by the JS thread's event loop (the default).
  EventLoop(event_loop::EventLoop),
  /// One server, its socket driven by a tokio thread (where Node's libuv is not
  /// available, or `NESTJS_REDIS_NATIVE_IO=thread`).
  Standalone(Standalone),
  /// A Redis Cluster (redis-rs' cluster engine, on tokio).
  Cluster(Box<cluster::Cluster>),
  /// `memory://`: the in-process engine (`src/memory`), run on the thread that polls the
  /// call.
  Memory(crate::memory::Memory),
}

impl Backend {
  async fn exec(&self, cmd: Cmd) -> RnResult<Value> {
    match self {
      Backend::EventLoop(s) => s.exec(cmd).await,
      Backend::Standalone(s) => s.exec(cmd).await,
      Backend::Cluster(c) => c.exec(cmd).await,
      Backend::Memory(m) => m.exec(&cmd),
    }
  }

  async fn exec_pipeline(&self, pipe: Pipeline, count: usize) -> RnResult<Vec<Value>> {
    match self {
      Backend::EventLoop(s) => s.exec_pipeline(pipe, count).await,
      Backend::Standalone(s) => s.exec_pipeline(pipe, count).await,
      Backend::Cluster(c) => c.exec_pipeline(pipe, count).await,
      Backend::Memory(m) => m.exec_pipeline(&pipe),
    }
  }

  fn close(&self) {
    match self {
      Backend::EventLoop(s) => s.close(),
      Backend::Standalone(s) => s.close(),
      Backend::Cluster(c) => c.close(),
      Backend::Memory(m) => m.close(),
    }
  }

  fn is_closed(&self) -> bool {
    match self {
      Backend::EventLoop(s) => s.is_closed(),
      Backend::Standalone(s) => s.is_closed(),
      Backend::Cluster(c) => c.is_closed(),
      Backend::Memory(m) => m.is_closed(),
    }
  }

  async fn open_subscriber(&self, push: PushSender, role: &str) -> RnResult<SubscriberConn> {
    match self {
      Backend::EventLoop(s) => s
        .open_subscriber(push, role)
        .await
        .map(SubscriberConn::Standalone),
      Backend::Standalone(s) => s
        .open_subscriber(push, role)
        .await
        .map(SubscriberConn::Standalone),
      Backend::Cluster(c) => c
        .open_subscriber(push, role)
        .await
        .map(SubscriberConn::Standalone),
      Backend::Memory(m) => m.open_subscriber(push).map(SubscriberConn::Memory),
    }
  }

  /// The generation of the command connection while it is up, 0 while it is not.
  fn link(&self) -> u64 {
    match self {
      Backend::EventLoop(s) => s.link(),
      Backend::Standalone(s) => s.link(),
      Backend::Cluster(c) => c.link(),
      Backend::Memory(m) => u64::from(!m.is_closed()),
    }
  }

  fn reconnect_delay(&self, attempt: u32) -> std::time::Duration {
    match self {
      Backend::EventLoop(s) => s.reconnect_delay(attempt),
      Backend::Standalone(s) => s.reconnect_delay(attempt),
      Backend::Cluster(c) => c.reconnect_delay(attempt),
      // nothing to reconnect to: a subscriber lost with its keyspace stays lost
      Backend::Memory(_) => std::time::Duration::from_secs(3600),
    }
  }
}

struct Inner {
  backend: Backend,
  topology: crate::options::Topology,
  prefix: Arc<str>,
  /// `host:port`, for messages.
  address: String,
  traces: bool,
  command_timeout: std::time::Duration,
  max_value_bytes: u64,
  max_in_flight: u64,
  /// Key positions of each command, read from the server (COMMAND) the first time a raw
  /// command needs its keys prefixed.
  key_table: tokio::sync::OnceCell<KeyTable>,
  metrics: Arc<Metrics>,
  events: Arc<Events>,
  /// State services share per client and name (a cache namespace's counters, say).
  registry: std::sync::Mutex<Registry>,
  /// `nearCache`: values kept in process memory while Redis tracks them for us.
  near: Option<Arc<NearCache>>,
  /// Wakes the near cache's tracking task when the client closes.
  closing: Arc<tokio::sync::Notify>,
}

type Registry =
  std::collections::HashMap<(std::any::TypeId, String), Arc<dyn std::any::Any + Send + Sync>>;

/// A handle on the client's connection, shared by every service built on the client.
#[derive(Clone)]
pub struct Connection {
  inner: Arc<Inner>,
}

impl Connection {
  /// Connects and verifies the server (PING) within `connect_timeout`. Polled on the JS
  /// thread of `env`, which then drives the connection.
  pub async fn open(config: ClientConfig, env: napi::sys::napi_env) -> RnResult<Connection> {
    let prefix: Arc<str> = Arc::from(config.key_prefix.as_str());
    let address = config.address();
    let near = config
      .near_cache
      .clone()
      .map(|c| Arc::new(NearCache::new(c)));
    let (traces, command_timeout, max_value_bytes, max_in_flight) = (
      config.capture_stack_traces,
      config.command_timeout,
      config.max_value_bytes,
      config.max_in_flight,
    );
    let topology = config.topology.clone();
    let metrics = Arc::new(Metrics::default());
    let events = Arc::new(Events::default());
    let backend = if let crate::options::Topology::Memory { name } = &config.topology {
      Backend::Memory(crate::memory::Memory::open(
        name.as_deref(),
        &config.key_prefix,
        (!env.is_null()).then_some(env),
      )?)
    } else if matches!(config.topology, crate::options::Topology::Cluster { .. }) {
      Backend::Cluster(Box::new(
        cluster::Cluster::connect(config, events.clone()).await?,
      ))
    } else if event_loop::available() {
      Backend::EventLoop(
        event_loop::EventLoop::connect(env, config, metrics.clone(), events.clone()).await?,
      )
    } else {
      Backend::Standalone(Standalone::connect(config, metrics.clone(), events.clone()).await?)
    };
    let connection = Connection {
      inner: Arc::new(Inner {
        backend,
        topology,
        prefix,
        address,
        traces,
        command_timeout,
        max_value_bytes,
        max_in_flight,
        key_table: tokio::sync::OnceCell::new(),
        metrics,
        events,
        registry: Default::default(),
        near,
        closing: Arc::new(tokio::sync::Notify::new()),
      }),
    };
    if connection.inner.near.is_some() {
      connection.start_tracking().await?;
    }
    Ok(connection)
  }

  pub fn prefix(&self) -> &str {
    &self.inner.prefix
  }

  /// The key as stored in Redis: the client's prefix, then the key.
  pub fn key(&self, key: &str) -> String {
    keys::prefixed(&self.inner.prefix, key)
  }

  /// A key handed back by Redis, without the client's prefix.
  pub fn unprefix<'a>(&self, key: &'a str) -> &'a str {
    keys::strip(&self.inner.prefix, key)
  }

  /// A SCAN pattern limited to this client's prefix (glob characters in the prefix escaped).
  pub fn pattern(&self, pattern: &str) -> String {
    keys::prefix_pattern(&self.inner.prefix, pattern)
  }

  /// Whether calls on this client capture the stack of their caller (`captureStackTraces`).
  pub fn traces(&self) -> bool {
    self.inner.traces
  }

  /// Refuses a command with an argument larger than `maxValueBytes`, before it is sent.
  fn check_size(&self, cmd: &Cmd) -> RnResult<()> {
    let max = self.inner.max_value_bytes as usize;
    for arg in cmd.args_iter() {
      if let redis::Arg::Simple(bytes) = arg {
        if bytes.len() > max {
          return Err(RnError::invalid(format!(
            "a value of {} bytes is larger than maxValueBytes ({max} bytes); nothing was sent",
            bytes.len()
          )));
        }
      }
    }
    Ok(())
  }

  /// With the near cache: drops at once what this command may change, so this client
  /// reads its own writes (Redis's invalidation of them comes later, on the tracking
  /// connection).
  fn note_writes(&self, cmd: &Cmd) {
    let Some(near) = &self.inner.near else {
      return;
    };
    let args: Vec<&[u8]> = cmd
      .args_iter()
      .filter_map(|a| match a {
        redis::Arg::Simple(b) => Some(b),
        _ => None,
      })
      .collect();
    let Some(name) = args.first() else { return };
    let name = String::from_utf8_lossy(name).to_ascii_uppercase();
    let keys: Vec<Vec<u8>> = match name.as_str() {
      "GET" | "MGET" | "HGETALL" | "HGET" | "EXISTS" | "PTTL" | "TTL" | "TYPE" | "STRLEN"
      | "SCAN" | "PING" | "INFO" | "COMMAND" | "CLIENT" | "TIME" | "PUBLISH" | "KEYS"
      | "ZRANGE" | "ZCARD" | "ZSCORE" | "SMEMBERS" | "SCARD" | "LRANGE" | "LLEN" => return,
      "DEL" | "UNLINK" | "TOUCH" => args[1..].iter().map(|k| k.to_vec()).collect(),
      "MSET" | "MSETNX" => args[1..].iter().step_by(2).map(|k| k.to_vec()).collect(),
      "EVAL" | "EVALSHA" | "EVAL_RO" | "EVALSHA_RO" | "FCALL" => {
        let count = args
          .get(2)
          .and_then(|n| std::str::from_utf8(n).ok())
          .and_then(|n| n.parse::<usize>().ok())
          .unwrap_or(0);
        args
          .iter()
          .skip(3)
          .take(count)
          .map(|k| k.to_vec())
          .collect()
      }
      _ => args.get(1).map(|k| vec![k.to_vec()]).unwrap_or_default(),
    };
    if !keys.is_empty() {
      near.invalidate(&keys);
    }
  }

  /// Sends one command; a server error reply becomes `ERR_REDIS_COMMAND`.
  pub async fn exec(&self, cmd: Cmd) -> RnResult<Value> {
    self.check_size(&cmd)?;
    self.note_writes(&cmd);
    let started = self.started()?;
    let result = match self.inner.backend.exec(cmd).await {
      Ok(Value::ServerError(e)) => Err(RnError::from(redis::RedisError::from(e))),
      other => other,
    };
    self.finished(started, 1, result.as_ref().err());
    result
  }

  /// The servers a walk over every key (SCAN) must visit: the one server (`None`), or
  /// on a cluster every master that serves slots.
  pub async fn scan_targets(&self) -> RnResult<Vec<Option<(String, u16)>>> {
    match &self.inner.backend {
      Backend::Cluster(c) => Ok(
        c.masters()
          .await?
          .into_iter()
          .map(|n| Some((n.host, n.port)))
          .collect(),
      ),
      _ => Ok(vec![None]),
    }
  }

  /// Sends `cmd` to `target` (from `scan_targets`; `None`: as `exec`).
  pub async fn exec_at(&self, target: &Option<(String, u16)>, cmd: Cmd) -> RnResult<Value> {
    let (Some((host, port)), Backend::Cluster(c)) = (target, &self.inner.backend) else {
      return self.exec(cmd).await;
    };
    self.check_size(&cmd)?;
    let started = self.started()?;
    let result = c.exec_on(host, *port, cmd).await;
    self.finished(started, 1, result.as_ref().err());
    result
  }

  /// The positions of `keys` (already prefixed) grouped by cluster slot, in first-seen
  /// order: one group on one server. For multi-key steps a cluster would refuse
  /// (CROSSSLOT): one step per group.
  pub fn slot_groups<K: AsRef<[u8]>>(&self, keys: &[K]) -> Vec<Vec<usize>> {
    if !matches!(self.inner.backend, Backend::Cluster(_)) {
      return vec![(0..keys.len()).collect()];
    }
    let mut groups: Vec<(u16, Vec<usize>)> = Vec::new();
    for (i, k) in keys.iter().enumerate() {
      let s = keys::hash_slot(k.as_ref());
      match groups.iter_mut().find(|(g, _)| *g == s) {
        Some((_, members)) => members.push(i),
        None => groups.push((s, vec![i])),
      }
    }
    groups.into_iter().map(|(_, m)| m).collect()
  }

  /// `'standalone'`, `'cluster'`, `'sentinel'` or `'memory'`.
  pub fn topology(&self) -> &'static str {
    match (&self.inner.backend, &self.inner.topology) {
      (Backend::Cluster(_), _) => "cluster",
      (Backend::Memory(_), _) => "memory",
      (_, crate::options::Topology::Sentinel(_)) => "sentinel",
      _ => "standalone",
    }
  }

  /// On a cluster, its nodes as they are now (`None` on one server).
  pub async fn cluster_nodes(&self) -> Option<RnResult<Vec<cluster::Node>>> {
    match &self.inner.backend {
      Backend::Cluster(c) => Some(c.nodes().await),
      _ => None,
    }
  }

  /// Admits one more call in flight, or refuses it past `maxInFlight`.
  fn started(&self) -> RnResult<Instant> {
    let m = &self.inner.metrics;
    let before = m.in_flight.fetch_add(1, Ordering::Relaxed);
    if before >= self.inner.max_in_flight as i64 {
      m.in_flight.fetch_sub(1, Ordering::Relaxed);
      m.record(1, std::time::Duration::ZERO, true, false);
      return Err(RnError::connection(format!(
        "{before} calls are already waiting for Redis at {} (maxInFlight {}): it is not keeping up; nothing was sent",
        self.inner.address, self.inner.max_in_flight
      )));
    }
    Ok(Instant::now())
  }

  fn finished(&self, started: Instant, count: u64, error: Option<&RnError>) {
    // NOSCRIPT is not a failure: the script runner sends EVAL next (after a restart or
    // SCRIPT FLUSH, and on a script's first use)
    let error = error.filter(|e| e.server_code.as_deref() != Some("NOSCRIPT"));
    let m = &self.inner.metrics;
    m.in_flight.fetch_sub(1, Ordering::Relaxed);
    let timeout = error.is_some_and(|e| e.code == crate::error::ErrorCode::RedisTimeout);
    m.record(count, started.elapsed(), error.is_some(), timeout);
  }

  /// A read that the near cache may answer: `kind` reads `key` (already prefixed) with
  /// `cmd`. Without `nearCache`, simply `exec(cmd)`.
  pub async fn read(&self, kind: ReadKind, key: &str, cmd: Cmd) -> RnResult<Value> {
    let Some(near) = &self.inner.near else {
      return self.exec(cmd).await;
    };
    let link = self.inner.backend.link();
    if let Some(v) = near.lookup(kind, key.as_bytes(), link) {
      return Ok(v);
    }
    if let Some(tracking) = near.needs_enabling(link) {
      self.enable_tracking(near, link, tracking).await;
    }
    if !near.live(self.inner.backend.link()) {
      return self.exec(cmd).await;
    }
    let ticket = near.begin_read(kind, key.as_bytes());
    let result = self.exec_tracked(cmd).await;
    near.end_read(ticket, result.as_ref().ok());
    result
  }

  /// `cmd`, a read the near cache keeps, sent right behind `CLIENT CACHING YES` (one
  /// write, so nothing comes between them): tracking is opt-in, so Redis tracks only
  /// the keys the near cache keeps, not every key a script or command reads (a rate
  /// limiter's counters would otherwise cost an invalidation message on every write).
  async fn exec_tracked(&self, cmd: Cmd) -> RnResult<Value> {
    let mut pipe = redis::pipe();
    pipe.cmd("CLIENT").arg("CACHING").arg("YES");
    pipe.add_command(cmd.clone());
    let mut values = self.exec_pipeline(pipe, 2).await?;
    match (values.pop(), values.pop()) {
      (Some(Value::ServerError(e)), _) => Err(standalone::labeled(
        RnError::from(redis::RedisError::from(e)),
        &cmd,
        &self.inner.prefix,
      )),
      (Some(v), Some(_)) => Ok(v),
      _ => Err(RnError::internal("a read got no reply")),
    }
  }

  /// `MGET` of `keys` (already prefixed), each key answered by the near cache when it
  /// can: only the others are read from Redis.
  pub async fn read_many(&self, keys: &[String]) -> RnResult<Vec<Value>> {
    let Some(near) = &self.inner.near else {
      let mut cmd = redis::cmd("MGET");
      for k in keys {
        cmd.arg(k);
      }
      return match self.exec(cmd).await? {
        Value::Array(values) => Ok(values),
        other => Err(RnError::internal(format!(
          "unexpected MGET reply {other:?}"
        ))),
      };
    };
    let link = self.inner.backend.link();
    let mut out: Vec<Option<Value>> = keys
      .iter()
      .map(|k| near.lookup(ReadKind::Get, k.as_bytes(), link))
      .collect();
    let missing: Vec<usize> = (0..keys.len()).filter(|&i| out[i].is_none()).collect();
    if !missing.is_empty() {
      if let Some(tracking) = near.needs_enabling(link) {
        self.enable_tracking(near, link, tracking).await;
      }
      let live = near.live(self.inner.backend.link());
      let tickets: Vec<_> = missing
        .iter()
        .filter(|_| live)
        .map(|&i| near.begin_read(ReadKind::Get, keys[i].as_bytes()))
        .collect();
      let mut cmd = redis::cmd("MGET");
      for &i in &missing {
        cmd.arg(&keys[i]);
      }
      let result = if live {
        self.exec_tracked(cmd).await
      } else {
        self.exec(cmd).await
      };
      let values = match result {
        Ok(Value::Array(values)) if values.len() == missing.len() => values,
        Ok(other) => {
          tickets.into_iter().for_each(|t| near.end_read(t, None));
          return Err(RnError::internal(format!(
            "unexpected MGET reply {other:?}"
          )));
        }
        Err(e) => {
          tickets.into_iter().for_each(|t| near.end_read(t, None));
          return Err(e);
        }
      };
      let mut tickets = tickets.into_iter();
      for (&i, v) in missing.iter().zip(values) {
        if live {
          if let Some(t) = tickets.next() {
            near.end_read(t, Some(&v));
          }
        }
        out[i] = Some(v);
      }
    }
    Ok(out.into_iter().map(|v| v.unwrap_or(Value::Nil)).collect())
  }

  /// Turns tracking on for command connection `link`, redirected to `tracking`.
  async fn enable_tracking(&self, near: &NearCache, link: u64, tracking: i64) {
    let mut cmd = redis::cmd("CLIENT");
    cmd
      .arg("TRACKING")
      .arg("ON")
      .arg("REDIRECT")
      .arg(tracking)
      .arg("OPTIN");
    match self.exec(cmd).await {
      Ok(_) if self.inner.backend.link() == link => near.enabled(link, tracking),
      _ => near.enabling_failed(),
    }
  }

  /// Opens the near cache's tracking connection (and keeps it open): it receives Redis's
  /// invalidations. `connect` waits for the first one, so a bad server fails fast.
  async fn start_tracking(&self) -> RnResult<()> {
    let (push, pushes) = tokio::sync::mpsc::unbounded_channel();
    let conn = self.open_tracking(push).await?;
    let weak = Arc::downgrade(&self.inner);
    napi::bindgen_prelude::spawn(track(weak, conn, pushes));
    Ok(())
  }

  /// A tracking connection: `CLIENT ID` known to the near cache.
  async fn open_tracking(&self, push: PushSender) -> RnResult<SubscriberConn> {
    let mut conn = self.inner.backend.open_subscriber(push, "tracking").await?;
    let SubscriberConn::Standalone(c) = &mut conn else {
      return Err(RnError::internal("memory:// has no near cache to track"));
    };
    let id: i64 = redis::cmd("CLIENT")
      .arg("ID")
      .query_async(c)
      .await
      .map_err(RnError::from)?;
    if let Some(near) = &self.inner.near {
      near.set_tracking(id);
    }
    Ok(conn)
  }

  /// `client.metrics().nearCache`: hits, misses, evictions, entries, bytes.
  pub fn near_cache_stats(&self) -> Option<[u64; 5]> {
    self.inner.near.as_ref().map(|n| {
      let (entries, bytes) = n.size();
      [
        n.hits.load(Ordering::Relaxed),
        n.misses.load(Ordering::Relaxed),
        n.evictions.load(Ordering::Relaxed),
        entries as u64,
        bytes as u64,
      ]
    })
  }

  /// Whether `key` (already prefixed) exists.
  pub async fn exists(&self, key: &str) -> RnResult<bool> {
    let mut cmd = redis::cmd("EXISTS");
    cmd.arg(key);
    match self.exec(cmd).await? {
      Value::Int(n) => Ok(n > 0),
      other => Err(RnError::internal(format!(
        "unexpected EXISTS reply {other:?}"
      ))),
    }
  }

  /// Seconds left for `key` (already prefixed), with fractions (PTTL): `None` when absent,
  /// `-1` when it has no expiry.
  pub async fn ttl_seconds(&self, key: &str) -> RnResult<Option<f64>> {
    let mut cmd = redis::cmd("PTTL");
    cmd.arg(key);
    match self.exec(cmd).await? {
      Value::Int(-2) => Ok(None),
      Value::Int(-1) => Ok(Some(-1.0)),
      Value::Int(ms) => Ok(Some(ms as f64 / 1000.0)),
      other => Err(RnError::internal(format!(
        "unexpected PTTL reply {other:?}"
      ))),
    }
  }

  /// A dedicated subscriber connection: messages of what it subscribes arrive on `push`
  /// (as RESP3 pushes; a `Disconnection` push says it was lost).
  pub async fn open_subscriber(&self, push: PushSender) -> RnResult<Subscriber> {
    let conn = self.inner.backend.open_subscriber(push, "sub").await?;
    Ok(Subscriber {
      conn,
      timeout: self.inner.command_timeout,
    })
  }

  /// The delay before reconnect attempt `attempt` (1-based): the client's backoff, jittered.
  pub fn reconnect_delay(&self, attempt: u32) -> std::time::Duration {
    self.inner.backend.reconnect_delay(attempt)
  }

  /// The one `T` of this client named `name`, made on first use: state that every
  /// handle of one thing shares (two `cache.namespace('users')` handles count together).
  pub fn shared<T: Default + Send + Sync + 'static>(&self, name: &str) -> Arc<T> {
    let mut registry = self
      .inner
      .registry
      .lock()
      .unwrap_or_else(|e| e.into_inner());
    let entry = registry
      .entry((std::any::TypeId::of::<T>(), name.to_string()))
      .or_insert_with(|| Arc::new(T::default()));
    match entry.clone().downcast::<T>() {
      Ok(t) => t,
      Err(_) => Arc::new(T::default()), // unreachable: keyed by type
    }
  }

  /// Every `T` of this client that `shared` made, with its name, by name: what
  /// `client.metrics()` reports per cache namespace or rate-limit rule.
  pub fn shared_all<T: Send + Sync + 'static>(&self) -> Vec<(String, Arc<T>)> {
    let registry = self
      .inner
      .registry
      .lock()
      .unwrap_or_else(|e| e.into_inner());
    let mut all: Vec<(String, Arc<T>)> = registry
      .iter()
      .filter(|((kind, _), _)| *kind == std::any::TypeId::of::<T>())
      .filter_map(|((_, name), t)| Some((name.clone(), t.clone().downcast::<T>().ok()?)))
      .collect();
    all.sort_by(|a, b| a.0.cmp(&b.0));
    all
  }

  /// The listeners of this client's connection events.
  pub fn events(&self) -> &Events {
    &self.inner.events
  }

  /// Counters and latency percentiles of this client's commands.
  pub fn metrics(&self) -> Snapshot {
    self.inner.metrics.snapshot()
  }

  /// Sends commands in one round trip. Replies come back in order; a command that failed
  /// on the server has its error in its slot (`Value::ServerError`), the others still count.
  pub async fn exec_pipeline(&self, pipe: Pipeline, count: usize) -> RnResult<Vec<Value>> {
    if count == 0 {
      return Ok(Vec::new());
    }
    for cmd in pipe.cmd_iter() {
      self.check_size(cmd)?;
    }
    for cmd in pipe.cmd_iter() {
      self.note_writes(cmd);
    }
    let started = self.started()?;
    let result = self.inner.backend.exec_pipeline(pipe, count).await;
    self.finished(started, count as u64, result.as_ref().err());
    if let Ok(values) = &result {
      // the commands the server refused count as errors, each
      let refused = values
        .iter()
        .filter(|v| matches!(v, Value::ServerError(_)))
        .count();
      if refused > 0 {
        let m = &self.inner.metrics;
        m.errors.fetch_add(refused as u64, Ordering::Relaxed);
      }
    }
    result
  }

  pub fn close(&self) {
    if let Backend::Memory(m) = &self.inner.backend {
      // no connection to lose, but listeners hear the end as on the other backends
      if !m.is_closed() {
        self.inner.events.emit(
          EventKind::End,
          serde_json::json!({ "address": self.inner.address, "reason": "closed" }),
        );
        self.inner.events.clear();
      }
    }
    self.inner.backend.close();
    self.inner.closing.notify_waiters();
    if let Some(near) = &self.inner.near {
      near.set_tracking(0);
    }
  }

  pub fn is_closed(&self) -> bool {
    self.inner.backend.is_closed()
  }

  /// Applies the key prefix to the key arguments of a raw command (`args[0]` is the
  /// command name), the way ioredis does for its keyPrefix.
  pub async fn prefix_raw_command(&self, args: &mut [Vec<u8>]) -> RnResult<()> {
    if self.inner.prefix.is_empty() || args.is_empty() {
      return Ok(());
    }
    let table = self
      .inner
      .key_table
      .get_or_try_init(|| async {
        let reply = self.exec(redis::cmd("COMMAND")).await?;
        Ok::<_, RnError>(KeyTable::from_command_reply(&reply))
      })
      .await?;
    let name = String::from_utf8_lossy(&args[0]).to_ascii_lowercase();
    let positions = match table.positions(&name, args) {
      keys::Positions::Known(p) => p,
      keys::Positions::AskServer => {
        let mut getkeys = redis::cmd("COMMAND");
        getkeys.arg("GETKEYS");
        for a in args.iter() {
          getkeys.arg(a.as_slice());
        }
        match self.exec(getkeys).await {
          Ok(reply) => keys::positions_of_returned_keys(&reply, args),
          // "The command has no key arguments" (or an invalid command): nothing to prefix;
          // the command itself reports a real mistake when it is sent.
          Err(e) if e.code == crate::error::ErrorCode::RedisCommand => Vec::new(),
          Err(e) => return Err(e),
        }
      }
    };
    for p in positions {
      let mut k = self.inner.prefix.as_bytes().to_vec();
      k.extend_from_slice(&args[p]);
      args[p] = k;
    }
    Ok(())
  }
}

/// Where a subscriber connection sends its messages.
pub type PushSender = tokio::sync::mpsc::UnboundedSender<redis::PushInfo>;

/// The connection of a subscriber, whatever the topology.
enum SubscriberConn {
  Standalone(redis::aio::MultiplexedConnection),
  Memory(crate::memory::MemorySubscriber),
}

/// What a subscription listens to.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Topic {
  Channel,
  Pattern,
}

/// A subscriber connection (`Connection::open_subscriber`): subscribes and unsubscribes
/// channels and patterns; messages arrive on its push channel.
pub struct Subscriber {
  conn: SubscriberConn,
  timeout: std::time::Duration,
}

impl Subscriber {
  /// Subscribes (`on`) or unsubscribes `name`, within the command timeout.
  pub async fn set(&mut self, topic: Topic, name: &str, on: bool) -> RnResult<()> {
    let c = match &mut self.conn {
      SubscriberConn::Standalone(c) => c,
      SubscriberConn::Memory(m) => return m.set(topic == Topic::Pattern, name, on),
    };
    let call = async {
      match (topic, on) {
        (Topic::Channel, true) => c.subscribe(name).await,
        (Topic::Channel, false) => c.unsubscribe(name).await,
        (Topic::Pattern, true) => c.psubscribe(name).await,
        (Topic::Pattern, false) => c.punsubscribe(name).await,
      }
    };
    match tokio::time::timeout(self.timeout, call).await {
      Ok(r) => r.map_err(RnError::from),
      Err(_) => Err(RnError::timeout(format!(
        "the subscriber connection got no answer within {} ms (commandTimeoutMs)",
        self.timeout.as_millis()
      ))),
    }
  }
}

/// The near cache's tracking task: applies Redis's invalidations; when the tracking
/// connection is lost, empties the cache and opens a new one (with the client's backoff)
/// until the client closes.
async fn track(
  weak: std::sync::Weak<Inner>,
  mut conn: SubscriberConn,
  mut pushes: tokio::sync::mpsc::UnboundedReceiver<redis::PushInfo>,
) {
  let mut attempt = 0u32;
  loop {
    let Some(inner) = weak.upgrade() else { return };
    let closing = inner.closing.clone();
    let Some(near) = inner.near.clone() else {
      return;
    };
    drop(inner);
    // apply invalidations until the connection is lost
    loop {
      let push = tokio::select! {
        p = pushes.recv() => p,
        _ = closing.notified() => None,
      };
      let Some(push) = push else { break };
      match push.kind {
        redis::PushKind::Invalidate => match push.data.first() {
          Some(Value::Array(keys)) => {
            let keys: Vec<Vec<u8>> = keys
              .iter()
              .filter_map(|k| match k {
                Value::BulkString(b) => Some(b.clone()),
                Value::SimpleString(s) => Some(s.as_bytes().to_vec()),
                _ => None,
              })
              .collect();
            near.invalidate(&keys);
          }
          // a nil key list: the server dropped everything (FLUSHALL, or its tracking table)
          _ => near.flush(),
        },
        redis::PushKind::Disconnection => break,
        _ => {}
      }
    }
    near.set_tracking(0);
    drop(conn);
    // reconnect until it works or the client closes
    loop {
      let Some(inner) = weak.upgrade() else { return };
      if inner.backend.is_closed() {
        return;
      }
      attempt += 1;
      let delay = inner.backend.reconnect_delay(attempt);
      let closing = inner.closing.clone();
      drop(inner);
      tokio::select! {
        _ = tokio::time::sleep(delay) => {}
        _ = closing.notified() => return,
      }
      let Some(inner) = weak.upgrade() else { return };
      let connection = Connection { inner };
      let (push, next) = tokio::sync::mpsc::unbounded_channel();
      if let Ok(c) = connection.open_tracking(push).await {
        conn = c;
        pushes = next;
        attempt = 0;
        break;
      }
    }
  }
}
