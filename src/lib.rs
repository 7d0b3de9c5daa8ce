#![deny(clippy::all)]
//! nestjs-redis-native: Redis for NestJS and Node, in Rust.

#[macro_use]
mod script;
mod args;
mod cache_service;
mod client;
mod completion;
mod connection;
mod error;
mod idempotency_service;
mod js_helper;
mod json;
mod json_fields;
mod keys;
mod lock_service;
mod memory;
mod options;
mod pubsub_service;
mod rate_limit_service;
mod redis_service;
mod reply;
mod resp;
mod runtime;
mod session_service;
mod token_service;

pub use cache_service::{CacheNamespace, CacheService};
pub use client::RedisClient;
pub use idempotency_service::IdempotencyService;
pub use lock_service::{Lock, LockService};
pub use pubsub_service::{PubSubService, Subscription};
pub use rate_limit_service::RateLimitService;
pub use redis_service::RedisService;
pub use session_service::SessionService;
pub use token_service::TokenService;

/// One tokio worker thread: the connection's driver task and the commands' futures then
/// share a thread and wake each other without cross-thread hand-offs (measured in bench/:
/// the multi-worker default spent more CPU per command for no extra throughput).
#[napi_derive::module_init]
fn init() {
  if let Ok(rt) = tokio::runtime::Builder::new_multi_thread()
    .worker_threads(1)
    .thread_name("nestjs-redis-native")
    .enable_all()
    .build()
  {
    completion::set_runtime(rt.handle().clone());
    napi::bindgen_prelude::create_custom_tokio_runtime(rt);
  }
}

/// mimalloc: buffers are allocated on one thread and freed on another at every command
/// (JS thread ↔ tokio); glibc's malloc spent ~15% of the CPU on that in the profile.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
