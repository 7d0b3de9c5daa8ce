//! The keyspace of `memory://`: an ordered map of keys (so SCAN can resume after the last
//! key it returned), their expiry deadlines, and an index of those deadlines (so expired
//! keys are found and freed without a walk over every key).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::ops::Bound;

/// A score in a sorted set: ordered as Redis orders them (`-0` is stored as `0`; NaN is
/// never stored).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Score(pub f64);

impl Eq for Score {}

impl PartialOrd for Score {
  fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
    Some(self.cmp(other))
  }
}

impl Ord for Score {
  fn cmp(&self, other: &Self) -> std::cmp::Ordering {
    self.0.total_cmp(&other.0)
  }
}

/// A sorted set: member → score, and (score, member) in order.
#[derive(Default, Debug, Clone)]
pub struct ZSet {
  pub scores: HashMap<Vec<u8>, f64>,
  pub order: BTreeSet<(Score, Vec<u8>)>,
}

impl ZSet {
  /// Sets `member`'s score; true when the member is new.
  pub fn insert(&mut self, member: &[u8], score: f64) -> bool {
    let score = if score == 0.0 { 0.0 } else { score };
    match self.scores.get_mut(member) {
      Some(old) => {
        if *old != score {
          self.order.remove(&(Score(*old), member.to_vec()));
          self.order.insert((Score(score), member.to_vec()));
          *old = score;
        }
        false
      }
      None => {
        self.scores.insert(member.to_vec(), score);
        self.order.insert((Score(score), member.to_vec()));
        true
      }
    }
  }

  pub fn remove(&mut self, member: &[u8]) -> bool {
    match self.scores.remove(member) {
      Some(score) => {
        self.order.remove(&(Score(score), member.to_vec()));
        true
      }
      None => false,
    }
  }

  pub fn len(&self) -> usize {
    self.scores.len()
  }
}

/// A hash: fields in the order they were first set (what Redis's small hashes, listpacks,
/// answer HGETALL with).
#[derive(Default, Debug, Clone)]
pub struct Hash {
  pub fields: HashMap<Vec<u8>, (u64, Vec<u8>)>,
  next: u64,
}

impl Hash {
  /// Sets `field`; true when it is new.
  pub fn set(&mut self, field: &[u8], value: Vec<u8>) -> bool {
    match self.fields.get_mut(field) {
      Some(slot) => {
        slot.1 = value;
        false
      }
      None => {
        self.next += 1;
        self.fields.insert(field.to_vec(), (self.next, value));
        true
      }
    }
  }

  pub fn get(&self, field: &[u8]) -> Option<&Vec<u8>> {
    self.fields.get(field).map(|(_, v)| v)
  }

  /// The fields in order.
  pub fn ordered(&self) -> Vec<(&Vec<u8>, &Vec<u8>)> {
    let mut all: Vec<_> = self.fields.iter().map(|(k, (n, v))| (*n, k, v)).collect();
    all.sort_unstable_by_key(|(n, _, _)| *n);
    all.into_iter().map(|(_, k, v)| (k, v)).collect()
  }
}

/// What a key holds.
#[derive(Debug, Clone)]
pub enum Data {
  Str(Vec<u8>),
  Hash(Hash),
  Set(HashSet<Vec<u8>>),
  ZSet(ZSet),
  List(VecDeque<Vec<u8>>),
}

impl Data {
  /// The name TYPE answers.
  pub fn type_name(&self) -> &'static str {
    match self {
      Data::Str(_) => "string",
      Data::Hash(_) => "hash",
      Data::Set(_) => "set",
      Data::ZSet(_) => "zset",
      Data::List(_) => "list",
    }
  }

  /// Whether an aggregate became empty (Redis deletes such a key).
  pub fn is_empty_aggregate(&self) -> bool {
    match self {
      Data::Str(_) => false,
      Data::Hash(h) => h.fields.is_empty(),
      Data::Set(s) => s.is_empty(),
      Data::ZSet(z) => z.len() == 0,
      Data::List(l) => l.is_empty(),
    }
  }

  /// Approximate bytes held, for INFO's used_memory.
  pub fn approx_bytes(&self) -> usize {
    match self {
      Data::Str(s) => s.len(),
      Data::Hash(h) => h
        .fields
        .iter()
        .map(|(k, (_, v))| k.len() + v.len() + 40)
        .sum(),
      Data::Set(s) => s.iter().map(|m| m.len() + 16).sum(),
      Data::ZSet(z) => z.scores.keys().map(|m| 2 * m.len() + 48).sum(),
      Data::List(l) => l.iter().map(|m| m.len() + 24).sum(),
    }
  }
}

#[derive(Debug, Clone)]
pub struct Entry {
  pub data: Data,
  /// Unix time in ms after which the key is gone.
  pub expires: Option<u64>,
}

/// How many SCAN cursors are remembered; the oldest are forgotten first.
const MAX_CURSORS: usize = 100_000;

/// The keys and their expiry.
#[derive(Default)]
pub struct Db {
  map: BTreeMap<Vec<u8>, Entry>,
  /// (deadline, key) of every key with an expiry.
  expiry: BTreeSet<(u64, Vec<u8>)>,
  /// SCAN cursor id → the last key that step returned.
  cursors: HashMap<u64, Vec<u8>>,
  cursor_order: VecDeque<u64>,
  next_cursor: u64,
  /// Keys freed by expiry, since the keyspace was made (INFO expired_keys).
  pub expired_keys: u64,
}

/// Unix time now, in ms.
pub fn now_ms() -> u64 {
  std::time::SystemTime::now()
    .duration_since(std::time::UNIX_EPOCH)
    .map(|d| d.as_millis() as u64)
    .unwrap_or(0)
}

fn expired(entry: &Entry, now: u64) -> bool {
  entry.expires.is_some_and(|t| now > t)
}

impl Db {
  /// Drops `key` when it expired (lazy expiry); true when it did.
  fn expire_if_due(&mut self, key: &[u8], now: u64) -> bool {
    let due = self.map.get(key).is_some_and(|e| expired(e, now));
    if due {
      self.remove(key);
      self.expired_keys += 1;
    }
    due
  }

  /// The live entry of `key`.
  pub fn get(&mut self, key: &[u8], now: u64) -> Option<&Entry> {
    self.expire_if_due(key, now);
    self.map.get(key)
  }

  /// The live entry of `key`, to change in place (its data; its expiry only through
  /// `set_expiry`).
  pub fn get_mut(&mut self, key: &[u8], now: u64) -> Option<&mut Entry> {
    self.expire_if_due(key, now);
    self.map.get_mut(key)
  }

  pub fn contains(&mut self, key: &[u8], now: u64) -> bool {
    self.get(key, now).is_some()
  }

  /// Stores `data` under `key` with expiry `expires` (replacing what was there).
  pub fn insert(&mut self, key: &[u8], data: Data, expires: Option<u64>) {
    if let Some(old) = self.map.get(key).and_then(|e| e.expires) {
      self.expiry.remove(&(old, key.to_vec()));
    }
    if let Some(t) = expires {
      self.expiry.insert((t, key.to_vec()));
    }
    self.map.insert(key.to_vec(), Entry { data, expires });
  }

  /// Removes `key`; its entry when it was there (expired or not).
  pub fn remove(&mut self, key: &[u8]) -> Option<Entry> {
    let entry = self.map.remove(key)?;
    if let Some(t) = entry.expires {
      self.expiry.remove(&(t, key.to_vec()));
    }
    Some(entry)
  }

  /// Sets or clears the expiry of an existing key.
  pub fn set_expiry(&mut self, key: &[u8], expires: Option<u64>) {
    let Some(entry) = self.map.get_mut(key) else {
      return;
    };
    if entry.expires == expires {
      return;
    }
    if let Some(old) = entry.expires {
      self.expiry.remove(&(old, key.to_vec()));
    }
    entry.expires = expires;
    if let Some(t) = expires {
      self.expiry.insert((t, key.to_vec()));
    }
  }

  /// Drops a key whose aggregate became empty.
  pub fn drop_if_empty(&mut self, key: &[u8]) {
    if self
      .map
      .get(key)
      .is_some_and(|e| e.data.is_empty_aggregate())
    {
      self.remove(key);
    }
  }

  /// Keys stored now (expired ones not yet freed included, as Redis's DBSIZE does).
  pub fn len(&self) -> usize {
    self.map.len()
  }

  pub fn keys_with_expiry(&self) -> usize {
    self.expiry.len()
  }

  /// Takes out up to `limit` keys whose deadline passed (active expiry) into `out` (to be
  /// dropped by the caller, outside its lock); how many.
  pub fn sweep(&mut self, now: u64, limit: usize, out: &mut Vec<Entry>) -> usize {
    let mut freed = 0;
    while freed < limit {
      let Some((t, _)) = self.expiry.first() else {
        break;
      };
      if *t >= now {
        break;
      }
      let Some((_, key)) = self.expiry.pop_first() else {
        break;
      };
      if let Some(e) = self.map.remove(&key) {
        out.push(e);
      }
      self.expired_keys += 1;
      freed += 1;
    }
    freed
  }

  /// The deadline of the key that expires first.
  #[cfg(test)]
  pub fn next_deadline(&self) -> Option<u64> {
    self.expiry.first().map(|(t, _)| *t)
  }

  /// Takes up to `n` keys out (to free a taken keyspace a slice at a time); how many it
  /// took, 0 when it is empty.
  pub fn drain_some(&mut self, n: usize, out: &mut Vec<Entry>) -> usize {
    let mut taken = 0;
    while taken < n {
      match self.map.pop_first() {
        Some((_, e)) => out.push(e),
        None => break,
      }
      taken += 1;
    }
    for _ in 0..n {
      if self.expiry.pop_first().is_none() {
        break;
      }
    }
    if self.map.is_empty() {
      self.cursors.clear();
      self.cursor_order.clear();
    }
    taken
  }

  /// Takes everything out (FLUSHDB, or the last client closing): the caller drops it
  /// where that may take long.
  pub fn take(&mut self) -> Db {
    std::mem::take(self)
  }

  /// One SCAN step from `cursor` (0: the start): the next cursor (0: done) and the keys
  /// of at most `count` visited keys that pass `keep`. A cursor names the last key the
  /// step returned, and the next step resumes after it in key order, so every key that
  /// is there for the whole walk is returned (exactly once, here).
  pub fn scan(
    &mut self,
    cursor: u64,
    count: usize,
    now: u64,
    mut keep: impl FnMut(&[u8], &Entry) -> bool,
  ) -> Result<(u64, Vec<Vec<u8>>), ()> {
    let after = if cursor == 0 {
      None
    } else {
      Some(self.cursors.get(&cursor).cloned().ok_or(())?)
    };
    let range = match &after {
      None => self
        .map
        .range::<[u8], _>((Bound::Unbounded, Bound::Unbounded)),
      Some(k) => self
        .map
        .range::<[u8], _>((Bound::Excluded(k.as_slice()), Bound::Unbounded)),
    };
    let mut out = Vec::new();
    let mut last: Option<Vec<u8>> = None;
    let mut more = false;
    let mut due = Vec::new();
    for (visited, (k, e)) in range.enumerate() {
      if visited == count.max(1) {
        more = true;
        break;
      }
      last = Some(k.clone());
      if expired(e, now) {
        due.push(k.clone());
        continue;
      }
      if keep(k, e) {
        out.push(k.clone());
      }
    }
    for k in due {
      self.remove(&k);
      self.expired_keys += 1;
    }
    if !more {
      return Ok((0, out));
    }
    let Some(last) = last else {
      return Ok((0, out));
    };
    self.next_cursor += 1;
    // ids that look like Redis's (large, not 0), distinct for the life of the keyspace
    let id = self.next_cursor.wrapping_mul(0x9E37_79B9) | 1 << 40;
    self.cursors.insert(id, last);
    self.cursor_order.push_back(id);
    while self.cursor_order.len() > MAX_CURSORS {
      if let Some(old) = self.cursor_order.pop_front() {
        self.cursors.remove(&old);
      }
    }
    Ok((id, out))
  }

  /// Every live key, in order (KEYS).
  pub fn live_keys(&self, now: u64) -> impl Iterator<Item = (&Vec<u8>, &Entry)> {
    self.map.iter().filter(move |(_, e)| !expired(e, now))
  }

  /// Approximate bytes of data held (INFO used_memory's share of the keyspace).
  pub fn approx_bytes(&self) -> usize {
    self
      .map
      .iter()
      .map(|(k, e)| 2 * k.len() + e.data.approx_bytes() + 64)
      .sum()
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  fn s(v: &str) -> Data {
    Data::Str(v.as_bytes().to_vec())
  }

  #[test]
  fn lazy_expiry_hides_and_frees_a_key() {
    let mut db = Db::default();
    db.insert(b"a", s("1"), Some(1000));
    db.insert(b"b", s("2"), None);
    assert!(
      db.get(b"a", 1000).is_some(),
      "at its deadline a key is still there"
    );
    assert!(db.get(b"a", 1001).is_none());
    assert_eq!(db.len(), 1);
    assert_eq!(db.keys_with_expiry(), 0);
    assert_eq!(db.expired_keys, 1);
  }

  #[test]
  fn active_expiry_frees_in_bounded_batches_in_deadline_order() {
    let mut db = Db::default();
    for i in 0..10u64 {
      db.insert(format!("k{i}").as_bytes(), s("x"), Some(100 + i));
    }
    db.insert(b"forever", s("x"), None);
    assert_eq!(db.sweep(105, 3, &mut Vec::new()), 3);
    assert_eq!(db.sweep(105, 100, &mut Vec::new()), 2);
    assert_eq!(db.sweep(105, 100, &mut Vec::new()), 0);
    assert_eq!(db.len(), 6);
    assert_eq!(db.next_deadline(), Some(105));
    db.set_expiry(b"k9", None);
    assert_eq!(db.sweep(1_000, 100, &mut Vec::new()), 4);
    assert_eq!(db.len(), 2);
  }

  #[test]
  fn a_taken_keyspace_drains_a_slice_at_a_time() {
    let mut db = Db::default();
    for i in 0..250 {
      db.insert(format!("k{i}").as_bytes(), s("x"), Some(i));
    }
    let mut out = Vec::new();
    assert_eq!(db.drain_some(100, &mut out), 100);
    assert_eq!(db.drain_some(100, &mut out), 100);
    assert_eq!(db.drain_some(100, &mut out), 50);
    assert_eq!(db.drain_some(100, &mut out), 0);
    assert_eq!((out.len(), db.len(), db.keys_with_expiry()), (250, 0, 0));
  }

  #[test]
  fn replacing_or_persisting_a_key_moves_its_deadline() {
    let mut db = Db::default();
    db.insert(b"a", s("1"), Some(10));
    db.insert(b"a", s("2"), Some(50));
    assert_eq!(db.sweep(20, 10, &mut Vec::new()), 0);
    db.set_expiry(b"a", None);
    assert_eq!(db.sweep(100, 10, &mut Vec::new()), 0);
    assert!(db.get(b"a", 100).is_some());
  }

  #[test]
  fn scan_returns_every_key_present_throughout_while_keys_come_and_go() {
    let mut db = Db::default();
    for i in 0..1000 {
      db.insert(format!("stay:{i:04}").as_bytes(), s("x"), None);
    }
    let mut seen = HashSet::new();
    let mut cursor = 0;
    let mut round = 0;
    loop {
      let (next, keys) = db.scan(cursor, 7, 0, |_, _| true).unwrap();
      seen.extend(keys);
      // churn: add and remove other keys around the cursor
      db.insert(format!("churn:{round}").as_bytes(), s("x"), None);
      db.insert(format!("stay:{round:04}x").as_bytes(), s("x"), None);
      if round > 2 {
        db.remove(format!("churn:{}", round - 2).as_bytes());
      }
      round += 1;
      if next == 0 {
        break;
      }
      cursor = next;
    }
    for i in 0..1000 {
      assert!(seen.contains(format!("stay:{i:04}").as_bytes()), "{i}");
    }
  }

  #[test]
  fn scan_filters_and_skips_expired_keys_and_refuses_an_unknown_cursor() {
    let mut db = Db::default();
    db.insert(b"a:1", s("x"), None);
    db.insert(b"a:2", s("x"), Some(5));
    db.insert(b"b:1", s("x"), None);
    let (next, keys) = db
      .scan(0, 100, 10, |k, _| crate::memory::glob::matches(b"a:*", k))
      .unwrap();
    assert_eq!(next, 0);
    assert_eq!(keys, vec![b"a:1".to_vec()]);
    assert_eq!(db.len(), 2, "the expired key met on the walk is freed");
    assert!(db.scan(12345, 10, 0, |_, _| true).is_err());
  }

  #[test]
  fn zset_orders_by_score_then_member_and_keeps_both_indexes_in_step() {
    let mut z = ZSet::default();
    assert!(z.insert(b"b", 1.0));
    assert!(z.insert(b"a", 1.0));
    assert!(z.insert(b"c", -0.0));
    assert!(!z.insert(b"b", 0.5));
    let order: Vec<_> = z.order.iter().map(|(s, m)| (s.0, m.clone())).collect();
    assert_eq!(
      order,
      vec![
        (0.0, b"c".to_vec()),
        (0.5, b"b".to_vec()),
        (1.0, b"a".to_vec())
      ]
    );
    assert!(z.remove(b"b"));
    assert!(!z.remove(b"b"));
    assert_eq!(z.len(), 2);
    assert_eq!(z.order.len(), 2);
  }
}
