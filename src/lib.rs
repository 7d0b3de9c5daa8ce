#![deny(clippy::all)]
//! nestjs-redis-native: Redis for NestJS and Node, in Rust.

mod args;
mod client;
mod completion;
mod connection;
mod error;
mod json;
mod keys;
mod options;
mod redis_service;
mod reply;
mod script;

pub use client::RedisClient;
pub use redis_service::RedisService;
