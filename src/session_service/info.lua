-- A session's metadata. KEYS[1] the session.
-- Returns { now, userId, createdAt, lastActivityAt, pttl, device, version } (createdAt
-- false when the session does not exist).
local t = redis.call('TIME')
local m = redis.call('HMGET', KEYS[1], 'm:userId', 'm:createdAt', 'm:lastActivityAt', 'd:device', 'm:v')
return {
  tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000),
  m[1],
  m[2],
  m[3],
  redis.call('PTTL', KEYS[1]),
  m[4],
  m[5],
}
