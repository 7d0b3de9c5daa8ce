-- destroySession, first step. KEYS[1] the session.
-- A session without a user is deleted here: returns { 1 }, or { 0 } when there was none.
-- A user's session is only read: returns { 2, userId, version, family or '' }; the
-- user's step (its index, its login's refresh tokens) comes next, then drop.lua.
local m = redis.call('HMGET', KEYS[1], 'm:userId', 'm:v', 'm:family')
if not m[1] then
  return { redis.call('DEL', KEYS[1]) }
end
return { 2, m[1], m[2] or '', m[3] or '' }
