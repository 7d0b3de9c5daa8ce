//! `PubSubService`: publish on the client's connection; subscribe on a dedicated
//! subscriber connection (pub/sub takes a connection over), shared by the service's
//! subscriptions, re-established with the client's backoff after a loss, every channel
//! and pattern subscribed again. Messages reach JS through one threadsafe function per
//! subscription, dropped on `unsubscribe()` (or when the client closes) so Node can exit.
//!
//! Channels are not keys: the client's `keyPrefix` does not apply to them (as in ioredis).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use napi::bindgen_prelude::{Function, PromiseRaw, Unknown};
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi::{sys, Env, JsValue, Status, ValueType};
use napi_derive::napi;
use redis::{PushInfo, PushKind, Value};
use tokio::sync::{mpsc, oneshot};

use crate::args;
use crate::client::connection_of;
use crate::completion::{complete_with, reject};
use crate::connection::{Connection, Subscriber, Topic};
use crate::error::{RnError, RnResult};
use crate::js_helper;
use crate::json;

type Handler = Arc<ThreadsafeFunction<Vec<String>, (), Vec<String>, Status, false>>;

#[derive(Clone, PartialEq, Eq, Hash, Debug)]
enum Target {
  Channel(String),
  Pattern(String),
}

enum Control {
  Subscribe {
    id: u64,
    target: Target,
    handler: Handler,
    reply: oneshot::Sender<RnResult<()>>,
  },
  Unsubscribe {
    id: u64,
    reply: oneshot::Sender<RnResult<()>>,
  },
}

/// Options of `subscribe` / `psubscribe`.
#[allow(dead_code)] // read from JS by name; this struct declares its TypeScript type
#[napi(object)]
pub struct SubscribeOptions {
  /// Hand the handler `JSON.parse(message)` instead of the text (a message that is not
  /// JSON goes to `onError`).
  pub json: Option<bool>,
  /// Called when the handler throws or rejects (default: a process warning). The
  /// subscription goes on either way.
  #[napi(ts_type = "(error: unknown, channel: string) => void")]
  pub on_error: Option<serde_json::Value>,
}

/// Publish and subscribe.
#[napi]
pub struct PubSubService {
  conn: Connection,
  hub: Mutex<Option<mpsc::UnboundedSender<Control>>>,
  next_id: AtomicU64,
}

/// A live subscription; `unsubscribe()` ends it.
#[napi]
pub struct Subscription {
  id: u64,
  target: Target,
  hub: mpsc::UnboundedSender<Control>,
}

#[napi]
impl Subscription {
  /// The channel, or the pattern for `psubscribe`.
  #[napi(getter)]
  pub fn channel(&self) -> String {
    match &self.target {
      Target::Channel(c) | Target::Pattern(c) => c.clone(),
    }
  }

  /// Whether this is a pattern subscription.
  #[napi(getter)]
  pub fn pattern(&self) -> bool {
    matches!(self.target, Target::Pattern(_))
  }

  /// Ends the subscription (the last one of a channel unsubscribes it on the server).
  /// Unsubscribing twice is harmless.
  #[napi(ts_return_type = "Promise<void>")]
  pub fn unsubscribe<'env>(&self, env: &'env Env) -> napi::Result<PromiseRaw<'env, ()>> {
    let (reply, answer) = oneshot::channel();
    let sent = self.hub.send(Control::Unsubscribe { id: self.id, reply });
    complete_with(env, false, Ok(()), |_| async move {
      if sent.is_err() {
        return Ok(()); // the hub is gone: nothing is subscribed any more
      }
      answer.await.unwrap_or(Ok(()))
    })
  }
}

/// A named property of an options object (`undefined` when absent or no object).
fn property<'env>(
  env: &Env,
  options: Option<&Unknown<'env>>,
  name: &std::ffi::CStr,
) -> Option<Unknown<'env>> {
  let options = options?;
  if options.get_type().ok() != Some(ValueType::Object) {
    return None;
  }
  let mut out = std::ptr::null_mut();
  let status =
    unsafe { sys::napi_get_named_property(env.raw(), options.raw(), name.as_ptr(), &mut out) };
  (status == sys::Status::napi_ok).then(|| unsafe { Unknown::from_raw_unchecked(env.raw(), out) })
}

/// Checks the arguments of `subscribe` and builds the handler's threadsafe function.
fn handler_of(env: &Env, handler: &Unknown, options: Option<&Unknown>) -> RnResult<Handler> {
  if handler.get_type().ok() != Some(ValueType::Function) {
    return Err(RnError::invalid("handler must be a function"));
  }
  if let Some(o) = options {
    if !matches!(
      o.get_type().ok(),
      Some(ValueType::Object | ValueType::Undefined | ValueType::Null)
    ) {
      return Err(RnError::invalid("subscribe options must be an object"));
    }
  }
  let json = match property(env, options, c"json") {
    Some(v) if v.get_type().ok() == Some(ValueType::Boolean) => {
      unsafe { v.cast::<bool>() }.unwrap_or(false)
    }
    Some(v)
      if matches!(
        v.get_type().ok(),
        Some(ValueType::Undefined | ValueType::Null)
      ) =>
    {
      false
    }
    None => false,
    Some(_) => return Err(RnError::invalid("option `json` must be a boolean")),
  };
  let on_error = match property(env, options, c"onError") {
    Some(v) if v.get_type().ok() == Some(ValueType::Function) => Some(v),
    Some(v)
      if matches!(
        v.get_type().ok(),
        Some(ValueType::Undefined | ValueType::Null)
      ) =>
    {
      None
    }
    None => None,
    Some(_) => return Err(RnError::invalid("option `onError` must be a function")),
  };
  let internal = |e: napi::Error| RnError::internal(e.reason.clone());
  let helper = js_helper::function(env, include_str!("handler.js")).map_err(internal)?;
  let mut undefined = std::ptr::null_mut();
  let mut json_value = std::ptr::null_mut();
  unsafe {
    sys::napi_get_undefined(env.raw(), &mut undefined);
    sys::napi_get_boolean(env.raw(), json, &mut json_value);
  }
  let argv = [
    handler.raw(),
    json_value,
    on_error.map(|f| f.raw()).unwrap_or(undefined),
  ];
  let wrapped = js_helper::call(env, helper, &argv)
    .map_err(|_| RnError::internal("could not wrap the handler"))?;
  let function: Function<'_, Vec<String>, ()> =
    unsafe { Unknown::from_raw_unchecked(env.raw(), wrapped).cast() }.map_err(internal)?;
  let tsfn = function
    .build_threadsafe_function()
    .callee_handled::<false>()
    .build()
    .map_err(internal)?;
  Ok(Arc::new(tsfn))
}

impl PubSubService {
  /// The hub task's sender, starting the task when there is none (or it ended).
  fn hub(&self) -> mpsc::UnboundedSender<Control> {
    let mut slot = self.hub.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(tx) = slot.as_ref().filter(|tx| !tx.is_closed()) {
      return tx.clone();
    }
    let (tx, rx) = mpsc::unbounded_channel();
    napi::bindgen_prelude::spawn(run_hub(self.conn.clone(), rx));
    *slot = Some(tx.clone());
    tx
  }

  fn subscribe_to<'env>(
    &self,
    env: &'env Env,
    target: RnResult<Target>,
    handler: Unknown,
    options: Option<Unknown>,
  ) -> napi::Result<PromiseRaw<'env, Subscription>> {
    let parsed = target.and_then(|t| Ok((t, handler_of(env, &handler, options.as_ref())?)));
    let (target, handler) = match parsed {
      Ok(_) if self.conn.is_closed() => return reject(env, RnError::closed()),
      Ok(p) => p,
      Err(e) => return reject(env, e),
    };
    let hub = self.hub();
    let id = self.next_id.fetch_add(1, Ordering::Relaxed);
    let (reply, answer) = oneshot::channel();
    let sent = hub.send(Control::Subscribe {
      id,
      target: target.clone(),
      handler,
      reply,
    });
    complete_with(env, self.conn.traces(), Ok(()), |_| async move {
      sent.map_err(|_| RnError::closed())?;
      answer.await.unwrap_or_else(|_| Err(RnError::closed()))?;
      Ok(Subscription { id, target, hub })
    })
  }
}

#[napi]
impl PubSubService {
  /// `new PubSubService(client)`.
  #[napi(constructor, ts_args_type = "client: RedisClient")]
  pub fn new(env: &Env, client: Unknown) -> napi::Result<Self> {
    Ok(PubSubService {
      conn: connection_of(env, client, "PubSubService")?,
      hub: Mutex::new(None),
      next_id: AtomicU64::new(1),
    })
  }

  /// Publishes `message` (text, or any other value as JSON) on `channel`; resolves to how
  /// many subscribers received it.
  #[napi(
    ts_args_type = "channel: string, message: string | object",
    ts_return_type = "Promise<number>"
  )]
  pub fn publish<'env>(
    &self,
    env: &'env Env,
    channel: Unknown,
    message: Unknown,
  ) -> napi::Result<PromiseRaw<'env, i64>> {
    let parsed = (|| {
      let channel = args::key(&channel, "channel")?;
      let text = if message.get_type().ok() == Some(ValueType::String) {
        args::string(&message, "message")?
      } else {
        json::stringify(env, &message)?
      };
      Ok((channel, text))
    })();
    let conn = self.conn.clone();
    complete_with(
      env,
      self.conn.traces(),
      parsed,
      move |(channel, text)| async move {
        let mut cmd = redis::cmd("PUBLISH");
        cmd.arg(channel).arg(text);
        match conn.exec(cmd).await? {
          Value::Int(n) => Ok(n),
          other => Err(RnError::internal(format!("unexpected reply {other:?}"))),
        }
      },
    )
  }

  /// Calls `handler(message, channel)` for every message on `channel`, until
  /// `unsubscribe()`. With `{ json: true }` the handler gets the parsed JSON. A handler
  /// that throws does not end the subscription; after a lost connection the subscription
  /// is restored by itself (messages published meanwhile are not delivered: pub/sub keeps
  /// none).
  #[napi(
    ts_args_type = "channel: string, handler: (message: any, channel: string) => unknown, options?: SubscribeOptions",
    ts_return_type = "Promise<Subscription>"
  )]
  pub fn subscribe<'env>(
    &self,
    env: &'env Env,
    channel: Unknown,
    handler: Unknown,
    options: Option<Unknown>,
  ) -> napi::Result<PromiseRaw<'env, Subscription>> {
    let target = args::key(&channel, "channel").map(Target::Channel);
    self.subscribe_to(env, target, handler, options)
  }

  /// Like `subscribe`, for every channel matching the glob `pattern`; the handler gets
  /// `(message, channel, pattern)`.
  #[napi(
    ts_args_type = "pattern: string, handler: (message: any, channel: string, pattern: string) => unknown, options?: SubscribeOptions",
    ts_return_type = "Promise<Subscription>"
  )]
  pub fn psubscribe<'env>(
    &self,
    env: &'env Env,
    pattern: Unknown,
    handler: Unknown,
    options: Option<Unknown>,
  ) -> napi::Result<PromiseRaw<'env, Subscription>> {
    let target = args::key(&pattern, "pattern").map(Target::Pattern);
    self.subscribe_to(env, target, handler, options)
  }
}

impl Target {
  fn topic(&self) -> (Topic, &str) {
    match self {
      Target::Channel(c) => (Topic::Channel, c),
      Target::Pattern(p) => (Topic::Pattern, p),
    }
  }
}

/// Opens the subscriber connection and subscribes every target.
async fn connect(
  conn: &Connection,
  targets: Vec<Target>,
) -> RnResult<(Subscriber, mpsc::UnboundedReceiver<PushInfo>)> {
  let (push, messages) = mpsc::unbounded_channel();
  let mut subscriber = conn.open_subscriber(push).await?;
  for t in &targets {
    let (topic, name) = t.topic();
    subscriber.set(topic, name, true).await?;
  }
  Ok((subscriber, messages))
}

/// A message push: the target it was sent for, its channel and its payload.
fn message_of(push: &PushInfo) -> Option<(Target, String, String)> {
  let text = |v: &Value| match v {
    Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
    Value::SimpleString(s) => Some(s.clone()),
    _ => None,
  };
  match (&push.kind, push.data.as_slice()) {
    (PushKind::Message, [channel, payload]) => {
      let channel = text(channel)?;
      Some((Target::Channel(channel.clone()), channel, text(payload)?))
    }
    (PushKind::PMessage, [pattern, channel, payload]) => Some((
      Target::Pattern(text(pattern)?),
      text(channel)?,
      text(payload)?,
    )),
    _ => None,
  }
}

/// The subscriber connection's task: subscriptions in, messages out to the handlers.
async fn run_hub(conn: Connection, mut control: mpsc::UnboundedReceiver<Control>) {
  let mut subs: HashMap<Target, HashMap<u64, Handler>> = HashMap::new();
  let mut ids: HashMap<u64, Target> = HashMap::new();
  let mut sink: Option<Subscriber> = None;
  let mut stream: Option<mpsc::UnboundedReceiver<PushInfo>> = None;
  let mut attempt: u32 = 0;
  let mut retry_at: Option<tokio::time::Instant> = None;
  loop {
    if conn.is_closed() {
      return; // dropping the handlers lets Node exit
    }
    // Lost with subscriptions left: reconnect (with backoff) and subscribe them all again.
    if sink.is_none()
      && !subs.is_empty()
      && retry_at.is_none_or(|t| tokio::time::Instant::now() >= t)
    {
      match connect(&conn, subs.keys().cloned().collect()).await {
        Ok((s, st)) => {
          sink = Some(s);
          stream = Some(st);
          attempt = 0;
          retry_at = None;
        }
        Err(_) => {
          attempt += 1;
          retry_at = Some(tokio::time::Instant::now() + conn.reconnect_delay(attempt));
        }
      }
    }
    let wake = retry_at.unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_millis(200));
    tokio::select! {
      push = async {
        match stream.as_mut() {
          Some(s) => s.recv().await,
          None => std::future::pending().await,
        }
      } => {
        let lost = match &push {
          None => true,
          Some(p) => p.kind == PushKind::Disconnection,
        };
        if lost {
          // the subscriber connection is gone
          sink = None;
          stream = None;
          continue;
        }
        let Some((target, channel, payload)) = push.as_ref().and_then(message_of) else {
          continue; // subscribe confirmations and the like
        };
        if let Some(handlers) = subs.get(&target) {
          let pattern = match &target {
            Target::Pattern(p) => p.clone(),
            Target::Channel(_) => String::new(),
          };
          for handler in handlers.values() {
            handler.call(
              vec![payload.clone(), channel.clone(), pattern.clone()],
              ThreadsafeFunctionCallMode::NonBlocking,
            );
          }
        }
      }
      command = control.recv() => {
        let Some(command) = command else { return };
        match command {
          Control::Subscribe { id, target, handler, reply } => {
            let result = async {
              if sink.is_none() {
                let (s, st) = connect(&conn, subs.keys().cloned().collect()).await?;
                sink = Some(s);
                stream = Some(st);
              }
              if !subs.contains_key(&target) {
                if let Some(s) = sink.as_mut() {
                  let (topic, name) = target.topic();
                  s.set(topic, name, true).await?;
                }
              }
              Ok(())
            }
            .await;
            if result.is_ok() {
              subs.entry(target.clone()).or_default().insert(id, handler);
              ids.insert(id, target);
            }
            let _ = reply.send(result);
          }
          Control::Unsubscribe { id, reply } => {
            let mut result = Ok(());
            if let Some(target) = ids.remove(&id) {
              let now_empty = subs.get_mut(&target).is_some_and(|h| {
                h.remove(&id);
                h.is_empty()
              });
              if now_empty {
                subs.remove(&target);
                if let Some(s) = sink.as_mut() {
                  let (topic, name) = target.topic();
                  result = s.set(topic, name, false).await;
                }
              }
            }
            if subs.is_empty() {
              // nothing left to listen to: close the subscriber connection
              sink = None;
              stream = None;
            }
            let _ = reply.send(result.or(Ok(())));
          }
        }
      }
      _ = tokio::time::sleep_until(wake) => {}
    }
  }
}
