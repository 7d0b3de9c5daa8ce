-- Revokes every refresh token of a user, through the per-user index (no SCAN, no KEYS).
-- KEYS[1] the user's index; ARGV[1] key of a token of this user without its hash.
-- Returns how many live tokens were revoked.
local revoked = 0
for _, hash in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  revoked = revoked + redis.call('DEL', ARGV[1] .. hash)
end
redis.call('DEL', KEYS[1])
return revoked
