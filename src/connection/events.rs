//! Connection events for JS listeners (`client.on('error' | 'reconnecting' | 'ready' |
//! 'end', listener)`): emitted from the connection's tasks, delivered on the JS thread by
//! one threadsafe function per listener. Listeners never keep Node's event loop alive.

use std::sync::Mutex;

use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi::Status;
use serde_json::Value;

/// The events a client emits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
  /// The connection was lost (or a reconnect attempt failed to restore it).
  Error,
  /// A reconnect attempt is scheduled.
  Reconnecting,
  /// The connection is back after a loss.
  Ready,
  /// No more connection: reconnecting gave up, or the client was closed.
  End,
}

impl EventKind {
  pub fn parse(name: &str) -> Option<EventKind> {
    match name {
      "error" => Some(EventKind::Error),
      "reconnecting" => Some(EventKind::Reconnecting),
      "ready" => Some(EventKind::Ready),
      "end" => Some(EventKind::End),
      _ => None,
    }
  }
}

pub type Listener = ThreadsafeFunction<Value, (), Value, Status, false, true>;

/// The listeners of one client.
#[derive(Default)]
pub struct Events {
  listeners: Mutex<Vec<(EventKind, u64, Listener)>>,
}

impl Events {
  pub fn add(&self, kind: EventKind, id: u64, listener: Listener) {
    self.lock().push((kind, id, listener));
  }

  pub fn remove(&self, id: u64) {
    self.lock().retain(|(_, i, _)| *i != id);
  }

  /// Calls every listener of `kind` with `payload` (on the JS thread, later).
  pub fn emit(&self, kind: EventKind, payload: Value) {
    for (k, _, listener) in self.lock().iter() {
      if *k == kind {
        listener.call(payload.clone(), ThreadsafeFunctionCallMode::NonBlocking);
      }
    }
  }

  /// Drops every listener (on close): nothing more will be emitted.
  pub fn clear(&self) {
    self.lock().clear();
  }

  fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(EventKind, u64, Listener)>> {
    self.listeners.lock().unwrap_or_else(|e| e.into_inner())
  }
}
