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

/// Slots of a Redis Cluster.
pub const SLOTS: u16 = 16384;

/// CRC16-XMODEM (polynomial 0x1021, initial value 0): what Redis Cluster hashes keys with.
pub fn crc16(bytes: &[u8]) -> u16 {
  let mut crc: u16 = 0;
  for &b in bytes {
    crc ^= (b as u16) << 8;
    for _ in 0..8 {
      crc = if crc & 0x8000 != 0 {
        (crc << 1) ^ 0x1021
      } else {
        crc << 1
      };
    }
  }
  crc
}

/// The Redis Cluster slot of `key`: the slot of its hash tag (the text between its first
/// `{` and the first `}` after it, when that text is not empty), else of the whole key.
pub fn hash_slot(key: &[u8]) -> u16 {
  let hashed = key
    .iter()
    .position(|&b| b == b'{')
    .and_then(|open| {
      let rest = &key[open + 1..];
      match rest.iter().position(|&b| b == b'}') {
        Some(len) if len > 0 => Some(&rest[..len]),
        _ => None,
      }
    })
    .unwrap_or(key);
  crc16(hashed) % SLOTS
}

/// `text` as a hash tag, `{text}`: keys built with the same tag share a Redis Cluster slot,
/// so one script may touch them all. A text starting with `}` would make an empty tag
/// (Redis then hashes the whole key), so it gets a `\` in front, and so does a text
/// starting with `\`, so that two texts never give the same tag.
pub fn tag(text: &str) -> String {
  let mut s = String::with_capacity(text.len() + 3);
  s.push('{');
  if text.starts_with(['}', '\\']) {
    s.push('\\');
  }
  s.push_str(text);
  s.push('}');
  s
}

/// When `keys` (each behind `prefix`) are not all in one cluster slot: two keys whose
/// slots differ. The prefix is left out: what is checked is this package's layout of the
/// keys, whatever prefix the client has (whether a prefix may hold a `{` is decided
/// where the client is configured).
pub fn slots_differ<'a, K: AsRef<str>>(prefix: &str, keys: &'a [K]) -> Option<(&'a str, &'a str)> {
  let mut keys = keys.iter().map(|k| k.as_ref());
  let first = keys.next()?;
  let slot = hash_slot(strip(prefix, first).as_bytes());
  keys
    .find(|k| hash_slot(strip(prefix, k).as_bytes()) != slot)
    .map(|other| (first, other))
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
  fn slots_are_computed_as_redis_does() {
    // values from CLUSTER KEYSLOT
    assert_eq!(hash_slot(b"foo"), 12182);
    assert_eq!(hash_slot(b"123456789"), 12739);
    assert_eq!(
      hash_slot(b"{user1000}.following"),
      hash_slot(b"{user1000}.followers")
    );
    assert_eq!(hash_slot(b"{user1000}.following"), hash_slot(b"user1000"));
    assert_eq!(hash_slot(b"foo{}{bar}"), hash_slot(b"foo{}{bar}"));
    assert_ne!(hash_slot(b"foo{}{bar}"), hash_slot(b"bar"));
    assert_eq!(hash_slot(b"foo{{bar}}zap"), hash_slot(b"{bar"));
  }

  #[test]
  fn crc16_is_xmodem_as_the_cluster_spec_gives_it() {
    assert_eq!(crc16(b"123456789"), 0x31C3);
  }

  #[test]
  fn slots_follow_the_hash_tag_rules_of_the_cluster_spec() {
    // values of CLUSTER KEYSLOT (redis-server 7.0)
    assert_eq!(hash_slot(b"somekey"), 11058);
    assert_eq!(hash_slot(b"foo{hash_tag}"), 2515);
    assert_eq!(hash_slot(b"foo{}{bar}"), 8363);
    assert_eq!(hash_slot(b"foo{{bar}}zap"), 4015);
    assert_eq!(hash_slot(b"session:{\\}x}"), 7033);
    assert_eq!(hash_slot(b"123456789"), 12739);
    assert_eq!(hash_slot(b"foo{hash_tag}"), hash_slot(b"hash_tag"));
    assert_eq!(
      hash_slot(b"{user1000}.following"),
      hash_slot(b"{user1000}.followers")
    );
    // the first { and the first } after it
    assert_eq!(hash_slot(b"foo{{bar}}zap"), hash_slot(b"{bar"));
    assert_eq!(hash_slot(b"foo{bar}{zap}"), hash_slot(b"bar"));
    // an empty tag, or none closed: the whole key
    assert_eq!(hash_slot(b"foo{}{bar}"), crc16(b"foo{}{bar}") % SLOTS);
    assert_eq!(hash_slot(b"foo{bar"), crc16(b"foo{bar") % SLOTS);
  }

  #[test]
  fn a_tag_is_never_empty_and_never_shared_by_two_texts() {
    assert_eq!(tag("u1"), "{u1}");
    assert_eq!(tag("}x"), "{\\}x}");
    assert_eq!(tag("\\}x"), "{\\\\}x}");
    assert_ne!(tag("}x"), tag("\\}x"));
    for text in ["u1", "}x", "\\}x", "a}b", "{a}", "{", "}", "\\"] {
      let t = tag(text);
      let a = format!("session:{t}");
      let b = format!("session-user:{t}:meta");
      assert_eq!(hash_slot(a.as_bytes()), hash_slot(b.as_bytes()), "{text}");
      let inner = &t[1..t.find('}').unwrap_or(t.len())];
      assert!(!inner.is_empty(), "{text}");
    }
  }

  #[test]
  fn slots_are_compared_without_the_prefix() {
    let same = ["app:{u1}:a", "app:{u1}:b"];
    assert_eq!(slots_differ("app:", &same), None);
    let apart = ["app:a", "app:b"];
    assert_eq!(slots_differ("app:", &apart), Some(("app:a", "app:b")));
    assert_eq!(slots_differ::<&str>("", &[]), None);
    // a prefix with a tag of its own does not hide a layout that would split
    assert!(slots_differ("{t}:", &["{t}:x", "{t}:y"]).is_some());
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

  #[test]
  fn command_names_in_the_table_are_matched_in_lower_case() {
    let t = KeyTable::from_command_reply(&Value::Array(vec![entry("GET", &[], 1, 1, 1)]));
    assert_eq!(
      t.positions("get", &args(&["GET", "k"])),
      Positions::Known(vec![1])
    );
  }

  #[test]
  fn command_names_given_as_status_replies_are_read_too() {
    let mut status = entry("x", &[], 1, 1, 1);
    if let Value::Array(fields) = &mut status {
      fields[0] = Value::SimpleString("strlen".into());
    }
    let t = KeyTable::from_command_reply(&Value::Array(vec![status]));
    assert_eq!(
      t.positions("strlen", &args(&["STRLEN", "k"])),
      Positions::Known(vec![1])
    );
  }

  #[test]
  fn malformed_command_entries_are_skipped_and_the_rest_kept() {
    let mut bad_step = entry("badstep", &[], 1, 1, 1);
    if let Value::Array(fields) = &mut bad_step {
      fields[5] = bulk("1");
    }
    let mut nameless = entry("x", &[], 1, 1, 1);
    if let Value::Array(fields) = &mut nameless {
      fields[0] = Value::Nil;
    }
    let reply = Value::Array(vec![
      bulk("not an entry"),
      Value::Array(vec![bulk("short"), Value::Int(2)]),
      bad_step,
      nameless,
      entry("get", &[], 1, 1, 1),
    ]);
    let t = KeyTable::from_command_reply(&reply);
    assert_eq!(
      t.positions("badstep", &args(&["BADSTEP", "k"])),
      Positions::Known(vec![])
    );
    assert_eq!(
      t.positions("get", &args(&["GET", "k"])),
      Positions::Known(vec![1])
    );
  }

  #[test]
  fn flags_given_as_a_set_are_read_and_missing_flags_mean_fixed_keys() {
    let mut set_flags = entry("sort", &[], 1, 1, 1);
    if let Value::Array(fields) = &mut set_flags {
      fields[2] = Value::Set(vec![Value::Okay, Value::SimpleString("movablekeys".into())]);
    }
    let mut no_flags = entry("strlen", &[], 1, 1, 1);
    if let Value::Array(fields) = &mut no_flags {
      fields[2] = Value::Nil;
    }
    let t = KeyTable::from_command_reply(&Value::Array(vec![set_flags, no_flags]));
    assert_eq!(
      t.positions("sort", &args(&["SORT", "k", "STORE", "d"])),
      Positions::AskServer
    );
    assert_eq!(
      t.positions("strlen", &args(&["STRLEN", "k"])),
      Positions::Known(vec![1])
    );
  }

  #[test]
  fn a_command_reply_that_is_not_an_array_gives_an_empty_table() {
    let t = KeyTable::from_command_reply(&Value::Nil);
    assert_eq!(
      t.positions("get", &args(&["GET", "k"])),
      Positions::Known(vec![])
    );
  }

  #[test]
  fn a_fixed_last_key_is_capped_at_the_arguments_given() {
    let t = KeyTable::from_command_reply(&Value::Array(vec![entry("rename", &[], 1, 2, 1)]));
    assert_eq!(
      t.positions("rename", &args(&["RENAME", "a"])),
      Positions::Known(vec![1])
    );
    assert_eq!(
      t.positions("rename", &args(&["RENAME", "a", "b"])),
      Positions::Known(vec![1, 2])
    );
  }

  #[test]
  fn a_negative_last_key_counts_from_the_end() {
    // BITOP-like: keys from 2 to the last argument.
    let t = KeyTable::from_command_reply(&Value::Array(vec![entry("bitop", &[], 2, -1, 1)]));
    assert_eq!(
      t.positions("bitop", &args(&["BITOP", "AND", "d", "a", "b"])),
      Positions::Known(vec![2, 3, 4])
    );
    // -2: the final argument is not a key.
    let t = KeyTable::from_command_reply(&Value::Array(vec![entry("tail", &[], 1, -2, 1)]));
    assert_eq!(
      t.positions("tail", &args(&["TAIL", "a", "b", "x"])),
      Positions::Known(vec![1, 2])
    );
  }

  #[test]
  fn script_numkeys_that_is_missing_negative_or_too_large_is_bounded() {
    let t = table();
    assert_eq!(
      t.positions("eval", &args(&["EVAL", "return 1"])),
      Positions::Known(vec![])
    );
    assert_eq!(
      t.positions("fcall", &args(&["FCALL", "f", "-3", "k"])),
      Positions::Known(vec![])
    );
    assert_eq!(
      t.positions("fcall_ro", &args(&["FCALL_RO", "f", "five", "k"])),
      Positions::Known(vec![])
    );
    assert_eq!(
      t.positions("evalsha_ro", &args(&["EVALSHA_RO", "abc", "9", "k1", "k2"])),
      Positions::Known(vec![3, 4])
    );
  }

  #[test]
  fn returned_keys_are_matched_to_the_arguments_in_order() {
    // The same text as a key and as a later argument: the first free position is taken.
    let reply = Value::Array(vec![bulk("a"), bulk("a")]);
    assert_eq!(
      positions_of_returned_keys(&reply, &args(&["CMD", "x", "a", "y", "a"])),
      vec![2, 4]
    );
  }

  #[test]
  fn returned_keys_that_match_no_argument_or_are_not_strings_are_ignored() {
    let reply = Value::Array(vec![bulk("gone"), Value::Int(1), bulk("k")]);
    assert_eq!(
      positions_of_returned_keys(&reply, &args(&["CMD", "k"])),
      vec![1]
    );
  }

  #[test]
  fn a_getkeys_reply_that_is_not_an_array_names_no_keys() {
    assert_eq!(
      positions_of_returned_keys(&Value::Nil, &args(&["CMD", "k"])),
      Vec::<usize>::new()
    );
  }

  #[test]
  fn strip_leaves_a_key_without_the_prefix_unchanged_and_an_empty_prefix_is_a_no_op() {
    assert_eq!(strip("", "k"), "k");
    assert_eq!(prefixed("", "k"), "k");
    assert_eq!(strip("app:", "app:"), "");
  }
}
