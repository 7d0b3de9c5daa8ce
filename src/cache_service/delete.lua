-- delete: the item and its index entries. KEYS[1] item; ARGV[1] short key; ARGV[2] index base.
unindex(KEYS[1], ARGV[1], ARGV[2])
return redis.call('DEL', KEYS[1])
