//! The commands of `memory://`, executed against a `Db` with Redis 7.0's replies, options
//! and error texts (RESP2 shapes: what the command connection of the other backends reads).

use std::collections::{HashSet, VecDeque};
use std::ops::Bound;

use redis::Value;

use super::keyspace::{Data, Db, Entry, Hash, Score, ZSet};
use super::longdouble::LongDouble;
use super::pubsub::PubSub;

pub const WRONGTYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";
pub const NOT_INT: &str = "ERR value is not an integer or out of range";
pub const NOT_FLOAT: &str = "ERR value is not a valid float";
pub const SYNTAX: &str = "ERR syntax error";
pub const OVERFLOW: &str = "ERR increment or decrement would overflow";

/// An error reply, as the server would send it (`-WRONGTYPE ...`): code and detail kept.
pub fn error(text: &str) -> Value {
  let clean: String = text
    .chars()
    .map(|c| if c == '\r' || c == '\n' { ' ' } else { c })
    .collect();
  redis::parse_redis_value(format!("-{clean}\r\n").as_bytes())
    .unwrap_or_else(|_| Value::SimpleString(clean))
}

/// `ERR unknown command 'X': memory:// does not support it`.
pub fn unsupported(name: &[u8]) -> Value {
  error(&format!(
    "ERR unknown command '{}': memory:// does not support it",
    String::from_utf8_lossy(name)
  ))
}

fn wrong_args(name: &str) -> Value {
  error(&format!(
    "ERR wrong number of arguments for '{}' command",
    name.to_ascii_lowercase()
  ))
}

fn bulk(b: impl Into<Vec<u8>>) -> Value {
  Value::BulkString(b.into())
}

fn opt_bulk(b: Option<&Vec<u8>>) -> Value {
  b.map(|v| bulk(v.clone())).unwrap_or(Value::Nil)
}

/// What the engine knows about a command: arity (Redis's: negative is a minimum), its key
/// positions (first, last, step: for `COMMAND` and `COMMAND GETKEYS`), and whether
/// scripts may call it.
pub struct Spec {
  pub name: &'static str,
  pub arity: i64,
  pub first: i64,
  pub last: i64,
  pub step: i64,
  pub script: bool,
}

macro_rules! specs {
  ($(($name:literal, $arity:expr, $first:expr, $last:expr, $step:expr, $script:expr)),* $(,)?) => {
    &[$(Spec { name: $name, arity: $arity, first: $first, last: $last, step: $step, script: $script }),*]
  };
}

/// Every command `memory://` supports.
pub const SPECS: &[Spec] = specs![
  ("APPEND", 3, 1, 1, 1, true),
  ("CLIENT", -2, 0, 0, 0, false),
  ("COMMAND", -1, 0, 0, 0, false),
  ("DBSIZE", 1, 0, 0, 0, true),
  ("DECR", 2, 1, 1, 1, true),
  ("DECRBY", 3, 1, 1, 1, true),
  ("DEL", -2, 1, -1, 1, true),
  ("ECHO", 2, 0, 0, 0, true),
  ("EVAL", -3, 0, 0, 0, false),
  ("EVALSHA", -3, 0, 0, 0, false),
  ("EVALSHA_RO", -3, 0, 0, 0, false),
  ("EVAL_RO", -3, 0, 0, 0, false),
  ("EXISTS", -2, 1, -1, 1, true),
  ("EXPIRE", -3, 1, 1, 1, true),
  ("EXPIREAT", -3, 1, 1, 1, true),
  ("EXPIRETIME", 2, 1, 1, 1, true),
  ("FLUSHALL", -1, 0, 0, 0, true),
  ("FLUSHDB", -1, 0, 0, 0, true),
  ("GET", 2, 1, 1, 1, true),
  ("GETDEL", 2, 1, 1, 1, true),
  ("GETSET", 3, 1, 1, 1, true),
  ("HDEL", -3, 1, 1, 1, true),
  ("HEXISTS", 3, 1, 1, 1, true),
  ("HGET", 3, 1, 1, 1, true),
  ("HGETALL", 2, 1, 1, 1, true),
  ("HINCRBY", 4, 1, 1, 1, true),
  ("HINCRBYFLOAT", 4, 1, 1, 1, true),
  ("HKEYS", 2, 1, 1, 1, true),
  ("HLEN", 2, 1, 1, 1, true),
  ("HMGET", -3, 1, 1, 1, true),
  ("HMSET", -4, 1, 1, 1, true),
  ("HSET", -4, 1, 1, 1, true),
  ("HSETNX", 4, 1, 1, 1, true),
  ("HSTRLEN", 3, 1, 1, 1, true),
  ("HVALS", 2, 1, 1, 1, true),
  ("INCR", 2, 1, 1, 1, true),
  ("INCRBY", 3, 1, 1, 1, true),
  ("INCRBYFLOAT", 3, 1, 1, 1, true),
  ("INFO", -1, 0, 0, 0, true),
  ("KEYS", 2, 0, 0, 0, true),
  ("LINDEX", 3, 1, 1, 1, true),
  ("LLEN", 2, 1, 1, 1, true),
  ("LPOP", -2, 1, 1, 1, true),
  ("LPUSH", -3, 1, 1, 1, true),
  ("LRANGE", 4, 1, 1, 1, true),
  ("LTRIM", 4, 1, 1, 1, true),
  ("MEMORY", -2, 0, 0, 0, true),
  ("MGET", -2, 1, -1, 1, true),
  ("MSET", -3, 1, -1, 2, true),
  ("MSETNX", -3, 1, -1, 2, true),
  ("PERSIST", 2, 1, 1, 1, true),
  ("PEXPIRE", -3, 1, 1, 1, true),
  ("PEXPIREAT", -3, 1, 1, 1, true),
  ("PEXPIRETIME", 2, 1, 1, 1, true),
  ("PING", -1, 0, 0, 0, true),
  ("PSETEX", 4, 1, 1, 1, true),
  ("PTTL", 2, 1, 1, 1, true),
  ("PUBLISH", 3, 0, 0, 0, true),
  ("RPOP", -2, 1, 1, 1, true),
  ("RPUSH", -3, 1, 1, 1, true),
  ("SADD", -3, 1, 1, 1, true),
  ("SCAN", -2, 0, 0, 0, true),
  ("SCARD", 2, 1, 1, 1, true),
  ("SCRIPT", -2, 0, 0, 0, false),
  ("SELECT", 2, 0, 0, 0, true),
  ("SET", -3, 1, 1, 1, true),
  ("SETEX", 4, 1, 1, 1, true),
  ("SETNX", 3, 1, 1, 1, true),
  ("SISMEMBER", 3, 1, 1, 1, true),
  ("SMEMBERS", 2, 1, 1, 1, true),
  ("SREM", -3, 1, 1, 1, true),
  ("STRLEN", 2, 1, 1, 1, true),
  ("SUNION", -2, 1, -1, 1, true),
  ("SUNIONSTORE", -3, 1, -1, 1, true),
  ("TIME", 1, 0, 0, 0, true),
  ("TOUCH", -2, 1, -1, 1, true),
  ("TTL", 2, 1, 1, 1, true),
  ("TYPE", 2, 1, 1, 1, true),
  ("UNLINK", -2, 1, -1, 1, true),
  ("ZADD", -4, 1, 1, 1, true),
  ("ZCARD", 2, 1, 1, 1, true),
  ("ZCOUNT", 4, 1, 1, 1, true),
  ("ZINCRBY", 4, 1, 1, 1, true),
  ("ZINTERSTORE", -4, 0, 0, 0, true),
  ("ZMSCORE", -3, 1, 1, 1, true),
  ("ZRANGE", -4, 1, 1, 1, true),
  ("ZRANGEBYSCORE", -4, 1, 1, 1, true),
  ("ZRANK", 3, 1, 1, 1, true),
  ("ZREM", -3, 1, 1, 1, true),
  ("ZREMRANGEBYRANK", 4, 1, 1, 1, true),
  ("ZREMRANGEBYSCORE", 4, 1, 1, 1, true),
  ("ZREVRANGE", -4, 1, 1, 1, true),
  ("ZREVRANGEBYSCORE", -4, 1, 1, 1, true),
  ("ZREVRANK", 3, 1, 1, 1, true),
  ("ZSCORE", 3, 1, 1, 1, true),
  ("ZUNIONSTORE", -4, 0, 0, 0, true),
];

pub fn spec(name: &str) -> Option<&'static Spec> {
  SPECS
    .binary_search_by(|s| s.name.cmp(name))
    .ok()
    .map(|i| &SPECS[i])
}

/// What INFO reports about the keyspace's owner.
pub struct ServerStats {
  pub started: std::time::Instant,
  pub clients: usize,
}

/// What a command runs against.
pub struct Ctx<'a> {
  pub db: &'a mut Db,
  pub pubsub: &'a PubSub,
  pub stats: &'a ServerStats,
  pub now: u64,
}

/// Runs one command (not EVAL/SCRIPT: the caller runs those). `from_script`: called by
/// `redis.call`, which may not run every command.
pub fn execute(ctx: &mut Ctx, args: &[Vec<u8>], from_script: bool) -> Value {
  let Some(first) = args.first() else {
    return error("ERR empty command");
  };
  let name = String::from_utf8_lossy(first).to_ascii_uppercase();
  let Some(spec) = spec(&name) else {
    return unsupported(first);
  };
  let n = args.len() as i64;
  if (spec.arity > 0 && n != spec.arity) || (spec.arity < 0 && n < -spec.arity) {
    return wrong_args(&name);
  }
  if from_script && !spec.script {
    return error("ERR This Redis command is not allowed from script");
  }
  let a = &args[1..];
  let now = ctx.now;
  let result = match name.as_str() {
    // connection and server
    "PING" => match a {
      [] => Ok(Value::SimpleString("PONG".into())),
      [m] => Ok(bulk(m.clone())),
      _ => return wrong_args(&name),
    },
    "ECHO" => Ok(bulk(a[0].clone())),
    "SELECT" => match parse_i64(&a[0]) {
      Some(0) => Ok(Value::Okay),
      Some(_) => Err("ERR DB index is out of range".into()),
      None => Err(NOT_INT.into()),
    },
    "TIME" => {
      let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
      Ok(Value::Array(vec![
        bulk(t.as_secs().to_string()),
        bulk(t.subsec_micros().to_string()),
      ]))
    }
    "CLIENT" => client(a),
    "COMMAND" => command(a),
    "INFO" => Ok(info(ctx)),
    "DBSIZE" => Ok(Value::Int(ctx.db.len() as i64)),
    "FLUSHDB" | "FLUSHALL" => match a {
      [] => flush(ctx),
      [m] if eq(m, "ASYNC") || eq(m, "SYNC") => flush(ctx),
      _ => Err(SYNTAX.into()),
    },
    "PUBLISH" => Ok(Value::Int(ctx.pubsub.publish(&a[0], &a[1]) as i64)),
    // keys
    "DEL" | "UNLINK" => Ok(Value::Int(
      a.iter()
        .filter(|k| {
          let live = ctx.db.contains(k, now);
          live && ctx.db.remove(k).is_some()
        })
        .count() as i64,
    )),
    "EXISTS" | "TOUCH" => Ok(Value::Int(
      a.iter().filter(|k| ctx.db.contains(k, now)).count() as i64,
    )),
    "TYPE" => Ok(Value::SimpleString(
      ctx
        .db
        .get(&a[0], now)
        .map(|e| e.data.type_name())
        .unwrap_or("none")
        .into(),
    )),
    "KEYS" => Ok(Value::Array(
      ctx
        .db
        .live_keys(now)
        .filter(|(k, _)| super::glob::matches(&a[0], k))
        .map(|(k, _)| bulk(k.clone()))
        .collect(),
    )),
    "SCAN" => scan(ctx, a),
    "EXPIRE" | "PEXPIRE" | "EXPIREAT" | "PEXPIREAT" => expire(ctx, &name, a),
    "PERSIST" => Ok(Value::Int(
      match ctx.db.get(&a[0], now).map(|e| e.expires) {
        Some(Some(_)) => {
          ctx.db.set_expiry(&a[0], None);
          1
        }
        _ => 0,
      },
    )),
    "TTL" | "PTTL" | "EXPIRETIME" | "PEXPIRETIME" => Ok(Value::Int(
      match ctx.db.get(&a[0], now).map(|e| e.expires) {
        None => -2,
        Some(None) => -1,
        Some(Some(t)) => match name.as_str() {
          "PTTL" => t.saturating_sub(now) as i64,
          "TTL" => (t.saturating_sub(now) as i64 + 500) / 1000,
          "PEXPIRETIME" => t as i64,
          _ => (t as i64 + 500) / 1000,
        },
      },
    )),
    // strings
    "GET" => string_of(ctx.db, &a[0], now).map(|s| opt_bulk(s.as_ref())),
    "GETDEL" => string_of(ctx.db, &a[0], now).map(|s| {
      if s.is_some() {
        ctx.db.remove(&a[0]);
      }
      opt_bulk(s.as_ref())
    }),
    "GETSET" => string_of(ctx.db, &a[0], now).map(|s| {
      ctx.db.insert(&a[0], Data::Str(a[1].clone()), None);
      opt_bulk(s.as_ref())
    }),
    "STRLEN" => string_of(ctx.db, &a[0], now).map(|s| Value::Int(s.map_or(0, |v| v.len() as i64))),
    "APPEND" => string_of(ctx.db, &a[0], now).map(|s| match s {
      Some(mut v) => {
        v.extend_from_slice(&a[1]);
        let len = v.len();
        if let Some(e) = ctx.db.get_mut(&a[0], now) {
          e.data = Data::Str(v);
        }
        Value::Int(len as i64)
      }
      None => {
        ctx.db.insert(&a[0], Data::Str(a[1].clone()), None);
        Value::Int(a[1].len() as i64)
      }
    }),
    "SET" => set(ctx, a),
    "SETNX" => Ok(Value::Int(if ctx.db.contains(&a[0], now) {
      0
    } else {
      ctx.db.insert(&a[0], Data::Str(a[1].clone()), None);
      1
    })),
    "SETEX" | "PSETEX" => match parse_i64(&a[1]) {
      None => Err(NOT_INT.into()),
      Some(t) if t <= 0 => Err(format!(
        "ERR invalid expire time in '{}' command",
        name.to_ascii_lowercase()
      )),
      Some(t) => {
        let ms = if name == "SETEX" {
          t.checked_mul(1000)
        } else {
          Some(t)
        };
        match ms.and_then(|ms| (now as i64).checked_add(ms)) {
          Some(at) => {
            ctx
              .db
              .insert(&a[0], Data::Str(a[2].clone()), Some(at as u64));
            Ok(Value::Okay)
          }
          None => Err(format!(
            "ERR invalid expire time in '{}' command",
            name.to_ascii_lowercase()
          )),
        }
      }
    },
    "MGET" => Ok(Value::Array(
      a.iter()
        .map(|k| match ctx.db.get(k, now) {
          Some(Entry {
            data: Data::Str(v), ..
          }) => bulk(v.clone()),
          _ => Value::Nil,
        })
        .collect(),
    )),
    "MSET" | "MSETNX" => {
      if !a.len().is_multiple_of(2) {
        return wrong_args(&name);
      }
      if name == "MSETNX" && a.chunks(2).any(|kv| ctx.db.contains(&kv[0], now)) {
        return Value::Int(0);
      }
      for kv in a.chunks(2) {
        ctx.db.insert(&kv[0], Data::Str(kv[1].clone()), None);
      }
      Ok(if name == "MSET" {
        Value::Okay
      } else {
        Value::Int(1)
      })
    }
    "INCR" => incr_by(ctx, &a[0], 1),
    "DECR" => incr_by(ctx, &a[0], -1),
    "INCRBY" => match parse_i64(&a[1]) {
      Some(by) => incr_by(ctx, &a[0], by),
      None => Err(NOT_INT.into()),
    },
    "DECRBY" => match parse_i64(&a[1]) {
      Some(i64::MIN) => Err("ERR decrement would overflow".into()),
      Some(by) => incr_by(ctx, &a[0], -by),
      None => Err(NOT_INT.into()),
    },
    "INCRBYFLOAT" => incr_by_float(ctx, a),
    // hashes
    "HSET" | "HMSET" => {
      if a.len().is_multiple_of(2) {
        return wrong_args(&name);
      }
      with_hash(ctx.db, &a[0], now, true, |h| {
        let added = a[1..]
          .chunks(2)
          .filter(|fv| h.set(&fv[0], fv[1].clone()))
          .count();
        Ok(if name == "HSET" {
          Value::Int(added as i64)
        } else {
          Value::Okay
        })
      })
    }
    "HSETNX" => with_hash(ctx.db, &a[0], now, true, |h| {
      Ok(Value::Int(if h.get(&a[1]).is_some() {
        0
      } else {
        h.set(&a[1], a[2].clone());
        1
      }))
    }),
    "HGET" => read_hash(ctx.db, &a[0], now, |h| {
      opt_bulk(h.and_then(|h| h.get(&a[1])))
    }),
    "HMGET" => read_hash(ctx.db, &a[0], now, |h| {
      Value::Array(
        a[1..]
          .iter()
          .map(|f| opt_bulk(h.and_then(|h| h.get(f))))
          .collect(),
      )
    }),
    "HGETALL" | "HKEYS" | "HVALS" => read_hash(ctx.db, &a[0], now, |h| {
      let mut out = Vec::new();
      for (k, v) in h.map(|h| h.ordered()).unwrap_or_default() {
        if name != "HVALS" {
          out.push(bulk(k.clone()));
        }
        if name != "HKEYS" {
          out.push(bulk(v.clone()));
        }
      }
      Value::Array(out)
    }),
    "HLEN" => read_hash(ctx.db, &a[0], now, |h| {
      Value::Int(h.map_or(0, |h| h.fields.len() as i64))
    }),
    "HEXISTS" => read_hash(ctx.db, &a[0], now, |h| {
      Value::Int(h.and_then(|h| h.get(&a[1])).is_some() as i64)
    }),
    "HSTRLEN" => read_hash(ctx.db, &a[0], now, |h| {
      Value::Int(h.and_then(|h| h.get(&a[1])).map_or(0, |v| v.len() as i64))
    }),
    "HDEL" => {
      let r = with_hash(ctx.db, &a[0], now, false, |h| {
        Ok(Value::Int(
          a[1..]
            .iter()
            .filter(|f| h.fields.remove(f.as_slice()).is_some())
            .count() as i64,
        ))
      });
      ctx.db.drop_if_empty(&a[0]);
      r
    }
    "HINCRBY" => match parse_i64(&a[2]) {
      None => Err(NOT_INT.into()),
      Some(by) => with_hash(ctx.db, &a[0], now, true, |h| {
        let old = match h.get(&a[1]) {
          None => 0,
          Some(v) => parse_i64(v).ok_or("ERR hash value is not an integer")?,
        };
        let new = old.checked_add(by).ok_or(OVERFLOW)?;
        h.set(&a[1], new.to_string().into_bytes());
        Ok(Value::Int(new))
      }),
    },
    // Redis 7.0's order: the increment, then NaN / Infinity, then the key's type.
    "HINCRBYFLOAT" => match parse_long_double(&a[2]) {
      None => Err(NOT_FLOAT.into()),
      Some(Err(())) => Err("ERR value is NaN or Infinity".into()),
      Some(Ok(by)) => with_hash(ctx.db, &a[0], now, true, |h| {
        let old = match h.get(&a[1]) {
          None => Ok(LongDouble::parse("0").ok_or(NOT_FLOAT)?),
          Some(v) => parse_long_double(v).ok_or("ERR hash value is not a float")?,
        };
        let text = old
          .ok()
          .and_then(|old| old.add(by))
          .ok_or("ERR increment would produce NaN or Infinity")?
          .human();
        h.set(&a[1], text.clone().into_bytes());
        Ok(bulk(text))
      }),
    },
    // sets
    "SADD" => with_set(ctx.db, &a[0], now, true, |s| {
      Ok(Value::Int(
        a[1..].iter().filter(|m| s.insert(m.to_vec())).count() as i64,
      ))
    }),
    "SREM" => {
      let r = with_set(ctx.db, &a[0], now, false, |s| {
        Ok(Value::Int(
          a[1..].iter().filter(|m| s.remove(m.as_slice())).count() as i64,
        ))
      });
      ctx.db.drop_if_empty(&a[0]);
      r
    }
    "SMEMBERS" => read_set(ctx.db, &a[0], now).map(|s| Value::Array(set_members(&s))),
    "SCARD" => read_set(ctx.db, &a[0], now).map(|s| Value::Int(s.len() as i64)),
    "SISMEMBER" => read_set(ctx.db, &a[0], now).map(|s| Value::Int(s.contains(&a[1]) as i64)),
    "SUNION" | "SUNIONSTORE" => {
      let sources = if name == "SUNION" { a } else { &a[1..] };
      let mut union = HashSet::new();
      let mut failed = None;
      for k in sources {
        match read_set(ctx.db, k, now) {
          Ok(s) => union.extend(s),
          Err(e) => {
            failed = Some(e);
            break;
          }
        }
      }
      match failed {
        Some(e) => Err(e),
        None if name == "SUNION" => Ok(Value::Array(set_members(&union))),
        None => {
          let len = union.len() as i64;
          ctx.db.remove(&a[0]);
          if len > 0 {
            ctx.db.insert(&a[0], Data::Set(union), None);
          }
          Ok(Value::Int(len))
        }
      }
    }
    // lists
    "LPUSH" | "RPUSH" => with_list(ctx.db, &a[0], now, true, |l| {
      for v in &a[1..] {
        if name == "LPUSH" {
          l.push_front(v.clone());
        } else {
          l.push_back(v.clone());
        }
      }
      Ok(Value::Int(l.len() as i64))
    }),
    "LPOP" | "RPOP" => {
      let count = match a.get(1).map(|c| parse_i64(c)) {
        None => None,
        Some(Some(c)) if c >= 0 => Some(c as usize),
        Some(_) => return error("ERR value is out of range, must be positive"),
      };
      if a.len() > 2 {
        return wrong_args(&name);
      }
      let exists = ctx.db.contains(&a[0], now);
      let r = with_list(ctx.db, &a[0], now, false, |l| {
        let mut pop = || {
          if name == "LPOP" {
            l.pop_front()
          } else {
            l.pop_back()
          }
        };
        Ok(match count {
          None => pop().map(bulk).unwrap_or(Value::Nil),
          Some(c) => Value::Array((0..c).map_while(|_| pop()).map(bulk).collect()),
        })
      });
      ctx.db.drop_if_empty(&a[0]);
      match r {
        Ok(_) if !exists && count.is_some() => Ok(Value::Nil),
        other => other,
      }
    }
    "LLEN" => read_list(ctx.db, &a[0], now).map(|l| Value::Int(l.len() as i64)),
    "LRANGE" => match (parse_i64(&a[1]), parse_i64(&a[2])) {
      (Some(start), Some(stop)) => read_list(ctx.db, &a[0], now).map(|l| {
        let (from, to) = index_range(start, stop, l.len());
        Value::Array(
          l.iter()
            .skip(from)
            .take(to - from)
            .map(|v| bulk(v.clone()))
            .collect(),
        )
      }),
      _ => Err(NOT_INT.into()),
    },
    "LINDEX" => match parse_i64(&a[1]) {
      Some(i) => read_list(ctx.db, &a[0], now).map(|l| {
        let i = if i < 0 { l.len() as i64 + i } else { i };
        if i < 0 {
          Value::Nil
        } else {
          opt_bulk(l.get(i as usize))
        }
      }),
      None => Err(NOT_INT.into()),
    },
    "LTRIM" => match (parse_i64(&a[1]), parse_i64(&a[2])) {
      (Some(start), Some(stop)) => {
        let r = with_list(ctx.db, &a[0], now, false, |l| {
          let (from, to) = index_range(start, stop, l.len());
          let kept: VecDeque<Vec<u8>> = l.drain(..).skip(from).take(to - from).collect();
          *l = kept;
          Ok(Value::Okay)
        });
        ctx.db.drop_if_empty(&a[0]);
        r
      }
      _ => Err(NOT_INT.into()),
    },
    // sorted sets
    "ZADD" => zadd(ctx, a),
    "ZINCRBY" => match parse_float(&a[1]) {
      None => Err(NOT_FLOAT.into()),
      Some(by) => with_zset(ctx.db, &a[0], now, true, |z| {
        // a new member's score is the increment itself (`-0` stays `-0` in the reply)
        let new = z.scores.get(a[2].as_slice()).map_or(by, |s| s + by);
        if new.is_nan() {
          return Err("ERR resulting score is not a number (NaN)".into());
        }
        z.insert(&a[2], new);
        Ok(bulk(format_double(new)))
      }),
    },
    "ZREM" => {
      let r = with_zset(ctx.db, &a[0], now, false, |z| {
        Ok(Value::Int(
          a[1..].iter().filter(|m| z.remove(m)).count() as i64
        ))
      });
      ctx.db.drop_if_empty(&a[0]);
      r
    }
    "ZCARD" => read_zset(ctx.db, &a[0], now, |z| {
      Value::Int(z.map_or(0, |z| z.len() as i64))
    }),
    "ZSCORE" => read_zset(ctx.db, &a[0], now, |z| {
      match z.and_then(|z| z.scores.get(a[1].as_slice())) {
        Some(s) => bulk(format_double(*s)),
        None => Value::Nil,
      }
    }),
    "ZMSCORE" => read_zset(ctx.db, &a[0], now, |z| {
      Value::Array(
        a[1..]
          .iter()
          .map(|m| match z.and_then(|z| z.scores.get(m.as_slice())) {
            Some(s) => bulk(format_double(*s)),
            None => Value::Nil,
          })
          .collect(),
      )
    }),
    "ZRANK" | "ZREVRANK" => read_zset(ctx.db, &a[0], now, |z| {
      let Some(z) = z else { return Value::Nil };
      let Some(score) = z.scores.get(a[1].as_slice()) else {
        return Value::Nil;
      };
      let rank = z.order.range(..(Score(*score), a[1].clone())).count();
      Value::Int(if name == "ZRANK" {
        rank as i64
      } else {
        (z.len() - 1 - rank) as i64
      })
    }),
    "ZCOUNT" => match (parse_bound(&a[1]), parse_bound(&a[2])) {
      (Some(min), Some(max)) => read_zset(ctx.db, &a[0], now, |z| {
        Value::Int(z.map_or(0, |z| score_range(z, min, max, false).len() as i64))
      }),
      _ => Err("ERR min or max is not a float".into()),
    },
    "ZUNIONSTORE" | "ZINTERSTORE" => zstore(ctx, &name, a),
    "MEMORY" => match (
      String::from_utf8_lossy(&a[0]).to_ascii_uppercase().as_str(),
      a.len(),
    ) {
      ("USAGE", 2) | ("USAGE", 4) => Ok(match ctx.db.get(&a[1], now) {
        // approximate, counted as Redis counts it: the key, the value and ~50 bytes of
        // bookkeeping (this engine's expiry index holds a second copy of the key)
        Some(e) => Value::Int((e.data.approx_bytes() + a[1].len() + 50) as i64),
        None => Value::Nil,
      }),
      _ => Err(format!(
        "ERR unknown subcommand '{}': memory:// does not support it",
        String::from_utf8_lossy(&a[0])
      )),
    },
    "ZRANGE" => zrange(ctx, a, false, false),
    "ZREVRANGE" => zrange(ctx, a, true, false),
    "ZRANGEBYSCORE" => zrange(ctx, a, false, true),
    "ZREVRANGEBYSCORE" => zrange(ctx, a, true, true),
    "ZREMRANGEBYSCORE" => match (parse_bound(&a[1]), parse_bound(&a[2])) {
      (Some(min), Some(max)) => {
        let r = with_zset(ctx.db, &a[0], now, false, |z| {
          let doomed: Vec<Vec<u8>> = score_range(z, min, max, false)
            .into_iter()
            .map(|(_, m)| m.clone())
            .collect();
          for m in &doomed {
            z.remove(m);
          }
          Ok(Value::Int(doomed.len() as i64))
        });
        ctx.db.drop_if_empty(&a[0]);
        r
      }
      _ => Err("ERR min or max is not a float".into()),
    },
    "ZREMRANGEBYRANK" => match (parse_i64(&a[1]), parse_i64(&a[2])) {
      (Some(start), Some(stop)) => {
        let r = with_zset(ctx.db, &a[0], now, false, |z| {
          let (from, to) = index_range(start, stop, z.len());
          let doomed: Vec<Vec<u8>> = z
            .order
            .iter()
            .skip(from)
            .take(to - from)
            .map(|(_, m)| m.clone())
            .collect();
          for m in &doomed {
            z.remove(m);
          }
          Ok(Value::Int(doomed.len() as i64))
        });
        ctx.db.drop_if_empty(&a[0]);
        r
      }
      _ => Err(NOT_INT.into()),
    },
    _ => return unsupported(first),
  };
  match result {
    Ok(v) => v,
    Err(e) => error(&e),
  }
}

type Res = Result<Value, String>;

fn eq(arg: &[u8], word: &str) -> bool {
  arg.eq_ignore_ascii_case(word.as_bytes())
}

/// A Redis integer (`string2ll`): optional `-`, digits, no leading zeros or spaces.
pub fn parse_i64(b: &[u8]) -> Option<i64> {
  let s = std::str::from_utf8(b).ok()?;
  let digits = s.strip_prefix('-').unwrap_or(s);
  if digits.is_empty()
    || !digits.bytes().all(|c| c.is_ascii_digit())
    || (digits.len() > 1 && digits.starts_with('0'))
    || s == "-0"
  {
    return None;
  }
  s.parse().ok()
}

/// A Redis float (`strtod`, no NaN, no spaces): `inf`, `-inf`, `+inf` too.
pub fn parse_float(b: &[u8]) -> Option<f64> {
  let s = std::str::from_utf8(b).ok()?;
  if s.is_empty() || s.starts_with(char::is_whitespace) || s.ends_with(char::is_whitespace) {
    return None;
  }
  let v: f64 = match s.to_ascii_lowercase().as_str() {
    "inf" | "+inf" | "infinity" | "+infinity" => f64::INFINITY,
    "-inf" | "-infinity" => f64::NEG_INFINITY,
    l if l.contains("inf") || l.contains("nan") => return None,
    _ => s.parse().ok()?,
  };
  (!v.is_nan()).then_some(v)
}

/// A double as Redis 7.0 replies it (`%.17g`; `inf`, `-inf`).
pub fn format_double(v: f64) -> String {
  if v.is_infinite() {
    return if v > 0.0 { "inf".into() } else { "-inf".into() };
  }
  if v == 0.0 {
    return if v.is_sign_negative() {
      "-0".into()
    } else {
      "0".into()
    };
  }
  format_g(v, 17)
}

/// C's `%.{precision}g`.
pub fn format_g(v: f64, precision: usize) -> String {
  if v == 0.0 {
    return "0".into();
  }
  let sci = format!("{:.*e}", precision - 1, v);
  let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
  let exp: i32 = exp.parse().unwrap_or(0);
  if exp < -4 || exp >= precision as i32 {
    let m = trim_zeros(mantissa);
    let sign = if exp < 0 { '-' } else { '+' };
    format!("{m}e{sign}{:02}", exp.abs())
  } else {
    let decimals = (precision as i32 - 1 - exp).max(0) as usize;
    trim_zeros(&format!("{v:.decimals$}")).to_string()
  }
}

fn trim_zeros(s: &str) -> &str {
  if s.contains('.') {
    s.trim_end_matches('0').trim_end_matches('.')
  } else {
    s
  }
}

/// A value or increment of INCRBYFLOAT / HINCRBYFLOAT as Redis's `string2ld` reads it
/// (`strtold`: decimal or hexadecimal, `inf`; no NaN, no leading space, nothing after, not
/// out of a long double's range): None when it refuses it, `Err(())` for an infinity.
pub fn parse_long_double(b: &[u8]) -> Option<Result<LongDouble, ()>> {
  let s = std::str::from_utf8(b).ok()?;
  if s.is_empty() || s.len() >= 5 * 1024 || s.starts_with(char::is_whitespace) {
    return None;
  }
  let unsigned = s.trim_start_matches(['+', '-']);
  if unsigned.len() + 1 < s.len() {
    return None;
  }
  let hex = unsigned.len() > 2 && unsigned.as_bytes()[..2].eq_ignore_ascii_case(b"0x");
  if !hex {
    // the syntax is a double's (strtod's and strtold's are the same); its value is not
    let v = parse_float(b)?;
    if v.is_infinite() && unsigned.to_ascii_lowercase().starts_with("inf") {
      return Some(Err(()));
    }
  } else {
    let digits = &unsigned[2..];
    let mantissa = digits.split(['p', 'P']).next().unwrap_or("");
    if mantissa.is_empty() || mantissa == "." {
      return None;
    }
  }
  LongDouble::parse(s).map(Ok)
}

fn flush(ctx: &mut Ctx) -> Res {
  let old = ctx.db.take();
  super::drop_elsewhere(old);
  Ok(Value::Okay)
}

fn client(a: &[Vec<u8>]) -> Res {
  let sub = String::from_utf8_lossy(&a[0]).to_ascii_uppercase();
  match (sub.as_str(), a.len()) {
    ("SETNAME", 2) => Ok(Value::Okay),
    ("SETINFO", 3) => Ok(Value::Okay),
    ("GETNAME", 1) => Ok(Value::Nil),
    ("ID", 1) => Ok(Value::Int(1)),
    ("SETNAME" | "SETINFO" | "GETNAME" | "ID", _) => Err(format!(
      "ERR wrong number of arguments for 'client|{}' command",
      sub.to_ascii_lowercase()
    )),
    _ => Err(format!(
      "ERR unknown subcommand 'CLIENT {sub}': memory:// does not support it"
    )),
  }
}

fn command(a: &[Vec<u8>]) -> Res {
  let describe = |s: &Spec| {
    Value::Array(vec![
      bulk(s.name.to_ascii_lowercase()),
      Value::Int(s.arity),
      Value::Array(if movable(s.name) {
        vec![Value::SimpleString("movablekeys".into())]
      } else {
        vec![]
      }),
      Value::Int(s.first),
      Value::Int(s.last),
      Value::Int(s.step),
    ])
  };
  let Some(sub) = a.first() else {
    return Ok(Value::Array(SPECS.iter().map(describe).collect()));
  };
  let sub = String::from_utf8_lossy(sub).to_ascii_uppercase();
  match sub.as_str() {
    "COUNT" => Ok(Value::Int(SPECS.len() as i64)),
    "INFO" => Ok(Value::Array(
      a[1..]
        .iter()
        .map(
          |n| match spec(&String::from_utf8_lossy(n).to_ascii_uppercase()) {
            Some(s) => describe(s),
            None => Value::Nil,
          },
        )
        .collect(),
    )),
    "GETKEYS" => {
      let args = &a[1..];
      let Some(name) = args.first() else {
        return Err("ERR wrong number of arguments for 'command|getkeys' command".into());
      };
      let upper = String::from_utf8_lossy(name).to_ascii_uppercase();
      let Some(s) = spec(&upper) else {
        return Err("ERR Invalid command specified".into());
      };
      let n = args.len() as i64;
      if (s.arity > 0 && n != s.arity) || (s.arity < 0 && n < -s.arity) {
        return Err("ERR Invalid number of arguments specified for command".into());
      }
      let keys = key_positions(s, args);
      if keys.is_empty() {
        return Err("ERR The command has no key arguments".into());
      }
      Ok(Value::Array(
        keys.into_iter().map(|i| bulk(args[i].clone())).collect(),
      ))
    }
    _ => Err(format!(
      "ERR unknown subcommand '{sub}': memory:// does not support it"
    )),
  }
}

/// Whether a command's keys move with its arguments (COMMAND GETKEYS finds them).
fn movable(name: &str) -> bool {
  matches!(name, "ZUNIONSTORE" | "ZINTERSTORE")
}

/// The positions of the keys in `args` (`args[0]` the command's name).
pub fn key_positions(s: &Spec, args: &[Vec<u8>]) -> Vec<usize> {
  if s.name.starts_with("EVAL") {
    let n = args.get(2).and_then(|n| parse_i64(n)).unwrap_or(0).max(0) as usize;
    return (3..(3 + n).min(args.len())).collect();
  }
  if movable(s.name) {
    // destination numkeys key...
    let n = args.get(2).and_then(|n| parse_i64(n)).unwrap_or(0).max(0) as usize;
    return std::iter::once(1)
      .chain(3..(3 + n).min(args.len()))
      .collect();
  }
  if s.first <= 0 {
    return Vec::new();
  }
  let argc = args.len() as i64;
  let last = if s.last < 0 {
    argc + s.last
  } else {
    s.last.min(argc - 1)
  };
  (s.first..=last)
    .step_by(s.step.max(1) as usize)
    .map(|i| i as usize)
    .collect()
}

fn info(ctx: &Ctx) -> Value {
  let uptime = ctx.stats.started.elapsed().as_secs();
  let used = ctx.db.approx_bytes();
  let text = format!(
    "# Server\r\nredis_version:7.0.0\r\nredis_mode:standalone\r\nnestjs_redis_native_backend:memory\r\nuptime_in_seconds:{uptime}\r\nuptime_in_days:{}\r\n\r\n# Clients\r\nconnected_clients:{}\r\n\r\n# Memory\r\nused_memory:{used}\r\n\r\n# Stats\r\nexpired_keys:{}\r\n\r\n# Replication\r\nrole:master\r\nconnected_slaves:0\r\n\r\n# Keyspace\r\ndb0:keys={},expires={},avg_ttl=0\r\n",
    uptime / 86400,
    ctx.stats.clients,
    ctx.db.expired_keys,
    ctx.db.len(),
    ctx.db.keys_with_expiry(),
  );
  bulk(text)
}

fn scan(ctx: &mut Ctx, a: &[Vec<u8>]) -> Res {
  let cursor = std::str::from_utf8(&a[0])
    .ok()
    .and_then(|c| c.parse::<u64>().ok())
    .ok_or("ERR invalid cursor")?;
  let mut pattern: Option<&[u8]> = None;
  let mut count = 10usize;
  let mut kind: Option<String> = None;
  let mut i = 1;
  while i < a.len() {
    let value = a.get(i + 1).ok_or(SYNTAX)?;
    if eq(&a[i], "MATCH") {
      pattern = Some(value);
    } else if eq(&a[i], "COUNT") {
      count = match parse_i64(value) {
        Some(c) if c >= 1 => c as usize,
        Some(_) => return Err(SYNTAX.into()),
        None => return Err(NOT_INT.into()),
      };
    } else if eq(&a[i], "TYPE") {
      kind = Some(String::from_utf8_lossy(value).to_ascii_lowercase());
    } else {
      return Err(SYNTAX.into());
    }
    i += 2;
  }
  let now = ctx.now;
  let (next, keys) = ctx
    .db
    .scan(cursor, count, now, |k, e| {
      pattern.is_none_or(|p| p == b"*" || super::glob::matches(p, k))
        && kind.as_deref().is_none_or(|t| t == e.data.type_name())
    })
    .map_err(|_| {
      "ERR invalid cursor: memory:// does not know this SCAN cursor (a cursor from another keyspace, or one of more than 100000 scans left unfinished)"
    })?;
  Ok(Value::Array(vec![
    bulk(next.to_string()),
    Value::Array(keys.into_iter().map(bulk).collect()),
  ]))
}

fn expire(ctx: &mut Ctx, name: &str, a: &[Vec<u8>]) -> Res {
  let n = parse_i64(&a[1]).ok_or(NOT_INT)?;
  let (mut nx, mut xx, mut gt, mut lt) = (false, false, false, false);
  for o in &a[2..] {
    match String::from_utf8_lossy(o).to_ascii_uppercase().as_str() {
      "NX" => nx = true,
      "XX" => xx = true,
      "GT" => gt = true,
      "LT" => lt = true,
      other => return Err(format!("ERR Unsupported option {other}")),
    }
  }
  if nx && (xx || gt || lt) {
    return Err("ERR NX and XX, GT or LT options at the same time are not compatible".into());
  }
  if gt && lt {
    return Err("ERR GT and LT options at the same time are not compatible".into());
  }
  let now = ctx.now as i64;
  let invalid = || {
    format!(
      "ERR invalid expire time in '{}' command",
      name.to_ascii_lowercase()
    )
  };
  let ms = match name {
    "EXPIRE" | "EXPIREAT" => n.checked_mul(1000).ok_or_else(invalid)?,
    _ => n,
  };
  let at = match name {
    "EXPIRE" | "PEXPIRE" => ms.checked_add(now).ok_or_else(invalid)?,
    _ => ms,
  };
  let current = match ctx.db.get(&a[0], ctx.now) {
    None => return Ok(Value::Int(0)),
    Some(e) => e.expires,
  };
  let allowed = match current {
    None => !(xx || gt),
    Some(t) => !nx && (!gt || at > t as i64) && (!lt || at < t as i64),
  };
  if !allowed {
    return Ok(Value::Int(0));
  }
  if at <= now {
    ctx.db.remove(&a[0]);
  } else {
    ctx.db.set_expiry(&a[0], Some(at as u64));
  }
  Ok(Value::Int(1))
}

/// The string at `key` (`None` when absent), WRONGTYPE for another type.
fn string_of(db: &mut Db, key: &[u8], now: u64) -> Result<Option<Vec<u8>>, String> {
  match db.get(key, now) {
    None => Ok(None),
    Some(Entry {
      data: Data::Str(v), ..
    }) => Ok(Some(v.clone())),
    Some(_) => Err(WRONGTYPE.into()),
  }
}

fn set(ctx: &mut Ctx, a: &[Vec<u8>]) -> Res {
  let (key, value) = (&a[0], &a[1]);
  let (mut nx, mut xx, mut get, mut keepttl) = (false, false, false, false);
  // as Redis 7.0: every option's syntax first, then the expire time's value
  let mut expire: Option<(String, &[u8])> = None;
  let mut i = 2;
  while i < a.len() {
    let word = String::from_utf8_lossy(&a[i]).to_ascii_uppercase();
    match word.as_str() {
      "NX" if !xx => nx = true,
      "XX" if !nx => xx = true,
      "GET" => get = true,
      "KEEPTTL" if expire.is_none() => keepttl = true,
      "EX" | "PX" | "EXAT" | "PXAT" if expire.is_none() && !keepttl => {
        let v = a.get(i + 1).ok_or(SYNTAX)?;
        expire = Some((word.clone(), v.as_slice()));
        i += 1;
      }
      _ => return Err(SYNTAX.into()),
    }
    i += 1;
  }
  let now = ctx.now as i64;
  let deadline = match &expire {
    None => None,
    Some((unit, n)) => {
      let n = &parse_i64(n).ok_or(NOT_INT)?;
      let invalid = || "ERR invalid expire time in 'set' command".to_string();
      if *n <= 0 {
        return Err(invalid());
      }
      let at = match unit.as_str() {
        "EX" => n.checked_mul(1000).and_then(|ms| ms.checked_add(now)),
        "PX" => n.checked_add(now),
        "EXAT" => n.checked_mul(1000),
        _ => Some(*n),
      };
      Some(at.ok_or_else(invalid)?)
    }
  };
  let old = ctx
    .db
    .get(key, ctx.now)
    .map(|e| (e.data.clone(), e.expires));
  let old_value = match &old {
    Some((Data::Str(v), _)) => Some(v.clone()),
    Some(_) if get => return Err(WRONGTYPE.into()),
    _ => None,
  };
  let exists = old.is_some();
  let reply_skipped = || {
    if get {
      opt_bulk(old_value.as_ref())
    } else {
      Value::Nil
    }
  };
  if (nx && exists) || (xx && !exists) {
    return Ok(reply_skipped());
  }
  let expires = match deadline {
    Some(at) if at <= now => {
      // a deadline in the past: the key is set and gone at once
      ctx.db.remove(key);
      return Ok(if get {
        opt_bulk(old_value.as_ref())
      } else {
        Value::Okay
      });
    }
    Some(at) => Some(at as u64),
    None if keepttl => old.and_then(|(_, t)| t),
    None => None,
  };
  ctx.db.insert(key, Data::Str(value.clone()), expires);
  Ok(if get {
    opt_bulk(old_value.as_ref())
  } else {
    Value::Okay
  })
}

fn incr_by(ctx: &mut Ctx, key: &[u8], by: i64) -> Res {
  let now = ctx.now;
  match ctx.db.get_mut(key, now) {
    Some(Entry {
      data: Data::Str(v), ..
    }) => {
      let old = parse_i64(v).ok_or(NOT_INT)?;
      let new = old.checked_add(by).ok_or(OVERFLOW)?;
      *v = new.to_string().into_bytes();
      Ok(Value::Int(new))
    }
    Some(_) => Err(WRONGTYPE.into()),
    None => {
      ctx
        .db
        .insert(key, Data::Str(by.to_string().into_bytes()), None);
      Ok(Value::Int(by))
    }
  }
}

/// Redis 7.0's order: the key's type, then the stored value, then the increment.
fn incr_by_float(ctx: &mut Ctx, a: &[Vec<u8>]) -> Res {
  let now = ctx.now;
  let old = match string_of(ctx.db, &a[0], now)? {
    None => Ok(LongDouble::parse("0").ok_or(NOT_FLOAT)?),
    Some(v) => parse_long_double(&v).ok_or(NOT_FLOAT)?,
  };
  let by = parse_long_double(&a[1]).ok_or(NOT_FLOAT)?;
  let text = old
    .and_then(|old| by.map(|by| (old, by)))
    .ok()
    .and_then(|(old, by)| old.add(by))
    .ok_or("ERR increment would produce NaN or Infinity")?
    .human();
  match ctx.db.get_mut(&a[0], now) {
    Some(e) => e.data = Data::Str(text.clone().into_bytes()),
    None => ctx
      .db
      .insert(&a[0], Data::Str(text.clone().into_bytes()), None),
  }
  Ok(bulk(text))
}

macro_rules! typed_access {
  ($with:ident, $read:ident, $variant:ident, $ty:ty) => {
    /// Changes the value at `key` (made empty first when `create` and absent; when absent
    /// and not `create`, `f` is not called and the reply is what an empty value gives).
    fn $with(
      db: &mut Db,
      key: &[u8],
      now: u64,
      create: bool,
      f: impl FnOnce(&mut $ty) -> Res,
    ) -> Res {
      match db.get_mut(key, now) {
        Some(Entry {
          data: Data::$variant(v),
          ..
        }) => f(v),
        Some(_) => Err(WRONGTYPE.into()),
        None => {
          let mut fresh = <$ty>::default();
          let r = f(&mut fresh);
          if create && r.is_ok() && !Data::$variant(fresh.clone()).is_empty_aggregate() {
            db.insert(key, Data::$variant(fresh), None);
          }
          r
        }
      }
    }

    /// Reads the value at `key` (`None` when absent).
    #[allow(dead_code)]
    fn $read<T>(
      db: &mut Db,
      key: &[u8],
      now: u64,
      f: impl FnOnce(Option<&$ty>) -> T,
    ) -> Result<T, String> {
      match db.get(key, now) {
        Some(Entry {
          data: Data::$variant(v),
          ..
        }) => Ok(f(Some(v))),
        Some(_) => Err(WRONGTYPE.into()),
        None => Ok(f(None)),
      }
    }
  };
}

typed_access!(with_hash, read_hash_opt, Hash, Hash);
typed_access!(with_set, read_set_opt, Set, HashSet<Vec<u8>>);
typed_access!(with_list, read_list_opt, List, VecDeque<Vec<u8>>);
typed_access!(with_zset, read_zset_opt, ZSet, ZSet);

fn read_hash(db: &mut Db, key: &[u8], now: u64, f: impl FnOnce(Option<&Hash>) -> Value) -> Res {
  read_hash_opt(db, key, now, f)
}

fn read_zset(db: &mut Db, key: &[u8], now: u64, f: impl FnOnce(Option<&ZSet>) -> Value) -> Res {
  read_zset_opt(db, key, now, f)
}

fn read_set(db: &mut Db, key: &[u8], now: u64) -> Result<HashSet<Vec<u8>>, String> {
  read_set_opt(db, key, now, |s| s.cloned().unwrap_or_default())
}

fn read_list(db: &mut Db, key: &[u8], now: u64) -> Result<VecDeque<Vec<u8>>, String> {
  read_list_opt(db, key, now, |l| l.cloned().unwrap_or_default())
}

/// A set's members in the order Redis 7.0 answers a small set of integers (an intset:
/// ascending); others in no particular order.
fn set_members(s: &HashSet<Vec<u8>>) -> Vec<Value> {
  let ints: Option<Vec<i64>> = if s.len() <= 512 {
    s.iter().map(|m| parse_i64(m)).collect()
  } else {
    None
  };
  match ints {
    Some(mut ints) => {
      ints.sort_unstable();
      ints.into_iter().map(|i| bulk(i.to_string())).collect()
    }
    None => s.iter().map(|m| bulk(m.clone())).collect(),
  }
}

/// `start`..`stop` (inclusive, negative from the end) as a half-open range within `len`.
fn index_range(start: i64, stop: i64, len: usize) -> (usize, usize) {
  let len = len as i64;
  let start = if start < 0 {
    (len + start).max(0)
  } else {
    start
  };
  let stop = if stop < 0 {
    len + stop
  } else {
    stop.min(len - 1)
  };
  if start > stop || start >= len {
    (0, 0)
  } else {
    (start as usize, stop as usize + 1)
  }
}

/// A score bound: `1.5`, `(1.5` (exclusive), `-inf`, `+inf`.
#[derive(Clone, Copy)]
struct ScoreBound {
  value: f64,
  exclusive: bool,
}

fn parse_bound(b: &[u8]) -> Option<ScoreBound> {
  match b.strip_prefix(b"(") {
    Some(rest) => parse_float(rest).map(|value| ScoreBound {
      value,
      exclusive: true,
    }),
    None => parse_float(b).map(|value| ScoreBound {
      value,
      exclusive: false,
    }),
  }
}

/// The members whose score is within `min`..`max`, in order (reversed with `rev`).
fn score_range(z: &ZSet, min: ScoreBound, max: ScoreBound, rev: bool) -> Vec<&(Score, Vec<u8>)> {
  let above = move |s: f64| s > min.value || (!min.exclusive && s == min.value);
  let below = move |s: f64| s < max.value || (!max.exclusive && s == max.value);
  if rev {
    z.order
      .iter()
      .rev()
      .skip_while(|(s, _)| !below(s.0))
      .take_while(|(s, _)| above(s.0))
      .collect()
  } else {
    z.order
      .range((
        Bound::Included((Score(min.value), Vec::new())),
        Bound::Unbounded,
      ))
      .skip_while(|(s, _)| !above(s.0))
      .take_while(|(s, _)| below(s.0))
      .collect()
  }
}

fn zadd(ctx: &mut Ctx, a: &[Vec<u8>]) -> Res {
  let (mut nx, mut xx, mut gt, mut lt, mut ch, mut incr) =
    (false, false, false, false, false, false);
  let mut i = 1;
  while i < a.len() {
    match String::from_utf8_lossy(&a[i]).to_ascii_uppercase().as_str() {
      "NX" => nx = true,
      "XX" => xx = true,
      "GT" => gt = true,
      "LT" => lt = true,
      "CH" => ch = true,
      "INCR" => incr = true,
      _ => break,
    }
    i += 1;
  }
  let pairs = &a[i..];
  if pairs.is_empty() || !pairs.len().is_multiple_of(2) {
    return Err(SYNTAX.into());
  }
  if nx && xx {
    return Err("ERR XX and NX options at the same time are not compatible".into());
  }
  if (nx && (gt || lt)) || (gt && lt) {
    return Err("ERR GT, LT, and/or NX options at the same time are not compatible".into());
  }
  if incr && pairs.len() > 2 {
    return Err("ERR INCR option supports a single increment-element pair".into());
  }
  let mut scored = Vec::with_capacity(pairs.len() / 2);
  for p in pairs.chunks(2) {
    scored.push((parse_float(&p[0]).ok_or(NOT_FLOAT)?, &p[1]));
  }
  let now = ctx.now;
  let create = !xx;
  with_zset(ctx.db, &a[0], now, create, |z| {
    let mut added = 0;
    let mut changed = 0;
    let mut last: Option<f64> = None;
    for (score, member) in scored {
      let old = z.scores.get(member.as_slice()).copied();
      let mut new = score;
      match old {
        Some(o) => {
          if nx {
            last = None;
            continue;
          }
          if incr {
            new = o + score;
            if new.is_nan() {
              return Err("ERR resulting score is not a number (NaN)".into());
            }
          }
          if (gt && new <= o) || (lt && new >= o) {
            last = None;
            continue;
          }
          if new != o {
            z.insert(member, new);
            changed += 1;
          }
          last = Some(new);
        }
        None => {
          if xx {
            last = None;
            continue;
          }
          z.insert(member, new);
          added += 1;
          last = Some(new);
        }
      }
    }
    Ok(if incr {
      last.map(|s| bulk(format_double(s))).unwrap_or(Value::Nil)
    } else {
      Value::Int(if ch { added + changed } else { added })
    })
  })
}

/// ZUNIONSTORE / ZINTERSTORE destination numkeys key... [WEIGHTS w...] [AGGREGATE
/// SUM|MIN|MAX] (sets count as members with score 1).
fn zstore(ctx: &mut Ctx, name: &str, a: &[Vec<u8>]) -> Res {
  let n = match parse_i64(&a[1]) {
    Some(n) if n > 0 => n as usize,
    Some(_) => {
      return Err(format!(
        "ERR at least 1 input key is needed for '{}' command",
        name.to_ascii_lowercase()
      ))
    }
    None => return Err(NOT_INT.into()),
  };
  if a.len() < 2 + n {
    return Err(SYNTAX.into());
  }
  let keys = &a[2..2 + n];
  // Redis 7.0 checks the keys' types before it reads WEIGHTS / AGGREGATE
  let now = ctx.now;
  let mut inputs: Vec<Vec<(Vec<u8>, f64)>> = Vec::with_capacity(n);
  for k in keys {
    inputs.push(match ctx.db.get(k, now) {
      None => Vec::new(),
      Some(Entry {
        data: Data::ZSet(z),
        ..
      }) => z.scores.iter().map(|(m, s)| (m.clone(), *s)).collect(),
      Some(Entry {
        data: Data::Set(s), ..
      }) => s.iter().map(|m| (m.clone(), 1.0)).collect(),
      Some(_) => return Err(WRONGTYPE.into()),
    });
  }
  let mut weights = vec![1.0; n];
  let mut aggregate = "SUM".to_string();
  let mut i = 2 + n;
  while i < a.len() {
    let word = String::from_utf8_lossy(&a[i]).to_ascii_uppercase();
    if word == "WEIGHTS" && i + n < a.len() {
      for (j, w) in weights.iter_mut().enumerate() {
        *w = parse_float(&a[i + 1 + j]).ok_or("ERR weight value is not a float")?;
      }
      i += 1 + n;
    } else if word == "AGGREGATE" && i + 1 < a.len() {
      aggregate = String::from_utf8_lossy(&a[i + 1]).to_ascii_uppercase();
      if !matches!(aggregate.as_str(), "SUM" | "MIN" | "MAX") {
        return Err(SYNTAX.into());
      }
      i += 2;
    } else {
      return Err(SYNTAX.into());
    }
  }
  let combine = |x: f64, y: f64| match aggregate.as_str() {
    "MIN" => x.min(y),
    "MAX" => x.max(y),
    _ => {
      let s = x + y;
      if s.is_nan() {
        0.0
      } else {
        s
      }
    }
  };
  let weigh = |s: f64, w: f64| {
    let v = s * w;
    if v.is_nan() {
      0.0
    } else {
      v
    }
  };
  let mut out: std::collections::HashMap<Vec<u8>, (f64, usize)> = Default::default();
  // as Redis 7.0: the inputs are taken smallest first (a stable sort: the order of the
  // additions, so of their rounding); ZINTERSTORE makes NaN 0 only in the first one's
  // weighted scores (a later NaN reaches the aggregate: SUM makes it 0, MIN / MAX keep the
  // other), ZUNIONSTORE in every one's
  let mut order: Vec<usize> = (0..n).collect();
  order.sort_by_key(|&i| inputs[i].len());
  for (rank, &i) in order.iter().enumerate() {
    let (input, w) = (&inputs[i], weights[i]);
    for (m, s) in input {
      let v = if name == "ZUNIONSTORE" || rank == 0 {
        weigh(*s, w)
      } else {
        *s * w
      };
      out
        .entry(m.clone())
        .and_modify(|(acc, seen)| {
          *acc = combine(*acc, v);
          *seen += 1;
        })
        .or_insert((v, 1));
    }
  }
  let mut z = ZSet::default();
  for (m, (s, seen)) in out {
    if name == "ZUNIONSTORE" || seen == n {
      z.insert(&m, s);
    }
  }
  let len = z.len() as i64;
  ctx.db.remove(&a[0]);
  if len > 0 {
    ctx.db.insert(&a[0], Data::ZSet(z), None);
  }
  Ok(Value::Int(len))
}

/// ZRANGE and its older forms: `rev` (ZREVRANGE...), `by_score` (ZRANGEBYSCORE...).
fn zrange(ctx: &mut Ctx, a: &[Vec<u8>], mut rev: bool, mut by_score_: bool) -> Res {
  let modern = !rev && !by_score_;
  let mut with_scores = false;
  let mut limit: Option<(i64, i64)> = None;
  let mut i = 3;
  while i < a.len() {
    match String::from_utf8_lossy(&a[i]).to_ascii_uppercase().as_str() {
      "WITHSCORES" => with_scores = true,
      "LIMIT" if by_score_ || modern => {
        let (o, c) = (a.get(i + 1).ok_or(SYNTAX)?, a.get(i + 2).ok_or(SYNTAX)?);
        limit = Some((parse_i64(o).ok_or(NOT_INT)?, parse_i64(c).ok_or(NOT_INT)?));
        i += 2;
      }
      "BYSCORE" if modern => by_score_ = true,
      "REV" if modern => rev = true,
      "BYLEX" if modern => {
        return Err("ERR unknown option 'BYLEX': memory:// does not support it".into())
      }
      _ => return Err(SYNTAX.into()),
    }
    i += 1;
  }
  if modern && limit.is_some() && !by_score_ {
    return Err(
      "ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX"
        .into(),
    );
  }
  let now = ctx.now;
  let items: Vec<(f64, Vec<u8>)> = if by_score_ {
    // with REV (or ZREVRANGEBYSCORE) the bounds come max first
    let (lo, hi) = if rev { (&a[2], &a[1]) } else { (&a[1], &a[2]) };
    let (Some(min), Some(max)) = (parse_bound(lo), parse_bound(hi)) else {
      return Err("ERR min or max is not a float".into());
    };
    let (offset, count) = limit.unwrap_or((0, -1));
    read_zset_opt(ctx.db, &a[0], now, |z| {
      let Some(z) = z else { return Vec::new() };
      if offset < 0 {
        return Vec::new();
      }
      let take = if count < 0 {
        usize::MAX
      } else {
        count as usize
      };
      score_range(z, min, max, rev)
        .into_iter()
        .skip(offset as usize)
        .take(take)
        .map(|(s, m)| (s.0, m.clone()))
        .collect()
    })?
  } else {
    let (Some(start), Some(stop)) = (parse_i64(&a[1]), parse_i64(&a[2])) else {
      return Err(NOT_INT.into());
    };
    read_zset_opt(ctx.db, &a[0], now, |z| {
      let Some(z) = z else { return Vec::new() };
      let (from, to) = index_range(start, stop, z.len());
      let pick = |(s, m): &(Score, Vec<u8>)| (s.0, m.clone());
      if rev {
        z.order
          .iter()
          .rev()
          .skip(from)
          .take(to - from)
          .map(pick)
          .collect()
      } else {
        z.order
          .iter()
          .skip(from)
          .take(to - from)
          .map(pick)
          .collect()
      }
    })?
  };
  let mut out = Vec::with_capacity(items.len() * if with_scores { 2 } else { 1 });
  for (s, m) in items {
    out.push(bulk(m));
    if with_scores {
      out.push(bulk(format_double(s)));
    }
  }
  Ok(Value::Array(out))
}
