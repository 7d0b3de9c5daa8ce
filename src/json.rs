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
      // its toString threw (or it has none): that exception must not escape the call
      crate::args::clear_exception(env);
      return "an error that cannot be shown as text".into();
    }
    Unknown::from_raw_unchecked(env, s)
      .cast::<String>()
      .unwrap_or_else(|_| "unknown error".into())
  }
}

/// Stored JSON checked in Rust (so a bad value is `ERR_SERIALIZATION` naming the key) and
/// handed to JS as text for `JSON.parse`.
pub fn text(bytes: Vec<u8>, key: &str) -> RnResult<JsonText> {
  serde_json::from_slice::<serde::de::IgnoredAny>(&bytes).map_err(|e| {
    RnError::serialization(format!(
      "the value stored at `{key}` is not valid JSON: {e}"
    ))
  })?;
  String::from_utf8(bytes)
    .map(JsonText)
    .map_err(|_| RnError::serialization(format!("the value stored at `{key}` is not UTF-8 text")))
}

/// JSON text handed to JS as the value it describes, parsed by the engine's own
/// `JSON.parse` on the JS thread (faster than building the object property by property,
/// and exactly what `JSON.parse` in a hand-written service would give).
pub struct JsonText(pub String);

impl napi::bindgen_prelude::ToNapiValue for JsonText {
  unsafe fn to_napi_value(env: sys::napi_env, val: Self) -> napi::Result<sys::napi_value> {
    unsafe {
      let mut global = std::ptr::null_mut();
      let mut json = std::ptr::null_mut();
      let mut func = std::ptr::null_mut();
      napi::check_status!(sys::napi_get_global(env, &mut global))?;
      napi::check_status!(sys::napi_get_named_property(
        env,
        global,
        c"JSON".as_ptr(),
        &mut json
      ))?;
      napi::check_status!(sys::napi_get_named_property(
        env,
        json,
        c"parse".as_ptr(),
        &mut func
      ))?;
      let text = <String as napi::bindgen_prelude::ToNapiValue>::to_napi_value(env, val.0)?;
      let argv = [text];
      let mut out = std::ptr::null_mut();
      let status = sys::napi_call_function(env, json, func, 1, argv.as_ptr(), &mut out);
      if status == sys::Status::napi_pending_exception {
        let mut exception = std::ptr::null_mut();
        sys::napi_get_and_clear_last_exception(env, &mut exception);
        return Err(napi::Error::from_reason(format!(
          "stored data is not valid JSON: {}",
          describe(env, exception)
        )));
      }
      napi::check_status!(status)?;
      Ok(out)
    }
  }
}

#[cfg(test)]
mod tests {
  use super::*;
  use crate::error::ErrorCode;

  /// The error of a `text` call that must fail.
  fn refused(bytes: &[u8], key: &str) -> RnError {
    match text(bytes.to_vec(), key) {
      Ok(t) => panic!("accepted {:?}", t.0),
      Err(e) => e,
    }
  }

  #[test]
  fn stored_json_is_handed_on_as_the_text_it_is() {
    let t = text(br#"{"a":[1,2.5,"x"],"b":null}"#.to_vec(), "k").unwrap();
    assert_eq!(t.0, r#"{"a":[1,2.5,"x"],"b":null}"#);
  }

  #[test]
  fn numbers_past_what_a_double_holds_are_not_rounded_in_rust() {
    let t = text(b"12345678901234567890123".to_vec(), "k").unwrap();
    assert_eq!(t.0, "12345678901234567890123");
  }

  #[test]
  fn stored_data_that_is_not_json_is_a_serialization_error_naming_the_key() {
    for bad in [&b"not json"[..], b"{\"a\":", b"", b"{} {}"] {
      let e = refused(bad, "session:1");
      assert_eq!(e.code, ErrorCode::Serialization);
      assert!(
        e.message
          .starts_with("the value stored at `session:1` is not valid JSON: "),
        "{}",
        e.message
      );
    }
  }

  #[test]
  fn stored_json_with_bytes_that_are_not_utf8_is_a_serialization_error() {
    let e = refused(b"\"\xff\"", "k");
    assert_eq!(e.code, ErrorCode::Serialization);
    assert!(e.message.contains("`k`"), "{}", e.message);
  }
}
