-- Session metadata. KEYS[1..n] session hashes.
-- Returns { now, then per session: userId|false, createdAt, lastActivityAt, pttl, device|false }
-- (createdAt false when the session does not exist).
local t = redis.call('TIME')
local out = { tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) }
for _, key in ipairs(KEYS) do
  local m = redis.call('HMGET', key, 'm:userId', 'm:createdAt', 'm:lastActivityAt', 'd:device')
  out[#out + 1] = m[1]
  out[#out + 1] = m[2]
  out[#out + 1] = m[3]
  out[#out + 1] = redis.call('PTTL', key)
  out[#out + 1] = m[4]
end
return out
