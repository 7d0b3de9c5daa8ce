//! `memory://`: an in-process Redis engine behind the connection layer's `Backend`
//! seam. It runs the very `redis::Cmd`s the services build (their Lua scripts included),
//! so every service works unchanged, with Redis's replies and error texts.
//!
//! - `keyspace`: the keys (an ordered map), expiry deadlines and their index, SCAN cursors;
//! - `commands`: the supported commands, their options, replies and errors;
//! - `lua`: EVAL / EVALSHA / SCRIPT with an embedded Lua 5.1;
//! - `pubsub`: PUBLISH and subscriptions within the keyspace;
//! - `glob`: Redis's glob, for MATCH and pattern subscriptions.
//!
//! Every command (and a whole script) runs holding the keyspace's lock, on the thread
//! that polls the call (the JS thread for calls made from JS). A background task on the
//! tokio worker frees expired keys in batches.

pub mod commands;
pub mod glob;
pub mod keyspace;
pub mod longdouble;
pub mod lua;
pub mod pubsub;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use redis::{Cmd, Pipeline, Value};

use crate::connection::PushSender;
use crate::error::{RnError, RnResult};
use keyspace::{now_ms, Db};

/// Expired keys freed per hold of the lock by the background sweep (~0.3 ms of work)...
const SWEEP_BATCH: usize = 1000;
/// ... or fewer, when taking them took this long (a loaded machine).
const SWEEP_SLICE: Duration = Duration::from_millis(1);
/// After freeing this many keys in one round, the sweep asks the allocator to give
/// the emptied pages back at once.
const COLLECT_AFTER: usize = 20_000;
/// How often the background sweep looks for expired keys.
const SWEEP_EVERY: Duration = Duration::from_millis(100);

/// What one lock guards: the keys and the scripts.
struct Shard {
  db: Db,
  scripts: lua::Scripting,
}

/// One keyspace: what the clients of one `connect` (or of one `memory://NAME`) share.
pub struct Store {
  shard: Mutex<Shard>,
  pubsub: pubsub::PubSub,
  started: Instant,
  /// Open clients on this keyspace.
  clients: AtomicUsize,
  /// Set when the last client closed: the sweep frees `taken`, then stops.
  freed: AtomicBool,
  /// The keys of a freed keyspace, dropped a slice at a time by the sweep (on the thread
  /// that allocated them, so their pages go back to the OS).
  taken: Mutex<Option<Db>>,
}

/// The keyspaces named `memory://NAME` that some open client still uses.
static NAMED: LazyLock<Mutex<HashMap<String, Arc<Store>>>> = LazyLock::new(Default::default);

fn named() -> MutexGuard<'static, HashMap<String, Arc<Store>>> {
  NAMED.lock().unwrap_or_else(|e| e.into_inner())
}

/// Drops what was taken out of a keyspace (a million keys take a while to free) on a
/// blocking thread of the runtime, or here when there is no runtime.
pub(crate) fn drop_elsewhere(db: Db) {
  if db.len() < 10_000 {
    drop(db);
    return;
  }
  match tokio::runtime::Handle::try_current() {
    Ok(h) => {
      h.spawn_blocking(move || drop(db));
    }
    Err(_) => {
      let _ = std::thread::Builder::new()
        .name("memory-free".into())
        .spawn(move || drop(db));
    }
  }
}

impl Store {
  fn new() -> RnResult<Arc<Store>> {
    let scripts = lua::Scripting::new()
      .map_err(|e| RnError::internal(format!("memory://: cannot start Lua: {e}")))?;
    Ok(Arc::new(Store {
      shard: Mutex::new(Shard {
        db: Db::default(),
        scripts,
      }),
      pubsub: pubsub::PubSub::default(),
      started: Instant::now(),
      clients: AtomicUsize::new(0),
      freed: AtomicBool::new(false),
      taken: Mutex::new(None),
    }))
  }

  fn lock(&self) -> MutexGuard<'_, Shard> {
    self.shard.lock().unwrap_or_else(|e| e.into_inner())
  }

  /// Runs one command (`args[0]` its name) holding the lock.
  fn run(&self, shard: &mut Shard, args: &[Vec<u8>]) -> Value {
    let stats = commands::ServerStats {
      started: self.started,
      clients: self.clients.load(Ordering::Relaxed),
    };
    let Shard { db, scripts } = shard;
    let mut ctx = commands::Ctx {
      db,
      pubsub: &self.pubsub,
      stats: &stats,
      now: now_ms(),
    };
    let name = args
      .first()
      .map(|n| n.to_ascii_uppercase())
      .unwrap_or_default();
    match name.as_slice() {
      b"EVAL" | b"EVALSHA" | b"EVAL_RO" | b"EVALSHA_RO" if args.len() >= 3 => {
        scripts.eval(&mut ctx, args)
      }
      b"SCRIPT" if args.len() >= 2 => scripts.script(args),
      b"SUBSCRIBE" | b"PSUBSCRIBE" | b"SSUBSCRIBE" | b"UNSUBSCRIBE" | b"PUNSUBSCRIBE"
      | b"MONITOR" | b"MULTI" | b"EXEC" | b"WATCH" | b"HELLO" | b"RESET" | b"QUIT" => {
        commands::unsupported(&args[0])
      }
      _ => commands::execute(&mut ctx, args, false),
    }
  }

  /// Empties the keyspace (the last client closed), tells its subscribers. The keys
  /// are left to the sweep to drop, a slice per turn of its thread.
  fn free(&self) {
    let taken = {
      let mut shard = self.lock();
      if let Ok(fresh) = lua::Scripting::new() {
        shard.scripts = fresh; // drops the cached scripts
      }
      shard.db.take()
    };
    *self.taken.lock().unwrap_or_else(|e| e.into_inner()) = Some(taken);
    self.freed.store(true, Ordering::SeqCst);
    self.pubsub.disconnect_all();
  }
}

/// The arguments of a command as bytes.
fn args_of(cmd: &Cmd) -> Vec<Vec<u8>> {
  cmd
    .args_iter()
    .map(|a| match a {
      redis::Arg::Simple(b) => b.to_vec(),
      _ => b"0".to_vec(),
    })
    .collect()
}

/// The backend of `memory://`.
pub struct Memory {
  store: Arc<Store>,
  name: Option<String>,
  closed: AtomicBool,
  prefix: String,
}

impl Memory {
  /// A fresh keyspace, or (`name`) the one the process's open clients of that name share.
  /// A new keyspace's expiry sweep runs on the JS thread of `env` (the thread whose
  /// calls allocate its keys), or without one on the tokio worker.
  pub fn open(
    name: Option<&str>,
    prefix: &str,
    env: Option<napi::sys::napi_env>,
  ) -> RnResult<Memory> {
    let store = match name {
      None => {
        let s = Store::new()?;
        start_sweep(&s, env);
        s
      }
      Some(n) => {
        let mut all = named();
        match all.get(n) {
          Some(s) => s.clone(),
          None => {
            let s = Store::new()?;
            start_sweep(&s, env);
            all.insert(n.to_string(), s.clone());
            s
          }
        }
      }
    };
    store.clients.fetch_add(1, Ordering::SeqCst);
    Ok(Memory {
      store,
      name: name.map(str::to_string),
      closed: AtomicBool::new(false),
      prefix: prefix.to_string(),
    })
  }

  fn check_open(&self) -> RnResult<()> {
    if self.closed.load(Ordering::SeqCst) {
      return Err(RnError::closed());
    }
    Ok(())
  }

  /// Runs one command; an error reply becomes the command's error, named as the other
  /// backends name it.
  pub fn exec(&self, cmd: &Cmd) -> RnResult<Value> {
    self.check_open()?;
    let args = args_of(cmd);
    let value = {
      let mut shard = self.store.lock();
      self.store.run(&mut shard, &args)
    };
    match value {
      Value::ServerError(e) => Err(crate::connection::labeled(
        RnError::from(redis::RedisError::from(e)),
        cmd,
        &self.prefix,
      )),
      other => Ok(other),
    }
  }

  /// Runs the commands of a pipeline in order, each under the lock; an error reply stays
  /// in its slot.
  pub fn exec_pipeline(&self, pipe: &Pipeline) -> RnResult<Vec<Value>> {
    self.check_open()?;
    let mut out = Vec::new();
    for cmd in pipe.cmd_iter() {
      let args = args_of(cmd);
      let mut shard = self.store.lock();
      out.push(self.store.run(&mut shard, &args));
    }
    Ok(out)
  }

  /// Closes this client; frees the keyspace when no other client uses it.
  pub fn close(&self) {
    if self.closed.swap(true, Ordering::SeqCst) {
      return;
    }
    let last = match &self.name {
      None => {
        self.store.clients.fetch_sub(1, Ordering::SeqCst);
        true
      }
      Some(n) => {
        let mut all = named();
        let last = self.store.clients.fetch_sub(1, Ordering::SeqCst) == 1;
        if last && all.get(n).is_some_and(|s| Arc::ptr_eq(s, &self.store)) {
          all.remove(n);
        }
        last
      }
    };
    if last {
      self.store.free();
    }
  }

  pub fn is_closed(&self) -> bool {
    self.closed.load(Ordering::SeqCst)
  }

  /// A subscriber on this keyspace: messages published by any of its clients arrive
  /// on `push`.
  pub fn open_subscriber(&self, push: PushSender) -> RnResult<MemorySubscriber> {
    self.check_open()?;
    let id = self.store.pubsub.register(push);
    Ok(MemorySubscriber {
      store: Arc::downgrade(&self.store),
      id,
    })
  }
}

/// A subscriber connection of `memory://`.
pub struct MemorySubscriber {
  store: Weak<Store>,
  id: u64,
}

impl MemorySubscriber {
  pub fn set(&mut self, pattern: bool, name: &str, on: bool) -> RnResult<()> {
    match self.store.upgrade() {
      Some(s) if !s.freed.load(Ordering::SeqCst) => {
        s.pubsub.set(self.id, pattern, name.as_bytes(), on);
        Ok(())
      }
      _ => Err(RnError::closed()),
    }
  }
}

impl Drop for MemorySubscriber {
  fn drop(&mut self) {
    if let Some(s) = self.store.upgrade() {
      s.pubsub.unregister(self.id);
    }
  }
}

/// Drops the keys of a freed keyspace, `SWEEP_BATCH` per turn of the thread's loop,
/// then gives the pages back.
async fn drain(weak: Weak<Store>) {
  loop {
    let Some(store) = weak.upgrade() else { return };
    let mut freed = Vec::new();
    let n = {
      let mut taken = store.taken.lock().unwrap_or_else(|e| e.into_inner());
      match taken.as_mut() {
        Some(db) => {
          let n = db.drain_some(SWEEP_BATCH * 5, &mut freed);
          if n == 0 {
            *taken = None;
          }
          n
        }
        None => 0,
      }
    };
    drop(store);
    drop(freed);
    if n == 0 {
      // mimalloc returns freed pages to the OS only once they stayed free a while
      // (purge delay), at its next call on this thread: make that call
      tokio::time::sleep(Duration::from_millis(50)).await;
      // SAFETY: a plain call into the allocator the addon is linked with
      unsafe { mi_collect(true) };
      return;
    }
    tokio::time::sleep(Duration::from_millis(1)).await;
  }
}

extern "C" {
  /// mimalloc's: frees the calling thread's empty pages and returns them to the OS.
  fn mi_collect(force: bool);
}

/// Starts the background sweep of a new keyspace: on the JS thread of `env` (keys are
/// allocated there, and mimalloc gives a page back to the OS soonest when its own thread
/// frees it), or on the tokio worker.
fn start_sweep(store: &Arc<Store>, env: Option<napi::sys::napi_env>) {
  let weak = Arc::downgrade(store);
  if let Some(env) = env {
    let env = napi::Env::from_raw(env);
    if crate::completion::spawn_background(&env, sweep(weak.clone())).is_ok() {
      return;
    }
  }
  napi::bindgen_prelude::spawn(sweep(weak));
}

/// Active expiry: every `SWEEP_EVERY`, frees the keys past their deadline,
/// `SWEEP_BATCH` per hold of the lock and per turn of the thread's loop, so neither a
/// command nor the JS thread waits more than one batch.
async fn sweep(weak: Weak<Store>) {
  let mut collect_due = false;
  loop {
    tokio::time::sleep(SWEEP_EVERY).await;
    if std::mem::take(&mut collect_due) {
      // the pages freed by the last round stayed free past mimalloc's purge delay: this
      // call returns them to the OS
      // SAFETY: a plain call into the allocator the addon is linked with (measured: µs)
      unsafe { mi_collect(false) };
    }
    let mut round = 0;
    loop {
      let Some(store) = weak.upgrade() else { return };
      if store.freed.load(Ordering::SeqCst) {
        drop(store);
        return drain(weak).await;
      }
      let mut freed = Vec::new();
      let started = Instant::now();
      let mut n = 0;
      {
        let mut shard = store.lock();
        let now = now_ms();
        // at most SWEEP_BATCH keys, and at most SWEEP_SLICE of the thread's time
        while n < SWEEP_BATCH && started.elapsed() < SWEEP_SLICE {
          let got = shard.db.sweep(now, 100, &mut freed);
          n += got;
          if got < 100 {
            break;
          }
        }
      }
      drop(store);
      drop(freed); // outside the lock
      round += n;
      if n % 100 != 0 || n == 0 {
        break; // nothing more due now
      }
      // the next batch on a later turn: timers and I/O run in between
      tokio::time::sleep(Duration::from_millis(1)).await;
    }
    collect_due = round >= COLLECT_AFTER;
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  fn run(store: &Store, args: &[&str]) -> Value {
    let args: Vec<Vec<u8>> = args.iter().map(|a| a.as_bytes().to_vec()).collect();
    let mut shard = store.lock();
    store.run(&mut shard, &args)
  }

  fn text(v: &Value) -> String {
    match v {
      Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
      Value::SimpleString(s) => s.clone(),
      Value::Okay => "OK".into(),
      Value::ServerError(e) => format!("{} {}", e.code(), e.details().unwrap_or("")),
      other => format!("{other:?}"),
    }
  }

  #[test]
  fn strings_counters_and_their_errors() {
    let s = Store::new().unwrap();
    assert_eq!(run(&s, &["SET", "k", "v"]), Value::Okay);
    assert_eq!(text(&run(&s, &["GET", "k"])), "v");
    assert_eq!(
      text(&run(&s, &["INCR", "k"])),
      "ERR value is not an integer or out of range"
    );
    assert_eq!(run(&s, &["INCRBY", "n", "41"]), Value::Int(41));
    assert_eq!(run(&s, &["DECRBY", "n", "50"]), Value::Int(-9));
    run(&s, &["SET", "max", "9223372036854775807"]);
    assert_eq!(
      text(&run(&s, &["INCR", "max"])),
      "ERR increment or decrement would overflow"
    );
    assert_eq!(
      text(&run(&s, &["GET"])),
      "ERR wrong number of arguments for 'get' command"
    );
    assert_eq!(run(&s, &["SET", "k", "w", "NX"]), Value::Nil);
    assert_eq!(text(&run(&s, &["SET", "k", "w", "XX", "GET"])), "v");
    assert_eq!(
      text(&run(&s, &["SET", "k", "w", "NX", "XX"])),
      "ERR syntax error"
    );
    assert_eq!(
      text(&run(&s, &["SET", "k", "w", "PX", "0"])),
      "ERR invalid expire time in 'set' command"
    );
    run(&s, &["HSET", "h", "f", "1"]);
    assert_eq!(
      text(&run(&s, &["GET", "h"])),
      "WRONGTYPE Operation against a key holding the wrong kind of value"
    );
    assert_eq!(
      text(&run(&s, &["XADD", "st", "*", "f", "v"])),
      "ERR unknown command 'XADD': memory:// does not support it"
    );
  }

  #[test]
  fn expiry_commands_follow_redis() {
    let s = Store::new().unwrap();
    run(&s, &["SET", "k", "v", "PX", "100000"]);
    let Value::Int(left) = run(&s, &["PTTL", "k"]) else {
      panic!()
    };
    assert!(left > 99_000 && left <= 100_000);
    assert_eq!(run(&s, &["TTL", "k"]), Value::Int(100));
    assert_eq!(run(&s, &["PERSIST", "k"]), Value::Int(1));
    assert_eq!(run(&s, &["PTTL", "k"]), Value::Int(-1));
    assert_eq!(run(&s, &["PTTL", "nope"]), Value::Int(-2));
    assert_eq!(run(&s, &["PEXPIRE", "k", "1000", "NX"]), Value::Int(1));
    assert_eq!(run(&s, &["PEXPIRE", "k", "5000", "NX"]), Value::Int(0));
    assert_eq!(run(&s, &["PEXPIRE", "k", "5000", "GT"]), Value::Int(1));
    assert_eq!(run(&s, &["PEXPIRE", "k", "-1"]), Value::Int(1));
    assert_eq!(run(&s, &["EXISTS", "k"]), Value::Int(0));
    run(&s, &["SET", "k", "v", "PX", "1"]);
    std::thread::sleep(Duration::from_millis(5));
    assert_eq!(run(&s, &["GET", "k"]), Value::Nil, "lazily expired");
  }

  #[test]
  fn sorted_sets_with_their_options_and_score_text() {
    let s = Store::new().unwrap();
    assert_eq!(
      run(&s, &["ZADD", "z", "1", "a", "2", "b", "0.1", "c"]),
      Value::Int(3)
    );
    assert_eq!(text(&run(&s, &["ZSCORE", "z", "c"])), "0.10000000000000001");
    assert_eq!(text(&run(&s, &["ZSCORE", "z", "b"])), "2");
    assert_eq!(run(&s, &["ZADD", "z", "GT", "0", "b"]), Value::Int(0));
    assert_eq!(run(&s, &["ZADD", "z", "GT", "CH", "5", "b"]), Value::Int(1));
    assert_eq!(run(&s, &["ZADD", "z", "XX", "9", "new"]), Value::Int(0));
    assert_eq!(
      text(&run(&s, &["ZADD", "z", "NX", "XX", "1", "a"])),
      "ERR XX and NX options at the same time are not compatible"
    );
    assert_eq!(
      text(&run(&s, &["ZADD", "z", "x", "a"])),
      "ERR value is not a valid float"
    );
    run(&s, &["ZADD", "z", "inf", "top"]);
    assert_eq!(text(&run(&s, &["ZSCORE", "z", "top"])), "inf");
    let range = |args: &[&str]| match run(&s, args) {
      Value::Array(v) => v.iter().map(text).collect::<Vec<_>>(),
      other => vec![text(&other)],
    };
    assert_eq!(range(&["ZRANGE", "z", "0", "-1"]), ["c", "a", "b", "top"]);
    assert_eq!(
      range(&["ZRANGE", "z", "-1", "-1", "WITHSCORES"]),
      ["top", "inf"]
    );
    assert_eq!(
      range(&["ZRANGEBYSCORE", "z", "(0.1", "+inf"]),
      ["a", "b", "top"]
    );
    assert_eq!(range(&["ZRANGEBYSCORE", "z", "-inf", "1"]), ["c", "a"]);
    assert_eq!(
      range(&["ZRANGE", "z", "+inf", "(1", "BYSCORE", "REV", "LIMIT", "0", "1"]),
      ["top"]
    );
    assert_eq!(
      run(&s, &["ZREMRANGEBYSCORE", "z", "-inf", "(2"]),
      Value::Int(2)
    );
    assert_eq!(run(&s, &["ZCARD", "z"]), Value::Int(2));
    assert_eq!(run(&s, &["ZREM", "z", "b", "top"]), Value::Int(2));
    assert_eq!(
      run(&s, &["EXISTS", "z"]),
      Value::Int(0),
      "an empty zset is deleted"
    );
  }

  #[test]
  fn hashes_keep_insertion_order() {
    let s = Store::new().unwrap();
    assert_eq!(run(&s, &["HSET", "h", "b", "1", "a", "2"]), Value::Int(2));
    assert_eq!(run(&s, &["HSET", "h", "b", "3", "c", "4"]), Value::Int(1));
    let Value::Array(all) = run(&s, &["HGETALL", "h"]) else {
      panic!()
    };
    assert_eq!(
      all.iter().map(text).collect::<Vec<_>>(),
      ["b", "3", "a", "2", "c", "4"]
    );
    assert_eq!(run(&s, &["HINCRBY", "h", "a", "5"]), Value::Int(7));
    assert_eq!(run(&s, &["HDEL", "h", "a", "b", "c"]), Value::Int(3));
    assert_eq!(run(&s, &["TYPE", "h"]), Value::SimpleString("none".into()));
  }

  #[test]
  fn scripts_convert_both_ways_and_keep_error_codes() {
    let s = Store::new().unwrap();
    assert_eq!(
      run(
        &s,
        &[
          "EVAL",
          "return {1, {'two', {3}}, {}, 4.7, true, false}",
          "0"
        ]
      ),
      Value::Array(vec![
        Value::Int(1),
        Value::Array(vec![
          Value::BulkString(b"two".to_vec()),
          Value::Array(vec![Value::Int(3)])
        ]),
        Value::Array(vec![]),
        Value::Int(4),
        Value::Int(1),
        Value::Nil,
      ])
    );
    assert_eq!(
      run(&s, &["EVAL", "return {ok='fine'}", "0"]),
      Value::SimpleString("fine".into())
    );
    assert_eq!(
      text(&run(
        &s,
        &["EVAL", "return {err='MYERR out of stock'}", "0"]
      )),
      "MYERR out of stock"
    );
    assert_eq!(
      text(&run(
        &s,
        &[
          "EVAL",
          "return redis.call('SET', KEYS[1], ARGV[1])",
          "1",
          "k",
          "v"
        ]
      )),
      "OK"
    );
    // a nil reply is false in Lua; a number argument is written as Redis writes it
    assert_eq!(
      text(&run(
        &s,
        &["EVAL", "local v = redis.call('GET', 'none'); redis.call('SET', 'n', 1.5); return {tostring(v), redis.call('GET', 'n')}", "0"]
      )),
      format!("{:?}", Value::Array(vec![Value::BulkString(b"false".to_vec()), Value::BulkString(b"1.5".to_vec())]))
    );
    run(&s, &["HSET", "h", "f", "1"]);
    let e = text(&run(&s, &["EVAL", "return redis.call('GET', 'h')", "0"]));
    assert!(e.starts_with("WRONGTYPE Operation against"), "{e}");
    let e = run(
      &s,
      &[
        "EVAL",
        "local r = redis.pcall('GET', 'h'); return type(r) == 'table' and r.err",
        "0",
      ],
    );
    assert!(text(&e).starts_with("WRONGTYPE"), "{e:?}");
    let e = text(&run(&s, &["EVAL", "return nosuch.x", "0"]));
    assert!(e.starts_with("ERR user_script:1:"), "{e}");
    let e = text(&run(&s, &["EVAL", "return os.time()", "0"]));
    assert!(e.starts_with("ERR"), "no os library: {e}");
    let e = text(&run(&s, &["EVAL", "return loadfile", "0"]));
    assert!(e.contains("nonexistent global variable 'loadfile'"), "{e}");
    // Redis 7.0's text (7.2 says "Script attempted to create global variable 'x'")
    let e = text(&run(&s, &["EVAL", "x = 1", "0"]));
    assert!(
      e.contains("user_script:1: Attempt to modify a readonly table")
        && e.ends_with("on @user_script:1."),
      "{e}"
    );
    // the line of the failing redis.call, a tail call too
    let e = text(&run(
      &s,
      &["EVAL", "local a = 1\nreturn redis.call('GET')", "0"],
    ));
    assert!(
      e.starts_with("ERR Wrong number of args calling Redis command from script")
        && e.ends_with("on @user_script:2."),
      "{e}"
    );
    // KEYS and ARGV are there, and gone after the script
    assert_eq!(
      run(&s, &["EVAL", "return #KEYS + #ARGV", "2", "a", "b", "c"]),
      Value::Int(3)
    );
    let e = text(&run(&s, &["EVAL", "return (", "0"]));
    assert!(e.starts_with("ERR Error compiling script"), "{e}");
  }

  #[test]
  fn evalsha_script_load_exists_and_flush() {
    let s = Store::new().unwrap();
    let sha = lua::sha1_hex(b"return 7");
    assert!(text(&run(&s, &["EVALSHA", &sha, "0"])).starts_with("NOSCRIPT"));
    assert_eq!(text(&run(&s, &["SCRIPT", "LOAD", "return 7"])), sha);
    assert_eq!(
      run(&s, &["EVALSHA", &sha.to_uppercase(), "0"]),
      Value::Int(7)
    );
    assert_eq!(
      run(&s, &["SCRIPT", "EXISTS", &sha, "nope"]),
      Value::Array(vec![Value::Int(1), Value::Int(0)])
    );
    assert_eq!(run(&s, &["SCRIPT", "FLUSH"]), Value::Okay);
    assert!(text(&run(&s, &["EVALSHA", &sha, "0"])).starts_with("NOSCRIPT"));
  }

  #[test]
  fn command_table_gives_key_positions() {
    let s = Store::new().unwrap();
    let reply = run(&s, &["COMMAND"]);
    let table = crate::keys::KeyTable::from_command_reply(&reply);
    let args: Vec<Vec<u8>> = ["mset", "a", "1", "b", "2"]
      .iter()
      .map(|a| a.as_bytes().to_vec())
      .collect();
    assert_eq!(
      table.positions("mset", &args),
      crate::keys::Positions::Known(vec![1, 3])
    );
    assert_eq!(
      run(&s, &["COMMAND", "GETKEYS", "DEL", "x", "y"]),
      Value::Array(vec![
        Value::BulkString(b"x".to_vec()),
        Value::BulkString(b"y".to_vec())
      ])
    );
  }

  #[test]
  fn zunionstore_weights_and_aggregates_and_its_keys_move() {
    let s = Store::new().unwrap();
    run(&s, &["ZADD", "z1", "1", "a", "2", "b"]);
    run(&s, &["ZADD", "z2", "10", "b", "20", "c"]);
    assert_eq!(
      run(&s, &["ZUNIONSTORE", "u", "2", "z1", "z2"]),
      Value::Int(3)
    );
    assert_eq!(text(&run(&s, &["ZSCORE", "u", "b"])), "12");
    assert_eq!(
      run(
        &s,
        &[
          "ZINTERSTORE",
          "i",
          "2",
          "z1",
          "z2",
          "WEIGHTS",
          "2",
          "1",
          "AGGREGATE",
          "MAX"
        ]
      ),
      Value::Int(1)
    );
    assert_eq!(text(&run(&s, &["ZSCORE", "i", "b"])), "10");
    assert_eq!(
      run(
        &s,
        &["COMMAND", "GETKEYS", "ZUNIONSTORE", "u", "2", "z1", "z2"]
      ),
      Value::Array(
        ["u", "z1", "z2"]
          .iter()
          .map(|k| Value::BulkString(k.as_bytes().to_vec()))
          .collect()
      )
    );
    let Value::Int(bytes) = run(&s, &["MEMORY", "USAGE", "u"]) else {
      panic!()
    };
    assert!(bytes > 0);
  }

  #[test]
  fn float_text_is_redis_7_0s() {
    use commands::format_double as f;
    assert_eq!(f(1.0), "1");
    assert_eq!(f(-3.0), "-3");
    assert_eq!(f(0.1), "0.10000000000000001");
    assert_eq!(f(1.5), "1.5");
    assert_eq!(f(1e20), "1e+20");
    assert_eq!(f(1700000000000.0), "1700000000000");
    assert_eq!(f(f64::INFINITY), "inf");
    assert_eq!(f(f64::NEG_INFINITY), "-inf");
    assert_eq!(f(1.5e-7), "1.4999999999999999e-07");
  }
}
