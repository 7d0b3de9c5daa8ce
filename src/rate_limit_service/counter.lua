-- Sliding window counter: the window's count is estimated from two fixed windows, the
-- current one and the one before, weighted by how much of it the sliding window still
-- covers (estimate = previous * (1 - elapsed / window) + current). One short string per
-- key, "<window index> <current count> <previous count>", whatever the limit.
-- A refused request does not count.
-- KEYS[1] state; ARGV[1] limit; ARGV[2] window ms; ARGV[3] cost; ARGV[4] '1' consume,
-- '0' status only, '2' refund a request counted earlier (in the same window).
-- Returns { allowed, remaining, reset in ms from now, retry after ms, undo }
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local limit, window, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local w = math.floor(now / window)
local elapsed = now - w * window
local current, previous = 0, 0
local state = redis.call('GET', KEYS[1])
if state then
  local sw, sc, sp = string.match(state, '^(%d+) (%d+) (%d+)$')
  sw = tonumber(sw)
  if sw == w then
    current, previous = tonumber(sc), tonumber(sp)
  elseif sw == w - 1 then
    previous = tonumber(sc)
  end
end
local function save()
  -- kept until the current window's requests have left the sliding window
  redis.call('SET', KEYS[1], string.format('%d %d %d', w, current, previous), 'PX', 2 * window - elapsed)
end
if ARGV[4] == '2' then
  if state and current > 0 then
    current = math.max(0, current - cost)
    save()
  end
  return { 1, 0, 0, 0, '' }
end
local weight = (window - elapsed) / window
local estimate = previous * weight + current
local allowed = estimate + cost <= limit
if allowed and ARGV[4] == '1' then
  current = current + cost
  estimate = estimate + cost
  save()
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
return { allowed and 1 or 0, math.max(0, math.floor(limit - estimate + 1e-9)), reset, retry, '' }
