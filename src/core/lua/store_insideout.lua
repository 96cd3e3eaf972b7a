--[[
  Insideout mode: stores a value together with the current stamps of its
  invalidators (one per conjunction, created when missing, and the
  generation of each table it depends on), unless an invalidation moved an
  epoch since the miss (see store.lua). Nothing points from invalidators to
  values, so Redis may evict anything with a TTL without making a value stale.

  KEYS[1]  value key             N q:<hash>
  KEYS[2]  epochs hash           N epochs
  KEYS[3]  lock key              N lock:<hash>
  KEYS[4]  fence key             N fence (never exists; see fenceKey in keys.ts)
  ARGV[1]  namespace N
  ARGV[2]  the encoded value
  ARGV[3]  timeout in seconds
  ARGV[4]  lease token ("" when no lease was taken)
  ARGV[5]  a fresh random nonce (stamps of conjunctions created now)
  ARGV[6]  E, the number of epoch checks, then E pairs (field, expected epoch)
  then     T, the number of tables, then T table names (escaped)
  then     C, the number of conjunctions, then C triples (table, scheme, conj)

  Returns 1 when stored, 0 when refused.
]]
local ns = ARGV[1]
local timeout = tonumber(ARGV[3])
local nonce = ARGV[5]

-- Release our lease ("<token>@<epochs>", see includes/miss_snapshot), not one that took it over.
if ARGV[4] ~= '' then
  local held = redis.call('GET', KEYS[3])
  if held and string.sub(held, 1, #ARGV[4] + 1) == ARGV[4] .. '@' then
    redis.call('DEL', KEYS[3])
  end
end

local i = 6
for _ = 1, tonumber(ARGV[i]) do
  if (redis.call('HGET', KEYS[2], ARGV[i + 1]) or '0') ~= ARGV[i + 2] then
    return 0
  end
  i = i + 2
end
i = i + 1

local stamps = {}
for _ = 1, tonumber(ARGV[i]) do
  local gen_key = ns .. 'gen:' .. ARGV[i + 1]
  redis.call('SET', gen_key, '0', 'NX')
  stamps[#stamps + 1] = gen_key .. '\n' .. redis.call('GET', gen_key) .. '\n'
  i = i + 1
end
i = i + 1

for n = 1, tonumber(ARGV[i]) do
  local tbl, scheme, conj = ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local conj_key = ns .. 'conj:' .. tbl .. ':' .. conj
  redis.call('SADD', ns .. 'schemes:' .. tbl, scheme)
  local stamp = redis.call('GET', conj_key)
  if not stamp then
    stamp = nonce .. ':' .. n
    redis.call('SET', conj_key, stamp, 'EX', timeout)
  elseif redis.call('TTL', conj_key) < timeout then
    redis.call('EXPIRE', conj_key, timeout)
  end
  stamps[#stamps + 1] = conj_key .. '\n' .. stamp .. '\n'
  i = i + 3
end

redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'v', ARGV[2], 's', table.concat(stamps))
redis.call('EXPIRE', KEYS[1], timeout)
return 1
