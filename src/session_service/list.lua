-- The live sessions of a user, their metadata, soonest to expire first.
-- KEYS[1] the user's index; ARGV[1] session key without id
-- Returns { now, then per session: id, userId, createdAt, lastActivityAt, pttl, device|false }
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local out = { now }
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local key = ARGV[1] .. id
  local m = redis.call('HMGET', key, 'm:userId', 'm:createdAt', 'm:lastActivityAt', 'd:device')
  if m[2] then
    out[#out + 1] = id
    out[#out + 1] = m[1]
    out[#out + 1] = m[2]
    out[#out + 1] = m[3]
    out[#out + 1] = redis.call('PTTL', key)
    out[#out + 1] = m[4]
  else
    redis.call('ZREM', KEYS[1], id)
  end
end
return out
