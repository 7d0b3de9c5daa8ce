-- increment: adds to a number item; a new item gets the ttl (if any). KEYS[1] item;
-- ARGV[1] amount; ARGV[2] ttl ms ('' = none).
local created = redis.call('EXISTS', KEYS[1]) == 0
local value = redis.call('HINCRBY', KEYS[1], 'v', ARGV[1])
if created and ARGV[2] ~= '' then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return value
