-- Fixed window: a counter that starts with the window's first request and expires at its
-- end (the server's TTL decides, so app instances with skewed clocks agree). A refused
-- request does not count.
-- KEYS[1] counter; ARGV[1] limit; ARGV[2] window ms; ARGV[3] cost; ARGV[4] '1' consume,
-- '0' status only, '2' refund a request counted earlier (in this window, if still open).
-- Returns { allowed (0/1), remaining, reset in ms from now, retry after ms, undo }
local limit, window, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
if ARGV[4] == '2' then
  local left = redis.call('PTTL', KEYS[1])
  if left > 0 then
    local used = redis.call('DECRBY', KEYS[1], cost)
    if used <= 0 then
      redis.call('DEL', KEYS[1])
    end
  end
  return { 1, 0, 0, 0, '' }
end
if ARGV[4] ~= '1' then
  local used = tonumber(redis.call('GET', KEYS[1]) or '0')
  local left = redis.call('PTTL', KEYS[1])
  if left < 0 then
    return { 1, limit, window, 0, '' }
  end
  if used + cost <= limit then
    return { 1, limit - used, left, 0, '' }
  end
  return { 0, limit - used, left, left, '' }
end
local used = redis.call('INCRBY', KEYS[1], cost)
local left
if used == cost then
  redis.call('PEXPIRE', KEYS[1], window)
  left = window
else
  left = redis.call('PTTL', KEYS[1])
  if left < 0 then
    redis.call('PEXPIRE', KEYS[1], window)
    left = window
  end
end
if used > limit then
  -- refused: take it back, so it does not count
  redis.call('DECRBY', KEYS[1], cost)
  return { 0, limit - used + cost, left, left, '' }
end
return { 1, limit - used, left, 0, '' }
