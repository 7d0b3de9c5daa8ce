-- touchSession / extendSession, first step: a new expiry (the session's own ttl, or a
-- new one), and for a touch the last activity.
-- KEYS[1] the session; ARGV[1] new ttl ms ('' = keep the session's ttl); ARGV[2] '1' for
-- a touch.
-- Returns { 0 } when the session does not exist, else { 1, now, expiry (ms, to the µs),
-- userId, version }.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return { 0 }
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local precise = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local ttl
if ARGV[1] == '' then
  ttl = tonumber(redis.call('HGET', KEYS[1], 'm:ttl'))
else
  ttl = tonumber(ARGV[1])
  redis.call('HSET', KEYS[1], 'm:ttl', ttl)
end
if ARGV[2] == '1' then
  redis.call('HSET', KEYS[1], 'm:lastActivityAt', now)
end
redis.call('PEXPIRE', KEYS[1], ttl)
local m = redis.call('HMGET', KEYS[1], 'm:userId', 'm:v')
return { 1, string.format('%.3f', precise), string.format('%.3f', precise + ttl), m[1], m[2] }
