-- Fixed window: a counter that starts with the window's first request and expires at its
-- end. A refused request does not count.
-- KEYS[1] counter; ARGV[1] limit; ARGV[2] window ms; ARGV[3] cost; ARGV[4] '1' consume,
-- '0' status only.
-- Returns { allowed (0/1), remaining, reset in ms from now, retry after ms, now ms }
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local limit, window, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
local left = redis.call('PTTL', KEYS[1])
if left < 0 then
  used = 0
  left = window
end
local allowed = used + cost <= limit
if allowed and ARGV[4] == '1' then
  if used == 0 then
    redis.call('SET', KEYS[1], cost, 'PX', window)
  else
    redis.call('INCRBY', KEYS[1], cost)
  end
  used = used + cost
end
local retry = 0
if not allowed then
  retry = left
end
return { allowed and 1 or 0, limit - used, left, retry, now }
