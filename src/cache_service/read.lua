-- getByIndex / getKeysByIndex, second step: an item listed in an index, to check the
-- entry still stands for it. KEYS[1] item; ARGV[1] '1' for all its fields (HGETALL), or
-- '0' for { version, value under index ARGV[2] }.
if ARGV[1] == '1' then
  return redis.call('HGETALL', KEYS[1])
end
return redis.call('HMGET', KEYS[1], 'ver', 'i:' .. ARGV[2])
