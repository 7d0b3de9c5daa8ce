//! One Redis server, driven from the JS thread's own event loop: the socket is watched by
//! libuv (the loop Node already runs), commands are written from the JS thread, replies
//! are read and parsed there and settle their Promises at once. A call crosses no thread:
//! JS → socket → Redis → socket → JS, as in a pure-JS client, with RESP handled in Rust.
//!
//! Opening a connection (TCP, TLS, AUTH, ...) still runs on tokio; the ready socket is
//! then handed over to the event loop. While the connection is down, commands fail fast
//! with `ERR_REDIS_CONNECTION`; it is re-established in the background with the client's
//! backoff. Replies that mean "not now" are retried within `commandTimeoutMs`.
//!
//! Everything here runs on the JS thread that created the client (`Shared::owner`); the
//! `RefCell`s are only touched there.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::ffi::{c_int, c_void};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, Waker};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use napi::sys;
use redis::{Cmd, Pipeline, Value};

use super::events::{EventKind, Events};
use super::wire::{self, ReadState, Transport};
use crate::error::{ErrorCode, NotNow, RnError, RnResult};
use crate::options::ClientConfig;
use crate::resp;
use crate::runtime::uv::{self, Uv};

/// First wait before sending again a command the server refused with "not now"; it
/// doubles up to the maximum.
const RETRY_FIRST_DELAY: Duration = Duration::from_millis(10);
const RETRY_MAX_DELAY: Duration = Duration::from_millis(250);
/// Time left for the reply of the last attempt before the deadline.
const RETRY_REPLY_MARGIN: Duration = Duration::from_millis(20);

/// A reply slot: filled by the wire when the replies of one call are all in.
#[derive(Default)]
struct SlotState {
  result: Option<RnResult<Vec<Value>>>,
  waker: Option<Waker>,
}

#[derive(Default)]
struct Slot(Mutex<SlotState>);

impl Slot {
  fn fill(&self, result: RnResult<Vec<Value>>) {
    let waker = {
      let mut s = self.0.lock().unwrap_or_else(|e| e.into_inner());
      if s.result.is_some() {
        return; // already settled (a timeout, say)
      }
      s.result = Some(result);
      s.waker.take()
    };
    if let Some(w) = waker {
      w.wake();
    }
  }

  fn is_filled(&self) -> bool {
    self
      .0
      .lock()
      .unwrap_or_else(|e| e.into_inner())
      .result
      .is_some()
  }
}

/// Waits for a slot to be filled.
struct Reply(Arc<Slot>);

impl Future for Reply {
  type Output = RnResult<Vec<Value>>;
  fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
    let mut s = self.0 .0.lock().unwrap_or_else(|e| e.into_inner());
    match s.result.take() {
      Some(r) => Poll::Ready(r),
      None => {
        s.waker = Some(cx.waker().clone());
        Poll::Pending
      }
    }
  }
}

/// Replies the wire still expects, in order.
struct Pending {
  slot: Option<Arc<Slot>>, // None: the keep-alive PING
  expect: usize,
  got: Vec<Value>,
  deadline: Instant,
}

/// A live connection on the event loop.
struct Wire {
  transport: Transport,
  poll: *mut uv::Handle,
  out: Vec<u8>,
  sent: usize,
  inbuf: Vec<u8>,
  read_at: usize,
  pending: VecDeque<Pending>,
  watching_write: bool,
  generation: u64,
  last_io: Instant,
}

enum State {
  Connected(Box<Wire>),
  Reconnecting { attempt: u32, last_error: String },
  GaveUp { last_error: String },
  Closed,
}

struct Inner {
  state: State,
  generation: u64,
  /// Command deadlines and keep-alive.
  timer: *mut uv::Handle,
  timer_at: Option<Instant>,
  /// Registered for the end-of-tick flush.
  flush_scheduled: bool,
  refreshing: bool,
  /// Connections replaced (after READONLY or a Sentinel switch) that still owe replies
  /// to calls made on them: read until those are answered, then closed.
  draining: Vec<Wire>,
  readonly_streak: u32,
  last_readonly: Option<Instant>,
}

pub struct EventLoop {
  shared: Arc<Shared>,
}

struct Shared {
  config: ClientConfig,
  owner: ThreadId,
  env: sys::napi_env,
  uv: &'static Uv,
  uv_loop: *mut uv::Loop,
  inner: RefCell<Inner>,
  closed: AtomicBool,
  metrics: Arc<super::Metrics>,
  events: Arc<Events>,
  /// For subscriber connections (RESP3 pushes, on tokio).
  sub_client: redis::Client,
  /// The generation of the connection while it is up, 0 while it is not.
  link: AtomicU64,
  /// Handed to uv handles as their data: found again in the callbacks.
  me: Mutex<Weak<Shared>>,
  id: u64,
}

// SAFETY: the raw pointers and `RefCell` are only used on `owner`, the JS thread that
// created the connection; every entry point checks it (`on_owner`).
unsafe impl Send for Shared {}
unsafe impl Sync for Shared {}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// This JS thread's handles that run the flush in the loop's check phase.
struct FlushHandles {
  check: *mut uv::Handle,
  idle: *mut uv::Handle,
  env: sys::napi_env,
}

thread_local! {
  /// Connections of this JS thread with output to flush at the end of the tick.
  static DIRTY: RefCell<Vec<Weak<Shared>>> = const { RefCell::new(Vec::new()) };
  /// The microtask that flushes them.
  static FLUSH: RefCell<Option<(sys::napi_ref, sys::napi_ref)>> = const { RefCell::new(None) };
  /// The async context of this thread's callbacks.
  static ASYNC: RefCell<Option<(sys::napi_ref, sys::napi_async_context)>> = const { RefCell::new(None) };
  /// The check and idle handles of the flush (see `start_flush_handles`).
  static FLUSH_HANDLES: RefCell<Option<FlushHandles>> = const { RefCell::new(None) };
  /// Flush at the end of the JS tick instead (NESTJS_REDIS_NATIVE_FLUSH=tick).
  static FLUSH_AT_TICK: std::cell::Cell<bool> =
    std::cell::Cell::new(std::env::var("NESTJS_REDIS_NATIVE_FLUSH").as_deref() == Ok("tick"));
  /// Connections live on this thread, by id (handles point to them by id).
  static LIVE: RefCell<std::collections::HashMap<u64, Weak<Shared>>> = RefCell::new(std::collections::HashMap::new());
}

/// Whether this process's Node exposes libuv (it always does; a runtime that does not
/// gets the tokio backend instead).
pub fn available() -> bool {
  Uv::get().is_some() && std::env::var("NESTJS_REDIS_NATIVE_IO").as_deref() != Ok("thread")
}

impl EventLoop {
  /// Connects (on tokio, within `connectTimeoutMs`) and hands the socket to this JS
  /// thread's event loop. Must be polled on the JS thread of `env`.
  pub async fn connect(
    env: sys::napi_env,
    config: ClientConfig,
    metrics: Arc<super::Metrics>,
    events: Arc<Events>,
  ) -> RnResult<EventLoop> {
    let uv = Uv::get().ok_or_else(|| RnError::internal("libuv is not available"))?;
    let mut uv_loop = std::ptr::null_mut();
    unsafe { sys::napi_get_uv_event_loop(env, &mut uv_loop) };
    if uv_loop.is_null() {
      return Err(RnError::internal("no event loop"));
    }
    let sub_client = super::standalone::build_client(&config, redis::ProtocolVersion::RESP3)?;
    let transport = open_first(&config).await?;
    let shared = Arc::new(Shared {
      config,
      owner: std::thread::current().id(),
      env,
      uv,
      uv_loop: uv_loop.cast(),
      inner: RefCell::new(Inner {
        state: State::Closed,
        generation: 0,
        timer: std::ptr::null_mut(),
        timer_at: None,
        flush_scheduled: false,
        refreshing: false,
        draining: Vec::new(),
        readonly_streak: 0,
        last_readonly: None,
      }),
      closed: AtomicBool::new(false),
      metrics,
      events,
      sub_client,
      link: AtomicU64::new(0),
      me: Mutex::new(Weak::new()),
      id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
    });
    *shared.me.lock().unwrap_or_else(|e| e.into_inner()) = Arc::downgrade(&shared);
    LIVE.with(|l| l.borrow_mut().insert(shared.id, Arc::downgrade(&shared)));
    shared.init_timer();
    shared.install(transport)?;
    if matches!(
      shared.config.topology,
      crate::options::Topology::Sentinel(_)
    ) {
      let _ = crate::completion::spawn_background(
        &napi::Env::from_raw(env),
        watch_sentinels(Arc::downgrade(&shared)),
      );
    }
    Ok(EventLoop { shared })
  }

  pub async fn exec(&self, cmd: Cmd) -> RnResult<Value> {
    let mut values = self
      .shared
      .call(|out| cmd.write_packed_command(out), 1, &cmd)
      .await?;
    values
      .pop()
      .ok_or_else(|| RnError::internal("a command got no reply"))
  }

  pub async fn exec_pipeline(&self, pipe: Pipeline, count: usize) -> RnResult<Vec<Value>> {
    self.shared.call_pipeline(&pipe, count).await
  }

  pub fn close(&self) {
    if !self.shared.on_owner() {
      self.shared.closed.store(true, Ordering::SeqCst);
      return;
    }
    self.shared.close();
  }

  pub fn is_closed(&self) -> bool {
    self.shared.closed.load(Ordering::SeqCst)
  }

  /// The generation of the connection while it is up (it changes with every new
  /// connection), 0 while it is not.
  pub fn link(&self) -> u64 {
    self.shared.link.load(Ordering::Acquire)
  }

  pub fn reconnect_delay(&self, attempt: u32) -> Duration {
    super::standalone::backoff_delay(
      &self.shared.config.reconnect,
      attempt,
      rand::random::<f64>(),
    )
  }

  /// A connection for pushes (RESP3, on tokio) to the same server, named
  /// `<clientName>:<role>`.
  pub async fn open_subscriber(
    &self,
    push: tokio::sync::mpsc::UnboundedSender<redis::PushInfo>,
    role: &str,
  ) -> RnResult<redis::aio::MultiplexedConnection> {
    if self.is_closed() {
      return Err(RnError::closed());
    }
    let cfg = &self.shared.config;
    let name = cfg.client_name.as_ref().map(|n| format!("{n}:{role}"));
    if matches!(cfg.topology, crate::options::Topology::Sentinel(_)) {
      // the master named now
      let master = super::sentinel::resolve(cfg).await?;
      let client = super::standalone::build_client(&master, redis::ProtocolVersion::RESP3)?;
      return super::standalone::open_with(
        &master,
        &client,
        name.as_deref(),
        Some(push),
        "cannot open a subscriber connection to Redis at",
      )
      .await;
    }
    super::standalone::open_with(
      cfg,
      &self.shared.sub_client,
      name.as_deref(),
      Some(push),
      "cannot open a subscriber connection to Redis at",
    )
    .await
  }
}

impl Drop for EventLoop {
  fn drop(&mut self) {
    self.close();
  }
}

/// The first connection: at once, or with `reconnect.atStartup` retried with the backoff
/// while the server refuses or does not answer (up to `maxAttempts`).
async fn open_first(cfg: &ClientConfig) -> RnResult<Transport> {
  let what = format!("cannot connect to Redis at {}", cfg.address());
  let mut attempt: u32 = 0;
  loop {
    match wire::open(cfg, cfg.client_name.as_deref(), &what).await {
      Err(e)
        if cfg.reconnect.at_startup
          && e.code == ErrorCode::RedisConnection
          && cfg.reconnect.max_attempts.is_none_or(|max| attempt < max) =>
      {
        attempt += 1;
        tokio::time::sleep(super::standalone::backoff_delay(
          &cfg.reconnect,
          attempt,
          rand::random::<f64>(),
        ))
        .await;
      }
      other => return other.map_err(|e| scrub(e, cfg)),
    }
  }
}

impl Shared {
  fn on_owner(&self) -> bool {
    std::thread::current().id() == self.owner
  }

  fn emit(&self, kind: EventKind, mut payload: serde_json::Value) {
    payload["address"] = serde_json::Value::String(self.config.address());
    self.events.emit(kind, payload);
  }

  /// The error of a call made while there is no connection.
  fn unavailable(&self, state: &State) -> RnError {
    match state {
      State::Connected(_) => RnError::internal("connected"),
      State::Reconnecting { attempt, last_error } => {
        let tried = match attempt {
          0 => String::new(),
          1 => "1 attempt failed so far; ".to_string(),
          n => format!("{n} attempts failed so far; "),
        };
        RnError::connection(format!(
          "the connection to Redis at {} was lost and is being re-established ({tried}last error: {last_error})",
          self.config.address()
        ))
      }
      State::GaveUp { last_error } => RnError::connection(format!(
        "the connection to Redis at {} was lost and reconnecting gave up after {} attempts (last error: {last_error})",
        self.config.address(),
        self.config.reconnect.max_attempts.unwrap_or(0)
      )),
      State::Closed => RnError::closed(),
    }
  }

  /// Queues one call (`count` replies) written by `pack`; its replies come to the slot.
  fn enqueue(&self, pack: impl FnOnce(&mut Vec<u8>), count: usize) -> RnResult<Arc<Slot>> {
    if !self.on_owner() {
      return Err(RnError::internal(
        "a client is used from another thread than the one that created it",
      ));
    }
    let mut inner = self.inner.borrow_mut();
    let now = Instant::now();
    let deadline = now + self.config.command_timeout;
    let State::Connected(wire) = &mut inner.state else {
      return Err(self.unavailable(&inner.state));
    };
    let idle = wire.pending.is_empty() && wire.sent >= wire.out.len();
    pack(&mut wire.out);
    let slot = Arc::new(Slot::default());
    wire.pending.push_back(Pending {
      slot: Some(slot.clone()),
      expect: count,
      got: Vec::with_capacity(count.min(64)),
      deadline,
    });
    let generation = wire.generation;
    if idle {
      // nothing else in flight: write now, the shortest path for one awaited call
      if let Err(e) = self.write_out(wire) {
        drop(inner);
        self.lost(generation, RnError::connection(e.to_string()));
        return Ok(slot); // the slot was failed by `lost`
      }
    } else if !inner.flush_scheduled {
      inner.flush_scheduled = true;
      drop(inner);
      self.schedule_flush();
      self.arm_timer(deadline);
      return Ok(slot);
    }
    drop(inner);
    self.arm_timer(deadline);
    Ok(slot)
  }

  /// A call of one command, with "not now" replies sent again until the deadline.
  async fn call(
    &self,
    pack: impl Fn(&mut Vec<u8>),
    count: usize,
    cmd: &Cmd,
  ) -> RnResult<Vec<Value>> {
    let deadline = Instant::now() + self.config.command_timeout;
    let mut delay = RETRY_FIRST_DELAY;
    loop {
      let slot = self
        .enqueue(&pack, count)
        .map_err(|e| labeled(e, cmd, self))?;
      let values = Reply(slot).await.map_err(|e| labeled(e, cmd, self))?;
      let refused = values.iter().find_map(|v| match v {
        Value::ServerError(e) => NotNow::of_reply(e).map(|k| (k, v.clone())),
        _ => None,
      });
      match refused {
        None => {
          // a server error of a single command becomes the command's error
          if count == 1 {
            if let Some(Value::ServerError(e)) = values.first() {
              return Err(labeled(
                RnError::from(redis::RedisError::from(e.clone())),
                cmd,
                self,
              ));
            }
          }
          return Ok(values);
        }
        Some((kind, answer)) => {
          self.not_now(kind);
          self
            .wait_to_retry(&mut delay, deadline, &answer)
            .await
            .map_err(|e| labeled(e, cmd, self))?;
        }
      }
    }
  }

  /// A caller's pipeline: sent again only when the server refused all of it with "not
  /// now" (none ran); otherwise the refused slots keep their errors.
  async fn call_pipeline(&self, pipe: &Pipeline, count: usize) -> RnResult<Vec<Value>> {
    let deadline = Instant::now() + self.config.command_timeout;
    let mut delay = RETRY_FIRST_DELAY;
    loop {
      let slot = self.enqueue(
        |out| {
          for cmd in pipe.cmd_iter() {
            cmd.write_packed_command(out);
          }
        },
        count,
      )?;
      let values = Reply(slot).await?;
      let kinds: Option<Vec<NotNow>> = values
        .iter()
        .map(|v| match v {
          Value::ServerError(e) => NotNow::of_reply(e),
          _ => None,
        })
        .collect();
      match kinds {
        Some(kinds) if !kinds.is_empty() => {
          kinds.iter().for_each(|k| self.not_now(*k));
          self.wait_to_retry(&mut delay, deadline, &values[0]).await?;
        }
        _ => return Ok(values),
      }
    }
  }

  /// Waits before sending again a command the server refused with "not now" (`last`);
  /// fails once `deadline` would pass. While reconnecting it keeps waiting.
  async fn wait_to_retry(
    &self,
    delay: &mut Duration,
    deadline: Instant,
    last: &Value,
  ) -> RnResult<()> {
    loop {
      let remaining = deadline
        .saturating_duration_since(Instant::now())
        .saturating_sub(RETRY_REPLY_MARGIN);
      if remaining.is_zero() {
        return Err(self.not_accepted(last));
      }
      tokio::time::sleep((*delay).min(remaining)).await;
      *delay = (*delay * 2).min(RETRY_MAX_DELAY);
      let inner = self.inner.borrow();
      match &inner.state {
        State::Connected(_) => return Ok(()),
        State::Reconnecting { .. } => continue,
        other => return Err(self.unavailable(other)),
      }
    }
  }

  fn not_accepted(&self, last: &Value) -> RnError {
    let answer = match last {
      Value::ServerError(e) => match e.details() {
        Some(d) => format!("{} {d}", e.code()),
        None => e.code().to_string(),
      },
      other => format!("{other:?}"),
    };
    RnError::connection(format!(
      "Redis at {} did not accept the command within {} ms (commandTimeoutMs); it answered: {answer}",
      self.config.address(),
      self.config.command_timeout.as_millis()
    ))
  }

  /// READONLY: the server is a replica now; open a new connection (to find the master)
  /// and switch to it while this one goes on serving reads.
  fn not_now(&self, kind: NotNow) {
    if kind != NotNow::ReadOnly {
      return;
    }
    let streak = {
      let mut inner = self.inner.borrow_mut();
      if inner.refreshing {
        return;
      }
      inner.refreshing = true;
      let now = Instant::now();
      if inner
        .last_readonly
        .is_none_or(|t| now.duration_since(t) > Duration::from_secs(60))
      {
        inner.readonly_streak = 0;
      }
      inner.last_readonly = Some(now);
      inner.readonly_streak += 1;
      inner.readonly_streak - 1
    };
    let delay =
      super::standalone::backoff_delay(&self.config.reconnect, streak + 1, rand::random::<f64>());
    self.reopen(delay);
  }

  /// Sentinel announced a new master (`+switch-master`): switch to it now, before the
  /// old master is demoted (until then it would still take writes).
  fn master_switched(&self) {
    {
      let mut inner = self.inner.borrow_mut();
      if inner.refreshing || !matches!(inner.state, State::Connected(_)) {
        return;
      }
      inner.refreshing = true;
    }
    self.reopen(Duration::ZERO);
  }

  /// After `delay`, opens a new connection (to the master Sentinel names now, with
  /// Sentinel) and switches to it while this one goes on serving what it was given.
  fn reopen(&self, delay: Duration) {
    let me = self.me();
    let env = napi::Env::from_raw(self.env);
    let _ = crate::completion::spawn_background(&env, async move {
      let Some(shared) = me.upgrade() else { return };
      if !delay.is_zero() {
        tokio::time::sleep(delay).await;
      }
      let what = format!("cannot connect to Redis at {}", shared.config.address());
      if let Ok(transport) =
        wire::open(&shared.config, shared.config.client_name.as_deref(), &what).await
      {
        let connected = matches!(shared.inner.borrow().state, State::Connected(_));
        if connected && !shared.closed.load(Ordering::SeqCst) {
          shared.replace(transport);
          shared.metrics.reconnects.fetch_add(1, Ordering::Relaxed);
        }
      }
      shared.inner.borrow_mut().refreshing = false;
    });
  }

  fn me(&self) -> Weak<Shared> {
    self.me.lock().unwrap_or_else(|e| e.into_inner()).clone()
  }

  /// Writes the wire's output; watches for writability while some is left.
  fn write_out(&self, wire: &mut Wire) -> std::io::Result<()> {
    if wire.sent >= wire.out.len() {
      wire.out.clear();
      wire.sent = 0;
      return Ok(());
    }
    let blocked = wire.transport.write_some(&wire.out, &mut wire.sent)?;
    wire.last_io = Instant::now();
    if wire.sent >= wire.out.len() {
      wire.out.clear();
      wire.sent = 0;
    } else if wire.sent > 64 * 1024 {
      wire.out.drain(..wire.sent);
      wire.sent = 0;
    }
    if blocked != wire.watching_write {
      wire.watching_write = blocked;
      let events = if blocked {
        uv::UV_READABLE | uv::UV_WRITABLE
      } else {
        uv::UV_READABLE
      };
      unsafe { (self.uv.poll_start)(wire.poll, events, on_poll) };
    }
    Ok(())
  }

  /// Flushes this connection's output (end of the JS tick).
  fn flush(&self) {
    let mut inner = self.inner.borrow_mut();
    inner.flush_scheduled = false;
    let State::Connected(wire) = &mut inner.state else {
      return;
    };
    let generation = wire.generation;
    if let Err(e) = self.write_out(wire) {
      drop(inner);
      self.lost(generation, RnError::connection(e.to_string()));
    }
  }

  /// Queues this connection for the flush once the event loop has run the callbacks of
  /// this turn (its check phase, as `setImmediate`): the calls of every request that came
  /// in together go out in one write, and their replies come back in one read.
  fn schedule_flush(&self) {
    let first = DIRTY.with(|d| {
      let mut d = d.borrow_mut();
      d.push(self.me());
      d.len() == 1
    });
    if first && !start_flush_handles(self) {
      if let Err(e) = queue_flush_microtask(self.env) {
        // cannot schedule: flush now rather than leave commands unsent
        let _ = e;
        flush_dirty();
      }
    }
  }

  /// Reads what the server sent and hands the replies to their calls.
  fn on_readable(&self) {
    let mut inner = self.inner.borrow_mut();
    let State::Connected(wire) = &mut inner.state else {
      return;
    };
    let generation = wire.generation;
    let failure = read_replies(wire);
    let next_deadline = next_deadline(wire);
    drop(inner);
    if let Some(e) = failure {
      let e = e.context(&format!(
        "the connection to Redis at {} broke",
        self.config.address()
      ));
      self.lost(generation, e);
    } else if let Some(d) = next_deadline {
      self.arm_timer(d);
    }
  }

  fn on_writable(&self) {
    let mut inner = self.inner.borrow_mut();
    let State::Connected(wire) = &mut inner.state else {
      return;
    };
    let generation = wire.generation;
    if let Err(e) = self.write_out(wire) {
      drop(inner);
      self.lost(generation, RnError::connection(e.to_string()));
    }
  }

  /// An event on a replaced connection that still owes replies: reads them, and closes
  /// it once every call made on it has its reply (or it breaks).
  fn on_draining(&self, handle: *mut uv::Handle, status: c_int, events: c_int) {
    let mut inner = self.inner.borrow_mut();
    let Some(i) = inner.draining.iter().position(|w| w.poll == handle) else {
      return;
    };
    let wire = &mut inner.draining[i];
    let mut failure = (status < 0).then(|| format!("socket error (libuv {status})"));
    if failure.is_none() && events & uv::UV_WRITABLE != 0 {
      failure = self.write_out(wire).err().map(|e| e.to_string());
    }
    if failure.is_none() && events & uv::UV_READABLE != 0 {
      failure = read_replies(wire).map(|e| e.message);
    }
    if failure.is_some() || !owes_replies(wire) {
      let wire = inner.draining.swap_remove(i);
      drop(inner);
      self.retire(wire, replaced(failure));
    } else if let Some(d) = next_deadline(wire) {
      drop(inner);
      self.arm_timer(d);
    }
  }

  fn init_timer(&self) {
    let timer = self.uv.alloc(uv::UV_TIMER);
    unsafe {
      (self.uv.timer_init)(self.uv_loop, timer);
      (self.uv.set_data)(timer, self.id as usize as *mut c_void);
      (self.uv.unref)(timer);
    }
    self.inner.borrow_mut().timer = timer;
  }

  /// Makes sure the timer fires by `at` (a command deadline), or for the keep-alive.
  fn arm_timer(&self, at: Instant) {
    let mut inner = self.inner.borrow_mut();
    if inner.timer.is_null() || inner.timer_at.is_some_and(|t| t <= at) {
      return;
    }
    inner.timer_at = Some(at);
    let ms = at.saturating_duration_since(Instant::now()).as_millis() as u64 + 1;
    unsafe { (self.uv.timer_start)(inner.timer, on_timer, ms, 0) };
  }

  /// Fails the calls on `wire` past their deadline (they keep their place, so the replies
  /// after theirs stay matched) and lowers `next` to the earliest deadline still ahead.
  /// True when the keep-alive PING went unanswered.
  fn expire(&self, wire: &mut Wire, now: Instant, next: &mut Option<Instant>) -> bool {
    let mut keepalive_lost = false;
    for p in wire.pending.iter().filter(|p| is_live(p)) {
      if p.deadline > now {
        *next = Some(next.map_or(p.deadline, |n| n.min(p.deadline)));
        continue;
      }
      match &p.slot {
        Some(slot) => slot.fill(Err(RnError::timeout(format!(
          "Redis at {} did not reply within {} ms (commandTimeoutMs)",
          self.config.address(),
          self.config.command_timeout.as_millis()
        )))),
        None => keepalive_lost = true,
      }
    }
    keepalive_lost
  }

  /// The timer fired: fails the calls past their deadline, pings an idle connection.
  fn on_timer(&self) {
    let now = Instant::now();
    let timeout = self.config.command_timeout;
    let mut keepalive_lost = None;
    let mut next: Option<Instant> = None;
    {
      let mut inner = self.inner.borrow_mut();
      inner.timer_at = None;
      // replaced connections: calls past their deadline time out; done ones close
      let mut done = Vec::new();
      for (i, wire) in inner.draining.iter_mut().enumerate() {
        self.expire(wire, now, &mut next);
        if !owes_replies(wire) {
          done.push(i);
        }
      }
      let done: Vec<Wire> = done
        .into_iter()
        .rev()
        .map(|i| inner.draining.swap_remove(i))
        .collect();
      for wire in done {
        self.retire(wire, replaced(None));
      }
      let ping = self.config.ping_interval;
      if let State::Connected(wire) = &mut inner.state {
        if self.expire(wire, now, &mut next) {
          keepalive_lost = Some(wire.generation);
        }
        if let Some(interval) = ping {
          let idle = wire.pending.is_empty() && now.duration_since(wire.last_io) >= interval;
          if idle && keepalive_lost.is_none() {
            redis::cmd("PING").write_packed_command(&mut wire.out);
            let deadline = now + timeout;
            wire.pending.push_back(Pending {
              slot: None,
              expect: 1,
              got: Vec::new(),
              deadline,
            });
            next = Some(next.map_or(deadline, |n| n.min(deadline)));
            let generation = wire.generation;
            if let Err(e) = self.write_out(wire) {
              drop(inner);
              self.lost(generation, RnError::connection(e.to_string()));
              return;
            }
          } else if wire.pending.is_empty() {
            let at = wire.last_io + interval;
            next = Some(next.map_or(at, |n| n.min(at)));
          }
        }
      }
    }
    if let Some(generation) = keepalive_lost {
      self.lost(
        generation,
        RnError::timeout(format!(
          "the keep-alive PING got no answer within {} ms (commandTimeoutMs)",
          timeout.as_millis()
        )),
      );
      return;
    }
    if let Some(at) = next {
      self.arm_timer(at);
    }
  }

  /// Starts using `transport` as the connection.
  fn install(&self, transport: Transport) -> RnResult<()> {
    let poll = self.uv.alloc(uv::UV_POLL);
    let rc = unsafe { (self.uv.poll_init_socket)(self.uv_loop, poll, transport.raw_socket()) };
    if rc != 0 {
      self.uv.close_and_free(poll, uv::UV_POLL);
      return Err(RnError::connection(format!(
        "the event loop refused the socket (libuv error {rc})"
      )));
    }
    unsafe {
      (self.uv.set_data)(poll, self.id as usize as *mut c_void);
      (self.uv.poll_start)(poll, uv::UV_READABLE, on_poll);
      (self.uv.unref)(poll);
    }
    let mut inner = self.inner.borrow_mut();
    inner.generation += 1;
    let generation = inner.generation;
    self.link.store(generation, Ordering::Release);
    inner.state = State::Connected(Box::new(Wire {
      transport,
      poll,
      out: Vec::with_capacity(4096),
      sent: 0,
      inbuf: Vec::with_capacity(16 * 1024),
      read_at: 0,
      pending: VecDeque::new(),
      watching_write: false,
      generation,
      last_io: Instant::now(),
    }));
    drop(inner);
    if let Some(interval) = self.config.ping_interval {
      self.arm_timer(Instant::now() + interval);
    }
    Ok(())
  }

  /// Switches to a new connection (after READONLY or a Sentinel switch). Calls made on
  /// the old one still get their replies from it (it is read until they have them, or
  /// until their deadlines); new calls go to the new one.
  fn replace(&self, transport: Transport) {
    self.link.store(0, Ordering::Release);
    let old = {
      let mut inner = self.inner.borrow_mut();
      std::mem::replace(&mut inner.state, State::Closed)
    };
    if let State::Connected(wire) = old {
      let mut wire = *wire;
      // what was queued on it this tick is sent there: its calls wait for its replies
      let written = self.write_out(&mut wire);
      if written.is_ok() && owes_replies(&wire) {
        let deadline = next_deadline(&wire);
        self.inner.borrow_mut().draining.push(wire);
        if let Some(d) = deadline {
          self.arm_timer(d);
        }
      } else {
        self.retire(wire, replaced(written.err().map(|e| e.to_string())));
      }
    }
    if let Err(e) = self.install(transport) {
      self.inner.borrow_mut().state = State::Reconnecting {
        attempt: 0,
        last_error: e.message.clone(),
      };
      self.start_reconnect();
    }
  }

  /// Stops watching `wire`'s socket, closes it, and fails what it still expected.
  fn retire(&self, wire: Wire, why: RnError) {
    self.uv.close_and_free(wire.poll, uv::UV_POLL);
    for p in wire.pending {
      if let Some(slot) = p.slot {
        slot.fill(Err(why.clone()));
      }
    }
    drop(wire.transport);
  }

  /// Connection `generation` is lost: fail its calls, reconnect in the background.
  fn lost(&self, generation: u64, why: RnError) {
    let old = {
      let mut inner = self.inner.borrow_mut();
      match &inner.state {
        State::Connected(w) if w.generation == generation => {}
        _ => return,
      }
      let closed = self.closed.load(Ordering::SeqCst);
      let next = if closed {
        State::Closed
      } else {
        State::Reconnecting {
          attempt: 0,
          last_error: why.message.clone(),
        }
      };
      self.link.store(0, Ordering::Release);
      std::mem::replace(&mut inner.state, next)
    };
    let why = scrub(why, &self.config);
    if let State::Connected(wire) = old {
      let code_err =
        if why.code == ErrorCode::RedisTimeout || why.code == ErrorCode::RedisConnection {
          why.clone()
        } else {
          RnError::connection(why.message.clone())
        };
      self.retire(*wire, code_err);
    }
    if self.closed.load(Ordering::SeqCst) {
      return;
    }
    self.emit(
      EventKind::Error,
      serde_json::json!({ "error": { "code": why.code.as_str(), "message": why.message } }),
    );
    self.start_reconnect();
  }

  fn start_reconnect(&self) {
    let me = self.me();
    let env = napi::Env::from_raw(self.env);
    let _ = crate::completion::spawn_background(&env, reconnect(me));
  }

  fn close(&self) {
    if self.closed.swap(true, Ordering::SeqCst) {
      return;
    }
    self.link.store(0, Ordering::Release);
    let (old, timer, draining) = {
      let mut inner = self.inner.borrow_mut();
      let timer = std::mem::replace(&mut inner.timer, std::ptr::null_mut());
      let draining = std::mem::take(&mut inner.draining);
      (
        std::mem::replace(&mut inner.state, State::Closed),
        timer,
        draining,
      )
    };
    for wire in draining {
      self.retire(wire, RnError::closed());
    }
    if let State::Connected(wire) = old {
      let mut wire = *wire;
      // what is written is sent: calls already made get their replies if they come
      // before the socket goes; the rest settle with ERR_CLIENT_CLOSED
      let _ = wire.transport.write_some(&wire.out, &mut wire.sent);
      self.retire(wire, RnError::closed());
    }
    if !timer.is_null() {
      unsafe { (self.uv.timer_stop)(timer) };
      self.uv.close_and_free(timer, uv::UV_TIMER);
    }
    let last = LIVE.with(|l| {
      let mut l = l.borrow_mut();
      l.remove(&self.id);
      l.is_empty()
    });
    if last {
      flush_dirty(); // nothing may stay queued on a handle about to close
      close_flush_handles(self.uv);
    }
    self.emit(EventKind::End, serde_json::json!({ "reason": "closed" }));
    self.events.clear();
  }
}

/// With Sentinel: listens to the sentinels' `+switch-master` announcements (on one
/// sentinel at a time, the next one when it goes away) and switches to the new master
/// at once, until the client closes.
async fn watch_sentinels(weak: Weak<Shared>) {
  let mut attempt = 0u32;
  loop {
    let (cfg, master_name) = {
      let Some(shared) = weak.upgrade() else { return };
      if shared.closed.load(Ordering::SeqCst) {
        return;
      }
      let crate::options::Topology::Sentinel(s) = &shared.config.topology else {
        return;
      };
      (shared.config.clone(), s.master_name.clone())
    };
    let (push, mut pushes) = tokio::sync::mpsc::unbounded_channel();
    match super::sentinel::subscribe_switches(&cfg, attempt as usize, push).await {
      Ok(conn) => {
        attempt = 0;
        loop {
          let next = tokio::time::timeout(Duration::from_secs(1), pushes.recv()).await;
          let Some(shared) = weak.upgrade() else { return };
          if shared.closed.load(Ordering::SeqCst) {
            return;
          }
          match next {
            Err(_) => continue, // no news: check that the client is still open
            Ok(None) => break,
            Ok(Some(p)) if p.kind == redis::PushKind::Disconnection => break,
            Ok(Some(p)) => {
              if super::sentinel::is_switch_of(&p, &master_name) {
                shared.master_switched();
              }
            }
          }
        }
        drop(conn);
      }
      Err(_) => {
        attempt += 1;
        let delay =
          super::standalone::backoff_delay(&cfg.reconnect, attempt, rand::random::<f64>());
        tokio::time::sleep(delay).await;
      }
    }
  }
}

/// Reconnects with the client's backoff until it works, gives up, or the client closes.
async fn reconnect(weak: Weak<Shared>) {
  let mut attempt: u32 = 0;
  loop {
    attempt += 1;
    let Some(shared) = weak.upgrade() else { return };
    if shared.closed.load(Ordering::SeqCst) {
      return;
    }
    let cfg = &shared.config;
    let last_error = match &shared.inner.borrow().state {
      State::Reconnecting { last_error, .. } => last_error.clone(),
      _ => return,
    };
    if let Some(max) = cfg.reconnect.max_attempts {
      if attempt > max {
        shared.inner.borrow_mut().state = State::GaveUp {
          last_error: last_error.clone(),
        };
        shared.emit(
          EventKind::End,
          serde_json::json!({
            "reason": "gave-up",
            "attempts": max,
            "error": { "code": ErrorCode::RedisConnection.as_str(), "message": last_error },
          }),
        );
        return;
      }
    }
    let delay = super::standalone::backoff_delay(&cfg.reconnect, attempt, rand::random::<f64>());
    shared.emit(
      EventKind::Reconnecting,
      serde_json::json!({
        "attempt": attempt,
        "delayMs": delay.as_millis() as u64,
        "error": { "code": ErrorCode::RedisConnection.as_str(), "message": last_error },
      }),
    );
    drop(shared);
    tokio::time::sleep(delay).await;
    let Some(shared) = weak.upgrade() else { return };
    if shared.closed.load(Ordering::SeqCst) {
      return;
    }
    let cfg = &shared.config;
    let what = format!("cannot connect to Redis at {}", cfg.address());
    match wire::open(cfg, cfg.client_name.as_deref(), &what).await {
      Ok(transport) => {
        if shared.closed.load(Ordering::SeqCst) {
          return;
        }
        if let Err(e) = shared.install(transport) {
          if let State::Reconnecting { last_error, .. } = &mut shared.inner.borrow_mut().state {
            *last_error = e.message;
          }
          continue;
        }
        shared.metrics.reconnects.fetch_add(1, Ordering::Relaxed);
        shared.emit(EventKind::Ready, serde_json::json!({ "attempts": attempt }));
        return;
      }
      Err(e) => {
        let e = scrub(e, cfg);
        if let State::Reconnecting {
          attempt: a,
          last_error,
        } = &mut shared.inner.borrow_mut().state
        {
          *a = attempt;
          *last_error = e.message;
        }
      }
    }
  }
}

/// `err` named after the command (`GET user:1: ...`), as the tokio backend names it.
fn labeled(err: RnError, cmd: &Cmd, shared: &Shared) -> RnError {
  super::standalone::labeled(err, cmd, &shared.config.key_prefix)
}

/// Removes the password from a message, should a lower layer ever echo it.
fn scrub(mut err: RnError, cfg: &ClientConfig) -> RnError {
  if let Some(p) = &cfg.password {
    if !p.is_empty() && err.message.contains(p.as_str()) {
      err.message = err.message.replace(p.as_str(), "***");
    }
  }
  err
}

/// The connection a uv handle belongs to.
/// Reads what `wire`'s server sent and hands every complete reply to its call; returns
/// what ended the connection, if something did.
fn read_replies(wire: &mut Wire) -> Option<RnError> {
  let outcome = wire.transport.read_some(&mut wire.inbuf);
  wire.last_io = Instant::now();
  let mut failure = match outcome {
    Ok(ReadState::Open) => None,
    Ok(ReadState::Closed) => Some(RnError::connection("the server closed the connection")),
    Err(e) => Some(RnError::connection(e.to_string())),
  };
  // hand out every complete reply, even when the socket just closed behind them
  loop {
    match resp::parse(&wire.inbuf[wire.read_at..]) {
      Ok(Some((value, used))) => {
        wire.read_at += used;
        let Some(front) = wire.pending.front_mut() else {
          failure = Some(RnError::connection(
            "the server sent a reply nobody asked for",
          ));
          break;
        };
        front.got.push(value);
        if front.got.len() >= front.expect {
          let done = wire.pending.pop_front();
          if let Some(Pending {
            slot: Some(slot),
            got,
            ..
          }) = done
          {
            slot.fill(Ok(got));
          }
        }
      }
      Ok(None) => break,
      Err(e) => {
        failure = Some(e);
        break;
      }
    }
  }
  if wire.read_at == wire.inbuf.len() {
    wire.inbuf.clear();
    wire.read_at = 0;
  } else if wire.read_at > 64 * 1024 {
    wire.inbuf.drain(..wire.read_at);
    wire.read_at = 0;
  }
  failure
}

/// The error of calls still waiting on a replaced connection when it closes.
fn replaced(why: Option<String>) -> RnError {
  match why {
    Some(why) => RnError::connection(format!(
      "the connection being replaced broke before its calls were answered: {why}"
    )),
    None => RnError::connection("the connection was replaced"),
  }
}

/// Whether a call made on `p` still waits for its reply (the keep-alive PING counts).
fn is_live(p: &Pending) -> bool {
  p.slot.as_ref().is_none_or(|s| !s.is_filled())
}

/// Whether a caller still waits for a reply on `wire` (the keep-alive PING does not count).
fn owes_replies(wire: &Wire) -> bool {
  wire
    .pending
    .iter()
    .any(|p| p.slot.as_ref().is_some_and(|s| !s.is_filled()))
}

/// The deadline of the first call on `wire` still waiting for its reply.
fn next_deadline(wire: &Wire) -> Option<Instant> {
  wire.pending.iter().find(|p| is_live(p)).map(|p| p.deadline)
}

fn shared_of(handle: *mut uv::Handle) -> Option<Arc<Shared>> {
  let uv = Uv::get()?;
  let id = unsafe { (uv.get_data)(handle) } as usize as u64;
  LIVE.with(|l| l.borrow().get(&id).and_then(Weak::upgrade))
}

unsafe extern "C" fn on_poll(handle: *mut uv::Handle, status: c_int, events: c_int) {
  let Some(shared) = shared_of(handle) else {
    return;
  };
  in_callback(shared.env, || {
    let current = matches!(&shared.inner.borrow().state, State::Connected(w) if w.poll == handle);
    if !current {
      shared.on_draining(handle, status, events);
      return;
    }
    if status < 0 {
      let generation = match &shared.inner.borrow().state {
        State::Connected(w) if w.poll == handle => Some(w.generation),
        _ => None,
      };
      if let Some(g) = generation {
        shared.lost(
          g,
          RnError::connection(format!("socket error (libuv {status})")),
        );
      }
      return;
    }
    if events & uv::UV_WRITABLE != 0 {
      shared.on_writable();
    }
    if events & uv::UV_READABLE != 0 {
      shared.on_readable();
    }
  });
}

unsafe extern "C" fn on_timer(handle: *mut uv::Handle) {
  let Some(shared) = shared_of(handle) else {
    return;
  };
  in_callback(shared.env, || shared.on_timer());
}

/// Runs `f` (which may settle Promises) as a callback from the event loop: in a handle
/// scope and a callback scope, so the microtasks it queues run when it returns; then
/// polls the tasks it woke.
fn in_callback(env: sys::napi_env, f: impl FnOnce()) {
  unsafe {
    let mut handles = std::ptr::null_mut();
    sys::napi_open_handle_scope(env, &mut handles);
    let scope = open_callback_scope(env);
    // the calls `f` completes are polled (and settled) before this callback returns
    crate::completion::with_local_wakes(f);
    if let Some(scope) = scope {
      sys::napi_close_callback_scope(env, scope);
    }
    sys::napi_close_handle_scope(env, handles);
  }
}

unsafe fn open_callback_scope(env: sys::napi_env) -> Option<sys::napi_callback_scope> {
  let (resource, context) = ASYNC.with(|a| {
    let mut a = a.borrow_mut();
    if a.is_none() {
      let mut object = std::ptr::null_mut();
      let mut name = std::ptr::null_mut();
      let mut context = std::ptr::null_mut();
      let mut reference = std::ptr::null_mut();
      unsafe {
        sys::napi_create_object(env, &mut object);
        sys::napi_create_string_utf8(env, c"nestjs-redis-native".as_ptr(), -1, &mut name);
        if sys::napi_async_init(env, object, name, &mut context) != sys::Status::napi_ok {
          return (std::ptr::null_mut(), std::ptr::null_mut());
        }
        sys::napi_create_reference(env, object, 1, &mut reference);
      }
      *a = Some((reference, context));
    }
    match *a {
      Some((r, c)) => (r, c),
      None => (std::ptr::null_mut(), std::ptr::null_mut()),
    }
  });
  if context.is_null() {
    return None;
  }
  let mut object = std::ptr::null_mut();
  unsafe { sys::napi_get_reference_value(env, resource, &mut object) };
  let mut scope = std::ptr::null_mut();
  let status = unsafe { sys::napi_open_callback_scope(env, object, context, &mut scope) };
  (status == sys::Status::napi_ok).then_some(scope)
}

/// Starts this thread's check handle (created on first use), which flushes the connections
/// with output, and its idle handle, which keeps the loop from waiting for I/O before it.
/// False when the handles cannot be used (the flush then runs at the end of the tick).
fn start_flush_handles(shared: &Shared) -> bool {
  if FLUSH_AT_TICK.with(|t| t.get()) {
    return false;
  }
  FLUSH_HANDLES.with(|h| {
    let mut h = h.borrow_mut();
    if h.is_none() {
      let uv = shared.uv;
      let check = uv.alloc(uv::UV_CHECK);
      let idle = uv.alloc(uv::UV_IDLE);
      let ok = unsafe {
        (uv.check_init)(shared.uv_loop, check) == 0 && (uv.idle_init)(shared.uv_loop, idle) == 0
      };
      if !ok {
        // (never seen: libuv's init of these cannot fail) not closable, so left as is;
        // this thread flushes at the end of each tick from now on
        FLUSH_AT_TICK.with(|t| t.set(true));
        return false;
      }
      unsafe {
        (uv.unref)(check);
        (uv.unref)(idle);
      }
      *h = Some(FlushHandles {
        check,
        idle,
        env: shared.env,
      });
    }
    let Some(handles) = h.as_ref() else {
      return false;
    };
    unsafe {
      (shared.uv.check_start)(handles.check, on_check) == 0
        && (shared.uv.idle_start)(handles.idle, on_idle) == 0
    }
  })
}

/// Closes this thread's flush handles (its last connection closed).
fn close_flush_handles(uv: &Uv) {
  if let Some(handles) = FLUSH_HANDLES.with(|h| h.borrow_mut().take()) {
    uv.close_and_free(handles.check, uv::UV_CHECK);
    uv.close_and_free(handles.idle, uv::UV_IDLE);
  }
}

unsafe extern "C" fn on_idle(_handle: *mut uv::Handle) {}

unsafe extern "C" fn on_check(_handle: *mut uv::Handle) {
  let Some(uv) = Uv::get() else { return };
  let Some((check, idle, env)) =
    FLUSH_HANDLES.with(|h| h.borrow().as_ref().map(|h| (h.check, h.idle, h.env)))
  else {
    return;
  };
  unsafe {
    (uv.check_stop)(check);
    (uv.idle_stop)(idle);
  }
  in_callback(env, flush_dirty);
}

/// Asks JS to run `flush_callback` at the end of the current tick.
fn queue_flush_microtask(env: sys::napi_env) -> napi::Result<()> {
  FLUSH.with(|f| unsafe {
    let mut f = f.borrow_mut();
    if f.is_none() {
      let mut global = std::ptr::null_mut();
      sys::napi_get_global(env, &mut global);
      let mut qm = std::ptr::null_mut();
      napi::check_status!(sys::napi_get_named_property(
        env,
        global,
        c"queueMicrotask".as_ptr(),
        &mut qm
      ))?;
      let mut qm_ref = std::ptr::null_mut();
      napi::check_status!(sys::napi_create_reference(env, qm, 1, &mut qm_ref))?;
      let mut func = std::ptr::null_mut();
      napi::check_status!(sys::napi_create_function(
        env,
        c"nestjsRedisNativeFlush".as_ptr(),
        -1,
        Some(flush_callback),
        std::ptr::null_mut(),
        &mut func
      ))?;
      let mut func_ref = std::ptr::null_mut();
      napi::check_status!(sys::napi_create_reference(env, func, 1, &mut func_ref))?;
      *f = Some((qm_ref, func_ref));
    }
    let Some((qm_ref, func_ref)) = *f else {
      return Err(napi::Error::from_reason("no queueMicrotask"));
    };
    let mut qm = std::ptr::null_mut();
    let mut func = std::ptr::null_mut();
    let mut global = std::ptr::null_mut();
    napi::check_status!(sys::napi_get_reference_value(env, qm_ref, &mut qm))?;
    napi::check_status!(sys::napi_get_reference_value(env, func_ref, &mut func))?;
    napi::check_status!(sys::napi_get_global(env, &mut global))?;
    let argv = [func];
    let mut out = std::ptr::null_mut();
    napi::check_status!(sys::napi_call_function(
      env,
      global,
      qm,
      1,
      argv.as_ptr(),
      &mut out
    ))?;
    Ok(())
  })
}

unsafe extern "C" fn flush_callback(
  _env: sys::napi_env,
  _info: sys::napi_callback_info,
) -> sys::napi_value {
  flush_dirty();
  std::ptr::null_mut()
}

fn flush_dirty() {
  let dirty = DIRTY.with(|d| std::mem::take(&mut *d.borrow_mut()));
  for weak in dirty {
    if let Some(shared) = weak.upgrade() {
      shared.flush();
    }
  }
}
