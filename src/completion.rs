//! The JS↔Rust completion path: how a future's result in Rust becomes a settled Promise
//! in JS. Every service method goes through `complete`, so changing how completions cross
//! the boundary (for example batching them per wake-up) is a change to this file only.
//!
//! Guarantees: the Promise always settles; a rejection is an `Error` whose `code` is one
//! of the stable codes (`crate::error::ErrorCode`); a panic inside the future becomes
//! `ERR_INTERNAL` instead of crossing into Node.

use std::future::Future;
use std::panic::AssertUnwindSafe;

use futures_util::FutureExt;
use napi::bindgen_prelude::{PromiseRaw, ToNapiValue, Unknown};
use napi::{sys, Env};

use crate::error::{RnError, RnResult};

/// Runs `fut` on the runtime and returns the Promise of its result.
pub fn complete<'env, T, F>(env: &'env Env, fut: F) -> napi::Result<PromiseRaw<'env, T>>
where
  T: ToNapiValue + Send + 'static,
  F: Future<Output = RnResult<T>> + Send + 'static,
{
  let guarded = async move {
    let outcome = AssertUnwindSafe(fut)
      .catch_unwind()
      .await
      .unwrap_or_else(|panic| Err(RnError::internal(panic_message(panic))));
    Ok::<_, napi::Error>(outcome)
  };
  env.spawn_future_with_callback(guarded, |env, outcome| match outcome {
    Ok(value) => Ok(value),
    Err(e) => Err(js_error(env, &e)),
  })
}

/// A Promise already rejected with `err` (for arguments refused before any I/O).
pub fn reject<'env, T>(env: &'env Env, err: RnError) -> napi::Result<PromiseRaw<'env, T>>
where
  T: ToNapiValue + Send + 'static,
{
  complete(env, async move { Err::<T, _>(err) })
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
/// the Promise without starting any I/O.
pub fn complete_with<'env, A, T, F, Fut>(
  env: &'env Env,
  args: RnResult<A>,
  f: F,
) -> napi::Result<PromiseRaw<'env, T>>
where
  T: ToNapiValue + Send + 'static,
  F: FnOnce(A) -> Fut,
  Fut: Future<Output = RnResult<T>> + Send + 'static,
{
  match args {
    Ok(a) => complete(env, f(a)),
    Err(e) => reject(env, e),
  }
}
