-- revokeTokenFamily: the refresh tokens of one login of a user.
-- KEYS[1] the user's index; KEYS[2..] its tokens' keys; ARGV[1] key of a token of this
-- user without its hash; ARGV[2] the family id. Returns how many live tokens were revoked.
local needed = token_keys_needed(KEYS[1], ARGV[1], key_set(2))
if needed then
  return need_keys(needed)
end
return revoke_family(KEYS[1], ARGV[1], ARGV[2])
