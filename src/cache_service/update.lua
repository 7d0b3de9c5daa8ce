-- update: merges fields into an object item, atomically; keeps the expiry unless a ttl
-- is given (then its index entries follow next, index.lua). KEYS[1] item; ARGV[1] ttl ms
-- ('' = keep); ARGV[2..] field, json, ...
-- Returns { 1 } (or { 1, expiry, version, index name, value, ... } with a ttl), { 0 }
-- when the item does not exist, { -1 } when it is not an object.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return { 0 }
end
if redis.call('HEXISTS', KEYS[1], 'v') == 1 then
  return { -1 }
end
if #ARGV >= 2 then
  redis.call('HSET', KEYS[1], unpack(ARGV, 2))
end
if ARGV[1] == '' then
  return { 1 }
end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
local out = { 1, expiry(KEYS[1]) }
for _, v in ipairs(listing(KEYS[1])) do
  out[#out + 1] = v
end
return out
