-- update: merges fields into an object item, atomically; keeps the expiry unless a ttl
-- is given. KEYS[1] item; ARGV[1] short key; ARGV[2] index base; ARGV[3] ttl ms ('' =
-- keep); ARGV[4..] field, json, ...
-- Returns 1, 0 when the item does not exist, -1 when it is not an object.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
if redis.call('HEXISTS', KEYS[1], 'v') == 1 then
  return -1
end
if #ARGV >= 4 then
  redis.call('HSET', KEYS[1], unpack(ARGV, 4))
end
if ARGV[3] ~= '' then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  reindex(KEYS[1], ARGV[1], ARGV[2], string.format('%d', now_ms() + tonumber(ARGV[3])))
end
return 1
