-- destroyUserSessions: logout from all devices, through the user's index; each
-- session's login loses its refresh tokens.
-- KEYS[1] the user's index; KEYS[2] online users; ARGV[1] session key without id;
-- ARGV[2] userId; ARGV[3] refresh-token key without '{userId}:hash'; ARGV[4]
-- refresh-token index key without '{userId}'. Returns how many live sessions were
-- destroyed.
local destroyed = 0
local tag = '{' .. ARGV[2] .. '}'
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local family = redis.call('HGET', ARGV[1] .. id, 'm:family')
  if family then
    revoke_family(ARGV[4] .. tag, ARGV[3] .. tag .. ':', family)
  end
  destroyed = destroyed + redis.call('DEL', ARGV[1] .. id)
end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[2])
return destroyed
