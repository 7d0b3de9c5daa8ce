-- touchSession / extendSession: a new expiry (the session's own ttl, or a new one), and
-- for a touch, the last activity and the user's online mark.
-- KEYS[1] session hash; KEYS[2] online users
-- ARGV[1] user index key without userId; ARGV[2] session id; ARGV[3] new ttl ms ('' =
-- keep the session's ttl); ARGV[4] '1' for a touch; ARGV[5] online window ms
-- Returns 1, or 0 when the session does not exist.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
-- index scores keep microseconds, so activity order is exact
local precise = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local ttl
if ARGV[3] == '' then
  ttl = tonumber(redis.call('HGET', KEYS[1], 'm:ttl'))
else
  ttl = tonumber(ARGV[3])
  redis.call('HSET', KEYS[1], 'm:ttl', ttl)
end
if ARGV[4] == '1' then
  redis.call('HSET', KEYS[1], 'm:lastActivityAt', now)
end
redis.call('PEXPIRE', KEYS[1], ttl)
local user = redis.call('HGET', KEYS[1], 'm:userId')
if user then
  local index = ARGV[1] .. user
  redis.call('ZADD', index, string.format('%.3f', precise + ttl), ARGV[2])
  local last = redis.call('ZRANGE', index, -1, -1, 'WITHSCORES')
  redis.call('PEXPIREAT', index, math.ceil(tonumber(last[2])))
  if ARGV[4] == '1' then
    redis.call('ZADD', KEYS[2], now, user)
    redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. (now - tonumber(ARGV[5])))
  end
end
return 1
