-- MSET with one TTL for every key, atomically.
-- KEYS: the keys; ARGV[1..#KEYS]: the values; ARGV[#KEYS + 1]: ttl in milliseconds.
local ttl = ARGV[#KEYS + 1]
for i = 1, #KEYS do
  redis.call('SET', KEYS[i], ARGV[i], 'PX', ttl)
end
return #KEYS
