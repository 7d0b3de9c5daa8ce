//! Redis replies as JavaScript values, for the raw `command()` and `pipeline()` calls.

use napi::bindgen_prelude::{Buffer, ToNapiValue};
use napi::sys;
use redis::Value;

use crate::completion::create_js_error;
use crate::error::{ErrorCode, RnError};

/// An integer reply; anything else is a bug (`ERR_INTERNAL`).
pub fn int(v: Value) -> crate::error::RnResult<i64> {
  match v {
    Value::Int(i) => Ok(i),
    other => Err(RnError::internal(format!(
      "expected an integer reply, got {other:?}"
    ))),
  }
}

/// An owned, `Send` reply, turned into a JS value on the JS thread.
///
/// Bulk strings become strings when they are UTF-8 and Buffers otherwise; integers and
/// doubles become numbers; nil becomes `null`; arrays and sets become arrays; maps become
/// plain objects; an error reply inside a pipeline becomes an `Error` with code
/// `ERR_REDIS_COMMAND` in its slot.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
  Null,
  Bool(bool),
  Number(f64),
  Text(String),
  Bytes(Vec<u8>),
  Array(Vec<Reply>),
  Map(Vec<(String, Reply)>),
  Error(RnError),
}

impl From<Value> for Reply {
  fn from(v: Value) -> Reply {
    match v {
      Value::Nil => Reply::Null,
      Value::Int(i) => Reply::Number(i as f64),
      Value::BulkString(b) => match String::from_utf8(b) {
        Ok(s) => Reply::Text(s),
        Err(e) => Reply::Bytes(e.into_bytes()),
      },
      Value::Array(items) | Value::Set(items) => {
        Reply::Array(items.into_iter().map(Reply::from).collect())
      }
      Value::SimpleString(s) => Reply::Text(s),
      Value::Okay => Reply::Text("OK".into()),
      Value::Map(pairs) => Reply::Map(
        pairs
          .into_iter()
          .map(|(k, v)| (reply_key(k), Reply::from(v)))
          .collect(),
      ),
      Value::Attribute { data, .. } => Reply::from(*data),
      Value::Double(d) => Reply::Number(d),
      Value::Boolean(b) => Reply::Bool(b),
      Value::VerbatimString { text, .. } => Reply::Text(text),
      Value::BigNumber(n) => Reply::Text(String::from_utf8_lossy(&n).into_owned()),
      Value::Push { data, .. } => Reply::Array(data.into_iter().map(Reply::from).collect()),
      Value::ServerError(e) => Reply::Error(RnError::from(redis::RedisError::from(e))),
      other => Reply::Error(RnError::new(
        ErrorCode::Internal,
        format!("unsupported reply type: {other:?}"),
      )),
    }
  }
}

fn reply_key(v: Value) -> String {
  match Reply::from(v) {
    Reply::Text(s) => s,
    Reply::Number(n) => n.to_string(),
    other => format!("{other:?}"),
  }
}

impl ToNapiValue for Reply {
  unsafe fn to_napi_value(env: sys::napi_env, val: Self) -> napi::Result<sys::napi_value> {
    unsafe {
      match val {
        Reply::Null => <Option<bool> as ToNapiValue>::to_napi_value(env, None),
        Reply::Bool(b) => bool::to_napi_value(env, b),
        Reply::Number(n) => f64::to_napi_value(env, n),
        Reply::Text(s) => String::to_napi_value(env, s),
        Reply::Bytes(b) => Buffer::to_napi_value(env, Buffer::from(b)),
        Reply::Array(items) => Vec::<Reply>::to_napi_value(env, items),
        Reply::Map(pairs) => {
          let mut obj = std::ptr::null_mut();
          napi::check_status!(sys::napi_create_object(env, &mut obj))?;
          for (k, v) in pairs {
            let key = String::to_napi_value(env, k)?;
            let value = Reply::to_napi_value(env, v)?;
            napi::check_status!(sys::napi_set_property(env, obj, key, value))?;
          }
          Ok(obj)
        }
        Reply::Error(e) => create_js_error(env, &e),
      }
    }
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn text_stays_text_and_binary_becomes_bytes() {
    assert_eq!(
      Reply::from(Value::BulkString(b"hi".to_vec())),
      Reply::Text("hi".into())
    );
    assert_eq!(
      Reply::from(Value::BulkString(vec![0xff, 0xfe])),
      Reply::Bytes(vec![0xff, 0xfe])
    );
    assert_eq!(Reply::from(Value::Okay), Reply::Text("OK".into()));
    assert_eq!(Reply::from(Value::Nil), Reply::Null);
    assert_eq!(Reply::from(Value::Int(7)), Reply::Number(7.0));
  }

  #[test]
  fn nested_arrays_are_converted_recursively() {
    let v = Value::Array(vec![Value::Int(1), Value::Array(vec![Value::Nil])]);
    assert_eq!(
      Reply::from(v),
      Reply::Array(vec![Reply::Number(1.0), Reply::Array(vec![Reply::Null])])
    );
  }
}
