-- (shared by the cache scripts; prepended to each)
-- An item is a hash: `v` its JSON value (or `f:<field>` one JSON value per field of an
-- object), `i:<index>` the index values it is listed under, `ver` a random version
-- written by each set. An index is a sorted set of entries `<short key>\0<version>` by
-- the item's expiry (ms; inf without expiry), so entries of expired items can be pruned
-- by score. Each script touches one key: an item, or an index.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- The item's version and its index values: { version, name, value, ... }.
local function listing(item)
  local out = { redis.call('HGET', item, 'ver') or '' }
  local fields = redis.call('HGETALL', item)
  for i = 1, #fields, 2 do
    if string.sub(fields[i], 1, 2) == 'i:' then
      out[#out + 1] = string.sub(fields[i], 3)
      out[#out + 1] = fields[i + 1]
    end
  end
  return out
end

-- The item's expiry as an index score: ms, or 'inf' without one.
local function expiry(item)
  local left = redis.call('PTTL', item)
  if left < 0 then
    return 'inf'
  end
  return string.format('%d', now_ms() + left)
end
