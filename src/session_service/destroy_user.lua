-- destroyUserSessions, the user's step: empties the user's index and revokes each
-- indexed session's login's refresh tokens; the sessions are deleted next (drop.lua).
-- KEYS[1] the user's index; KEYS[2] the user's meta hash; KEYS[3] the user's token index;
-- KEYS[4..] the user's token keys (see found_keys.lua); ARGV[1] key of a token of this
-- user without its hash.
-- Returns { when the user was taken offline (ms, to the µs), then id, version, ... }.
local _, precise = clock()
local sessions, revoking = {}, false
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local version, family = entry(KEYS[2], id)
  sessions[#sessions + 1] = { id, version or '', family or '' }
  if family and family ~= '' then
    revoking = true
  end
end
if revoking then
  local needed = token_keys_needed(KEYS[3], ARGV[1], key_set(4))
  if needed then
    return need_keys(needed)
  end
end
local out = { string.format('%.3f', precise) }
for _, s in ipairs(sessions) do
  if s[3] ~= '' then
    revoke_family(KEYS[3], ARGV[1], s[3])
  end
  out[#out + 1] = s[1]
  out[#out + 1] = s[2]
end
redis.call('DEL', KEYS[1], KEYS[2])
return out
