//! One Redis server over one multiplexed connection, re-established in the background
//! after it is lost.
//!
//! While the connection is down, commands fail fast with `ERR_REDIS_CONNECTION` (they do
//! not queue): a request handler learns at once that Redis is unavailable and every
//! promise settles. Reconnect attempts back off exponentially with jitter, so a fleet of
//! app instances that lost Redis together does not reconnect in lockstep.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, Instant};

use futures_util::stream::FuturesUnordered;
use futures_util::StreamExt;
use redis::aio::MultiplexedConnection;
use redis::{
  AsyncConnectionConfig, Cmd, ConnectionAddr, ConnectionInfo, IntoConnectionInfo, Pipeline, Value,
};
use tokio::sync::{mpsc, oneshot, Notify};

use crate::error::{is_fatal_for_connection, ErrorCode, NotNow, RnError, RnResult};
use crate::options::{ClientConfig, ReconnectConfig};

use super::events::{EventKind, Events};

enum State {
  Connected {
    conn: MultiplexedConnection,
    generation: u64,
  },
  Reconnecting {
    attempt: u32,
    last_error: String,
  },
  GaveUp {
    last_error: String,
  },
  Closed,
}

struct Shared {
  config: ClientConfig,
  client: redis::Client,
  sub_client: redis::Client,
  state: RwLock<State>,
  generation: AtomicU64,
  closed: AtomicBool,
  /// Wakes the background tasks when the client closes.
  shutdown: Notify,
  metrics: Arc<super::Metrics>,
  events: Arc<Events>,
  /// READONLY answers in a row (each one reconnects, with a growing delay), and when the
  /// last one came (ms since `born`).
  readonly_streak: AtomicU32,
  last_readonly_ms: AtomicU64,
  born: Instant,
  /// A new connection is being opened to replace a live one (after READONLY).
  refreshing: AtomicBool,
}

pub struct Standalone {
  shared: Arc<Shared>,
  /// Commands for the writer task, which sends whatever has queued up as one pipeline.
  outbox: mpsc::UnboundedSender<Job>,
}

/// Work waiting for the writer: one command, or a caller's own pipeline.
enum Job {
  One {
    cmd: Cmd,
    reply: oneshot::Sender<RnResult<Value>>,
  },
  Pipeline {
    pipe: Pipeline,
    count: usize,
    reply: oneshot::Sender<RnResult<Vec<Value>>>,
  },
}

impl Standalone {
  pub async fn connect(
    config: ClientConfig,
    metrics: Arc<super::Metrics>,
    events: Arc<Events>,
  ) -> RnResult<Standalone> {
    let client = build_client(&config, redis::ProtocolVersion::RESP2)?;
    // pub/sub messages come as RESP3 pushes on a connection that still takes commands
    let sub_client = build_client(&config, redis::ProtocolVersion::RESP3)?;
    let shared = Arc::new(Shared {
      config,
      client,
      sub_client,
      state: RwLock::new(State::Closed),
      generation: AtomicU64::new(0),
      closed: AtomicBool::new(false),
      shutdown: Notify::new(),
      metrics,
      events,
      readonly_streak: AtomicU32::new(0),
      last_readonly_ms: AtomicU64::new(0),
      born: Instant::now(),
      refreshing: AtomicBool::new(false),
    });
    let conn = open_first(&shared).await?;
    *shared.state.write().unwrap_or_else(|e| e.into_inner()) = State::Connected {
      conn,
      generation: shared.generation.load(Ordering::SeqCst),
    };
    if let Some(interval) = shared.config.ping_interval {
      tokio::spawn(keep_alive(Arc::downgrade(&shared), interval));
    }
    let (outbox, jobs) = mpsc::unbounded_channel();
    tokio::spawn(writer(Arc::downgrade(&shared), jobs));
    Ok(Standalone { shared, outbox })
  }

  /// Sends one command. Commands issued together (in one JS tick, say) are written
  /// together, as one pipeline: one hand-off to the connection and one timer per batch
  /// instead of per command. Each still gets its own reply or error, and commands reach
  /// the server in the order they were issued.
  pub async fn exec(&self, cmd: Cmd) -> RnResult<Value> {
    // Fail fast (closed, or reconnecting) before queueing anything, naming the command as
    // every other error of a single command does.
    if let Err(e) = self.shared.current() {
      return Err(labeled(e, &cmd, &self.shared.config.key_prefix));
    }
    let (reply, answer) = oneshot::channel();
    self
      .outbox
      .send(Job::One { cmd, reply })
      .map_err(|_| RnError::closed())?;
    answer.await.unwrap_or_else(|_| Err(RnError::closed()))
  }

  /// Sends a caller's pipeline in one round trip, in order with the other commands.
  pub async fn exec_pipeline(&self, pipe: Pipeline, count: usize) -> RnResult<Vec<Value>> {
    self.shared.current()?;
    let (reply, answer) = oneshot::channel();
    self
      .outbox
      .send(Job::Pipeline { pipe, count, reply })
      .map_err(|_| RnError::closed())?;
    answer.await.unwrap_or_else(|_| Err(RnError::closed()))
  }

  pub fn close(&self) {
    if self.shared.closed.swap(true, Ordering::SeqCst) {
      return;
    }
    *self.shared.state.write().unwrap_or_else(|e| e.into_inner()) = State::Closed;
    self.shared.shutdown.notify_waiters();
    self
      .shared
      .emit(EventKind::End, serde_json::json!({ "reason": "closed" }));
    self.shared.events.clear();
  }

  pub fn is_closed(&self) -> bool {
    self.shared.closed.load(Ordering::SeqCst)
  }

  /// The generation of the connection while it is up, 0 while it is not.
  pub fn link(&self) -> u64 {
    match &*self.shared.state.read().unwrap_or_else(|e| e.into_inner()) {
      State::Connected { generation, .. } => *generation,
      _ => 0,
    }
  }

  /// A new dedicated subscriber connection (RESP3: messages arrive as pushes on `push`),
  /// named `<clientName>:sub`, within the connect timeout.
  pub async fn open_subscriber(
    &self,
    push: mpsc::UnboundedSender<redis::PushInfo>,
    role: &str,
  ) -> RnResult<MultiplexedConnection> {
    if self.is_closed() {
      return Err(RnError::closed());
    }
    let name = self
      .shared
      .config
      .client_name
      .as_ref()
      .map(|n| format!("{n}:{role}"));
    open_resolved(
      &self.shared.config,
      &self.shared.sub_client,
      name.as_deref(),
      Some(push),
      "cannot open a subscriber connection to Redis at",
    )
    .await
  }

  /// The delay before reconnect attempt `attempt` (1-based), with jitter.
  pub fn reconnect_delay(&self, attempt: u32) -> Duration {
    backoff_delay(
      &self.shared.config.reconnect,
      attempt,
      rand::random::<f64>(),
    )
  }
}

impl Drop for Standalone {
  fn drop(&mut self) {
    self.close();
  }
}

impl Shared {
  fn current(&self) -> RnResult<(MultiplexedConnection, u64)> {
    let state = self.state.read().unwrap_or_else(|e| e.into_inner());
    match &*state {
      State::Connected { conn, generation } => Ok((conn.clone(), *generation)),
      State::Reconnecting { attempt, last_error } => {
        let tried = match attempt {
          0 => String::new(),
          1 => "1 attempt failed so far; ".to_string(),
          n => format!("{n} attempts failed so far; "),
        };
        Err(RnError::connection(format!(
          "the connection to Redis at {} was lost and is being re-established ({tried}last error: {last_error})",
          self.config.address()
        )))
      }
      State::GaveUp { last_error } => Err(RnError::connection(format!(
        "the connection to Redis at {} was lost and reconnecting gave up after {} attempts (last error: {last_error})",
        self.config.address(),
        self.config.reconnect.max_attempts.unwrap_or(0)
      ))),
      State::Closed => Err(RnError::closed()),
    }
  }

  fn timeout_error(&self, timeout: Duration) -> RnError {
    RnError::timeout(format!(
      "Redis at {} did not reply within {} ms (commandTimeoutMs)",
      self.config.address(),
      timeout.as_millis()
    ))
  }

  /// The server answered "not now". READONLY means it is a replica now (a failover, or a
  /// DNS name that moved to the new master): open a new connection to find the master
  /// and switch to it, while the current one goes on serving reads. When it happens again
  /// within a minute, each new attempt waits longer (the reconnect backoff).
  fn not_now(self: &Arc<Self>, generation: u64, kind: NotNow) {
    if kind != NotNow::ReadOnly || self.refreshing.swap(true, Ordering::SeqCst) {
      return;
    }
    let now = self.born.elapsed().as_millis() as u64;
    let last = self.last_readonly_ms.swap(now, Ordering::Relaxed);
    if now.saturating_sub(last) > 60_000 {
      self.readonly_streak.store(0, Ordering::Relaxed);
    }
    let streak = self.readonly_streak.fetch_add(1, Ordering::Relaxed);
    tokio::spawn(refresh(Arc::downgrade(self), generation, streak));
  }

  /// Tells the client's listeners; `payload` gets the server's `address`.
  fn emit(&self, kind: EventKind, mut payload: serde_json::Value) {
    payload["address"] = serde_json::Value::String(self.config.address());
    self.events.emit(kind, payload);
  }

  /// The error of a command the server kept refusing with "not now" (`last`) until the
  /// command timeout: a connection error (the server is not serving), quoting its answer.
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

  /// Waits before sending again a command the server refused with "not now" (`last`),
  /// until the connection is usable; fails once `deadline` would pass.
  async fn wait_to_retry(
    &self,
    delay: &mut Duration,
    deadline: Instant,
    last: &Value,
  ) -> RnResult<(MultiplexedConnection, u64)> {
    loop {
      // the last attempt keeps a margin for its reply before the deadline
      let remaining = deadline
        .saturating_duration_since(Instant::now())
        .saturating_sub(RETRY_REPLY_MARGIN);
      if remaining.is_zero() {
        return Err(self.not_accepted(last));
      }
      tokio::time::sleep((*delay).min(remaining)).await;
      *delay = (*delay * 2).min(RETRY_MAX_DELAY);
      let state = self.state.read().unwrap_or_else(|e| e.into_inner());
      match &*state {
        State::Connected { conn, generation } => return Ok((conn.clone(), *generation)),
        State::Reconnecting { .. } => continue,
        State::GaveUp { .. } | State::Closed => {
          drop(state);
          return self.current();
        }
      }
    }
  }

  /// Maps a failed command's error; a broken connection starts a reconnect.
  fn failed(self: &Arc<Self>, generation: u64, err: redis::RedisError) -> RnError {
    let fatal = is_fatal_for_connection(&err);
    let mut mapped = scrub(RnError::from(err), &self.config);
    if fatal {
      mapped = mapped.context(&format!(
        "the connection to Redis at {} broke",
        self.config.address()
      ));
      lost(self, generation, &mapped);
      if self.closed.load(Ordering::SeqCst) {
        return RnError::closed();
      }
      if mapped.code != ErrorCode::RedisConnection && mapped.code != ErrorCode::RedisTimeout {
        return RnError::connection(mapped.message);
      }
    }
    mapped
  }
}

/// Most commands the writer puts in one pipeline.
const MAX_BATCH: usize = 512;

/// Takes the work queued so far and sends it: runs of single commands as one pipeline
/// each, callers' pipelines as they are, in the order they were queued, without waiting
/// for the replies of earlier sends (many can be in flight). All of it runs in this one
/// task, so sends start in queue order.
async fn writer(weak: Weak<Shared>, mut jobs: mpsc::UnboundedReceiver<Job>) {
  let mut in_flight = FuturesUnordered::new();
  loop {
    tokio::select! {
      biased;
      Some(()) = in_flight.next(), if !in_flight.is_empty() => {}
      job = jobs.recv() => {
        let Some(first) = job else { break };
        let mut queued = vec![first];
        while queued.len() < MAX_BATCH {
          match jobs.try_recv() {
            Ok(job) => queued.push(job),
            Err(_) => break,
          }
        }
        let Some(shared) = weak.upgrade() else { break };
        match shared.current() {
          Err(e) => queued.into_iter().for_each(|job| job.fail(e.clone())),
          Ok((conn, generation)) => {
            for send in segments(queued) {
              in_flight.push(send.run(shared.clone(), conn.clone(), generation));
            }
          }
        }
      }
    }
  }
  while in_flight.next().await.is_some() {}
}

impl Job {
  fn fail(self, err: RnError) {
    match self {
      Job::One { reply, .. } => {
        let _ = reply.send(Err(err));
      }
      Job::Pipeline { reply, .. } => {
        let _ = reply.send(Err(err));
      }
    }
  }
}

/// One write to the connection.
enum Write {
  Commands(Pipeline, Vec<oneshot::Sender<RnResult<Value>>>),
  Pipeline(Pipeline, usize, oneshot::Sender<RnResult<Vec<Value>>>),
}

/// Groups queued jobs into writes, keeping their order.
fn segments(jobs: Vec<Job>) -> Vec<Write> {
  let mut out = Vec::new();
  let mut run: Option<(Pipeline, Vec<oneshot::Sender<RnResult<Value>>>)> = None;
  for job in jobs {
    match job {
      Job::One { cmd, reply } => {
        let (pipe, replies) = run.get_or_insert_with(|| (redis::pipe(), Vec::new()));
        pipe.add_command(cmd);
        replies.push(reply);
      }
      Job::Pipeline { pipe, count, reply } => {
        if let Some((p, r)) = run.take() {
          out.push(Write::Commands(p, r));
        }
        out.push(Write::Pipeline(pipe, count, reply));
      }
    }
  }
  if let Some((p, r)) = run {
    out.push(Write::Commands(p, r));
  }
  out
}

impl Write {
  async fn run(self, shared: Arc<Shared>, conn: MultiplexedConnection, generation: u64) {
    let deadline = Instant::now() + shared.config.command_timeout;
    match self {
      Write::Commands(pipe, replies) => {
        let count = replies.len();
        let prefix = shared.config.key_prefix.as_str();
        match send(&shared, conn, generation, &pipe, count, deadline).await {
          Err(err) => {
            for (reply, cmd) in replies.into_iter().zip(pipe.cmd_iter()) {
              let _ = reply.send(Err(labeled(err.clone(), cmd, prefix)));
            }
          }
          Ok(values) => {
            let mut again = Vec::new();
            for ((reply, value), cmd) in replies.into_iter().zip(values).zip(pipe.cmd_iter()) {
              match not_now(&value) {
                Some(kind) => {
                  shared.not_now(generation, kind);
                  again.push(Retry {
                    cmd: cmd.clone(),
                    reply,
                    last: value,
                  });
                }
                None => {
                  let _ = reply.send(answer(value, cmd, prefix));
                }
              }
            }
            if !again.is_empty() {
              retry_later(shared, again, deadline).await;
            }
          }
        }
      }
      Write::Pipeline(pipe, count, reply) => {
        let outcome = send_pipeline(&shared, conn, generation, &pipe, count, deadline).await;
        let _ = reply.send(outcome);
      }
    }
  }
}

/// Writes `pipe` and reads its `count` replies, within `deadline`.
async fn send(
  shared: &Arc<Shared>,
  mut conn: MultiplexedConnection,
  generation: u64,
  pipe: &Pipeline,
  count: usize,
  deadline: Instant,
) -> RnResult<Vec<Value>> {
  let timeout = shared.config.command_timeout;
  // `close()` settles the calls in flight at once (ERR_CLIENT_CLOSED), as on the event
  // loop's connection, instead of leaving them to their deadline.
  let closing = shared.shutdown.notified();
  tokio::pin!(closing);
  closing.as_mut().enable();
  if shared.closed.load(Ordering::SeqCst) {
    return Err(RnError::closed());
  }
  let sent = tokio::select! {
    sent = tokio::time::timeout_at(deadline.into(), conn.send_packed_commands(pipe, 0, count)) => sent,
    _ = &mut closing => return Err(RnError::closed()),
  };
  match sent {
    Err(_) => Err(shared.timeout_error(timeout)),
    Ok(Err(e)) => Err(shared.failed(generation, e)),
    Ok(Ok(values)) if values.len() != count => Err(RnError::internal(format!(
      "a pipeline of {count} commands got {} replies",
      values.len()
    ))),
    Ok(Ok(values)) => Ok(values),
  }
}

/// A caller's pipeline. When the server refused every command of it with "not now", none
/// ran, so it is sent again (until `deadline`); when only some were refused, the others
/// ran, so the refused slots keep their errors (`ERR_REDIS_CONNECTION`).
async fn send_pipeline(
  shared: &Arc<Shared>,
  mut conn: MultiplexedConnection,
  mut generation: u64,
  pipe: &Pipeline,
  count: usize,
  deadline: Instant,
) -> RnResult<Vec<Value>> {
  let mut delay = RETRY_FIRST_DELAY;
  let mut last: Option<Value> = None;
  loop {
    let values = match send(shared, conn, generation, pipe, count, deadline).await {
      Ok(v) => v,
      Err(e) => {
        return Err(match (&last, e.code) {
          (Some(l), ErrorCode::RedisTimeout) => shared.not_accepted(l),
          _ => e,
        })
      }
    };
    let refused = values.iter().map(not_now).collect::<Option<Vec<_>>>();
    let Some(kinds) = refused else {
      return Ok(values);
    };
    kinds.iter().for_each(|k| shared.not_now(generation, *k));
    (conn, generation) = shared
      .wait_to_retry(&mut delay, deadline, &values[0])
      .await?;
    last = values.into_iter().next();
  }
}

/// A command the server answered with "not now", to be sent again.
struct Retry {
  cmd: Cmd,
  reply: oneshot::Sender<RnResult<Value>>,
  /// The server's last answer, for the error message should the wait run out.
  last: Value,
}

/// First wait before sending a "not now" command again; it doubles up to the maximum.
const RETRY_FIRST_DELAY: Duration = Duration::from_millis(10);
const RETRY_MAX_DELAY: Duration = Duration::from_millis(250);
/// Time left for the reply of the last attempt before the deadline.
const RETRY_REPLY_MARGIN: Duration = Duration::from_millis(20);

/// Sends the refused commands again until the server takes them or `deadline` passes
/// (then `ERR_REDIS_CONNECTION`). They did not run, so sending them again is safe.
async fn retry_later(shared: Arc<Shared>, mut waiting: Vec<Retry>, deadline: Instant) {
  let mut delay = RETRY_FIRST_DELAY;
  let prefix = shared.config.key_prefix.as_str();
  while !waiting.is_empty() {
    let (conn, generation) = match shared
      .wait_to_retry(&mut delay, deadline, &waiting[0].last)
      .await
    {
      Ok(c) => c,
      Err(e) => {
        for r in waiting {
          let _ = r.reply.send(Err(labeled(e.clone(), &r.cmd, prefix)));
        }
        return;
      }
    };
    let mut pipe = redis::pipe();
    for r in &waiting {
      pipe.add_command(r.cmd.clone());
    }
    match send(&shared, conn, generation, &pipe, waiting.len(), deadline).await {
      Err(e) => {
        // out of time while the server was still refusing: say so, not just "timeout"
        let e = match e.code {
          ErrorCode::RedisTimeout => shared.not_accepted(&waiting[0].last),
          _ => e,
        };
        for r in waiting {
          let _ = r.reply.send(Err(labeled(e.clone(), &r.cmd, prefix)));
        }
        return;
      }
      Ok(values) => {
        let mut still = Vec::new();
        for (mut r, value) in waiting.into_iter().zip(values) {
          match not_now(&value) {
            Some(kind) => {
              shared.not_now(generation, kind);
              r.last = value;
              still.push(r);
            }
            None => {
              let _ = r.reply.send(answer(value, &r.cmd, prefix));
            }
          }
        }
        waiting = still;
      }
    }
  }
}

/// A command's reply: a server error becomes the command's error, named after it.
fn answer(value: Value, cmd: &Cmd, prefix: &str) -> RnResult<Value> {
  match value {
    Value::ServerError(e) => Err(labeled(
      RnError::from(redis::RedisError::from(e)),
      cmd,
      prefix,
    )),
    other => Ok(other),
  }
}

/// `err`, its message starting with what failed: `GET user:1: WRONGTYPE ...`.
pub(crate) fn labeled(err: RnError, cmd: &Cmd, prefix: &str) -> RnError {
  match label(cmd, prefix) {
    Some(what) => err.context(&what),
    None => err,
  }
}

/// How a command is named in messages: its name, then its first key (without the client's
/// prefix, shortened) for the commands whose first argument is a key that is not a
/// secret. Scripts (EVALSHA/EVAL) are named by the script runner instead.
fn label(cmd: &Cmd, prefix: &str) -> Option<String> {
  let mut args = cmd.args_iter().map(|a| match a {
    redis::Arg::Simple(b) => b,
    _ => b"0".as_slice(),
  });
  let name = String::from_utf8_lossy(args.next()?).to_ascii_uppercase();
  let keyed = matches!(
    name.as_str(),
    "GET"
      | "SET"
      | "DEL"
      | "UNLINK"
      | "EXISTS"
      | "PEXPIRE"
      | "EXPIRE"
      | "PTTL"
      | "TTL"
      | "INCRBY"
      | "MGET"
  );
  match name.as_str() {
    "EVALSHA" | "EVAL" => None,
    _ if keyed => {
      let Some(first) = args.next() else {
        return Some(name);
      };
      let key = String::from_utf8_lossy(first);
      let key = crate::keys::strip(prefix, &key);
      let shown: String = key.chars().take(100).collect();
      let ellipsis = if shown.len() < key.len() { "…" } else { "" };
      let more = args.count();
      match name.as_str() {
        "DEL" | "UNLINK" | "MGET" if more > 0 => {
          Some(format!("{name} {shown}{ellipsis} (and {more} more keys)"))
        }
        _ => Some(format!("{name} {shown}{ellipsis}")),
      }
    }
    _ => Some(name),
  }
}

/// The "not now" meaning of a reply, if it is such an error.
fn not_now(value: &Value) -> Option<NotNow> {
  match value {
    Value::ServerError(e) => NotNow::of_reply(e),
    _ => None,
  }
}

/// Marks connection `generation` as lost (once) and starts reconnecting.
fn lost(shared: &Arc<Shared>, generation: u64, why: &RnError) {
  if shared.closed.load(Ordering::SeqCst) {
    return;
  }
  {
    let mut state = shared.state.write().unwrap_or_else(|e| e.into_inner());
    match &*state {
      State::Connected { generation: g, .. } if *g == generation => {}
      _ => return, // already reconnecting, or a newer connection is in place
    }
    *state = State::Reconnecting {
      attempt: 0,
      last_error: why.message.clone(),
    };
  }
  shared.emit(
    EventKind::Error,
    serde_json::json!({ "error": { "code": why.code.as_str(), "message": why.message } }),
  );
  tokio::spawn(reconnect(Arc::downgrade(shared)));
}

/// Replaces live connection `generation` with a new one (after `streak` earlier
/// replacements, waited for with the reconnect backoff). The live connection serves
/// until the new one is ready; if the new one cannot be opened, the live one stays.
async fn refresh(weak: Weak<Shared>, generation: u64, streak: u32) {
  let Some(shared) = weak.upgrade() else { return };
  let delay = backoff_delay(&shared.config.reconnect, streak + 1, rand::random::<f64>());
  drop(shared);
  tokio::time::sleep(delay).await;
  let Some(shared) = weak.upgrade() else { return };
  if let Ok(conn) = open(&shared).await {
    let mut state = shared.state.write().unwrap_or_else(|e| e.into_inner());
    if matches!(&*state, State::Connected { generation: g, .. } if *g == generation) {
      *state = State::Connected {
        conn,
        generation: shared.generation.load(Ordering::SeqCst),
      };
      shared.metrics.reconnects.fetch_add(1, Ordering::Relaxed);
    }
  }
  shared.refreshing.store(false, Ordering::SeqCst);
}

/// The delay before reconnect attempt `attempt` (1-based): exponential from `min_delay`,
/// capped at `max_delay`, with "equal jitter": uniformly random in the upper half, so
/// delays still grow but clients that failed together spread out.
pub fn backoff_delay(cfg: &ReconnectConfig, attempt: u32, unit_random: f64) -> Duration {
  let min = cfg.min_delay.as_secs_f64();
  let max = cfg.max_delay.as_secs_f64();
  let exp = min * 2f64.powi(attempt.saturating_sub(1).min(30) as i32);
  let cap = exp.min(max);
  let jittered = cap / 2.0 + unit_random.clamp(0.0, 1.0) * cap / 2.0;
  Duration::from_secs_f64(jittered.max(0.0))
}

async fn reconnect(weak: Weak<Shared>) {
  let mut attempt: u32 = 0;
  loop {
    attempt += 1;
    let Some(shared) = weak.upgrade() else { return };
    if shared.closed.load(Ordering::SeqCst) {
      return;
    }
    if let Some(max) = shared.config.reconnect.max_attempts {
      if attempt > max {
        let last = {
          let mut state = shared.state.write().unwrap_or_else(|e| e.into_inner());
          let State::Reconnecting { last_error, .. } = &*state else {
            return;
          };
          let last = last_error.clone();
          *state = State::GaveUp {
            last_error: last.clone(),
          };
          last
        };
        shared.emit(
          EventKind::End,
          serde_json::json!({
            "reason": "gave-up",
            "attempts": max,
            "error": { "code": ErrorCode::RedisConnection.as_str(), "message": last },
          }),
        );
        return;
      }
    }
    let delay = backoff_delay(&shared.config.reconnect, attempt, rand::random::<f64>());
    let last_error = match &*shared.state.read().unwrap_or_else(|e| e.into_inner()) {
      State::Reconnecting { last_error, .. } => last_error.clone(),
      _ => String::new(),
    };
    shared.emit(
      EventKind::Reconnecting,
      serde_json::json!({
        "attempt": attempt,
        "delayMs": delay.as_millis() as u64,
        "error": { "code": ErrorCode::RedisConnection.as_str(), "message": last_error },
      }),
    );
    {
      let shutdown = shared.shutdown.notified();
      tokio::pin!(shutdown);
      tokio::select! {
        _ = tokio::time::sleep(delay) => {}
        _ = &mut shutdown => return,
      }
    }
    if shared.closed.load(Ordering::SeqCst) {
      return;
    }
    match open(&shared).await {
      Ok(conn) => {
        let mut state = shared.state.write().unwrap_or_else(|e| e.into_inner());
        if shared.closed.load(Ordering::SeqCst) {
          return;
        }
        *state = State::Connected {
          conn,
          generation: shared.generation.load(Ordering::SeqCst),
        };
        drop(state);
        shared.metrics.reconnects.fetch_add(1, Ordering::Relaxed);
        shared.emit(EventKind::Ready, serde_json::json!({ "attempts": attempt }));
        return;
      }
      Err(e) => {
        let mut state = shared.state.write().unwrap_or_else(|e| e.into_inner());
        if let State::Reconnecting { .. } = &*state {
          *state = State::Reconnecting {
            attempt,
            last_error: e.message,
          };
        }
      }
    }
  }
}

/// Pings the server every `interval` so idle connections stay open through middleboxes,
/// and so a dead connection is noticed even when no command is being sent.
async fn keep_alive(weak: Weak<Shared>, interval: Duration) {
  loop {
    {
      let Some(shared) = weak.upgrade() else { return };
      let shutdown = shared.shutdown.notified();
      tokio::pin!(shutdown);
      tokio::select! {
        _ = tokio::time::sleep(interval) => {}
        _ = &mut shutdown => return,
      }
    }
    let Some(shared) = weak.upgrade() else { return };
    if shared.closed.load(Ordering::SeqCst) {
      return;
    }
    let Ok((mut conn, generation)) = shared.current() else {
      continue;
    };
    let timeout = shared.config.command_timeout;
    match tokio::time::timeout(timeout, conn.send_packed_command(&redis::cmd("PING"))).await {
      Ok(Ok(_)) => {}
      Ok(Err(e)) => {
        if is_fatal_for_connection(&e) {
          lost(
            &shared,
            generation,
            &scrub(RnError::from(e), &shared.config),
          );
        }
      }
      // A server that does not answer a PING within the command timeout is treated as gone.
      Err(_) => lost(
        &shared,
        generation,
        &RnError::timeout(format!(
          "the keep-alive PING got no answer within {} ms (commandTimeoutMs)",
          timeout.as_millis()
        )),
      ),
    }
  }
}

pub(super) fn build_client(
  config: &ClientConfig,
  protocol: redis::ProtocolVersion,
) -> RnResult<redis::Client> {
  let mut redis_info = redis::RedisConnectionInfo::default()
    .set_db(config.db)
    .set_protocol(protocol);
  if let Some(u) = &config.username {
    redis_info = redis_info.set_username(u);
  }
  if let Some(p) = &config.password {
    redis_info = redis_info.set_password(p);
  }
  redis_info = redis_info.set_lib_name("nestjs-redis-native", env!("CARGO_PKG_VERSION"));
  let bad_tls = |e: redis::RedisError| RnError::invalid(format!("TLS settings rejected: {e}"));
  match &config.tls {
    None => {
      let info = ConnectionAddr::Tcp(config.host.clone(), config.port)
        .into_connection_info()
        .map_err(RnError::from)?
        .set_redis_settings(redis_info);
      redis::Client::open(info).map_err(RnError::from)
    }
    Some(tls) => {
      // rustls needs a process-wide crypto provider; installing it twice is harmless.
      let _ = rustls::crypto::ring::default_provider().install_default();
      let host = tls
        .servername
        .clone()
        .unwrap_or_else(|| config.host.clone());
      let addr = ConnectionAddr::TcpTls {
        host,
        port: config.port,
        insecure: !tls.reject_unauthorized,
        tls_params: None,
      };
      let info: ConnectionInfo = addr
        .into_connection_info()
        .map_err(RnError::from)?
        .set_redis_settings(redis_info);
      if tls.ca.is_none() && tls.cert.is_none() {
        return redis::Client::open(info).map_err(bad_tls);
      }
      redis::Client::build_with_tls(info, tls_certificates(tls)).map_err(bad_tls)
    }
  }
}

/// The CA and client certificate of `tls` as redis-rs takes them.
pub(super) fn tls_certificates(tls: &crate::options::TlsConfig) -> redis::TlsCertificates {
  redis::TlsCertificates {
    client_tls: match (&tls.cert, &tls.key) {
      (Some(cert), Some(key)) => Some(redis::ClientTlsConfig {
        client_cert: cert.clone(),
        client_key: key.clone(),
      }),
      _ => None,
    },
    root_cert: tls.ca.clone(),
  }
}

/// Opens a new connection: TCP (and TLS), AUTH/SELECT, CLIENT SETNAME, then PING, all
/// within `connect_timeout`.
async fn open(shared: &Arc<Shared>) -> RnResult<MultiplexedConnection> {
  shared.generation.fetch_add(1, Ordering::SeqCst);
  let cfg = &shared.config;
  open_resolved(
    cfg,
    &shared.client,
    cfg.client_name.as_deref(),
    None,
    "cannot connect to Redis at",
  )
  .await
}

/// `open_with`, to the master Sentinel names now when `cfg` is a Sentinel configuration
/// (`client` is then built for that master).
async fn open_resolved(
  cfg: &ClientConfig,
  client: &redis::Client,
  name: Option<&str>,
  push: Option<mpsc::UnboundedSender<redis::PushInfo>>,
  what: &str,
) -> RnResult<MultiplexedConnection> {
  if !matches!(cfg.topology, crate::options::Topology::Sentinel(_)) {
    return open_with(cfg, client, name, push, what).await;
  }
  let master = super::sentinel::resolve(cfg).await?;
  let protocol = if push.is_some() {
    redis::ProtocolVersion::RESP3
  } else {
    redis::ProtocolVersion::RESP2
  };
  let client = build_client(&master, protocol)?;
  open_with(&master, &client, name, push, what).await
}

/// Opens a connection of `client` named `name`, with pushes (RESP3) sent to `push`.
pub(super) async fn open_with(
  cfg: &ClientConfig,
  client: &redis::Client,
  name: Option<&str>,
  push: Option<mpsc::UnboundedSender<redis::PushInfo>>,
  what: &str,
) -> RnResult<MultiplexedConnection> {
  let mut acfg = AsyncConnectionConfig::new()
    .set_connection_timeout(Some(cfg.connect_timeout))
    .set_response_timeout(None);
  if let Some(push) = push {
    acfg = acfg.set_push_sender(push);
  }
  if let Some(servername) = cfg.tls.as_ref().and_then(|t| t.servername.as_ref()) {
    if *servername != cfg.host {
      acfg = acfg.set_dns_resolver(ResolveTo {
        host: cfg.host.clone(),
      });
    }
  }
  let attempt = async {
    let mut conn = client
      .get_multiplexed_async_connection_with_config(&acfg)
      .await?;
    if let Some(name) = name {
      redis::cmd("CLIENT")
        .arg("SETNAME")
        .arg(name)
        .exec_async(&mut conn)
        .await?;
    }
    redis::cmd("PING").exec_async(&mut conn).await?;
    Ok::<_, redis::RedisError>(conn)
  };
  let what = format!("{what} {}", cfg.address());
  let no_answer = || {
    RnError::connection(format!(
      "{what}: no answer within {} ms (connectTimeoutMs)",
      cfg.connect_timeout.as_millis()
    ))
  };
  match tokio::time::timeout(cfg.connect_timeout, attempt).await {
    Err(_) => Err(no_answer()),
    Ok(Err(e)) => {
      let kind = e.kind();
      let mut err = scrub(RnError::from(e), cfg);
      if err.code == ErrorCode::RedisTimeout {
        // redis-rs' own connect timer fired first: same meaning, one message.
        return Err(no_answer());
      }
      match kind {
        // redis-rs keeps no detail of a refused AUTH: say what it can mean
        redis::ErrorKind::AuthenticationFailed => {
          err.message = format!(
            "the server refused the {} (a wrong password or user, or a server with no password set: then connect without one)",
            if cfg.username.is_some() { "username and password" } else { "password" }
          );
        }
        // bytes that are not RESP: something else listens on that port
        redis::ErrorKind::Parse => {
          err.message = "it did not answer like a Redis server (is this the port of another service, an HTTP server for example?)".into();
        }
        _ => {}
      }
      Err(err.context(&what))
    }
    Ok(Ok(conn)) => Ok(conn),
  }
}

/// With `tls.servername`, redis-rs is given the server name as the host (it verifies the
/// certificate against it and sends it as SNI); this resolver then sends the TCP
/// connection to the configured `host` instead.
struct ResolveTo {
  host: String,
}

impl redis::io::AsyncDNSResolver for ResolveTo {
  fn resolve<'a, 'b: 'a>(
    &'a self,
    _name: &'b str,
    port: u16,
  ) -> redis::RedisFuture<'a, Box<dyn Iterator<Item = std::net::SocketAddr> + Send + 'a>> {
    Box::pin(async move {
      let addrs = tokio::net::lookup_host((self.host.as_str(), port)).await?;
      Ok(Box::new(addrs) as Box<dyn Iterator<Item = std::net::SocketAddr> + Send>)
    })
  }
}

/// The first connection: at once, or with `reconnect.atStartup` retried with the backoff
/// while the server refuses or does not answer (up to `maxAttempts`).
async fn open_first(shared: &Arc<Shared>) -> RnResult<MultiplexedConnection> {
  let reconnect = &shared.config.reconnect;
  let mut attempt: u32 = 0;
  loop {
    match open(shared).await {
      Err(e)
        if reconnect.at_startup
          && e.code == ErrorCode::RedisConnection
          && reconnect.max_attempts.is_none_or(|max| attempt < max) =>
      {
        attempt += 1;
        tokio::time::sleep(backoff_delay(reconnect, attempt, rand::random::<f64>())).await;
      }
      other => return other,
    }
  }
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

#[cfg(test)]
mod tests {
  use super::*;

  fn cfg(min: u64, max: u64) -> ReconnectConfig {
    ReconnectConfig {
      min_delay: Duration::from_millis(min),
      max_delay: Duration::from_millis(max),
      max_attempts: None,
      at_startup: false,
    }
  }

  #[test]
  fn backoff_doubles_from_the_minimum_up_to_the_maximum() {
    let c = cfg(100, 1000);
    assert_eq!(backoff_delay(&c, 1, 1.0), Duration::from_millis(100));
    assert_eq!(backoff_delay(&c, 2, 1.0), Duration::from_millis(200));
    assert_eq!(backoff_delay(&c, 3, 1.0), Duration::from_millis(400));
    assert_eq!(backoff_delay(&c, 5, 1.0), Duration::from_millis(1000));
    assert_eq!(backoff_delay(&c, 500, 1.0), Duration::from_millis(1000));
  }

  #[test]
  fn backoff_jitter_spreads_delays_over_the_upper_half() {
    let c = cfg(100, 10_000);
    assert_eq!(backoff_delay(&c, 4, 0.0), Duration::from_millis(400));
    assert_eq!(backoff_delay(&c, 4, 0.5), Duration::from_millis(600));
    assert_eq!(backoff_delay(&c, 4, 1.0), Duration::from_millis(800));
  }

  #[test]
  fn scrub_removes_the_password_from_messages() {
    let mut config = crate::options::parse_options(
      Some(&serde_json::json!({ "password": "hunter2" })),
      &Default::default(),
    )
    .unwrap();
    config.password = Some("hunter2".into());
    let e = scrub(RnError::connection("auth hunter2 failed"), &config);
    assert_eq!(e.message, "auth *** failed");
  }
}
