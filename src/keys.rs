//! Key prefixing (ioredis-style `keyPrefix`), glob escaping, and where the keys are in a
//! raw command.

use std::collections::HashMap;

use redis::Value;

pub fn prefixed(prefix: &str, key: &str) -> String {
  let mut s = String::with_capacity(prefix.len() + key.len());
  s.push_str(prefix);
  s.push_str(key);
  s
}

pub fn strip<'a>(prefix: &str, key: &'a str) -> &'a str {
  key.strip_prefix(prefix).unwrap_or(key)
}

/// Escapes the glob characters of MATCH patterns (`*`, `?`, `[`, `]`, `\`).
pub fn escape_glob(s: &str) -> String {
  let mut out = String::with_capacity(s.len());
  for c in s.chars() {
    if matches!(c, '*' | '?' | '[' | ']' | '\\') {
      out.push('\\');
    }
    out.push(c);
  }
  out
}

/// A SCAN pattern for `pattern` under `prefix`: the prefix matches only itself.
pub fn prefix_pattern(prefix: &str, pattern: &str) -> String {
  let mut p = escape_glob(prefix);
  p.push_str(pattern);
  p
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct KeySpec {
  first: i64,
  last: i64,
  step: i64,
  movable: bool,
}

/// Where a command's keys are.
#[derive(Debug, PartialEq, Eq)]
pub enum Positions {
  Known(Vec<usize>),
  /// The keys move with the arguments (ZUNIONSTORE, XREAD, SORT ... STORE): ask the server.
  AskServer,
}

/// Key positions of every command, from the server's `COMMAND` reply.
#[derive(Debug, Default)]
pub struct KeyTable {
  specs: HashMap<String, KeySpec>,
}

fn as_int(v: &Value) -> Option<i64> {
  match v {
    Value::Int(i) => Some(*i),
    _ => None,
  }
}

fn as_text(v: &Value) -> Option<String> {
  match v {
    Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
    Value::SimpleString(s) => Some(s.clone()),
    Value::Okay => Some("OK".into()),
    _ => None,
  }
}

impl KeyTable {
  pub fn from_command_reply(reply: &Value) -> KeyTable {
    let mut specs = HashMap::new();
    if let Value::Array(entries) = reply {
      for e in entries {
        let Value::Array(fields) = e else { continue };
        if fields.len() < 6 {
          continue;
        }
        let (Some(name), Some(first), Some(last), Some(step)) = (
          as_text(&fields[0]),
          as_int(&fields[3]),
          as_int(&fields[4]),
          as_int(&fields[5]),
        ) else {
          continue;
        };
        let movable = match &fields[2] {
          Value::Array(flags) | Value::Set(flags) => flags
            .iter()
            .any(|f| as_text(f).as_deref() == Some("movablekeys")),
          _ => false,
        };
        specs.insert(
          name.to_ascii_lowercase(),
          KeySpec {
            first,
            last,
            step,
            movable,
          },
        );
      }
    }
    KeyTable { specs }
  }

  /// Positions (indexes into `args`, where `args[0]` is the command name) of the keys.
  pub fn positions(&self, name: &str, args: &[Vec<u8>]) -> Positions {
    let argc = args.len() as i64;
    // Scripts and functions: keys follow numkeys.
    if matches!(
      name,
      "eval" | "evalsha" | "eval_ro" | "evalsha_ro" | "fcall" | "fcall_ro"
    ) {
      let n = args
        .get(2)
        .and_then(|a| std::str::from_utf8(a).ok())
        .and_then(|s| s.parse::<i64>().ok())
        .unwrap_or(0)
        .max(0);
      return Positions::Known((3..(3 + n).min(argc)).map(|i| i as usize).collect());
    }
    let Some(spec) = self.specs.get(name) else {
      return Positions::Known(Vec::new());
    };
    if spec.movable {
      return Positions::AskServer;
    }
    if spec.first <= 0 || spec.step <= 0 {
      return Positions::Known(Vec::new());
    }
    let last = if spec.last < 0 {
      argc + spec.last
    } else {
      spec.last.min(argc - 1)
    };
    let mut out = Vec::new();
    let mut i = spec.first;
    while i <= last && i < argc {
      out.push(i as usize);
      i += spec.step;
    }
    Positions::Known(out)
  }
}

/// Positions of the keys `COMMAND GETKEYS` named, matched to the arguments in order.
pub fn positions_of_returned_keys(reply: &Value, args: &[Vec<u8>]) -> Vec<usize> {
  let Value::Array(keys) = reply else {
    return Vec::new();
  };
  let mut out = Vec::new();
  let mut from = 1;
  for k in keys {
    let Value::BulkString(k) = k else { continue };
    if let Some(p) = (from..args.len()).find(|&i| &args[i] == k) {
      out.push(p);
      from = p + 1;
    }
  }
  out
}

#[cfg(test)]
mod tests {
  use super::*;

  fn bulk(s: &str) -> Value {
    Value::BulkString(s.as_bytes().to_vec())
  }

  fn entry(name: &str, flags: &[&str], first: i64, last: i64, step: i64) -> Value {
    Value::Array(vec![
      bulk(name),
      Value::Int(-2),
      Value::Array(
        flags
          .iter()
          .map(|f| Value::SimpleString(f.to_string()))
          .collect(),
      ),
      Value::Int(first),
      Value::Int(last),
      Value::Int(step),
    ])
  }

  fn args(a: &[&str]) -> Vec<Vec<u8>> {
    a.iter().map(|s| s.as_bytes().to_vec()).collect()
  }

  fn table() -> KeyTable {
    KeyTable::from_command_reply(&Value::Array(vec![
      entry("get", &["readonly"], 1, 1, 1),
      entry("mset", &["write"], 1, -1, 2),
      entry("del", &["write"], 1, -1, 1),
      entry("ping", &[], 0, 0, 0),
      entry("zunionstore", &["write", "movablekeys"], 1, 1, 1),
    ]))
  }

  #[test]
  fn prefix_and_strip_round_trip() {
    assert_eq!(prefixed("app:", "user:1"), "app:user:1");
    assert_eq!(strip("app:", "app:user:1"), "user:1");
    assert_eq!(strip("app:", "other"), "other");
  }

  #[test]
  fn glob_characters_in_the_prefix_are_escaped_in_patterns() {
    assert_eq!(escape_glob(r"a*b?[c]\"), r"a\*b\?\[c\]\\");
    assert_eq!(prefix_pattern("t*:", "user:*"), r"t\*:user:*");
    assert_eq!(prefix_pattern("", "*"), "*");
  }

  #[test]
  fn key_positions_follow_the_command_table() {
    let t = table();
    assert_eq!(
      t.positions("get", &args(&["GET", "k"])),
      Positions::Known(vec![1])
    );
    assert_eq!(
      t.positions("mset", &args(&["MSET", "a", "1", "b", "2"])),
      Positions::Known(vec![1, 3])
    );
    assert_eq!(
      t.positions("del", &args(&["DEL", "a", "b", "c"])),
      Positions::Known(vec![1, 2, 3])
    );
    assert_eq!(
      t.positions("ping", &args(&["PING"])),
      Positions::Known(vec![])
    );
    assert_eq!(
      t.positions("nosuch", &args(&["NOSUCH", "x"])),
      Positions::Known(vec![])
    );
  }

  #[test]
  fn script_keys_follow_numkeys() {
    let t = table();
    assert_eq!(
      t.positions("eval", &args(&["EVAL", "return 1", "2", "k1", "k2", "arg"])),
      Positions::Known(vec![3, 4])
    );
    assert_eq!(
      t.positions("evalsha", &args(&["EVALSHA", "abc", "0", "arg"])),
      Positions::Known(vec![])
    );
  }

  #[test]
  fn movable_keys_ask_the_server() {
    assert_eq!(
      table().positions("zunionstore", &args(&["ZUNIONSTORE", "d", "2", "a", "b"])),
      Positions::AskServer
    );
    let reply = Value::Array(vec![bulk("d"), bulk("a"), bulk("b")]);
    assert_eq!(
      positions_of_returned_keys(&reply, &args(&["ZUNIONSTORE", "d", "2", "a", "b"])),
      vec![1, 3, 4]
    );
  }
}
