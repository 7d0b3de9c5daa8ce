//! `SessionService`: sessions with per-user indexes (multi-device), logout everywhere, a
//! per-user maximum, sliding expiry and online status.
//!
//! Keys (after the client's prefix):
//! - `session:<id>`: a hash. `d:<field>` holds each top-level field of the session data
//!   as JSON (so an update merges fields atomically, without re-encoding anything), and
//!   `m:createdAt`, `m:lastActivityAt`, `m:ttl`, `m:userId` the metadata.
//! - `session-user:<userId>`: sorted set of the user's session ids by expiry (ms). Expired
//!   entries are removed on every write and listing, and it expires with its last
//!   session, so it never grows past the user's live sessions.
//! - `session-online`: sorted set of user ids by last activity (ms), pruned to the online
//!   window on every write.

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
use crate::reply::int;
use crate::script::{LuaScript, NO_ARGS};

macro_rules! script {
  ($name:ident, $file:literal) => {
    static $name: LazyLock<LuaScript> = lua_script!($file);
  };
}
/// A script that may revoke a login's refresh tokens (with TokenService's Lua function).
macro_rules! script_with_tokens {
  ($name:ident, $file:literal) => {
    static $name: LazyLock<LuaScript> = LazyLock::new(|| {
      LuaScript::new(
        concat!(module_path!(), "/", $file),
        concat!(
          include_str!("../token_service/family.lua"),
          include_str!($file)
        ),
      )
    });
  };
}
script_with_tokens!(CREATE, "create.lua");
script!(REFRESH, "refresh.lua");
script!(UPDATE, "update.lua");
script_with_tokens!(DESTROY, "destroy.lua");
script!(INFO, "info.lua");
script!(LIST, "list.lua");
script_with_tokens!(DESTROY_USER, "destroy_user.lua");
script!(ONLINE, "online.lua");

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

impl SessionService {
  fn session_key(&self, id: &str) -> String {
    self.conn.key(&format!("session:{id}"))
  }

  fn index_key(&self, user: &str) -> String {
    self.conn.key(&format!("session-user:{user}"))
  }

  fn online_key(&self) -> String {
    self.conn.key("session-online")
  }

  /// Where TokenService keeps refresh tokens: the key of a token without
  /// `{userId}:<hash>`, and the user's index without `{userId}`.
  fn token_bases(&self) -> (String, String) {
    (
      self.conn.key(&format!("{}:refresh:", self.token_ns)),
      self.conn.key(&format!("{}:refresh-index:", self.token_ns)),
    )
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
      Ok::<_, RnError>((
        args::option_count(&map, "maxSessionsPerUser", 1)?.unwrap_or(0),
        args::option_seconds(&map, "onlineWindowSeconds")?.unwrap_or(DEFAULT_ONLINE_WINDOW),
        args::option_string(&map, "tokenNamespace")?.unwrap_or_else(|| "token".into()),
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
  /// destroyed, atomically. Resolves to the ids of the sessions evicted (their logins'
  /// refresh tokens revoked when they have a `tokenFamily`).
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
      if family.is_some() && user.is_empty() {
        return Err(RnError::invalid(
          "tokenFamily needs data.userId: refresh tokens belong to a user",
        ));
      }
      let keys = [
        self.session_key(&id),
        self.index_key(&user),
        self.online_key(),
      ];
      let (token_key, token_index) = self.token_bases();
      let mut argv = vec![
        args::millis(ttl).into_bytes(),
        id.into_bytes(),
        user.into_bytes(),
        self.max_per_user.to_string().into_bytes(),
        args::millis(self.online_window).into_bytes(),
        self.session_key("").into_bytes(),
        self.index_key("").into_bytes(),
        family.unwrap_or_default().into_bytes(),
        token_key.into_bytes(),
        token_index.into_bytes(),
      ];
      argv.extend(json_fields::field_args("", f.fields));
      Ok((keys, argv))
    })();
    let conn = self.conn.clone();
    complete_with(
      env,
      self.conn.traces(),
      parsed,
      move |(keys, argv)| async move {
        match CREATE.run(&conn, &keys, &argv).await? {
          Value::Array(ids) => Ok(ids.iter().filter_map(text_of).collect()),
          other => Err(RnError::internal(format!(
            "unexpected reply from createSession: {other:?}"
          ))),
        }
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
    let parsed = args::key(&session_id, "sessionId").map(|id| self.session_key(&id));
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
    let (token_key, token_index) = self.token_bases();
    let parsed = args::key(&session_id, "sessionId").map(|id| {
      (
        [self.session_key(&id), self.online_key()],
        [self.index_key(""), id, token_key, token_index],
      )
    });
    let conn = self.conn.clone();
    complete_with(
      env,
      self.conn.traces(),
      parsed,
      move |(keys, argv)| async move { DESTROY.run(&conn, &keys, &argv).await.map(|_| ()) },
    )
  }

  fn refresh<'env>(
    &self,
    env: &'env Env,
    session_id: Unknown,
    ttl: RnResult<Option<Duration>>,
    touch: bool,
  ) -> napi::Result<PromiseRaw<'env, bool>> {
    let parsed = ttl
      .and_then(|ttl| Ok((ttl, args::key(&session_id, "sessionId")?)))
      .map(|(ttl, id)| {
        (
          [self.session_key(&id), self.online_key()],
          [
            self.index_key(""),
            id,
            ttl.map(args::millis).unwrap_or_default(),
            if touch { "1".into() } else { "0".into() },
            args::millis(self.online_window),
          ],
        )
      });
    let conn = self.conn.clone();
    complete_with(
      env,
      self.conn.traces(),
      parsed,
      move |(keys, argv)| async move { Ok(int(REFRESH.run(&conn, &keys, &argv).await?)? == 1) },
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
  /// the session's ttl (sliding expiry), its user marked online. `false` when the session
  /// does not exist.
  #[napi(
    ts_args_type = "sessionId: string",
    ts_return_type = "Promise<boolean>"
  )]
  pub fn touch_session<'env>(
    &self,
    env: &'env Env,
    session_id: Unknown,
  ) -> napi::Result<PromiseRaw<'env, bool>> {
    self.refresh(env, session_id, Ok(None), true)
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
      let key = self.session_key(&id);
      let mut argv = vec![
        self.index_key("").into_bytes(),
        id.into_bytes(),
        mode.as_bytes().to_vec(),
        user.into_bytes(),
      ];
      argv.extend(json_fields::field_args("", f.fields));
      Ok((key, argv))
    })();
    let conn = self.conn.clone();
    complete_with(
      env,
      self.conn.traces(),
      parsed,
      move |(key, argv)| async move { Ok(int(UPDATE.run(&conn, &[&key], &argv).await?)? == 1) },
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
    let parsed = args::key(&session_id, "sessionId").map(|id| (self.session_key(&id), id));
    let conn = self.conn.clone();
    complete_with(
      env,
      self.conn.traces(),
      parsed,
      move |(key, id)| async move {
        let Value::Array(reply) = INFO.run(&conn, &[&key], NO_ARGS).await? else {
          return Err(RnError::internal("unexpected reply"));
        };
        let now = reply.first().and_then(number_of).unwrap_or(0.0);
        if reply.len() < 6 {
          return Ok(None);
        }
        Ok(info_json(&id, now, &reply[1..6]).map(|v| JsonText(v.to_string())))
      },
    )
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
    let parsed = args::key(&user_id, "userId").map(|u| (self.index_key(&u), self.session_key("")));
    let conn = self.conn.clone();
    complete_with(
      env,
      self.conn.traces(),
      parsed,
      move |(index, base)| async move {
        let Value::Array(reply) = LIST.run(&conn, &[&index], &[base.as_bytes()]).await? else {
          return Err(RnError::internal("unexpected reply"));
        };
        let now = reply.first().and_then(number_of).unwrap_or(0.0);
        let list: Vec<serde_json::Value> = reply[1..]
          .chunks(6)
          .filter(|c| c.len() == 6)
          .filter_map(|c| info_json(&text_of(&c[0])?, now, &c[1..6]))
          .collect();
        Ok(JsonText(serde_json::Value::Array(list).to_string()))
      },
    )
  }

  /// Destroys every session of `userId` (logout from all devices); resolves to how many
  /// live sessions were destroyed.
  #[napi(ts_args_type = "userId: string", ts_return_type = "Promise<number>")]
  pub fn destroy_user_sessions<'env>(
    &self,
    env: &'env Env,
    user_id: Unknown,
  ) -> napi::Result<PromiseRaw<'env, i64>> {
    let (token_key, token_index) = self.token_bases();
    let parsed = args::key(&user_id, "userId").map(|u| {
      (
        [self.index_key(&u), self.online_key()],
        [self.session_key(""), u, token_key, token_index],
      )
    });
    let conn = self.conn.clone();
    complete_with(
      env,
      self.conn.traces(),
      parsed,
      move |(keys, argv)| async move { int(DESTROY_USER.run(&conn, &keys, &argv).await?) },
    )
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
    let conn = self.conn.clone();
    let online = self.online_key();
    let window = args::millis(self.online_window);
    complete_with(env, self.conn.traces(), parsed, move |user| async move {
      let reply = ONLINE
        .run(&conn, &[&online], &[window.as_bytes(), user.as_bytes()])
        .await?;
      Ok(int(reply)? == 1)
    })
  }

  /// The users active within `onlineWindowSeconds`.
  #[napi(ts_return_type = "Promise<string[]>")]
  pub fn get_online_users<'env>(
    &self,
    env: &'env Env,
  ) -> napi::Result<PromiseRaw<'env, Vec<String>>> {
    let conn = self.conn.clone();
    let online = self.online_key();
    let window = args::millis(self.online_window);
    complete_with(env, self.conn.traces(), Ok(()), move |_| async move {
      let Value::Array(users) = ONLINE.run(&conn, &[&online], &[window.as_bytes()]).await? else {
        return Err(RnError::internal("unexpected reply"));
      };
      Ok(users.iter().filter_map(text_of).collect())
    })
  }
}
