-- Revokes the refresh tokens of one family (one login) of a user: the tokens in the
-- user's index whose value is the family id. Returns how many were revoked.
-- index: the user's token index; token_key: key of a token of this user without its hash.
local function revoke_family(index, token_key, family)
  local revoked = 0
  for _, hash in ipairs(redis.call('ZRANGE', index, 0, -1)) do
    local key = token_key .. hash
    if redis.call('GET', key) == family then
      redis.call('DEL', key)
      redis.call('ZREM', index, hash)
      revoked = revoked + 1
    end
  end
  return revoked
end
