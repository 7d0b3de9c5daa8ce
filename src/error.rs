//! The one error type of the crate, and the one place that maps failures to the stable
//! JavaScript `code`s of SPEC.md.

use std::fmt;

use redis::{ErrorKind, RedisError};

/// The stable codes a rejection carries in `err.code`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
  InvalidArgument,
  RedisConnection,
  RedisTimeout,
  RedisAuth,
  RedisCommand,
  Serialization,
  ClientClosed,
  Internal,
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
      ErrorCode::Internal => "ERR_INTERNAL",
    }
  }
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
}
