-- touchSession / extendSession, the user's step: the session's new expiry in the index
-- (while the index still holds this version of it), and for a touch the user's activity.
-- KEYS[1] the user's index; KEYS[2] the user's meta hash
-- ARGV[1] session id; ARGV[2] its version; ARGV[3] its new expiry (ms); ARGV[4] '1' for a
-- touch; ARGV[5] online window ms.
local now = clock()
if entry(KEYS[2], ARGV[1]) == ARGV[2] then
  redis.call('ZADD', KEYS[1], 'XX', ARGV[3], ARGV[1])
end
if ARGV[4] == '1' then
  redis.call('HSET', KEYS[2], 'active', now)
end
prune(KEYS[1], KEYS[2], now)
fit_expiry(KEYS[1], KEYS[2], tonumber(ARGV[5]))
return 1
