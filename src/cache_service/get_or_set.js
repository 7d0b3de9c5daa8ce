// `CacheNamespace.getOrSet`: concurrent misses of one key share one loader call.
(() => {
  /** @typedef {{ get(key: string): Promise<unknown>, set(key: string, value: unknown, options?: { ttl: number }): Promise<boolean> }} Namespace */
  /** per namespace handle: key -> the promise of the load in progress @type {WeakMap<Namespace, Map<string, Promise<unknown>>>} */
  const loading = new WeakMap();
  /**
   * @param {Namespace} namespace
   * @param {string} key
   * @param {() => unknown} loader
   * @param {number | undefined} ttl
   */
  return function getOrSet(namespace, key, loader, ttl) {
    let running = loading.get(namespace);
    if (!running) loading.set(namespace, (running = new Map()));
    const shared = running.get(key);
    if (shared) return shared;
    const load = (async () => {
      const cached = await namespace.get(key);
      if (cached !== null) return cached;
      const value = await loader();
      await namespace.set(key, value, ttl === undefined ? undefined : { ttl });
      return value;
    })();
    running.set(key, load);
    const map = running;
    const done = () => map.delete(key);
    load.then(done, done);
    return load;
  };
})();
