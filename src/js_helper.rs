//! A few lines of JavaScript a native method needs for control flow that lives in JS
//! (awaiting a user callback, sharing a promise between callers): compiled once per JS
//! thread with `napi_run_script`, kept by reference, and called from Rust.

use std::cell::RefCell;
use std::collections::HashMap;

use napi::bindgen_prelude::{PromiseRaw, Unknown};
use napi::{sys, Env, JsValue};

use crate::completion::reject;
use crate::error::RnError;

thread_local! {
  /// Compiled helpers of this JS thread, by source text.
  static HELPERS: RefCell<HashMap<usize, (sys::napi_env, sys::napi_ref)>> = RefCell::new(HashMap::new());
}

/// The function that `source` (one JS expression) evaluates to, compiled on first use.
pub fn function(env: &Env, source: &'static str) -> napi::Result<sys::napi_value> {
  let raw = env.raw();
  let id = source.as_ptr() as usize;
  HELPERS.with(|cell| unsafe {
    let mut helpers = cell.borrow_mut();
    if let Some((e, r)) = helpers.get(&id) {
      if *e == raw {
        let mut f = std::ptr::null_mut();
        napi::check_status!(sys::napi_get_reference_value(raw, *r, &mut f))?;
        return Ok(f);
      }
    }
    let mut script = std::ptr::null_mut();
    napi::check_status!(sys::napi_create_string_utf8(
      raw,
      source.as_ptr().cast(),
      source.len() as isize,
      &mut script
    ))?;
    let mut f = std::ptr::null_mut();
    napi::check_status!(sys::napi_run_script(raw, script, &mut f))?;
    let mut r = std::ptr::null_mut();
    napi::check_status!(sys::napi_create_reference(raw, f, 1, &mut r))?;
    helpers.insert(id, (raw, r));
    Ok(f)
  })
}

/// Calls `f` with `argv` (and `this` undefined).
pub fn call(
  env: &Env,
  f: sys::napi_value,
  argv: &[sys::napi_value],
) -> napi::Result<sys::napi_value> {
  let mut undefined = std::ptr::null_mut();
  let mut out = std::ptr::null_mut();
  unsafe {
    napi::check_status!(sys::napi_get_undefined(env.raw(), &mut undefined))?;
    napi::check_status!(sys::napi_call_function(
      env.raw(),
      undefined,
      f,
      argv.len(),
      argv.as_ptr(),
      &mut out
    ))?;
  }
  Ok(out)
}

/// A Promise rejected with `err`, for a method that returns whatever a helper returns.
pub fn rejected<'env>(env: &'env Env, err: RnError) -> napi::Result<Unknown<'env>> {
  let p: PromiseRaw<'env, ()> = reject(env, err)?;
  Ok(unsafe { Unknown::from_raw_unchecked(env.raw(), p.raw()) })
}
