//! The near cache (`nearCache`): values read from Redis kept in process memory, and
//! dropped as soon as Redis says a key changed (client-side caching with RESP3 client
//! tracking: the command connection sends `CLIENT TRACKING ON REDIRECT <id>`, and the
//! tracking connection `<id>` receives an `invalidate` push for every key it read that any
//! client changed).
//!
//! A value is served from memory only while both connections are up and tracking is on
//! for the command connection as it is now: a lost connection (either one) empties the
//! cache, so a read never returns a value older than the last contact with the server
//! plus the invalidation delay. A read whose key is invalidated while its reply is on the
//! way is not cached (the reply may be the old value).

use std::collections::{HashMap, HashSet};
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use redis::Value;

/// What read a cached value (a key may be read as a string or as a hash).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum ReadKind {
  Get,
  HashAll,
}

impl ReadKind {
  fn tag(self) -> u8 {
    match self {
      ReadKind::Get => b'g',
      ReadKind::HashAll => b'h',
    }
  }
}

/// `nearCache` options.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NearCacheConfig {
  pub max_entries: usize,
  pub max_bytes: usize,
  pub ttl: Option<Duration>,
}

pub const DEFAULT_MAX_ENTRIES: usize = 10_000;
pub const DEFAULT_MAX_BYTES: usize = 64 * 1024 * 1024;

struct Entry {
  value: Value,
  bytes: usize,
  expires: Option<Instant>,
}

struct Inner {
  /// Keyed by the read kind's tag, then the key as stored (prefix included).
  entries: lru::LruCache<Vec<u8>, Entry>,
  bytes: usize,
  /// Reads in flight, by key (as stored).
  reading: HashMap<Vec<u8>, u32>,
  /// Keys invalidated while a read of theirs was in flight.
  stale: HashSet<Vec<u8>>,
  /// Bumped whenever everything is dropped: reads begun before do not populate.
  epoch: u64,
}

pub struct NearCache {
  config: NearCacheConfig,
  inner: Mutex<Inner>,
  /// The tracking connection's client id, 0 while it is down.
  tracking_id: AtomicI64,
  /// (command connection generation, tracking id) that tracking is on for; values are
  /// served only while both are current.
  enabled_generation: AtomicU64,
  enabled_tracking: AtomicI64,
  /// A CLIENT TRACKING command is on its way.
  enabling: AtomicBool,
  pub hits: AtomicU64,
  pub misses: AtomicU64,
  pub evictions: AtomicU64,
}

/// A read in flight (from `begin_read`), to hand its reply to `end_read`.
pub struct Ticket {
  key: Vec<u8>,
  kind: ReadKind,
  epoch: u64,
}

fn value_size(v: &Value) -> usize {
  match v {
    Value::BulkString(b) => b.len() + 24,
    Value::SimpleString(s) => s.len() + 24,
    Value::Array(items) | Value::Set(items) => 24 + items.iter().map(value_size).sum::<usize>(),
    Value::Map(pairs) => {
      24 + pairs
        .iter()
        .map(|(k, v)| value_size(k) + value_size(v))
        .sum::<usize>()
    }
    _ => 24,
  }
}

impl NearCache {
  pub fn new(config: NearCacheConfig) -> NearCache {
    let capacity = NonZeroUsize::new(config.max_entries.max(1)).unwrap_or(NonZeroUsize::MIN);
    NearCache {
      config,
      inner: Mutex::new(Inner {
        entries: lru::LruCache::new(capacity),
        bytes: 0,
        reading: HashMap::new(),
        stale: HashSet::new(),
        epoch: 0,
      }),
      tracking_id: AtomicI64::new(0),
      enabled_generation: AtomicU64::new(0),
      enabled_tracking: AtomicI64::new(0),
      enabling: AtomicBool::new(false),
      hits: AtomicU64::new(0),
      misses: AtomicU64::new(0),
      evictions: AtomicU64::new(0),
    }
  }

  fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
    self.inner.lock().unwrap_or_else(|e| e.into_inner())
  }

  /// Whether values may be served for command connection `generation` (0 = down).
  pub fn live(&self, generation: u64) -> bool {
    let tracking = self.tracking_id.load(Ordering::Acquire);
    generation != 0
      && tracking != 0
      && self.enabled_generation.load(Ordering::Acquire) == generation
      && self.enabled_tracking.load(Ordering::Acquire) == tracking
  }

  /// Tracking must be turned on (again) for `generation`: the id to redirect to, when
  /// the tracking connection is up and nobody is turning it on already.
  pub fn needs_enabling(&self, generation: u64) -> Option<i64> {
    let tracking = self.tracking_id.load(Ordering::Acquire);
    if generation == 0 || tracking == 0 || self.live(generation) {
      return None;
    }
    if self.enabling.swap(true, Ordering::AcqRel) {
      return None;
    }
    Some(tracking)
  }

  /// Tracking is on for `generation`, redirected to `tracking`: start serving (from an
  /// empty cache: what was kept before may have missed invalidations).
  pub fn enabled(&self, generation: u64, tracking: i64) {
    self.flush();
    self.enabled_generation.store(generation, Ordering::Release);
    self.enabled_tracking.store(tracking, Ordering::Release);
    self.enabling.store(false, Ordering::Release);
  }

  /// Turning tracking on failed: try again on a later read.
  pub fn enabling_failed(&self) {
    self.enabling.store(false, Ordering::Release);
  }

  /// The tracking connection is up as client `id`, or down (`0`): everything is dropped.
  pub fn set_tracking(&self, id: i64) {
    self.tracking_id.store(id, Ordering::Release);
    self.flush();
  }

  /// The cached value of `key` read as `kind`, if it may be served.
  pub fn lookup(&self, kind: ReadKind, key: &[u8], generation: u64) -> Option<Value> {
    if !self.live(generation) {
      return None;
    }
    let mut id = Vec::with_capacity(key.len() + 1);
    id.push(kind.tag());
    id.extend_from_slice(key);
    let mut inner = self.lock();
    let hit = match inner.entries.get(&id) {
      Some(e) if e.expires.is_none_or(|t| t > Instant::now()) => Some(e.value.clone()),
      Some(_) => {
        if let Some(e) = inner.entries.pop(&id) {
          inner.bytes -= e.bytes;
        }
        None
      }
      None => None,
    };
    drop(inner);
    match &hit {
      Some(_) => self.hits.fetch_add(1, Ordering::Relaxed),
      None => self.misses.fetch_add(1, Ordering::Relaxed),
    };
    hit
  }

  /// A read of `key` is about to be sent (while the cache is live).
  pub fn begin_read(&self, kind: ReadKind, key: &[u8]) -> Ticket {
    let mut inner = self.lock();
    *inner.reading.entry(key.to_vec()).or_insert(0) += 1;
    Ticket {
      key: key.to_vec(),
      kind,
      epoch: inner.epoch,
    }
  }

  /// The reply of a read begun with `ticket`: kept when nothing invalidated the key
  /// meanwhile (`reply` is `None` when the read failed).
  pub fn end_read(&self, ticket: Ticket, reply: Option<&Value>) {
    let mut inner = self.lock();
    let stale = inner.stale.contains(&ticket.key) || inner.epoch != ticket.epoch;
    let last = match inner.reading.get_mut(&ticket.key) {
      Some(n) if *n > 1 => {
        *n -= 1;
        false
      }
      _ => {
        inner.reading.remove(&ticket.key);
        true
      }
    };
    if last {
      inner.stale.remove(&ticket.key);
    }
    let Some(value) = reply.filter(|_| !stale) else {
      return;
    };
    if matches!(value, Value::ServerError(_)) {
      return;
    }
    let bytes = value_size(value) + ticket.key.len() + 64;
    if bytes > self.config.max_bytes {
      return;
    }
    let mut id = Vec::with_capacity(ticket.key.len() + 1);
    id.push(ticket.kind.tag());
    id.extend_from_slice(&ticket.key);
    let entry = Entry {
      value: value.clone(),
      bytes,
      expires: self.config.ttl.map(|t| Instant::now() + t),
    };
    inner.bytes += bytes;
    if let Some((_, old)) = inner.entries.push(id, entry) {
      // replaced, or the least recently used one made room
      inner.bytes -= old.bytes;
      if inner.entries.len() >= self.config.max_entries {
        self.evictions.fetch_add(1, Ordering::Relaxed);
      }
    }
    while inner.bytes > self.config.max_bytes {
      match inner.entries.pop_lru() {
        Some((_, old)) => {
          inner.bytes -= old.bytes;
          self.evictions.fetch_add(1, Ordering::Relaxed);
        }
        None => break,
      }
    }
  }

  /// Redis says these keys changed (as stored: prefix included).
  pub fn invalidate(&self, keys: &[Vec<u8>]) {
    let mut inner = self.lock();
    for key in keys {
      for kind in [ReadKind::Get, ReadKind::HashAll] {
        let mut id = Vec::with_capacity(key.len() + 1);
        id.push(kind.tag());
        id.extend_from_slice(key);
        if let Some(e) = inner.entries.pop(&id) {
          inner.bytes -= e.bytes;
        }
      }
      if inner.reading.contains_key(key) {
        inner.stale.insert(key.clone());
      }
    }
  }

  /// Drops everything (and what is being read now).
  pub fn flush(&self) {
    let mut inner = self.lock();
    inner.entries.clear();
    inner.bytes = 0;
    inner.epoch += 1;
    inner.stale.clear();
  }

  /// `(entries, bytes)` now.
  pub fn size(&self) -> (usize, usize) {
    let inner = self.lock();
    (inner.entries.len(), inner.bytes)
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  fn cache(max_entries: usize, max_bytes: usize) -> NearCache {
    let c = NearCache::new(NearCacheConfig {
      max_entries,
      max_bytes,
      ttl: None,
    });
    c.set_tracking(7);
    c.enabled(1, 7);
    c
  }

  fn text(s: &str) -> Value {
    Value::BulkString(s.as_bytes().to_vec())
  }

  fn read(c: &NearCache, key: &str, value: &str) {
    let t = c.begin_read(ReadKind::Get, key.as_bytes());
    c.end_read(t, Some(&text(value)));
  }

  #[test]
  fn a_read_value_is_served_until_invalidated() {
    let c = cache(10, 1 << 20);
    assert_eq!(c.lookup(ReadKind::Get, b"k", 1), None);
    read(&c, "k", "v1");
    assert_eq!(c.lookup(ReadKind::Get, b"k", 1), Some(text("v1")));
    c.invalidate(&[b"k".to_vec()]);
    assert_eq!(c.lookup(ReadKind::Get, b"k", 1), None);
  }

  #[test]
  fn an_invalidation_during_the_read_keeps_its_reply_out() {
    let c = cache(10, 1 << 20);
    let t = c.begin_read(ReadKind::Get, b"k");
    c.invalidate(&[b"k".to_vec()]);
    c.end_read(t, Some(&text("old")));
    assert_eq!(c.lookup(ReadKind::Get, b"k", 1), None);
    read(&c, "k", "new");
    assert_eq!(c.lookup(ReadKind::Get, b"k", 1), Some(text("new")));
  }

  #[test]
  fn nothing_is_served_for_another_connection_or_without_tracking() {
    let c = cache(10, 1 << 20);
    read(&c, "k", "v");
    assert_eq!(
      c.lookup(ReadKind::Get, b"k", 2),
      None,
      "a new command connection"
    );
    assert_eq!(
      c.lookup(ReadKind::Get, b"k", 0),
      None,
      "no command connection"
    );
    c.set_tracking(0);
    assert_eq!(
      c.lookup(ReadKind::Get, b"k", 1),
      None,
      "tracking connection down"
    );
    assert_eq!(c.size().0, 0, "and everything was dropped");
  }

  #[test]
  fn the_least_recently_used_entries_go_first_by_count_and_by_bytes() {
    let c = cache(2, 1 << 20);
    read(&c, "a", "1");
    read(&c, "b", "2");
    assert!(c.lookup(ReadKind::Get, b"a", 1).is_some());
    read(&c, "c", "3");
    assert!(
      c.lookup(ReadKind::Get, b"b", 1).is_none(),
      "b was the least recently used"
    );
    assert!(c.lookup(ReadKind::Get, b"a", 1).is_some());
    let small = cache(100, 400);
    read(&small, "x", &"x".repeat(200));
    read(&small, "y", &"y".repeat(200));
    assert!(small.size().1 <= 400);
    assert!(small.lookup(ReadKind::Get, b"x", 1).is_none());
    assert!(small.evictions.load(Ordering::Relaxed) >= 1);
  }

  #[test]
  fn a_string_and_a_hash_read_of_one_key_are_kept_apart_and_invalidated_together() {
    let c = cache(10, 1 << 20);
    read(&c, "k", "text");
    let t = c.begin_read(ReadKind::HashAll, b"k");
    c.end_read(t, Some(&Value::Array(vec![])));
    assert_eq!(
      c.lookup(ReadKind::HashAll, b"k", 1),
      Some(Value::Array(vec![]))
    );
    c.invalidate(&[b"k".to_vec()]);
    assert_eq!(c.lookup(ReadKind::Get, b"k", 1), None);
    assert_eq!(c.lookup(ReadKind::HashAll, b"k", 1), None);
  }
}
