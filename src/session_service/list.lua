-- listUserSessions, the user's step: the indexed sessions, soonest to expire first;
-- entries of expired sessions are dropped here. The sessions are read next (info.lua).
-- KEYS[1] the user's index; KEYS[2] the user's meta hash.
-- Returns { id, version, ... }.
local now = clock()
prune(KEYS[1], KEYS[2], now)
local out = {}
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  out[#out + 1] = id
  out[#out + 1] = entry(KEYS[2], id) or ''
end
return out
