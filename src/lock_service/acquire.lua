-- Takes the lock when free, and hands out the next fencing token of the resource.
-- KEYS[1] lock; KEYS[2] fencing counter (never expires, so tokens only grow)
-- ARGV[1] owner token; ARGV[2] ttl ms. Returns the fencing token, or false when held.
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return redis.call('INCR', KEYS[2])
end
return false
