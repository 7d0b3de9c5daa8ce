-- createSession (and updateSession to a new user), the user's step: indexes the session,
-- evicts the user's least recently active sessions beyond the maximum and revokes their
-- logins' refresh tokens, marks the user active. Atomic (one slot: the user's).
-- KEYS[1] the user's index; KEYS[2] the user's meta hash; KEYS[3] the user's token index;
-- KEYS[4..] the user's token keys (see found_keys.lua)
-- ARGV[1] session id; ARGV[2] its version; ARGV[3] its refresh-token family ('' = none);
-- ARGV[4] its expiry (ms), or '+<ttl ms>' for now + ttl (a new session); ARGV[5] max
-- sessions per user (0 = no limit); ARGV[6] key of a token of this user without its hash;
-- ARGV[7] '1' to mark the user active; ARGV[8] online window ms.
-- Returns { id, version, ... } of the sessions evicted: the caller deletes them next.
local now, precise = clock()
local id, max = ARGV[1], tonumber(ARGV[5])
local expiry = ARGV[4]
if string.sub(expiry, 1, 1) == '+' then
  expiry = string.format('%.3f', precise + tonumber(string.sub(expiry, 2)))
end
local evict, revoking = {}, false
if max > 0 then
  -- soonest to expire first: the least recently active sessions
  local others = {}
  for _, other in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf')) do
    if other ~= id then
      others[#others + 1] = other
    end
  end
  for i = 1, #others + 1 - max do
    local version, family = entry(KEYS[2], others[i])
    evict[#evict + 1] = { others[i], version or '', family or '' }
    if family and family ~= '' then
      revoking = true
    end
  end
end
if revoking then
  local needed = token_keys_needed(KEYS[3], ARGV[6], key_set(4))
  if needed then
    return need_keys(needed)
  end
end

prune(KEYS[1], KEYS[2], now)
redis.call('ZADD', KEYS[1], expiry, id)
local meta = ARGV[2]
if ARGV[3] ~= '' then
  meta = meta .. ' ' .. ARGV[3]
end
redis.call('HSET', KEYS[2], 's:' .. id, meta)
if ARGV[7] == '1' then
  redis.call('HSET', KEYS[2], 'active', now)
end
local out = {}
for _, e in ipairs(evict) do
  if e[3] ~= '' then
    revoke_family(KEYS[3], ARGV[6], e[3])
  end
  unindex(KEYS[1], KEYS[2], { e[1] })
  out[#out + 1] = e[1]
  out[#out + 1] = e[2]
end
fit_expiry(KEYS[1], KEYS[2], tonumber(ARGV[8]))
return out
