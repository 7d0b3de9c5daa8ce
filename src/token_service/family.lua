-- A user's refresh tokens: the user's index (sorted set of token hashes) and one key per
-- token, `<base><hash>` (base: the key of a token of this user without its hash). Every
-- key has the user's hash tag. A script touching tokens gets their keys after its fixed
-- keys (see found_keys.lua).

-- The keys of every token in `index`, or nil when `given` holds them all.
local function token_keys_needed(index, base, given)
  local all, missing = {}, false
  for _, hash in ipairs(redis.call('ZRANGE', index, 0, -1)) do
    local key = base .. hash
    all[#all + 1] = key
    if not given[key] then
      missing = true
    end
  end
  if missing then
    return all
  end
  return nil
end

-- Revokes the refresh tokens of one family (one login): the tokens in the index whose
-- value is the family id (their keys given: token_keys_needed first). Returns how many.
local function revoke_family(index, base, family)
  local revoked = 0
  for _, hash in ipairs(redis.call('ZRANGE', index, 0, -1)) do
    local key = base .. hash
    if redis.call('GET', key) == family then
      redis.call('DEL', key)
      redis.call('ZREM', index, hash)
      revoked = revoked + 1
    end
  end
  return revoked
end
