(() => {
  // per namespace handle: key -> the promise of the load in progress
  const loading = new WeakMap();
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
    const done = () => running.delete(key);
    load.then(done, done);
    return load;
  };
})()
