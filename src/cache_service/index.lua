-- The entries of one index: KEYS[1] the index; ARGV: operations, each '+' entry score
-- (add), '-' entry (remove) or '~' entry score (new score of an entry still there).
-- Entries of expired items are pruned first; the index key then expires with its
-- longest-lived entry.
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms())
local i = 1
while i <= #ARGV do
  local op = ARGV[i]
  if op == '+' then
    redis.call('ZADD', KEYS[1], ARGV[i + 2], ARGV[i + 1])
    i = i + 3
  elseif op == '~' then
    redis.call('ZADD', KEYS[1], 'XX', ARGV[i + 2], ARGV[i + 1])
    i = i + 3
  else
    redis.call('ZREM', KEYS[1], ARGV[i + 1])
    i = i + 2
  end
end
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
if last[2] == 'inf' then
  redis.call('PERSIST', KEYS[1])
elseif last[2] then
  redis.call('PEXPIREAT', KEYS[1], math.ceil(tonumber(last[2])))
end
return 1
