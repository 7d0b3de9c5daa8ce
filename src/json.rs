//! JSON with JavaScript's own semantics: values are serialized by the engine's
//! `JSON.stringify` (so `toJSON`, Dates and key order behave as users expect and circular
//! structures are refused instead of overflowing a stack).

use napi::bindgen_prelude::Unknown;
use napi::{sys, Env, JsValue};

use crate::error::{RnError, RnResult};

/// `JSON.stringify(value)`; `ERR_SERIALIZATION` when it throws or yields `undefined`.
pub fn stringify(env: &Env, value: &Unknown) -> RnResult<String> {
  let raw_env = env.raw();
  unsafe {
    let mut global = std::ptr::null_mut();
    let mut json = std::ptr::null_mut();
    let mut func = std::ptr::null_mut();
    if sys::napi_get_global(raw_env, &mut global) != sys::Status::napi_ok
      || sys::napi_get_named_property(raw_env, global, c"JSON".as_ptr(), &mut json)
        != sys::Status::napi_ok
      || sys::napi_get_named_property(raw_env, json, c"stringify".as_ptr(), &mut func)
        != sys::Status::napi_ok
    {
      return Err(RnError::internal("JSON.stringify is not available"));
    }
    let argv = [value.raw()];
    let mut out = std::ptr::null_mut();
    let status = sys::napi_call_function(raw_env, json, func, 1, argv.as_ptr(), &mut out);
    if status == sys::Status::napi_pending_exception {
      let mut exception = std::ptr::null_mut();
      sys::napi_get_and_clear_last_exception(raw_env, &mut exception);
      let detail = describe(raw_env, exception);
      return Err(RnError::serialization(format!(
        "value is not JSON-serializable: {detail}"
      )));
    }
    if status != sys::Status::napi_ok {
      return Err(RnError::internal("JSON.stringify failed"));
    }
    let mut kind = 0;
    sys::napi_typeof(raw_env, out, &mut kind);
    if kind != sys::ValueType::napi_string {
      return Err(RnError::serialization(
        "value is not JSON-serializable (JSON.stringify returned undefined: undefined, a function or a symbol)",
      ));
    }
    let s = Unknown::from_raw_unchecked(raw_env, out);
    s.cast::<String>()
      .map_err(|e| RnError::internal(e.reason.clone()))
  }
}

unsafe fn describe(env: sys::napi_env, value: sys::napi_value) -> String {
  unsafe {
    let mut s = std::ptr::null_mut();
    if value.is_null() || sys::napi_coerce_to_string(env, value, &mut s) != sys::Status::napi_ok {
      return "unknown error".into();
    }
    Unknown::from_raw_unchecked(env, s)
      .cast::<String>()
      .unwrap_or_else(|_| "unknown error".into())
  }
}

/// Parses stored JSON; `ERR_SERIALIZATION` naming the key when it is not JSON.
pub fn parse(text: &[u8], key: &str) -> RnResult<serde_json::Value> {
  serde_json::from_slice(text).map_err(|e| {
    RnError::serialization(format!(
      "the value stored at `{key}` is not valid JSON: {e}"
    ))
  })
}
