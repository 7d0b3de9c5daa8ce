-- The online users' shard of a user, after the user's step: the user's activity (kept
-- when later than what is there), or the user taken offline (unless active again since).
-- KEYS[1] the shard; ARGV[1] 'add' or 'remove'; ARGV[2] userId; ARGV[3] the time of the
-- activity ('' = now), or when the user was taken offline (ms); ARGV[4] online window ms.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if ARGV[1] == 'add' then
  local at = ARGV[3]
  if at == '' then
    at = string.format('%.3f', tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000)
  end
  redis.call('ZADD', KEYS[1], 'GT', at, ARGV[2])
else
  local seen = redis.call('ZSCORE', KEYS[1], ARGV[2])
  if seen and tonumber(seen) <= tonumber(ARGV[3]) then
    redis.call('ZREM', KEYS[1], ARGV[2])
  end
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. (now - tonumber(ARGV[4])))
-- the shard goes once nobody in it is online any more
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
if last[2] then
  redis.call('PEXPIREAT', KEYS[1], math.ceil(tonumber(last[2]) + tonumber(ARGV[4])))
end
return 1
