-- abandon: releases an in-progress key so a retry can start; a completed result stays.
-- KEYS[1] the record. Returns 1 when released.
if redis.call('HGET', KEYS[1], 'state') == 'in-progress' then
  return redis.call('DEL', KEYS[1])
end
return 0
