-- setTtl: a new expiry for the item; its index entries follow next (index.lua).
-- KEYS[1] item; ARGV[1] ttl ms.
-- Returns { 0 } when the item does not exist, else { 1, expiry, version, index name,
-- value, ... }.
if redis.call('PEXPIRE', KEYS[1], ARGV[1]) == 0 then
  return { 0 }
end
local out = { 1, expiry(KEYS[1]) }
for _, v in ipairs(listing(KEYS[1])) do
  out[#out + 1] = v
end
return out
