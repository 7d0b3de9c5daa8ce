//! `RedisClient`: connects, verifies the server, and is the connection every service is
//! built on.

use std::collections::HashMap;

use napi::bindgen_prelude::{ClassInstance, PromiseRaw, Unknown};
use napi::Env;
use napi_derive::napi;

use crate::args;
use crate::completion::{complete, reject};
use crate::connection::Connection;
use crate::error::RnError;
use crate::options::parse_options;

/// A connection to Redis, shared by every service built on it.
#[napi]
pub struct RedisClient {
  pub(crate) conn: Connection,
}

#[napi]
impl RedisClient {
  /// Connects and verifies the server (PING) within `connectTimeoutMs`. With no options,
  /// reads REDIS_URL, else REDIS_HOST / REDIS_PORT / REDIS_USERNAME / REDIS_PASSWORD /
  /// REDIS_DB / REDIS_TLS.
  #[napi(
    ts_args_type = "options?: RedisOptions",
    ts_return_type = "Promise<RedisClient>"
  )]
  pub fn connect<'env>(
    env: &'env Env,
    options: Option<Unknown>,
  ) -> napi::Result<PromiseRaw<'env, RedisClient>> {
    let environment: HashMap<String, String> = std::env::vars().collect();
    let options = match options.map(|o| args::json_value(&o, "options")).transpose() {
      Ok(o) => o,
      Err(e) => return reject(env, e),
    };
    let config = match parse_options(options.as_ref(), &environment) {
      Ok(c) => c,
      Err(e) => return reject(env, e),
    };
    complete(env, async move {
      let conn = Connection::open(config).await?;
      Ok(RedisClient { conn })
    })
  }

  /// Closes the connection. Commands already sent still settle; later calls reject with
  /// `ERR_CLIENT_CLOSED`. Closing twice is harmless.
  #[napi(ts_return_type = "Promise<void>")]
  pub fn close<'env>(&self, env: &'env Env) -> napi::Result<PromiseRaw<'env, ()>> {
    self.conn.close();
    complete(env, async { Ok(()) })
  }

  /// True once `close()` was called.
  #[napi(getter)]
  pub fn is_closed(&self) -> bool {
    self.conn.is_closed()
  }

  /// The key prefix this client applies (empty when none).
  #[napi(getter)]
  pub fn key_prefix(&self) -> String {
    self.conn.prefix().to_string()
  }
}

/// The connection of the `RedisClient` handed to a service constructor.
pub fn connection_of(env: &Env, client: Unknown, service: &str) -> Result<Connection, napi::Error> {
  let instance = unsafe { client.cast::<ClassInstance<RedisClient>>() };
  match instance {
    Ok(c) => Ok(c.conn.clone()),
    Err(_) => Err(crate::completion::js_error(
      env,
      &RnError::invalid(format!(
        "new {service}(client) needs a RedisClient from `await RedisClient.connect()`"
      )),
    )),
  }
}
