-- destroyUserSessions: logout from all devices, through the user's index.
-- KEYS[1] the user's index; KEYS[2] online users; ARGV[1] session key without id;
-- ARGV[2] userId. Returns how many live sessions were destroyed.
local destroyed = 0
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  destroyed = destroyed + redis.call('DEL', ARGV[1] .. id)
end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[2])
return destroyed
