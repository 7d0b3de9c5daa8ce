-- Stores a refresh token (by hash) and indexes it per user.
-- KEYS[1] token key; KEYS[2] the user's index (sorted set: hash -> expiry, ms)
-- ARGV[1] token hash; ARGV[2] ttl, ms; ARGV[3] family id
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[2])
-- expired tokens leave the index here, so it never grows past the live tokens
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]), ARGV[1])
local last = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
redis.call('PEXPIREAT', KEYS[2], last[2])
return 1
