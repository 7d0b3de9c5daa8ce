// `CacheNamespace.getOrSet`: concurrent misses of one key share one loader call, across
// every handle of the namespace on one client (`scope` names the namespace and client).
// A loader's `undefined` or `null` means "nothing to cache": returned as it is, not stored.
(() => {
  /** @typedef {{ get(key: string): Promise<unknown>, set(key: string, value: unknown, options?: { ttl: number }): Promise<boolean> }} Namespace */
  /** scope -> key -> the promise of the load in progress @type {Map<string, Map<string, Promise<unknown>>>} */
  const loading = new Map();
  /**
   * @param {Namespace} namespace
   * @param {string} scope
   * @param {string} key
   * @param {() => unknown} loader
   * @param {number | undefined} ttl
   */
  return function getOrSet(namespace, scope, key, loader, ttl) {
    let running = loading.get(scope);
    if (!running) loading.set(scope, (running = new Map()));
    const shared = running.get(key);
    if (shared) return shared;
    const load = (async () => {
      const cached = await namespace.get(key);
      if (cached !== null) return cached;
      const value = await loader();
      if (value === undefined || value === null) return value;
      await namespace.set(key, value, ttl === undefined ? undefined : { ttl });
      return value;
    })();
    running.set(key, load);
    const map = running;
    const done = () => {
      map.delete(key);
      if (map.size === 0 && loading.get(scope) === map) loading.delete(scope);
    };
    load.then(done, done);
    return load;
  };
})();
