-- getByIndex / getKeysByIndex, first step: the entries of one index, entries of expired
-- items pruned. KEYS[1] index. Returns { entry, ... } (each `<short key>\0<version>`).
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms())
return redis.call('ZRANGE', KEYS[1], 0, -1)
