-- destroySession: deletes the session and its index entry; a user left with no session
-- is no longer online.
-- KEYS[1] session hash; KEYS[2] online users
-- ARGV[1] user index key without userId; ARGV[2] session id
local user = redis.call('HGET', KEYS[1], 'm:userId')
local deleted = redis.call('DEL', KEYS[1])
if user then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local index = ARGV[1] .. user
  redis.call('ZREM', index, ARGV[2])
  redis.call('ZREMRANGEBYSCORE', index, '-inf', now)
  if redis.call('ZCARD', index) == 0 then
    redis.call('ZREM', KEYS[2], user)
  end
end
return deleted
