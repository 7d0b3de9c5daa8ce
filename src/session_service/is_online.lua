-- isUserOnline: whether the user was active within the window. KEYS[1] the user's meta
-- hash; ARGV[1] online window ms.
local now = clock()
local active = redis.call('HGET', KEYS[1], 'active')
if active and tonumber(active) >= now - tonumber(ARGV[1]) then
  return 1
end
return 0
