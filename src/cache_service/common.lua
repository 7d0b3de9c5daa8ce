-- (shared by the cache scripts; prepended to each)
-- An item is a hash: `v` its JSON value (or `f:<field>` one JSON value per field of an
-- object), `i:<index>` the index values it is listed under. An index is a sorted set
-- of item keys by the item's expiry (ms; inf without expiry), so entries of expired
-- items can be pruned by score.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- The index key holds exactly as long as its longest-lived member.
local function fit_index_expiry(index)
  local last = redis.call('ZRANGE', index, -1, -1, 'WITHSCORES')
  if not last[2] then
    return
  end
  if last[2] == 'inf' then
    redis.call('PERSIST', index)
  else
    redis.call('PEXPIREAT', index, math.ceil(tonumber(last[2])))
  end
end

-- Removes `item` (full key) named `short` from the indexes it is listed under.
local function unindex(item, short, index_base)
  local fields = redis.call('HGETALL', item)
  for i = 1, #fields, 2 do
    local name = fields[i]
    if string.sub(name, 1, 2) == 'i:' then
      redis.call('ZREM', index_base .. string.sub(name, 3) .. ':' .. fields[i + 1], short)
    end
  end
end

-- Sets the score (expiry) of `short` in every index of `item`.
local function reindex(item, short, index_base, score)
  local fields = redis.call('HGETALL', item)
  for i = 1, #fields, 2 do
    local name = fields[i]
    if string.sub(name, 1, 2) == 'i:' then
      local index = index_base .. string.sub(name, 3) .. ':' .. fields[i + 1]
      redis.call('ZADD', index, score, short)
      fit_index_expiry(index)
    end
  end
end
