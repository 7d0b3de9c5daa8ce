//! Counters and a latency histogram of one client's commands (`client.metrics()`).

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

/// Buckets of the latency histogram: bucket i holds latencies up to `bound(i)` µs, growing
/// by ~19% per bucket from 1 µs to past 60 s (a percentile is reported as its bucket's upper bound: at most ~19% high).
const BUCKETS: usize = 100;

fn bound(i: usize) -> f64 {
  1.19f64.powi(i as i32)
}

fn bucket_of(us: f64) -> usize {
  if us <= 1.0 {
    return 0;
  }
  ((us.ln() / 1.19f64.ln()).ceil() as usize).min(BUCKETS - 1)
}

pub struct Metrics {
  pub commands: AtomicU64,
  pub errors: AtomicU64,
  pub timeouts: AtomicU64,
  pub reconnects: AtomicU64,
  pub in_flight: AtomicI64,
  max_us: AtomicU64,
  buckets: [AtomicU64; BUCKETS],
}

impl Default for Metrics {
  fn default() -> Self {
    Metrics {
      commands: AtomicU64::new(0),
      errors: AtomicU64::new(0),
      timeouts: AtomicU64::new(0),
      reconnects: AtomicU64::new(0),
      in_flight: AtomicI64::new(0),
      max_us: AtomicU64::new(0),
      buckets: std::array::from_fn(|_| AtomicU64::new(0)),
    }
  }
}

/// What `client.metrics()` reports.
pub struct Snapshot {
  pub commands: u64,
  pub errors: u64,
  pub timeouts: u64,
  pub reconnects: u64,
  pub in_flight: i64,
  pub p50_us: f64,
  pub p99_us: f64,
  pub max_us: f64,
}

impl Metrics {
  /// `count` commands sent together took `took`; `error` / `timeout` when they failed.
  pub fn record(&self, count: u64, took: Duration, error: bool, timeout: bool) {
    self.commands.fetch_add(count, Ordering::Relaxed);
    if error {
      self.errors.fetch_add(count, Ordering::Relaxed);
    }
    if timeout {
      self.timeouts.fetch_add(count, Ordering::Relaxed);
    }
    let us = took.as_secs_f64() * 1e6;
    self.buckets[bucket_of(us)].fetch_add(count, Ordering::Relaxed);
    self.max_us.fetch_max(us.ceil() as u64, Ordering::Relaxed);
  }

  pub fn snapshot(&self) -> Snapshot {
    let counts: Vec<u64> = self
      .buckets
      .iter()
      .map(|b| b.load(Ordering::Relaxed))
      .collect();
    let total: u64 = counts.iter().sum();
    let max_us = self.max_us.load(Ordering::Relaxed) as f64;
    let percentile = |p: f64| {
      if total == 0 {
        return 0.0;
      }
      let rank = ((p * total as f64).ceil() as u64).max(1);
      let mut seen = 0;
      for (i, c) in counts.iter().enumerate() {
        seen += c;
        if seen >= rank {
          return bound(i).min(max_us);
        }
      }
      max_us
    };
    Snapshot {
      commands: self.commands.load(Ordering::Relaxed),
      errors: self.errors.load(Ordering::Relaxed),
      timeouts: self.timeouts.load(Ordering::Relaxed),
      reconnects: self.reconnects.load(Ordering::Relaxed),
      in_flight: self.in_flight.load(Ordering::Relaxed).max(0),
      p50_us: percentile(0.5),
      p99_us: percentile(0.99),
      max_us,
    }
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn percentiles_come_from_the_histogram_within_a_bucket() {
    let m = Metrics::default();
    for _ in 0..98 {
      m.record(1, Duration::from_micros(100), false, false);
    }
    m.record(2, Duration::from_millis(10), true, true);
    let s = m.snapshot();
    assert_eq!((s.commands, s.errors, s.timeouts), (100, 2, 2));
    assert!((100.0..=120.0).contains(&s.p50_us), "{}", s.p50_us);
    assert!((10_000.0..=12_000.0).contains(&s.p99_us), "{}", s.p99_us);
    assert_eq!(s.max_us, 10_000.0);
  }

  #[test]
  fn an_empty_histogram_reports_zeros() {
    let s = Metrics::default().snapshot();
    assert_eq!((s.p50_us, s.p99_us, s.max_us), (0.0, 0.0, 0.0));
  }

  #[test]
  fn a_batch_counts_every_command_in_it() {
    let m = Metrics::default();
    m.record(5, Duration::from_micros(40), false, false);
    m.record(3, Duration::from_micros(40), true, false);
    let s = m.snapshot();
    assert_eq!((s.commands, s.errors, s.timeouts), (8, 3, 0));
  }

  #[test]
  fn latencies_of_a_microsecond_or_less_fall_in_the_first_bucket() {
    let m = Metrics::default();
    m.record(1, Duration::from_nanos(300), false, false);
    let s = m.snapshot();
    assert_eq!((s.p50_us, s.p99_us, s.max_us), (1.0, 1.0, 1.0));
  }

  #[test]
  fn a_percentile_never_reports_more_than_the_slowest_call() {
    let m = Metrics::default();
    m.record(1, Duration::from_micros(101), false, false);
    let s = m.snapshot();
    assert_eq!(s.max_us, 101.0);
    assert_eq!((s.p50_us, s.p99_us), (101.0, 101.0));
  }

  #[test]
  fn latencies_past_the_last_bucket_are_counted_in_it() {
    let m = Metrics::default();
    m.record(1, Duration::from_secs(3600), false, true);
    let s = m.snapshot();
    assert_eq!(s.max_us, 3_600_000_000.0);
    assert_eq!(s.p99_us, bound(BUCKETS - 1));
    assert!(s.p99_us < s.max_us);
  }

  #[test]
  fn in_flight_is_never_reported_below_zero() {
    let m = Metrics::default();
    m.in_flight.fetch_sub(1, Ordering::Relaxed);
    assert_eq!(m.snapshot().in_flight, 0);
    m.in_flight.fetch_add(3, Ordering::Relaxed);
    assert_eq!(m.snapshot().in_flight, 2);
  }

  #[test]
  fn reconnects_are_reported_as_counted() {
    let m = Metrics::default();
    m.reconnects.fetch_add(2, Ordering::Relaxed);
    assert_eq!(m.snapshot().reconnects, 2);
  }
}
