-- setTtl: a new expiry for the item and its index entries. KEYS[1] item; ARGV[1] short
-- key; ARGV[2] index base; ARGV[3] ttl ms. Returns 1, or 0 when the item does not exist.
if redis.call('PEXPIRE', KEYS[1], ARGV[3]) == 0 then
  return 0
end
reindex(KEYS[1], ARGV[1], ARGV[2], string.format('%d', now_ms() + tonumber(ARGV[3])))
return 1
