-- Revokes every refresh token of a user, through the per-user index (no SCAN, no KEYS).
-- KEYS[1] the user's index; KEYS[2..] its tokens' keys; ARGV[1] key of a token of this
-- user without its hash. Returns how many live tokens were revoked.
local needed = token_keys_needed(KEYS[1], ARGV[1], key_set(2))
if needed then
  return need_keys(needed)
end
local revoked = 0
for _, hash in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  revoked = revoked + redis.call('DEL', ARGV[1] .. hash)
end
redis.call('DEL', KEYS[1])
return revoked
