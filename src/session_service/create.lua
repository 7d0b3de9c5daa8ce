-- createSession, first step: writes the session, replacing one of the same id.
-- KEYS[1] the session (hash)
-- ARGV[1] ttl ms; ARGV[2] userId ('' = none); ARGV[3] the refresh-token family of this
-- login ('' = none); ARGV[4] its version (new for each createSession); ARGV[5..] data
-- field, JSON value, ...
-- Returns { now, expiry (ms, to the µs), the replaced session's userId, its version }.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
-- index scores keep microseconds, so activity order is exact
local precise = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local ttl = tonumber(ARGV[1])
local previous = redis.call('HMGET', KEYS[1], 'm:userId', 'm:v')
redis.call('DEL', KEYS[1])
local fields = { 'm:createdAt', now, 'm:lastActivityAt', now, 'm:ttl', ttl, 'm:v', ARGV[4] }
if ARGV[2] ~= '' then
  fields[#fields + 1] = 'm:userId'
  fields[#fields + 1] = ARGV[2]
end
if ARGV[3] ~= '' then
  fields[#fields + 1] = 'm:family'
  fields[#fields + 1] = ARGV[3]
end
for i = 5, #ARGV, 2 do
  fields[#fields + 1] = 'd:' .. ARGV[i]
  fields[#fields + 1] = ARGV[i + 1]
end
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('PEXPIRE', KEYS[1], ttl)
return {
  string.format('%.3f', precise),
  string.format('%.3f', precise + ttl),
  previous[1],
  previous[2],
}
