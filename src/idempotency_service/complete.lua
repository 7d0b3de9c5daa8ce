-- complete: stores the result, kept for ARGV[2] ms ('' = the resultTtl given to begin,
-- else ARGV[3]).
-- KEYS[1] the record; ARGV[1] result; ARGV[4] the owner token from begin ('' = any
-- owner); ARGV[5] the request's fingerprint ('' = none), kept when the record must be
-- made again (it expired, or Redis lost it).
-- Returns 1 when stored; 0 when another caller owns the key now (this one's lock expired
-- and a retry started): its run decides the result.
local state = redis.call('HGET', KEYS[1], 'state')
if state == 'in-progress' and ARGV[4] ~= '' and redis.call('HGET', KEYS[1], 'owner') ~= ARGV[4] then
  return 0
end
if state == 'completed' and ARGV[4] ~= '' and redis.call('HGET', KEYS[1], 'owner') ~= ARGV[4] then
  return 0
end
local ttl = ARGV[2]
if ttl == '' then
  ttl = redis.call('HGET', KEYS[1], 'resultTtl') or ARGV[3]
end
redis.call('HSET', KEYS[1], 'state', 'completed', 'result', ARGV[1])
if not state then
  redis.call('HSET', KEYS[1], 'fingerprint', ARGV[5], 'resultTtl', ttl, 'owner', ARGV[4])
end
redis.call('PEXPIRE', KEYS[1], ttl)
return 1
