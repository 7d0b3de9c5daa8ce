(async function withLock(acquired, fn, resource) {
  const lock = await acquired;
  if (!lock) {
    const error = new Error(`could not acquire the lock on ${JSON.stringify(resource)} (held by another owner)`);
    error.code = 'ERR_LOCK_NOT_ACQUIRED';
    throw error;
  }
  try {
    return await fn(lock);
  } finally {
    // a failed release (Redis down) must not hide fn's outcome: the lock expires anyway
    await lock.release().catch(() => false);
  }
})
