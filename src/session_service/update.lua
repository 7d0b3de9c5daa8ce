-- updateSession: merges fields into a session, atomically (other fields untouched, the
-- expiry kept). A changed userId moves the session to the new user's index.
-- KEYS[1] session hash
-- ARGV[1] user index key without userId; ARGV[2] session id; ARGV[3] 'keep' | 'set' |
-- 'clear' (what to do with the userId); ARGV[4] the new userId; ARGV[5..] field, JSON, ...
-- Returns 1, or 0 when the session does not exist.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
local fields = {}
for i = 5, #ARGV, 2 do
  fields[#fields + 1] = 'd:' .. ARGV[i]
  fields[#fields + 1] = ARGV[i + 1]
end
if #fields > 0 then
  redis.call('HSET', KEYS[1], unpack(fields))
end
if ARGV[3] ~= 'keep' then
  local previous = redis.call('HGET', KEYS[1], 'm:userId')
  local user = ARGV[3] == 'set' and ARGV[4] or nil
  if previous ~= (user or false) then
    if previous then
      redis.call('ZREM', ARGV[1] .. previous, ARGV[2])
      redis.call('HDEL', KEYS[1], 'm:userId')
    end
    if user then
      local t = redis.call('TIME')
      -- index scores keep microseconds, so activity order is exact
      local precise = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
      local index = ARGV[1] .. user
      redis.call('HSET', KEYS[1], 'm:userId', user)
      redis.call('ZADD', index, string.format('%.3f', precise + redis.call('PTTL', KEYS[1])), ARGV[2])
      local last = redis.call('ZRANGE', index, -1, -1, 'WITHSCORES')
      redis.call('PEXPIREAT', index, math.ceil(tonumber(last[2])))
    end
  end
end
return 1
