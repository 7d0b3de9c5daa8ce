-- Deletes a session if it is still the version given (not replaced since): a session
-- evicted, destroyed or logged out by its user's step. KEYS[1] the session; ARGV[1] the
-- version. Returns 1 when deleted.
if redis.call('HGET', KEYS[1], 'm:v') == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
