-- Revokes one refresh token. KEYS[1] token key; KEYS[2] the user's index; ARGV[1] hash.
redis.call('ZREM', KEYS[2], ARGV[1])
return redis.call('DEL', KEYS[1])
