//! Pub/sub within one `memory://` keyspace: subscribers register a push channel; PUBLISH
//! hands each matching subscriber the message as the server's push would look
//! (`message` / `pmessage`), in publish order (one lock orders every publish).

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use redis::{PushInfo, PushKind, Value};

use crate::connection::PushSender;

#[derive(Default)]
struct Sub {
  push: Option<PushSender>,
  channels: HashSet<Vec<u8>>,
  patterns: HashSet<Vec<u8>>,
}

#[derive(Default)]
pub struct PubSub {
  inner: Mutex<(u64, HashMap<u64, Sub>)>,
}

impl PubSub {
  fn lock(&self) -> std::sync::MutexGuard<'_, (u64, HashMap<u64, Sub>)> {
    self.inner.lock().unwrap_or_else(|e| e.into_inner())
  }

  /// A new subscriber whose messages go to `push`; its id.
  pub fn register(&self, push: PushSender) -> u64 {
    let mut g = self.lock();
    g.0 += 1;
    let id = g.0;
    g.1.insert(
      id,
      Sub {
        push: Some(push),
        ..Default::default()
      },
    );
    id
  }

  pub fn unregister(&self, id: u64) {
    self.lock().1.remove(&id);
  }

  /// Subscribes (`on`) or unsubscribes subscriber `id` to a channel or (`pattern`) a glob.
  pub fn set(&self, id: u64, pattern: bool, name: &[u8], on: bool) {
    let mut g = self.lock();
    let Some(sub) = g.1.get_mut(&id) else { return };
    let set = if pattern {
      &mut sub.patterns
    } else {
      &mut sub.channels
    };
    if on {
      set.insert(name.to_vec());
    } else {
      set.remove(name);
    }
  }

  /// Sends `message` to every subscriber of `channel`; how many received it (a
  /// subscriber counts once per matching channel or pattern, as in Redis).
  pub fn publish(&self, channel: &[u8], message: &[u8]) -> usize {
    let g = self.lock();
    let mut received = 0;
    for sub in g.1.values() {
      let Some(push) = &sub.push else { continue };
      if sub.channels.contains(channel) {
        let sent = push.send(PushInfo {
          kind: PushKind::Message,
          data: vec![
            Value::BulkString(channel.to_vec()),
            Value::BulkString(message.to_vec()),
          ],
        });
        received += sent.is_ok() as usize;
      }
      for p in &sub.patterns {
        if super::glob::matches(p, channel) {
          let sent = push.send(PushInfo {
            kind: PushKind::PMessage,
            data: vec![
              Value::BulkString(p.clone()),
              Value::BulkString(channel.to_vec()),
              Value::BulkString(message.to_vec()),
            ],
          });
          received += sent.is_ok() as usize;
        }
      }
    }
    received
  }

  /// Tells every subscriber that its connection is gone (the keyspace was freed).
  pub fn disconnect_all(&self) {
    let mut g = self.lock();
    for (_, sub) in g.1.drain() {
      if let Some(push) = sub.push {
        let _ = push.send(PushInfo {
          kind: PushKind::Disconnection,
          data: vec![],
        });
      }
    }
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn messages_reach_channel_and_pattern_subscribers_in_order() {
    let ps = PubSub::default();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let id = ps.register(tx);
    ps.set(id, false, b"news", true);
    ps.set(id, true, b"n*", true);
    assert_eq!(ps.publish(b"news", b"1"), 2);
    assert_eq!(ps.publish(b"nope", b"2"), 1);
    assert_eq!(ps.publish(b"other", b"3"), 0);
    let kinds: Vec<_> = std::iter::from_fn(|| rx.try_recv().ok())
      .map(|p| (p.kind, p.data.len()))
      .collect();
    assert_eq!(
      kinds,
      vec![
        (PushKind::Message, 2),
        (PushKind::PMessage, 3),
        (PushKind::PMessage, 3)
      ]
    );
    ps.set(id, false, b"news", false);
    assert_eq!(ps.publish(b"news", b"4"), 1);
    ps.unregister(id);
    assert_eq!(ps.publish(b"news", b"5"), 0);
  }
}
