-- Sliding window counter: the window's count is estimated from two fixed windows, the
-- current one and the one before, weighted by how much of it the sliding window still
-- covers (estimate = previous * (1 - elapsed / window) + current). Each fixed window's
-- count is a plain integer key, whatever the limit: window w counts in KEYS[1 + w % 3],
-- which expires when window w + 2 begins. Three slots, not two: the slot a window reuses
-- held the count of three windows before, expired a whole window earlier, so a stale
-- count is never read (a script sees keys as they were when it started; TIME is later).
-- A refused request does not count.
-- KEYS[1..3] the slots; ARGV[1] limit; ARGV[2] window ms; ARGV[3] cost; ARGV[4] '1'
-- consume, '0' status only, '2' refund the request counted in window ARGV[5].
-- Returns { allowed, remaining, reset in ms from now, retry after ms, undo (the window index) }
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local limit, window, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local w = math.floor(now / window)
if ARGV[4] == '2' then
  local slot = KEYS[1 + tonumber(ARGV[5]) % 3]
  local counted = tonumber(redis.call('GET', slot) or '0')
  if counted > cost then
    redis.call('DECRBY', slot, cost)
  elseif counted > 0 then
    redis.call('DEL', slot)
  end
  return { 1, 0, 0, 0, '' }
end
local current_key = KEYS[1 + w % 3]
local counts = redis.call('MGET', current_key, KEYS[1 + (w + 2) % 3])
local current, previous = tonumber(counts[1] or '0'), tonumber(counts[2] or '0')
local elapsed = now - w * window
local weight = (window - elapsed) / window
local estimate = previous * weight + current
local allowed = estimate + cost <= limit
if allowed and ARGV[4] == '1' then
  if redis.call('INCRBY', current_key, cost) == cost then
    -- the window's first request: its count is needed until the next window ends
    redis.call('PEXPIREAT', current_key, (w + 2) * window)
  end
  current = current + cost
  estimate = estimate + cost
end
local retry = 0
if not allowed then
  if current + cost <= limit and previous > 0 then
    -- the previous window's share shrinks as time passes
    local needed = 1 - (limit - current - cost) / previous
    retry = math.ceil(needed * window - elapsed)
  else
    -- only the next window makes room: this one's count then weighs less and less
    local needed = 0
    if current > 0 then
      needed = math.max(0, 1 - (limit - cost) / current)
    end
    retry = math.ceil((window - elapsed) + needed * window)
  end
  if retry < 1 then
    retry = 1
  end
end
local reset = 0
if current > 0 then
  reset = (window - elapsed) + window
elseif previous > 0 then
  reset = window - elapsed
end
return { allowed and 1 or 0, math.max(0, math.floor(limit - estimate + 1e-9)), reset, retry, w }
