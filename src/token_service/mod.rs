//! `TokenService`: refresh tokens (per user, with rotation and reuse detection) and a
//! token blacklist. Tokens are stored as SHA-256 hashes, never as text, so a dump of
//! Redis leaks no live token.
//!
//! Keys (after the client's prefix; `<ns>` is the namespace, `{userId}` a Redis Cluster
//! hash tag, so a user's keys live in one slot and every script runs on that slot):
//! - `<ns>:refresh:{userId}:<hash>`: a live refresh token; value = its family id
//! - `<ns>:refresh-index:{userId}`: sorted set of the user's token hashes by expiry (ms);
//!   expired entries are removed on every write, so it holds only live tokens
//! - `<ns>:refresh-rotated:{userId}:<hash>`: a token already rotated; value = family id
//! - `<ns>:blacklist:<hash>`: a blacklisted token
//!
//! The scripts that revoke several tokens (all of a user's, a family, a family on reuse)
//! find the tokens in the index: they are given the tokens' keys too, found by an earlier
//! run (`LuaScript::run_finding_keys`), so they touch only keys in their KEYS.

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
use crate::keys;
use crate::reply::int;
use crate::script::LuaScript;

static STORE: LazyLock<LuaScript> = lua_script!("store.lua");
static REVOKE: LazyLock<LuaScript> = lua_script!("revoke.lua");
/// Lua functions on a user's refresh tokens and their families (also used by
/// SessionService's steps on the user).
pub const FAMILY: &str = include_str!("family.lua");

/// A script that finds the user's tokens in the index (with `family.lua`'s functions).
macro_rules! script_with_tokens {
  ($name:ident, $file:literal) => {
    static $name: LazyLock<LuaScript> = LazyLock::new(|| {
      LuaScript::with_prelude(
        concat!(module_path!(), "/", $file),
        &[crate::script::FOUND_KEYS, FAMILY],
        include_str!($file),
      )
    });
  };
}
script_with_tokens!(ROTATE, "rotate.lua");
script_with_tokens!(REVOKE_FAMILY, "revoke_family.lua");
script_with_tokens!(REVOKE_ALL, "revoke_all.lua");

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

/// The key of a refresh token of `user` (its hash `hash`; without it, the start every
/// token key of the user shares), before the client's prefix.
pub(crate) fn token_name(ns: &str, user: &str, hash: &str) -> String {
  format!("{ns}:refresh:{}:{hash}", keys::tag(user))
}

/// The key of `user`'s token index, before the client's prefix.
pub(crate) fn index_name(ns: &str, user: &str) -> String {
  format!("{ns}:refresh-index:{}", keys::tag(user))
}

fn rotated_name(ns: &str, user: &str, hash: &str) -> String {
  format!("{ns}:refresh-rotated:{}:{hash}", keys::tag(user))
}

/// A namespace that holds the tokens of users: it comes before their hash tag, so it
/// cannot contain `{` or `}` (Redis Cluster would read a hash tag in it).
pub(crate) fn check_namespace(ns: &str, what: &str) -> RnResult<()> {
  if ns.contains(['{', '}']) {
    return Err(RnError::invalid(format!(
      "{what} cannot contain `{{` or `}}` (got `{ns}`): Redis Cluster would read a hash tag in it"
    )));
  }
  Ok(())
}

impl TokenService {
  fn token_key(&self, user: &str, hash: &str) -> String {
    self.conn.key(&token_name(&self.ns, user, hash))
  }

  fn index_key(&self, user: &str) -> String {
    self.conn.key(&index_name(&self.ns, user))
  }

  fn rotated_key(&self, user: &str, hash: &str) -> String {
    self.conn.key(&rotated_name(&self.ns, user, hash))
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
      .and_then(|ns| {
        let ns = ns.unwrap_or_else(|| "token".into());
        check_namespace(&ns, "option `namespace`").map(|_| ns)
      })
      .map_err(|e| js_error(env, &e))?;
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
      Ok((self.index_key(&user), self.token_key(&user, ""), family))
    })();
    let conn = self.conn.clone();
    complete_with(
      env,
      self.conn.traces(),
      parsed,
      move |(index, base, family)| async move {
        int(
          REVOKE_FAMILY
            .run_finding_keys(&conn, &[index], &[base.as_bytes(), family.as_bytes()])
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
        int(
          REVOKE_ALL
            .run_finding_keys(&conn, &[index], &[base.as_bytes()])
            .await?,
        )
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
        match ROTATE.run_finding_keys(&conn, &keys, &argv).await? {
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

  /// Users whose ids are plain, or could break a naive hash tag.
  const USERS: [&str; 6] = ["u1", "42", "}x", "a}b", "{a}", "\\"];

  fn one_slot(keys: &[String]) {
    assert_eq!(crate::keys::slots_differ("app:", keys), None, "{keys:?}");
  }

  #[test]
  fn the_keys_of_each_script_share_a_slot() {
    for user in USERS {
      let ns = "token";
      let hash = token_hash("t");
      let other = token_hash("u");
      // store, revoke
      one_slot(&[token_name(ns, user, &hash), index_name(ns, user)]);
      // rotate, and the tokens a reuse revokes
      one_slot(&[
        token_name(ns, user, &hash),
        token_name(ns, user, &other),
        index_name(ns, user),
        rotated_name(ns, user, &hash),
        token_name(ns, user, &token_hash("w")),
      ]);
    }
  }

  #[test]
  fn a_namespace_with_a_brace_is_refused() {
    assert!(check_namespace("token", "ns").is_ok());
    assert!(check_namespace("a{b", "ns").is_err());
    assert!(check_namespace("a}b", "ns").is_err());
  }

  #[test]
  fn tokens_are_hashed_with_sha256_hex() {
    assert_eq!(
      token_hash("abc"),
      "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
  }
}
