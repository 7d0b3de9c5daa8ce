-- isUserOnline (ARGV[2] = userId) or getOnlineUsers (no ARGV[2]): users active within
-- the window. KEYS[1] online users; ARGV[1] window ms.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local cutoff = now - tonumber(ARGV[1])
if ARGV[2] then
  local seen = redis.call('ZSCORE', KEYS[1], ARGV[2])
  if seen and tonumber(seen) >= cutoff then
    return 1
  end
  return 0
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. cutoff)
return redis.call('ZRANGE', KEYS[1], 0, -1)
