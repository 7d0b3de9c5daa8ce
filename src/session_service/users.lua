-- (prepended to the scripts of a user's step, with found_keys.lua and TokenService's
-- family.lua)
-- A user's keys, all with the user's hash tag (as the user's refresh tokens have): the
-- index (sorted set of session ids by expiry, ms) and the meta hash: `s:<id>` =
-- '<version>' or '<version> <family>' for each indexed session, `active` = the user's
-- last activity (ms), what isUserOnline reads.

local function clock()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000),
    tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
end

-- The version and refresh-token family ('' for none) of an indexed session, or nil.
local function entry(meta, id)
  local e = redis.call('HGET', meta, 's:' .. id)
  if not e then
    return nil, nil
  end
  return string.match(e, '^(%S+) ?(.*)$')
end

-- Takes sessions out of the index.
local function unindex(index, meta, ids)
  for _, id in ipairs(ids) do
    redis.call('ZREM', index, id)
    redis.call('HDEL', meta, 's:' .. id)
  end
end

-- Drops the entries of expired sessions, so the index never grows past the live ones.
local function prune(index, meta, now)
  local gone = redis.call('ZRANGEBYSCORE', index, '-inf', now)
  if #gone > 0 then
    unindex(index, meta, gone)
  end
end

-- The index expires with its last session; the meta hash with it, or once the user is
-- no longer online (`window` ms after the last activity), whichever is later.
local function fit_expiry(index, meta, window)
  local last = redis.call('ZRANGE', index, -1, -1, 'WITHSCORES')
  local until_ms = 0
  if last[2] then
    until_ms = math.ceil(tonumber(last[2]))
    redis.call('PEXPIREAT', index, until_ms)
  end
  local active = redis.call('HGET', meta, 'active')
  if active then
    until_ms = math.max(until_ms, tonumber(active) + window)
  end
  if until_ms > 0 then
    redis.call('PEXPIREAT', meta, until_ms)
  else
    redis.call('DEL', meta)
  end
end
