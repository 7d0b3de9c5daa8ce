-- Refresh-token rotation with reuse detection (OAuth 2.0 BCP), atomically.
-- KEYS[1] old token key; KEYS[2] new token key; KEYS[3] the user's index;
-- KEYS[4] the "already rotated" marker of the old token; KEYS[5..] the keys of the
-- user's tokens, needed only to revoke a family on reuse (see found_keys.lua)
-- ARGV[1] old hash; ARGV[2] new hash; ARGV[3] ttl of the new token, ms;
-- ARGV[4] key of a token of this user without its hash (to revoke a family)
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local family = redis.call('GET', KEYS[1])
if family then
  local left = redis.call('PTTL', KEYS[1])
  redis.call('DEL', KEYS[1])
  redis.call('ZREM', KEYS[3], ARGV[1])
  -- presenting the old token again, while it would still have lived, is reuse
  if left > 0 then
    redis.call('SET', KEYS[4], family, 'PX', left)
  end
  redis.call('SET', KEYS[2], family, 'PX', ARGV[3])
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
  redis.call('ZADD', KEYS[3], now + tonumber(ARGV[3]), ARGV[2])
  local last = redis.call('ZRANGE', KEYS[3], -1, -1, 'WITHSCORES')
  redis.call('PEXPIREAT', KEYS[3], last[2])
  return 'rotated'
end
local reused = redis.call('GET', KEYS[4])
if reused then
  -- a rotated token came back: someone holds a copy. Revoke its whole family.
  local needed = token_keys_needed(KEYS[3], ARGV[4], key_set(5))
  if needed then
    return need_keys(needed)
  end
  revoke_family(KEYS[3], ARGV[4], reused)
  return 'reused'
end
return 'invalid'
