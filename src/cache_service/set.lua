-- set / mset: stores items, each replacing the previous one (and its index entries).
-- ARGV[1] ttl ms ('' = none); ARGV[2] index key base; then per item: full key, short key,
-- number of field pairs, field, json, ..., number of index pairs, name, value, ...
local ttl = ARGV[1]
local index_base = ARGV[2]
local expiry = 'inf'
if ttl ~= '' then
  expiry = string.format('%d', now_ms() + tonumber(ttl))
end
local i = 3
while i <= #ARGV do
  local item, short = ARGV[i], ARGV[i + 1]
  local nfields = tonumber(ARGV[i + 2])
  i = i + 3
  unindex(item, short, index_base)
  redis.call('DEL', item)
  local fields = {}
  for f = i, i + nfields * 2 - 1 do
    fields[#fields + 1] = ARGV[f]
  end
  i = i + nfields * 2
  local nindexes = tonumber(ARGV[i])
  i = i + 1
  local indexes = {}
  for x = i, i + nindexes * 2 - 1, 2 do
    fields[#fields + 1] = 'i:' .. ARGV[x]
    fields[#fields + 1] = ARGV[x + 1]
    indexes[#indexes + 1] = index_base .. ARGV[x] .. ':' .. ARGV[x + 1]
  end
  i = i + nindexes * 2
  if #fields > 0 then
    redis.call('HSET', item, unpack(fields))
  end
  if ttl ~= '' then
    redis.call('PEXPIRE', item, ttl)
  end
  for _, index in ipairs(indexes) do
    redis.call('ZREMRANGEBYSCORE', index, '-inf', now_ms())
    redis.call('ZADD', index, expiry, short)
    fit_index_expiry(index)
  end
end
return 1
