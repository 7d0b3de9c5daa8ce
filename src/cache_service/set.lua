-- set / mset: stores one item, replacing the previous one. Its index entries are written
-- next (index.lua): the new ones added, the replaced item's removed.
-- KEYS[1] item; ARGV[1] ttl ms ('' = none); ARGV[2] version; ARGV[3] number of field
-- pairs; then field, json, ...; then index name, value, ...
-- Returns { expiry, then the replaced item's version, index name, value, ... }.
local old = listing(KEYS[1])
redis.call('DEL', KEYS[1])
local fields = { 'ver', ARGV[2] }
local nfields = tonumber(ARGV[3])
for f = 4, 3 + nfields * 2 do
  fields[#fields + 1] = ARGV[f]
end
for x = 4 + nfields * 2, #ARGV, 2 do
  fields[#fields + 1] = 'i:' .. ARGV[x]
  fields[#fields + 1] = ARGV[x + 1]
end
redis.call('HSET', KEYS[1], unpack(fields))
if ARGV[1] ~= '' then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
local out = { expiry(KEYS[1]) }
for _, v in ipairs(old) do
  out[#out + 1] = v
end
return out
