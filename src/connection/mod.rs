//! The connection layer every service stands on.
//!
//! `Connection` is a cheap `Clone` (an `Arc`) that services hold. It owns the key prefix
//! and hands commands to a `Backend`. Today the backend is one standalone server; Redis
//! Cluster and an embedded in-process store slot in as more `Backend` variants, without
//! any service or public API changing: services only build `redis::Cmd`s and call
//! `exec` / `exec_pipeline`.

mod event_loop;
mod events;
mod metrics;
mod standalone;
mod tls;
mod wire;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use redis::{Cmd, Pipeline, Value};

use crate::error::{RnError, RnResult};
use crate::keys::{self, KeyTable};
use crate::options::ClientConfig;

pub use events::{EventKind, Events};
pub use metrics::{Metrics, Snapshot};
pub use standalone::Standalone;

/// The server (or servers) commands go to.
pub enum Backend {
  /// One server, its socket driven by the JS thread's event loop (the default).
  EventLoop(event_loop::EventLoop),
  /// One server, its socket driven by a tokio thread (where Node's libuv is not
  /// available, or `NESTJS_REDIS_NATIVE_IO=thread`).
  Standalone(Standalone),
}

impl Backend {
  async fn exec(&self, cmd: Cmd) -> RnResult<Value> {
    match self {
      Backend::EventLoop(s) => s.exec(cmd).await,
      Backend::Standalone(s) => s.exec(cmd).await,
    }
  }

  async fn exec_pipeline(&self, pipe: Pipeline, count: usize) -> RnResult<Vec<Value>> {
    match self {
      Backend::EventLoop(s) => s.exec_pipeline(pipe, count).await,
      Backend::Standalone(s) => s.exec_pipeline(pipe, count).await,
    }
  }

  fn close(&self) {
    match self {
      Backend::EventLoop(s) => s.close(),
      Backend::Standalone(s) => s.close(),
    }
  }

  fn is_closed(&self) -> bool {
    match self {
      Backend::EventLoop(s) => s.is_closed(),
      Backend::Standalone(s) => s.is_closed(),
    }
  }

  async fn open_subscriber(&self, push: PushSender) -> RnResult<SubscriberConn> {
    match self {
      Backend::EventLoop(s) => s
        .open_subscriber(push)
        .await
        .map(SubscriberConn::Standalone),
      Backend::Standalone(s) => s
        .open_subscriber(push)
        .await
        .map(SubscriberConn::Standalone),
    }
  }

  fn reconnect_delay(&self, attempt: u32) -> std::time::Duration {
    match self {
      Backend::EventLoop(s) => s.reconnect_delay(attempt),
      Backend::Standalone(s) => s.reconnect_delay(attempt),
    }
  }
}

struct Inner {
  backend: Backend,
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
    let (traces, command_timeout, max_value_bytes, max_in_flight) = (
      config.capture_stack_traces,
      config.command_timeout,
      config.max_value_bytes,
      config.max_in_flight,
    );
    let metrics = Arc::new(Metrics::default());
    let events = Arc::new(Events::default());
    let backend = if event_loop::available() {
      Backend::EventLoop(
        event_loop::EventLoop::connect(env, config, metrics.clone(), events.clone()).await?,
      )
    } else {
      Backend::Standalone(Standalone::connect(config, metrics.clone(), events.clone()).await?)
    };
    Ok(Connection {
      inner: Arc::new(Inner {
        backend,
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
      }),
    })
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

  /// Sends one command; a server error reply becomes `ERR_REDIS_COMMAND`.
  pub async fn exec(&self, cmd: Cmd) -> RnResult<Value> {
    self.check_size(&cmd)?;
    let started = self.started()?;
    let result = match self.inner.backend.exec(cmd).await {
      Ok(Value::ServerError(e)) => Err(RnError::from(redis::RedisError::from(e))),
      other => other,
    };
    self.finished(started, 1, result.as_ref().err());
    result
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
    let conn = self.inner.backend.open_subscriber(push).await?;
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
    self.inner.backend.close();
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
    let SubscriberConn::Standalone(c) = &mut self.conn;
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
