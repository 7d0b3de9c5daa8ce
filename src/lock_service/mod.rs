//! `LockService`: distributed locks with owner tokens and fencing tokens.
//!
//! Keys (after the client's prefix): `lock:{<resource>}` (value: the owner's random token,
//! expiring after the lock's ttl) and `lock-fence:{<resource>}` (the fencing counter; it
//! never expires, so fencing tokens of a resource only ever grow). `{<resource>}` is a
//! Redis Cluster hash tag: a resource's lock and counter share a slot, so taking the lock
//! and the next fencing token is one atomic script on a cluster too.

use std::sync::LazyLock;
use std::time::Duration;

use napi::bindgen_prelude::{PromiseRaw, Unknown};
use napi::{Env, JsValue, ValueType};
use napi_derive::napi;
use redis::Value;

use crate::args;
use crate::client::connection_of;
use crate::completion::complete_with;
use crate::connection::Connection;
use crate::error::{RnError, RnResult};
use crate::js_helper;
use crate::keys;
use crate::reply::int;
use crate::script::LuaScript;

static ACQUIRE: LazyLock<LuaScript> = lua_script!("acquire.lua");
static RELEASE: LazyLock<LuaScript> = lua_script!("release.lua");
static EXTEND: LazyLock<LuaScript> = lua_script!("extend.lua");

/// Options of `acquire` and `withLock`.
#[allow(dead_code)] // read from JS as JSON; this struct declares its TypeScript type
#[napi(object)]
pub struct AcquireOptions {
  /// Further attempts when the lock is held. Default 0 for `acquire`, 50 for `withLock`.
  pub retry_count: Option<u32>,
  /// Pause between attempts, ms (a random part up to half of it is added, so waiting
  /// callers spread out). Default 100.
  pub retry_delay_ms: Option<f64>,
}

/// A held lock. `release()` and `extend()` act only while this owner still holds it.
#[napi]
pub struct Lock {
  conn: Connection,
  key: String,
  resource: String,
  token: String,
  fencing_token: i64,
}

#[napi]
impl Lock {
  /// The resource locked.
  #[napi(getter)]
  pub fn resource(&self) -> String {
    self.resource.clone()
  }

  /// This owner's random token.
  #[napi(getter)]
  pub fn token(&self) -> String {
    self.token.clone()
  }

  /// Grows with every acquisition of the resource: pass it to the storage you protect so
  /// it can refuse writes from an owner whose lock expired meanwhile.
  #[napi(getter)]
  pub fn fencing_token(&self) -> i64 {
    self.fencing_token
  }

  /// Releases the lock; `false` when it was no longer held by this owner (it expired).
  #[napi(ts_return_type = "Promise<boolean>")]
  pub fn release<'env>(&self, env: &'env Env) -> napi::Result<PromiseRaw<'env, bool>> {
    let (conn, key, token) = (self.conn.clone(), self.key.clone(), self.token.clone());
    complete_with(env, self.conn.traces(), Ok(()), |_| async move {
      Ok(int(RELEASE.run(&conn, &[&key], &[token.as_bytes()]).await?)? == 1)
    })
  }

  /// Sets the lock to expire `ttlMs` from now; `false` when it was no longer held by
  /// this owner.
  #[napi(ts_args_type = "ttlMs: number", ts_return_type = "Promise<boolean>")]
  pub fn extend<'env>(
    &self,
    env: &'env Env,
    ttl_ms: Unknown,
  ) -> napi::Result<PromiseRaw<'env, bool>> {
    let parsed = ttl_millis(&ttl_ms);
    let (conn, key, token) = (self.conn.clone(), self.key.clone(), self.token.clone());
    complete_with(env, self.conn.traces(), parsed, move |ms| async move {
      let ms = ms.to_string();
      let reply = EXTEND
        .run(&conn, &[&key], &[token.as_bytes(), ms.as_bytes()])
        .await?;
      Ok(int(reply)? == 1)
    })
  }
}

/// A lock ttl: a finite number of ms > 0, rounded up to whole ms.
fn ttl_millis(v: &Unknown) -> RnResult<u64> {
  let n = args::number(v, "ttlMs")?;
  if n <= 0.0 || n > 1.0e15 {
    return Err(RnError::invalid(format!(
      "ttlMs must be a finite number of milliseconds > 0, got {n}"
    )));
  }
  Ok(n.ceil() as u64)
}

/// The lock and the fencing counter of `resource`, before the client's prefix.
fn lock_names(resource: &str) -> [String; 2] {
  let tag = keys::tag(resource);
  [format!("lock:{tag}"), format!("lock-fence:{tag}")]
}

/// Distributed locks: owner-checked release and extend, fencing tokens.
#[napi]
pub struct LockService {
  conn: Connection,
}

struct Attempt {
  resource: String,
  ttl: u64,
  retries: u64,
  delay: Duration,
}

impl LockService {
  fn attempt(
    &self,
    resource: &Unknown,
    ttl_ms: &Unknown,
    options: Option<&Unknown>,
    default_retries: u64,
  ) -> RnResult<Attempt> {
    let resource = args::key(resource, "resource")?;
    let ttl = ttl_millis(ttl_ms)?;
    let map = args::options_object(options, "lock options", &["retryCount", "retryDelayMs"])?;
    let retries = args::option_count(&map, "retryCount", 0)?.unwrap_or(default_retries);
    let delay = match map.get("retryDelayMs") {
      None | Some(serde_json::Value::Null) => Duration::from_millis(100),
      Some(serde_json::Value::Number(n))
        if n.as_f64().is_some_and(|f| (0.0..1.0e9).contains(&f)) =>
      {
        Duration::from_micros((n.as_f64().unwrap_or(0.0) * 1000.0) as u64)
      }
      Some(_) => {
        return Err(RnError::invalid(
          "option `retryDelayMs` must be a number of ms >= 0",
        ))
      }
    };
    Ok(Attempt {
      resource,
      ttl,
      retries,
      delay,
    })
  }

  fn acquire_promise<'env>(
    &self,
    env: &'env Env,
    parsed: RnResult<Attempt>,
  ) -> napi::Result<PromiseRaw<'env, Option<Lock>>> {
    let conn = self.conn.clone();
    complete_with(env, self.conn.traces(), parsed, move |a| async move {
      let [key, fence] = lock_names(&a.resource).map(|k| conn.key(&k));
      let token = uuid::Uuid::new_v4().to_string();
      let ttl = a.ttl.to_string();
      for attempt in 0..=a.retries {
        if attempt > 0 {
          let jitter = a.delay.mul_f64(rand::random::<f64>() * 0.5);
          tokio::time::sleep(a.delay + jitter).await;
        }
        if let Value::Int(fencing_token) = ACQUIRE
          .run(&conn, &[&key, &fence], &[token.as_bytes(), ttl.as_bytes()])
          .await?
        {
          return Ok(Some(Lock {
            conn,
            key,
            resource: a.resource,
            token,
            fencing_token,
          }));
        }
      }
      Ok(None)
    })
  }
}

#[napi]
impl LockService {
  /// `new LockService(client)`.
  #[napi(constructor, ts_args_type = "client: RedisClient")]
  pub fn new(env: &Env, client: Unknown) -> napi::Result<Self> {
    Ok(LockService {
      conn: connection_of(env, client, "LockService")?,
    })
  }

  /// Takes the lock on `resource` for `ttlMs`, or resolves to `null` when another owner
  /// holds it (after `retryCount` more attempts, default 0).
  #[napi(
    ts_args_type = "resource: string, ttlMs: number, options?: AcquireOptions",
    ts_return_type = "Promise<Lock | null>"
  )]
  pub fn acquire<'env>(
    &self,
    env: &'env Env,
    resource: Unknown,
    ttl_ms: Unknown,
    options: Option<Unknown>,
  ) -> napi::Result<PromiseRaw<'env, Option<Lock>>> {
    let parsed = self.attempt(&resource, &ttl_ms, options.as_ref(), 0);
    self.acquire_promise(env, parsed)
  }

  /// Runs `fn(lock)` holding the lock on `resource` and releases it afterwards, also when
  /// `fn` throws. Waits for the lock (`retryCount` default 50, `retryDelayMs` 100), then
  /// rejects with `ERR_LOCK_NOT_ACQUIRED`. Keep `fn` shorter than `ttlMs`, or `extend`.
  #[napi(
    ts_generic_types = "T",
    ts_args_type = "resource: string, ttlMs: number, fn: (lock: Lock) => T | Promise<T>, options?: AcquireOptions",
    ts_return_type = "Promise<T>"
  )]
  pub fn with_lock<'env>(
    &self,
    env: &'env Env,
    resource: Unknown<'env>,
    ttl_ms: Unknown,
    f: Unknown<'env>,
    options: Option<Unknown>,
  ) -> napi::Result<Unknown<'env>> {
    if f.get_type()? != ValueType::Function {
      return js_helper::rejected(env, RnError::invalid("fn must be a function"));
    }
    let parsed = self.attempt(&resource, &ttl_ms, options.as_ref(), 50);
    let acquired = self.acquire_promise(env, parsed)?;
    let helper = js_helper::function(env, include_str!("with_lock.js"))?;
    let out = js_helper::call(env, helper, &[acquired.raw(), f.raw(), resource.raw()])?;
    Ok(unsafe { Unknown::from_raw_unchecked(env.raw(), out) })
  }
}

#[cfg(test)]
mod tests {
  #[test]
  fn a_lock_and_its_fencing_counter_share_a_slot() {
    for resource in ["report:42", "}x", "a}b", "{a}"] {
      let names = super::lock_names(resource);
      assert_eq!(crate::keys::slots_differ("", &names), None, "{names:?}");
    }
    assert_eq!(
      super::lock_names("r"),
      ["lock:{r}".to_string(), "lock-fence:{r}".to_string()]
    );
  }
}
