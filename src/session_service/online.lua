-- getOnlineUsers: one shard of the online users (sorted set: userId -> last activity,
-- ms), pruned to the window. KEYS[1] the shard; ARGV[1] online window ms.
-- Returns { userId, last activity, ... }.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. (now - tonumber(ARGV[1])))
return redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
