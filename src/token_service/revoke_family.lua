-- revokeTokenFamily: the refresh tokens of one login of a user.
-- KEYS[1] the user's index; ARGV[1] key of a token of this user without its hash;
-- ARGV[2] the family id. Returns how many live tokens were revoked.
return revoke_family(KEYS[1], ARGV[1], ARGV[2])
