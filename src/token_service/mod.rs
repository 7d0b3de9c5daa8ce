//! `TokenService`: refresh tokens (per user, with rotation and reuse detection) and a
//! token blacklist. Tokens are stored as SHA-256 hashes, never as text, so a dump of
//! Redis leaks no live token.
//!
//! Keys (after the client's prefix; `{userId}` is a Redis Cluster hash tag, so a user's
//! keys live on one slot):
//! - `{ns}:refresh:{userId}:<hash>`: a live refresh token; value = its family id
//! - `{ns}:refresh-index:{userId}`: sorted set of the user's token hashes by expiry (ms);
//!   expired entries are removed on every write, so it holds only live tokens
//! - `{ns}:refresh-rotated:{userId}:<hash>`: a token already rotated; value = family id
//! - `{ns}:blacklist:<hash>`: a blacklisted token

use std::sync::LazyLock;

use napi::bindgen_prelude::{PromiseRaw, Unknown};
use napi::Env;
use napi_derive::napi;
use redis::Value;
use sha2::{Digest, Sha256};

use crate::args;
use crate::client::connection_of;
use crate::completion::{complete_with, js_error};
use crate::connection::Connection;
use crate::error::{RnError, RnResult};
use crate::reply::int;
use crate::script::LuaScript;

static STORE: LazyLock<LuaScript> = lua_script!("store.lua");
static ROTATE: LazyLock<LuaScript> = lua_script!("rotate.lua");
static REVOKE: LazyLock<LuaScript> = lua_script!("revoke.lua");
static REVOKE_FAMILY: LazyLock<LuaScript> = LazyLock::new(|| {
  LuaScript::new(
    concat!(module_path!(), "/revoke_family.lua"),
    concat!(
      include_str!("family.lua"),
      include_str!("revoke_family.lua")
    ),
  )
});
static REVOKE_ALL: LazyLock<LuaScript> = lua_script!("revoke_all.lua");

/// Options of `new TokenService(client, options)` (`tokens` in `RedisModule.forRoot`).
#[allow(dead_code)] // read from JS as JSON; this struct declares its TypeScript type
#[napi(object)]
pub struct TokenServiceOptions {
  /// First part of every key of this service. Default `token`.
  pub namespace: Option<String>,
}

/// Options of `storeRefreshToken`.
#[allow(dead_code)] // read from JS as JSON; this struct declares its TypeScript type
#[napi(object)]
pub struct StoreRefreshTokenOptions {
  /// The family (login) this token starts; rotations keep it. Default: a new random id.
  /// Give your session id to tie the login's tokens to its session (see
  /// `SessionService.createSession`'s `tokenFamily`).
  pub family: Option<String>,
}

/// Refresh tokens and a token blacklist, stored hashed.
#[napi]
pub struct TokenService {
  conn: Connection,
  ns: String,
}

/// SHA-256 of a token, as hex.
pub fn token_hash(token: &str) -> String {
  let digest = Sha256::digest(token.as_bytes());
  let mut out = String::with_capacity(64);
  for b in digest {
    out.push_str(&format!("{b:02x}"));
  }
  out
}

/// The checked arguments of a refresh-token call: user id and token hash.
struct UserToken {
  user: String,
  hash: String,
}

fn user_token(user_id: &Unknown, token: &Unknown) -> RnResult<UserToken> {
  Ok(UserToken {
    user: args::key(user_id, "userId")?,
    hash: token_hash(&args::key(token, "token")?),
  })
}

impl TokenService {
  fn token_key(&self, user: &str, hash: &str) -> String {
    self
      .conn
      .key(&format!("{}:refresh:{{{user}}}:{hash}", self.ns))
  }

  fn index_key(&self, user: &str) -> String {
    self
      .conn
      .key(&format!("{}:refresh-index:{{{user}}}", self.ns))
  }

  fn rotated_key(&self, user: &str, hash: &str) -> String {
    self
      .conn
      .key(&format!("{}:refresh-rotated:{{{user}}}:{hash}", self.ns))
  }

  fn blacklist_key(&self, token_hash: &str) -> String {
    self
      .conn
      .key(&format!("{}:blacklist:{token_hash}", self.ns))
  }
}

#[napi]
impl TokenService {
  /// `new TokenService(client, { namespace? })`.
  #[napi(
    constructor,
    ts_args_type = "client: RedisClient, options?: TokenServiceOptions"
  )]
  pub fn new(env: &Env, client: Unknown, options: Option<Unknown>) -> napi::Result<Self> {
    let conn = connection_of(env, client, "TokenService")?;
    let map = args::options_object(options.as_ref(), "TokenService options", &["namespace"])
      .map_err(|e| js_error(env, &e))?;
    let ns = args::option_string(&map, "namespace")
      .map_err(|e| js_error(env, &e))?
      .unwrap_or_else(|| "token".into());
    Ok(TokenService { conn, ns })
  }

  /// Stores a refresh token of `userId` for `expiresIn` seconds, starting a token family
  /// (one login) that rotations continue. Resolves to the family id (`options.family`, or
  /// a new random one).
  #[napi(
    ts_args_type = "userId: string, token: string, expiresIn: number, options?: StoreRefreshTokenOptions",
    ts_return_type = "Promise<string>"
  )]
  pub fn store_refresh_token<'env>(
    &self,
    env: &'env Env,
    user_id: Unknown,
    token: Unknown,
    expires_in: Unknown,
    options: Option<Unknown>,
  ) -> napi::Result<PromiseRaw<'env, String>> {
    let parsed = (|| {
      let ut = user_token(&user_id, &token)?;
      let ttl = args::required_ttl(&expires_in, "expiresIn")?;
      let map = args::options_object(options.as_ref(), "storeRefreshToken options", &["family"])?;
      let family =
        args::option_string(&map, "family")?.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
      Ok((
        self.token_key(&ut.user, &ut.hash),
        self.index_key(&ut.user),
        ut.hash,
        ttl,
        family,
      ))
    })();
    let conn = self.conn.clone();
    complete_with(
      env,
      self.conn.traces(),
      parsed,
      move |(key, index, hash, ttl, family)| async move {
        let ms = ttl.as_millis().to_string();
        STORE
          .run(
            &conn,
            &[&key, &index],
            &[hash.as_bytes(), ms.as_bytes(), family.as_bytes()],
          )
          .await?;
        Ok(family)
      },
    )
  }

  /// Revokes the refresh tokens of one login of `userId` (the family `storeRefreshToken`
  /// resolved to); resolves to how many live tokens were revoked.
  #[napi(
    ts_args_type = "userId: string, family: string",
    ts_return_type = "Promise<number>"
  )]
  pub fn revoke_token_family<'env>(
    &self,
    env: &'env Env,
    user_id: Unknown,
    family: Unknown,
  ) -> napi::Result<PromiseRaw<'env, i64>> {
    let parsed = (|| {
      let user = args::key(&user_id, "userId")?;
      let family = args::key(&family, "family")?;
      Ok((
        self.index_key(&user),
        self.conn.key(&format!("{}:refresh:{{{user}}}:", self.ns)),
        family,
      ))
    })();
    let conn = self.conn.clone();
    complete_with(
      env,
      self.conn.traces(),
      parsed,
      move |(index, base, family)| async move {
        int(
          REVOKE_FAMILY
            .run(&conn, &[&index], &[base.as_bytes(), family.as_bytes()])
            .await?,
        )
      },
    )
  }

  /// Whether this refresh token of `userId` is live (stored, not expired, not revoked or
  /// rotated).
  #[napi(
    ts_args_type = "userId: string, token: string",
    ts_return_type = "Promise<boolean>"
  )]
  pub fn is_refresh_token_valid<'env>(
    &self,
    env: &'env Env,
    user_id: Unknown,
    token: Unknown,
  ) -> napi::Result<PromiseRaw<'env, bool>> {
    let parsed = user_token(&user_id, &token).map(|ut| self.token_key(&ut.user, &ut.hash));
    let conn = self.conn.clone();
    complete_with(env, self.conn.traces(), parsed, move |key| async move {
      conn.exists(&key).await
    })
  }

  /// Revokes one refresh token of `userId` (logout on this device).
  #[napi(
    ts_args_type = "userId: string, token: string",
    ts_return_type = "Promise<void>"
  )]
  pub fn revoke_refresh_token<'env>(
    &self,
    env: &'env Env,
    user_id: Unknown,
    token: Unknown,
  ) -> napi::Result<PromiseRaw<'env, ()>> {
    let parsed = user_token(&user_id, &token).map(|ut| {
      (
        self.token_key(&ut.user, &ut.hash),
        self.index_key(&ut.user),
        ut.hash,
      )
    });
    let conn = self.conn.clone();
    complete_with(
      env,
      self.conn.traces(),
      parsed,
      move |(key, index, hash)| async move {
        REVOKE
          .run(&conn, &[&key, &index], &[hash.as_bytes()])
          .await
          .map(|_| ())
      },
    )
  }

  /// Revokes every refresh token of `userId` (logout everywhere); resolves to how many
  /// live tokens were revoked. Uses the per-user index: no SCAN, no KEYS.
  #[napi(ts_args_type = "userId: string", ts_return_type = "Promise<number>")]
  pub fn revoke_all_refresh_tokens<'env>(
    &self,
    env: &'env Env,
    user_id: Unknown,
  ) -> napi::Result<PromiseRaw<'env, i64>> {
    let parsed = args::key(&user_id, "userId").map(|user| {
      let base = self.token_key(&user, "");
      (self.index_key(&user), base)
    });
    let conn = self.conn.clone();
    complete_with(
      env,
      self.conn.traces(),
      parsed,
      move |(index, base)| async move {
        int(REVOKE_ALL.run(&conn, &[&index], &[base.as_bytes()]).await?)
      },
    )
  }

  /// Atomically replaces `oldToken` with `newToken` (valid for `expiresIn` seconds):
  /// `'rotated'`; `'invalid'` when the old token is unknown or expired; `'reused'` when
  /// the old token was already rotated: someone replayed it, so every token of its
  /// family (the descendants of that login) is revoked.
  #[napi(
    ts_args_type = "userId: string, oldToken: string, newToken: string, expiresIn: number",
    ts_return_type = "Promise<'rotated' | 'reused' | 'invalid'>"
  )]
  pub fn rotate_refresh_token<'env>(
    &self,
    env: &'env Env,
    user_id: Unknown,
    old_token: Unknown,
    new_token: Unknown,
    expires_in: Unknown,
  ) -> napi::Result<PromiseRaw<'env, String>> {
    let parsed = (|| {
      let old = user_token(&user_id, &old_token)?;
      let new_hash = token_hash(&args::key(&new_token, "newToken")?);
      if new_hash == old.hash {
        return Err(RnError::invalid("newToken must differ from oldToken"));
      }
      let ttl = args::required_ttl(&expires_in, "expiresIn")?;
      Ok((
        [
          self.token_key(&old.user, &old.hash),
          self.token_key(&old.user, &new_hash),
          self.index_key(&old.user),
          self.rotated_key(&old.user, &old.hash),
        ],
        [
          old.hash.clone(),
          new_hash,
          ttl.as_millis().to_string(),
          self.token_key(&old.user, ""),
        ],
      ))
    })();
    let conn = self.conn.clone();
    complete_with(
      env,
      self.conn.traces(),
      parsed,
      move |(keys, argv)| async move {
        match ROTATE.run(&conn, &keys, &argv).await? {
          Value::BulkString(b) => Ok(String::from_utf8_lossy(&b).into_owned()),
          Value::SimpleString(s) => Ok(s),
          other => Err(RnError::internal(format!("unexpected reply {other:?}"))),
        }
      },
    )
  }

  /// Blacklists a token (an access token after logout, say) for `ttl` seconds: usually
  /// the token's remaining lifetime.
  #[napi(
    ts_args_type = "token: string, ttl: number",
    ts_return_type = "Promise<void>"
  )]
  pub fn blacklist_token<'env>(
    &self,
    env: &'env Env,
    token: Unknown,
    ttl: Unknown,
  ) -> napi::Result<PromiseRaw<'env, ()>> {
    let parsed = (|| {
      let key = self.blacklist_key(&token_hash(&args::key(&token, "token")?));
      let ttl = args::required_ttl(&ttl, "ttl")?;
      Ok((key, ttl))
    })();
    let conn = self.conn.clone();
    complete_with(
      env,
      self.conn.traces(),
      parsed,
      move |(key, ttl)| async move {
        let mut cmd = redis::cmd("SET");
        cmd.arg(key).arg("1").arg("PX").arg(ttl.as_millis() as u64);
        conn.exec(cmd).await.map(|_| ())
      },
    )
  }

  /// Whether `token` is blacklisted.
  #[napi(ts_args_type = "token: string", ts_return_type = "Promise<boolean>")]
  pub fn is_token_blacklisted<'env>(
    &self,
    env: &'env Env,
    token: Unknown,
  ) -> napi::Result<PromiseRaw<'env, bool>> {
    let parsed = args::key(&token, "token").map(|t| self.blacklist_key(&token_hash(&t)));
    let conn = self.conn.clone();
    complete_with(env, self.conn.traces(), parsed, move |key| async move {
      conn.exists(&key).await
    })
  }

  /// Takes `token` off the blacklist.
  #[napi(ts_args_type = "token: string", ts_return_type = "Promise<void>")]
  pub fn remove_from_blacklist<'env>(
    &self,
    env: &'env Env,
    token: Unknown,
  ) -> napi::Result<PromiseRaw<'env, ()>> {
    let parsed = args::key(&token, "token").map(|t| self.blacklist_key(&token_hash(&t)));
    let conn = self.conn.clone();
    complete_with(env, self.conn.traces(), parsed, move |key| async move {
      let mut cmd = redis::cmd("DEL");
      cmd.arg(key);
      conn.exec(cmd).await.map(|_| ())
    })
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn tokens_are_hashed_with_sha256_hex() {
    assert_eq!(
      token_hash("abc"),
      "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
  }
}
