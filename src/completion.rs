//! The JS↔Rust completion path: how a future's result in Rust becomes a settled Promise
//! in JS. Every service method goes through `complete`, so how completions cross the
//! boundary is decided in this file only.
//!
//! Guarantees: the Promise always settles; a rejection is an `Error` whose `code` is one
//! of the stable codes (`crate::error::ErrorCode`); a panic inside the future becomes
//! `ERR_INTERNAL` instead of crossing into Node.
//!
//! How: each JS thread runs its calls' futures itself, in a small executor:
//! - `complete` creates the Promise (`napi_create_promise`, cheap and synchronous) and
//!   polls the future at once, on the JS thread. A command reaches its connection during
//!   that first poll, so the commands of one JS tick are written together.
//! - A future is polled again when it is woken. A wake on the JS thread (a reply read by
//!   the event-loop connection, say) is run before that callback returns; a wake from
//!   another thread (tokio's timers and sockets) goes into one queue shared with that
//!   thread, and only the push that finds the queue empty wakes the JS thread (one shared
//!   threadsafe function), which then polls every task queued by then.
//! - A finished future settles its Promise right there, on the JS thread: no queue of
//!   results, no second hop.
//!
//! The threadsafe function keeps Node's event loop alive only while Promises are pending.

use std::cell::{Cell, RefCell};
use std::ffi::c_void;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Wake, Waker};
use std::thread::ThreadId;

use futures_util::FutureExt;
use napi::bindgen_prelude::{PromiseRaw, ToNapiValue, Unknown};
use napi::{sys, Env};

use crate::error::{RnError, RnResult};

type Task = Pin<Box<dyn Future<Output = ()>>>;

/// The tokio runtime whose context futures are polled in (timers, tokio sockets).
static RUNTIME: OnceLock<tokio::runtime::Handle> = OnceLock::new();

/// Called once at module init with the runtime napi-rs uses.
pub fn set_runtime(handle: tokio::runtime::Handle) {
  let _ = RUNTIME.set(handle);
}

/// The threadsafe function handle, shared with other threads.
#[derive(Clone, Copy)]
struct Tsfn(sys::napi_threadsafe_function);
// SAFETY: napi_call_threadsafe_function is documented as callable from any thread; the
// other uses of the handle happen on the JS thread that created it.
unsafe impl Send for Tsfn {}
unsafe impl Sync for Tsfn {}

/// Wakes from other threads, for the JS thread.
struct Remote {
  owner: ThreadId,
  queue: Mutex<Vec<u32>>,
  tsfn: Tsfn,
}

impl Remote {
  /// Queues `id`; the push that finds the queue empty wakes the JS thread.
  fn push(&self, id: u32) {
    let was_empty = {
      let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
      let was_empty = q.is_empty();
      q.push(id);
      was_empty
    };
    if was_empty {
      // Fails only when the env is being torn down; then nothing waits any more.
      unsafe {
        sys::napi_call_threadsafe_function(
          self.tsfn.0,
          std::ptr::null_mut(),
          sys::ThreadsafeFunctionCallMode::nonblocking,
        )
      };
    }
  }
}

/// The waker of task `id`.
struct TaskWaker {
  id: u32,
  remote: Arc<Remote>,
}

impl Wake for TaskWaker {
  fn wake(self: Arc<Self>) {
    self.wake_by_ref();
  }

  fn wake_by_ref(self: &Arc<Self>) {
    if std::thread::current().id() == self.remote.owner && DRAINING.with(Cell::get) {
      // polled again before this round of the executor ends
      LOCAL_READY.with(|r| r.borrow_mut().push(self.id));
    } else {
      self.remote.push(self.id);
    }
  }
}

struct Slot {
  task: Option<Task>,
  waker: Option<Waker>,
  /// A call's task (its Promise keeps Node running), or a background one.
  keeps_alive: bool,
  /// Whether the slot holds a live task (it is `None` while being polled).
  live: bool,
}

/// The state of one JS thread (the main thread, or a worker thread).
struct JsThread {
  env: sys::napi_env,
  slots: Vec<Slot>,
  free: Vec<u32>,
  /// Live tasks that keep Node running.
  pending: usize,
  tsfn_referenced: bool,
  remote: Arc<Remote>,
}

thread_local! {
  static JS_THREAD: RefCell<Option<JsThread>> = const { RefCell::new(None) };
  /// Tasks woken on the JS thread while the executor runs.
  static LOCAL_READY: RefCell<Vec<u32>> = const { RefCell::new(Vec::new()) };
  static DRAINING: Cell<bool> = const { Cell::new(false) };
  /// True while a call's task is polled for the first time, inside the call.
  static FIRST_POLL: Cell<bool> = const { Cell::new(false) };
  /// Set by `NextTurn`: the task polled now wants to be polled again on a later turn of
  /// the event loop.
  static NEXT_TURN: Cell<bool> = const { Cell::new(false) };
}

/// Pending once, then ready on a later turn of the event loop (through the threadsafe
/// function): a call that finished inside itself (a fail-fast error, an outage decided by
/// policy) still settles its Promise asynchronously, so a loop of such calls lets timers
/// and I/O run in between, as every Node API does.
struct NextTurn(bool);

impl Future for NextTurn {
  type Output = ();
  fn poll(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> std::task::Poll<()> {
    if self.0 {
      return std::task::Poll::Ready(());
    }
    self.0 = true;
    NEXT_TURN.with(|n| n.set(true));
    std::task::Poll::Pending
  }
}

fn check(status: sys::napi_status, what: &str) -> napi::Result<()> {
  if status == sys::Status::napi_ok {
    Ok(())
  } else {
    Err(napi::Error::from_reason(format!(
      "{what} failed (napi status {status})"
    )))
  }
}

impl JsThread {
  fn new(env: sys::napi_env) -> napi::Result<JsThread> {
    unsafe {
      let mut name = std::ptr::null_mut();
      check(
        sys::napi_create_string_utf8(env, c"nestjs-redis-native".as_ptr(), -1isize, &mut name),
        "napi_create_string_utf8",
      )?;
      let mut tsfn = std::ptr::null_mut();
      check(
        sys::napi_create_threadsafe_function(
          env,
          std::ptr::null_mut(),
          std::ptr::null_mut(),
          name,
          0,
          1,
          std::ptr::null_mut(),
          None,
          std::ptr::null_mut(),
          Some(on_remote_wake),
          &mut tsfn,
        ),
        "napi_create_threadsafe_function",
      )?;
      // Referenced only while Promises are pending (see `spawn`).
      check(
        sys::napi_unref_threadsafe_function(env, tsfn),
        "napi_unref_threadsafe_function",
      )?;
      Ok(JsThread {
        env,
        slots: Vec::new(),
        free: Vec::new(),
        pending: 0,
        tsfn_referenced: false,
        remote: Arc::new(Remote {
          owner: std::thread::current().id(),
          queue: Mutex::new(Vec::new()),
          tsfn: Tsfn(tsfn),
        }),
      })
    }
  }

  /// Stores a task; returns its id.
  fn insert(&mut self, task: Task, keeps_alive: bool) -> u32 {
    let waker = |id| {
      Waker::from(Arc::new(TaskWaker {
        id,
        remote: self.remote.clone(),
      }))
    };
    let id = match self.free.pop() {
      Some(id) => {
        let w = waker(id);
        self.slots[id as usize] = Slot {
          task: Some(task),
          waker: Some(w),
          keeps_alive,
          live: true,
        };
        id
      }
      None => {
        let id = self.slots.len() as u32;
        let w = waker(id);
        self.slots.push(Slot {
          task: Some(task),
          waker: Some(w),
          keeps_alive,
          live: true,
        });
        id
      }
    };
    if keeps_alive {
      self.pending += 1;
      if !self.tsfn_referenced {
        unsafe { sys::napi_ref_threadsafe_function(self.env, self.remote.tsfn.0) };
        self.tsfn_referenced = true;
      }
    }
    id
  }

  /// Ends task `id` (it finished).
  fn remove(&mut self, id: u32) {
    let slot = &mut self.slots[id as usize];
    slot.live = false;
    slot.task = None;
    slot.waker = None;
    if slot.keeps_alive {
      self.pending -= 1;
    }
    self.free.push(id);
    if self.pending == 0 && self.tsfn_referenced {
      unsafe { sys::napi_unref_threadsafe_function(self.env, self.remote.tsfn.0) };
      self.tsfn_referenced = false;
    }
  }
}

/// Runs `f` with this JS thread's state, creating it on first use.
fn with_js_thread<R>(
  env: sys::napi_env,
  f: impl FnOnce(&mut JsThread) -> napi::Result<R>,
) -> napi::Result<R> {
  JS_THREAD.with(|cell| {
    let mut slot = cell.borrow_mut();
    let state = match slot.as_mut() {
      Some(s) if s.env == env => s,
      _ => slot.insert(JsThread::new(env)?),
    };
    f(state)
  })
}

/// Polls task `id` once; removes it when it finished.
fn poll_task(id: u32) {
  let taken = JS_THREAD.with(|cell| {
    let mut slot = cell.borrow_mut();
    let state = slot.as_mut()?;
    let s = state.slots.get_mut(id as usize)?;
    if !s.live {
      return None;
    }
    Some((s.task.take()?, s.waker.clone()?))
  });
  let Some((mut task, waker)) = taken else {
    return; // finished, or being polled further up the stack
  };
  let mut cx = Context::from_waker(&waker);
  let done = {
    let _runtime = RUNTIME.get().map(|h| h.enter());
    task.as_mut().poll(&mut cx).is_ready()
  };
  let next_turn = NEXT_TURN.with(|n| n.replace(false));
  JS_THREAD.with(|cell| {
    if let Some(state) = cell.borrow_mut().as_mut() {
      if done {
        state.remove(id);
      } else if let Some(s) = state.slots.get_mut(id as usize) {
        s.task = Some(task);
        if next_turn {
          state.remote.push(id);
        }
      }
    }
  });
}

/// Polls every woken task until none is left. Call on the JS thread, inside a handle
/// scope (a JS call, or a callback that opened one). `remote`: also the tasks other
/// threads woke — only from a callback with no JS on the stack, since a task that settles
/// here creates its rejection's `Error` with the JS stack of the moment.
pub fn run_ready(remote: bool) {
  if DRAINING.with(|d| d.replace(true)) {
    return; // already running further up the stack: it picks up the new wakes
  }
  loop {
    let mut ids = LOCAL_READY.with(|r| std::mem::take(&mut *r.borrow_mut()));
    let queue = JS_THREAD.with(|cell| cell.borrow().as_ref().map(|s| s.remote.clone()));
    if let Some(queue) = queue.filter(|_| remote) {
      ids.extend(std::mem::take(
        &mut *queue.queue.lock().unwrap_or_else(|e| e.into_inner()),
      ));
    }
    if ids.is_empty() {
      break;
    }
    for id in ids {
      poll_task(id);
    }
  }
  DRAINING.with(|d| d.set(false));
}

/// Runs `f` on the JS thread (an event-loop callback) so that the tasks it wakes are
/// polled right after it, in this callback, instead of after a round through the
/// threadsafe function.
pub fn with_local_wakes(f: impl FnOnce()) {
  let outer = DRAINING.with(|d| d.replace(true));
  f();
  if !outer {
    DRAINING.with(|d| d.set(false));
    run_ready(true);
  }
}

/// On the JS thread, woken by the threadsafe function: polls the tasks other threads woke.
unsafe extern "C" fn on_remote_wake(
  env: sys::napi_env,
  _js_callback: sys::napi_value,
  _context: *mut c_void,
  _data: *mut c_void,
) {
  if env.is_null() {
    return; // the env is being torn down
  }
  run_ready(true);
}

/// Starts `task` on this JS thread: polled at once, then whenever woken. `keeps_alive`:
/// Node keeps running until it finishes (a call's Promise).
fn spawn(env: sys::napi_env, task: Task, keeps_alive: bool) -> napi::Result<()> {
  let id = with_js_thread(env, |state| Ok(state.insert(task, keeps_alive)))?;
  if DRAINING.with(Cell::get) {
    LOCAL_READY.with(|r| r.borrow_mut().push(id));
  } else {
    DRAINING.with(|d| d.set(true));
    FIRST_POLL.with(|f| f.set(true));
    poll_task(id);
    FIRST_POLL.with(|f| f.set(false));
    DRAINING.with(|d| d.set(false));
    run_ready(false);
  }
  Ok(())
}

/// Runs `fut` on this JS thread's executor without a Promise (a connection's background
/// work); it does not keep Node running.
pub fn spawn_background(env: &Env, fut: impl Future<Output = ()> + 'static) -> napi::Result<()> {
  spawn(env.raw(), Box::pin(fut), false)
}

/// Resolves or rejects one Promise. A value that cannot be made is `ERR_INTERNAL`.
fn settle<T: ToNapiValue>(env: sys::napi_env, deferred: sys::napi_deferred, outcome: RnResult<T>) {
  let value = match outcome {
    Ok(value) => match unsafe { T::to_napi_value(env, value) } {
      Ok(v) => {
        unsafe { sys::napi_resolve_deferred(env, deferred, v) };
        return;
      }
      Err(e) => create_js_error(
        env,
        &RnError::internal(format!("cannot build the result: {}", e.reason)),
      ),
    },
    Err(err) => create_js_error(env, &err),
  };
  match value {
    Ok(v) => unsafe { sys::napi_reject_deferred(env, deferred, v) },
    Err(_) => unsafe {
      let mut undefined = std::ptr::null_mut();
      sys::napi_get_undefined(env, &mut undefined);
      sys::napi_reject_deferred(env, deferred, undefined)
    },
  };
}

/// Runs `fut` on this JS thread's executor and returns the Promise of its result.
pub fn complete<'env, T, F>(env: &'env Env, fut: F) -> napi::Result<PromiseRaw<'env, T>>
where
  T: ToNapiValue + 'static,
  F: Future<Output = RnResult<T>> + 'static,
{
  let raw_env = env.raw();
  let mut deferred = std::ptr::null_mut();
  let mut promise = std::ptr::null_mut();
  check(
    unsafe { sys::napi_create_promise(raw_env, &mut deferred, &mut promise) },
    "napi_create_promise",
  )?;
  let task = async move {
    let outcome = AssertUnwindSafe(fut)
      .catch_unwind()
      .await
      .unwrap_or_else(|panic| Err(RnError::internal(panic_message(panic))));
    if FIRST_POLL.with(Cell::get) {
      NextTurn(false).await;
    }
    settle(raw_env, deferred, outcome);
  };
  spawn(raw_env, Box::pin(task), true)?;
  Ok(PromiseRaw::new(raw_env, promise))
}

/// A Promise already rejected with `err` (for arguments refused before any I/O).
pub fn reject<'env, T>(env: &'env Env, err: RnError) -> napi::Result<PromiseRaw<'env, T>>
where
  T: ToNapiValue + 'static,
{
  let raw_env = env.raw();
  let mut deferred = std::ptr::null_mut();
  let mut promise = std::ptr::null_mut();
  check(
    unsafe { sys::napi_create_promise(raw_env, &mut deferred, &mut promise) },
    "napi_create_promise",
  )?;
  settle::<()>(raw_env, deferred, Err(err));
  Ok(PromiseRaw::new(raw_env, promise))
}

fn panic_message(panic: Box<dyn std::any::Any + Send>) -> String {
  let detail = panic
    .downcast_ref::<&str>()
    .map(|s| s.to_string())
    .or_else(|| panic.downcast_ref::<String>().cloned())
    .unwrap_or_else(|| "unknown panic".into());
  format!("internal error (a bug in nestjs-redis-native, please report it): {detail}")
}

/// Creates the JS `Error` for `err` (with `err.code` set) and wraps it so napi rejects or
/// throws with that very object.
pub fn js_error(env: &Env, err: &RnError) -> napi::Error {
  match create_js_error(env.raw(), err) {
    Ok(value) => napi::Error::from(unsafe { Unknown::from_raw_unchecked(env.raw(), value) }),
    Err(e) => e,
  }
}

/// The raw JS `Error` for `err`, with `code` set.
pub fn create_js_error(env: sys::napi_env, err: &RnError) -> napi::Result<sys::napi_value> {
  let code = unsafe { <&str as ToNapiValue>::to_napi_value(env, err.code.as_str())? };
  let msg = unsafe { <&str as ToNapiValue>::to_napi_value(env, err.message.as_str())? };
  let mut result = std::ptr::null_mut();
  napi::check_status!(unsafe { sys::napi_create_error(env, code, msg, &mut result) })?;
  Ok(result)
}

/// `complete`, for a call whose arguments were checked first: refused arguments reject
/// the Promise without starting any I/O. With `traced` (the client's
/// `captureStackTraces`), a rejection gets the stack of the code that awaited it.
pub fn complete_with<'env, A, T, F, Fut>(
  env: &'env Env,
  traced: bool,
  args: RnResult<A>,
  f: F,
) -> napi::Result<PromiseRaw<'env, T>>
where
  T: ToNapiValue + 'static,
  F: FnOnce(A) -> Fut,
  Fut: Future<Output = RnResult<T>> + 'static,
{
  let promise = match args {
    Ok(a) => complete(env, f(a))?,
    Err(e) => reject(env, e)?,
  };
  if traced {
    traced_promise(env, promise)
  } else {
    Ok(promise)
  }
}

/// `promise.then(undefined, rethrow)`: the promise the caller gets, whose rejection
/// carries the awaiting code's stack (see stack_trace.js).
fn traced_promise<'env, T>(
  env: &'env Env,
  promise: PromiseRaw<'env, T>,
) -> napi::Result<PromiseRaw<'env, T>> {
  use napi::JsValue;
  let then = crate::js_helper::function(env, "Promise.prototype.then")?;
  let rethrow = crate::js_helper::function(env, include_str!("stack_trace.js"))?;
  let raw = env.raw();
  let mut undefined = std::ptr::null_mut();
  let mut derived = std::ptr::null_mut();
  unsafe {
    check(
      sys::napi_get_undefined(raw, &mut undefined),
      "napi_get_undefined",
    )?;
    let argv = [undefined, rethrow];
    check(
      sys::napi_call_function(raw, promise.raw(), then, 2, argv.as_ptr(), &mut derived),
      "Promise.prototype.then",
    )?;
  }
  Ok(PromiseRaw::new(raw, derived))
}
