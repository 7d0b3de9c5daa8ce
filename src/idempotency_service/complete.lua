-- complete: stores the result, kept for ARGV[2] ms ('' = the resultTtl given to begin,
-- else ARGV[3]). KEYS[1] the record; ARGV[1] result.
local ttl = ARGV[2]
if ttl == '' then
  ttl = redis.call('HGET', KEYS[1], 'resultTtl') or ARGV[3]
end
redis.call('HSET', KEYS[1], 'state', 'completed', 'result', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ttl)
return 1
