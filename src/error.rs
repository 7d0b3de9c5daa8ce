//! The one error type of the crate, and the one place that maps failures to the stable
//! JavaScript `code`s (`RedisErrorCode`).

use std::fmt;

use redis::{ErrorKind, RedisError, ServerError, ServerErrorKind};

/// The stable codes a rejection of this package carries in `error.code`:
/// `ERR_INVALID_ARGUMENT` (bad input from the caller), `ERR_REDIS_CONNECTION` (cannot
/// connect, the connection was lost, or the server is not accepting commands now),
/// `ERR_REDIS_TIMEOUT` (no reply within `commandTimeoutMs`), `ERR_REDIS_AUTH` (wrong
/// password, or no permission), `ERR_REDIS_COMMAND` (the server refused the command),
/// `ERR_SERIALIZATION` (a value is not JSON-serializable, or stored data is not what the
/// method reads), `ERR_CLIENT_CLOSED` (used after `close()`), `ERR_LOCK_NOT_ACQUIRED`
/// (`withLock` could not get the lock), `ERR_INTERNAL` (a bug in this package).
#[napi_derive::napi(string_enum, js_name = "RedisErrorCode")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
  #[napi(value = "ERR_INVALID_ARGUMENT")]
  InvalidArgument,
  #[napi(value = "ERR_REDIS_CONNECTION")]
  RedisConnection,
  #[napi(value = "ERR_REDIS_TIMEOUT")]
  RedisTimeout,
  #[napi(value = "ERR_REDIS_AUTH")]
  RedisAuth,
  #[napi(value = "ERR_REDIS_COMMAND")]
  RedisCommand,
  #[napi(value = "ERR_SERIALIZATION")]
  Serialization,
  #[napi(value = "ERR_CLIENT_CLOSED")]
  ClientClosed,
  #[napi(value = "ERR_LOCK_NOT_ACQUIRED")]
  LockNotAcquired,
  #[napi(value = "ERR_INTERNAL")]
  Internal,
}

impl ErrorCode {
  pub const ALL: [ErrorCode; 9] = [
    ErrorCode::InvalidArgument,
    ErrorCode::RedisConnection,
    ErrorCode::RedisTimeout,
    ErrorCode::RedisAuth,
    ErrorCode::RedisCommand,
    ErrorCode::Serialization,
    ErrorCode::ClientClosed,
    ErrorCode::LockNotAcquired,
    ErrorCode::Internal,
  ];
}

impl ErrorCode {
  pub fn as_str(self) -> &'static str {
    match self {
      ErrorCode::InvalidArgument => "ERR_INVALID_ARGUMENT",
      ErrorCode::RedisConnection => "ERR_REDIS_CONNECTION",
      ErrorCode::RedisTimeout => "ERR_REDIS_TIMEOUT",
      ErrorCode::RedisAuth => "ERR_REDIS_AUTH",
      ErrorCode::RedisCommand => "ERR_REDIS_COMMAND",
      ErrorCode::Serialization => "ERR_SERIALIZATION",
      ErrorCode::ClientClosed => "ERR_CLIENT_CLOSED",
      ErrorCode::LockNotAcquired => "ERR_LOCK_NOT_ACQUIRED",
      ErrorCode::Internal => "ERR_INTERNAL",
    }
  }
}

/// True when `error` is an `Error` thrown or rejected by this package: its `code` is one
/// of `RedisErrorCode`. Narrows the type, so `error.code` needs no cast:
/// `catch (e) { if (isRedisError(e) && e.code === 'ERR_REDIS_CONNECTION') ... }`.
#[napi_derive::napi(
  ts_args_type = "error: unknown",
  ts_return_type = "error is Error & { code: RedisErrorCode }"
)]
#[cfg_attr(test, allow(dead_code))] // called from JS only
pub fn is_redis_error(error: napi::bindgen_prelude::Unknown) -> bool {
  use napi::bindgen_prelude::Object;
  use napi::JsValue;
  if error.get_type().ok() != Some(napi::ValueType::Object) {
    return false;
  }
  let mut is_error = false;
  let status = unsafe { napi::sys::napi_is_error(error.value().env, error.raw(), &mut is_error) };
  if status != napi::sys::Status::napi_ok || !is_error {
    return false;
  }
  let object = unsafe { error.cast::<Object>() };
  let Ok(Some(code)) = object.and_then(|o| o.get::<String>("code")) else {
    return false;
  };
  ErrorCode::ALL.iter().any(|c| c.as_str() == code)
}

impl AsRef<str> for ErrorCode {
  fn as_ref(&self) -> &str {
    self.as_str()
  }
}

/// An error with a stable code and a message fit to show a user (never a password).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RnError {
  pub code: ErrorCode,
  pub message: String,
  /// The server's own error code (`WRONGTYPE`, `NOSCRIPT`, ...) when the server refused.
  pub server_code: Option<String>,
}

pub type RnResult<T> = Result<T, RnError>;

impl RnError {
  pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
    RnError {
      code,
      message: message.into(),
      server_code: None,
    }
  }

  pub fn invalid(message: impl Into<String>) -> Self {
    Self::new(ErrorCode::InvalidArgument, message)
  }

  pub fn connection(message: impl Into<String>) -> Self {
    Self::new(ErrorCode::RedisConnection, message)
  }

  pub fn timeout(message: impl Into<String>) -> Self {
    Self::new(ErrorCode::RedisTimeout, message)
  }

  pub fn closed() -> Self {
    Self::new(
      ErrorCode::ClientClosed,
      "the Redis client was closed; create a new one with RedisClient.connect()",
    )
  }

  pub fn serialization(message: impl Into<String>) -> Self {
    Self::new(ErrorCode::Serialization, message)
  }

  pub fn internal(message: impl Into<String>) -> Self {
    Self::new(ErrorCode::Internal, message)
  }

  /// Prefixes the message with context (for example `connect to 127.0.0.1:6379`).
  pub fn context(mut self, what: &str) -> Self {
    self.message = format!("{what}: {}", self.message);
    self
  }
}

impl fmt::Display for RnError {
  fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    write!(f, "{} ({})", self.message, self.code.as_str())
  }
}

impl std::error::Error for RnError {}

/// A server reply that means "not now": the server did not run the command and will take
/// it later. A script is running (`BUSY`), the dataset is loading (`LOADING`), a cluster
/// slot is migrating or the cluster is down (`TRYAGAIN`, `CLUSTERDOWN`), the replica lost
/// its master (`MASTERDOWN`), or the server became a replica in a failover (`READONLY`).
/// These are outages, not mistakes of the caller: they map to `ERR_REDIS_CONNECTION`,
/// and since the command did not run, sending it again is always safe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotNow {
  Busy,
  Loading,
  TryAgain,
  ClusterDown,
  MasterDown,
  ReadOnly,
}

impl NotNow {
  fn of_kind(kind: ServerErrorKind) -> Option<NotNow> {
    match kind {
      ServerErrorKind::BusyLoading => Some(NotNow::Loading),
      ServerErrorKind::TryAgain => Some(NotNow::TryAgain),
      ServerErrorKind::ClusterDown => Some(NotNow::ClusterDown),
      ServerErrorKind::MasterDown => Some(NotNow::MasterDown),
      ServerErrorKind::ReadOnly => Some(NotNow::ReadOnly),
      _ => None,
    }
  }

  /// `BUSY` is the one "not now" reply redis-rs has no kind for (an extension code).
  fn of_extension(code: Option<&str>) -> Option<NotNow> {
    (code == Some("BUSY")).then_some(NotNow::Busy)
  }

  /// The "not now" meaning of an error reply inside a pipeline, if it has one.
  pub fn of_reply(err: &ServerError) -> Option<NotNow> {
    match err.kind() {
      Some(kind) => NotNow::of_kind(kind),
      None => NotNow::of_extension(Some(err.code())),
    }
  }

  /// The "not now" meaning of a redis-rs error, if it has one.
  pub fn of(err: &RedisError) -> Option<NotNow> {
    match err.kind() {
      ErrorKind::Server(kind) => NotNow::of_kind(kind),
      ErrorKind::Extension => NotNow::of_extension(err.code()),
      _ => None,
    }
  }
}

/// Classifies a redis-rs error into one of our codes. This is the only place that looks
/// at redis-rs error kinds.
pub fn classify(err: &RedisError) -> ErrorCode {
  if let Some(code) = err.code() {
    if matches!(code, "NOAUTH" | "WRONGPASS" | "NOPERM") {
      return ErrorCode::RedisAuth;
    }
  }
  if err.is_timeout() {
    return ErrorCode::RedisTimeout;
  }
  if NotNow::of(err).is_some() {
    return ErrorCode::RedisConnection;
  }
  match err.kind() {
    ErrorKind::AuthenticationFailed => ErrorCode::RedisAuth,
    ErrorKind::Server(redis::ServerErrorKind::NoPerm) => ErrorCode::RedisAuth,
    ErrorKind::Server(_) | ErrorKind::Extension => ErrorCode::RedisCommand,
    ErrorKind::Io | ErrorKind::Parse | ErrorKind::ClusterConnectionNotFound => {
      ErrorCode::RedisConnection
    }
    ErrorKind::InvalidClientConfig => ErrorCode::InvalidArgument,
    _ => {
      if err.is_connection_dropped() || err.is_io_error() {
        ErrorCode::RedisConnection
      } else {
        ErrorCode::Internal
      }
    }
  }
}

/// True when the connection that produced this error can no longer be used.
pub fn is_fatal_for_connection(err: &RedisError) -> bool {
  err.is_unrecoverable_error() || err.is_connection_dropped() || err.is_io_error()
}

impl From<RedisError> for RnError {
  fn from(err: RedisError) -> Self {
    let code = classify(&err);
    match err.code() {
      // A server reply: keep its text as the server wrote it ("WRONGTYPE Operation ...").
      Some(server_code) => {
        let message = match err.detail() {
          Some(detail) => format!("{server_code} {detail}"),
          None => server_code.to_string(),
        };
        RnError {
          code,
          message,
          server_code: Some(server_code.to_string()),
        }
      }
      None => RnError::new(code, err.to_string()),
    }
  }
}

impl From<RnError> for napi::Error {
  fn from(err: RnError) -> Self {
    napi::Error::new(napi::Status::GenericFailure, err.to_string())
  }
}

#[cfg(test)]
mod tests {
  use super::*;
  use std::io;

  fn server_error(text: &str) -> RedisError {
    // Build the error the way the parser does, from a RESP error line.
    let reply = format!("-{text}\r\n");
    let value = redis::parse_redis_value(reply.as_bytes()).expect("valid RESP");
    match value {
      redis::Value::ServerError(e) => e.into(),
      other => panic!("expected a server error, got {other:?}"),
    }
  }

  #[test]
  fn every_code_has_its_stable_name() {
    assert_eq!(ErrorCode::InvalidArgument.as_str(), "ERR_INVALID_ARGUMENT");
    assert_eq!(ErrorCode::RedisConnection.as_str(), "ERR_REDIS_CONNECTION");
    assert_eq!(ErrorCode::RedisTimeout.as_str(), "ERR_REDIS_TIMEOUT");
    assert_eq!(ErrorCode::RedisAuth.as_str(), "ERR_REDIS_AUTH");
    assert_eq!(ErrorCode::RedisCommand.as_str(), "ERR_REDIS_COMMAND");
    assert_eq!(ErrorCode::Serialization.as_str(), "ERR_SERIALIZATION");
    assert_eq!(ErrorCode::ClientClosed.as_str(), "ERR_CLIENT_CLOSED");
    assert_eq!(ErrorCode::LockNotAcquired.as_str(), "ERR_LOCK_NOT_ACQUIRED");
    assert_eq!(ErrorCode::Internal.as_str(), "ERR_INTERNAL");
  }

  #[test]
  fn wrongpass_noauth_and_noperm_are_auth_errors() {
    assert_eq!(
      classify(&server_error("WRONGPASS invalid username-password pair")),
      ErrorCode::RedisAuth
    );
    assert_eq!(
      classify(&server_error("NOAUTH Authentication required.")),
      ErrorCode::RedisAuth
    );
    assert_eq!(
      classify(&server_error("NOPERM this user has no permissions")),
      ErrorCode::RedisAuth
    );
  }

  #[test]
  fn other_server_replies_are_command_errors_with_their_text() {
    let err = server_error("WRONGTYPE Operation against a key holding the wrong kind of value");
    assert_eq!(classify(&err), ErrorCode::RedisCommand);
    let mapped = RnError::from(err);
    assert_eq!(
      mapped.message,
      "WRONGTYPE Operation against a key holding the wrong kind of value"
    );
    assert_eq!(mapped.server_code.as_deref(), Some("WRONGTYPE"));
    assert_eq!(
      classify(&server_error("ERR unknown command 'NOPE'")),
      ErrorCode::RedisCommand
    );
  }

  #[test]
  fn io_failures_are_connection_errors_and_timeouts_are_timeouts() {
    let refused = RedisError::from(io::Error::from(io::ErrorKind::ConnectionRefused));
    assert_eq!(classify(&refused), ErrorCode::RedisConnection);
    assert!(is_fatal_for_connection(&refused));
    let reset = RedisError::from(io::Error::from(io::ErrorKind::ConnectionReset));
    assert_eq!(classify(&reset), ErrorCode::RedisConnection);
    let timed_out = RedisError::from(io::Error::from(io::ErrorKind::TimedOut));
    assert_eq!(classify(&timed_out), ErrorCode::RedisTimeout);
  }

  #[test]
  fn not_now_replies_are_connection_errors_that_keep_the_server_text() {
    for (text, kind) in [
      (
        "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.",
        NotNow::Busy,
      ),
      (
        "LOADING Redis is loading the dataset in memory",
        NotNow::Loading,
      ),
      (
        "TRYAGAIN Multiple keys request during rehashing of slot",
        NotNow::TryAgain,
      ),
      ("CLUSTERDOWN The cluster is down", NotNow::ClusterDown),
      (
        "MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.",
        NotNow::MasterDown,
      ),
      (
        "READONLY You can't write against a read only replica.",
        NotNow::ReadOnly,
      ),
    ] {
      let err = server_error(text);
      assert_eq!(NotNow::of(&err), Some(kind), "{text}");
      assert_eq!(classify(&err), ErrorCode::RedisConnection, "{text}");
      let mapped = RnError::from(err);
      assert_eq!(mapped.message, text);
      assert_eq!(mapped.code, ErrorCode::RedisConnection);
    }
  }

  #[test]
  fn not_now_is_read_the_same_from_a_pipeline_slot() {
    let value = redis::parse_redis_value(b"-BUSY Redis is busy\r\n").expect("valid RESP");
    let redis::Value::ServerError(e) = value else {
      panic!("expected a server error")
    };
    assert_eq!(NotNow::of_reply(&e), Some(NotNow::Busy));
    let value = redis::parse_redis_value(b"-WRONGTYPE no\r\n").expect("valid RESP");
    let redis::Value::ServerError(e) = value else {
      panic!("expected a server error")
    };
    assert_eq!(NotNow::of_reply(&e), None);
  }

  #[test]
  fn ordinary_server_errors_are_not_not_now() {
    assert_eq!(NotNow::of(&server_error("ERR syntax error")), None);
    assert_eq!(
      NotNow::of(&server_error("NOSCRIPT No matching script")),
      None
    );
    assert_eq!(
      NotNow::of(&server_error("BUSYKEY Target key name already exists.")),
      None
    );
  }

  #[test]
  fn a_server_error_does_not_condemn_the_connection() {
    assert!(!is_fatal_for_connection(&server_error("ERR syntax error")));
  }

  #[test]
  fn context_prefixes_the_message() {
    let e = RnError::connection("refused").context("connect to 127.0.0.1:1");
    assert_eq!(e.message, "connect to 127.0.0.1:1: refused");
    assert_eq!(
      e.to_string(),
      "connect to 127.0.0.1:1: refused (ERR_REDIS_CONNECTION)"
    );
  }

  #[test]
  fn a_code_reads_as_its_stable_name_where_text_is_expected() {
    fn text(s: impl AsRef<str>) -> String {
      s.as_ref().to_string()
    }
    for code in ErrorCode::ALL {
      assert_eq!(text(code), code.as_str());
    }
  }

  #[test]
  fn every_code_is_listed_once_in_all() {
    for (i, a) in ErrorCode::ALL.iter().enumerate() {
      for b in &ErrorCode::ALL[i + 1..] {
        assert_ne!(a, b);
      }
    }
  }

  #[test]
  fn each_constructor_gives_its_code() {
    assert_eq!(RnError::invalid("x").code, ErrorCode::InvalidArgument);
    assert_eq!(RnError::connection("x").code, ErrorCode::RedisConnection);
    assert_eq!(RnError::timeout("x").code, ErrorCode::RedisTimeout);
    assert_eq!(RnError::serialization("x").code, ErrorCode::Serialization);
    assert_eq!(RnError::internal("x").code, ErrorCode::Internal);
    assert_eq!(RnError::invalid("x").server_code, None);
  }

  #[test]
  fn using_a_closed_client_says_how_to_get_a_new_one() {
    let e = RnError::closed();
    assert_eq!(e.code, ErrorCode::ClientClosed);
    assert!(e.message.contains("RedisClient.connect()"), "{}", e.message);
  }

  #[test]
  fn a_server_reply_without_detail_is_its_code_alone() {
    let mapped = RnError::from(server_error("NOSCRIPT"));
    assert_eq!(mapped.message, "NOSCRIPT");
    assert_eq!(mapped.server_code.as_deref(), Some("NOSCRIPT"));
    assert_eq!(mapped.code, ErrorCode::RedisCommand);
  }

  #[test]
  fn an_unknown_server_code_is_a_command_error() {
    let err = server_error("MYMODULE something went wrong");
    assert_eq!(classify(&err), ErrorCode::RedisCommand);
    assert_eq!(NotNow::of(&err), None);
    assert_eq!(RnError::from(err).server_code.as_deref(), Some("MYMODULE"));
  }

  #[test]
  fn a_refused_login_is_an_auth_error() {
    let err = RedisError::from((
      ErrorKind::AuthenticationFailed,
      "Password authentication failed",
    ));
    assert_eq!(classify(&err), ErrorCode::RedisAuth);
  }

  #[test]
  fn an_invalid_client_config_is_an_invalid_argument() {
    let err = RedisError::from((ErrorKind::InvalidClientConfig, "Redis URL did not parse"));
    assert_eq!(classify(&err), ErrorCode::InvalidArgument);
    let mapped = RnError::from(err);
    assert_eq!(mapped.code, ErrorCode::InvalidArgument);
    assert_eq!(mapped.server_code, None);
    assert!(
      mapped.message.contains("Redis URL did not parse"),
      "{}",
      mapped.message
    );
  }

  #[test]
  fn a_reply_of_the_wrong_type_is_an_internal_error() {
    let err = RedisError::from((
      ErrorKind::UnexpectedReturnType,
      "Response was of incompatible type",
    ));
    assert_eq!(classify(&err), ErrorCode::Internal);
    assert!(!is_fatal_for_connection(&err));
  }

  #[test]
  fn a_protocol_parse_error_condemns_the_connection() {
    let err = redis::parse_redis_value(b"?what\r\n").unwrap_err();
    assert_eq!(classify(&err), ErrorCode::RedisConnection);
    assert!(is_fatal_for_connection(&err));
  }

  #[test]
  fn a_would_block_io_error_is_a_timeout() {
    let err = RedisError::from(io::Error::from(io::ErrorKind::WouldBlock));
    assert_eq!(classify(&err), ErrorCode::RedisTimeout);
  }
}
