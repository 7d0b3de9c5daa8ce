-- INCRBY that sets the TTL only when the key is created by this call, atomically.
-- KEYS[1] key; ARGV[1] increment; ARGV[2] ttl in milliseconds.
local created = redis.call('EXISTS', KEYS[1]) == 0
local value = redis.call('INCRBY', KEYS[1], ARGV[1])
if created then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return value
