-- abandon: releases an in-progress key so a retry can start; a completed result stays,
-- and so does a key another caller owns now (ARGV[1]: the owner token, '' = any owner).
-- KEYS[1] the record. Returns 1 when released.
if redis.call('HGET', KEYS[1], 'state') == 'in-progress' then
  if ARGV[1] ~= '' and redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then
    return 0
  end
  return redis.call('DEL', KEYS[1])
end
return 0
