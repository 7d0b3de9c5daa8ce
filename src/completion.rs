//! The JS↔Rust completion path: how a future's result in Rust becomes a settled Promise
//! in JS. Every service method goes through `complete`, so how completions cross the
//! boundary is decided in this file only.
//!
//! Guarantees: the Promise always settles; a rejection is an `Error` whose `code` is one
//! of the stable codes (`crate::error::ErrorCode`); a panic inside the future becomes
//! `ERR_INTERNAL` instead of crossing into Node.
//!
//! How (measured in bench/, see ARCHITECTURE.md, Performance): a napi-rs `async fn`
//! creates a threadsafe function per call, which costs ~8 µs of main-thread CPU per
//! command. Here, per JS thread:
//! - `complete` creates the Promise itself (`napi_create_promise`, cheap and synchronous)
//!   and keeps its `napi_deferred` in a slab on the JS thread;
//! - the futures of one JS tick are collected and handed to tokio together, by one
//!   microtask, as one task: one cross-thread wake-up per batch instead of per command,
//!   and their commands reach the connection together, so they are written together;
//! - finished results go into one queue shared with tokio; only the push that finds the
//!   queue empty wakes the JS thread (one shared threadsafe function), and that wake-up
//!   settles every result queued by then. At 100 in flight this is one wake-up per ~100
//!   replies.
//!
//! The threadsafe function keeps Node's event loop alive only while Promises are pending.

use std::cell::RefCell;
use std::ffi::c_void;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, StreamExt};
use napi::bindgen_prelude::{PromiseRaw, ToNapiValue, Unknown};
use napi::{sys, Env};

use crate::error::{RnError, RnResult};

/// Makes the JS value of a successful result, on the JS thread.
type Resolve = Box<dyn FnOnce(sys::napi_env) -> napi::Result<sys::napi_value> + Send>;
type Outcome = Result<Resolve, RnError>;
type Task = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The threadsafe function handle, shared with tokio's threads.
#[derive(Clone, Copy)]
struct Tsfn(sys::napi_threadsafe_function);
// SAFETY: napi_call_threadsafe_function is documented as callable from any thread; the
// other uses of the handle happen on the JS thread that created it.
unsafe impl Send for Tsfn {}
unsafe impl Sync for Tsfn {}

/// Results finished on tokio's threads, waiting for the JS thread.
struct Ready {
  queue: Mutex<Vec<(u32, Outcome)>>,
  tsfn: Tsfn,
}

impl Ready {
  /// Queues a result; the push that finds the queue empty wakes the JS thread.
  fn push(&self, id: u32, outcome: Outcome) {
    let was_empty = {
      let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
      let was_empty = q.is_empty();
      q.push((id, outcome));
      was_empty
    };
    if was_empty {
      // Fails only when the env is being torn down; then nothing waits for the result.
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

/// The state of one JS thread (the main thread, or a worker thread).
struct JsThread {
  env: sys::napi_env,
  /// Pending Promises by id; `free` lists reusable ids.
  deferreds: Vec<sys::napi_deferred>,
  free: Vec<u32>,
  pending: usize,
  /// Futures started in this JS tick, handed to tokio by the next microtask.
  batch: Vec<Task>,
  flush_scheduled: bool,
  queue_microtask: sys::napi_ref,
  flush_fn: sys::napi_ref,
  tsfn_referenced: bool,
  ready: Arc<Ready>,
}

thread_local! {
  static JS_THREAD: RefCell<Option<JsThread>> = const { RefCell::new(None) };
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
      let mut global = std::ptr::null_mut();
      check(sys::napi_get_global(env, &mut global), "napi_get_global")?;
      let mut qm = std::ptr::null_mut();
      check(
        sys::napi_get_named_property(env, global, c"queueMicrotask".as_ptr(), &mut qm),
        "queueMicrotask",
      )?;
      let mut queue_microtask = std::ptr::null_mut();
      check(
        sys::napi_create_reference(env, qm, 1, &mut queue_microtask),
        "napi_create_reference",
      )?;
      let mut f = std::ptr::null_mut();
      check(
        sys::napi_create_function(
          env,
          c"nestjsRedisNativeFlush".as_ptr(),
          -1isize,
          Some(flush_callback),
          std::ptr::null_mut(),
          &mut f,
        ),
        "napi_create_function",
      )?;
      let mut flush_fn = std::ptr::null_mut();
      check(
        sys::napi_create_reference(env, f, 1, &mut flush_fn),
        "napi_create_reference",
      )?;
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
          Some(settle_ready),
          &mut tsfn,
        ),
        "napi_create_threadsafe_function",
      )?;
      // Referenced only while Promises are pending (see `start`).
      check(
        sys::napi_unref_threadsafe_function(env, tsfn),
        "napi_unref_threadsafe_function",
      )?;
      Ok(JsThread {
        env,
        deferreds: Vec::new(),
        free: Vec::new(),
        pending: 0,
        batch: Vec::new(),
        flush_scheduled: false,
        queue_microtask,
        flush_fn,
        tsfn_referenced: false,
        ready: Arc::new(Ready {
          queue: Mutex::new(Vec::new()),
          tsfn: Tsfn(tsfn),
        }),
      })
    }
  }

  /// A new pending Promise: its id and the JS value.
  fn create_promise(&mut self) -> napi::Result<(u32, sys::napi_value)> {
    let mut deferred = std::ptr::null_mut();
    let mut promise = std::ptr::null_mut();
    check(
      unsafe { sys::napi_create_promise(self.env, &mut deferred, &mut promise) },
      "napi_create_promise",
    )?;
    let id = match self.free.pop() {
      Some(id) => {
        self.deferreds[id as usize] = deferred;
        id
      }
      None => {
        self.deferreds.push(deferred);
        (self.deferreds.len() - 1) as u32
      }
    };
    self.pending += 1;
    if !self.tsfn_referenced {
      unsafe { sys::napi_ref_threadsafe_function(self.env, self.ready.tsfn.0) };
      self.tsfn_referenced = true;
    }
    Ok((id, promise))
  }

  /// Takes the deferred of `id` out of the slab.
  fn take(&mut self, id: u32) -> sys::napi_deferred {
    let deferred = std::mem::replace(&mut self.deferreds[id as usize], std::ptr::null_mut());
    self.free.push(id);
    self.pending -= 1;
    deferred
  }

  /// With no Promise pending, stops holding Node's event loop open.
  fn release_if_idle(&mut self) {
    if self.pending == 0 && self.tsfn_referenced {
      unsafe { sys::napi_unref_threadsafe_function(self.env, self.ready.tsfn.0) };
      self.tsfn_referenced = false;
    }
  }

  /// Adds a future to this tick's batch; the first one of the tick schedules the flush.
  fn start(&mut self, task: Task) -> napi::Result<()> {
    self.batch.push(task);
    if !self.flush_scheduled {
      unsafe {
        let mut qm = std::ptr::null_mut();
        let mut f = std::ptr::null_mut();
        let mut global = std::ptr::null_mut();
        check(
          sys::napi_get_reference_value(self.env, self.queue_microtask, &mut qm),
          "napi_get_reference_value",
        )?;
        check(
          sys::napi_get_reference_value(self.env, self.flush_fn, &mut f),
          "napi_get_reference_value",
        )?;
        check(
          sys::napi_get_global(self.env, &mut global),
          "napi_get_global",
        )?;
        let argv = [f];
        let mut out = std::ptr::null_mut();
        check(
          sys::napi_call_function(self.env, global, qm, 1, argv.as_ptr(), &mut out),
          "queueMicrotask()",
        )?;
      }
      self.flush_scheduled = true;
    }
    Ok(())
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

/// The microtask that hands this tick's futures to tokio, as one task.
unsafe extern "C" fn flush_callback(
  _env: sys::napi_env,
  _info: sys::napi_callback_info,
) -> sys::napi_value {
  let batch = JS_THREAD.with(|cell| {
    let mut slot = cell.borrow_mut();
    match slot.as_mut() {
      Some(s) => {
        s.flush_scheduled = false;
        std::mem::take(&mut s.batch)
      }
      None => Vec::new(),
    }
  });
  if batch.len() == 1 {
    napi::bindgen_prelude::spawn(
      batch
        .into_iter()
        .next()
        .unwrap_or_else(|| Box::pin(async {})),
    );
  } else if !batch.is_empty() {
    napi::bindgen_prelude::spawn(async move {
      let mut running: FuturesUnordered<Task> = batch.into_iter().collect();
      while running.next().await.is_some() {}
    });
  }
  std::ptr::null_mut()
}

/// On the JS thread, woken by the threadsafe function: settles every queued result.
unsafe extern "C" fn settle_ready(
  env: sys::napi_env,
  _js_callback: sys::napi_value,
  _context: *mut c_void,
  _data: *mut c_void,
) {
  if env.is_null() {
    return; // the env is being torn down
  }
  JS_THREAD.with(|cell| {
    let mut slot = cell.borrow_mut();
    let Some(state) = slot.as_mut().filter(|s| s.env == env) else {
      return;
    };
    let ready = std::mem::take(&mut *state.ready.queue.lock().unwrap_or_else(|e| e.into_inner()));
    for (id, outcome) in ready {
      let deferred = state.take(id);
      settle(env, deferred, outcome);
    }
    state.release_if_idle();
  });
}

/// Resolves or rejects one Promise. A value that cannot be made is `ERR_INTERNAL`.
fn settle(env: sys::napi_env, deferred: sys::napi_deferred, outcome: Outcome) {
  let value = match outcome {
    Ok(resolve) => match resolve(env) {
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

/// Runs `fut` on the runtime and returns the Promise of its result.
pub fn complete<'env, T, F>(env: &'env Env, fut: F) -> napi::Result<PromiseRaw<'env, T>>
where
  T: ToNapiValue + Send + 'static,
  F: Future<Output = RnResult<T>> + Send + 'static,
{
  let raw_env = env.raw();
  with_js_thread(raw_env, |state| {
    let (id, promise) = state.create_promise()?;
    let ready = state.ready.clone();
    let task = async move {
      let outcome = AssertUnwindSafe(fut)
        .catch_unwind()
        .await
        .unwrap_or_else(|panic| Err(RnError::internal(panic_message(panic))))
        .map(|value| -> Resolve { Box::new(move |env| unsafe { T::to_napi_value(env, value) }) });
      ready.push(id, outcome);
    };
    if let Err(e) = state.start(Box::pin(task)) {
      // Could not schedule: settle now rather than leave the Promise pending.
      let deferred = state.take(id);
      settle(raw_env, deferred, Err(RnError::internal(e.reason.clone())));
      state.release_if_idle();
    }
    Ok(PromiseRaw::new(raw_env, promise))
  })
}

/// A Promise already rejected with `err` (for arguments refused before any I/O).
pub fn reject<'env, T>(env: &'env Env, err: RnError) -> napi::Result<PromiseRaw<'env, T>>
where
  T: ToNapiValue + Send + 'static,
{
  let raw_env = env.raw();
  let mut deferred = std::ptr::null_mut();
  let mut promise = std::ptr::null_mut();
  check(
    unsafe { sys::napi_create_promise(raw_env, &mut deferred, &mut promise) },
    "napi_create_promise",
  )?;
  settle(raw_env, deferred, Err(err));
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
  T: ToNapiValue + Send + 'static,
  F: FnOnce(A) -> Fut,
  Fut: Future<Output = RnResult<T>> + Send + 'static,
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
