-- A user's step that takes sessions out of the user's index (those still indexed with the
-- version given), may revoke one login's refresh tokens, and may take the user offline.
-- destroySession, a session moving to another user, ids listUserSessions found gone.
-- KEYS[1] the user's index; KEYS[2] the user's meta hash; KEYS[3] the user's token index;
-- KEYS[4..] the user's token keys (see found_keys.lua)
-- ARGV[1] key of a token of this user without its hash; ARGV[2] the refresh-token family
-- to revoke ('' = none); ARGV[3] '1' to take the user offline when no session is left;
-- ARGV[4] online window ms; ARGV[5..] session id, version, ...
-- Returns { when the user was taken offline (ms, to the µs), or nil }.
local now, precise = clock()
if ARGV[2] ~= '' then
  local needed = token_keys_needed(KEYS[3], ARGV[1], key_set(4))
  if needed then
    return need_keys(needed)
  end
  revoke_family(KEYS[3], ARGV[1], ARGV[2])
end
for i = 5, #ARGV, 2 do
  if entry(KEYS[2], ARGV[i]) == ARGV[i + 1] then
    unindex(KEYS[1], KEYS[2], { ARGV[i] })
  end
end
prune(KEYS[1], KEYS[2], now)
local offline = false
if ARGV[3] == '1' and redis.call('ZCARD', KEYS[1]) == 0 then
  redis.call('HDEL', KEYS[2], 'active')
  offline = string.format('%.3f', precise)
end
fit_expiry(KEYS[1], KEYS[2], tonumber(ARGV[4]))
return { offline }
