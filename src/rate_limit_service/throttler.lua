-- @nestjs/throttler's `ThrottlerStorage.increment`, with the semantics of throttler's own
-- in-memory storage (ThrottlerStorageService), in one call on the server's clock:
-- each hit counts for `ttl` ms (a sliding log); with a block duration, the hit that goes
-- past the limit blocks the key for that long, and the first hit after the block starts
-- the count again; without one (<= 0), a hit past the limit is refused and not counted.
-- KEYS[1] the record (hash: expiresAt, blockExpiresAt, blocked, seq)
-- KEYS[2] the hits of this throttler name (sorted set: hit -> when it expires, ms)
-- ARGV[1] ttl ms; ARGV[2] limit; ARGV[3] block duration ms
-- Returns { totalHits, timeToExpire (s), isBlocked (0/1), timeToBlockExpire (s) }
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl, limit, block = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local r = redis.call('HMGET', KEYS[1], 'expiresAt', 'blockExpiresAt', 'blocked', 'seq')
local expires_at = tonumber(r[1]) or (now + ttl)
local block_at = tonumber(r[2]) or 0
local blocked = r[3] == '1'
local seq = tonumber(r[4]) or 0

local function seconds(ms)
  return math.ceil(ms / 1000)
end

-- hits that expired no longer count
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local hits = redis.call('ZCARD', KEYS[2])

local function hit()
  seq = seq + 1
  redis.call('ZADD', KEYS[2], now + ttl, now .. ':' .. seq)
  hits = hits + 1
end

local time_to_expire = seconds(expires_at - now)
if time_to_expire <= 0 then
  expires_at = now + ttl
  time_to_expire = seconds(ttl)
end

local reply
if block <= 0 then
  local refused = hits >= limit
  if not refused then
    hit()
  end
  local until_free = time_to_expire
  if hits > 0 then
    local first = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
    until_free = seconds(tonumber(first[2]) - now)
  end
  reply = { hits + (refused and 1 or 0), time_to_expire, refused and 1 or 0, refused and until_free or 0 }
else
  if not blocked then
    hit()
  end
  if hits > limit and not blocked then
    blocked = true
    block_at = now + block
  end
  local time_to_block_expire = seconds(block_at - now)
  if time_to_block_expire <= 0 and blocked then
    -- the block is over: the count starts again with this hit
    blocked = false
    redis.call('DEL', KEYS[2])
    hits = 0
    hit()
  end
  reply = { hits, time_to_expire, blocked and 1 or 0, time_to_block_expire }
end

redis.call('HSET', KEYS[1], 'expiresAt', expires_at, 'blockExpiresAt', block_at,
  'blocked', blocked and '1' or '0', 'seq', seq)
-- both keys live while the record matters: its window, its block, its last hit
local keep = expires_at
if blocked and block_at > keep then
  keep = block_at
end
local last = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
if last[2] and tonumber(last[2]) > keep then
  keep = tonumber(last[2])
end
keep = math.max(keep - now, 1)
redis.call('PEXPIRE', KEYS[1], keep)
redis.call('PEXPIRE', KEYS[2], keep)
return reply
