-- (prepended to the scripts that find some of their keys in what they read)
-- A script touches only keys given in KEYS, as Redis Cluster requires. Keys it can only
-- know by reading (the tokens listed in a user's index, say) come after its fixed keys:
-- the keys it asked for last time. A script that needs a key it was not given writes
-- nothing and returns need_keys(list): it is run again with exactly those keys.

-- The set of KEYS[first..].
local function key_set(first)
  local set = {}
  for i = first, #KEYS do
    set[KEYS[i]] = true
  end
  return set
end

-- The reply asking to be run again with `list` after the fixed keys.
local function need_keys(list)
  local out = { { ok = 'NEEDKEYS' } }
  for _, key in ipairs(list) do
    out[#out + 1] = key
  end
  return out
end
