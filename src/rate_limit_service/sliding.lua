-- Sliding window, exact: a log of the requests of the last window (sorted set, score =
-- time in µs), so no burst ever exceeds the limit within any window. At most `limit`
-- entries; the key expires a window after its last request. A refused request does
-- not count.
-- KEYS[1] log; ARGV[1] limit; ARGV[2] window ms; ARGV[3] cost; ARGV[4] '1' consume,
-- '0' status only, '2' refund the entries of an earlier consume (ARGV[5]: its undo).
-- Returns { allowed, remaining, reset in ms from now, retry after ms, undo }; undo names
-- the entries this consume added ('<stamp>-<first index>').
if ARGV[4] == '2' then
  local stamp, first = string.match(ARGV[5], '^(%d+)-(%d+)$')
  if stamp then
    for i = 0, tonumber(ARGV[3]) - 1 do
      redis.call('ZREM', KEYS[1], stamp .. '-' .. (tonumber(first) + i))
    end
  end
  return { 1, 0, 0, 0, '' }
end
local t = redis.call('TIME')
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local limit, window, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local window_us = window * 1000
-- numbers past 14 digits must be formatted by hand (Lua writes them as %.14g)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%d', now_us - window_us))
local used = redis.call('ZCARD', KEYS[1])
local allowed = used + cost <= limit
local undo = ''
if allowed and ARGV[4] == '1' then
  local entries = {}
  local stamp = string.format('%d', now_us)
  undo = stamp .. '-' .. (used + 1)
  for i = 1, cost do
    entries[#entries + 1] = stamp
    entries[#entries + 1] = stamp .. '-' .. (used + i)
  end
  redis.call('ZADD', KEYS[1], unpack(entries))
  redis.call('PEXPIRE', KEYS[1], window)
  used = used + cost
end
local retry = 0
if not allowed then
  -- wait until enough of the oldest entries leave the window
  local needed = used + cost - limit
  local entry = redis.call('ZRANGE', KEYS[1], needed - 1, needed - 1, 'WITHSCORES')
  retry = math.ceil((tonumber(entry[2]) + window_us - now_us) / 1000)
end
-- reset: when the newest entry leaves the window and the full limit is back
local reset = 0
if allowed and ARGV[4] == '1' then
  reset = window -- the newest entry is this request
else
  local newest = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
  if newest[2] then
    reset = math.ceil((tonumber(newest[2]) + window_us - now_us) / 1000)
  end
end
return { allowed and 1 or 0, limit - used, reset, retry, undo }
