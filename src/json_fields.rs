//! JSON objects stored one top-level field per hash field, so a merge is an `HSET` of the
//! fields given: atomic, and nothing re-encoded (Lua's cjson would round numbers past 14
//! digits). Used by sessions (`d:<field>`) and the cache (`f:<field>`).

use std::collections::BTreeMap;

use napi::bindgen_prelude::Unknown;
use napi::{Env, JsValue, ValueType};
use redis::Value;
use serde_json::value::RawValue;

use crate::error::{RnError, RnResult};
use crate::json;

/// The top-level fields of a JS object, each as its JSON text (`JSON.stringify` semantics).
pub type ObjectFields = BTreeMap<String, Box<RawValue>>;

fn is_array(v: &Unknown) -> bool {
  let mut result = false;
  unsafe { napi::sys::napi_is_array(v.value().env, v.raw(), &mut result) };
  result
}

/// Whether `v` is a plain object (not null, not an array).
pub fn is_object(v: &Unknown) -> bool {
  v.get_type().ok() == Some(ValueType::Object) && !is_array(v)
}

/// Splits a JS object into its fields; `ERR_INVALID_ARGUMENT` when it is not an object,
/// `ERR_SERIALIZATION` when `JSON.stringify` refuses it.
pub fn object_fields(env: &Env, v: &Unknown, what: &str) -> RnResult<ObjectFields> {
  if !is_object(v) {
    return Err(RnError::invalid(format!("{what} must be an object")));
  }
  let text = json::stringify(env, v)?;
  serde_json::from_str(&text)
    .map_err(|_| RnError::invalid(format!("{what} must serialize to a JSON object")))
}

/// `field, json, field, json, ...` for a script, each field name behind `prefix`.
pub fn field_args(prefix: &str, fields: ObjectFields) -> Vec<Vec<u8>> {
  let mut out = Vec::with_capacity(fields.len() * 2);
  for (k, v) in fields {
    out.push(format!("{prefix}{k}").into_bytes());
    out.push(v.get().as_bytes().to_vec());
  }
  out
}

/// The JSON text of the object whose fields (behind `prefix`) are among a hash's
/// `name, value, ...` pairs (an `HGETALL` reply); other fields are skipped.
pub fn assemble(pairs: &[Value], prefix: &[u8]) -> String {
  let mut text = String::from("{");
  let mut first = true;
  for pair in pairs.chunks(2) {
    let (Value::BulkString(field), Some(Value::BulkString(value))) = (&pair[0], pair.get(1)) else {
      continue;
    };
    let Some(name) = field.strip_prefix(prefix) else {
      continue;
    };
    if !first {
      text.push(',');
    }
    first = false;
    let name = String::from_utf8_lossy(name);
    text.push_str(&serde_json::to_string(&name).unwrap_or_default());
    text.push(':');
    text.push_str(&String::from_utf8_lossy(value));
  }
  text.push('}');
  text
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn assembles_prefixed_fields_into_an_object() {
    let b = |s: &str| Value::BulkString(s.as_bytes().to_vec());
    let pairs = [
      b("d:a"),
      b("1"),
      b("m:ttl"),
      b("5"),
      b("d:q\"x"),
      b("[1,2]"),
    ];
    assert_eq!(assemble(&pairs, b"d:"), r#"{"a":1,"q\"x":[1,2]}"#);
    assert_eq!(assemble(&[], b"d:"), "{}");
  }

  fn bulk(s: &str) -> Value {
    Value::BulkString(s.as_bytes().to_vec())
  }

  #[test]
  fn a_field_without_a_value_or_with_a_value_that_is_not_a_string_is_skipped() {
    let pairs = [
      bulk("d:n"),
      Value::Int(1),
      bulk("d:a"),
      bulk("1"),
      bulk("d:z"),
    ];
    assert_eq!(assemble(&pairs, b"d:"), r#"{"a":1}"#);
  }

  #[test]
  fn an_empty_prefix_takes_every_field() {
    assert_eq!(
      assemble(&[bulk("x"), bulk("true"), bulk("y"), bulk("null")], b""),
      r#"{"x":true,"y":null}"#
    );
  }

  #[test]
  fn field_args_put_each_field_behind_the_prefix_with_its_json() {
    let fields: ObjectFields = serde_json::from_str(r#"{"b":[1, 2],"a":"x"}"#).unwrap();
    let args: Vec<String> = field_args("d:", fields)
      .into_iter()
      .map(|a| String::from_utf8(a).unwrap())
      .collect();
    assert_eq!(args, ["d:a", r#""x""#, "d:b", "[1, 2]"]);
  }

  #[test]
  fn field_args_and_assemble_round_trip_an_object() {
    let text = r#"{"n":12345678901234567890,"s":"é\"","o":{"k":[]}}"#;
    let fields: ObjectFields = serde_json::from_str(text).unwrap();
    let pairs: Vec<Value> = field_args("f:", fields)
      .into_iter()
      .map(Value::BulkString)
      .collect();
    assert_eq!(
      assemble(&pairs, b"f:"),
      r#"{"n":12345678901234567890,"o":{"k":[]},"s":"é\""}"#
    );
  }
}
