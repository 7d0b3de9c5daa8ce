-- Token bucket: holds up to `limit` tokens (the burst), refilled continuously at
-- limit / window; a request takes `cost` tokens. The key expires once the bucket would
-- be full again (a full bucket needs no state).
-- KEYS[1] bucket (hash: tokens, at); ARGV[1] limit; ARGV[2] window ms; ARGV[3] cost;
-- ARGV[4] '1' consume.
-- Returns { allowed, remaining, reset in ms from now, retry after ms, now ms }
local t = redis.call('TIME')
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local now = math.floor(now_us / 1000)
local limit, window, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local rate = limit / (window * 1000) -- tokens per µs
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = limit
if state[1] then
  tokens = math.min(limit, tonumber(state[1]) + (now_us - tonumber(state[2])) * rate)
end
local allowed = tokens >= cost
if allowed and ARGV[4] == '1' then
  tokens = tokens - cost
  local refill_ms = math.ceil((limit - tokens) / rate / 1000)
  redis.call('HSET', KEYS[1], 'tokens', string.format('%.6f', tokens), 'at', string.format('%d', now_us))
  redis.call('PEXPIRE', KEYS[1], math.max(1, refill_ms))
end
local retry = 0
if not allowed then
  retry = math.ceil((cost - tokens) / rate / 1000)
end
local reset = math.ceil((limit - tokens) / rate / 1000)
return { allowed and 1 or 0, math.floor(tokens + 1e-9), reset, retry, now }
