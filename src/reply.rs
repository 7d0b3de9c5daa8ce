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

  /// The value redis-rs's parser makes of `resp` (one reply on the wire).
  fn wire(resp: &str) -> Value {
    redis::parse_redis_value(resp.as_bytes()).expect("valid RESP")
  }

  #[test]
  fn int_reads_an_integer_reply() {
    assert_eq!(int(Value::Int(-42)), Ok(-42));
  }

  #[test]
  fn int_of_any_other_reply_is_an_internal_error_naming_the_reply() {
    let e = int(Value::BulkString(b"42".to_vec())).unwrap_err();
    assert_eq!(e.code, ErrorCode::Internal);
    assert!(
      e.message.starts_with("expected an integer reply, got "),
      "{}",
      e.message
    );
    assert!(e.message.contains("42"), "{}", e.message);
  }

  #[test]
  fn status_replies_become_their_text() {
    assert_eq!(Reply::from(wire("+PONG\r\n")), Reply::Text("PONG".into()));
    assert_eq!(Reply::from(wire("+OK\r\n")), Reply::Text("OK".into()));
  }

  #[test]
  fn sets_become_arrays_in_server_order() {
    assert_eq!(
      Reply::from(wire("~2\r\n$1\r\nb\r\n:1\r\n")),
      Reply::Array(vec![Reply::Text("b".into()), Reply::Number(1.0)])
    );
  }

  #[test]
  fn maps_become_objects_keyed_by_text_in_server_order() {
    assert_eq!(
      Reply::from(wire(
        "%2\r\n+server\r\n$5\r\nredis\r\n$5\r\nproto\r\n:3\r\n"
      )),
      Reply::Map(vec![
        ("server".into(), Reply::Text("redis".into())),
        ("proto".into(), Reply::Number(3.0)),
      ])
    );
  }

  #[test]
  fn map_values_are_converted_recursively() {
    assert_eq!(
      Reply::from(wire("%1\r\n+m\r\n%1\r\n+inner\r\n*1\r\n_\r\n")),
      Reply::Map(vec![(
        "m".into(),
        Reply::Map(vec![("inner".into(), Reply::Array(vec![Reply::Null]))])
      )])
    );
  }

  #[test]
  fn numeric_map_keys_are_written_as_javascript_would() {
    assert_eq!(
      Reply::from(wire("%2\r\n:7\r\n+int\r\n,1.5\r\n+double\r\n")),
      Reply::Map(vec![
        ("7".into(), Reply::Text("int".into())),
        ("1.5".into(), Reply::Text("double".into())),
      ])
    );
  }

  #[test]
  fn map_keys_that_are_not_text_or_numbers_are_written_in_their_debug_form() {
    assert_eq!(
      Reply::from(wire("%2\r\n_\r\n+nil\r\n#t\r\n+bool\r\n")),
      Reply::Map(vec![
        ("Null".into(), Reply::Text("nil".into())),
        ("Bool(true)".into(), Reply::Text("bool".into())),
      ])
    );
  }

  #[test]
  fn attributes_are_dropped_and_the_reply_they_annotate_is_kept() {
    assert_eq!(
      Reply::from(wire("|1\r\n+key-popularity\r\n:1\r\n$3\r\nval\r\n")),
      Reply::Text("val".into())
    );
  }

  #[test]
  fn doubles_become_numbers() {
    assert_eq!(Reply::from(wire(",3.25\r\n")), Reply::Number(3.25));
    assert_eq!(Reply::from(wire(",inf\r\n")), Reply::Number(f64::INFINITY));
    assert_eq!(
      Reply::from(wire(",-inf\r\n")),
      Reply::Number(f64::NEG_INFINITY)
    );
  }

  #[test]
  fn booleans_stay_booleans() {
    assert_eq!(Reply::from(wire("#t\r\n")), Reply::Bool(true));
    assert_eq!(Reply::from(wire("#f\r\n")), Reply::Bool(false));
  }

  #[test]
  fn verbatim_strings_become_their_text_without_the_format() {
    assert_eq!(
      Reply::from(wire("=15\r\ntxt:Some string\r\n")),
      Reply::Text("Some string".into())
    );
  }

  #[test]
  fn big_numbers_become_their_decimal_text_so_no_digit_is_lost() {
    assert_eq!(
      Reply::from(wire("(3492890328409238509324850943850943825024385\r\n")),
      Reply::Text("3492890328409238509324850943850943825024385".into())
    );
  }

  #[test]
  fn pushes_become_arrays_of_their_data() {
    assert_eq!(
      Reply::from(wire(">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n")),
      Reply::Array(vec![Reply::Text("ch".into()), Reply::Text("hi".into())])
    );
  }

  #[test]
  fn a_server_error_becomes_a_command_error_that_keeps_the_server_text() {
    let Reply::Error(e) = Reply::from(wire("-WRONGTYPE Operation against a key\r\n")) else {
      panic!("expected an error reply")
    };
    assert_eq!(e.code, ErrorCode::RedisCommand);
    assert_eq!(e.message, "WRONGTYPE Operation against a key");
    assert_eq!(e.server_code.as_deref(), Some("WRONGTYPE"));
  }

  #[test]
  fn a_not_now_error_in_a_slot_is_a_connection_error() {
    let Reply::Error(e) = Reply::from(wire("-LOADING Redis is loading the dataset in memory\r\n"))
    else {
      panic!("expected an error reply")
    };
    assert_eq!(e.code, ErrorCode::RedisConnection);
    assert_eq!(e.server_code.as_deref(), Some("LOADING"));
  }

  #[test]
  fn an_error_inside_an_array_stays_in_its_own_slot() {
    assert_eq!(
      Reply::from(wire("*2\r\n:1\r\n-ERR no\r\n")),
      Reply::Array(vec![
        Reply::Number(1.0),
        Reply::Error(RnError {
          code: ErrorCode::RedisCommand,
          message: "ERR no".into(),
          server_code: Some("ERR".into()),
        }),
      ])
    );
  }
}
