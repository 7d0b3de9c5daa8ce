-- begin: the first caller takes the key (state in-progress, for the lock ttl) and gets an
-- owner token; later callers learn it is in progress, or get the stored result once
-- completed.
-- KEYS[1] the record (hash: state, result, fingerprint, resultTtl, owner)
-- ARGV[1] lock ttl ms; ARGV[2] result ttl ms; ARGV[3] fingerprint ('' = none);
-- ARGV[4] the owner token for this caller, should it start
-- Returns { 'started', owner } | { 'in-progress' } | { 'completed', result } | { 'mismatch' }
local state = redis.call('HGET', KEYS[1], 'state')
if not state then
  redis.call('HSET', KEYS[1], 'state', 'in-progress', 'fingerprint', ARGV[3], 'resultTtl', ARGV[2], 'owner', ARGV[4])
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  return { 'started', ARGV[4] }
end
local fingerprint = redis.call('HGET', KEYS[1], 'fingerprint')
if ARGV[3] ~= '' and fingerprint and fingerprint ~= '' and fingerprint ~= ARGV[3] then
  return { 'mismatch' }
end
if state == 'completed' then
  return { 'completed', redis.call('HGET', KEYS[1], 'result') }
end
return { 'in-progress' }
