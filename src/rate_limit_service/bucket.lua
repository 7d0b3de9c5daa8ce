-- Token bucket: holds up to `limit` tokens (the burst), refilled continuously at
-- limit / window; a request takes `cost` tokens. State is one string "tokens at_µs"
-- that expires once the bucket would be full again (a full bucket needs no state).
-- KEYS[1] bucket; ARGV[1] limit; ARGV[2] window ms; ARGV[3] cost; ARGV[4] '1' consume,
-- '0' status only, '2' give back the tokens of an earlier consume.
-- Returns { allowed, remaining, reset in ms from now, retry after ms, undo }
local t = redis.call('TIME')
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local limit, window, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local rate = limit / (window * 1000) -- tokens per µs
local tokens = limit
local state = redis.call('GET', KEYS[1])
if state then
  local stored, at = string.match(state, '^(%S+) (%S+)$')
  tokens = math.min(limit, tonumber(stored) + (now_us - tonumber(at)) * rate)
end
if ARGV[4] == '2' then
  if state then
    tokens = math.min(limit, tokens + cost)
    local refill_ms = math.ceil((limit - tokens) / rate / 1000)
    if refill_ms >= 1 then
      redis.call('SET', KEYS[1], string.format('%.6f %d', tokens, now_us), 'PX', refill_ms)
    else
      redis.call('DEL', KEYS[1])
    end
  end
  return { 1, 0, 0, 0, '' }
end
local allowed = tokens >= cost
if allowed and ARGV[4] == '1' then
  tokens = tokens - cost
  local refill_ms = math.max(1, math.ceil((limit - tokens) / rate / 1000))
  -- numbers past 14 digits must be formatted by hand (Lua writes them as %.14g)
  redis.call('SET', KEYS[1], string.format('%.6f %d', tokens, now_us), 'PX', refill_ms)
end
local retry = 0
if not allowed then
  retry = math.ceil((cost - tokens) / rate / 1000)
end
local reset = math.ceil((limit - tokens) / rate / 1000)
return { allowed and 1 or 0, math.floor(tokens + 1e-9), reset, retry, '' }
