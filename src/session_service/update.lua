-- updateSession, first step: merges fields into a session, atomically (other fields
-- untouched, the expiry kept). A changed userId gives the session a new version; the
-- users' indexes follow next.
-- KEYS[1] the session
-- ARGV[1] 'keep' | 'set' | 'clear' (what to do with the userId); ARGV[2] the new userId;
-- ARGV[3] the new version, should the user change; ARGV[4..] field, JSON, ...
-- Returns { 0 } when the session does not exist; { 1 } when its user did not change;
-- else { 1, previous userId, previous version, new userId, family or '', expiry (ms) }.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return { 0 }
end
local fields = {}
for i = 4, #ARGV, 2 do
  fields[#fields + 1] = 'd:' .. ARGV[i]
  fields[#fields + 1] = ARGV[i + 1]
end
if #fields > 0 then
  redis.call('HSET', KEYS[1], unpack(fields))
end
if ARGV[1] == 'keep' then
  return { 1 }
end
local m = redis.call('HMGET', KEYS[1], 'm:userId', 'm:v', 'm:family')
local user = ARGV[1] == 'set' and ARGV[2] or false
if m[1] == user then
  return { 1 }
end
if user then
  redis.call('HSET', KEYS[1], 'm:userId', user, 'm:v', ARGV[3])
else
  redis.call('HDEL', KEYS[1], 'm:userId')
  redis.call('HSET', KEYS[1], 'm:v', ARGV[3])
end
local t = redis.call('TIME')
local precise = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local expiry = string.format('%.3f', precise + redis.call('PTTL', KEYS[1]))
return { 1, m[1], m[2] or '', user, m[3] or '', expiry }
