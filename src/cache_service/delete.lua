-- delete: the item; its index entries are removed next (index.lua). KEYS[1] item.
-- Returns { deleted (0/1), then its version, index name, value, ... }.
local old = listing(KEYS[1])
local out = { redis.call('DEL', KEYS[1]) }
for _, v in ipairs(old) do
  out[#out + 1] = v
end
return out
