// `LockService.withLock`: runs `fn` while holding the lock (`acquired` resolves to null when
// it could not be acquired), and always releases it.
/** @typedef {{ release(): Promise<boolean> }} Lock */
/** @type {(acquired: Promise<Lock | null>, fn: (lock: Lock) => unknown, resource: string) => Promise<unknown>} */ (
  async function withLock(acquired, fn, resource) {
    const lock = await acquired;
    if (!lock) {
      throw Object.assign(new Error(`could not acquire the lock on ${JSON.stringify(resource)} (held by another owner)`), {
        code: 'ERR_LOCK_NOT_ACQUIRED',
      });
    }
    try {
      return await fn(lock);
    } finally {
      // a failed release (Redis down) must not hide fn's outcome: the lock expires anyway
      await lock.release().catch(() => false);
    }
  }
);
