//! The few libuv functions the event-loop I/O needs, found at run time in the Node
//! process (Node exports libuv for addons). When they cannot be found, `Uv::get` is
//! `None` and the client falls back to I/O on its own thread.
//!
//! Handles are allocated with `uv_handle_size` (their layout differs by platform) and
//! freed in their close callback.

use std::ffi::{c_int, c_void};
use std::sync::OnceLock;

pub type Loop = c_void;
pub type Handle = c_void;

/// `uv_handle_type` values (stable across libuv 1.x).
pub const UV_CHECK: c_int = 2;
pub const UV_IDLE: c_int = 6;
pub const UV_POLL: c_int = 8;
pub const UV_TIMER: c_int = 13;

/// `uv_poll_event` flags.
pub const UV_READABLE: c_int = 1;
pub const UV_WRITABLE: c_int = 2;

#[cfg(unix)]
pub type Socket = c_int;
#[cfg(windows)]
pub type Socket = usize;

pub type PollCb = unsafe extern "C" fn(*mut Handle, c_int, c_int);
pub type TimerCb = unsafe extern "C" fn(*mut Handle);
/// The callback of a check or idle handle.
pub type LoopCb = unsafe extern "C" fn(*mut Handle);
pub type CloseCb = unsafe extern "C" fn(*mut Handle);

/// The libuv functions, resolved once.
pub struct Uv {
  pub handle_size: unsafe extern "C" fn(c_int) -> usize,
  pub poll_init_socket: unsafe extern "C" fn(*mut Loop, *mut Handle, Socket) -> c_int,
  pub poll_start: unsafe extern "C" fn(*mut Handle, c_int, PollCb) -> c_int,
  pub timer_init: unsafe extern "C" fn(*mut Loop, *mut Handle) -> c_int,
  pub timer_start: unsafe extern "C" fn(*mut Handle, TimerCb, u64, u64) -> c_int,
  pub timer_stop: unsafe extern "C" fn(*mut Handle) -> c_int,
  pub check_init: unsafe extern "C" fn(*mut Loop, *mut Handle) -> c_int,
  pub check_start: unsafe extern "C" fn(*mut Handle, LoopCb) -> c_int,
  pub check_stop: unsafe extern "C" fn(*mut Handle) -> c_int,
  pub idle_init: unsafe extern "C" fn(*mut Loop, *mut Handle) -> c_int,
  pub idle_start: unsafe extern "C" fn(*mut Handle, LoopCb) -> c_int,
  pub idle_stop: unsafe extern "C" fn(*mut Handle) -> c_int,
  pub close: unsafe extern "C" fn(*mut Handle, CloseCb),
  pub unref: unsafe extern "C" fn(*mut Handle),
  pub set_data: unsafe extern "C" fn(*mut Handle, *mut c_void),
  pub get_data: unsafe extern "C" fn(*const Handle) -> *mut c_void,
}

static UV: OnceLock<Option<Uv>> = OnceLock::new();

impl Uv {
  /// The libuv of this process, if it exports the functions needed.
  pub fn get() -> Option<&'static Uv> {
    UV.get_or_init(load).as_ref()
  }

  /// A new, zeroed handle of `kind` (freed by `close`).
  pub fn alloc(&self, kind: c_int) -> *mut Handle {
    let size = unsafe { (self.handle_size)(kind) };
    let layout = std::alloc::Layout::from_size_align(size.max(8), 16).expect("handle layout");
    unsafe { std::alloc::alloc_zeroed(layout) as *mut Handle }
  }

  /// Closes `handle` (of `kind`) and frees it once libuv is done with it.
  pub fn close_and_free(&self, handle: *mut Handle, kind: c_int) {
    unsafe {
      // the close callback needs the size again to free: keep the kind in the data slot
      (self.set_data)(handle, kind as usize as *mut c_void);
      (self.close)(handle, free_on_close);
    }
  }
}

unsafe extern "C" fn free_on_close(handle: *mut Handle) {
  let Some(uv) = Uv::get() else { return };
  let kind = unsafe { (uv.get_data)(handle) } as usize as c_int;
  let size = unsafe { (uv.handle_size)(kind) };
  let layout = std::alloc::Layout::from_size_align(size.max(8), 16).expect("handle layout");
  unsafe { std::alloc::dealloc(handle as *mut u8, layout) };
}

fn load() -> Option<Uv> {
  #[cfg(unix)]
  let this = libloading::os::unix::Library::this();
  #[cfg(windows)]
  let this = libloading::os::windows::Library::this().ok()?;
  // SAFETY: each symbol is looked up by its libuv name and given libuv's own signature
  macro_rules! func {
    ($name:literal: $ty:ty) => {
      unsafe { *this.get::<$ty>(concat!($name, "\0").as_bytes()).ok()? }
    };
  }
  let uv = Uv {
    handle_size: func!("uv_handle_size": unsafe extern "C" fn(c_int) -> usize),
    poll_init_socket: func!("uv_poll_init_socket": unsafe extern "C" fn(*mut Loop, *mut Handle, Socket) -> c_int),
    poll_start: func!("uv_poll_start": unsafe extern "C" fn(*mut Handle, c_int, PollCb) -> c_int),
    timer_init: func!("uv_timer_init": unsafe extern "C" fn(*mut Loop, *mut Handle) -> c_int),
    timer_start: func!("uv_timer_start": unsafe extern "C" fn(*mut Handle, TimerCb, u64, u64) -> c_int),
    timer_stop: func!("uv_timer_stop": unsafe extern "C" fn(*mut Handle) -> c_int),
    check_init: func!("uv_check_init": unsafe extern "C" fn(*mut Loop, *mut Handle) -> c_int),
    check_start: func!("uv_check_start": unsafe extern "C" fn(*mut Handle, LoopCb) -> c_int),
    check_stop: func!("uv_check_stop": unsafe extern "C" fn(*mut Handle) -> c_int),
    idle_init: func!("uv_idle_init": unsafe extern "C" fn(*mut Loop, *mut Handle) -> c_int),
    idle_start: func!("uv_idle_start": unsafe extern "C" fn(*mut Handle, LoopCb) -> c_int),
    idle_stop: func!("uv_idle_stop": unsafe extern "C" fn(*mut Handle) -> c_int),
    close: func!("uv_close": unsafe extern "C" fn(*mut Handle, CloseCb)),
    unref: func!("uv_unref": unsafe extern "C" fn(*mut Handle)),
    set_data: func!("uv_handle_set_data": unsafe extern "C" fn(*mut Handle, *mut c_void)),
    get_data: func!("uv_handle_get_data": unsafe extern "C" fn(*const Handle) -> *mut c_void),
  };
  // sanity: a libuv whose handle sizes are nonsense is not one to drive
  let poll = unsafe { (uv.handle_size)(UV_POLL) };
  if poll == 0 || poll > 4096 {
    return None;
  }
  Some(uv)
}
