-- getByIndex / getKeysByIndex: the live items listed under one index value; entries of
-- expired items are pruned here. KEYS[1] index; ARGV[1] item key base (without the short
-- key); ARGV[2] '1' to return the items' fields too.
-- Returns { short, ... } or { short, n, field, value, ..., short, n, ... }.
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms())
local out = {}
for _, short in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local fields = redis.call('HGETALL', ARGV[1] .. short)
  if #fields == 0 then
    redis.call('ZREM', KEYS[1], short)
  else
    out[#out + 1] = short
    if ARGV[2] == '1' then
      out[#out + 1] = #fields
      for _, f in ipairs(fields) do
        out[#out + 1] = f
      end
    end
  end
end
return out
