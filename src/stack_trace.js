// Gives a rejection the stack of the code that awaited the call: V8 records the `async`
// frames of whoever awaits the promise this handler belongs to (`at async
// UsersService.find (users.service.ts:12:20)`), which a rejection created on Rust's side
// cannot have. Runs only when a call fails.
/** @type {(error: unknown) => never} */ (
  function rethrow(error) {
    if (error instanceof Error) Error.captureStackTrace(error, rethrow);
    throw error;
  }
);
