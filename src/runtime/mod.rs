//! What the client needs from the Node process it runs in: its libuv event loop.

pub mod uv;
