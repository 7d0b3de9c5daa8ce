-- Creates (or replaces) a session, indexes it under its user, evicts the user's least
-- recently active sessions beyond the maximum, and marks the user online. Atomic.
-- KEYS[1] session hash; KEYS[2] the user's index (sorted set: id -> expiry, ms);
-- KEYS[3] online users (sorted set: userId -> last activity, ms)
-- ARGV[1] ttl ms; ARGV[2] session id; ARGV[3] userId ('' = none); ARGV[4] max sessions
-- per user (0 = no limit); ARGV[5] online window ms; ARGV[6] session key without id;
-- ARGV[7] user index key without userId; ARGV[8] the refresh-token family of this login
-- ('' = none); ARGV[9] refresh-token key without '{userId}:hash'; ARGV[10] refresh-token
-- index key without '{userId}'; ARGV[11..] data field, JSON value, ...
-- Returns the ids of the sessions evicted; their logins' refresh tokens are revoked.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
-- index scores keep microseconds, so activity order is exact
local precise = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local ttl = tonumber(ARGV[1])
local id, user, max = ARGV[2], ARGV[3], tonumber(ARGV[4])

local previous = redis.call('HGET', KEYS[1], 'm:userId')
if previous and previous ~= user then
  redis.call('ZREM', ARGV[7] .. previous, id)
end
redis.call('DEL', KEYS[1])
local fields = { 'm:createdAt', now, 'm:lastActivityAt', now, 'm:ttl', ttl }
if user ~= '' then
  fields[#fields + 1] = 'm:userId'
  fields[#fields + 1] = user
end
if ARGV[8] ~= '' then
  fields[#fields + 1] = 'm:family'
  fields[#fields + 1] = ARGV[8]
end
for i = 11, #ARGV, 2 do
  fields[#fields + 1] = 'd:' .. ARGV[i]
  fields[#fields + 1] = ARGV[i + 1]
end
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('PEXPIRE', KEYS[1], ttl)

local evicted = {}
if user ~= '' then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
  redis.call('ZADD', KEYS[2], string.format('%.3f', precise + ttl), id)
  if max > 0 then
    local count = redis.call('ZCARD', KEYS[2])
    if count > max then
      -- soonest to expire first: the least recently active sessions
      for _, other in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
        if count <= max then break end
        if other ~= id then
          local family = redis.call('HGET', ARGV[6] .. other, 'm:family')
          if family then
            local tag = '{' .. user .. '}'
            revoke_family(ARGV[10] .. tag, ARGV[9] .. tag .. ':', family)
          end
          redis.call('DEL', ARGV[6] .. other)
          redis.call('ZREM', KEYS[2], other)
          count = count - 1
          evicted[#evicted + 1] = other
        end
      end
    end
  end
  local last = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
  redis.call('PEXPIREAT', KEYS[2], math.ceil(tonumber(last[2])))
  redis.call('ZADD', KEYS[3], now, user)
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', '(' .. (now - tonumber(ARGV[5])))
end
return evicted
