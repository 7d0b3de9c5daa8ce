//! Checks of the arguments JS hands us, before anything is sent. Every refusal is an
//! `ERR_INVALID_ARGUMENT` naming the argument, so bad input never reaches Redis and never
//! leaves partial data.

use std::time::Duration;

use napi::bindgen_prelude::{Buffer, Unknown};
use napi::{sys, ValueType};

use crate::error::{RnError, RnResult};

pub fn type_of(v: &Unknown) -> ValueType {
  v.get_type().unwrap_or(ValueType::Unknown)
}

fn type_name(v: &Unknown) -> &'static str {
  match type_of(v) {
    ValueType::Undefined => "undefined",
    ValueType::Null => "null",
    ValueType::Boolean => "a boolean",
    ValueType::Number => "a number",
    ValueType::String => "a string",
    ValueType::Symbol => "a symbol",
    ValueType::Object => "an object",
    ValueType::Function => "a function",
    ValueType::BigInt => "a bigint",
    _ => "an unsupported value",
  }
}

/// A string, empty allowed (values).
pub fn string(v: &Unknown, what: &str) -> RnResult<String> {
  if type_of(v) != ValueType::String {
    return Err(RnError::invalid(format!(
      "{what} must be a string, got {}",
      type_name(v)
    )));
  }
  unsafe { v.cast::<String>() }.map_err(|e| RnError::invalid(format!("{what}: {}", e.reason)))
}

/// A key: a non-empty string.
pub fn key(v: &Unknown, what: &str) -> RnResult<String> {
  let s = string(v, what)?;
  if s.is_empty() {
    return Err(RnError::invalid(format!("{what} must not be empty")));
  }
  Ok(s)
}

/// An array of keys (non-empty strings). The array itself may be empty.
pub fn key_list(v: &Unknown, what: &str) -> RnResult<Vec<String>> {
  array(v, what)?
    .iter()
    .enumerate()
    .map(|(i, item)| key(item, &format!("{what}[{i}]")))
    .collect()
}

/// The items of a JS array.
pub fn array<'a>(v: &Unknown<'a>, what: &str) -> RnResult<Vec<Unknown<'a>>> {
  let raw_env = v_env(v);
  let mut is_array = false;
  unsafe { sys::napi_is_array(raw_env, v_raw(v), &mut is_array) };
  if !is_array {
    return Err(RnError::invalid(format!(
      "{what} must be an array, got {}",
      type_name(v)
    )));
  }
  let mut len = 0u32;
  unsafe { sys::napi_get_array_length(raw_env, v_raw(v), &mut len) };
  let mut out = Vec::with_capacity(len as usize);
  for i in 0..len {
    let mut item = std::ptr::null_mut();
    let status = unsafe { sys::napi_get_element(raw_env, v_raw(v), i, &mut item) };
    if status != sys::Status::napi_ok {
      return Err(RnError::invalid(format!("{what}[{i}] could not be read")));
    }
    out.push(unsafe { Unknown::from_raw_unchecked(raw_env, item) });
  }
  Ok(out)
}

fn v_raw(v: &Unknown) -> sys::napi_value {
  use napi::JsValue;
  v.raw()
}

fn v_env(v: &Unknown) -> sys::napi_env {
  use napi::JsValue;
  v.value().env
}

/// A finite number.
pub fn number(v: &Unknown, what: &str) -> RnResult<f64> {
  if type_of(v) != ValueType::Number {
    return Err(RnError::invalid(format!(
      "{what} must be a number, got {}",
      type_name(v)
    )));
  }
  let n =
    unsafe { v.cast::<f64>() }.map_err(|e| RnError::invalid(format!("{what}: {}", e.reason)))?;
  if !n.is_finite() {
    return Err(RnError::invalid(format!(
      "{what} must be a finite number, got {n}"
    )));
  }
  Ok(n)
}

/// A whole number within the exactly-representable range of a JS number.
pub fn integer(v: &Unknown, what: &str) -> RnResult<i64> {
  let n = number(v, what)?;
  if n.fract() != 0.0 || n.abs() > 9_007_199_254_740_991.0 {
    return Err(RnError::invalid(format!(
      "{what} must be a safe integer, got {n}"
    )));
  }
  Ok(n as i64)
}

/// Validates a TTL in seconds (fractions allowed, finite, > 0) and rounds it up to whole
/// milliseconds, so a tiny TTL never becomes "no expiry".
pub fn ttl_seconds(n: f64, what: &str) -> RnResult<Duration> {
  if !n.is_finite() || n <= 0.0 {
    return Err(RnError::invalid(format!(
      "{what} must be a finite number of seconds > 0, got {n}"
    )));
  }
  if n > 1.0e12 {
    return Err(RnError::invalid(format!(
      "{what} is too large: {n} seconds"
    )));
  }
  let ms = (n * 1000.0).ceil().max(1.0);
  Ok(Duration::from_millis(ms as u64))
}

/// A TTL argument (seconds): `undefined`/`null` means none.
pub fn ttl(v: Option<&Unknown>, what: &str) -> RnResult<Option<Duration>> {
  match v {
    None => Ok(None),
    Some(v) if matches!(type_of(v), ValueType::Undefined | ValueType::Null) => Ok(None),
    Some(v) => {
      if type_of(v) != ValueType::Number {
        return Err(RnError::invalid(format!(
          "{what} must be a number of seconds, got {}",
          type_name(v)
        )));
      }
      let n = unsafe { v.cast::<f64>() }.map_err(|e| RnError::invalid(e.reason.clone()))?;
      ttl_seconds(n, what).map(Some)
    }
  }
}

/// A required TTL argument (seconds): `undefined` is refused like any other bad value.
pub fn required_ttl(v: &Unknown, what: &str) -> RnResult<Duration> {
  ttl(Some(v), what)?.ok_or_else(|| {
    RnError::invalid(format!(
      "{what} must be a finite number of seconds > 0, got undefined"
    ))
  })
}

/// A duration as whole milliseconds, for a script argument.
pub fn millis(d: Duration) -> String {
  d.as_millis().to_string()
}

/// True for `undefined`/`null`/absent.
pub fn is_absent(v: Option<&Unknown>) -> bool {
  v.is_none_or(|v| matches!(type_of(v), ValueType::Undefined | ValueType::Null))
}

/// The bytes of a Buffer (or any Uint8Array).
pub fn bytes(v: &Unknown, what: &str) -> RnResult<Vec<u8>> {
  let mut is_buffer = false;
  unsafe { sys::napi_is_buffer(v_env(v), v_raw(v), &mut is_buffer) };
  if !is_buffer {
    return Err(RnError::invalid(format!(
      "{what} must be a Buffer, got {}",
      type_name(v)
    )));
  }
  let buf =
    unsafe { v.cast::<Buffer>() }.map_err(|e| RnError::invalid(format!("{what}: {}", e.reason)))?;
  Ok(buf.to_vec())
}

/// A raw command argument: a string, a finite number (sent as its decimal text) or a Buffer.
pub fn command_arg(v: &Unknown, what: &str) -> RnResult<Vec<u8>> {
  match type_of(v) {
    ValueType::String => Ok(string(v, what)?.into_bytes()),
    ValueType::Number => {
      let n = number(v, what)?;
      Ok(format_number(n).into_bytes())
    }
    ValueType::Object => bytes(v, what),
    _ => Err(RnError::invalid(format!(
      "{what} must be a string, number or Buffer, got {}",
      type_name(v)
    ))),
  }
}

/// An options object as JSON, for `parse_options`: `undefined` properties are left out,
/// Buffers (and Uint8Arrays) become `{ "type": "Buffer", "data": [...] }` as `toJSON`
/// writes them, and anything JSON cannot hold exactly (NaN, Infinity, functions, symbols,
/// bigints, cycles) is `ERR_INVALID_ARGUMENT` naming the option.
pub fn json_value(v: &Unknown, what: &str) -> RnResult<serde_json::Value> {
  json_value_at(v, what, 0)
}

fn json_value_at(v: &Unknown, what: &str, depth: usize) -> RnResult<serde_json::Value> {
  use serde_json::Value;
  if depth > 16 {
    return Err(RnError::invalid(format!("{what} is nested too deeply")));
  }
  match type_of(v) {
    ValueType::Undefined | ValueType::Null => Ok(Value::Null),
    ValueType::Boolean => unsafe { v.cast::<bool>() }
      .map(Value::Bool)
      .map_err(|e| RnError::invalid(format!("{what}: {}", e.reason))),
    ValueType::Number => {
      let n = number(v, what)?;
      serde_json::Number::from_f64(n)
        .map(Value::Number)
        .ok_or_else(|| RnError::invalid(format!("{what} must be a finite number")))
    }
    ValueType::String => string(v, what).map(Value::String),
    ValueType::Object => {
      let raw_env = v_env(v);
      let mut flag = false;
      unsafe { sys::napi_is_buffer(raw_env, v_raw(v), &mut flag) };
      if flag {
        let data = bytes(v, what)?;
        return Ok(serde_json::json!({ "type": "Buffer", "data": data }));
      }
      unsafe { sys::napi_is_array(raw_env, v_raw(v), &mut flag) };
      if flag {
        return array(v, what)?
          .iter()
          .enumerate()
          .map(|(i, item)| json_value_at(item, &format!("{what}[{i}]"), depth + 1))
          .collect::<RnResult<Vec<_>>>()
          .map(Value::Array);
      }
      let mut names = std::ptr::null_mut();
      if unsafe { sys::napi_get_property_names(raw_env, v_raw(v), &mut names) }
        != sys::Status::napi_ok
      {
        return Err(RnError::invalid(format!("{what} could not be read")));
      }
      let names = unsafe { Unknown::from_raw_unchecked(raw_env, names) };
      let mut map = serde_json::Map::new();
      for name in array(&names, what)? {
        let name = string(&name, what)?;
        let cname = std::ffi::CString::new(name.as_str())
          .map_err(|_| RnError::invalid(format!("{what} has an invalid property name")))?;
        let mut item = std::ptr::null_mut();
        if unsafe { sys::napi_get_named_property(raw_env, v_raw(v), cname.as_ptr(), &mut item) }
          != sys::Status::napi_ok
        {
          return Err(RnError::invalid(format!("{what}.{name} could not be read")));
        }
        let item = unsafe { Unknown::from_raw_unchecked(raw_env, item) };
        if type_of(&item) == ValueType::Undefined {
          continue;
        }
        let value = json_value_at(&item, &format!("{what}.{name}"), depth + 1)?;
        map.insert(name, value);
      }
      Ok(Value::Object(map))
    }
    _ => Err(RnError::invalid(format!(
      "{what} must not be {}",
      type_name(v)
    ))),
  }
}

/// A service's options object (`undefined`/`null`: none), with unknown keys refused.
pub fn options_object(
  v: Option<&Unknown>,
  what: &str,
  known: &[&str],
) -> RnResult<serde_json::Map<String, serde_json::Value>> {
  let Some(v) = v.filter(|v| !matches!(type_of(v), ValueType::Undefined | ValueType::Null)) else {
    return Ok(serde_json::Map::new());
  };
  if let Some(map) = known_properties(v, what, known)? {
    return Ok(map);
  }
  match json_value(v, what)? {
    serde_json::Value::Object(map) => {
      if let Some(k) = map.keys().find(|k| !known.contains(&k.as_str())) {
        return Err(RnError::invalid(format!(
          "unknown option `{k}` in {what} (known: {})",
          known.join(", ")
        )));
      }
      Ok(map)
    }
    _ => Err(RnError::invalid(format!("{what} must be an object"))),
  }
}

/// The fast path of `options_object` (it runs on every call of a hot method): reads the
/// object's own properties, each once; `None` when one of them is not a known option (or
/// the value is not a plain object), so the slow path can name the unknown one. Known
/// options a class instance has as getters on its prototype are read all the same.
fn known_properties(
  v: &Unknown,
  what: &str,
  known: &[&str],
) -> RnResult<Option<serde_json::Map<String, serde_json::Value>>> {
  if type_of(v) != ValueType::Object {
    return Ok(None);
  }
  let raw_env = v_env(v);
  let obj = v_raw(v);
  let mut special = false;
  unsafe { sys::napi_is_array(raw_env, obj, &mut special) };
  if special {
    return Ok(None);
  }
  unsafe { sys::napi_is_buffer(raw_env, obj, &mut special) };
  if special {
    return Ok(None);
  }
  let mut names = std::ptr::null_mut();
  let mut count = 0u32;
  unsafe {
    if sys::napi_get_property_names(raw_env, obj, &mut names) != sys::Status::napi_ok
      || sys::napi_get_array_length(raw_env, names, &mut count) != sys::Status::napi_ok
    {
      return Ok(None);
    }
  }
  let mut map = serde_json::Map::new();
  let mut own = Vec::with_capacity(count as usize);
  for i in 0..count {
    let mut key = std::ptr::null_mut();
    if unsafe { sys::napi_get_element(raw_env, names, i, &mut key) } != sys::Status::napi_ok {
      return Ok(None);
    }
    let mut buf = [0u8; 64];
    let mut len = 0usize;
    let status = unsafe {
      sys::napi_get_value_string_utf8(raw_env, key, buf.as_mut_ptr().cast(), buf.len(), &mut len)
    };
    // not a string, or longer than any option: the slow path says which
    let Some(name) = known.iter().find(|k| {
      status == sys::Status::napi_ok && len < buf.len() - 1 && k.as_bytes() == &buf[..len]
    }) else {
      return Ok(None);
    };
    let mut item = std::ptr::null_mut();
    if unsafe { sys::napi_get_property(raw_env, obj, key, &mut item) } != sys::Status::napi_ok {
      return Err(getter_threw(raw_env, what, name));
    }
    own.push(*name);
    put_option(&mut map, raw_env, item, what, name)?;
  }
  if own.len() < known.len() && !is_plain_object(raw_env, obj) {
    // a class instance: known options may be getters on its prototype
    for name in known.iter().filter(|n| !own.contains(n)) {
      let Ok(cname) = std::ffi::CString::new(*name) else {
        continue;
      };
      let mut present = false;
      unsafe { sys::napi_has_named_property(raw_env, obj, cname.as_ptr(), &mut present) };
      if !present {
        continue;
      }
      let mut item = std::ptr::null_mut();
      let status = unsafe { sys::napi_get_named_property(raw_env, obj, cname.as_ptr(), &mut item) };
      if status != sys::Status::napi_ok {
        return Err(getter_threw(raw_env, what, name));
      }
      put_option(&mut map, raw_env, item, what, name)?;
    }
  }
  Ok(Some(map))
}

/// A getter that throws: a bad option, not an exception escaping the call.
fn getter_threw(env: sys::napi_env, what: &str, name: &str) -> RnError {
  clear_exception(env);
  RnError::invalid(format!(
    "{what}.{name} could not be read (its getter threw)"
  ))
}

/// Adds option `name` (a JS value) to `map`; `undefined` is left out.
fn put_option(
  map: &mut serde_json::Map<String, serde_json::Value>,
  env: sys::napi_env,
  item: sys::napi_value,
  what: &str,
  name: &str,
) -> RnResult<()> {
  let item = unsafe { Unknown::from_raw_unchecked(env, item) };
  let value = match type_of(&item) {
    ValueType::Undefined => return Ok(()),
    // the common cases, without building the option's path for error messages
    ValueType::Number => match unsafe { item.cast::<f64>() }
      .ok()
      .and_then(serde_json::Number::from_f64)
    {
      Some(n) => serde_json::Value::Number(n),
      None => json_value_at(&item, &format!("{what}.{name}"), 1)?,
    },
    ValueType::String => match unsafe { item.cast::<String>() } {
      Ok(s) => serde_json::Value::String(s),
      Err(_) => json_value_at(&item, &format!("{what}.{name}"), 1)?,
    },
    _ => json_value_at(&item, &format!("{what}.{name}"), 1)?,
  };
  map.insert(name.to_string(), value);
  Ok(())
}

/// Whether `obj` is a plain object (`{...}`, or one without a prototype): its prototype is
/// `Object.prototype` or nothing.
fn is_plain_object(env: sys::napi_env, obj: sys::napi_value) -> bool {
  let prototype_of = |v: sys::napi_value| {
    let mut proto = std::ptr::null_mut();
    let ok = unsafe { sys::napi_get_prototype(env, v, &mut proto) } == sys::Status::napi_ok;
    let mut t = sys::ValueType::napi_undefined;
    if ok {
      unsafe { sys::napi_typeof(env, proto, &mut t) };
    }
    (ok && t == sys::ValueType::napi_object).then_some(proto)
  };
  match prototype_of(obj) {
    None => true,
    Some(proto) => prototype_of(proto).is_none(),
  }
}

/// Clears an exception a JS call left pending (so it does not escape the method).
pub fn clear_exception(env: sys::napi_env) {
  let mut pending = false;
  unsafe { sys::napi_is_exception_pending(env, &mut pending) };
  if pending {
    let mut exception = std::ptr::null_mut();
    unsafe { sys::napi_get_and_clear_last_exception(env, &mut exception) };
  }
}

/// An optional positive number of seconds from an options object (`null` = not given).
pub fn option_seconds(
  map: &serde_json::Map<String, serde_json::Value>,
  name: &str,
) -> RnResult<Option<Duration>> {
  match map.get(name) {
    None | Some(serde_json::Value::Null) => Ok(None),
    Some(serde_json::Value::Number(n)) => {
      ttl_seconds(n.as_f64().unwrap_or(f64::NAN), name).map(Some)
    }
    Some(_) => Err(RnError::invalid(format!(
      "option `{name}` must be a number of seconds"
    ))),
  }
}

/// An optional whole number >= `min` from an options object.
pub fn option_count(
  map: &serde_json::Map<String, serde_json::Value>,
  name: &str,
  min: u64,
) -> RnResult<Option<u64>> {
  match map.get(name) {
    None | Some(serde_json::Value::Null) => Ok(None),
    Some(serde_json::Value::Number(n)) => match n.as_f64() {
      Some(f) if f.fract() == 0.0 && f >= min as f64 && f <= 9_007_199_254_740_991.0 => {
        Ok(Some(f as u64))
      }
      _ => Err(RnError::invalid(format!(
        "option `{name}` must be a whole number >= {min}"
      ))),
    },
    Some(_) => Err(RnError::invalid(format!(
      "option `{name}` must be a whole number >= {min}"
    ))),
  }
}

/// An optional non-empty string from an options object.
pub fn option_string(
  map: &serde_json::Map<String, serde_json::Value>,
  name: &str,
) -> RnResult<Option<String>> {
  match map.get(name) {
    None | Some(serde_json::Value::Null) => Ok(None),
    Some(serde_json::Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
    Some(_) => Err(RnError::invalid(format!(
      "option `{name}` must be a non-empty string"
    ))),
  }
}

/// A number as JavaScript's `String(n)` writes it for the values Redis takes.
pub fn format_number(n: f64) -> String {
  if n.fract() == 0.0 && n.abs() < 1e21 {
    format!("{}", n as i128)
  } else {
    format!("{n}")
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn ttl_seconds_accepts_fractions_and_rounds_up_to_milliseconds() {
    assert_eq!(
      ttl_seconds(1.5, "ttl").unwrap(),
      Duration::from_millis(1500)
    );
    assert_eq!(
      ttl_seconds(0.0001, "ttl").unwrap(),
      Duration::from_millis(1)
    );
    assert_eq!(
      ttl_seconds(0.0015, "ttl").unwrap(),
      Duration::from_millis(2)
    );
  }

  #[test]
  fn ttl_seconds_rejects_zero_negative_nan_and_infinity() {
    for bad in [0.0, -1.0, f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 1e13] {
      let e = ttl_seconds(bad, "ttl").unwrap_err();
      assert_eq!(e.code, crate::error::ErrorCode::InvalidArgument, "{bad}");
    }
  }

  #[test]
  fn numbers_are_written_like_javascript() {
    assert_eq!(format_number(10.0), "10");
    assert_eq!(format_number(-3.0), "-3");
    assert_eq!(format_number(1.5), "1.5");
  }

  fn options(v: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
    match v {
      serde_json::Value::Object(map) => map,
      other => panic!("not an object: {other}"),
    }
  }

  #[test]
  fn an_absent_or_null_option_is_not_given() {
    let map = options(serde_json::json!({ "ttlSeconds": null }));
    assert_eq!(option_seconds(&map, "ttlSeconds").unwrap(), None);
    assert_eq!(option_seconds(&map, "other").unwrap(), None);
    assert_eq!(option_count(&map, "ttlSeconds", 1).unwrap(), None);
    assert_eq!(option_string(&map, "ttlSeconds").unwrap(), None);
  }

  #[test]
  fn option_seconds_reads_a_ttl_like_a_ttl_argument() {
    let map = options(serde_json::json!({ "ttlSeconds": 0.25 }));
    assert_eq!(
      option_seconds(&map, "ttlSeconds").unwrap(),
      Some(Duration::from_millis(250))
    );
  }

  #[test]
  fn option_seconds_refuses_zero_and_what_is_not_a_number() {
    for bad in [
      serde_json::json!({ "ttlSeconds": 0 }),
      serde_json::json!({ "ttlSeconds": -2 }),
      serde_json::json!({ "ttlSeconds": "60" }),
      serde_json::json!({ "ttlSeconds": true }),
    ] {
      let e = option_seconds(&options(bad.clone()), "ttlSeconds").unwrap_err();
      assert_eq!(e.code, crate::error::ErrorCode::InvalidArgument, "{bad}");
      assert!(e.message.contains("ttlSeconds"), "{}", e.message);
    }
  }

  #[test]
  fn option_count_takes_whole_numbers_from_the_minimum() {
    let map = options(serde_json::json!({ "limit": 3, "zero": 0 }));
    assert_eq!(option_count(&map, "limit", 1).unwrap(), Some(3));
    assert_eq!(option_count(&map, "zero", 0).unwrap(), Some(0));
  }

  #[test]
  fn option_count_refuses_fractions_values_below_the_minimum_and_non_numbers() {
    for bad in [
      serde_json::json!({ "limit": 1.5 }),
      serde_json::json!({ "limit": 0 }),
      serde_json::json!({ "limit": -1 }),
      serde_json::json!({ "limit": 9_007_199_254_740_993u64 }),
      serde_json::json!({ "limit": "3" }),
    ] {
      let e = option_count(&options(bad.clone()), "limit", 1).unwrap_err();
      assert_eq!(
        e.message, "option `limit` must be a whole number >= 1",
        "{bad}"
      );
    }
  }

  #[test]
  fn option_string_takes_a_non_empty_string_only() {
    let map = options(serde_json::json!({ "name": "jobs", "empty": "", "number": 5 }));
    assert_eq!(
      option_string(&map, "name").unwrap().as_deref(),
      Some("jobs")
    );
    for name in ["empty", "number"] {
      let e = option_string(&map, name).unwrap_err();
      assert_eq!(
        e.message,
        format!("option `{name}` must be a non-empty string")
      );
    }
  }

  #[test]
  fn millis_writes_whole_milliseconds() {
    assert_eq!(millis(Duration::from_millis(1500)), "1500");
    assert_eq!(millis(Duration::from_micros(2500)), "2");
  }

  #[test]
  fn large_and_tiny_numbers_are_written_like_javascript() {
    assert_eq!(format_number(1e20), "100000000000000000000");
    assert_eq!(format_number(0.1), "0.1");
    assert_eq!(format_number(-0.0), "0");
  }

  #[test]
  fn the_largest_ttl_is_a_trillion_seconds() {
    assert_eq!(
      ttl_seconds(1e12, "ttl").unwrap(),
      Duration::from_secs(1_000_000_000_000)
    );
    let e = ttl_seconds(1e12 + 1.0, "ttl").unwrap_err();
    assert!(e.message.contains("too large"), "{}", e.message);
  }
}
