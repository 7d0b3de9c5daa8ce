//! `SessionService`: sessions with per-user indexes (multi-device), logout everywhere, a
//! per-user maximum, sliding expiry and online status.
//!
//! Keys (after the client's prefix; `{...}` is a Redis Cluster hash tag):
//! - `session:{<id>}`: a hash. `d:<field>` holds each top-level field of the session data
//!   as JSON (so an update merges fields atomically, without re-encoding anything), and
//!   `m:createdAt`, `m:lastActivityAt`, `m:ttl`, `m:userId`, `m:family` the metadata;
//!   `m:v` a random version, new with each `createSession` and each change of user.
//! - `session-user:{<userId>}`: sorted set of the user's session ids by expiry (ms).
//!   Expired entries are removed on every write and listing, and it expires with its last
//!   session, so it never grows past the user's live sessions.
//! - `session-user:{<userId>}:meta`: a hash, `s:<id>` = the version (and refresh-token
//!   family) of each indexed session, `active` = the user's last activity (ms).
//! - `session-online:{<n>}`, n = 0..15: the online users, sharded by user id (sorted
//!   sets of user ids by last activity, ms), pruned to the online window on every write,
//!   expiring once nobody in them is online.
//!
//! A session and its user's keys live in different slots, so a call is a few steps, each
//! one atomic script on one slot: the session's, then the user's (index, meta hash and
//! the user's refresh tokens together), then the sessions it evicted and the online shard.
//! Versions keep the steps apart from each other's results: a step on a session or an
//! index entry acts only on the version it was told of (an evicted session re-created
//! meanwhile is left alone), and `listUserSessions` drops index entries whose session is
//! gone or has another version.

use std::sync::LazyLock;
use std::time::Duration;

use napi::bindgen_prelude::{PromiseRaw, Unknown};
use napi::Env;
use napi_derive::napi;
use redis::Value;

use crate::args;
use crate::client::connection_of;
use crate::completion::{complete_with, js_error};
use crate::connection::Connection;
use crate::error::{RnError, RnResult};
use crate::json::JsonText;
use crate::json_fields::{self, ObjectFields};
use crate::keys;
use crate::reply::int;
use crate::script::{LuaScript, NO_ARGS};
use crate::token_service;

macro_rules! script {
  ($name:ident, $file:literal) => {
    static $name: LazyLock<LuaScript> = lua_script!($file);
  };
}
/// A script of a user's step (with the functions on the user's keys and refresh tokens).
macro_rules! user_script {
  ($name:ident, $file:literal) => {
    static $name: LazyLock<LuaScript> = LazyLock::new(|| {
      LuaScript::with_prelude(
        concat!(module_path!(), "/", $file),
        &[
          crate::script::FOUND_KEYS,
          crate::token_service::FAMILY,
          include_str!("users.lua"),
        ],
        include_str!($file),
      )
    });
  };
}
// the session's steps
script!(CREATE, "create.lua");
script!(REFRESH, "refresh.lua");
script!(UPDATE, "update.lua");
script!(DESTROY, "destroy.lua");
script!(DROP, "drop.lua");
script!(INFO, "info.lua");
// the user's steps
user_script!(CREATE_USER, "create_user.lua");
user_script!(REFRESH_USER, "refresh_user.lua");
user_script!(UNLIST, "unlist.lua");
user_script!(DESTROY_USER, "destroy_user.lua");
user_script!(LIST, "list.lua");
user_script!(IS_ONLINE, "is_online.lua");
// the online shards
script!(ONLINE, "online.lua");
script!(ONLINE_MARK, "online_mark.lua");

/// Sessions created and destroyed on one client, in this process
/// (`client.metrics().sessions`).
#[derive(Default)]
pub(crate) struct SessionStats {
  pub created: std::sync::atomic::AtomicU64,
  pub destroyed: std::sync::atomic::AtomicU64,
}

/// Counts `n` sessions destroyed (by a logout, an eviction, a logout everywhere).
fn count_destroyed(conn: &Connection, n: u64) {
  if n > 0 {
    let stats = conn.shared::<SessionStats>("");
    stats
      .destroyed
      .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
  }
}

/// Shards of the online users: `getOnlineUsers` reads them all, a user's activity writes
/// one. More shards spread the writes over more slots; each read costs one call per shard.
const ONLINE_SHARDS: u16 = 16;

const DEFAULT_TTL: Duration = Duration::from_secs(86_400);
const DEFAULT_ONLINE_WINDOW: Duration = Duration::from_secs(300);

/// Options of `new SessionService(client, options)` (`sessions` in `RedisModule.forRoot`).
#[allow(dead_code)] // read from JS as JSON; this struct declares its TypeScript type
#[napi(object)]
pub struct SessionServiceOptions {
  /// Most sessions one user may have; creating one more evicts the user's least recently
  /// active session, atomically. Default: no limit.
  pub max_sessions_per_user: Option<u32>,
  /// A user counts as online this many seconds after their last activity (create or
  /// touch). Default 300.
  pub online_window_seconds: Option<f64>,
  /// The `namespace` of the TokenService whose refresh tokens a session's login holds
  /// (see `createSession`'s `tokenFamily`). Default `token`, TokenService's default.
  pub token_namespace: Option<String>,
}

/// Options of `createSession` (instead of a ttl number).
#[allow(dead_code)] // read from JS as JSON; this struct declares its TypeScript type
#[napi(object)]
pub struct CreateSessionOptions {
  /// Seconds the session lives without activity. Default 86400.
  pub ttl: Option<f64>,
  /// The refresh-token family of this login (what `TokenService.storeRefreshToken`
  /// returned, or the `family` you gave it). Destroying the session, evicting it for
  /// `maxSessionsPerUser` or `destroyUserSessions` then revokes that login's refresh
  /// tokens too, in the same atomic step. Needs `data.userId`.
  pub token_family: Option<String>,
}

/// What `getSessionInfo` and `listUserSessions` tell about a session (times in epoch ms).
#[allow(dead_code)] // built as JSON; this struct declares its TypeScript type
#[napi(object)]
pub struct SessionInfo {
  pub session_id: String,
  pub user_id: Option<String>,
  pub created_at: f64,
  pub last_activity_at: f64,
  pub expires_at: f64,
  /// The session data's `device` field, when it has one.
  #[napi(ts_type = "unknown")]
  pub device: Option<serde_json::Value>,
}

/// Sessions, multi-device, with online status.
#[napi]
pub struct SessionService {
  conn: Connection,
  max_per_user: u64,
  online_window: Duration,
  token_ns: String,
}

/// Session data checked and split into fields: each top-level field as its JSON text.
struct Fields {
  fields: ObjectFields,
  /// The `userId` field: `None` absent, `Some(None)` null, `Some(Some(id))` set.
  user: Option<Option<String>>,
}

fn fields(env: &Env, data: &Unknown, what: &str) -> RnResult<Fields> {
  let fields = json_fields::object_fields(env, data, what)?;
  let user = match fields.get("userId").map(|v| v.get()) {
    None => None,
    Some("null") => Some(None),
    Some(raw) => match serde_json::from_str::<serde_json::Value>(raw) {
      Ok(serde_json::Value::String(s)) if !s.is_empty() => Some(Some(s)),
      Ok(serde_json::Value::Number(n)) => Some(Some(n.to_string())),
      _ => {
        return Err(RnError::invalid(format!(
          "{what}.userId must be a non-empty string or a number"
        )))
      }
    },
  };
  Ok(Fields { fields, user })
}

fn text_of(v: &Value) -> Option<String> {
  match v {
    Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
    Value::SimpleString(s) => Some(s.clone()),
    Value::Int(i) => Some(i.to_string()),
    _ => None,
  }
}

fn number_of(v: &Value) -> Option<f64> {
  match v {
    Value::Int(i) => Some(*i as f64),
    other => text_of(other).and_then(|s| s.parse().ok()),
  }
}

/// One session's metadata from the scripts' replies, as the JSON of a `SessionInfo`.
fn info_json(id: &str, now: f64, m: &[Value]) -> Option<serde_json::Value> {
  let created = number_of(&m[1])?;
  let pttl = number_of(&m[3]).unwrap_or(-2.0);
  if pttl == -2.0 {
    return None;
  }
  let mut info = serde_json::json!({
    "sessionId": id,
    "createdAt": created,
    "lastActivityAt": number_of(&m[2]).unwrap_or(created),
    "expiresAt": if pttl >= 0.0 { now + pttl } else { f64::MAX },
  });
  if let Some(user) = text_of(&m[0]) {
    info["userId"] = serde_json::Value::String(user);
  }
  if let Some(device) = text_of(&m[4]).and_then(|d| serde_json::from_str(&d).ok()) {
    info["device"] = device;
  }
  Some(info)
}

fn session_name(id: &str) -> String {
  format!("session:{}", keys::tag(id))
}

fn index_name(user: &str) -> String {
  format!("session-user:{}", keys::tag(user))
}

fn meta_name(user: &str) -> String {
  format!("session-user:{}:meta", keys::tag(user))
}

fn shard_name(n: u16) -> String {
  format!("session-online:{{{n}}}")
}

/// The online shard of `user`.
fn online_name(user: &str) -> String {
  shard_name(keys::crc16(user.as_bytes()) % ONLINE_SHARDS)
}

/// A new session version: random, so no two are alike.
fn new_version() -> String {
  format!("{:016x}", rand::random::<u64>())
}

/// `[id, version, id, version, ...]` from a script's reply (from `at`).
fn pairs_of(items: &[Value], at: usize) -> Vec<(String, String)> {
  items
    .get(at..)
    .unwrap_or_default()
    .chunks(2)
    .filter_map(|p| {
      Some((
        text_of(&p[0])?,
        p.get(1).and_then(text_of).unwrap_or_default(),
      ))
    })
    .collect()
}

fn array_of(reply: Value, what: &str) -> RnResult<Vec<Value>> {
  match reply {
    Value::Array(items) => Ok(items),
    other => Err(RnError::internal(format!(
      "unexpected reply from {what}: {other:?}"
    ))),
  }
}

/// Where the steps of a call go: every key it may touch, and what the scripts need.
#[derive(Clone)]
struct Layout {
  conn: Connection,
  token_ns: String,
  window: String,
}

impl Layout {
  fn session(&self, id: &str) -> String {
    self.conn.key(&session_name(id))
  }

  /// The keys of a user's step: the index, the meta hash, the token index (the token
  /// keys follow, found by the script).
  fn user(&self, user: &str) -> Vec<String> {
    vec![
      self.conn.key(&index_name(user)),
      self.conn.key(&meta_name(user)),
      self
        .conn
        .key(&token_service::index_name(&self.token_ns, user)),
    ]
  }

  /// The key of a refresh token of `user` without its hash.
  fn token_base(&self, user: &str) -> String {
    self
      .conn
      .key(&token_service::token_name(&self.token_ns, user, ""))
  }

  /// The user's step taking `sessions` (id, version) out of the index, revoking `family`
  /// ('' for none), and with `offline`, taking the user offline when no session is left:
  /// then resolves to when.
  async fn unlist(
    &self,
    user: &str,
    family: &str,
    offline: bool,
    sessions: &[(String, String)],
  ) -> RnResult<Option<String>> {
    let mut argv = vec![
      self.token_base(user),
      family.to_string(),
      if offline { "1" } else { "0" }.to_string(),
      self.window.clone(),
    ];
    for (id, version) in sessions {
      argv.push(id.clone());
      argv.push(version.clone());
    }
    let reply = UNLIST
      .run_finding_keys(&self.conn, &self.user(user), &argv)
      .await?;
    Ok(array_of(reply, "unlist.lua")?.first().and_then(text_of))
  }

  /// The user's online shard: `add` the user's activity at `at`, or `remove` the user
  /// taken offline at `at` (unless active since).
  async fn mark_online(&self, user: &str, op: &str, at: &str) -> RnResult<()> {
    ONLINE_MARK
      .run(
        &self.conn,
        &[self.conn.key(&online_name(user))],
        &[op, user, at, self.window.as_str()],
      )
      .await
      .map(|_| ())
  }

  /// Deletes session `id` if it still is `version`.
  async fn drop_session(&self, id: &str, version: &str) -> RnResult<bool> {
    let dropped = int(
      DROP
        .run(&self.conn, &[self.session(id)], &[version])
        .await?,
    )? == 1;
    count_destroyed(&self.conn, dropped as u64);
    Ok(dropped)
  }

  /// Deletes the sessions a user's step took out of its index; how many were deleted.
  async fn drop_sessions(&self, sessions: &[(String, String)]) -> RnResult<usize> {
    let dropped = futures_util::future::try_join_all(
      sessions
        .iter()
        .map(|(id, version)| self.drop_session(id, version)),
    )
    .await?;
    Ok(dropped.into_iter().filter(|d| *d).count())
  }
}

impl SessionService {
  fn layout(&self) -> Layout {
    Layout {
      conn: self.conn.clone(),
      token_ns: self.token_ns.clone(),
      window: args::millis(self.online_window),
    }
  }
}

#[napi]
impl SessionService {
  /// `new SessionService(client, { maxSessionsPerUser?, onlineWindowSeconds? })`.
  #[napi(
    constructor,
    ts_args_type = "client: RedisClient, options?: SessionServiceOptions"
  )]
  pub fn new(env: &Env, client: Unknown, options: Option<Unknown>) -> napi::Result<Self> {
    let conn = connection_of(env, client, "SessionService")?;
    let parsed = (|| {
      let map = args::options_object(
        options.as_ref(),
        "SessionService options",
        &[
          "maxSessionsPerUser",
          "onlineWindowSeconds",
          "tokenNamespace",
        ],
      )?;
      let token_ns = args::option_string(&map, "tokenNamespace")?.unwrap_or_else(|| "token".into());
      token_service::check_namespace(&token_ns, "option `tokenNamespace`")?;
      Ok::<_, RnError>((
        args::option_count(&map, "maxSessionsPerUser", 1)?.unwrap_or(0),
        args::option_seconds(&map, "onlineWindowSeconds")?.unwrap_or(DEFAULT_ONLINE_WINDOW),
        token_ns,
      ))
    })();
    let (max_per_user, online_window, token_ns) = parsed.map_err(|e| js_error(env, &e))?;
    Ok(SessionService {
      conn,
      max_per_user,
      online_window,
      token_ns,
    })
  }

  /// Creates (or replaces) session `sessionId` with `data` (an object) for `ttl` seconds
  /// (default 86400; or give `{ ttl, tokenFamily }`). When `data.userId` is set, the
  /// session is indexed under that user, the user is marked online, and with
  /// `maxSessionsPerUser` the user's least recently active sessions beyond the maximum are
  /// destroyed. Resolves to the ids of the sessions evicted (their logins' refresh tokens
  /// revoked when they have a `tokenFamily`).
  #[napi(
    ts_args_type = "sessionId: string, data: Record<string, unknown>, ttlOrOptions?: number | CreateSessionOptions",
    ts_return_type = "Promise<string[]>"
  )]
  pub fn create_session<'env>(
    &self,
    env: &'env Env,
    session_id: Unknown,
    data: Unknown,
    ttl: Option<Unknown>,
  ) -> napi::Result<PromiseRaw<'env, Vec<String>>> {
    let parsed = (|| {
      let id = args::key(&session_id, "sessionId")?;
      let (ttl, family) = match ttl.as_ref() {
        Some(o) if args::type_of(o) == napi::ValueType::Object => {
          let map =
            args::options_object(Some(o), "createSession options", &["ttl", "tokenFamily"])?;
          (
            args::option_seconds(&map, "ttl")?,
            args::option_string(&map, "tokenFamily")?,
          )
        }
        other => (args::ttl(other, "ttl")?, None),
      };
      let ttl = ttl.unwrap_or(DEFAULT_TTL);
      let f = fields(env, &data, "data")?;
      let user = f.user.flatten().unwrap_or_default();
      let family = family.unwrap_or_default();
      if !family.is_empty() && user.is_empty() {
        return Err(RnError::invalid(
          "tokenFamily needs data.userId: refresh tokens belong to a user",
        ));
      }
      let version = new_version();
      let mut argv = vec![
        args::millis(ttl).into_bytes(),
        user.clone().into_bytes(),
        family.clone().into_bytes(),
        version.clone().into_bytes(),
      ];
      argv.extend(json_fields::field_args("", f.fields));
      Ok((id, user, family, version, argv, args::millis(ttl)))
    })();
    let layout = self.layout();
    let max = self.max_per_user.to_string();
    complete_with(
      env,
      self.conn.traces(),
      parsed,
      move |(id, user, family, version, argv, ttl_ms)| async move {
        let l = layout;
        // the three steps go out together (one round trip): the session's, the user's
        // (its index entry expires `ttl` after its own clock reading, a few µs after the
        // session's) and the online shard's
        let written = async {
          let reply = array_of(
            CREATE.run(&l.conn, &[l.session(&id)], &argv).await?,
            "create.lua",
          )?;
          l.conn
            .shared::<SessionStats>("")
            .created
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
          let text = |i: usize| reply.get(i).and_then(text_of);
          // the session replaced leaves its previous user's index
          match text(2).filter(|previous| *previous != user) {
            Some(previous) => {
              let old = [(id.clone(), text(3).unwrap_or_default())];
              l.unlist(&previous, "", false, &old).await.map(|_| ())
            }
            None => Ok(()),
          }
        };
        // the user's step: index, evictions, their refresh tokens
        let indexed = async {
          if user.is_empty() {
            return Ok(Vec::new());
          }
          let token_base = l.token_base(&user);
          let expiry = format!("+{ttl_ms}");
          let argv: [&str; 8] = [
            &id,
            &version,
            &family,
            &expiry,
            &max,
            &token_base,
            "1",
            &l.window,
          ];
          let reply = CREATE_USER
            .run_finding_keys(&l.conn, &l.user(&user), &argv)
            .await?;
          Ok::<_, RnError>(pairs_of(&array_of(reply, "create_user.lua")?, 0))
        };
        let online = async {
          if user.is_empty() {
            return Ok(());
          }
          l.mark_online(&user, "add", "").await
        };
        let ((), evicted, ()) = futures_util::future::try_join3(written, indexed, online).await?;
        // the sessions evicted are deleted (unless re-created since)
        l.drop_sessions(&evicted).await?;
        Ok(evicted.into_iter().map(|(id, _)| id).collect())
      },
    )
  }

  /// The data of session `sessionId`, or `null` when it does not exist (or expired).
  #[napi(
    ts_generic_types = "T = Record<string, unknown>",
    ts_args_type = "sessionId: string",
    ts_return_type = "Promise<T | null>"
  )]
  pub fn get_session<'env>(
    &self,
    env: &'env Env,
    session_id: Unknown,
  ) -> napi::Result<PromiseRaw<'env, Option<JsonText>>> {
    let parsed = args::key(&session_id, "sessionId").map(|id| self.conn.key(&session_name(&id)));
    let conn = self.conn.clone();
    complete_with(env, self.conn.traces(), parsed, move |key| async move {
      let mut cmd = redis::cmd("HGETALL");
      cmd.arg(&key);
      let Value::Array(items) = conn.exec(cmd).await? else {
        return Err(RnError::internal("unexpected HGETALL reply"));
      };
      if items.is_empty() {
        return Ok(None);
      }
      let text = json_fields::assemble(&items, b"d:");
      Ok(Some(JsonText(text)))
    })
  }

  /// Destroys session `sessionId` (logout on this device).
  #[napi(ts_args_type = "sessionId: string", ts_return_type = "Promise<void>")]
  pub fn destroy_session<'env>(
    &self,
    env: &'env Env,
    session_id: Unknown,
  ) -> napi::Result<PromiseRaw<'env, ()>> {
    let parsed = args::key(&session_id, "sessionId");
    let layout = self.layout();
    complete_with(env, self.conn.traces(), parsed, move |id| async move {
      let l = layout;
      let reply = array_of(
        DESTROY.run(&l.conn, &[l.session(&id)], NO_ARGS).await?,
        "destroy.lua",
      )?;
      if !matches!(reply.first(), Some(Value::Int(2))) {
        // a session without a user: deleted already (1), or there was none (0)
        count_destroyed(&l.conn, matches!(reply.first(), Some(Value::Int(1))) as u64);
        return Ok(());
      }
      // a user's session: the user's step first (its login's refresh tokens revoked even
      // should the session be gone by the end), then the session itself
      let text = |i: usize| reply.get(i).and_then(text_of).unwrap_or_default();
      let (user, version, family) = (text(1), text(2), text(3));
      let offline = l
        .unlist(&user, &family, true, &[(id.clone(), version.clone())])
        .await?;
      let dropped = l.drop_session(&id, &version);
      let online = async {
        match &offline {
          Some(at) => l.mark_online(&user, "remove", at).await,
          None => Ok(()),
        }
      };
      futures_util::future::try_join(dropped, online)
        .await
        .map(|_| ())
    })
  }

  fn refresh<'env>(
    &self,
    env: &'env Env,
    session_id: Unknown,
    ttl: RnResult<Option<Duration>>,
    touch: bool,
  ) -> napi::Result<PromiseRaw<'env, bool>> {
    let parsed = ttl.and_then(|ttl| Ok((ttl, args::key(&session_id, "sessionId")?)));
    let layout = self.layout();
    complete_with(
      env,
      self.conn.traces(),
      parsed,
      move |(ttl, id)| async move {
        let l = layout;
        let touch = if touch { "1" } else { "0" };
        let argv = [ttl.map(args::millis).unwrap_or_default(), touch.to_string()];
        let reply = array_of(
          REFRESH.run(&l.conn, &[l.session(&id)], &argv).await?,
          "refresh.lua",
        )?;
        if !matches!(reply.first(), Some(Value::Int(1))) {
          return Ok(false);
        }
        let text = |i: usize| reply.get(i).and_then(text_of);
        let Some(user) = text(3) else {
          return Ok(true);
        };
        let (now, expiry, version) = (
          text(1).unwrap_or_default(),
          text(2).unwrap_or_default(),
          text(4).unwrap_or_default(),
        );
        let keys = l.user(&user);
        let argv: [&str; 5] = [&id, &version, &expiry, touch, &l.window];
        let indexed = REFRESH_USER.run(&l.conn, &keys[..2], &argv);
        let online = async {
          if touch == "1" {
            l.mark_online(&user, "add", &now).await
          } else {
            Ok(())
          }
        };
        futures_util::future::try_join(indexed, online).await?;
        Ok(true)
      },
    )
  }

  /// Sets session `sessionId` to expire `ttl` seconds from now (and to keep that ttl for
  /// later touches). `false` when the session does not exist.
  #[napi(
    ts_args_type = "sessionId: string, ttl: number",
    ts_return_type = "Promise<boolean>"
  )]
  pub fn extend_session<'env>(
    &self,
    env: &'env Env,
    session_id: Unknown,
    ttl: Unknown,
  ) -> napi::Result<PromiseRaw<'env, bool>> {
    let ttl = args::required_ttl(&ttl, "ttl").map(Some);
    self.refresh(env, session_id, ttl, false)
  }

  /// Records activity on session `sessionId`: last activity now, expiry pushed back by
  /// the session's ttl (sliding expiry), its user marked online. With `ttl` (seconds), the
  /// session gets that ttl from now on (as with `extendSession`). `false` when the session
  /// does not exist.
  #[napi(
    ts_args_type = "sessionId: string, ttl?: number",
    ts_return_type = "Promise<boolean>"
  )]
  pub fn touch_session<'env>(
    &self,
    env: &'env Env,
    session_id: Unknown,
    ttl: Option<Unknown>,
  ) -> napi::Result<PromiseRaw<'env, bool>> {
    let ttl = args::ttl(ttl.as_ref(), "ttl");
    self.refresh(env, session_id, ttl, true)
  }

  /// Merges `partial` into session `sessionId`'s data, atomically: the fields given are
  /// replaced, the others kept, the expiry unchanged; concurrent updates of different
  /// fields all survive. A changed `userId` moves the session to that user's index.
  /// `false` when the session does not exist.
  #[napi(
    ts_args_type = "sessionId: string, partial: Record<string, unknown>",
    ts_return_type = "Promise<boolean>"
  )]
  pub fn update_session<'env>(
    &self,
    env: &'env Env,
    session_id: Unknown,
    partial: Unknown,
  ) -> napi::Result<PromiseRaw<'env, bool>> {
    let parsed = (|| {
      let id = args::key(&session_id, "sessionId")?;
      let f = fields(env, &partial, "partial")?;
      let (mode, user) = match f.user {
        None => ("keep", String::new()),
        Some(None) => ("clear", String::new()),
        Some(Some(u)) => ("set", u),
      };
      let version = new_version();
      let mut argv = vec![
        mode.as_bytes().to_vec(),
        user.into_bytes(),
        version.clone().into_bytes(),
      ];
      argv.extend(json_fields::field_args("", f.fields));
      Ok((id, version, argv))
    })();
    let layout = self.layout();
    complete_with(
      env,
      self.conn.traces(),
      parsed,
      move |(id, version, argv)| async move {
        let l = layout;
        let reply = array_of(
          UPDATE.run(&l.conn, &[l.session(&id)], &argv).await?,
          "update.lua",
        )?;
        if !matches!(reply.first(), Some(Value::Int(1))) {
          return Ok(false);
        }
        if reply.len() < 6 {
          return Ok(true);
        }
        // a new user: out of the previous user's index, into the new one's
        let text = |i: usize| reply.get(i).and_then(text_of);
        let left = async {
          match text(1) {
            Some(previous) => {
              let old = [(id.clone(), text(2).unwrap_or_default())];
              l.unlist(&previous, "", false, &old).await.map(|_| ())
            }
            None => Ok(()),
          }
        };
        let joined = async {
          let Some(user) = text(3) else {
            return Ok(());
          };
          let (family, expiry) = (text(4).unwrap_or_default(), text(5).unwrap_or_default());
          let token_base = l.token_base(&user);
          let argv: [&str; 8] = [
            &id,
            &version,
            &family,
            &expiry,
            "0",
            &token_base,
            "0",
            &l.window,
          ];
          CREATE_USER
            .run_finding_keys(&l.conn, &l.user(&user), &argv)
            .await
            .map(|_| ())
        };
        futures_util::future::try_join(left, joined).await?;
        Ok(true)
      },
    )
  }

  /// Metadata of session `sessionId`: `{ sessionId, userId?, createdAt, lastActivityAt,
  /// expiresAt, device? }` (epoch ms), or `null` when it does not exist.
  #[napi(
    ts_args_type = "sessionId: string",
    ts_return_type = "Promise<SessionInfo | null>"
  )]
  pub fn get_session_info<'env>(
    &self,
    env: &'env Env,
    session_id: Unknown,
  ) -> napi::Result<PromiseRaw<'env, Option<JsonText>>> {
    let parsed = args::key(&session_id, "sessionId");
    let conn = self.conn.clone();
    complete_with(env, self.conn.traces(), parsed, move |id| async move {
      let key = conn.key(&session_name(&id));
      let reply = array_of(INFO.run(&conn, &[&key], NO_ARGS).await?, "info.lua")?;
      let now = reply.first().and_then(number_of).unwrap_or(0.0);
      if reply.len() < 6 {
        return Ok(None);
      }
      Ok(info_json(&id, now, &reply[1..6]).map(|v| JsonText(v.to_string())))
    })
  }

  /// The live sessions of `userId` (sessions whose data had that `userId`), soonest to
  /// expire first. Expired sessions never show up.
  #[napi(
    ts_args_type = "userId: string",
    ts_return_type = "Promise<SessionInfo[]>"
  )]
  pub fn list_user_sessions<'env>(
    &self,
    env: &'env Env,
    user_id: Unknown,
  ) -> napi::Result<PromiseRaw<'env, JsonText>> {
    let parsed = args::key(&user_id, "userId");
    let layout = self.layout();
    complete_with(env, self.conn.traces(), parsed, move |user| async move {
      let l = layout;
      let keys = l.user(&user);
      let listed = pairs_of(
        &array_of(
          LIST.run(&l.conn, &keys[..2], &[&l.window]).await?,
          "list.lua",
        )?,
        0,
      );
      let infos = futures_util::future::try_join_all(listed.iter().map(|(id, _)| {
        let (l, key) = (&l, l.session(id));
        async move { INFO.run(&l.conn, &[key], NO_ARGS).await }
      }))
      .await?;
      let mut list = Vec::new();
      let mut gone = Vec::new();
      for ((id, version), info) in listed.iter().zip(infos) {
        let info = array_of(info, "info.lua")?;
        let current = info.get(6).and_then(text_of).unwrap_or_default();
        if info.len() < 7 || number_of(&info[2]).is_none() || current != *version {
          // deleted, expired or replaced: this entry never stands again
          gone.push((id.clone(), version.clone()));
          continue;
        }
        if info.get(1).and_then(text_of).as_deref() != Some(user.as_str()) {
          continue;
        }
        let now = info.first().and_then(number_of).unwrap_or(0.0);
        list.extend(info_json(id, now, &info[1..6]));
      }
      if !gone.is_empty() {
        l.unlist(&user, "", false, &gone).await?;
      }
      Ok(JsonText(serde_json::Value::Array(list).to_string()))
    })
  }

  /// Destroys every session of `userId` (logout from all devices); resolves to how many
  /// live sessions were destroyed.
  #[napi(ts_args_type = "userId: string", ts_return_type = "Promise<number>")]
  pub fn destroy_user_sessions<'env>(
    &self,
    env: &'env Env,
    user_id: Unknown,
  ) -> napi::Result<PromiseRaw<'env, i64>> {
    let parsed = args::key(&user_id, "userId");
    let layout = self.layout();
    complete_with(env, self.conn.traces(), parsed, move |user| async move {
      let l = layout;
      let reply = DESTROY_USER
        .run_finding_keys(&l.conn, &l.user(&user), &[l.token_base(&user)])
        .await?;
      let reply = array_of(reply, "destroy_user.lua")?;
      let at = reply.first().and_then(text_of).unwrap_or_default();
      let sessions = pairs_of(&reply, 1);
      let (dropped, ()) = futures_util::future::try_join(
        l.drop_sessions(&sessions),
        l.mark_online(&user, "remove", &at),
      )
      .await?;
      Ok(dropped as i64)
    })
  }

  /// Whether `userId` was active (created or touched a session) within
  /// `onlineWindowSeconds`.
  #[napi(ts_args_type = "userId: string", ts_return_type = "Promise<boolean>")]
  pub fn is_user_online<'env>(
    &self,
    env: &'env Env,
    user_id: Unknown,
  ) -> napi::Result<PromiseRaw<'env, bool>> {
    let parsed = args::key(&user_id, "userId");
    let layout = self.layout();
    complete_with(env, self.conn.traces(), parsed, move |user| async move {
      let l = layout;
      let meta = l.conn.key(&meta_name(&user));
      let reply = IS_ONLINE.run(&l.conn, &[meta], &[&l.window]).await?;
      Ok(int(reply)? == 1)
    })
  }

  /// The users active within `onlineWindowSeconds`.
  #[napi(ts_return_type = "Promise<string[]>")]
  pub fn get_online_users<'env>(
    &self,
    env: &'env Env,
  ) -> napi::Result<PromiseRaw<'env, Vec<String>>> {
    let layout = self.layout();
    complete_with(env, self.conn.traces(), Ok(()), move |_| async move {
      let l = layout;
      let shards = futures_util::future::try_join_all((0..ONLINE_SHARDS).map(|n| {
        let key = l.conn.key(&shard_name(n));
        let l = &l;
        async move { ONLINE.run(&l.conn, &[key], &[&l.window]).await }
      }))
      .await?;
      // least recently active first, as one sorted set would list them
      let mut users: Vec<(f64, String)> = Vec::new();
      for shard in shards {
        for p in array_of(shard, "online.lua")?.chunks(2) {
          if let (Some(user), Some(at)) = (text_of(&p[0]), p.get(1).and_then(number_of)) {
            users.push((at, user));
          }
        }
      }
      users.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
      Ok(users.into_iter().map(|(_, u)| u).collect())
    })
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  /// Ids that are plain, or could break a naive hash tag.
  const IDS: [&str; 6] = ["u1", "42", "}x", "a}b", "{a}", "\\"];

  fn one_slot(keys: &[String]) {
    assert_eq!(keys::slots_differ("app:", keys), None, "{keys:?}");
  }

  #[test]
  fn a_user_step_touches_the_user_and_the_users_tokens_in_one_slot() {
    for user in IDS {
      let mut keys = vec![
        index_name(user),
        meta_name(user),
        token_service::index_name("token", user),
      ];
      keys.push(token_service::token_name("token", user, "ab12"));
      keys.push(token_service::token_name("auth", user, "cd34"));
      one_slot(&keys);
    }
  }

  #[test]
  fn online_shards_are_few_and_every_user_has_one() {
    let shards: std::collections::BTreeSet<String> = (0..1000)
      .map(|i| online_name(&format!("user-{i}")))
      .collect();
    assert_eq!(shards.len(), ONLINE_SHARDS as usize);
    assert_eq!(online_name("u1"), online_name("u1"));
    // the shards spread over different slots
    let slots: std::collections::BTreeSet<u16> = shards
      .iter()
      .map(|s| keys::hash_slot(s.as_bytes()))
      .collect();
    assert_eq!(slots.len(), ONLINE_SHARDS as usize);
  }

  #[test]
  fn keys_keep_their_names() {
    assert_eq!(session_name("s1"), "session:{s1}");
    assert_eq!(index_name("u1"), "session-user:{u1}");
    assert_eq!(meta_name("u1"), "session-user:{u1}:meta");
  }

  #[test]
  fn id_version_pairs_are_read_from_a_reply() {
    let reply = vec![
      Value::BulkString(b"t".to_vec()),
      Value::BulkString(b"s1".to_vec()),
      Value::BulkString(b"v1".to_vec()),
      Value::BulkString(b"s2".to_vec()),
      Value::BulkString(b"v2".to_vec()),
    ];
    assert_eq!(
      pairs_of(&reply, 1),
      vec![("s1".into(), "v1".into()), ("s2".into(), "v2".into())]
    );
    assert!(pairs_of(&reply, 9).is_empty());
  }
}
