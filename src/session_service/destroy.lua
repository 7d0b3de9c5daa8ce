-- destroySession: deletes the session and its index entry, and revokes its login's
-- refresh tokens; a user left with no session is no longer online.
-- KEYS[1] session hash; KEYS[2] online users
-- ARGV[1] user index key without userId; ARGV[2] session id; ARGV[3] refresh-token key
-- without '{userId}:hash'; ARGV[4] refresh-token index key without '{userId}'
local user = redis.call('HGET', KEYS[1], 'm:userId')
local family = redis.call('HGET', KEYS[1], 'm:family')
if user and family then
  local tag = '{' .. user .. '}'
  revoke_family(ARGV[4] .. tag, ARGV[3] .. tag .. ':', family)
end
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
